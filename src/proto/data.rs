//! The data plane's wire format: datagrams between two peers beside QUIC,
//! in raw frames sealed with keys from their QUIC connection (keys,
//! counters and the replay window are in `crate::node::data`).
//!
//! ```text
//! DATA        [0x07][receiver: u32 BE][counter: u64 BE][sealed datagram][tag: 16]
//! DATA_SIGNAL [0x08][receiver: u32 BE][counter: u64 BE][sealed signal][tag: 16]
//! ```
//!
//! - `receiver` names the session at the receiving peer (both ends derive
//!   it from their connection's TLS exporter, one per direction).
//! - `counter` is the sender's frame number in this direction, shared by
//!   both types: it never repeats, it is the AEAD nonce (`00 00 00 00` +
//!   counter), and its top bits select the key epoch (`counter >> 22`).
//! - The 13 header bytes (type included) are the AEAD's associated data;
//!   the tag is AES-256-GCM's.
//! - A `DATA` payload is one datagram, whatever its bytes (the tunnel's are
//!   IP packets). A `DATA_SIGNAL` payload is a signal:
//!
//! ```text
//! HELLO  [0x00][token: 8]   "my receive side is up; answer me"
//! REPLY  [0x01][token: 8]   the answer to a hello, echoing its token
//! ```
//!
//! A peer sends `DATA` only after it has seen an authenticated frame from
//! the other end (a hello or a reply): until then the other end may not be
//! ready for them. A reply's token is the hello's: only the peer can open
//! a hello, and only where it was sent, which is what re-proving an
//! address after a move needs (the tokens are random).
//!
//! Vectors: header `{ kind: Datagram, receiver: 0x01020304, counter:
//! 0x0a0b }` is `07 01020304 0000000000000a0b` (13 bytes); a hello with
//! token `00 01 .. 07` is `00 0001020304050607`.

use super::error::DecodeError;
use super::raw::{truncated, type_error, DATA, DATA_SIGNAL};

/// Length of the AEAD tag at the end of a `DATA` frame.
pub const TAG_LEN: usize = 16;

/// Which data plane frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// `DATA`: a datagram.
    Datagram,
    /// `DATA_SIGNAL`: a [`Signal`].
    Signal,
}

/// The header of a data plane frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// `DATA` or `DATA_SIGNAL`.
    pub kind: DataKind,
    /// The receiving peer's session.
    pub receiver: u32,
    /// The sender's frame counter (the nonce).
    pub counter: u64,
}

impl DataHeader {
    /// Length of the header in bytes: 13.
    pub const LEN: usize = 13;

    /// Bytes a frame adds to its payload: header and tag (29).
    pub const OVERHEAD: usize = Self::LEN + TAG_LEN;

    /// The header in wire form.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[0] = match self.kind {
            DataKind::Datagram => DATA,
            DataKind::Signal => DATA_SIGNAL,
        };
        out[1..5].copy_from_slice(&self.receiver.to_be_bytes());
        out[5..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Splits a data plane frame into its header and the sealed payload
    /// with its tag (at least [`TAG_LEN`] bytes).
    pub fn decode(datagram: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let kind = match datagram.first() {
            Some(&DATA) => DataKind::Datagram,
            Some(&DATA_SIGNAL) => DataKind::Signal,
            _ => return Err(type_error(datagram, DATA)),
        };
        let (header, sealed) = datagram
            .split_first_chunk::<{ Self::LEN }>()
            .filter(|(_, sealed)| sealed.len() >= TAG_LEN)
            .ok_or_else(|| truncated(Self::OVERHEAD, datagram))?;
        let [_, r0, r1, r2, r3, c @ ..] = *header;
        Ok((
            DataHeader {
                kind,
                receiver: u32::from_be_bytes([r0, r1, r2, r3]),
                counter: u64::from_be_bytes(c),
            },
            sealed,
        ))
    }
}

/// First byte of a `HELLO` signal.
pub const HELLO: u8 = 0x00;
/// First byte of a `REPLY` signal.
pub const REPLY: u8 = 0x01;

/// An opened `DATA_SIGNAL` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// The sender's receive side is up; answer with a reply.
    Hello {
        /// Echoed by the reply.
        token: [u8; 8],
    },
    /// The answer to our hello.
    Reply {
        /// The hello's token.
        token: [u8; 8],
    },
}

impl Signal {
    /// Length of a signal: 9 bytes.
    pub const LEN: usize = 9;

    /// Decodes an opened signal.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let Some((&first, token)) = payload.split_first() else {
            return Err(truncated(Self::LEN, payload));
        };
        if first != HELLO && first != REPLY {
            return Err(DecodeError::UnknownType {
                frame_type: u64::from(first),
            });
        }
        let token: [u8; 8] = token.try_into().map_err(|_| {
            if payload.len() < Self::LEN {
                truncated(Self::LEN, payload)
            } else {
                DecodeError::TrailingBytes {
                    frame_type: u64::from(first),
                    extra: payload.len() - Self::LEN,
                }
            }
        })?;
        Ok(if first == HELLO {
            Signal::Hello { token }
        } else {
            Signal::Reply { token }
        })
    }

    /// The signal in wire form.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let (first, token) = match self {
            Signal::Hello { token } => (HELLO, token),
            Signal::Reply { token } => (REPLY, token),
        };
        let mut out = [0; Self::LEN];
        out[0] = first;
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
            kind: DataKind::Datagram,
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
        let signal = DataHeader {
            kind: DataKind::Signal,
            ..h
        };
        assert_eq!(signal.to_bytes()[0], 0x08);
        frame[0] = 0x08;
        assert_eq!(DataHeader::decode(&frame).unwrap().0, signal);
    }

    #[test]
    fn short_or_foreign_frames_are_refused() {
        let mut frame = DataHeader {
            kind: DataKind::Datagram,
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
        assert!(matches!(
            DataHeader::decode(&[0x09; 40]),
            Err(DecodeError::UnknownType { .. })
        ));
    }

    #[test]
    fn signals() {
        let token = [0, 1, 2, 3, 4, 5, 6, 7];
        let hello = Signal::Hello { token }.to_bytes();
        assert_eq!(hello, [0, 0, 1, 2, 3, 4, 5, 6, 7], "the module's vector");
        assert_eq!(Signal::decode(&hello), Ok(Signal::Hello { token }));
        let reply = Signal::Reply { token }.to_bytes();
        assert_eq!(Signal::decode(&reply), Ok(Signal::Reply { token }));
        assert!(Signal::decode(&hello[..8]).is_err());
        let mut long = hello.to_vec();
        long.push(0);
        assert!(Signal::decode(&long).is_err());
        assert!(Signal::decode(&[]).is_err());
        assert!(Signal::decode(&[0x02; 9]).is_err());
    }
}
