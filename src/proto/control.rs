//! Control message types and frame type numbers.
//!
//! Their encoding and decoding live in `frame.rs`. See the
//! [module documentation](crate::proto) for the wire layouts.

use std::net::{IpAddr, SocketAddr};

use super::cert::Certificate;

#[cfg(doc)]
use super::{decode_frame, DecodeError};

/// The largest payload a control frame may declare: 64 KiB.
///
/// [`decode_frame`] rejects larger frames with [`DecodeError::FrameTooLarge`]
/// as soon as their length field has arrived; [`ControlMessage::encode`]
/// refuses to write them.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;

/// Control frame type numbers.
///
/// Address-carrying frames come in pairs: the even type carries an IPv4
/// address, the odd type (even + 1) an IPv6 address.
pub mod frame_type {
    /// `ADD_ADDRESS` with an IPv4 address (draft-seemann-quic-nat-traversal).
    pub const ADD_ADDRESS_V4: u64 = 0x3d_7e90;
    /// `ADD_ADDRESS` with an IPv6 address.
    pub const ADD_ADDRESS_V6: u64 = 0x3d_7e91;
    /// `PUNCH_ME_NOW` with an IPv4 address (draft-seemann-quic-nat-traversal).
    pub const PUNCH_ME_NOW_V4: u64 = 0x3d_7e92;
    /// `PUNCH_ME_NOW` with an IPv6 address.
    pub const PUNCH_ME_NOW_V6: u64 = 0x3d_7e93;
    /// `REMOVE_ADDRESS` (draft-seemann-quic-nat-traversal).
    pub const REMOVE_ADDRESS: u64 = 0x3d_7e94;
    /// `OBSERVED_ADDRESS` with an IPv4 address (QUIC address discovery).
    pub const OBSERVED_ADDRESS_V4: u64 = 0x9f_81a6;
    /// `OBSERVED_ADDRESS` with an IPv6 address.
    pub const OBSERVED_ADDRESS_V6: u64 = 0x9f_81a7;
    /// antq `FORWARD`: relay an inner message through the bootstrap.
    pub const FORWARD: u64 = 0x3d_7f00;
    /// antq `RELAY_REQUEST`: ask the bootstrap for a relay channel.
    pub const RELAY_REQUEST: u64 = 0x3d_7f01;
    /// antq `RELAY_GRANT`: the bootstrap assigns a relay channel.
    pub const RELAY_GRANT: u64 = 0x3d_7f02;
    /// antq `RELAY_CLOSE`: a relay channel is closed.
    pub const RELAY_CLOSE: u64 = 0x3d_7f03;
    /// antq `PEER_UNAVAILABLE`: the requested peer cannot be reached.
    pub const PEER_UNAVAILABLE: u64 = 0x3d_7f04;
    /// antq `HELLO`: first message on a control stream.
    pub const HELLO: u64 = 0x3d_7f05;
    /// antq `ADDRESS_PROOF`: the token of an `ADDRESS_CHALLENGE` received.
    pub const ADDRESS_PROOF: u64 = 0x3d_7f06;
    /// antq `MEMBER_REGISTER`: a member gives its bootstrap its certificate.
    pub const MEMBER_REGISTER: u64 = 0x3d_7f07;
    /// antq `MEMBER_LOOKUP`: a member asks who holds a key or an address.
    pub const MEMBER_LOOKUP: u64 = 0x3d_7f08;
    /// antq `MEMBER`: the bootstrap's answer, a certificate.
    pub const MEMBER: u64 = 0x3d_7f09;
    /// antq `NO_MEMBER`: the bootstrap knows no member for a lookup.
    pub const NO_MEMBER: u64 = 0x3d_7f0a;
    /// antq `PING`: a peer asks another for a `PONG` (`antq-tun ping`).
    pub const PING: u64 = 0x3d_7f0b;
    /// antq `PONG`: the answer to a `PING`, with its token.
    pub const PONG: u64 = 0x3d_7f0c;
    /// antq `NAT_MAPPING`: how the sender's NAT maps, for the peer's choice
    /// of punch method.
    pub const NAT_MAPPING: u64 = 0x3d_7f10;
    /// antq `BIRTHDAY_ME_NOW` (IPv4): start birthday probing.
    pub const BIRTHDAY_ME_NOW_V4: u64 = 0x3d_7f12;
    /// antq `BIRTHDAY_ME_NOW` (IPv6).
    pub const BIRTHDAY_ME_NOW_V6: u64 = 0x3d_7f13;
    /// antq `OBSERVE_AT`: the bootstrap's observe socket is on this port.
    pub const OBSERVE_AT: u64 = 0x3d_7f0d;

    /// Whether `t` is one of the frame types above.
    pub fn is_known(t: u64) -> bool {
        matches!(
            t,
            ADD_ADDRESS_V4..=REMOVE_ADDRESS
                | OBSERVED_ADDRESS_V4
                | OBSERVED_ADDRESS_V6
                | FORWARD..=OBSERVE_AT
                | NAT_MAPPING
                | BIRTHDAY_ME_NOW_V4
                | BIRTHDAY_ME_NOW_V6
        )
    }
}

use frame_type as ft;

/// Why the bootstrap could not connect or relay to a peer
/// (`PEER_UNAVAILABLE` reason code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnavailableReason {
    /// Code 1: the peer is not connected to this bootstrap.
    NotConnected,
    /// Code 2: policy forbids talking to this peer.
    NotAllowed,
    /// Code 3: too many requests; try again later.
    RateLimited,
    /// Code 4: the bootstrap does not relay.
    RelayDisabled,
    /// Code 5: a cap on what the bootstrap holds (relay requests or
    /// allocations, per key or in total) is reached.
    LimitReached,
    /// Any other code, preserved as received.
    ///
    /// Build values with [`UnavailableReason::from_code`] so that known codes
    /// get their own variant; `Other(1)` would encode as code 1 and decode
    /// back as [`UnavailableReason::NotConnected`].
    Other(u64),
}

/// How a host's NAT maps its socket, as far as its bootstraps' views tell
/// (`NAT_MAPPING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatClass {
    /// Code 0: not known (or any code this version does not know).
    Unknown,
    /// Code 1: no NAT: the host's own address is the observed one.
    Public,
    /// Code 2: a NAT that keeps one mapping for every destination
    /// ("home", full cone).
    EndpointIndependent,
    /// Code 3: a NAT that maps each destination anew (symmetric).
    Dependent,
}

impl NatClass {
    /// The wire code.
    pub fn code(self) -> u64 {
        match self {
            Self::Unknown => 0,
            Self::Public => 1,
            Self::EndpointIndependent => 2,
            Self::Dependent => 3,
        }
    }

    /// The class of a wire code; unknown codes are [`Self::Unknown`].
    pub fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Public,
            2 => Self::EndpointIndependent,
            3 => Self::Dependent,
            _ => Self::Unknown,
        }
    }
}

impl UnavailableReason {
    /// The wire code of this reason.
    pub fn code(self) -> u64 {
        match self {
            Self::NotConnected => 1,
            Self::NotAllowed => 2,
            Self::RateLimited => 3,
            Self::RelayDisabled => 4,
            Self::LimitReached => 5,
            Self::Other(code) => code,
        }
    }

    /// The reason for a wire code; unknown codes become [`Self::Other`].
    pub fn from_code(code: u64) -> Self {
        match code {
            1 => Self::NotConnected,
            2 => Self::NotAllowed,
            3 => Self::RateLimited,
            4 => Self::RelayDisabled,
            5 => Self::LimitReached,
            other => Self::Other(other),
        }
    }
}

/// What a `MEMBER_LOOKUP` asks for: the member with a key, or the member
/// whose certificate covers an overlay address (its address or a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberQuery {
    /// The member with this public key.
    Key([u8; 32]),
    /// The member owning this overlay address.
    Addr(IpAddr),
}

/// A control message, as carried in one frame on a QUIC control stream.
///
/// Encode with [`ControlMessage::encode`], decode with [`decode_frame`]. The
/// payload layout of each variant is given in the
/// [module documentation](crate::proto). Socket addresses travel as IP and
/// port only: an IPv6 address's flow label and scope id are not sent and
/// decode as 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlMessage {
    /// `ADD_ADDRESS`: the sender can be reached at `addr`.
    AddAddress {
        /// Identifies the address for `REMOVE_ADDRESS` and `PUNCH_ME_NOW`.
        sequence: u64,
        /// The candidate address.
        addr: SocketAddr,
    },
    /// `PUNCH_ME_NOW`: punch towards `addr` in round `round`, starting
    /// `delay_ms` milliseconds after receipt, or at `start_at_unix_micros`
    /// when the clocks agree well enough; the punch probes of this round
    /// carry `token`.
    PunchMeNow {
        /// The hole-punching round (the probes carry it as a `u32`).
        round: u32,
        /// The sequence number of the receiver's address this is paired with.
        paired_with_sequence: u64,
        /// Where the receiver should send its probes.
        addr: SocketAddr,
        /// How long after receipt to start punching, in milliseconds.
        delay_ms: u64,
        /// Random value (from a CSPRNG, chosen by the sender) that the probes
        /// of this round carry.
        token: [u8; 16],
        /// The sender's start time in microseconds since the Unix epoch (0 if
        /// not given). Both sides sending their first probe at the same
        /// instant keeps either probe from reaching the other NAT before that
        /// NAT has a mapping (the Linux conntrack port clash).
        start_at_unix_micros: u64,
    },
    /// `REMOVE_ADDRESS`: the address announced with `sequence` is gone.
    RemoveAddress {
        /// The sequence number from the `ADD_ADDRESS`.
        sequence: u64,
    },
    /// `OBSERVED_ADDRESS`: the receiver's address as seen by the sender.
    ObservedAddress {
        /// Increases with each new observation; stale ones can be ignored.
        sequence: u64,
        /// The observed address.
        addr: SocketAddr,
    },
    /// `FORWARD`: an envelope relayed by the bootstrap. From a peer, `peer` is
    /// the target; from the bootstrap, `peer` is the original sender.
    /// `inner` may not itself be a `FORWARD`.
    Forward {
        /// The target (peer to bootstrap) or sender (bootstrap to peer) key.
        peer: [u8; 32],
        /// The relayed message.
        inner: Box<ControlMessage>,
    },
    /// `RELAY_REQUEST`: ask the bootstrap for a relay channel to `peer`.
    RelayRequest {
        /// The peer to relay to.
        peer: [u8; 32],
    },
    /// `RELAY_GRANT`: relay frames for `peer` use channel `channel`, in both
    /// directions.
    RelayGrant {
        /// The peer at the other end of the channel.
        peer: [u8; 32],
        /// The channel id carried by `RELAY_DATA` frames.
        channel: u32,
    },
    /// `RELAY_CLOSE`: the relay channel `channel` is closed.
    RelayClose {
        /// The channel id.
        channel: u32,
    },
    /// `PEER_UNAVAILABLE`: `peer` cannot be reached through the bootstrap.
    PeerUnavailable {
        /// The unreachable peer.
        peer: [u8; 32],
        /// Why.
        reason: UnavailableReason,
    },
    /// `HELLO`: the first message on a control stream.
    Hello {
        /// The protocol version the sender speaks.
        version: u64,
        /// Feature flags (bit set).
        flags: u64,
    },
    /// `ADDRESS_PROOF`: a peer tells its bootstrap, over their
    /// authenticated connection, the token of an `ADDRESS_CHALLENGE` raw
    /// frame it received ([`crate::proto::raw::AddressChallenge`]). Only
    /// whoever receives at the challenged address saw the token, and only
    /// the connection's owner can send this: together they prove that the
    /// owner is at that address.
    AddressProof {
        /// The challenge's token.
        token: [u8; 16],
    },
    /// `MEMBER_REGISTER`: a member gives its bootstrap its certificate, so
    /// that other members of the same network can find it.
    MemberRegister {
        /// The member's certificate.
        cert: Box<Certificate>,
    },
    /// `MEMBER_LOOKUP`: a member asks its bootstrap for the certificate of
    /// another member of its network.
    MemberLookup {
        /// Whom to find.
        query: MemberQuery,
    },
    /// `MEMBER`: the bootstrap's answer to a `MEMBER_LOOKUP`. The asker
    /// verifies the certificate itself; the bootstrap is not trusted.
    Member {
        /// The lookup this answers.
        query: MemberQuery,
        /// The member's certificate.
        cert: Box<Certificate>,
    },
    /// `NO_MEMBER`: no registered member of the asker's network matches.
    NoMember {
        /// The lookup this answers.
        query: MemberQuery,
    },
    /// `PING`: a peer asks the peer at the other end of a connection for a
    /// `PONG`, on a bidirectional stream of its own (one `PING`, one
    /// `PONG`, then both sides finish): the round trip of the path that
    /// connection takes, measured above QUIC.
    Ping {
        /// Chosen by the sender, echoed in the `PONG`.
        token: [u8; 8],
    },
    /// `PONG`: the answer to a `PING`.
    Pong {
        /// The `PING`'s token.
        token: [u8; 8],
    },
    /// `NAT_MAPPING`: the sender's NAT class, sent to a peer (in `FORWARD`)
    /// with its candidates.
    NatMapping {
        /// The class.
        class: NatClass,
    },
    /// `BIRTHDAY_ME_NOW`: the leader asks the peer to start birthday
    /// probing ([`crate::nat::birthday`] names the sides) at
    /// `start_at_unix_micros`, or `delay_ms` after receipt; its probes
    /// carry `token`. The frame type gives the family of both addresses.
    BirthdayMeNow {
        /// The round (the probes carry it as a `u32`).
        round: u32,
        /// Random value (CSPRNG, chosen by the sender) that the probes carry.
        token: [u8; 16],
        /// How long after receipt to start, in milliseconds.
        delay_ms: u64,
        /// The sender's start time in microseconds since the Unix epoch.
        start_at_unix_micros: u64,
        /// Whether the sender is the easy side.
        sender_easy: bool,
        /// The easy side's public address.
        easy: SocketAddr,
        /// The hard side's public IP.
        hard: IpAddr,
    },
    /// `OBSERVE_AT`: from a bootstrap, right after its first
    /// `OBSERVED_ADDRESS`: its observe socket listens on `port` of the IP
    /// the peer reaches it at, and answers `OBSERVE_REQUEST` raw frames
    /// ([`crate::proto::raw::ObserveRequest`]) sent there from the peer's
    /// main socket. Bootstraps without one never send it.
    ObserveAt {
        /// The observe socket's UDP port.
        port: u16,
    },
    /// A frame of a type this implementation does not know.
    ///
    /// [`decode_frame`] consumes such frames whole and returns them here so
    /// the caller can skip them (the usual reaction) or pass them on
    /// unchanged (a relaying bootstrap). Encoding one writes it back as is;
    /// `frame_type` must not be a known type.
    Unknown {
        /// The frame type found on the wire.
        frame_type: u64,
        /// The raw payload (at most [`MAX_PAYLOAD_LEN`] bytes).
        payload: Vec<u8>,
    },
}

impl ControlMessage {
    /// The wire frame type of this message.
    pub fn frame_type(&self) -> u64 {
        let v6 = |addr: &SocketAddr| u64::from(addr.is_ipv6());
        match self {
            Self::AddAddress { addr, .. } => ft::ADD_ADDRESS_V4 + v6(addr),
            Self::PunchMeNow { addr, .. } => ft::PUNCH_ME_NOW_V4 + v6(addr),
            Self::RemoveAddress { .. } => ft::REMOVE_ADDRESS,
            Self::ObservedAddress { addr, .. } => ft::OBSERVED_ADDRESS_V4 + v6(addr),
            Self::Forward { .. } => ft::FORWARD,
            Self::RelayRequest { .. } => ft::RELAY_REQUEST,
            Self::RelayGrant { .. } => ft::RELAY_GRANT,
            Self::RelayClose { .. } => ft::RELAY_CLOSE,
            Self::PeerUnavailable { .. } => ft::PEER_UNAVAILABLE,
            Self::Hello { .. } => ft::HELLO,
            Self::AddressProof { .. } => ft::ADDRESS_PROOF,
            Self::MemberRegister { .. } => ft::MEMBER_REGISTER,
            Self::MemberLookup { .. } => ft::MEMBER_LOOKUP,
            Self::Member { .. } => ft::MEMBER,
            Self::NoMember { .. } => ft::NO_MEMBER,
            Self::Ping { .. } => ft::PING,
            Self::Pong { .. } => ft::PONG,
            Self::NatMapping { .. } => ft::NAT_MAPPING,
            Self::BirthdayMeNow { easy, .. } => ft::BIRTHDAY_ME_NOW_V4 + v6(easy),
            Self::ObserveAt { .. } => ft::OBSERVE_AT,
            Self::Unknown { frame_type, .. } => *frame_type,
        }
    }
}
