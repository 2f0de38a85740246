//! Property tests: arbitrary messages round-trip, arbitrary bytes never
//! panic any decoder.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use crate::proto::cert::Certificate;
use crate::proto::raw::{
    classify, parse_raw, parse_relay, ObserveReply, ObserveRequest, Probe, ProbeKind,
};
use crate::proto::{
    decode_frame, decode_varint, encode_varint, frame_type, ControlMessage as M, MemberQuery,
    UnavailableReason, VARINT_MAX,
};

fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=0x3fu64,
        0..=0x3fffu64,
        0..=0x3fff_ffffu64,
        0..=VARINT_MAX
    ]
}

fn sock() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
    ]
}

/// Any message except `Forward`.
fn leaf() -> impl Strategy<Value = M> {
    prop_oneof![6 => addresses_and_relays(), 1 => member()]
}

fn query() -> impl Strategy<Value = MemberQuery> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(MemberQuery::Key),
        any::<[u8; 4]>().prop_map(|a| MemberQuery::Addr(IpAddr::from(a))),
        any::<[u8; 16]>().prop_map(|a| MemberQuery::Addr(IpAddr::from(a))),
    ]
}

/// The directory messages.
fn member() -> impl Strategy<Value = M> {
    let cert = || {
        (super::cert::any_body(), any::<[u8; 32]>()).prop_map(|(body, s)| {
            Box::new(Certificate {
                body,
                signature: [s, s].concat().try_into().expect("64 bytes"),
            })
        })
    };
    prop_oneof![
        cert().prop_map(|cert| M::MemberRegister { cert }),
        query().prop_map(|query| M::MemberLookup { query }),
        (query(), cert()).prop_map(|(query, cert)| M::Member { query, cert }),
        query().prop_map(|query| M::NoMember { query }),
        any::<[u8; 16]>().prop_map(|token| M::AddressProof { token }),
        (0u64..4).prop_map(|c| M::NatMapping {
            class: crate::proto::NatClass::from_code(c)
        }),
        (
            any::<u32>(),
            any::<[u8; 16]>(),
            varint(),
            varint(),
            any::<bool>(),
            sock(),
            any::<[u8; 16]>(),
        )
            .prop_map(
                |(round, token, delay_ms, start_at_unix_micros, sender_easy, easy, h)| {
                    let hard = if easy.is_ipv4() {
                        IpAddr::from([h[0], h[1], h[2], h[3]])
                    } else {
                        IpAddr::from(h)
                    };
                    M::BirthdayMeNow {
                        round,
                        token,
                        delay_ms,
                        start_at_unix_micros,
                        sender_easy,
                        easy,
                        hard,
                    }
                }
            ),
        any::<[u8; 8]>().prop_map(|token| M::Ping { token }),
        any::<[u8; 8]>().prop_map(|token| M::Pong { token }),
        any::<u16>().prop_map(|port| M::ObserveAt { port }),
    ]
}

/// Address, punch and relay messages.
fn addresses_and_relays() -> impl Strategy<Value = M> {
    prop_oneof![
        (varint(), sock()).prop_map(|(sequence, addr)| M::AddAddress { sequence, addr }),
        (
            any::<u32>(),
            varint(),
            sock(),
            varint(),
            any::<[u8; 16]>(),
            varint()
        )
            .prop_map(
                |(round, paired_with_sequence, addr, delay_ms, token, start_at_unix_micros)| {
                    M::PunchMeNow {
                        round,
                        paired_with_sequence,
                        addr,
                        delay_ms,
                        token,
                        start_at_unix_micros,
                    }
                }
            ),
        varint().prop_map(|sequence| M::RemoveAddress { sequence }),
        (varint(), sock()).prop_map(|(sequence, addr)| M::ObservedAddress { sequence, addr }),
        any::<[u8; 32]>().prop_map(|peer| M::RelayRequest { peer }),
        (any::<[u8; 32]>(), any::<u32>())
            .prop_map(|(peer, channel)| M::RelayGrant { peer, channel }),
        any::<u32>().prop_map(|channel| M::RelayClose { channel }),
        (any::<[u8; 32]>(), varint()).prop_map(|(peer, code)| M::PeerUnavailable {
            peer,
            reason: UnavailableReason::from_code(code)
        }),
        (varint(), varint()).prop_map(|(version, flags)| M::Hello { version, flags }),
        (
            varint().prop_filter("unknown type", |t| !frame_type::is_known(*t)),
            proptest::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(frame_type, payload)| M::Unknown {
                frame_type,
                payload
            }),
    ]
}

fn message() -> impl Strategy<Value = M> {
    prop_oneof![
        3 => leaf(),
        1 => (any::<[u8; 32]>(), leaf()).prop_map(|(peer, inner)| M::Forward {
            peer,
            inner: Box::new(inner)
        }),
    ]
}

proptest! {
    #[test]
    fn varint_round_trip(v in varint()) {
        let mut out = Vec::new();
        let n = encode_varint(v, &mut out).unwrap();
        prop_assert_eq!(decode_varint(&out), Ok((v, n)));
    }

    #[test]
    fn message_round_trip(msg in message()) {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        prop_assert_eq!(decode_frame(&out), Ok(Some((msg.clone(), out.len()))));
        // Every proper prefix is incomplete.
        for cut in 0..out.len() {
            prop_assert_eq!(decode_frame(&out[..cut]), Ok(None));
        }
    }

    #[test]
    fn message_stream_round_trip(msgs in proptest::collection::vec(message(), 0..8)) {
        let mut out = Vec::new();
        for m in &msgs {
            m.encode(&mut out).unwrap();
        }
        let mut rest = &out[..];
        let mut got = Vec::new();
        while let Some((m, used)) = decode_frame(rest).unwrap() {
            got.push(m);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn decode_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Some((msg, used))) = decode_frame(&bytes) {
            prop_assert!(used <= bytes.len());
            // Whatever decodes re-encodes to something that decodes the same.
            let mut out = Vec::new();
            msg.encode(&mut out).unwrap();
            prop_assert_eq!(decode_frame(&out), Ok(Some((msg, out.len()))));
        }
    }

    #[test]
    fn decode_frame_with_valid_header_never_panics(
        t in prop_oneof![Just(frame_type::FORWARD), 0x3d_7e90u64..=0x3d_7e94, 0x3d_7f00u64..=0x3d_7f0d, 0x9f_81a6u64..=0x9f_81a7],
        payload in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        // Random payloads behind known types exercise the payload parsers.
        let mut bytes = Vec::new();
        encode_varint(t, &mut bytes).unwrap();
        encode_varint(payload.len() as u64, &mut bytes).unwrap();
        bytes.extend_from_slice(&payload);
        match decode_frame(&bytes) {
            Ok(Some((msg, used))) => {
                prop_assert_eq!(used, bytes.len());
                let mut out = Vec::new();
                msg.encode(&mut out).unwrap();
                prop_assert_eq!(decode_frame(&out), Ok(Some((msg, out.len()))));
            }
            Ok(None) => prop_assert!(false, "complete frame reported incomplete"),
            Err(_) => {}
        }
    }

    #[test]
    fn raw_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Some(&b) = bytes.first() {
            let _ = classify(b);
        }
        let _ = parse_raw(&bytes);
        if let Ok((_, payload)) = parse_relay(&bytes) {
            prop_assert_eq!(payload.len() + 5, bytes.len());
        }
        if let Ok(p) = Probe::decode(&bytes) {
            let mut out = Vec::new();
            if let Ok(q) = Probe::answer(&bytes, usize::MAX, &mut out) {
                prop_assert_eq!(p, q);
                prop_assert_eq!(out.len(), bytes.len());
            }
        }
    }

    #[test]
    fn observe_round_trip(token in any::<[u8; 16]>(), observed in sock(), pad in 0usize..100) {
        let mut request = ObserveRequest { token }.to_bytes().to_vec();
        request.resize(request.len() + pad, 0);
        let mut reply = Vec::new();
        prop_assert_eq!(ObserveRequest::answer(&request, observed, &mut reply), Ok(ObserveRequest { token }));
        prop_assert!(reply.len() <= request.len());
        let decoded = ObserveReply::decode(&reply).unwrap();
        prop_assert_eq!(decoded.token, token);
        prop_assert_eq!(decoded.observed.ip(), observed.ip());
        prop_assert_eq!(decoded.observed.port(), observed.port());
    }

    #[test]
    fn probe_round_trip(
        ack in any::<bool>(),
        token in any::<[u8; 16]>(),
        round in any::<u32>(),
        seq in any::<u32>(),
        pad in 0usize..1500,
    ) {
        let kind = if ack { ProbeKind::Ack } else { ProbeKind::Probe };
        let p = Probe { kind, token, round, seq };
        let mut out = Vec::new();
        let n = p.encode(pad, &mut out);
        prop_assert_eq!(n, pad.max(Probe::LEN));
        prop_assert_eq!(Probe::decode(&out), Ok(p));
    }
}
