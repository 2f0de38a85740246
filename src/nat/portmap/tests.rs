//! [`PortMapSchedule`] on a clock the tests move.

use super::*;

const PCP: PortMapProtocol = PortMapProtocol::Pcp;
const PMP: PortMapProtocol = PortMapProtocol::NatPmp;
const UPNP: PortMapProtocol = PortMapProtocol::Upnp;

fn ext() -> SocketAddr {
    "198.18.0.21:40000".parse().unwrap()
}

fn grant(secs: u64) -> Option<PortMapGrant> {
    Some(PortMapGrant {
        external: ext(),
        lifetime: Duration::from_secs(secs),
    })
}

fn map(protocol: PortMapProtocol, renewal: bool) -> Option<PortMapAction> {
    Some(PortMapAction::Map {
        protocol,
        lifetime: PortMapConfig::default().lifetime,
        renewal,
    })
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A schedule holding a PCP mapping of `secs` granted at `t0`.
fn held(t0: Instant, secs: u64) -> PortMapSchedule {
    let mut p = PortMapSchedule::new(PortMapConfig::default(), t0);
    assert_eq!(p.poll_action(t0), map(PCP, false));
    assert!(p.on_result(t0, PCP, grant(secs)));
    p
}

#[test]
fn protocols_are_tried_in_order_one_at_a_time() {
    let t0 = Instant::now();
    let mut p = PortMapSchedule::new(PortMapConfig::default(), t0);
    assert_eq!(p.poll_timeout(), Some(t0));
    assert_eq!(p.poll_action(t0), map(PCP, false));
    // Nothing more while the request is out.
    assert_eq!(p.poll_action(t0), None);
    assert_eq!(p.poll_timeout(), None);
    // A result for another protocol is not ours.
    assert!(!p.on_result(t0, UPNP, grant(60)));
    assert!(!p.on_result(t0 + s(2), PCP, None));
    assert_eq!(p.poll_action(t0 + s(2)), map(PMP, false));
    assert!(!p.on_result(t0 + s(4), PMP, None));
    assert_eq!(p.poll_action(t0 + s(4)), map(UPNP, false));
    assert!(p.on_result(t0 + s(6), UPNP, grant(3600)));
    let m = p.mapping(t0 + s(6)).unwrap();
    assert_eq!((m.protocol, m.external), (UPNP, ext()));
    assert_eq!(m.expires_at, t0 + s(6) + s(3600));
}

#[test]
fn renewal_comes_at_half_the_granted_lifetime() {
    let t0 = Instant::now();
    let mut p = held(t0, 3600);
    assert_eq!(p.poll_timeout(), Some(t0 + s(1800)));
    assert_eq!(p.poll_action(t0 + s(1799)), None);
    assert_eq!(p.poll_action(t0 + s(1800)), map(PCP, true));
    // Renewed with the same address: no change; the next renewal is half
    // the new lifetime later.
    assert!(!p.on_result(t0 + s(1801), PCP, grant(3600)));
    assert_eq!(p.poll_timeout(), Some(t0 + s(1801) + s(1800)));
}

#[test]
fn grants_are_bounded_by_the_lifetime_asked_and_a_minimum() {
    let t0 = Instant::now();
    // A year granted counts as the 2 h asked.
    let p = held(t0, 365 * 86400);
    assert_eq!(p.mapping(t0).unwrap().expires_at, t0 + s(7200));
    assert_eq!(p.poll_timeout(), Some(t0 + s(3600)));
    // 5 s (or 0) is a failure: the next protocol is tried.
    let mut p = PortMapSchedule::new(PortMapConfig::default(), t0);
    p.poll_action(t0);
    assert!(!p.on_result(t0, PCP, grant(5)));
    assert_eq!(p.mapping(t0), None);
    assert_eq!(p.poll_action(t0), map(PMP, false));
    assert!(!p.on_result(t0, PMP, grant(0)));
    assert_eq!(p.poll_action(t0), map(UPNP, false));
}

#[test]
fn failed_rounds_back_off_exponentially_up_to_the_cap() {
    let t0 = Instant::now();
    let config = PortMapConfig::default();
    let mut p = PortMapSchedule::new(config.clone(), t0);
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        for protocol in PortMapProtocol::ALL {
            assert_eq!(p.poll_action(now), map(protocol, false));
            assert!(!p.on_result(now, protocol, None));
        }
        let next = p.poll_timeout().unwrap();
        waits.push((next - now).as_secs());
        assert_eq!(p.poll_action(next - s(1)), None);
        now = next;
    }
    assert_eq!(waits, [60, 120, 240, 480, 960, 1800, 1800, 1800]);
    // Success resets the backoff.
    assert_eq!(p.poll_action(now), map(PCP, false));
    assert!(p.on_result(now, PCP, grant(60)));
    assert!(p.handle_timeout(now + s(60)));
    for protocol in PortMapProtocol::ALL {
        assert_eq!(p.poll_action(now + s(60)), map(protocol, false));
        p.on_result(now + s(60), protocol, None);
    }
    assert_eq!(p.poll_timeout(), Some(now + s(60) + s(60)));
}

#[test]
fn a_failed_renewal_is_retried_and_the_mapping_held_until_it_lapses() {
    let t0 = Instant::now();
    let mut p = held(t0, 120);
    let mut now = t0 + s(60);
    assert_eq!(p.poll_action(now), map(PCP, true));
    assert!(!p.on_result(now, PCP, None));
    // Retried after 30 s (half of the 60 s left).
    assert_eq!(p.poll_timeout(), Some(now + s(30)));
    assert!(p.mapping(now).is_some());
    now += s(30);
    assert_eq!(p.poll_action(now), map(PCP, true));
    assert!(!p.on_result(now, PCP, None));
    // 30 s left: the next try comes at half of it.
    assert_eq!(p.poll_timeout(), Some(now + s(15)));
    now += s(15);
    assert_eq!(p.poll_action(now), map(PCP, true));
    // The mapping lapses while the renewal is out: that is news.
    assert_eq!(p.poll_timeout(), Some(t0 + s(120)));
    assert!(p.handle_timeout(t0 + s(120)));
    assert_eq!(p.mapping(t0 + s(120)), None);
    assert_eq!(p.poll_action(t0 + s(120)), None);
    // The late answer to the renewal still counts: the gateway has it.
    assert!(p.on_result(t0 + s(121), PCP, grant(120)));
    assert!(p.mapping(t0 + s(121)).is_some());
}

#[test]
fn a_lapsed_mapping_starts_a_fresh_round() {
    let t0 = Instant::now();
    let mut p = held(t0, 100);
    assert!(!p.handle_timeout(t0 + s(99)));
    assert!(p.handle_timeout(t0 + s(100)));
    assert_eq!(p.mapping(t0 + s(100)), None);
    assert_eq!(p.poll_action(t0 + s(100)), map(PCP, false));
}

#[test]
fn a_network_change_renews_at_once_and_a_failure_starts_over() {
    let t0 = Instant::now();
    let mut p = held(t0, 3600);
    p.network_changed(t0 + s(10));
    assert_eq!(p.poll_action(t0 + s(10)), map(PCP, true));
    // Renewed: held as before.
    assert!(!p.on_result(t0 + s(10), PCP, grant(3600)));
    p.network_changed(t0 + s(20));
    assert_eq!(p.poll_action(t0 + s(20)), map(PCP, true));
    // Gone (e.g. another router): dropped, a fresh round at once.
    assert!(p.on_result(t0 + s(22), PCP, None));
    assert_eq!(p.mapping(t0 + s(22)), None);
    assert_eq!(p.poll_action(t0 + s(22)), map(PCP, false));
}

#[test]
fn a_network_change_cuts_the_backoff_short() {
    let t0 = Instant::now();
    let mut p = PortMapSchedule::new(PortMapConfig::default(), t0);
    for protocol in PortMapProtocol::ALL {
        p.poll_action(t0);
        p.on_result(t0, protocol, None);
    }
    assert_eq!(p.poll_action(t0 + s(1)), None);
    p.network_changed(t0 + s(1));
    assert_eq!(p.poll_action(t0 + s(1)), map(PCP, false));
    // A change while a request is out is acted on when its result comes.
    p.network_changed(t0 + s(2));
    assert!(p.on_result(t0 + s(2), PCP, grant(3600)));
    assert_eq!(p.poll_action(t0 + s(2)), map(PCP, true));
}

#[test]
fn a_new_external_address_is_a_change() {
    let t0 = Instant::now();
    let mut p = held(t0, 3600);
    p.poll_action(t0 + s(1800));
    let moved = PortMapGrant {
        external: "198.18.0.121:40000".parse().unwrap(),
        lifetime: s(3600),
    };
    assert!(p.on_result(t0 + s(1800), PCP, Some(moved)));
    assert_eq!(p.mapping(t0 + s(1800)).unwrap().external, moved.external);
}

#[test]
fn close_hands_out_the_held_mapping_once_and_then_nothing() {
    let t0 = Instant::now();
    let mut p = held(t0, 3600);
    let m = p.close(t0 + s(5)).unwrap();
    assert_eq!((m.protocol, m.external), (PCP, ext()));
    assert_eq!(p.close(t0 + s(5)), None);
    assert_eq!(p.poll_action(t0 + s(3600)), None);
    assert_eq!(p.poll_timeout(), None);
    assert!(!p.handle_timeout(t0 + s(9000)));
    // Closed before anything was granted: nothing to remove, and a late
    // answer changes nothing.
    let mut p = PortMapSchedule::new(PortMapConfig::default(), t0);
    p.poll_action(t0);
    assert_eq!(p.close(t0), None);
    assert!(!p.on_result(t0, PCP, grant(3600)));
    assert_eq!(p.mapping(t0), None);
}
