//! What a bootstrap runs with: its [`BootstrapSettings`] and [`Limits`]
//! (read from a file by [`super::config::BootstrapConfig`]).

use std::net::SocketAddr;

use crate::identity::{Identity, PeerId};

/// Limits of a bootstrap node. The defaults suit a small VPS (1 vCPU, 1 GiB);
/// `docs/security.md` explains each and how to tune them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Coordination requests (FORWARD, RELAY_REQUEST) per second per key.
    pub coordination_per_sec: f64,
    /// Burst of coordination requests per key.
    pub coordination_burst: f64,
    /// Relay bandwidth per direction of a pair, bytes per second.
    pub relay_bytes_per_sec: f64,
    /// Relay burst per direction, bytes.
    pub relay_burst_bytes: f64,
    /// Relay bandwidth of one sending key over all its relays, bytes per
    /// second.
    pub relay_key_bytes_per_sec: f64,
    /// Relay burst of one sending key over all its relays, bytes.
    pub relay_key_burst_bytes: f64,
    /// Relay allocations one key may be in, and relay requests it may have
    /// waiting for the other key's consent (each).
    pub relay_max_per_key: usize,
    /// Relay allocations in total, and relay requests waiting in total
    /// (each).
    pub relay_max_total: usize,
    /// New connections per second per source (an IPv4 address or an IPv6
    /// /64): QUIC handshakes, and separately new TCP streams. The burst is
    /// three times this.
    pub connections_per_sec_per_ip: f64,
    /// Connections held at once from one source.
    pub max_connections_per_ip: usize,
    /// Connected peers (connections held) in total.
    pub max_peers: usize,
    /// QUIC handshakes under way at once.
    pub max_pending_handshakes: usize,
    /// TCP streams open at once in total.
    pub tcp_max_streams: usize,
    /// TCP streams open at once from one source.
    pub tcp_max_streams_per_ip: usize,
    /// `OBSERVE_REQUEST`s answered per second per source (the burst is
    /// three times this).
    pub observe_per_sec_per_ip: f64,
    /// `OBSERVE_REQUEST`s answered per second in total (also the burst).
    pub observe_per_sec: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            coordination_per_sec: 20.0,
            coordination_burst: 60.0,
            relay_bytes_per_sec: 25_000_000.0,
            relay_burst_bytes: 2_000_000.0,
            relay_key_bytes_per_sec: 25_000_000.0,
            relay_key_burst_bytes: 4_000_000.0,
            relay_max_per_key: 1024,
            relay_max_total: 16_384,
            connections_per_sec_per_ip: 20.0,
            max_connections_per_ip: 32,
            max_peers: 4096,
            max_pending_handshakes: 256,
            tcp_max_streams: 4096,
            tcp_max_streams_per_ip: 16,
            observe_per_sec_per_ip: 5.0,
            observe_per_sec: 2000.0,
        }
    }
}

/// Where a bootstrap listens for TCP streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpListen {
    /// The same IP and port as the UDP socket (the port actually bound).
    SameAsUdp,
    /// This address.
    At(SocketAddr),
    /// No TCP listener.
    Off,
}

/// Where a bootstrap's observe socket listens (it answers `OBSERVE_REQUEST`
/// raw frames, so that peers learn their NAT's mapping toward a second port
/// of the bootstrap: [`crate::proto::raw::ObserveRequest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserveListen {
    /// The listen IP and the listen port + 1 (a free port chosen by the
    /// system when the listen port is 0 or 65535, or when port + 1 is
    /// taken: peers learn the port from `OBSERVE_AT`).
    NextPort,
    /// The listen IP and this port (0: a free port chosen by the system).
    Port(u16),
    /// No observe socket: peers of this bootstrap alone cannot tell their
    /// NAT's mapping behaviour.
    Off,
}

impl ObserveListen {
    /// The address to bind for a bootstrap listening on `listen`, if any.
    pub fn bind_addr(self, listen: SocketAddr) -> Option<SocketAddr> {
        let port = match self {
            Self::Off => return None,
            Self::Port(port) => port,
            Self::NextPort => match listen.port() {
                0 | u16::MAX => 0,
                port => port + 1,
            },
        };
        Some(SocketAddr::new(listen.ip(), port))
    }
}

/// What a bootstrap server needs to start
/// ([`BootstrapConfig`](super::config::BootstrapConfig) reads it from a
/// file).
#[derive(Clone, Debug)]
pub struct BootstrapSettings {
    /// The bootstrap's key pair.
    pub identity: Identity,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// TCP listener for peers whose network drops UDP.
    pub tcp_listen: TcpListen,
    /// The observe socket (NAT mapping discovery).
    pub observe: ObserveListen,
    /// Whether to relay traffic.
    pub relay: bool,
    /// If set, only these keys may connect.
    pub allowed_keys: Option<Vec<PeerId>>,
    /// Limits.
    pub limits: Limits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_port_follows_the_listen_port() {
        let at = |o: ObserveListen, listen: &str| o.bind_addr(listen.parse().unwrap());
        assert_eq!(
            at(ObserveListen::NextPort, "198.51.100.1:9000"),
            Some("198.51.100.1:9001".parse().unwrap())
        );
        assert_eq!(
            at(ObserveListen::NextPort, "[::]:9000"),
            Some("[::]:9001".parse().unwrap())
        );
        for any in ["127.0.0.1:0", "127.0.0.1:65535"] {
            assert_eq!(
                at(ObserveListen::NextPort, any),
                Some("127.0.0.1:0".parse().unwrap())
            );
        }
        assert_eq!(
            at(ObserveListen::Port(3478), "10.0.0.1:9000"),
            Some("10.0.0.1:3478".parse().unwrap())
        );
        assert_eq!(at(ObserveListen::Off, "10.0.0.1:9000"), None);
    }
}
