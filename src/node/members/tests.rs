use super::*;
use crate::cert::CaKey;
use crate::identity::Identity;
use crate::proto::cert::CertBody;

const UNIX: u64 = 1_800_000_000;

fn ca(seed: u8) -> CaKey {
    CaKey::from_parts("lab", Identity::from_secret_bytes(&[seed; 32])).unwrap()
}

fn key(seed: u8) -> PeerId {
    Identity::from_secret_bytes(&[seed; 32]).peer_id()
}

fn cert(ca: &CaKey, seed: u8, addr: &str, valid: std::ops::Range<u64>) -> Certificate {
    ca.sign(CertBody {
        network: String::new(),
        ca: [0; 32],
        host: *key(seed).as_bytes(),
        name: format!("h{seed}"),
        not_before: valid.start,
        not_after: valid.end,
        addresses: vec![addr.parse().unwrap()],
        groups: vec![],
        routes: vec![],
    })
    .unwrap()
}

fn book(now: Instant) -> (MemberBook, CaKey) {
    let net = ca(1);
    let config = MembershipConfig {
        certificate: cert(&net, 10, "10.90.0.1/24", UNIX - 10..UNIX + 100),
        trusted: vec![net.public()],
        revoked: vec![],
        max_members: 2,
    };
    (MemberBook::new(config, key(10), now), net)
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_datagram_to_an_unknown_member_waits_for_its_lookup() {
    let t0 = Instant::now();
    let (mut b, net) = book(t0);
    let q = b.send_to(addr("10.90.0.2"), Bytes::from_static(b"1"), t0);
    assert_eq!(q, Some(MemberQuery::Addr(addr("10.90.0.2"))));
    // A second datagram waits too, without a second lookup.
    assert_eq!(
        b.send_to(addr("10.90.0.2"), Bytes::from_static(b"2"), t0),
        None
    );
    // Outside our network: dropped, no lookup.
    assert_eq!(
        b.send_to(addr("10.91.0.2"), Bytes::from_static(b"x"), t0),
        None
    );
    let joined = b
        .on_member(
            q.unwrap(),
            cert(&net, 11, "10.90.0.2/24", UNIX - 10..UNIX + 100),
            UNIX,
        )
        .unwrap();
    let member = joined.member.unwrap();
    assert_eq!(member.peer, key(11));
    assert_eq!(joined.staged.len(), 2);
    assert_eq!(b.members().count(), 1);
    assert_eq!(b.counters().lookups, 1);
    assert_eq!(b.counters().joined, 1);
}

#[test]
fn a_message_from_an_unknown_key_is_replayed_once_it_is_a_member() {
    let t0 = Instant::now();
    let (mut b, net) = book(t0);
    let via = "192.0.2.1:7000".parse().unwrap();
    let msg = ControlMessage::RemoveAddress { sequence: 3 };
    let q = b
        .message_from_unknown(key(11), via, msg.clone(), t0)
        .unwrap();
    assert_eq!(q, MemberQuery::Key(*key(11).as_bytes()));
    for _ in 0..20 {
        assert!(b
            .message_from_unknown(key(11), via, msg.clone(), t0)
            .is_none());
    }
    let joined = b
        .on_member(
            q,
            cert(&net, 11, "10.90.0.2/24", UNIX - 10..UNIX + 100),
            UNIX,
        )
        .unwrap();
    assert_eq!(joined.stashed.len(), STASH_PER_KEY);
    assert_eq!(b.counters().dropped, 21 - STASH_PER_KEY as u64);
}

#[test]
fn answers_are_verified_and_refusals_counted() {
    let t0 = Instant::now();
    let (mut b, net) = book(t0);
    let other = ca(2);
    let ask = |b: &mut MemberBook, a: &str| b.send_to(addr(a), Bytes::new(), t0).unwrap();
    // Another CA.
    let q = ask(&mut b, "10.90.0.2");
    let e = b.on_member(
        q,
        cert(&other, 11, "10.90.0.2/24", UNIX - 10..UNIX + 100),
        UNIX,
    );
    assert_eq!(e.unwrap_err().reason(), "unknown_ca");
    // Expired.
    let q = ask(&mut b, "10.90.0.3");
    let e = b.on_member(
        q,
        cert(&net, 12, "10.90.0.3/24", UNIX - 100..UNIX - 1),
        UNIX,
    );
    assert_eq!(e.unwrap_err().reason(), "expired");
    // A valid certificate that does not cover the address asked for (a
    // bootstrap answering with someone else).
    let q = ask(&mut b, "10.90.0.4");
    let e = b.on_member(
        q,
        cert(&net, 13, "10.90.0.5/24", UNIX - 10..UNIX + 100),
        UNIX,
    );
    assert_eq!(e.unwrap_err().reason(), "wrong_answer");
    // Forged: fields changed after signing.
    let q = ask(&mut b, "10.90.0.6");
    let mut forged = cert(&net, 14, "10.90.0.7/24", UNIX - 10..UNIX + 100);
    forged.body.addresses = vec!["10.90.0.6/24".parse().unwrap()];
    let e = b.on_member(q, forged, UNIX);
    assert_eq!(e.unwrap_err().reason(), "bad_signature");
    // An answer nobody asked for is ignored.
    let j = b
        .on_member(
            MemberQuery::Addr(addr("10.90.0.9")),
            cert(&net, 15, "10.90.0.9/24", UNIX - 10..UNIX + 100),
            UNIX,
        )
        .unwrap();
    assert!(j.member.is_none());
    assert_eq!(b.members().count(), 0);
    assert_eq!(b.counters().refused, 4);
    assert_eq!(
        b.refusals(),
        [
            ("bad_signature", 1),
            ("expired", 1),
            ("unknown_ca", 1),
            ("wrong_answer", 1)
        ]
    );
}

#[test]
fn no_member_is_not_asked_again_for_a_second() {
    let t0 = Instant::now();
    let (mut b, _) = book(t0);
    let q = b.send_to(addr("10.90.0.2"), Bytes::new(), t0).unwrap();
    b.on_no_member(q, t0);
    assert_eq!(
        b.send_to(
            addr("10.90.0.2"),
            Bytes::new(),
            t0 + Duration::from_millis(500)
        ),
        None
    );
    assert_eq!(
        b.send_to(addr("10.90.0.2"), Bytes::new(), t0 + NOT_FOUND_FOR),
        Some(q)
    );
}

#[test]
fn lookups_are_retried_rate_limited_and_bounded() {
    let t0 = Instant::now();
    let (mut b, _) = book(t0);
    // The burst: 10 lookups at once, then 5 a second.
    let sent = (2..40)
        .filter(|i| {
            b.send_to(addr(&format!("10.90.0.{i}")), Bytes::new(), t0)
                .is_some()
        })
        .count();
    assert_eq!(sent, 10);
    assert!(b.retries(t0 + Duration::from_millis(100)).is_empty());
    let t1 = t0 + LOOKUP_TIMEOUT;
    let retried = b.retries(t1);
    assert_eq!(retried.len(), 10, "2 s of tokens at 5/s");
    b.expire_lookups(t1 + 2 * LOOKUP_TIMEOUT);
    // Never more than MAX_PENDING under way.
    let mut t = t1 + 2 * LOOKUP_TIMEOUT;
    for i in 0..200u32 {
        t += Duration::from_secs(1);
        let a = IpAddr::from([10, 90, 0, (i % 250) as u8 + 2]);
        let _ = b.send_to(a, Bytes::new(), t);
    }
    assert!(b.pending.len() <= MAX_PENDING);
}

#[test]
fn members_are_bounded_and_pruned_on_expiry_revocation_and_rotation() {
    let t0 = Instant::now();
    let (mut b, net) = book(t0);
    for (seed, a, until) in [
        (11, "10.90.0.2", UNIX + 50),
        (12, "10.90.0.3", UNIX + 100),
        (13, "10.90.0.4", UNIX + 100),
    ] {
        let q = b.send_to(addr(a), Bytes::new(), t0).unwrap();
        let _ = b.on_member(
            q,
            cert(&net, seed, &format!("{a}/24"), UNIX - 10..until),
            UNIX,
        );
    }
    // max_members is 2.
    assert_eq!(b.members().count(), 2);
    assert!(b.prune(UNIX).is_empty());
    assert_eq!(b.prune(UNIX + 50), vec![key(11)]);
    let removed = b.set_policy(vec![net.public()], vec![key(12)], UNIX);
    assert_eq!(removed, vec![key(12)]);
    // A message from a revoked key starts no lookup.
    let via = "192.0.2.1:7000".parse().unwrap();
    assert!(b
        .message_from_unknown(
            key(12),
            via,
            ControlMessage::RemoveAddress { sequence: 1 },
            t0
        )
        .is_none());
    // Rotation: the old CA is no longer trusted.
    let q = b
        .send_to(addr("10.90.0.5"), Bytes::new(), t0 + Duration::from_secs(1))
        .unwrap();
    b.on_member(
        q,
        cert(&net, 14, "10.90.0.5/24", UNIX - 10..UNIX + 100),
        UNIX,
    )
    .unwrap();
    let removed = b.set_policy(vec![ca(2).public()], vec![], UNIX);
    assert_eq!(removed, vec![key(14)]);
    assert_eq!(b.counters().removed, 3);
}

#[test]
fn a_lookup_that_found_no_bootstrap_is_due_at_once() {
    let t0 = Instant::now() + Duration::from_secs(10);
    let (mut b, _) = book(t0);
    let q = b.send_to(addr("10.90.0.2"), Bytes::new(), t0).unwrap();
    assert!(b.retries(t0).is_empty());
    b.not_sent(q);
    assert_eq!(b.retries(t0 + Duration::from_millis(10)), vec![q]);
}

#[test]
fn a_look_up_with_nothing_to_deliver_finds_the_member() {
    let t0 = Instant::now();
    let (mut b, net) = book(t0);
    let q = b.look_up(MemberQuery::Addr(addr("10.90.0.7")), t0);
    assert_eq!(q, Some(MemberQuery::Addr(addr("10.90.0.7"))));
    // Asked again at once: the lookup in flight is not sent twice.
    assert_eq!(b.look_up(MemberQuery::Addr(addr("10.90.0.7")), t0), None);
    // Outside our network: nothing asked, nothing counted as sent.
    assert_eq!(b.look_up(MemberQuery::Addr(addr("10.91.0.7")), t0), None);
    let by_key = MemberQuery::Key(*key(12).as_bytes());
    assert_eq!(b.look_up(by_key, t0), Some(by_key));
    let joined = b
        .on_member(
            q.unwrap(),
            cert(&net, 11, "10.90.0.7/24", UNIX - 10..UNIX + 100),
            UNIX,
        )
        .unwrap();
    assert_eq!(joined.member.unwrap().peer, key(11));
    assert!(joined.staged.is_empty());
    assert_eq!(b.counters().lookups, 2);
}
