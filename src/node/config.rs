//! What a [`Node`](super::Node)(super::Node) is started with: its key, bind address,
//! accept policy, transport settings and limits ([`NodeConfig`]), and the
//! bootstraps an overlay keeps links to ([`BootstrapAddr`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::{IncomingLimits, NodeError};
use crate::identity::{Identity, PeerId};
use crate::tls::AcceptPolicy;

/// Transport settings shared by every connection of a node.
#[derive(Clone, Debug)]
pub struct TransportSettings {
    /// Interval of QUIC keep-alive packets; keeps NAT mappings open.
    pub keep_alive: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long `connect` waits for a handshake and welcome.
    pub connect_timeout: Duration,
    /// Initial UDP payload size; MTU discovery probes upwards from here.
    /// Must be at least 1200 (the QUIC minimum). It is also the floor:
    /// quinn's black-hole detection never goes below it, since the tunnel
    /// promises its devices datagrams of this size (a lossy path would
    /// otherwise shrink them below the TUN MTU for minutes).
    pub initial_mtu: u16,
    /// Unidirectional streams a peer may have open at once. The protocol
    /// opens one in each direction, the control channel ([`control`](super::control)).
    /// quinn sets up every stream a peer may open when the connection
    /// starts (its default of 100 costs about 8 KiB per connection), and
    /// buffers data for streams nobody reads up to the stream window.
    pub max_uni_streams: u32,
    /// Bidirectional streams a peer may have open at once. The overlay and
    /// the bootstrap open none; [`PeerConnection::open_bi`](super::PeerConnection::open_bi) is there for
    /// other users of [`Node`](super::Node).
    pub max_bidi_streams: u32,
    /// Bytes of QUIC datagrams from a peer that may wait unread. `None`:
    /// peers may not send datagrams at all (the bootstrap, which relays raw
    /// frames outside QUIC and reads no datagram; a buffer there would only
    /// let every client pin memory).
    pub datagram_receive_buffer: Option<usize>,
    /// Firewall mark on the packets of every socket the node opens (Linux
    /// `SO_MARK`; 0: none): a tunnel routing everything through its
    /// device keeps marked packets out of it ([`AntqSocket::set_mark`](crate::socket::AntqSocket::set_mark)).
    pub socket_mark: u32,
    /// Carry datagrams in the data plane (`DATA` frames beside QUIC, see
    /// [`data`](super::data)) with peers that negotiate it; off: always in
    /// QUIC datagrams.
    pub data_plane: bool,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            initial_mtu: 1360,
            max_uni_streams: 4,
            max_bidi_streams: 4,
            datagram_receive_buffer: Some(4 << 20),
            socket_mark: 0,
            data_plane: true,
        }
    }
}

/// Everything needed to start a [`Node`](super::Node).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's key pair.
    pub identity: Identity,
    /// UDP address to bind; `[::]:port` binds dual-stack.
    pub bind: SocketAddr,
    /// Which client keys may connect to this node.
    pub accept: AcceptPolicy,
    /// Transport settings.
    pub transport: TransportSettings,
    /// Limits on incoming connections (rate and number per source, total,
    /// handshakes under way).
    pub incoming: IncomingLimits,
    /// Validate a client's address with a QUIC Retry before answering its
    /// handshake (on by default). Without it, quinn answers an Initial from
    /// any (possibly spoofed) source with up to three times its size plus
    /// one datagram (its anti-amplification check lets the last datagram
    /// overshoot); with it, the only answer to an unvalidated address is a
    /// Retry smaller than the Initial, at the cost of one round trip per
    /// incoming handshake. Relay paths (virtual addresses) are exempt: the
    /// relay only forwards between addresses it validated itself. The
    /// per-IP limit counts validated addresses only, so spoofed Initials
    /// cannot use up another host's allowance.
    pub validate_addresses: bool,
    /// Send 1-RTT QUIC packets only to proven addresses: the validated
    /// source of each accepted handshake, the address of each connection we
    /// dialed, and what the owner proves with [`AntqSocket::prove`](crate::socket::AntqSocket::prove) (see
    /// [`crate::socket::ProvenAddrs`]). Off by default; a bootstrap turns it
    /// on so that a client spoofing its source address cannot make QUIC
    /// send anything to a victim.
    pub send_only_to_proven: bool,
}

impl NodeConfig {
    /// A config with default transport settings.
    pub fn new(identity: Identity, bind: SocketAddr, accept: AcceptPolicy) -> Self {
        Self {
            identity,
            bind,
            accept,
            transport: TransportSettings::default(),
            incoming: IncomingLimits::default(),
            validate_addresses: true,
            send_only_to_proven: false,
        }
    }
}

/// A bootstrap node to keep a link to: its key and UDP address (the
/// `bootstrap = ["KEY@ADDR:PORT"]` entries of a tunnel config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapAddr {
    /// The bootstrap's key.
    pub peer: PeerId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// The quinn transport config of `settings`, checked.
pub(super) fn transport_config(
    settings: &TransportSettings,
) -> Result<quinn::TransportConfig, NodeError> {
    if settings.initial_mtu < 1200 {
        return Err(NodeError::Transport(format!(
            "initial_mtu {} is below the QUIC minimum of 1200",
            settings.initial_mtu
        )));
    }
    let idle = quinn::IdleTimeout::try_from(settings.idle_timeout).map_err(|_| {
        NodeError::Transport(format!(
            "idle timeout {:?} too large",
            settings.idle_timeout
        ))
    })?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(settings.keep_alive))
        .max_idle_timeout(Some(idle))
        .initial_mtu(settings.initial_mtu)
        .min_mtu(settings.initial_mtu)
        .max_concurrent_uni_streams(settings.max_uni_streams.into())
        .max_concurrent_bidi_streams(settings.max_bidi_streams.into())
        .datagram_receive_buffer_size(settings.datagram_receive_buffer)
        .datagram_send_buffer_size(4 << 20);
    Ok(transport)
}
