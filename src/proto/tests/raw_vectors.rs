//! Hex test vectors for the raw UDP frames, worked out by hand from the
//! layouts in [`crate::proto::raw`].

use super::hex;
use crate::proto::raw::{
    classify, encode_relay_header, parse_raw, parse_relay, AddressChallenge, ObserveReply,
    ObserveRequest, PacketClass, Probe, ProbeKind, RawFrame, RelayHeader,
};
use crate::proto::DecodeError as D;

const TOKEN: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

#[test]
fn classify_by_first_byte() {
    for b in 0x00..=0x3f {
        assert_eq!(classify(b), PacketClass::Raw, "{b:#x}");
    }
    for b in 0x40..=0xff {
        assert_eq!(classify(b), PacketClass::Quic, "{b:#x}");
    }
}

#[test]
fn relay_header() {
    let mut h = [0u8; RelayHeader::LEN];
    encode_relay_header(0xdead_beef, &mut h);
    assert_eq!(h.to_vec(), hex("01 deadbeef"));
    assert_eq!(
        RelayHeader { channel: 1 }.to_bytes().to_vec(),
        hex("01 00000001")
    );
    assert_eq!(RelayHeader::LEN, 5);
}

#[test]
fn relay_parse() {
    let bytes = hex("01 deadbeef 4142c3");
    assert_eq!(parse_relay(&bytes), Ok((0xdead_beef, &bytes[5..])));
    assert_eq!(parse_relay(&bytes).unwrap().1, [0x41, 0x42, 0xc3]);
    assert_eq!(
        parse_raw(&bytes),
        Ok(RawFrame::Relay {
            channel: 0xdead_beef,
            payload: &[0x41, 0x42, 0xc3]
        })
    );
    // An empty payload is well-formed.
    let empty = hex("01 00000007");
    assert_eq!(parse_relay(&empty), Ok((7, &[][..])));
}

#[test]
fn relay_truncated_at_every_offset() {
    let bytes = hex("01 deadbeef");
    assert_eq!(
        parse_relay(&[]),
        Err(D::Truncated {
            needed: 1,
            available: 0
        })
    );
    for cut in 1..bytes.len() {
        assert_eq!(
            parse_relay(&bytes[..cut]),
            Err(D::Truncated {
                needed: 5,
                available: cut
            }),
            "cut at {cut}"
        );
        assert!(parse_raw(&bytes[..cut]).is_err());
    }
}

/// `(hex, pad_to, probe)`.
fn probe_vectors() -> Vec<(&'static str, usize, Probe)> {
    vec![
        (
            "02 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002",
            0,
            Probe {
                kind: ProbeKind::Probe,
                token: TOKEN,
                round: 1,
                seq: 2,
            },
        ),
        (
            "03 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002",
            25,
            Probe {
                kind: ProbeKind::Ack,
                token: TOKEN,
                round: 1,
                seq: 2,
            },
        ),
        (
            // padded to 32 bytes: 7 zero bytes after the 25-byte body
            "02 ffffffff ffffffff ffffffff ffffffff fffffffe 12345678 00000000 000000",
            32,
            Probe {
                kind: ProbeKind::Probe,
                token: [0xff; 16],
                round: 0xffff_fffe,
                seq: 0x1234_5678,
            },
        ),
    ]
}

#[test]
fn probe_encode_exact_bytes() {
    for (h, pad, probe) in probe_vectors() {
        let mut out = vec![0xee];
        let n = probe.encode(pad, &mut out);
        assert_eq!(out[1..], hex(h)[..], "{probe:?}");
        assert_eq!(n, out.len() - 1);
    }
}

#[test]
fn probe_decode_exact_value() {
    for (h, _, probe) in probe_vectors() {
        let bytes = hex(h);
        assert_eq!(Probe::decode(&bytes), Ok(probe));
        assert_eq!(parse_raw(&bytes), Ok(RawFrame::Probe(probe)));
    }
}

#[test]
fn probe_padding_content_is_ignored() {
    let bytes = hex("02 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002 ffee");
    assert_eq!(Probe::decode(&bytes).unwrap().seq, 2);
}

#[test]
fn probe_truncated_at_every_offset() {
    let bytes = hex("02 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002");
    for cut in 1..bytes.len() {
        assert_eq!(
            Probe::decode(&bytes[..cut]),
            Err(D::Truncated {
                needed: 25,
                available: cut
            }),
            "cut at {cut}"
        );
    }
    assert_eq!(
        Probe::decode(&[]),
        Err(D::Truncated {
            needed: 1,
            available: 0
        })
    );
}

#[test]
fn probe_pad_is_clamped() {
    let p = Probe {
        kind: ProbeKind::Probe,
        token: TOKEN,
        round: 0,
        seq: 0,
    };
    let mut out = Vec::new();
    assert_eq!(p.encode(usize::MAX, &mut out), Probe::MAX_LEN);
    assert_eq!(out.len(), Probe::MAX_LEN);
    assert_eq!(Probe::decode(&out), Ok(p));
}

#[test]
fn ack_never_exceeds_probe() {
    let probe = Probe {
        kind: ProbeKind::Probe,
        token: TOKEN,
        round: 9,
        seq: 4,
    };
    for probe_len in [25, 26, 100, 1200] {
        let mut datagram = Vec::new();
        probe.encode(probe_len, &mut datagram);
        for want in [0, 25, 60, 1200, 1500, usize::MAX] {
            let mut out = Vec::new();
            assert_eq!(Probe::answer(&datagram, want, &mut out), Ok(probe));
            assert!(out.len() <= datagram.len(), "{probe_len} {want}");
            assert_eq!(out.len(), want.clamp(25, probe_len));
            assert_eq!(Probe::decode(&out), Ok(probe.ack()));
        }
    }
    // The ACK of the first vector, by hand.
    let mut out = Vec::new();
    let datagram = hex("02 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002 0000");
    Probe::answer(&datagram, 1000, &mut out).unwrap();
    assert_eq!(
        out,
        hex("03 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002 0000")
    );
}

#[test]
fn ack_is_not_answered() {
    let ack = hex("03 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002");
    let mut out = Vec::new();
    assert_eq!(
        Probe::answer(&ack, 100, &mut out),
        Err(D::UnexpectedType {
            expected: 2,
            found: 3
        })
    );
    assert!(out.is_empty());
    assert!(Probe::answer(&ack[..10], 100, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn wrong_and_unknown_types() {
    let relay = hex("01 00000001 00");
    assert_eq!(
        Probe::decode(&relay),
        Err(D::UnexpectedType {
            expected: 2,
            found: 1
        })
    );
    let probe = hex("02 00010203 04050607 08090a0b 0c0d0e0f 00000001 00000002");
    assert_eq!(
        parse_relay(&probe),
        Err(D::UnexpectedType {
            expected: 1,
            found: 2
        })
    );
    for b in (0x00..=0x3f).filter(|b| !(1..=8).contains(b)) {
        let unknown = [
            b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let want = Err(D::UnknownType {
            frame_type: u64::from(b),
        });
        assert_eq!(parse_raw(&unknown).map(|_| ()), want);
        assert_eq!(parse_relay(&unknown).map(|_| ()), want);
        assert_eq!(Probe::decode(&unknown).map(|_| ()), want);
    }
    assert_eq!(
        parse_raw(&[]),
        Err(D::Truncated {
            needed: 1,
            available: 0
        })
    );
}

#[test]
fn address_challenge() {
    let challenge = hex("04 00010203 04050607 08090a0b 0c0d0e0f");
    assert_eq!(AddressChallenge::LEN, 17);
    assert_eq!(
        AddressChallenge { token: TOKEN }.to_bytes().to_vec(),
        challenge
    );
    assert_eq!(
        parse_raw(&challenge),
        Ok(RawFrame::AddressChallenge(AddressChallenge {
            token: TOKEN
        }))
    );
    // Fixed size: no padding.
    let mut long = challenge.clone();
    long.push(0);
    assert_eq!(
        AddressChallenge::decode(&long),
        Err(D::TrailingBytes {
            frame_type: 4,
            extra: 1
        })
    );
    assert_eq!(
        AddressChallenge::decode(&challenge[..16]),
        Err(D::Truncated {
            needed: 17,
            available: 16
        })
    );
    assert_eq!(
        AddressChallenge::decode(&hex("01 00000001")),
        Err(D::UnexpectedType {
            expected: 4,
            found: 1
        })
    );
}

const REQUEST: &str =
    "05 00010203 04050607 08090a0b 0c0d0e0f 00000000 00000000 00000000 00000000 000000";

/// `(hex, reply)`.
fn observe_reply_vectors() -> Vec<(&'static str, ObserveReply)> {
    vec![
        (
            "06 00010203 04050607 08090a0b 0c0d0e0f 04 c0000201 1234",
            ObserveReply {
                token: TOKEN,
                observed: "192.0.2.1:4660".parse().unwrap(),
            },
        ),
        (
            "06 00010203 04050607 08090a0b 0c0d0e0f 06 20010db8 00000000 00000000 00000001 01bb",
            ObserveReply {
                token: TOKEN,
                observed: "[2001:db8::1]:443".parse().unwrap(),
            },
        ),
        (
            "06 ffffffff ffffffff ffffffff ffffffff 04 ffffffff ffff",
            ObserveReply {
                token: [0xff; 16],
                observed: "255.255.255.255:65535".parse().unwrap(),
            },
        ),
    ]
}

#[test]
fn observe_request_exact_bytes() {
    let request = ObserveRequest { token: TOKEN };
    assert_eq!(ObserveRequest::MIN_LEN, 36);
    assert_eq!(request.to_bytes().to_vec(), hex(REQUEST));
    assert_eq!(ObserveRequest::decode(&hex(REQUEST)), Ok(request));
    assert_eq!(
        parse_raw(&hex(REQUEST)),
        Ok(RawFrame::ObserveRequest(request))
    );
    // Longer padding, whatever its content, is accepted and ignored.
    let mut long = hex(REQUEST);
    long.extend_from_slice(&[0xaa; 100]);
    assert_eq!(ObserveRequest::decode(&long), Ok(request));
}

#[test]
fn observe_request_truncated_at_every_offset() {
    let bytes = hex(REQUEST);
    for cut in 1..bytes.len() {
        assert_eq!(
            ObserveRequest::decode(&bytes[..cut]),
            Err(D::Truncated {
                needed: 36,
                available: cut
            }),
            "cut at {cut}"
        );
        assert!(parse_raw(&bytes[..cut]).is_err());
    }
    assert_eq!(
        ObserveRequest::decode(&[]),
        Err(D::Truncated {
            needed: 1,
            available: 0
        })
    );
}

#[test]
fn observe_reply_exact_bytes() {
    for (h, reply) in observe_reply_vectors() {
        let mut out = vec![0xee];
        let n = reply.encode(&mut out);
        assert_eq!(out[1..], hex(h)[..], "{reply:?}");
        assert_eq!(n, reply.len());
        assert_eq!(n, out.len() - 1);
        assert_eq!(ObserveReply::decode(&hex(h)), Ok(reply));
        assert_eq!(parse_raw(&hex(h)), Ok(RawFrame::ObserveReply(reply)));
    }
    assert_eq!((ObserveReply::LEN_V4, ObserveReply::MAX_LEN), (24, 36));
}

#[test]
fn observe_reply_truncated_at_every_offset() {
    for (h, reply) in observe_reply_vectors() {
        let bytes = hex(h);
        for cut in 1..bytes.len() {
            let got = ObserveReply::decode(&bytes[..cut]);
            // Before the family byte, the shortest (IPv4) length is needed.
            let needed = if cut < 18 { 24 } else { reply.len() };
            assert_eq!(
                got,
                Err(D::Truncated {
                    needed,
                    available: cut
                }),
                "{h} cut at {cut}"
            );
            assert!(parse_raw(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            ObserveReply::decode(&long),
            Err(D::TrailingBytes {
                frame_type: 6,
                extra: 1
            })
        );
    }
}

#[test]
fn observe_reply_bad_family() {
    for family in [0u8, 5, 7, 0x46, 0xff] {
        let mut bytes = hex("06 00010203 04050607 08090a0b 0c0d0e0f 04 c0000201 1234");
        bytes[17] = family;
        assert!(
            matches!(ObserveReply::decode(&bytes), Err(D::Invalid { .. })),
            "family {family}"
        );
    }
}

#[test]
fn observe_answer_never_exceeds_request() {
    let v6: std::net::SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let v4: std::net::SocketAddr = "192.0.2.1:4660".parse().unwrap();
    for observed in [v4, v6] {
        let mut out = Vec::new();
        let request = ObserveRequest::answer(&hex(REQUEST), observed, &mut out).unwrap();
        assert_eq!(request.token, TOKEN);
        assert!(out.len() <= ObserveRequest::MIN_LEN);
        assert_eq!(
            ObserveReply::decode(&out),
            Ok(ObserveReply {
                token: TOKEN,
                observed
            })
        );
    }
    // Too short to answer without amplification: nothing is written.
    let mut out = Vec::new();
    assert!(ObserveRequest::answer(&hex(REQUEST)[..35], v6, &mut out).is_err());
    assert!(out.is_empty());
    // A reply is not a request.
    let reply = hex("06 00010203 04050607 08090a0b 0c0d0e0f 04 c0000201 1234");
    assert_eq!(
        ObserveRequest::answer(&reply, v4, &mut out),
        Err(D::UnexpectedType {
            expected: 5,
            found: 6
        })
    );
    assert!(out.is_empty());
}
