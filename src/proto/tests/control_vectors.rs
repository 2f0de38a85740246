//! Hex test vectors for every control message, worked out by hand from the
//! wire layout in the module documentation (not produced by the encoder).
//!
//! All known frame types are 4-byte varints: `0x3d7e90` is written
//! `80 3d 7e 90` (the `10` prefix of the first byte selects 4 bytes).

use std::net::SocketAddr;

use super::hex;
use crate::proto::{decode_frame, ControlMessage as M, UnavailableReason as R};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

const TOKEN_A: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const TOKEN_B: [u8; 16] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
];

fn add_v4() -> M {
    M::AddAddress {
        sequence: 300,
        addr: addr("192.0.2.1:4433"),
    }
}

fn punch_v6() -> M {
    M::PunchMeNow {
        round: 70,
        paired_with_sequence: 0,
        addr: addr("[2001:db8:1::2]:65535"),
        delay_ms: 0,
        token: TOKEN_B,
        start_at_unix_micros: 1_795_000_000_123_456,
    }
}

/// `(name, hex, message)` for every message kind, IPv4 and IPv6 variants.
pub(crate) fn vectors() -> Vec<(&'static str, &'static str, M)> {
    vec![
        (
            // seq 300 = 0x12c -> 2-byte varint 41 2c; port 4433 = 0x1151
            "ADD_ADDRESS v4",
            "803d7e90 08  412c  c0000201 1151",
            add_v4(),
        ),
        (
            // payload 1 + 16 + 2 = 19 = 0x13; port 443 = 0x01bb
            "ADD_ADDRESS v6",
            "803d7e91 13  02  20010db8 00000000 00000000 00000001 01bb",
            M::AddAddress {
                sequence: 2,
                addr: addr("[2001:db8::1]:443"),
            },
        ),
        (
            // round 3, paired 1, 198.51.100.7:50000 (0xc350), delay 250 = 40 fa,
            // token, no start time (00); payload 1 + 1 + 4 + 2 + 2 + 16 + 1 = 27 = 0x1b
            "PUNCH_ME_NOW v4",
            "803d7e92 1b  03 01 c6336407 c350 40fa
             00010203 04050607 08090a0b 0c0d0e0f 00",
            M::PunchMeNow {
                round: 3,
                paired_with_sequence: 1,
                addr: addr("198.51.100.7:50000"),
                delay_ms: 250,
                token: TOKEN_A,
                start_at_unix_micros: 0,
            },
        ),
        (
            // round 70 = 40 46; start 1795000000123456 = 0x6608b01611240, an
            // 8-byte varint c0 06 60 8b 01 61 12 40;
            // payload 2 + 1 + 16 + 2 + 1 + 16 + 8 = 46 = 0x2e
            "PUNCH_ME_NOW v6",
            "803d7e93 2e  4046 00 20010db8 00010000 00000000 00000002 ffff 00
             a0a1a2a3 a4a5a6a7 a8a9aaab acadaeaf c006608b 01611240",
            punch_v6(),
        ),
        (
            "REMOVE_ADDRESS",
            "803d7e94 01 05",
            M::RemoveAddress { sequence: 5 },
        ),
        (
            // 2^30 is the smallest value needing the 8-byte form
            "REMOVE_ADDRESS 8-byte seq",
            "803d7e94 08 c0000000 40000000",
            M::RemoveAddress { sequence: 1 << 30 },
        ),
        (
            "OBSERVED_ADDRESS v4",
            "809f81a6 07  00 cb007109 0001",
            M::ObservedAddress {
                sequence: 0,
                addr: addr("203.0.113.9:1"),
            },
        ),
        (
            // seq 16383 = 7f ff (largest 2-byte); port 8080 = 0x1f90
            "OBSERVED_ADDRESS v6",
            "809f81a7 14  7fff 00000000 00000000 00000000 00000001 1f90",
            M::ObservedAddress {
                sequence: 16383,
                addr: addr("[::1]:8080"),
            },
        ),
        (
            // peer 32 + inner ADD_ADDRESS v4 (4 + 1 + 8 = 13) = 45 = 0x2d
            "FORWARD (ADD_ADDRESS v4)",
            "803d7f00 2d
             44444444 44444444 44444444 44444444 44444444 44444444 44444444 44444444
             803d7e90 08 412c c0000201 1151",
            M::Forward {
                peer: [0x44; 32],
                inner: Box::new(add_v4()),
            },
        ),
        (
            // peer 32 + inner PUNCH_ME_NOW v6 (4 + 1 + 46 = 51) = 83 = 0x53 -> 40 53
            "FORWARD (PUNCH_ME_NOW v6)",
            "803d7f00 4053
             55555555 55555555 55555555 55555555 55555555 55555555 55555555 55555555
             803d7e93 2e  4046 00 20010db8 00010000 00000000 00000002 ffff 00
             a0a1a2a3 a4a5a6a7 a8a9aaab acadaeaf c006608b 01611240",
            M::Forward {
                peer: [0x55; 32],
                inner: Box::new(punch_v6()),
            },
        ),
        (
            // peer 32 + inner HELLO (7) = 39 = 0x27
            "FORWARD (HELLO)",
            "803d7f00 27
             66666666 66666666 66666666 66666666 66666666 66666666 66666666 66666666
             803d7f05 02 01 00",
            M::Forward {
                peer: [0x66; 32],
                inner: Box::new(M::Hello {
                    version: 1,
                    flags: 0,
                }),
            },
        ),
        (
            // an unknown inner message is carried through unchanged
            "FORWARD (unknown inner)",
            "803d7f00 25
             77777777 77777777 77777777 77777777 77777777 77777777 77777777 77777777
             21 03 aabbcc",
            M::Forward {
                peer: [0x77; 32],
                inner: Box::new(M::Unknown {
                    frame_type: 0x21,
                    payload: vec![0xaa, 0xbb, 0xcc],
                }),
            },
        ),
        (
            "RELAY_REQUEST",
            "803d7f01 20
             11111111 11111111 11111111 11111111 11111111 11111111 11111111 11111111",
            M::RelayRequest { peer: [0x11; 32] },
        ),
        (
            // 32 + 4 = 36 = 0x24
            "RELAY_GRANT",
            "803d7f02 24
             22222222 22222222 22222222 22222222 22222222 22222222 22222222 22222222
             deadbeef",
            M::RelayGrant {
                peer: [0x22; 32],
                channel: 0xdead_beef,
            },
        ),
        (
            "RELAY_CLOSE",
            "803d7f03 04 00000007",
            M::RelayClose { channel: 7 },
        ),
        (
            "PEER_UNAVAILABLE NotConnected",
            "803d7f04 21
             00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
             01",
            M::PeerUnavailable {
                peer: [0; 32],
                reason: R::NotConnected,
            },
        ),
        (
            "PEER_UNAVAILABLE NotAllowed",
            "803d7f04 21
             00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
             02",
            M::PeerUnavailable {
                peer: [0; 32],
                reason: R::NotAllowed,
            },
        ),
        (
            "PEER_UNAVAILABLE RateLimited",
            "803d7f04 21
             33333333 33333333 33333333 33333333 33333333 33333333 33333333 33333333
             03",
            M::PeerUnavailable {
                peer: [0x33; 32],
                reason: R::RateLimited,
            },
        ),
        (
            "PEER_UNAVAILABLE RelayDisabled",
            "803d7f04 21
             ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff
             04",
            M::PeerUnavailable {
                peer: [0xff; 32],
                reason: R::RelayDisabled,
            },
        ),
        (
            "PEER_UNAVAILABLE LimitReached",
            "803d7f04 21
             ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff
             05",
            M::PeerUnavailable {
                peer: [0xff; 32],
                reason: R::LimitReached,
            },
        ),
        (
            // 1000 = 0x3e8 -> 43 e8; payload 34 = 0x22
            "PEER_UNAVAILABLE Other(1000)",
            "803d7f04 22
             33333333 33333333 33333333 33333333 33333333 33333333 33333333 33333333
             43e8",
            M::PeerUnavailable {
                peer: [0x33; 32],
                reason: R::Other(1000),
            },
        ),
        (
            "HELLO",
            "803d7f05 02 01 00",
            M::Hello {
                version: 1,
                flags: 0,
            },
        ),
        (
            // 0x12345678 < 2^30 -> 4-byte varint 92 34 56 78
            "HELLO flags",
            "803d7f05 05 01 92345678",
            M::Hello {
                version: 1,
                flags: 0x1234_5678,
            },
        ),
        (
            "ADDRESS_PROOF",
            "803d7f06 10 00010203 04050607 08090a0b 0c0d0e0f",
            M::AddressProof {
                token: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            },
        ),
        (
            "NAT_MAPPING",
            "803d7f10 01 03",
            M::NatMapping {
                class: crate::proto::NatClass::Dependent,
            },
        ),
        (
            // payload 1 + 16 + 2 + 1 + 1 + 6 + 4 = 31 = 0x1f
            "BIRTHDAY_ME_NOW v4",
            "803d7f12 1f 03 00010203 04050607 08090a0b 0c0d0e0f 40fa 00 01
             c6336407 c350 cb007109",
            M::BirthdayMeNow {
                round: 3,
                token: TOKEN_A,
                delay_ms: 250,
                start_at_unix_micros: 0,
                sender_easy: true,
                easy: addr("198.51.100.7:50000"),
                hard: "203.0.113.9".parse().unwrap(),
            },
        ),
        (
            "PING",
            "803d7f0b 08 01020304 05060708",
            M::Ping {
                token: [1, 2, 3, 4, 5, 6, 7, 8],
            },
        ),
        (
            "PONG",
            "803d7f0c 08 f0f1f2f3 f4f5f6f7",
            M::Pong {
                token: [0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7],
            },
        ),
        (
            "OBSERVE_AT",
            "803d7f0d 02 2329",
            M::ObserveAt { port: 9001 },
        ),
        (
            "Unknown (1-byte type)",
            "21 03 aabbcc",
            M::Unknown {
                frame_type: 0x21,
                payload: vec![0xaa, 0xbb, 0xcc],
            },
        ),
        (
            // a gap in the antq range is unknown too
            "Unknown (empty, in the NAT range)",
            "803d7e95 00",
            M::Unknown {
                frame_type: 0x3d_7e95,
                payload: vec![],
            },
        ),
    ]
}

#[test]
fn encode_exact_bytes() {
    for (name, h, msg) in vectors() {
        let mut out = Vec::new();
        msg.encode(&mut out)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out, hex(h), "{name}");
    }
}

#[test]
fn encode_appends() {
    let mut out = vec![0xee];
    M::RelayClose { channel: 7 }.encode(&mut out).unwrap();
    assert_eq!(out, hex("ee 803d7f03 04 00000007"));
}

#[test]
fn decode_exact_value() {
    for (name, h, msg) in vectors() {
        let bytes = hex(h);
        assert_eq!(decode_frame(&bytes), Ok(Some((msg, bytes.len()))), "{name}");
    }
}

#[test]
fn frame_type_matches_first_bytes() {
    for (name, h, msg) in vectors() {
        let bytes = hex(h);
        let (t, _) = crate::proto::decode_varint(&bytes).unwrap();
        assert_eq!(msg.frame_type(), t, "{name}");
        let known = !matches!(msg, M::Unknown { .. });
        assert_eq!(crate::proto::frame_type::is_known(t), known, "{name}");
    }
}

#[test]
fn decode_stops_at_frame_end() {
    for (name, h, msg) in vectors() {
        let mut bytes = hex(h);
        let len = bytes.len();
        bytes.extend_from_slice(&hex("803d7f05 02 01")); // start of the next frame
        assert_eq!(decode_frame(&bytes), Ok(Some((msg, len))), "{name}");
    }
}

#[test]
fn stream_of_all_vectors() {
    let all = vectors();
    let stream: Vec<u8> = all.iter().flat_map(|(_, h, _)| hex(h)).collect();
    let mut rest = &stream[..];
    for (name, _, msg) in all {
        let (got, used) = decode_frame(rest).unwrap().unwrap();
        assert_eq!(got, msg, "{name}");
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(decode_frame(rest), Ok(None));
}

#[test]
fn stream_fed_byte_by_byte() {
    let all = vectors();
    let stream: Vec<u8> = all.iter().flat_map(|(_, h, _)| hex(h)).collect();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for &b in &stream {
        buf.push(b);
        while let Some((msg, used)) = decode_frame(&buf).unwrap() {
            got.push(msg);
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty());
    let want: Vec<M> = all.into_iter().map(|(_, _, m)| m).collect();
    assert_eq!(got, want);
}

#[test]
fn non_minimal_encodings_accepted() {
    // HELLO with an 8-byte type and a 2-byte length.
    let bytes = hex("c0000000 003d7f05 4002 01 00");
    assert_eq!(
        decode_frame(&bytes),
        Ok(Some((
            M::Hello {
                version: 1,
                flags: 0
            },
            12
        )))
    );
    // ADD_ADDRESS with a 2-byte sequence 1.
    let bytes = hex("803d7e90 08 4001 c0000201 1151");
    assert_eq!(
        decode_frame(&bytes),
        Ok(Some((
            M::AddAddress {
                sequence: 1,
                addr: addr("192.0.2.1:4433")
            },
            13
        )))
    );
}

#[test]
fn ipv6_flow_and_scope_are_not_sent() {
    let a = SocketAddr::V6(std::net::SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        9,
        0x1234,
        7,
    ));
    let mut out = Vec::new();
    M::AddAddress {
        sequence: 0,
        addr: a,
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(
        out,
        hex("803d7e91 13 00 fe800000 00000000 00000000 00000001 0009")
    );
    let (got, _) = decode_frame(&out).unwrap().unwrap();
    assert_eq!(
        got,
        M::AddAddress {
            sequence: 0,
            addr: addr("[fe80::1]:9")
        }
    );
}

#[test]
fn ipv4_mapped_ipv6_stays_ipv6() {
    let mut out = Vec::new();
    M::ObservedAddress {
        sequence: 1,
        addr: addr("[::ffff:192.0.2.1]:80"),
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(
        out,
        hex("809f81a7 13 01 00000000 00000000 0000ffff c0000201 0050")
    );
}

#[test]
fn unavailable_reason_codes() {
    for code in 0..10 {
        assert_eq!(R::from_code(code).code(), code);
    }
    assert_eq!(R::from_code(1), R::NotConnected);
    assert_eq!(R::from_code(2), R::NotAllowed);
    assert_eq!(R::from_code(3), R::RateLimited);
    assert_eq!(R::from_code(4), R::RelayDisabled);
    assert_eq!(R::from_code(0), R::Other(0));
    assert_eq!(R::from_code(5), R::LimitReached);
    assert_eq!(R::from_code(6), R::Other(6));
}

#[test]
fn birthday_addresses_share_a_family() {
    let msg = M::BirthdayMeNow {
        round: 1,
        token: TOKEN_A,
        delay_ms: 0,
        start_at_unix_micros: 0,
        sender_easy: false,
        easy: addr("198.51.100.7:50000"),
        hard: "2001:db8::1".parse().unwrap(),
    };
    assert_eq!(
        msg.encode(&mut Vec::new()),
        Err(crate::proto::EncodeError::MixedFamilies(0x3d_7f12))
    );
    // sender_easy is 0 or 1.
    let mut bytes =
        hex("803d7f12 1f 03 00010203 04050607 08090a0b 0c0d0e0f 40fa 00 02 c6336407 c350 cb007109");
    assert!(decode_frame(&bytes).is_err());
    bytes[25] = 0;
    assert!(decode_frame(&bytes).unwrap().is_some());
}
