//! Raw UDP frames sharing the QUIC socket: relay data, punch probes,
//! address challenges and the bootstrap's observe requests and replies.
//!
//! QUIC packets always have the "fixed bit" (`0x40`) of their first byte set,
//! because antq never negotiates greasing of that bit (RFC 9287). A datagram
//! whose first byte is in `0x00..=0x3f` is therefore an antq raw frame, and
//! its first byte is the frame type:
//!
//! ```text
//! RELAY_DATA  [0x01][channel: u32 BE][payload: the peers' own QUIC packet]
//! PUNCH_PROBE [0x02][token: 16][round: u32 BE][seq: u32 BE][padding...]
//! PUNCH_ACK   [0x03][token: 16][round: u32 BE][seq: u32 BE][padding...]
//! ADDRESS_CHALLENGE [0x04][token: 16]
//! OBSERVE_REQUEST   [0x05][token: 16][padding: zeros, 36 bytes in all at least]
//! OBSERVE_REPLY     [0x06][token: 16][family: 4 | 6][ip: 4 | 16][port: u16 BE]
//! DATA              [0x07][receiver: u32 BE][counter: u64 BE][sealed datagram + 16-byte tag]
//! DATA_SIGNAL       [0x08][receiver: u32 BE][counter: u64 BE][sealed signal + 16-byte tag]
//! ```
//!
//! `DATA` and `DATA_SIGNAL` are the data plane's frames between two peers
//! (datagrams beside QUIC, sealed with keys from their QUIC connection);
//! their codec and payloads are in [`super::data`].
//!
//! `ADDRESS_CHALLENGE` is how a bootstrap makes sure that a peer really is
//! at an address before it sends anything there on the peer's behalf (QUIC
//! moves a connection to a new source address on the first packet from it,
//! before validating it, so a spoofed source would otherwise turn the
//! bootstrap against a victim). The token goes to the address in this raw
//! frame; the answer comes back as an `ADDRESS_PROOF` control message over
//! the peer's authenticated connection. Only someone receiving at the
//! address sees the token, and only the connection's owner can send the
//! proof on it: a spoofer has neither, and another host at the address (which
//! sees the token) cannot answer for the spoofer's connection. The frame is
//! 17 bytes and answered by nothing on the wire: it cannot be amplified.
//!
//! `OBSERVE_REQUEST` asks a bootstrap's *observe socket* (a second UDP port
//! on the bootstrap's IP, announced on the control link by `OBSERVE_AT`)
//! which source address it sees; `OBSERVE_REPLY` answers from that socket
//! with the requester's token and that address (`family` 4: 4 IP bytes,
//! 6: 16). A peer compares it with the `OBSERVED_ADDRESS` of the
//! bootstrap's main port: the same mapping for another destination port of
//! the same IP means the NAT does not map per port (endpoint-independent as
//! far as one bootstrap can tell), another mapping means symmetric. The
//! request is padded to at least [`ObserveReply::MAX_LEN`] (36) bytes, and
//! [`ObserveRequest::answer`] never writes a reply longer than the request
//! it answers: a spoofed request cannot be amplified. Padding is written as
//! zeros and ignored on receipt; a reply has a fixed size per family.
//!
//! Vectors (token `00 01 .. 0f`): the 36-byte request is `05`, the token,
//! 19 zero bytes; the reply for `192.0.2.1:4660` is
//! `06 000102030405060708090a0b0c0d0e0f 04 c0000201 1234` (24 bytes), for
//! `[2001:db8::1]:443` `06 <token> 06 20010db8000000000000000000000001 01bb`
//! (36 bytes).
//!
//! Any other first byte in `0x00..=0x3f` is [`DecodeError::UnknownType`].
//! Probe padding is chosen by the sender, written as zeros and ignored on
//! receipt. An ACK is never larger than the probe it answers
//! ([`Probe::answer`] enforces it), so a spoofed probe cannot be amplified.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::DecodeError;

/// First byte of a `RELAY_DATA` frame.
pub const RELAY_DATA: u8 = 0x01;
/// First byte of a `PUNCH_PROBE` frame.
pub const PUNCH_PROBE: u8 = 0x02;
/// First byte of a `PUNCH_ACK` frame.
pub const PUNCH_ACK: u8 = 0x03;
/// First byte of an `ADDRESS_CHALLENGE` frame.
pub const ADDRESS_CHALLENGE: u8 = 0x04;
/// First byte of an `OBSERVE_REQUEST` frame.
pub const OBSERVE_REQUEST: u8 = 0x05;
/// First byte of an `OBSERVE_REPLY` frame.
pub const OBSERVE_REPLY: u8 = 0x06;
/// First byte of a `DATA` frame (see [`super::data`]).
pub const DATA: u8 = 0x07;
/// First byte of a `DATA_SIGNAL` frame (see [`super::data`]).
pub const DATA_SIGNAL: u8 = 0x08;

/// Whether a datagram's first byte is a data plane frame's (`DATA` or
/// `DATA_SIGNAL`).
pub fn is_data(first_byte: u8) -> bool {
    first_byte == DATA || first_byte == DATA_SIGNAL
}

/// What a datagram received on the shared socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// A QUIC packet (fixed bit `0x40` set, or a long header without it,
    /// which QUIC itself will discard): hand it to the QUIC endpoint.
    Quic,
    /// An antq raw frame (first byte in `0x00..=0x3f`).
    Raw,
}

/// Classifies a datagram by its first byte.
///
/// `0x00..=0x3f` is [`PacketClass::Raw`]; everything else (fixed bit set, or
/// the long-header bit `0x80` set) is [`PacketClass::Quic`]. An empty
/// datagram has no first byte and should simply be dropped.
pub fn classify(first_byte: u8) -> PacketClass {
    if first_byte & 0xc0 == 0 {
        PacketClass::Raw
    } else {
        PacketClass::Quic
    }
}

/// The header of a `RELAY_DATA` frame: `[0x01][channel: u32 BE]`.
///
/// Relay frames are built in place: reserve [`RelayHeader::LEN`] bytes in
/// front of the QUIC packet and fill them with [`encode_relay_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelayHeader {
    /// The relay channel id (from `RELAY_GRANT`).
    pub channel: u32,
}

impl RelayHeader {
    /// Length of the header in bytes: 5.
    pub const LEN: usize = 5;

    /// The header in wire form.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        encode_relay_header(self.channel, &mut out);
        out
    }
}

/// Writes a `RELAY_DATA` header for `channel` into `out`.
pub fn encode_relay_header(channel: u32, out: &mut [u8; RelayHeader::LEN]) {
    let [a, b, c, d] = channel.to_be_bytes();
    *out = [RELAY_DATA, a, b, c, d];
}

/// Parses a `RELAY_DATA` frame, returning its channel and payload (borrowed
/// from `datagram`, no copy). The payload may be empty.
pub fn parse_relay(datagram: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    expect_type(datagram, RELAY_DATA)?;
    let (header, payload) = datagram
        .split_first_chunk::<{ RelayHeader::LEN }>()
        .ok_or_else(|| truncated(RelayHeader::LEN, datagram))?;
    let [_, a, b, c, d] = *header;
    Ok((u32::from_be_bytes([a, b, c, d]), payload))
}

/// Whether a punch frame is a probe or the answer to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `PUNCH_PROBE` (`0x02`): a connectivity check.
    Probe,
    /// `PUNCH_ACK` (`0x03`): the answer to a probe, echoing its round and
    /// seq.
    Ack,
}

impl ProbeKind {
    /// The frame's first byte.
    pub fn type_byte(self) -> u8 {
        match self {
            Self::Probe => PUNCH_PROBE,
            Self::Ack => PUNCH_ACK,
        }
    }
}

/// A `PUNCH_PROBE` or `PUNCH_ACK` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Probe or ACK.
    pub kind: ProbeKind,
    /// The token of the round (from `PUNCH_ME_NOW`).
    pub token: [u8; 16],
    /// The hole-punching round.
    pub round: u32,
    /// The probe's number within the round (an ACK echoes it).
    pub seq: u32,
}

impl Probe {
    /// Length of an unpadded probe or ACK: 25 bytes.
    pub const LEN: usize = 1 + 16 + 4 + 4;
    /// The largest frame [`Probe::encode`] writes: the largest UDP payload
    /// over IPv4 (65 507 bytes).
    pub const MAX_LEN: usize = 65_507;

    /// Appends the frame to `out`, zero-padded to `pad_to` bytes, clamped to
    /// `LEN..=MAX_LEN`. Returns the number of bytes written.
    ///
    /// To answer a received probe, use [`Probe::answer`], which also caps
    /// the ACK at the probe's size.
    pub fn encode(&self, pad_to: usize, out: &mut Vec<u8>) -> usize {
        let total = pad_to.clamp(Self::LEN, Self::MAX_LEN);
        out.reserve(total);
        out.push(self.kind.type_byte());
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.resize(out.len() + (total - Self::LEN), 0);
        total
    }

    /// Decodes a probe or ACK; padding after the fixed fields is ignored.
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        let kind = match datagram.first() {
            Some(&PUNCH_PROBE) => ProbeKind::Probe,
            Some(&PUNCH_ACK) => ProbeKind::Ack,
            _ => return Err(type_error(datagram, PUNCH_PROBE)),
        };
        let (fixed, _padding) = datagram
            .split_first_chunk::<{ Self::LEN }>()
            .ok_or_else(|| truncated(Self::LEN, datagram))?;
        let [_, token @ .., r0, r1, r2, r3, s0, s1, s2, s3] = *fixed;
        Ok(Self {
            kind,
            token,
            round: u32::from_be_bytes([r0, r1, r2, r3]),
            seq: u32::from_be_bytes([s0, s1, s2, s3]),
        })
    }

    /// The ACK answering this probe: same token, round and seq.
    pub fn ack(&self) -> Self {
        Self {
            kind: ProbeKind::Ack,
            ..*self
        }
    }

    /// Answers a received `PUNCH_PROBE` datagram: decodes it and appends the
    /// matching `PUNCH_ACK` to `out`, padded to `pad_to` bytes but never
    /// longer than `probe_datagram` (anti-amplification). Returns the decoded
    /// probe.
    ///
    /// Fails if the datagram is not a valid `PUNCH_PROBE` (an ACK is not
    /// answered: [`DecodeError::UnexpectedType`]); `out` is then untouched.
    pub fn answer(
        probe_datagram: &[u8],
        pad_to: usize,
        out: &mut Vec<u8>,
    ) -> Result<Self, DecodeError> {
        let probe = Self::decode(probe_datagram)?;
        if probe.kind != ProbeKind::Probe {
            return Err(DecodeError::UnexpectedType {
                expected: u64::from(PUNCH_PROBE),
                found: u64::from(PUNCH_ACK),
            });
        }
        probe.ack().encode(pad_to.min(probe_datagram.len()), out);
        Ok(probe)
    }
}

/// An `ADDRESS_CHALLENGE` frame: a bootstrap sends it to an address that a
/// peer's connection seems to have moved to; the peer answers with the
/// token in an `ADDRESS_PROOF` control message on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressChallenge {
    /// The token to echo.
    pub token: [u8; 16],
}

impl AddressChallenge {
    /// Length of the frame: 17 bytes.
    pub const LEN: usize = 1 + 16;

    /// The frame in wire form.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = ADDRESS_CHALLENGE;
        out[1..].copy_from_slice(&self.token);
        out
    }

    /// Decodes a challenge. The frame has a fixed size: a longer datagram
    /// is [`DecodeError::TrailingBytes`].
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        expect_type(datagram, ADDRESS_CHALLENGE)?;
        let (fixed, rest) = datagram
            .split_first_chunk::<{ Self::LEN }>()
            .ok_or_else(|| truncated(Self::LEN, datagram))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                frame_type: u64::from(ADDRESS_CHALLENGE),
                extra: rest.len(),
            });
        }
        let [_, token @ ..] = *fixed;
        Ok(Self { token })
    }
}

/// An `OBSERVE_REQUEST` frame: asks a bootstrap's observe socket for the
/// source address it sees. The token is chosen by the requester (from a
/// CSPRNG) and echoed in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserveRequest {
    /// The token the reply must carry.
    pub token: [u8; 16],
}

impl ObserveRequest {
    /// The shortest request: 36 bytes, as long as the longest reply
    /// ([`ObserveReply::MAX_LEN`]), so that no reply is larger than the
    /// request it answers.
    pub const MIN_LEN: usize = ObserveReply::MAX_LEN;
    /// Length of the fixed fields (type and token): 17 bytes.
    const FIXED: usize = 1 + 16;

    /// The request in wire form: the token, zero-padded to
    /// [`Self::MIN_LEN`].
    pub fn to_bytes(self) -> [u8; Self::MIN_LEN] {
        let mut out = [0; Self::MIN_LEN];
        out[0] = OBSERVE_REQUEST;
        out[1..Self::FIXED].copy_from_slice(&self.token);
        out
    }

    /// Decodes a request of at least [`Self::MIN_LEN`] bytes; the padding
    /// after the token is ignored. A shorter one is
    /// [`DecodeError::Truncated`] (it could not be answered without
    /// amplification).
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        expect_type(datagram, OBSERVE_REQUEST)?;
        if datagram.len() < Self::MIN_LEN {
            return Err(truncated(Self::MIN_LEN, datagram));
        }
        let (fixed, _padding) = datagram
            .split_first_chunk::<{ Self::FIXED }>()
            .ok_or_else(|| truncated(Self::MIN_LEN, datagram))?;
        let [_, token @ ..] = *fixed;
        Ok(Self { token })
    }

    /// Answers a received `OBSERVE_REQUEST` datagram: decodes it and
    /// appends the `OBSERVE_REPLY` telling `observed` to `out`, but only if
    /// the reply is not longer than `request_datagram` (anti-amplification;
    /// with [`Self::MIN_LEN`] it never is). Returns the decoded request.
    ///
    /// Fails if the datagram is not a valid request; `out` is then
    /// untouched.
    pub fn answer(
        request_datagram: &[u8],
        observed: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Result<Self, DecodeError> {
        let request = Self::decode(request_datagram)?;
        let reply = ObserveReply {
            token: request.token,
            observed,
        };
        if reply.len() > request_datagram.len() {
            return Err(truncated(reply.len(), request_datagram));
        }
        reply.encode(out);
        Ok(request)
    }
}

/// An `OBSERVE_REPLY` frame: a bootstrap's observe socket tells the
/// requester the source address it saw. Addresses travel as IP and port
/// only (an IPv6 flow label and scope id decode as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObserveReply {
    /// The request's token.
    pub token: [u8; 16],
    /// The request's source address, as the observe socket saw it.
    pub observed: SocketAddr,
}

impl ObserveReply {
    /// Length of a reply with an IPv4 address: 24 bytes.
    pub const LEN_V4: usize = 1 + 16 + 1 + 4 + 2;
    /// Length of a reply with an IPv6 address, the longest: 36 bytes.
    pub const MAX_LEN: usize = 1 + 16 + 1 + 16 + 2;

    /// The reply's length in bytes (24 or 36).
    pub fn len(&self) -> usize {
        match self.observed {
            SocketAddr::V4(_) => Self::LEN_V4,
            SocketAddr::V6(_) => Self::MAX_LEN,
        }
    }

    /// Always false: a reply is never empty (for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the reply to `out`; returns the number of bytes written.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        out.reserve(self.len());
        out.push(OBSERVE_REPLY);
        out.extend_from_slice(&self.token);
        match self.observed.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&self.observed.port().to_be_bytes());
        self.len()
    }

    /// Decodes a reply. Its size is fixed by its family: a longer datagram
    /// is [`DecodeError::TrailingBytes`], a family other than 4 or 6
    /// [`DecodeError::Invalid`].
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        expect_type(datagram, OBSERVE_REPLY)?;
        let (fixed, rest) = datagram
            .split_first_chunk::<18>()
            .ok_or_else(|| truncated(Self::LEN_V4, datagram))?;
        let [_, token @ .., family] = *fixed;
        let (ip, rest) = match family {
            4 => {
                let (ip, rest) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| truncated(Self::LEN_V4, datagram))?;
                (IpAddr::V4(Ipv4Addr::from(*ip)), rest)
            }
            6 => {
                let (ip, rest) = rest
                    .split_first_chunk::<16>()
                    .ok_or_else(|| truncated(Self::MAX_LEN, datagram))?;
                (IpAddr::V6(Ipv6Addr::from(*ip)), rest)
            }
            _ => {
                return Err(DecodeError::Invalid {
                    field: "OBSERVE_REPLY family",
                    reason: "not 4 (IPv4) or 6 (IPv6)",
                })
            }
        };
        let needed = if family == 4 {
            Self::LEN_V4
        } else {
            Self::MAX_LEN
        };
        let (port, rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| truncated(needed, datagram))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                frame_type: u64::from(OBSERVE_REPLY),
                extra: rest.len(),
            });
        }
        Ok(Self {
            token,
            observed: SocketAddr::new(ip, u16::from_be_bytes(*port)),
        })
    }
}

/// A decoded raw frame, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawFrame<'a> {
    /// `RELAY_DATA`.
    Relay {
        /// The relay channel.
        channel: u32,
        /// The relayed QUIC packet.
        payload: &'a [u8],
    },
    /// `PUNCH_PROBE` or `PUNCH_ACK`.
    Probe(Probe),
    /// `ADDRESS_CHALLENGE`.
    AddressChallenge(AddressChallenge),
    /// `OBSERVE_REQUEST` (only a bootstrap's observe socket answers it).
    ObserveRequest(ObserveRequest),
    /// `OBSERVE_REPLY`.
    ObserveReply(ObserveReply),
    /// `DATA` or `DATA_SIGNAL`: a sealed data plane frame.
    Data {
        /// Its header.
        header: super::data::DataHeader,
        /// The sealed payload and its tag.
        sealed: &'a [u8],
    },
}

/// Decodes any raw frame (a datagram classified as [`PacketClass::Raw`]).
pub fn parse_raw(datagram: &[u8]) -> Result<RawFrame<'_>, DecodeError> {
    match datagram.first() {
        Some(&RELAY_DATA) => {
            parse_relay(datagram).map(|(channel, payload)| RawFrame::Relay { channel, payload })
        }
        Some(&PUNCH_PROBE | &PUNCH_ACK) => Probe::decode(datagram).map(RawFrame::Probe),
        Some(&ADDRESS_CHALLENGE) => {
            AddressChallenge::decode(datagram).map(RawFrame::AddressChallenge)
        }
        Some(&OBSERVE_REQUEST) => ObserveRequest::decode(datagram).map(RawFrame::ObserveRequest),
        Some(&OBSERVE_REPLY) => ObserveReply::decode(datagram).map(RawFrame::ObserveReply),
        Some(&DATA | &DATA_SIGNAL) => super::data::DataHeader::decode(datagram)
            .map(|(header, sealed)| RawFrame::Data { header, sealed }),
        _ => Err(type_error(datagram, RELAY_DATA)),
    }
}

/// A `Truncated` error for a frame of `needed` bytes.
pub(super) fn truncated(needed: usize, datagram: &[u8]) -> DecodeError {
    DecodeError::Truncated {
        needed,
        available: datagram.len(),
    }
}

/// Checks that `datagram` starts with `expected`.
fn expect_type(datagram: &[u8], expected: u8) -> Result<(), DecodeError> {
    match datagram.first() {
        Some(&b) if b == expected => Ok(()),
        _ => Err(type_error(datagram, expected)),
    }
}

/// The error for a datagram that does not start with `expected`: empty
/// (`Truncated`), a known type (`UnexpectedType`) or an unknown one.
pub(super) fn type_error(datagram: &[u8], expected: u8) -> DecodeError {
    match datagram.first() {
        None => truncated(1, datagram),
        Some(
            &found @ (RELAY_DATA | PUNCH_PROBE | PUNCH_ACK | ADDRESS_CHALLENGE | OBSERVE_REQUEST
            | OBSERVE_REPLY | DATA | DATA_SIGNAL),
        ) => DecodeError::UnexpectedType {
            expected: u64::from(expected),
            found: u64::from(found),
        },
        Some(&found) => DecodeError::UnknownType {
            frame_type: u64::from(found),
        },
    }
}
