//! QUIC variable-length integers (RFC 9000 §16).
//!
//! The two most significant bits of the first byte give the encoded length
//! (`00` = 1, `01` = 2, `10` = 4, `11` = 8 bytes); the remaining bits, in
//! network byte order, are the value. Values up to [`VARINT_MAX`]
//! (2^62 - 1) are representable. Writing always uses the shortest form;
//! reading accepts any form, minimal or not.

use super::error::{DecodeError, EncodeError};

/// The largest value a QUIC varint can carry: 2^62 - 1.
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// The number of bytes the minimal encoding of `value` takes, or `None` if
/// `value` exceeds [`VARINT_MAX`].
pub fn varint_len(value: u64) -> Option<usize> {
    match value {
        0..=0x3f => Some(1),
        0x40..=0x3fff => Some(2),
        0x4000..=0x3fff_ffff => Some(4),
        0x4000_0000..=VARINT_MAX => Some(8),
        _ => None,
    }
}

/// Appends the minimal varint encoding of `value` to `out` and returns the
/// number of bytes written.
///
/// Fails with [`EncodeError::VarintOverflow`] (leaving `out` untouched) if
/// `value` exceeds [`VARINT_MAX`].
pub fn encode_varint(value: u64, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let len = varint_len(value).ok_or(EncodeError::VarintOverflow(value))?;
    // The casts below cannot truncate: `varint_len` bounded `value`.
    match len {
        1 => out.push(value as u8),
        2 => out.extend_from_slice(&(0x4000 | value as u16).to_be_bytes()),
        4 => out.extend_from_slice(&(0x8000_0000 | value as u32).to_be_bytes()),
        _ => out.extend_from_slice(&(0xc000_0000_0000_0000 | value).to_be_bytes()),
    }
    Ok(len)
}

/// Decodes the varint at the start of `buf`, returning its value and the
/// number of bytes it occupied. Non-minimal encodings are accepted.
///
/// Fails with [`DecodeError::Truncated`] if `buf` is shorter than the length
/// announced by its first byte (or empty). Bytes after the varint are
/// ignored.
pub fn decode_varint(buf: &[u8]) -> Result<(u64, usize), DecodeError> {
    let first = *buf.first().ok_or(DecodeError::Truncated {
        needed: 1,
        available: 0,
    })?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len).ok_or(DecodeError::Truncated {
        needed: len,
        available: buf.len(),
    })?;
    let value = bytes
        .iter()
        .skip(1)
        .fold(u64::from(first & 0x3f), |acc, &b| (acc << 8) | u64::from(b));
    Ok((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tests::hex;

    /// The examples of RFC 9000 Appendix A.1, plus boundaries.
    const VECTORS: &[(&str, u64)] = &[
        ("c2197c5eff14e88c", 151_288_809_941_952_652),
        ("9d7f3e7d", 494_878_333),
        ("7bbd", 15_293),
        ("25", 37),
        ("00", 0),
        ("3f", 63),
        ("4040", 64),
        ("7fff", 16_383),
        ("80004000", 16_384),
        ("bfffffff", 1_073_741_823),
        ("c000000040000000", 1_073_741_824),
        ("ffffffffffffffff", VARINT_MAX),
    ];

    #[test]
    fn vectors_encode() {
        for &(h, v) in VECTORS {
            let mut out = Vec::new();
            let n = encode_varint(v, &mut out).unwrap();
            assert_eq!(out, hex(h), "encoding {v}");
            assert_eq!(n, out.len());
            assert_eq!(varint_len(v), Some(n));
        }
    }

    #[test]
    fn vectors_decode() {
        for &(h, v) in VECTORS {
            let bytes = hex(h);
            assert_eq!(decode_varint(&bytes), Ok((v, bytes.len())), "{h}");
            // Trailing bytes are not part of the varint.
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0xaa, 0xbb]);
            assert_eq!(decode_varint(&longer), Ok((v, bytes.len())), "{h}");
        }
    }

    #[test]
    fn non_minimal_accepted() {
        // RFC 9000 A.1: 0x4025 is a two-byte encoding of 37.
        assert_eq!(decode_varint(&hex("4025")), Ok((37, 2)));
        assert_eq!(decode_varint(&hex("80000025")), Ok((37, 4)));
        assert_eq!(decode_varint(&hex("c000000000000025")), Ok((37, 8)));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            decode_varint(&[]),
            Err(DecodeError::Truncated {
                needed: 1,
                available: 0
            })
        );
        for &(h, _) in VECTORS {
            let bytes = hex(h);
            for cut in 1..bytes.len() {
                assert_eq!(
                    decode_varint(&bytes[..cut]),
                    Err(DecodeError::Truncated {
                        needed: bytes.len(),
                        available: cut
                    }),
                    "{h} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn overflow() {
        let mut out = vec![0x55];
        assert_eq!(
            encode_varint(VARINT_MAX + 1, &mut out),
            Err(EncodeError::VarintOverflow(VARINT_MAX + 1))
        );
        assert_eq!(
            encode_varint(u64::MAX, &mut out),
            Err(EncodeError::VarintOverflow(u64::MAX))
        );
        assert_eq!(out, [0x55], "output untouched on error");
        assert_eq!(varint_len(VARINT_MAX + 1), None);
    }
}
