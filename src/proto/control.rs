//! Control messages and their stream framing.
//!
//! See the [module documentation](crate::proto) for the wire layouts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::error::{DecodeError, EncodeError};
use super::reader::Reader;
use super::varint::{decode_varint, encode_varint};

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

    /// Whether `t` is one of the frame types above.
    pub fn is_known(t: u64) -> bool {
        matches!(
            t,
            ADD_ADDRESS_V4..=REMOVE_ADDRESS
                | OBSERVED_ADDRESS_V4
                | OBSERVED_ADDRESS_V6
                | FORWARD..=HELLO
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
    /// Any other code, preserved as received.
    ///
    /// Build values with [`UnavailableReason::from_code`] so that known codes
    /// get their own variant; `Other(1)` would encode as code 1 and decode
    /// back as [`UnavailableReason::NotConnected`].
    Other(u64),
}

impl UnavailableReason {
    /// The wire code of this reason.
    pub fn code(self) -> u64 {
        match self {
            Self::NotConnected => 1,
            Self::NotAllowed => 2,
            Self::RateLimited => 3,
            Self::RelayDisabled => 4,
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
            other => Self::Other(other),
        }
    }
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
    /// `delay_ms` milliseconds after receipt; the punch probes of this round
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
            Self::Unknown { frame_type, .. } => *frame_type,
        }
    }

    /// Appends this message, framed as `[type][payload length][payload]`,
    /// to `out`.
    ///
    /// Fails only for messages that cannot be represented on the wire: a
    /// varint field above 2^62 - 1, a nested `FORWARD`, an `Unknown` with a
    /// known type, or a payload above [`MAX_PAYLOAD_LEN`]. On error `out` is
    /// left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_inner(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_inner(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        self.encode_payload(out)?;
        let payload_len = out.len() - start;
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(EncodeError::FrameTooLarge {
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        // Append the header after the payload, then rotate it to the front:
        // no temporary buffer and no need to know the payload size upfront.
        encode_varint(self.frame_type(), out)?;
        encode_varint(payload_len as u64, out)?;
        let header_len = out.len() - start - payload_len;
        if let Some(frame) = out.get_mut(start..) {
            frame.rotate_right(header_len);
        }
        Ok(())
    }

    fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            Self::AddAddress { sequence, addr } | Self::ObservedAddress { sequence, addr } => {
                encode_varint(*sequence, out)?;
                put_addr(addr, out);
            }
            Self::PunchMeNow {
                round,
                paired_with_sequence,
                addr,
                delay_ms,
                token,
            } => {
                encode_varint(u64::from(*round), out)?;
                encode_varint(*paired_with_sequence, out)?;
                put_addr(addr, out);
                encode_varint(*delay_ms, out)?;
                out.extend_from_slice(token);
            }
            Self::RemoveAddress { sequence } => {
                encode_varint(*sequence, out)?;
            }
            Self::Forward { peer, inner } => {
                if matches!(**inner, Self::Forward { .. }) {
                    return Err(EncodeError::NestedForward);
                }
                out.extend_from_slice(peer);
                inner.encode_inner(out)?;
            }
            Self::RelayRequest { peer } => out.extend_from_slice(peer),
            Self::RelayGrant { peer, channel } => {
                out.extend_from_slice(peer);
                out.extend_from_slice(&channel.to_be_bytes());
            }
            Self::RelayClose { channel } => out.extend_from_slice(&channel.to_be_bytes()),
            Self::PeerUnavailable { peer, reason } => {
                out.extend_from_slice(peer);
                encode_varint(reason.code(), out)?;
            }
            Self::Hello { version, flags } => {
                encode_varint(*version, out)?;
                encode_varint(*flags, out)?;
            }
            Self::Unknown {
                frame_type,
                payload,
            } => {
                if ft::is_known(*frame_type) {
                    return Err(EncodeError::KnownTypeAsUnknown(*frame_type));
                }
                out.extend_from_slice(payload);
            }
        }
        Ok(())
    }
}

/// Appends an address in wire form: 4 or 16 IP bytes, then the port (BE).
fn put_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Reads an address whose family is given by the parity of `frame_type`.
fn get_addr(r: &mut Reader<'_>, frame_type: u64) -> Result<SocketAddr, DecodeError> {
    Ok(if frame_type & 1 == 0 {
        let ip: Ipv4Addr = r.ipv4()?;
        SocketAddr::V4(SocketAddrV4::new(ip, r.u16_be()?))
    } else {
        let ip: Ipv6Addr = r.ipv6()?;
        SocketAddr::V6(SocketAddrV6::new(ip, r.u16_be()?, 0, 0))
    })
}

/// Decodes one control frame from the start of `buf`.
///
/// Returns:
/// - `Ok(Some((message, consumed)))` when `buf` starts with a complete frame;
///   `consumed` is the frame's length in bytes, the caller drops that many
///   bytes and calls again for the next frame. Frames of unknown types are
///   consumed whole and returned as [`ControlMessage::Unknown`] so that the
///   caller can skip them.
/// - `Ok(None)` when `buf` holds only the beginning of a frame (including an
///   empty `buf`): read more bytes and call again with the longer buffer.
/// - `Err(_)` when the bytes can never become a valid frame, including a
///   declared payload length above [`MAX_PAYLOAD_LEN`] (reported as soon as
///   the length field is complete). The stream is then unusable.
///
/// Never panics, whatever `buf` holds.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(ControlMessage, usize)>, DecodeError> {
    match split_frame(buf)? {
        Split::Incomplete { .. } => Ok(None),
        Split::Complete {
            frame_type,
            payload,
            consumed,
        } => decode_payload(frame_type, payload).map(|msg| Some((msg, consumed))),
    }
}

/// The outcome of looking for a frame boundary.
enum Split<'a> {
    /// At least `needed` bytes (in total) are required.
    Incomplete { needed: usize },
    /// A whole frame.
    Complete {
        frame_type: u64,
        payload: &'a [u8],
        consumed: usize,
    },
}

/// Finds the first frame in `buf` from its header, without looking at the
/// payload.
fn split_frame(buf: &[u8]) -> Result<Split<'_>, DecodeError> {
    let (frame_type, type_len) = match decode_varint(buf) {
        Ok(v) => v,
        Err(DecodeError::Truncated { needed, .. }) => return Ok(Split::Incomplete { needed }),
        Err(e) => return Err(e),
    };
    let rest = buf.get(type_len..).unwrap_or_default();
    let (len, len_len) = match decode_varint(rest) {
        Ok(v) => v,
        Err(DecodeError::Truncated { needed, .. }) => {
            return Ok(Split::Incomplete {
                needed: type_len + needed,
            })
        }
        Err(e) => return Err(e),
    };
    let too_large = DecodeError::FrameTooLarge {
        len,
        max: MAX_PAYLOAD_LEN,
    };
    let payload_len = usize::try_from(len).map_err(|_| too_large)?;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(too_large);
    }
    let header_len = type_len + len_len;
    let consumed = header_len + payload_len;
    Ok(match buf.get(header_len..consumed) {
        Some(payload) => Split::Complete {
            frame_type,
            payload,
            consumed,
        },
        None => Split::Incomplete { needed: consumed },
    })
}

/// Decodes a complete payload of type `frame_type`; the payload must be used
/// up exactly.
fn decode_payload(frame_type: u64, payload: &[u8]) -> Result<ControlMessage, DecodeError> {
    let mut r = Reader::new(payload);
    let msg = match frame_type {
        ft::ADD_ADDRESS_V4 | ft::ADD_ADDRESS_V6 => ControlMessage::AddAddress {
            sequence: r.varint()?,
            addr: get_addr(&mut r, frame_type)?,
        },
        ft::PUNCH_ME_NOW_V4 | ft::PUNCH_ME_NOW_V6 => ControlMessage::PunchMeNow {
            round: r.varint_u32("round")?,
            paired_with_sequence: r.varint()?,
            addr: get_addr(&mut r, frame_type)?,
            delay_ms: r.varint()?,
            token: r.array()?,
        },
        ft::REMOVE_ADDRESS => ControlMessage::RemoveAddress {
            sequence: r.varint()?,
        },
        ft::OBSERVED_ADDRESS_V4 | ft::OBSERVED_ADDRESS_V6 => ControlMessage::ObservedAddress {
            sequence: r.varint()?,
            addr: get_addr(&mut r, frame_type)?,
        },
        ft::FORWARD => ControlMessage::Forward {
            peer: r.array()?,
            inner: Box::new(decode_forwarded(r.rest())?),
        },
        ft::RELAY_REQUEST => ControlMessage::RelayRequest { peer: r.array()? },
        ft::RELAY_GRANT => ControlMessage::RelayGrant {
            peer: r.array()?,
            channel: r.u32_be()?,
        },
        ft::RELAY_CLOSE => ControlMessage::RelayClose {
            channel: r.u32_be()?,
        },
        ft::PEER_UNAVAILABLE => ControlMessage::PeerUnavailable {
            peer: r.array()?,
            reason: UnavailableReason::from_code(r.varint()?),
        },
        ft::HELLO => ControlMessage::Hello {
            version: r.varint()?,
            flags: r.varint()?,
        },
        _ => ControlMessage::Unknown {
            frame_type,
            payload: r.rest().to_vec(),
        },
    };
    r.finish(frame_type)?;
    Ok(msg)
}

/// Decodes the inner message of a `FORWARD`: exactly one complete frame,
/// which is not itself a `FORWARD`.
fn decode_forwarded(buf: &[u8]) -> Result<ControlMessage, DecodeError> {
    match split_frame(buf)? {
        Split::Incomplete { needed } => Err(DecodeError::Truncated {
            needed,
            available: buf.len(),
        }),
        Split::Complete { frame_type, .. } if frame_type == ft::FORWARD => {
            Err(DecodeError::NestedForward)
        }
        Split::Complete {
            frame_type,
            payload,
            consumed,
        } => {
            let extra = buf.len().saturating_sub(consumed);
            if extra != 0 {
                return Err(DecodeError::TrailingBytes {
                    frame_type: ft::FORWARD,
                    extra,
                });
            }
            decode_payload(frame_type, payload)
        }
    }
}
