//! Tests of the `proto` codecs: hand-written hex vectors, malformed input and
//! property tests.

mod cert;
mod control_vectors;
mod malformed;
mod props;
mod raw_vectors;

/// Parses a hex string; whitespace is ignored. Test helper: panics on
/// malformed hex.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("bad hex {pair:?}"))
        })
        .collect()
}

#[test]
fn hex_helper() {
    assert_eq!(hex("00 ff\n1a"), [0x00, 0xff, 0x1a]);
    assert!(hex("").is_empty());
}
