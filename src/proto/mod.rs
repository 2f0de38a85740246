//! Control messages exchanged between peers and bootstrap nodes, and their
//! codecs.
//!
//! Everything here is sans-IO: functions turn values into bytes and bytes
//! into values, without sockets, tasks or clocks. Decoding never panics on
//! any input; malformed input is reported as a [`DecodeError`].
//!
//! There are two kinds of wire data:
//!
//! - **Control messages** ([`ControlMessage`]), sent on QUIC streams between
//!   a peer and a bootstrap node or between two peers. Encode with
//!   [`ControlMessage::encode`]; decode a stream incrementally with
//!   [`decode_frame`].
//! - **Raw UDP frames** ([`raw`]), sent as plain datagrams on the socket that
//!   QUIC also uses: relayed QUIC packets and hole-punching probes.
//!
//! # Integers
//!
//! `varint` is a QUIC variable-length integer (RFC 9000 §16, see
//! [`encode_varint`] / [`decode_varint`]): minimal on write, any length
//! accepted on read. Fixed-size integers (`u16`, `u32`) are big-endian.
//!
//! # Control stream framing
//!
//! ```text
//! [type: varint][payload length: varint][payload: length bytes]
//! ```
//!
//! The payload length is at most [`MAX_PAYLOAD_LEN`] (64 KiB). A payload must
//! be used up exactly by its fields ([`DecodeError::TrailingBytes`]
//! otherwise). Frames of unknown types are skipped by length and surface as
//! [`ControlMessage::Unknown`].
//!
//! # Addresses
//!
//! As in draft-seemann-quic-nat-traversal-02 and QUIC address discovery, the
//! frame type carries the address family: the even type of a pair means
//! IPv4, the odd type IPv6. An address (`ip, port` below) is 4 or 16 address
//! bytes followed by a 2-byte port.
//!
//! # Control frame types and payloads
//!
//! | type (v4 / v6) | name | payload |
//! |---|---|---|
//! | `0x3d7e90` / `0x3d7e91` | `ADD_ADDRESS` | `sequence: varint, ip, port` |
//! | `0x3d7e92` / `0x3d7e93` | `PUNCH_ME_NOW` | `round: varint, paired_with_sequence: varint, ip, port, delay_ms: varint, token: 16 bytes, start_at_unix_micros: varint` |
//! | `0x3d7e94` | `REMOVE_ADDRESS` | `sequence: varint` |
//! | `0x9f81a6` / `0x9f81a7` | `OBSERVED_ADDRESS` | `sequence: varint, ip, port` |
//! | `0x3d7f00` | `FORWARD` | `peer: 32 bytes, inner: one complete framed message (not a FORWARD)` |
//! | `0x3d7f01` | `RELAY_REQUEST` | `peer: 32 bytes` |
//! | `0x3d7f02` | `RELAY_GRANT` | `peer: 32 bytes, channel: u32` |
//! | `0x3d7f03` | `RELAY_CLOSE` | `channel: u32` |
//! | `0x3d7f04` | `PEER_UNAVAILABLE` | `peer: 32 bytes, reason: varint` ([`UnavailableReason`]) |
//! | `0x3d7f05` | `HELLO` | `version: varint, flags: varint` |
//! | `0x3d7f06` | `ADDRESS_PROOF` | `token: 16 bytes` |
//! | `0x3d7f07` | `MEMBER_REGISTER` | `certificate` ([`cert`]) |
//! | `0x3d7f08` | `MEMBER_LOOKUP` | `query` |
//! | `0x3d7f09` | `MEMBER` | `query, certificate` |
//! | `0x3d7f0a` | `NO_MEMBER` | `query` |
//! | `0x3d7f0b` | `PING` | `token: 8 bytes` |
//! | `0x3d7f0c` | `PONG` | `token: 8 bytes` |
//! | `0x3d7f0d` | `OBSERVE_AT` | `port: u16` |
//! | `0x3d7f10` | `NAT_MAPPING` | `class: varint` ([`NatClass`]) |
//! | `0x3d7f12` / `0x3d7f13` | `BIRTHDAY_ME_NOW` | `round: varint, token: 16 bytes, delay_ms: varint, start_at_unix_micros: varint, sender_easy: 1 byte (0/1), easy: ip, port, hard: ip` |
//!
//! The `PUNCH_ME_NOW` round must fit in a `u32` (punch probes carry it in 4
//! bytes). `peer` is an Ed25519 public key. `FORWARD` is the bootstrap's
//! relay envelope: a peer sends `FORWARD { peer: target, inner }`, and the
//! bootstrap delivers `FORWARD { peer: sender, inner }` to the target.
//!
//! `RELAY_REQUEST` goes both ways. From a peer to a bootstrap it asks for a
//! relay with `peer`; the bootstrap makes one only when both keys have asked
//! for each other. From a bootstrap to a peer it says that `peer` asked for
//! a relay with us, so that we can ask too (if we want it) without waiting
//! for our next retry.
//!
//! `query` is `0` and a 32-byte key, or `4` and an IPv4 / `6` and an IPv6
//! overlay address. A certificate takes the rest of the payload and must
//! decode whole ([`cert::Certificate::decode`]). The directory messages
//! (`MEMBER_*`) are between a member and its bootstraps: a member registers
//! its certificate, and asks for another member's by key or address; the
//! bootstrap answers only members of the same network (CA), and the asker
//! verifies what it gets against its own trusted CAs.
//!
//! `NAT_MAPPING` and `BIRTHDAY_ME_NOW` travel in `FORWARD` between two
//! peers: a peer's NAT class goes with its candidates, and the leader of a
//! pair where one NAT maps endpoint-independently and the other per
//! destination starts birthday probing with `BIRTHDAY_ME_NOW` instead of
//! `PUNCH_ME_NOW` (see [`crate::nat::birthday`]).
//!
//! `PING` and `PONG` are between two peers, alone on a bidirectional stream
//! that the pinging side opens: one `PING`, answered by one `PONG` with the
//! same token (`antq-tun ping`).
//!
//! `OBSERVE_AT` goes from a bootstrap to a peer, right after the first
//! `OBSERVED_ADDRESS` (not to peers on TCP): the bootstrap answers
//! `OBSERVE_REQUEST` raw frames on `port` of its IP (see [`raw`]), so that
//! the peer sees its NAT's mapping toward a second destination of the same
//! bootstrap. Example: `OBSERVE_AT { port: 9001 }` is `80 3d 7f 0d 02 23 29`.
//! A peer that does not know the type skips it.
//!
//! Example: `HELLO { version: 1, flags: 0 }` is `80 3d 7f 05 02 01 00`.
//!
//! # Raw UDP frames
//!
//! See [`raw`]: a datagram whose first byte is in `0x00..=0x3f` is an antq
//! frame (`RELAY_DATA` 0x01, `PUNCH_PROBE` 0x02, `PUNCH_ACK` 0x03,
//! `ADDRESS_CHALLENGE` 0x04, `OBSERVE_REQUEST` 0x05, `OBSERVE_REPLY` 0x06,
//! `DATA` 0x07, whose header and sealed payloads are in [`data`]), anything
//! else is QUIC.

pub mod cert;
mod control;
pub mod data;
mod error;
mod frame;
pub mod raw;
mod reader;
mod varint;

pub use control::{
    frame_type, ControlMessage, MemberQuery, NatClass, UnavailableReason, MAX_PAYLOAD_LEN,
};
pub use error::{DecodeError, EncodeError};
pub use frame::decode_frame;
pub use varint::{decode_varint, encode_varint, varint_len, VARINT_MAX};

#[cfg(test)]
mod tests;
