//! Certificate codec: a hand-written vector, malformed input, and property
//! tests (the signature is not checked here; see `crate::cert`).

use proptest::prelude::*;

use super::hex;
use crate::proto::cert::{CertBody, Certificate, MAX_CERT_LEN};
use crate::proto::DecodeError;

fn body() -> CertBody {
    CertBody {
        network: "lab".into(),
        ca: [0x11; 32],
        host: [0x22; 32],
        name: "db1".into(),
        not_before: 1_700_000_000,
        not_after: 1_731_536_000,
        addresses: vec![
            "10.90.0.5/24".parse().unwrap(),
            "fd90::5/64".parse().unwrap(),
        ],
        groups: vec!["admins".into(), "db".into()],
        routes: vec!["192.168.50.0/24".parse().unwrap()],
    }
}

fn vector() -> Vec<u8> {
    hex(&format!(
        "41514354 01
         03 6c6162
         {ca} {host}
         03 646231
         00000000 6553f100  00000000 67352480
         02 04 0a5a0005 18   06 fd900000000000000000000000000005 40
         02 06 61646d696e73  02 6462
         01 04 c0a83200 18
         {sig}",
        ca = "11".repeat(32),
        host = "22".repeat(32),
        sig = "aa".repeat(64),
    ))
}

#[test]
fn vector_encodes_and_decodes() {
    let cert = Certificate {
        body: body(),
        signature: [0xaa; 64],
    };
    body().check().unwrap();
    assert_eq!(cert.encode(), vector());
    let bytes = vector();
    let (decoded, signed) = Certificate::decode(&bytes).unwrap();
    assert_eq!(decoded, cert);
    assert_eq!(signed, &bytes[..bytes.len() - 64]);
    assert_eq!(signed, body().encode());
}

#[test]
fn every_truncation_and_any_extra_byte_is_an_error() {
    let bytes = vector();
    for len in 0..bytes.len() {
        assert!(
            Certificate::decode(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Certificate::decode(&longer),
        Err(DecodeError::Invalid {
            field: "certificate",
            ..
        })
    ));
}

#[test]
fn non_canonical_forms_are_refused() {
    type Change = fn(&mut CertBody);
    let cases: [(&str, Change); 9] = [
        ("upper-case name", |b| b.name = "DB1".into()),
        ("name ends with -", |b| b.name = "db-".into()),
        ("space in network", |b| b.network = "my lab".into()),
        ("groups unsorted", |b| b.groups.reverse()),
        ("group twice", |b| b.groups = vec!["db".into(), "db".into()]),
        ("route with host bits", |b| {
            b.routes = vec!["192.168.50.1/24".parse().unwrap()]
        }),
        ("no address", |b| b.addresses.clear()),
        ("address twice", |b| {
            b.addresses = vec![b.addresses[0], b.addresses[0]]
        }),
        ("empty validity", |b| b.not_after = b.not_before),
    ];
    for (what, change) in cases {
        let mut b = body();
        change(&mut b);
        assert!(b.check().is_err(), "{what}: check passed");
        let mut bytes = b.encode();
        bytes.extend_from_slice(&[0; 64]);
        assert!(
            matches!(
                Certificate::decode(&bytes),
                Err(DecodeError::Invalid { .. })
            ),
            "{what}: decoded"
        );
    }
}

#[test]
fn bad_family_prefix_length_magic_and_version() {
    let bytes = vector();
    let at = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let family = at(&hex("04 0a5a0005"));
    let mut bad = bytes.clone();
    bad[family] = 5;
    assert!(matches!(
        Certificate::decode(&bad),
        Err(DecodeError::Invalid {
            field: "prefix",
            ..
        })
    ));
    let mut bad = bytes.clone();
    bad[family + 5] = 33;
    assert!(matches!(
        Certificate::decode(&bad),
        Err(DecodeError::Invalid {
            field: "prefix",
            ..
        })
    ));
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(
        Certificate::decode(&bad),
        Err(DecodeError::Invalid { field: "magic", .. })
    ));
    let mut bad = bytes.clone();
    bad[4] = 2;
    assert!(matches!(
        Certificate::decode(&bad),
        Err(DecodeError::Invalid {
            field: "version",
            ..
        })
    ));
    assert!(Certificate::decode(&vec![0; MAX_CERT_LEN + 1]).is_err());
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
}

fn prefix() -> impl Strategy<Value = ipnet::IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0..=32u8).prop_map(|(a, l)| ipnet::IpNet::new(
            std::net::IpAddr::from(a),
            l
        )
        .unwrap()),
        (any::<[u8; 16]>(), 0..=128u8).prop_map(|(a, l)| ipnet::IpNet::new(
            std::net::IpAddr::from(a),
            l
        )
        .unwrap()),
    ]
}

prop_compose! {
    pub(crate) fn any_body()(
        network in "[!-~]{1,63}",
        ca in any::<[u8; 32]>(),
        host in any::<[u8; 32]>(),
        name in label(),
        not_before in 0..u64::MAX,
        span in 1..u64::MAX,
        addresses in proptest::collection::hash_set(prefix(), 1..=8),
        groups in proptest::collection::vec("[a-z0-9._-]{1,32}", 0..=16),
        routes in proptest::collection::vec(prefix(), 0..=32),
    ) -> CertBody {
        let mut b = CertBody {
            network, ca, host, name, not_before,
            not_after: not_before.saturating_add(span),
            addresses: addresses.into_iter().collect(),
            groups,
            routes: routes.into_iter().map(|r| r.trunc()).collect(),
        };
        b.groups.sort();
        b.groups.dedup();
        b.routes.sort();
        b.routes.dedup();
        b
    }
}

proptest! {
    #[test]
    fn valid_bodies_round_trip(body in any_body(), signature in any::<[u8; 32]>()) {
        body.check().unwrap();
        let cert = Certificate { body, signature: [signature, signature].concat().try_into().unwrap() };
        let bytes = cert.encode();
        prop_assert!(bytes.len() <= MAX_CERT_LEN);
        let (decoded, signed) = Certificate::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &cert);
        prop_assert_eq!(signed, cert.body.encode());
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = Certificate::decode(&bytes);
    }

    #[test]
    fn flipped_bytes_decode_canonically_or_not_at_all(index in any::<prop::sample::Index>(), bit in 0..8u8) {
        let mut bytes = vector();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok((cert, signed)) = Certificate::decode(&bytes) {
            // Whatever decodes re-encodes to exactly the same bytes: the
            // signature covers what was parsed.
            prop_assert_eq!(cert.encode(), bytes.clone());
            prop_assert_eq!(signed, &bytes[..bytes.len() - 64]);
        }
    }
}

/// The directory messages around the certificate vector: header, varint
/// length and query worked out by hand (the certificate is 200 bytes:
/// 5 + 4 + 64 + 4 + 16 + addresses 25 + groups 11 + routes 7 + 64).
#[test]
fn member_message_vectors() {
    use crate::proto::{decode_frame, ControlMessage as M, MemberQuery as Q};
    let cert = Box::new(Certificate {
        body: body(),
        signature: [0xaa; 64],
    });
    let c = vector();
    assert_eq!(c.len(), 200);
    let cases = [
        (
            // 200 = 0x00c8 -> 2-byte varint 40 c8
            [hex("803d7f07 40c8"), c.clone()].concat(),
            M::MemberRegister { cert: cert.clone() },
        ),
        (
            hex(&format!("803d7f08 21 00 {}", "22".repeat(32))),
            M::MemberLookup {
                query: Q::Key([0x22; 32]),
            },
        ),
        (
            hex("803d7f08 05 04 0a5a0009"),
            M::MemberLookup {
                query: Q::Addr("10.90.0.9".parse().unwrap()),
            },
        ),
        (
            // 1 + 4 + 200 = 205 = 0xcd -> 40 cd
            [hex("803d7f09 40cd 04 0a5a0005"), c.clone()].concat(),
            M::Member {
                query: Q::Addr("10.90.0.5".parse().unwrap()),
                cert: cert.clone(),
            },
        ),
        (
            hex("803d7f0a 11 06 fd900000000000000000000000000009"),
            M::NoMember {
                query: Q::Addr("fd90::9".parse().unwrap()),
            },
        ),
    ];
    for (bytes, msg) in cases {
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(out, bytes, "{msg:?}");
        assert_eq!(decode_frame(&bytes), Ok(Some((msg, bytes.len()))));
    }
    // A bad query kind, and a certificate with a byte too many.
    assert!(decode_frame(&hex("803d7f08 05 05 0a5a0009")).is_err());
    let long = [hex("803d7f07 40c9"), c, vec![0]].concat();
    assert!(decode_frame(&long).is_err());
}

#[test]
fn the_largest_certificate_is_max_cert_len() {
    assert_eq!(MAX_CERT_LEN, 1528, "docs/security.md quotes this figure");
}
