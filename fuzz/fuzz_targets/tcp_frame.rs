//! Fuzzes the TCP stream framing decoder: arbitrary bytes, fed whole and in
//! pieces split at fuzzer-chosen points, must give the same frames and the
//! same error; every decoded frame must re-encode to the bytes it came from.
#![no_main]

use antq::socket::framing::{
    encode_frame, FrameDecoder, FrameError, LEN_PREFIX, MAX_DATAGRAM, PREFACE,
};
use libfuzzer_sys::fuzz_target;

/// Decodes `pieces` in order; returns the frames, the first error, and the
/// end-of-stream verdict.
fn run<'a>(
    preface: bool,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Vec<u8>>, Option<FrameError>, Result<(), FrameError>) {
    let mut d = FrameDecoder::new(preface);
    let mut frames = Vec::new();
    for piece in pieces {
        let decoded = d.decode(piece, |f| {
            assert!(!f.is_empty() && f.len() <= MAX_DATAGRAM);
            frames.push(f.to_vec());
        });
        // It never holds more than one partial frame.
        assert!(d.capacity() <= LEN_PREFIX + MAX_DATAGRAM);
        if let Err(e) = decoded {
            return (frames, Some(e), d.finish());
        }
    }
    (frames, None, d.finish())
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let preface = control & 1 == 1;
    let chunk = usize::from(control >> 1).max(1);

    let whole = run(preface, std::iter::once(body));
    let split = run(preface, body.chunks(chunk));
    assert_eq!(whole, split, "split at {chunk} differs");
    let (frames, error, finish) = whole;
    if let Some(e) = error {
        assert_eq!(finish, Err(e), "an error must stick");
    }

    // Re-encoding the frames rebuilds the consumed prefix of the input.
    let mut encoded = Vec::new();
    if preface && (!frames.is_empty() || finish.is_ok()) {
        encoded.extend_from_slice(PREFACE);
    }
    for f in &frames {
        encode_frame(f, &mut encoded).expect("decoded frames are encodable");
    }
    assert!(body.starts_with(&encoded), "re-encoding differs from input");
    if error.is_none() && finish.is_ok() {
        assert_eq!(encoded.len(), body.len(), "clean end consumed everything");
    }
});
