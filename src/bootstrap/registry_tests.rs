//! Unit tests of the sans-IO registry: consent, caps, address proofs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::identity::Identity;

fn key() -> PeerId {
    Identity::generate().peer_id()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn limits(per_key: usize, total: usize) -> Limits {
    Limits {
        relay_max_per_key: per_key,
        relay_max_total: total,
        ..Limits::default()
    }
}

/// A registry with `n` connected peers at 198.51.100.i:9000.
fn with_peers(n: usize, limits: Limits, now: Instant) -> (Registry<u32>, Vec<PeerId>) {
    let mut r = Registry::new(limits);
    let keys: Vec<PeerId> = (0..n).map(|_| key()).collect();
    for (i, k) in keys.iter().enumerate() {
        let a = addr(&format!("198.51.100.{}:9000", i + 1));
        assert_eq!(r.connect(*k, i as u32, a, now), (None, None));
    }
    (r, keys)
}

#[test]
fn a_relay_needs_both_keys_to_ask() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(3, Limits::default(), t0);
    assert_eq!(
        r.relay_request(k[0], k[1], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(r.held().relays, 0, "no forwarding on one key's word");
    // Asking again changes nothing.
    assert_eq!(
        r.relay_request(k[0], k[1], t0, [1, 2]),
        Ok(RelayOutcome::StillWaiting)
    );
    // A third key asking for k[1] gets nothing either.
    assert_eq!(
        r.relay_request(k[2], k[1], t0, [3, 4]),
        Ok(RelayOutcome::Waiting)
    );
    let Ok(RelayOutcome::Created(alloc)) = r.relay_request(k[1], k[0], t0, [5, 6]) else {
        panic!("the second key's request makes the allocation");
    };
    assert!(alloc.has(k[0]) && alloc.has(k[1]));
    assert_ne!(alloc.channel_a, alloc.channel_b);
    assert_eq!(r.held().relays, 1);
    // Only k[2] -> k[1] still waits.
    assert_eq!(r.held().relay_requests_waiting, 1);
    assert_eq!(
        r.relay_request(k[0], k[1], t0, [7, 8]),
        Ok(RelayOutcome::Exists(alloc))
    );
}

#[test]
fn a_relay_request_expires() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(2, Limits::default(), t0);
    assert_eq!(
        r.relay_request(k[0], k[1], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    let late = t0 + RELAY_REQUEST_TTL;
    r.expire(late);
    assert_eq!(r.held().relay_requests_waiting, 0);
    assert_eq!(
        r.relay_request(k[1], k[0], late, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(r.held().relays, 0);
}

#[test]
fn relay_requests_to_absent_peers_are_refused_and_not_held() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(1, Limits::default(), t0);
    assert_eq!(
        r.relay_request(k[0], key(), t0, [1, 2]),
        Err(Refusal::NotConnected)
    );
    assert_eq!(
        r.relay_request(k[0], k[0], t0, [1, 2]),
        Err(Refusal::NotConnected)
    );
    assert_eq!(r.held().relay_requests_waiting, 0);
}

#[test]
fn allocations_are_capped_per_key_and_in_total() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(6, limits(2, 3), t0);
    let ask_both = |r: &mut Registry<u32>, x: usize, y: usize| {
        let _ = r.relay_request(k[x], k[y], t0, [1, 2]);
        r.relay_request(k[y], k[x], t0, [1, 2])
    };
    assert!(matches!(
        ask_both(&mut r, 0, 1),
        Ok(RelayOutcome::Created(_))
    ));
    assert!(matches!(
        ask_both(&mut r, 0, 2),
        Ok(RelayOutcome::Created(_))
    ));
    // k0 has two: its third is refused, and so is the request it would
    // have had waiting.
    assert_eq!(ask_both(&mut r, 0, 3), Err(Refusal::RelayPerKeyCap));
    assert!(matches!(
        ask_both(&mut r, 3, 4),
        Ok(RelayOutcome::Created(_))
    ));
    assert_eq!(r.held().relays, 3);
    assert_eq!(ask_both(&mut r, 4, 5), Err(Refusal::RelayTotalCap));
    assert_eq!(
        Refusal::RelayTotalCap.reason(),
        UnavailableReason::LimitReached
    );
}

#[test]
fn waiting_requests_are_capped_per_key_and_in_total() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(6, limits(2, 3), t0);
    assert_eq!(
        r.relay_request(k[0], k[1], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(
        r.relay_request(k[0], k[2], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(
        r.relay_request(k[0], k[3], t0, [1, 2]),
        Err(Refusal::RelayPerKeyCap)
    );
    assert_eq!(
        r.relay_request(k[1], k[2], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    // Full: k0 (two waiting) gives its oldest up for k4 (none).
    assert_eq!(
        r.relay_request(k[4], k[5], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(r.held().relay_requests_waiting, 3);
    // Once they expire, there is room again.
    let late = t0 + RELAY_REQUEST_TTL;
    assert_eq!(
        r.relay_request(k[4], k[5], late, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(
        r.relay_request(k[0], k[3], late, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
}

#[test]
fn a_leaving_peer_takes_its_requests_and_allocations() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(3, limits(1, 10), t0);
    let _ = r.relay_request(k[0], k[1], t0, [1, 2]);
    let Ok(RelayOutcome::Created(alloc)) = r.relay_request(k[1], k[0], t0, [1, 2]) else {
        panic!("no allocation");
    };
    let _ = r.relay_request(k[2], k[0], t0, [1, 2]);
    // A stale handle (the key reconnected since) changes nothing.
    assert_eq!(r.disconnect(k[0], |h| *h == 99), None);
    let left = r.disconnect(k[0], |h| *h == 0).unwrap();
    assert_eq!(left.relays, vec![alloc]);
    assert_eq!(
        r.held(),
        Held {
            peers: 2,
            relays: 0,
            relay_requests_waiting: 0,
            members: 0,
        }
    );
    // k1's count went down with it: it may make a new one under cap 1.
    let _ = r.relay_request(k[1], k[2], t0, [1, 2]);
    assert!(matches!(
        r.relay_request(k[2], k[1], t0, [1, 2]),
        Ok(RelayOutcome::Created(_))
    ));
}

#[test]
fn a_new_address_is_followed_only_once_the_peer_proved_it() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(3, Limits::default(), t0);
    let _ = r.relay_request(k[0], k[1], t0, [1, 2]);
    let Ok(RelayOutcome::Created(alloc)) = r.relay_request(k[1], k[0], t0, [1, 2]) else {
        panic!("no allocation");
    };
    let home = addr("198.51.100.1:9000");
    let victim = addr("198.51.100.3:9000");
    // QUIC moved k0 to k2's address (a spoofed source): k2 proves it, for
    // itself, since it is there; that is no proof for k0.
    r.proved(k[2], victim);
    assert_eq!(r.follow(k[0], victim), None);
    assert_eq!(r.address_of(&k[0]), Some(home));

    // A real move: k0 proved the address itself.
    let moved_to = addr("198.51.100.200:7000");
    assert_eq!(r.follow(k[0], moved_to), None, "not before the proof");
    r.proved(k[0], moved_to);
    let moved = r.follow(k[0], moved_to).unwrap();
    assert_eq!((moved.from, moved.to), (home, moved_to));
    let after = if alloc.a == k[0] {
        Allocation {
            addr_a: moved_to,
            ..alloc
        }
    } else {
        Allocation {
            addr_b: moved_to,
            ..alloc
        }
    };
    assert_eq!(moved.relays, vec![(alloc, after)]);
    assert_eq!(r.address_of(&k[0]), Some(moved_to));
    // Following again changes nothing; going back to the handshake address
    // needs a proof like any other move.
    assert_eq!(r.follow(k[0], moved_to), None);
    assert_eq!(r.follow(k[0], home), None);
}

#[test]
fn a_peer_remembers_only_its_newest_proofs() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(1, Limits::default(), t0);
    for i in 0..10 {
        r.proved(k[0], addr(&format!("203.0.113.{i}:1")));
    }
    assert_eq!(r.follow(k[0], addr("203.0.113.0:1")), None);
    assert!(r.follow(k[0], addr("203.0.113.9:1")).is_some());
}

#[test]
fn a_reconnect_from_a_new_address_moves_the_relays() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(2, Limits::default(), t0);
    let _ = r.relay_request(k[0], k[1], t0, [1, 2]);
    let Ok(RelayOutcome::Created(_)) = r.relay_request(k[1], k[0], t0, [1, 2]) else {
        panic!("no allocation");
    };
    let new = addr("198.51.100.77:9000");
    let (old, moved) = r.connect(k[0], 42, new, t0);
    assert_eq!(old, Some(0));
    let moved = moved.unwrap();
    assert_eq!(moved.to, new);
    assert_eq!(moved.relays.len(), 1);
    // The allocation survived the reconnect and still counts.
    assert_eq!(r.held().relays, 1);
    assert_eq!(r.handle(&k[0]), Some(&42));
}

#[test]
fn coordination_is_rate_limited_per_key() {
    let t0 = Instant::now();
    let l = Limits {
        coordination_per_sec: 1.0,
        coordination_burst: 2.0,
        ..Limits::default()
    };
    let (mut r, k) = with_peers(2, l, t0);
    assert!(r.admit(k[0], t0).is_ok());
    assert!(r.admit(k[0], t0).is_ok());
    assert_eq!(r.admit(k[0], t0), Err(Refusal::CoordinationRate));
    assert!(r.admit(k[1], t0).is_ok());
    assert!(r.admit(k[0], t0 + Duration::from_secs(1)).is_ok());
}

#[test]
fn at_the_total_cap_the_largest_holder_gives_up_a_relay() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(6, limits(10, 3), t0);
    let ask_both = |r: &mut Registry<u32>, x: usize, y: usize| {
        let _ = r.relay_request(k[x], k[y], t0, [1, 2]);
        r.relay_request(k[y], k[x], t0, [1, 2])
    };
    // k0 is in all three.
    for other in 1..=3 {
        assert!(matches!(
            ask_both(&mut r, 0, other),
            Ok(RelayOutcome::Created(_))
        ));
    }
    // A pair with none gets one: one of k0's goes.
    let Ok(RelayOutcome::Created(new)) = ask_both(&mut r, 4, 5) else {
        panic!("no room made");
    };
    let gone = r.poll_evicted().expect("an allocation evicted");
    assert!(gone.has(k[0]));
    assert_eq!(r.poll_evicted(), None);
    assert!(new.has(k[4]) && new.has(k[5]));
    assert_eq!(r.held().relays, 3);
    // k0 (now in two) cannot push out the others (in one each).
    let (other, _) = gone.other(k[0]);
    let idx = k.iter().position(|p| *p == other).unwrap();
    assert_eq!(ask_both(&mut r, 0, idx), Err(Refusal::RelayTotalCap));
}

#[test]
fn at_the_total_cap_of_requests_the_largest_waiter_gives_one_up() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(6, limits(10, 3), t0);
    for other in 1..=3 {
        assert_eq!(
            r.relay_request(
                k[0],
                k[other],
                t0 + Duration::from_millis(other as u64),
                [1, 2]
            ),
            Ok(RelayOutcome::Waiting)
        );
    }
    // k4 has none waiting: k0's oldest request (to k1) goes.
    assert_eq!(
        r.relay_request(k[4], k[5], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(r.held().relay_requests_waiting, 3);
    // k1 asking k0 makes no allocation (k0's request to it is gone): it
    // waits, and k0 (still two waiting) gives up its next oldest.
    assert_eq!(
        r.relay_request(k[1], k[0], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert_eq!(r.held().relays, 0);
    assert_eq!(r.held().relay_requests_waiting, 3);
    // Now each holds one: a newcomer finds no room.
    assert_eq!(
        r.relay_request(k[5], k[2], t0, [1, 2]),
        Err(Refusal::RelayTotalCap)
    );
}

#[test]
fn an_answer_to_a_waiting_request_is_known_before_it_is_made() {
    let t0 = Instant::now();
    let (mut r, k) = with_peers(2, Limits::default(), t0);
    assert!(!r.answers_waiting(k[1], k[0], t0));
    assert_eq!(
        r.relay_request(k[0], k[1], t0, [1, 2]),
        Ok(RelayOutcome::Waiting)
    );
    assert!(r.answers_waiting(k[1], k[0], t0));
    assert!(
        !r.answers_waiting(k[0], k[1], t0),
        "asking twice answers nothing"
    );
    assert!(!r.answers_waiting(k[1], k[0], t0 + RELAY_REQUEST_TTL));
    assert!(matches!(
        r.relay_request(k[1], k[0], t0, [1, 2]),
        Ok(RelayOutcome::Created(_))
    ));
    assert!(!r.answers_waiting(k[1], k[0], t0));
}
