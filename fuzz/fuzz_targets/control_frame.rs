//! Fuzzes the control stream decoder.
//!
//! Decodes frames one after another from arbitrary bytes; any message that
//! decodes must re-encode, and the re-encoding must decode to the same value
//! and consume exactly its own length.
#![no_main]

use antq::proto::{decode_frame, ControlMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((msg, used))) = decode_frame(rest) {
        assert!(used > 0 && used <= rest.len());
        round_trip(&msg);
        rest = &rest[used..];
    }
});

fn round_trip(msg: &ControlMessage) {
    let mut out = Vec::new();
    msg.encode(&mut out).expect("a decoded message must encode");
    match decode_frame(&out) {
        Ok(Some((again, used))) => {
            assert_eq!(&again, msg);
            assert_eq!(used, out.len());
        }
        other => panic!("re-encoded {msg:?} decodes as {other:?}"),
    }
    for cut in 0..out.len() {
        assert_eq!(decode_frame(&out[..cut]), Ok(None));
    }
}
