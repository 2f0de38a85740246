//! The data plane's wire format: tunnel packets between two peers beside
//! QUIC, in raw `DATA` frames sealed with keys from their QUIC connection
//! (keys, counters and the replay window are in `crate::node::data`).
//!
//! ```text
//! DATA [0x07][receiver: u32 BE][counter: u64 BE][sealed payload][tag: 16]
//! ```
//!
//! - `receiver` names the session at the receiving peer (both ends derive
//!   it from their connection's TLS exporter, one per direction).
//! - `counter` is the sender's packet number in this direction: it never
//!   repeats, it is the AEAD nonce (`00 00 00 00` + counter), and its top
//!   bits select the key epoch (`counter >> 22`).
//! - The 13 header bytes are the AEAD's associated data; the tag is
//!   AES-256-GCM's.
//!
//! Inside the seal, the payload's first byte says what it is:
//!
//! ```text
//! IP packet   [0x4_ or 0x6_ ...]      an IPv4 / IPv6 packet for the tunnel
//! DATA_HELLO  [0x00][token: 8]        "my receive side is up; answer me"
//! DATA_REPLY  [0x01][token: 8]        the answer to a hello, echoing its token
//! ```
//!
//! A peer sends data frames only after it has seen an authenticated frame
//! from the other end (a hello or a reply): until then the other end may not
//! be ready for them. A reply's token is the hello's, so a hello also
//! proves that its destination address reaches the peer (only the peer can
//! open it, and only there).
//!
//! Vector: header `{ receiver: 0x01020304, counter: 0x0a0b }` is
//! `07 01020304 0000000000000a0b` (13 bytes); `DATA_HELLO` with token
//! `00 01 .. 07` is `00 0001020304050607`.

use super::error::DecodeError;
use super::raw::{expect_type, truncated, DATA};

/// Length of the AEAD tag at the end of a `DATA` frame.
pub const TAG_LEN: usize = 16;

/// The header of a `DATA` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// The receiving peer's session.
    pub receiver: u32,
    /// The sender's packet counter (the nonce).
    pub counter: u64,
}

impl DataHeader {
    /// Length of the header in bytes: 13.
    pub const LEN: usize = 13;

    /// Bytes a `DATA` frame adds to its payload: header and tag (29).
    pub const OVERHEAD: usize = Self::LEN + TAG_LEN;

    /// The header in wire form.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = DATA;
        out[1..5].copy_from_slice(&self.receiver.to_be_bytes());
        out[5..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Splits a `DATA` frame into its header and the sealed payload with
    /// its tag (at least [`TAG_LEN`] bytes).
    pub fn decode(datagram: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        expect_type(datagram, DATA)?;
        let (header, sealed) = datagram
            .split_first_chunk::<{ Self::LEN }>()
            .filter(|(_, sealed)| sealed.len() >= TAG_LEN)
            .ok_or_else(|| truncated(Self::OVERHEAD, datagram))?;
        let [_, r @ ..] = *header;
        let (receiver, counter) = r.split_at(4);
        Ok((
            DataHeader {
                receiver: u32::from_be_bytes(receiver.try_into().unwrap_or_default()),
                counter: u64::from_be_bytes(counter.try_into().unwrap_or_default()),
            },
            sealed,
        ))
    }
}

/// First payload byte of a `DATA_HELLO`.
pub const DATA_HELLO: u8 = 0x00;
/// First payload byte of a `DATA_REPLY`.
pub const DATA_REPLY: u8 = 0x01;

/// An opened `DATA` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataPayload<'a> {
    /// An IP packet for the tunnel (first nibble 4 or 6; not checked
    /// further here).
    Packet(&'a [u8]),
    /// `DATA_HELLO`: the sender's receive side is up; answer with a reply.
    Hello {
        /// Echoed by the reply.
        token: [u8; 8],
    },
    /// `DATA_REPLY`: the answer to our hello.
    Reply {
        /// The hello's token.
        token: [u8; 8],
    },
}

/// Length of a hello or a reply payload.
pub const SIGNAL_LEN: usize = 9;

impl<'a> DataPayload<'a> {
    /// Sorts an opened payload by its first byte.
    pub fn decode(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(&first) = payload.first() else {
            return Err(truncated(1, payload));
        };
        match first {
            DATA_HELLO | DATA_REPLY => {
                let token: [u8; 8] = match payload {
                    [_, token @ ..] => token.try_into().map_err(|_| {
                        if payload.len() < SIGNAL_LEN {
                            truncated(SIGNAL_LEN, payload)
                        } else {
                            DecodeError::TrailingBytes {
                                frame_type: u64::from(first),
                                extra: payload.len() - SIGNAL_LEN,
                            }
                        }
                    })?,
                    [] => return Err(truncated(SIGNAL_LEN, payload)),
                };
                Ok(if first == DATA_HELLO {
                    DataPayload::Hello { token }
                } else {
                    DataPayload::Reply { token }
                })
            }
            b if b >> 4 == 4 || b >> 4 == 6 => Ok(DataPayload::Packet(payload)),
            b => Err(DecodeError::UnknownType {
                frame_type: u64::from(b),
            }),
        }
    }

    /// A hello or a reply in wire form.
    pub fn signal(hello: bool, token: [u8; 8]) -> [u8; SIGNAL_LEN] {
        let mut out = [0; SIGNAL_LEN];
        out[0] = if hello { DATA_HELLO } else { DATA_REPLY };
        out[1..].copy_from_slice(&token);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raw::{classify, parse_raw, PacketClass, RawFrame};

    #[test]
    fn header_vector() {
        let h = DataHeader {
            receiver: 0x0102_0304,
            counter: 0x0a0b,
        };
        let wire = h.to_bytes();
        assert_eq!(
            wire,
            [0x07, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b],
            "the module's vector"
        );
        assert_eq!(classify(wire[0]), PacketClass::Raw);
        let mut frame = wire.to_vec();
        frame.extend_from_slice(&[0xee; TAG_LEN]);
        assert_eq!(DataHeader::decode(&frame), Ok((h, &[0xee; TAG_LEN][..])));
        assert_eq!(
            parse_raw(&frame),
            Ok(RawFrame::Data {
                header: h,
                sealed: &[0xee; TAG_LEN]
            })
        );
    }

    #[test]
    fn short_or_foreign_frames_are_refused() {
        let mut frame = DataHeader {
            receiver: 1,
            counter: 2,
        }
        .to_bytes()
        .to_vec();
        frame.extend_from_slice(&[0; TAG_LEN - 1]);
        assert_eq!(
            DataHeader::decode(&frame),
            Err(DecodeError::Truncated {
                needed: DataHeader::OVERHEAD,
                available: frame.len()
            })
        );
        assert!(DataHeader::decode(&[]).is_err());
        assert!(matches!(
            DataHeader::decode(&[0x01; 40]),
            Err(DecodeError::UnexpectedType { .. })
        ));
    }

    #[test]
    fn payload_kinds() {
        let token = [0, 1, 2, 3, 4, 5, 6, 7];
        let hello = DataPayload::signal(true, token);
        assert_eq!(hello, [0, 0, 1, 2, 3, 4, 5, 6, 7], "the module's vector");
        assert_eq!(
            DataPayload::decode(&hello),
            Ok(DataPayload::Hello { token })
        );
        let reply = DataPayload::signal(false, token);
        assert_eq!(
            DataPayload::decode(&reply),
            Ok(DataPayload::Reply { token })
        );
        assert!(DataPayload::decode(&hello[..8]).is_err());
        let mut long = hello.to_vec();
        long.push(0);
        assert!(DataPayload::decode(&long).is_err());
        assert!(DataPayload::decode(&[]).is_err());
        assert!(DataPayload::decode(&[0x02, 0]).is_err());
        assert!(DataPayload::decode(&[0x55]).is_err());
        let v4 = [0x45, 0, 0, 20];
        assert_eq!(DataPayload::decode(&v4), Ok(DataPayload::Packet(&v4)));
        let v6 = [0x60, 0];
        assert_eq!(DataPayload::decode(&v6), Ok(DataPayload::Packet(&v6)));
    }
}
