//! Unit tests of [`PunchSession`]: scheduling, probes and acks, validation,
//! budgets and timers, on a virtual clock.

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn session(
    role: Role,
    remote: Vec<Candidate>,
    start: Instant,
    config: PunchConfig,
) -> PunchSession {
    PunchSession::new(
        PunchParams {
            role,
            round: 3,
            local: vec![Candidate::host(sa("192.168.1.2:5000"))],
            remote,
            start_at: start,
        },
        config,
    )
    .unwrap()
}

fn drain(s: &mut PunchSession) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

#[test]
fn config_validation() {
    let bad = |f: fn(&mut PunchConfig)| {
        let mut c = PunchConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert_eq!(bad(|c| c.backoff = 0.5), PunchConfigError::InvalidBackoff);
    assert_eq!(
        bad(|c| c.backoff = f64::NAN),
        PunchConfigError::InvalidBackoff
    );
    assert_eq!(bad(|c| c.max_rounds = 0), PunchConfigError::NoRounds);
    assert_eq!(
        bad(|c| c.round_interval = Duration::ZERO),
        PunchConfigError::ZeroInterval
    );
    assert_eq!(bad(|c| c.probe_size = 0), PunchConfigError::ZeroProbeSize);
}

#[test]
fn nothing_before_start_and_stagger() {
    let t0 = Instant::now();
    let start = t0 + Duration::from_millis(100);
    let remote = vec![Candidate::host(sa("10.0.0.2:5000"))];
    let mut c = session(
        Role::Controlling,
        remote.clone(),
        start,
        PunchConfig::default(),
    );
    let mut d = session(Role::Controlled, remote, start, PunchConfig::default());
    assert_eq!(c.poll_timeout(), Some(start));
    let stagger = PunchConfig::default().controlled_stagger;
    assert_eq!(d.poll_timeout(), Some(start + stagger));
    c.handle_timeout(t0);
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(start);
    d.handle_timeout(start);
    assert_eq!(drain(&mut c).len(), 1);
    assert!(drain(&mut d).is_empty());
    d.handle_timeout(start + stagger);
    assert_eq!(drain(&mut d).len(), 1);
}

#[test]
fn probe_message_from_unknown_learns_prflx_acks_and_triggers() {
    let t0 = Instant::now();
    let mut s = session(
        Role::Controlled,
        vec![Candidate::host(sa("10.0.0.2:5000"))],
        t0,
        PunchConfig::default(),
    );
    let from = sa("[::ffff:198.51.100.7]:40000");
    s.handle_probe(from, ProbeKind::Probe, 3, 77, t0);
    let out = drain(&mut s);
    let canon = sa("198.51.100.7:40000");
    assert_eq!(out[0].dst, canon);
    assert_eq!(
        out[0].probe,
        ProbeOut {
            kind: ProbeKind::Ack,
            round: 3,
            seq: 77
        }
    );
    assert_eq!(out[1].dst, canon);
    assert_eq!(out[1].probe.kind, ProbeKind::Probe);
    assert_eq!(s.learned_peer_reflexive().collect::<Vec<_>>(), vec![canon]);
    // The triggered probe's ack validates the learned path.
    let rtt = Duration::from_millis(33);
    s.handle_probe(canon, ProbeKind::Ack, 3, out[1].probe.seq, t0 + rtt);
    assert_eq!(
        s.poll_event(),
        Some(PunchEvent::PathValidated { remote: canon, rtt })
    );
    assert!(s.is_finished());
}

#[test]
fn stale_round_and_foreign_acks_are_ignored() {
    let t0 = Instant::now();
    let dst = sa("10.0.0.2:5000");
    let mut s = session(
        Role::Controlling,
        vec![Candidate::host(dst)],
        t0,
        PunchConfig::default(),
    );
    s.handle_timeout(t0);
    let probe = drain(&mut s)[0];
    s.handle_probe(sa("1.1.1.1:1"), ProbeKind::Probe, 2, 1, t0);
    assert!(drain(&mut s).is_empty());
    // Ack from another address than probed: not a validated path.
    s.handle_probe(sa("10.0.0.3:5000"), ProbeKind::Ack, 3, probe.probe.seq, t0);
    // Ack for an unknown seq.
    s.handle_probe(dst, ProbeKind::Ack, 3, probe.probe.seq + 100, t0);
    assert_eq!(s.poll_event(), None);
    assert!(!s.is_finished());
}

#[test]
fn same_instant_tie_goes_to_higher_pair_priority() {
    let t0 = Instant::now();
    let host = sa("10.0.0.2:5000");
    let srflx = sa("198.51.100.2:5000");
    let mut s = session(
        Role::Controlling,
        vec![
            Candidate::server_reflexive(srflx, host),
            Candidate::host(host),
        ],
        t0,
        PunchConfig::default(),
    );
    s.handle_timeout(t0);
    let out = drain(&mut s);
    let seq_of = |a| out.iter().find(|t| t.dst == a).unwrap().probe.seq;
    let t1 = t0 + Duration::from_millis(10);
    s.handle_probe(srflx, ProbeKind::Ack, 3, seq_of(srflx), t1);
    s.handle_probe(host, ProbeKind::Ack, 3, seq_of(host), t1);
    assert!(
        matches!(s.poll_event(), Some(PunchEvent::PathValidated { remote, .. }) if remote == host)
    );
    // Later acks change nothing.
    s.handle_probe(
        srflx,
        ProbeKind::Ack,
        3,
        seq_of(srflx),
        t1 + Duration::from_millis(1),
    );
    assert_eq!(s.poll_event(), None);
}

#[test]
fn first_validated_wins_and_probing_stops() {
    let t0 = Instant::now();
    let a = sa("10.0.0.2:5000");
    let b = sa("198.51.100.2:5000");
    let config = PunchConfig::default();
    let mut s = session(
        Role::Controlling,
        vec![Candidate::host(a), Candidate::server_reflexive(b, a)],
        t0,
        config.clone(),
    );
    s.handle_timeout(t0);
    let out = drain(&mut s);
    let seq_b = out.iter().find(|t| t.dst == b).unwrap().probe.seq;
    let seq_a = out.iter().find(|t| t.dst == a).unwrap().probe.seq;
    let t1 = t0 + Duration::from_millis(20);
    s.handle_probe(b, ProbeKind::Ack, 3, seq_b, t1);
    s.handle_probe(a, ProbeKind::Ack, 3, seq_a, t1 + Duration::from_millis(1));
    assert!(
        matches!(s.poll_event(), Some(PunchEvent::PathValidated { remote, .. }) if remote == b)
    );
    // No more rounds; only acks in reply to probes during the linger.
    s.handle_timeout(t1 + Duration::from_secs(1));
    assert!(drain(&mut s).is_empty());
    s.handle_probe(a, ProbeKind::Probe, 3, 9, t1 + Duration::from_secs(1));
    let acks = drain(&mut s);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].probe.kind, ProbeKind::Ack);
    s.handle_timeout(t1 + config.linger);
    assert!(s.is_closed());
    assert_eq!(s.poll_timeout(), None);
    s.handle_probe(a, ProbeKind::Probe, 3, 10, t1 + config.linger);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn unverified_budget_caps_bytes_per_destination() {
    let t0 = Instant::now();
    let dst = sa("10.0.0.2:5000");
    let config = PunchConfig {
        max_rounds: 50,
        max_duration: Duration::from_secs(60),
        backoff: 1.0,
        max_unverified_bytes_per_dst: 3 * 64,
        ..PunchConfig::default()
    };
    let mut s = session(
        Role::Controlling,
        vec![Candidate::host(dst)],
        t0,
        config.clone(),
    );
    let mut sent = 0;
    let mut now = t0;
    while let Some(t) = s.poll_timeout() {
        now = t;
        s.handle_timeout(now);
        sent += drain(&mut s).iter().map(|t| t.size_hint).sum::<usize>();
    }
    assert_eq!(sent, 3 * 64);
    assert_eq!(s.probe_bytes_sent_to(dst), 3 * 64);
    assert!(s.stats().suppressed > 0);
    assert!(matches!(s.poll_event(), Some(PunchEvent::Failed { .. })));
    assert_eq!(now, t0 + config.max_duration);
    assert!(s.poll_event().is_none());
}

#[test]
fn targets_and_prflx_are_capped() {
    let t0 = Instant::now();
    let config = PunchConfig {
        max_targets: 3,
        max_probes_per_round: 2,
        max_peer_reflexive: 1,
        ..PunchConfig::default()
    };
    let remote: Vec<Candidate> = (0..10)
        .map(|i| Candidate::host(sa(&format!("10.0.0.{}:5000", i + 1))))
        .collect();
    let mut s = session(Role::Controlling, remote, t0, config);
    s.handle_timeout(t0);
    assert_eq!(drain(&mut s).len(), 2);
    for i in 0..5 {
        s.handle_probe(
            sa(&format!("198.51.100.{}:1", i + 1)),
            ProbeKind::Probe,
            3,
            i,
            t0,
        );
    }
    assert_eq!(s.learned_peer_reflexive().count(), 1);
    // Every probe is acked once; only the learned one gets a triggered probe.
    let out = drain(&mut s);
    assert_eq!(
        out.iter()
            .filter(|t| t.probe.kind == ProbeKind::Ack)
            .count(),
        5
    );
    assert_eq!(
        out.iter()
            .filter(|t| t.probe.kind == ProbeKind::Probe)
            .count(),
        1
    );
}

#[test]
fn relay_and_unusable_remote_candidates_are_skipped() {
    let t0 = Instant::now();
    let remote = vec![
        Candidate::relay(sa("9.9.9.9:1")),
        Candidate::host(sa("127.0.0.1:5")),
        Candidate::host(sa("[2001:db8::1]:5")), // no local v6
        Candidate::host(sa("10.0.0.1:5")),
    ];
    let mut s = session(Role::Controlling, remote, t0, PunchConfig::default());
    s.handle_timeout(t0);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dst, sa("10.0.0.1:5"));
}
