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
/// Feed it with [`decode`](Self::decode), which hands every whole datagram
/// to a callback as it goes, straight from the bytes given where they hold
/// whole frames; at the end of the stream, [`finish`](Self::finish) reports
/// a partial frame. After an error the decoder stays failed.
///
/// Memory: it keeps only the bytes of one partial frame, so it never holds
/// more than [`LEN_PREFIX`] + [`MAX_DATAGRAM`] bytes, however large the
/// reads; [`shrink`](Self::shrink) frees even that between frames (for a
/// stream that went quiet).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    /// The start of a frame that has not arrived in full.
    partial: Vec<u8>,
    /// Preface bytes still expected (0 once it was read in full).
    preface_left: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder for the server side (expects [`PREFACE`] first) or the
    /// client side (frames only).
    pub fn new(expect_preface: bool) -> Self {
        Self {
            partial: Vec::new(),
            preface_left: if expect_preface { PREFACE.len() } else { 0 },
            failed: None,
        }
    }

    /// Whether the preface has been read (always true on the client side).
    pub fn preface_done(&self) -> bool {
        self.preface_left == 0
    }

    /// Decodes `data`, the next bytes of the stream: calls `on_frame` with
    /// every datagram completed by them, in order, and keeps the start of a
    /// frame they end inside. Stops at the first error (the frames before it
    /// were handed out).
    pub fn decode(
        &mut self,
        mut data: &[u8],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.preface_left > 0 {
            let offset = PREFACE.len() - self.preface_left;
            let take = data.len().min(self.preface_left);
            let (head, rest) = data.split_at(take);
            if PREFACE.get(offset..offset + take) != Some(head) {
                return Err(self.fail(FrameError::BadPreface));
            }
            self.preface_left -= take;
            data = rest;
        }
        if !self.partial.is_empty() {
            data = self.complete_partial(data, &mut on_frame)?;
        }
        while let Some((prefix, rest)) = data.split_first_chunk::<LEN_PREFIX>() {
            let len = self.frame_len(*prefix)?;
            let Some(frame) = rest.get(..len) else {
                break;
            };
            on_frame(frame);
            data = rest.get(len..).unwrap_or_default();
        }
        if !data.is_empty() {
            self.partial.reserve_exact(LEN_PREFIX + MAX_DATAGRAM);
            self.partial.extend_from_slice(data);
        }
        Ok(())
    }

    /// Checks the end of the stream: an error if it stopped inside the
    /// preface or a frame (or the decoder had failed).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let buffered = self.partial.len();
        if buffered > 0 || self.preface_left > 0 {
            return Err(FrameError::Truncated { buffered });
        }
        Ok(())
    }

    /// Frees the buffer of partial frames if none is pending.
    pub fn shrink(&mut self) {
        if self.partial.is_empty() {
            self.partial = Vec::new();
        }
    }

    /// Bytes of buffer held (at most [`LEN_PREFIX`] + [`MAX_DATAGRAM`]).
    pub fn capacity(&self) -> usize {
        self.partial.capacity()
    }

    /// Adds `data` to the partial frame until it is whole, hands it out,
    /// and returns the bytes after it.
    fn complete_partial<'d>(
        &mut self,
        mut data: &'d [u8],
        on_frame: &mut impl FnMut(&[u8]),
    ) -> Result<&'d [u8], FrameError> {
        if self.partial.len() < LEN_PREFIX {
            let (head, rest) = data.split_at(data.len().min(LEN_PREFIX - self.partial.len()));
            self.partial.extend_from_slice(head);
            data = rest;
        }
        let Some(prefix) = self.partial.first_chunk::<LEN_PREFIX>() else {
            return Ok(data);
        };
        let whole = LEN_PREFIX + self.frame_len(*prefix)?;
        let (head, rest) = data.split_at(data.len().min(whole - self.partial.len()));
        self.partial.extend_from_slice(head);
        if self.partial.len() == whole {
            on_frame(self.partial.get(LEN_PREFIX..).unwrap_or_default());
            self.partial.clear();
        }
        Ok(rest)
    }

    /// The length a frame announces, if valid.
    fn frame_len(&mut self, prefix: [u8; LEN_PREFIX]) -> Result<usize, FrameError> {
        let len = usize::from(u16::from_be_bytes(prefix));
        if len == 0 {
            return Err(self.fail(FrameError::ZeroLength));
        }
        if len > MAX_DATAGRAM {
            return Err(self.fail(FrameError::TooLong {
                len,
                max: MAX_DATAGRAM,
            }));
        }
        Ok(len)
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = Some(error);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes`: the frames it completed, and the result.
    fn feed(d: &mut FrameDecoder, bytes: &[u8]) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut out = Vec::new();
        let result = d.decode(bytes, |f| out.push(f.to_vec()));
        (out, result)
    }

    /// The frames of `bytes`, which must decode without an error.
    fn frames(d: &mut FrameDecoder, bytes: &[u8]) -> Vec<Vec<u8>> {
        let (out, result) = feed(d, bytes);
        assert_eq!(result, Ok(()));
        out
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
        assert_eq!(
            frames(&mut d, &bytes),
            vec![b"\x40abc".to_vec(), b"\x01\0\0\0\x07quic".to_vec()]
        );
        assert_eq!(d.finish(), Ok(()));
        // Whole frames are handed out without being buffered.
        assert_eq!(d.capacity(), 0);
    }

    #[test]
    fn split_across_reads_at_every_position() {
        let big = vec![0x55; MAX_DATAGRAM];
        let bytes = stream(true, &[b"\x40a", &big, b"\x41bc"]);
        for chunk in 1..=bytes.len() {
            let mut d = FrameDecoder::new(true);
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                got.extend(frames(&mut d, piece));
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
            got.extend(frames(&mut d, std::slice::from_ref(b)));
        }
        assert_eq!(got.len(), 3);
        // Every split into two reads.
        for cut in 0..=bytes.len() {
            let mut d = FrameDecoder::new(true);
            let mut got = frames(&mut d, &bytes[..cut]);
            got.extend(frames(&mut d, &bytes[cut..]));
            assert_eq!(got.len(), 3, "cut {cut}");
            assert_eq!(got[1], big);
        }
    }

    #[test]
    fn holds_at_most_one_partial_frame() {
        let datagram: &[u8] = &[0x40; 1200];
        let burst = stream(true, &[datagram; 50]);
        let mut d = FrameDecoder::new(true);
        // A 59 KiB read ending inside a frame keeps only that frame's start.
        assert_eq!(frames(&mut d, &burst[..burst.len() - 100]).len(), 49);
        assert!(
            d.capacity() <= LEN_PREFIX + MAX_DATAGRAM,
            "{}",
            d.capacity()
        );
        assert_eq!(frames(&mut d, &burst[burst.len() - 100..]).len(), 1);
        assert!(d.capacity() <= LEN_PREFIX + MAX_DATAGRAM);
        // Between two frames, shrinking frees everything.
        d.shrink();
        assert_eq!(d.capacity(), 0);
        assert_eq!(d.finish(), Ok(()));
        // Inside a frame, it keeps the partial frame.
        let one = stream(false, &[datagram]);
        let mut d = FrameDecoder::new(false);
        assert!(frames(&mut d, &one[..700]).is_empty());
        d.shrink();
        assert!(d.capacity() >= 700);
        assert_eq!(frames(&mut d, &one[700..]), vec![datagram.to_vec()]);
    }

    #[test]
    fn truncated_stream_is_reported() {
        let bytes = stream(false, &[b"\x40abcdef"]);
        for cut in 1..bytes.len() {
            let mut d = FrameDecoder::new(false);
            assert!(frames(&mut d, &bytes[..cut]).is_empty());
            assert_eq!(
                d.finish(),
                Err(FrameError::Truncated { buffered: cut }),
                "cut {cut}"
            );
        }
        let mut d = FrameDecoder::new(true);
        assert!(frames(&mut d, &PREFACE[..4]).is_empty());
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
        let err = FrameError::TooLong {
            len: MAX_DATAGRAM + 1,
            max: MAX_DATAGRAM,
        };
        assert_eq!(feed(&mut d, &len.to_be_bytes()), (vec![], Err(err)));
        assert_eq!(feed(&mut d, &[0; 8]), (vec![], Err(err)));
        assert_eq!(d.finish(), Err(err));
        // Also when the length prefix arrives one byte at a time.
        let mut d = FrameDecoder::new(false);
        assert_eq!(feed(&mut d, &[0xff]), (vec![], Ok(())));
        assert!(matches!(
            feed(&mut d, &[0xff]).1,
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
        assert_eq!(
            feed(&mut d, &[0, 0, 0x40]),
            (vec![], Err(FrameError::ZeroLength))
        );
        assert_eq!(
            encode_frame(&[], &mut Vec::new()),
            Err(FrameError::ZeroLength)
        );
        // A good frame before it is still delivered.
        let mut d = FrameDecoder::new(false);
        let mut bytes = stream(false, &[b"\x40x"]);
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(
            feed(&mut d, &bytes),
            (vec![b"\x40x".to_vec()], Err(FrameError::ZeroLength))
        );
        assert_eq!(d.finish(), Err(FrameError::ZeroLength));
    }

    #[test]
    fn bad_preface_fails_early() {
        let mut d = FrameDecoder::new(true);
        assert_eq!(
            feed(&mut d, b"GET / HTTP/1.1\r\n").1,
            Err(FrameError::BadPreface)
        );
        // A wrong byte is seen before the whole preface has arrived.
        let mut d = FrameDecoder::new(true);
        assert_eq!(feed(&mut d, b"antq-tcp/2").1, Err(FrameError::BadPreface));
        let mut d = FrameDecoder::new(true);
        assert_eq!(feed(&mut d, b"antq-").1, Ok(()));
        assert!(!d.preface_done());
        assert_eq!(feed(&mut d, b"udp").1, Err(FrameError::BadPreface));
        // A client-side decoder does not expect one: the bytes are frames.
        let mut d = FrameDecoder::new(false);
        assert!(feed(&mut d, PREFACE).1.is_err());
    }
}
