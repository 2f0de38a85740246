//! Stream framing of control messages: `[type][length][payload]`.
//!
//! Encoding ([`ControlMessage::encode`]) and the incremental decoder
//! ([`decode_frame`]); see the [module documentation](crate::proto) for the
//! payload layouts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::cert::Certificate;
use super::control::{
    frame_type as ft, ControlMessage, MemberQuery, NatClass, UnavailableReason, MAX_PAYLOAD_LEN,
};
use super::error::{DecodeError, EncodeError};
use super::reader::Reader;
use super::varint::{decode_varint, encode_varint};

impl ControlMessage {
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
                start_at_unix_micros,
            } => {
                encode_varint(u64::from(*round), out)?;
                encode_varint(*paired_with_sequence, out)?;
                put_addr(addr, out);
                encode_varint(*delay_ms, out)?;
                out.extend_from_slice(token);
                encode_varint(*start_at_unix_micros, out)?;
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
            Self::AddressProof { token } => out.extend_from_slice(token),
            Self::Ping { token } | Self::Pong { token } => out.extend_from_slice(token),
            Self::NatMapping { class } => {
                encode_varint(class.code(), out)?;
            }
            Self::BirthdayMeNow {
                round,
                token,
                delay_ms,
                start_at_unix_micros,
                sender_easy,
                easy,
                hard,
            } => {
                if easy.is_ipv4() != hard.is_ipv4() {
                    return Err(EncodeError::MixedFamilies(self.frame_type()));
                }
                encode_varint(u64::from(*round), out)?;
                out.extend_from_slice(token);
                encode_varint(*delay_ms, out)?;
                encode_varint(*start_at_unix_micros, out)?;
                out.push(u8::from(*sender_easy));
                put_addr(easy, out);
                put_ip(hard, out);
            }
            Self::ObserveAt { port } => out.extend_from_slice(&port.to_be_bytes()),
            Self::MemberRegister { cert } => out.extend_from_slice(&cert.encode()),
            Self::MemberLookup { query } | Self::NoMember { query } => put_query(query, out),
            Self::Member { query, cert } => {
                put_query(query, out);
                out.extend_from_slice(&cert.encode());
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

/// Appends an IP address: 4 or 16 bytes.
fn put_ip(ip: &IpAddr, out: &mut Vec<u8>) {
    match ip {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
}

/// Reads an IP address whose family is given by the parity of `frame_type`.
fn get_ip(r: &mut Reader<'_>, frame_type: u64) -> Result<IpAddr, DecodeError> {
    Ok(if frame_type & 1 == 0 {
        IpAddr::V4(r.ipv4()?)
    } else {
        IpAddr::V6(r.ipv6()?)
    })
}

/// Appends a member query: `0` and a key, or `4`/`6` and an address.
fn put_query(query: &MemberQuery, out: &mut Vec<u8>) {
    match query {
        MemberQuery::Key(key) => {
            out.push(0);
            out.extend_from_slice(key);
        }
        MemberQuery::Addr(IpAddr::V4(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        MemberQuery::Addr(IpAddr::V6(ip)) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// Reads a member query.
fn get_query(r: &mut Reader<'_>) -> Result<MemberQuery, DecodeError> {
    Ok(match r.array::<1>()?[0] {
        0 => MemberQuery::Key(r.array()?),
        4 => MemberQuery::Addr(IpAddr::V4(r.ipv4()?)),
        6 => MemberQuery::Addr(IpAddr::V6(r.ipv6()?)),
        _ => {
            return Err(DecodeError::Invalid {
                field: "member query",
                reason: "kind is neither 0 (key), 4 nor 6 (address)",
            })
        }
    })
}

/// Decodes a certificate that takes the rest of a payload.
fn get_cert(r: &mut Reader<'_>) -> Result<Box<Certificate>, DecodeError> {
    Ok(Box::new(Certificate::decode(r.rest())?.0))
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
            start_at_unix_micros: r.varint()?,
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
        ft::ADDRESS_PROOF => ControlMessage::AddressProof { token: r.array()? },
        ft::MEMBER_REGISTER => ControlMessage::MemberRegister {
            cert: get_cert(&mut r)?,
        },
        ft::MEMBER_LOOKUP => ControlMessage::MemberLookup {
            query: get_query(&mut r)?,
        },
        ft::MEMBER => ControlMessage::Member {
            query: get_query(&mut r)?,
            cert: get_cert(&mut r)?,
        },
        ft::NO_MEMBER => ControlMessage::NoMember {
            query: get_query(&mut r)?,
        },
        ft::NAT_MAPPING => ControlMessage::NatMapping {
            class: NatClass::from_code(r.varint()?),
        },
        ft::BIRTHDAY_ME_NOW_V4 | ft::BIRTHDAY_ME_NOW_V6 => ControlMessage::BirthdayMeNow {
            round: r.varint_u32("round")?,
            token: r.array()?,
            delay_ms: r.varint()?,
            start_at_unix_micros: r.varint()?,
            sender_easy: match r.array::<1>()?[0] {
                0 => false,
                1 => true,
                _ => {
                    return Err(DecodeError::Invalid {
                        field: "sender_easy",
                        reason: "neither 0 nor 1",
                    })
                }
            },
            easy: get_addr(&mut r, frame_type)?,
            hard: get_ip(&mut r, frame_type)?,
        },
        ft::PING => ControlMessage::Ping { token: r.array()? },
        ft::PONG => ControlMessage::Pong { token: r.array()? },
        ft::OBSERVE_AT => ControlMessage::ObserveAt { port: r.u16_be()? },
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
