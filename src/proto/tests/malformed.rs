//! Malformed control frames: truncation, bad lengths, bad varints, trailing
//! bytes, nested FORWARD, huge lengths, unencodable values.

use super::control_vectors::vectors;
use super::hex;
use crate::proto::{
    decode_frame, decode_varint, encode_varint, frame_type, ControlMessage as M, DecodeError as D,
    EncodeError as E, UnavailableReason, MAX_PAYLOAD_LEN, VARINT_MAX,
};

/// Splits a vector into `(type, payload)` using the header fields.
fn split(bytes: &[u8]) -> (u64, Vec<u8>) {
    let (t, tl) = decode_varint(bytes).unwrap();
    let (_, ll) = decode_varint(&bytes[tl..]).unwrap();
    (t, bytes[tl + ll..].to_vec())
}

/// Frames `payload` with a minimal header.
fn frame(t: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(t, &mut out).unwrap();
    encode_varint(payload.len() as u64, &mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

#[test]
fn every_prefix_is_incomplete() {
    for (name, h, _) in vectors() {
        let bytes = hex(h);
        for cut in 0..bytes.len() {
            assert_eq!(decode_frame(&bytes[..cut]), Ok(None), "{name} cut at {cut}");
        }
    }
}

#[test]
fn shortened_payload_is_truncated() {
    // The frame is complete, but its payload lacks bytes its fields need.
    for (name, h, msg) in vectors() {
        if matches!(msg, M::Unknown { .. }) {
            continue;
        }
        let (t, payload) = split(&hex(h));
        for keep in 0..payload.len() {
            let bytes = frame(t, &payload[..keep]);
            match decode_frame(&bytes) {
                Err(D::Truncated { .. }) => {}
                other => panic!("{name} payload cut to {keep}: {other:?}"),
            }
        }
    }
}

#[test]
fn lengthened_payload_has_trailing_bytes() {
    for (name, h, msg) in vectors() {
        if matches!(msg, M::Unknown { .. }) {
            continue;
        }
        let (t, mut payload) = split(&hex(h));
        payload.extend_from_slice(&[0, 0]);
        let want = Err(D::TrailingBytes {
            frame_type: t,
            extra: 2,
        });
        assert_eq!(decode_frame(&frame(t, &payload)), want, "{name}");
    }
}

#[test]
fn fixed_examples() {
    let cases: &[(&str, &str, D)] = &[
        (
            "RELAY_CLOSE length 3",
            "803d7f03 03 000000",
            D::Truncated {
                needed: 4,
                available: 3,
            },
        ),
        (
            "RELAY_CLOSE length 5",
            "803d7f03 05 00000007 00",
            D::TrailingBytes {
                frame_type: frame_type::RELAY_CLOSE,
                extra: 1,
            },
        ),
        (
            "HELLO with a cut 2-byte varint",
            "803d7f05 02 01 40",
            D::Truncated {
                needed: 2,
                available: 1,
            },
        ),
        (
            "HELLO with a cut 8-byte varint",
            "803d7f05 04 c0000000",
            D::Truncated {
                needed: 8,
                available: 4,
            },
        ),
        (
            "HELLO without flags",
            "803d7f05 01 01",
            D::Truncated {
                needed: 1,
                available: 0,
            },
        ),
        (
            "PUNCH_ME_NOW round 2^32",
            "803d7e92 20 c0000001 00000000 01 c6336407 c350 00
             00010203 04050607 08090a0b 0c0d0e0f",
            D::ValueOutOfRange {
                field: "round",
                value: 1 << 32,
            },
        ),
        (
            "FORWARD with trailing byte after the inner frame",
            "803d7f00 28
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d7f05 02 01 00  00",
            D::TrailingBytes {
                frame_type: frame_type::FORWARD,
                extra: 1,
            },
        ),
        (
            "FORWARD with an incomplete inner frame",
            "803d7f00 26
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d7f05 02 01",
            D::Truncated {
                needed: 7,
                available: 6,
            },
        ),
        (
            "FORWARD with a cut inner header",
            "803d7f00 22
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d",
            D::Truncated {
                needed: 4,
                available: 2,
            },
        ),
        (
            "FORWARD without inner frame",
            "803d7f00 20
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444",
            D::Truncated {
                needed: 1,
                available: 0,
            },
        ),
        (
            "FORWARD whose inner frame is invalid",
            "803d7f00 27
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d7f03 02 0000",
            D::Truncated {
                needed: 4,
                available: 2,
            },
        ),
        (
            // inner FORWARD: peer 32 + HELLO 7 = 39 = 0x27, framed 44 bytes;
            // outer payload 32 + 44 = 76 = 0x4c -> 40 4c
            "nested FORWARD",
            "803d7f00 404c
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d7f00 27
             55555555 55555555 55555555 55555555 55555555 55555555 55555555 55555555
             803d7f05 02 01 00",
            D::NestedForward,
        ),
        (
            "nested FORWARD, even an empty one",
            "803d7f00 25
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d7f00 00",
            D::NestedForward,
        ),
        (
            // 65537 = 0x10001 -> 80 01 00 01; no payload needed to reject it
            "declared length MAX + 1",
            "803d7f05 80010001",
            D::FrameTooLarge {
                len: 65_537,
                max: MAX_PAYLOAD_LEN,
            },
        ),
        (
            "declared length 2^62 - 1",
            "21 ffffffff ffffffff",
            D::FrameTooLarge {
                len: VARINT_MAX,
                max: MAX_PAYLOAD_LEN,
            },
        ),
    ];
    for (name, h, err) in cases {
        assert_eq!(decode_frame(&hex(h)), Err(*err), "{name}");
    }
}

#[test]
fn max_payload_is_accepted() {
    // 65536 = 0x10000 -> 80 01 00 00
    let mut bytes = hex("21 80010000");
    bytes.resize(5 + MAX_PAYLOAD_LEN, 0x5a);
    assert_eq!(decode_frame(&bytes[..bytes.len() - 1]), Ok(None));
    let (msg, used) = decode_frame(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        msg,
        M::Unknown {
            frame_type: 0x21,
            payload: vec![0x5a; MAX_PAYLOAD_LEN]
        }
    );
    let mut out = Vec::new();
    msg.encode(&mut out).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn unknown_frames_are_skippable() {
    let bytes = hex("3a 02 0102  803d7f05 02 01 00");
    let (msg, used) = decode_frame(&bytes).unwrap().unwrap();
    assert_eq!(
        msg,
        M::Unknown {
            frame_type: 0x3a,
            payload: vec![1, 2]
        }
    );
    assert_eq!(
        decode_frame(&bytes[used..]),
        Ok(Some((
            M::Hello {
                version: 1,
                flags: 0
            },
            7
        )))
    );
}

#[test]
fn encode_errors_leave_output_untouched() {
    let too_big = VARINT_MAX + 1;
    let cases = [
        (
            M::RemoveAddress { sequence: too_big },
            E::VarintOverflow(too_big),
        ),
        (
            M::Hello {
                version: 1,
                flags: u64::MAX,
            },
            E::VarintOverflow(u64::MAX),
        ),
        (
            M::PeerUnavailable {
                peer: [0; 32],
                reason: UnavailableReason::Other(too_big),
            },
            E::VarintOverflow(too_big),
        ),
        (
            M::Forward {
                peer: [0; 32],
                inner: Box::new(M::Forward {
                    peer: [1; 32],
                    inner: Box::new(M::RelayClose { channel: 1 }),
                }),
            },
            E::NestedForward,
        ),
        (
            M::Forward {
                peer: [0; 32],
                inner: Box::new(M::RemoveAddress { sequence: too_big }),
            },
            E::VarintOverflow(too_big),
        ),
        (
            M::Unknown {
                frame_type: frame_type::HELLO,
                payload: vec![1, 0],
            },
            E::KnownTypeAsUnknown(frame_type::HELLO),
        ),
        (
            M::Unknown {
                frame_type: too_big,
                payload: vec![],
            },
            E::VarintOverflow(too_big),
        ),
        (
            M::Unknown {
                frame_type: 0x21,
                payload: vec![0; MAX_PAYLOAD_LEN + 1],
            },
            E::FrameTooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN,
            },
        ),
        (
            // 32 + (1 + 4 + MAX - 36) = MAX + 1
            M::Forward {
                peer: [0; 32],
                inner: Box::new(M::Unknown {
                    frame_type: 0x21,
                    payload: vec![0; MAX_PAYLOAD_LEN - 36],
                }),
            },
            E::FrameTooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN,
            },
        ),
    ];
    for (msg, err) in cases {
        let mut out = vec![0xee, 0xff];
        assert_eq!(msg.encode(&mut out), Err(err), "{msg:?}");
        assert_eq!(out, [0xee, 0xff]);
    }
}
