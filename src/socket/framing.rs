//! Framing of datagrams on a TCP stream (sans-IO), for hosts whose network
//! drops all UDP (see [`super::tcp`]).
//!
//! ```text
//! client → server: PREFACE = "antq-tcp/1\n" (11 bytes), then frames
//! both directions: frame = [length: u16 BE][datagram: length bytes]
//! ```
//!
//! A frame carries exactly one datagram that would otherwise have been one
//! UDP payload: a QUIC packet or an antq raw frame (`RELAY_DATA`). Lengths of
//! 0 and above [`MAX_DATAGRAM`] are protocol errors, as is a wrong preface;
//! the stream is then closed. Only the client sends a preface: the server
//! proves itself in the QUIC handshake that follows.

use crate::proto::raw::RelayHeader;

/// What a client sends first: protocol name and version.
pub const PREFACE: &[u8; 11] = b"antq-tcp/1\n";
/// The largest datagram a frame may carry: a 1500-byte packet plus a relay
/// header (quinn's MTU discovery stops at 1452 bytes by default).
pub const MAX_DATAGRAM: usize = 1500 + RelayHeader::LEN;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 2;

/// Why a stream's bytes are not valid framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream did not start with [`PREFACE`].
    #[error("bad preface (not an antq-tcp/1 client)")]
    BadPreface,
    /// A frame announced length 0.
    #[error("zero-length frame")]
    ZeroLength,
    /// A frame announced more than [`MAX_DATAGRAM`] bytes.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The stream ended in the middle of the preface or a frame.
    #[error("stream ended inside a frame ({buffered} bytes left over)")]
    Truncated {
        /// Bytes received but not forming a whole frame.
        buffered: usize,
    },
}

/// Appends one frame carrying `datagram` to `out`.
pub fn encode_frame(datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = datagram.len();
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if len > MAX_DATAGRAM {
        return Err(FrameError::TooLong {
            len,
            max: MAX_DATAGRAM,
        });
    }
    let prefix = u16::try_from(len).map_err(|_| FrameError::TooLong {
        len,
        max: MAX_DATAGRAM,
    })?;
    out.reserve(LEN_PREFIX + len);
    out.extend_from_slice(&prefix.to_be_bytes());
    out.extend_from_slice(datagram);
    Ok(())
}

/// Splits a byte stream into datagrams.
///
/// Feed it with [`push`](Self::push), then take every complete frame with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`; at the end
/// of the stream, [`finish`](Self::finish) reports a partial frame. After an
/// error the decoder stays failed. It buffers at most one partial frame plus
/// the bytes of the last push.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    /// Preface bytes still expected (0 once it was read in full).
    preface_left: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder for the server side (expects [`PREFACE`] first) or the
    /// client side (frames only).
    pub fn new(expect_preface: bool) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            preface_left: if expect_preface { PREFACE.len() } else { 0 },
            failed: None,
        }
    }

    /// Whether the preface has been read (always true on the client side).
    pub fn preface_done(&self) -> bool {
        self.preface_left == 0
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete datagram, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let pending = &self.buf[self.start..];
        if self.preface_left > 0 {
            let offset = PREFACE.len() - self.preface_left;
            let take = pending.len().min(self.preface_left);
            if pending[..take] != PREFACE[offset..offset + take] {
                return Err(self.fail(FrameError::BadPreface));
            }
            self.start += take;
            self.preface_left -= take;
            if self.preface_left > 0 {
                return Ok(None);
            }
        }
        let pending = &self.buf[self.start..];
        let Some((prefix, rest)) = pending.split_first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*prefix));
        if len == 0 {
            return Err(self.fail(FrameError::ZeroLength));
        }
        if len > MAX_DATAGRAM {
            return Err(self.fail(FrameError::TooLong {
                len,
                max: MAX_DATAGRAM,
            }));
        }
        if rest.len() < len {
            return Ok(None);
        }
        let begin = self.start + LEN_PREFIX;
        self.start = begin + len;
        Ok(self.buf.get(begin..begin + len))
    }

    /// Checks the end of the stream: an error if it stopped inside the
    /// preface or a frame (or the decoder had failed).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let buffered = self.buf.len() - self.start;
        if buffered > 0 || self.preface_left > 0 {
            return Err(FrameError::Truncated { buffered });
        }
        Ok(())
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = Some(error);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        while let Some(f) = decoder.next_frame()? {
            out.push(f.to_vec());
        }
        Ok(out)
    }

    fn stream(preface: bool, datagrams: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        if preface {
            out.extend_from_slice(PREFACE);
        }
        for d in datagrams {
            encode_frame(d, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn whole_stream_decodes() {
        let bytes = stream(true, &[b"\x40abc", b"\x01\0\0\0\x07quic"]);
        let mut d = FrameDecoder::new(true);
        d.push(&bytes);
        assert_eq!(
            frames(&mut d).unwrap(),
            vec![b"\x40abc".to_vec(), b"\x01\0\0\0\x07quic".to_vec()]
        );
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn split_across_reads_at_every_position() {
        let big = vec![0x55; MAX_DATAGRAM];
        let bytes = stream(true, &[b"\x40a", &big, b"\x41bc"]);
        for chunk in 1..=bytes.len() {
            let mut d = FrameDecoder::new(true);
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                d.push(piece);
                got.extend(frames(&mut d).unwrap());
            }
            assert_eq!(
                got,
                vec![b"\x40a".to_vec(), big.clone(), b"\x41bc".to_vec()]
            );
            assert_eq!(d.finish(), Ok(()), "chunk {chunk}");
            if chunk > 64 {
                break;
            }
        }
        // One byte at a time, across the preface and the length prefix.
        let mut d = FrameDecoder::new(true);
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            got.extend(frames(&mut d).unwrap());
        }
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn truncated_stream_is_reported() {
        let bytes = stream(false, &[b"\x40abcdef"]);
        for cut in 1..bytes.len() {
            let mut d = FrameDecoder::new(false);
            d.push(&bytes[..cut]);
            assert_eq!(frames(&mut d).unwrap(), Vec::<Vec<u8>>::new());
            assert_eq!(
                d.finish(),
                Err(FrameError::Truncated { buffered: cut }),
                "cut {cut}"
            );
        }
        let mut d = FrameDecoder::new(true);
        d.push(&PREFACE[..4]);
        assert_eq!(frames(&mut d).unwrap().len(), 0);
        assert!(matches!(d.finish(), Err(FrameError::Truncated { .. })));
        assert!(matches!(
            FrameDecoder::new(true).finish(),
            Err(FrameError::Truncated { buffered: 0 })
        ));
        assert_eq!(FrameDecoder::new(false).finish(), Ok(()));
    }

    #[test]
    fn oversize_frame_fails_and_stays_failed() {
        let mut d = FrameDecoder::new(false);
        let len = u16::try_from(MAX_DATAGRAM + 1).unwrap();
        d.push(&len.to_be_bytes());
        let err = FrameError::TooLong {
            len: MAX_DATAGRAM + 1,
            max: MAX_DATAGRAM,
        };
        assert_eq!(d.next_frame(), Err(err));
        d.push(&[0; 8]);
        assert_eq!(d.next_frame(), Err(err));
        assert_eq!(d.finish(), Err(err));
        let mut d = FrameDecoder::new(false);
        d.push(&[0xff, 0xff]);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLong { len: 65535, .. })
        ));
        assert_eq!(
            encode_frame(&vec![1; MAX_DATAGRAM + 1], &mut Vec::new()),
            Err(err)
        );
    }

    #[test]
    fn zero_length_frame_fails() {
        let mut d = FrameDecoder::new(false);
        d.push(&[0, 0, 0x40]);
        assert_eq!(d.next_frame(), Err(FrameError::ZeroLength));
        assert_eq!(
            encode_frame(&[], &mut Vec::new()),
            Err(FrameError::ZeroLength)
        );
        // A good frame before it is still delivered.
        let mut d = FrameDecoder::new(false);
        let mut bytes = stream(false, &[b"\x40x"]);
        bytes.extend_from_slice(&[0, 0]);
        d.push(&bytes);
        assert_eq!(d.next_frame(), Ok(Some(&b"\x40x"[..])));
        assert_eq!(d.next_frame(), Err(FrameError::ZeroLength));
    }

    #[test]
    fn bad_preface_fails_early() {
        let mut d = FrameDecoder::new(true);
        d.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadPreface));
        // A wrong byte is seen before the whole preface has arrived.
        let mut d = FrameDecoder::new(true);
        d.push(b"antq-tcp/2");
        assert_eq!(d.next_frame(), Err(FrameError::BadPreface));
        // A client-side decoder does not expect one: the bytes are frames.
        let mut d = FrameDecoder::new(false);
        d.push(PREFACE);
        assert!(d.next_frame().is_err());
    }
}
