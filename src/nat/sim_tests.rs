//! Hole-punching scenarios on the simulated network.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::candidate::{Candidate, CandidateSet, CandidateSetConfig, InterfaceInfo, Role};
use super::prediction::{
    infer_mapping, predict_ports, MappingBehaviour, Observation, PredictionConfig,
};
use super::punch::{ProbeKind, PunchConfig, PunchEvent, PunchParams, PunchSession, Transmit};
use super::sim::{HostId, NatType, Payload, Sim};

const PORT: u16 = 5000;
const ROUND: u32 = 7;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[derive(Debug, Clone)]
struct Opts {
    seed: u64,
    loss: f64,
    latency: Duration,
    /// B's start relative to A's (positive: later).
    skew_ms: i64,
    predict: bool,
    config: PunchConfig,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            seed: 1,
            loss: 0.0,
            latency: Duration::from_millis(20),
            skew_ms: 3,
            predict: true,
            config: PunchConfig::default(),
        }
    }
}

struct Peer {
    host: HostId,
    session: PunchSession,
    event: Option<(Instant, PunchEvent)>,
    /// Every transmit with its send time.
    log: Vec<(Instant, Transmit)>,
    /// Addresses we received punch packets from.
    heard: HashSet<SocketAddr>,
    srflx: Vec<SocketAddr>,
}

struct Outcome {
    a: Peer,
    b: Peer,
    clashes: u32,
    behaviours: (MappingBehaviour, MappingBehaviour),
    config: PunchConfig,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        matches!(self.a.event, Some((_, PunchEvent::PathValidated { .. })))
            && matches!(self.b.event, Some((_, PunchEvent::PathValidated { .. })))
    }

    fn failed_cleanly(&self) -> bool {
        matches!(self.a.event, Some((_, PunchEvent::Failed { .. })))
            && matches!(self.b.event, Some((_, PunchEvent::Failed { .. })))
    }
}

/// Binding requests to two bootstraps; returns observations and candidates.
fn gather(
    sim: &mut Sim,
    host: HostId,
    local: SocketAddr,
    bootstraps: &[(HostId, SocketAddr)],
    predict: bool,
) -> (Vec<Candidate>, Vec<Observation>) {
    let mut obs = Vec::new();
    for &(bs, bs_addr) in bootstraps {
        sim.send(host, PORT, bs_addr, Payload::BindingRequest);
        // Bootstrap answers; run until our response arrives.
        for _ in 0..10 {
            let Some(t) = sim.next_delivery() else { break };
            sim.advance_to(t);
            while let Some((src, p)) = sim.recv(bs) {
                if p == Payload::BindingRequest {
                    sim_reply(sim, bs, bs_addr, src);
                }
            }
            if let Some((_, Payload::BindingResponse(mapped))) = sim.recv(host) {
                obs.push(Observation {
                    server: bs_addr,
                    base: local,
                    mapped,
                });
                break;
            }
        }
    }
    let mut set = CandidateSet::new(CandidateSetConfig::default());
    set.add_host_addrs(PORT, [(local, InterfaceInfo::named("eth0"))]);
    for o in &obs {
        set.add_server_reflexive(o.mapped, o.base);
    }
    if predict {
        for p in predict_ports(&obs, &PredictionConfig::default()) {
            set.add_predicted(p.addr, Some(p.base), p.confidence);
        }
    }
    (set.into_vec(), obs)
}

fn sim_reply(sim: &mut Sim, bs: HostId, bs_addr: SocketAddr, to: SocketAddr) {
    sim.send(bs, bs_addr.port(), to, Payload::BindingResponse(to));
}

fn run(a_nat: NatType, b_nat: NatType, opts: &Opts) -> Outcome {
    let t0 = Instant::now();
    let mut sim = Sim::new(opts.seed, t0);
    sim.latency = opts.latency;
    let bs1_addr: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let bs2_addr: SocketAddr = "192.0.2.2:3478".parse().unwrap();
    let bs1 = sim.add_public_host(bs1_addr.ip());
    let bs2 = sim.add_public_host(bs2_addr.ip());
    let a_host = sim.add_natted_host(a_nat, ip("203.0.113.1"), ip("192.168.1.10"));
    let b_host = sim.add_natted_host(b_nat, ip("198.51.100.1"), ip("10.0.0.10"));
    let a_local = SocketAddr::new(
        if a_nat == NatType::None {
            ip("203.0.113.1")
        } else {
            ip("192.168.1.10")
        },
        PORT,
    );
    let b_local = SocketAddr::new(
        if b_nat == NatType::None {
            ip("198.51.100.1")
        } else {
            ip("10.0.0.10")
        },
        PORT,
    );
    let bootstraps = [(bs1, bs1_addr), (bs2, bs2_addr)];
    let (a_cands, a_obs) = gather(&mut sim, a_host, a_local, &bootstraps, opts.predict);
    let (b_cands, b_obs) = gather(&mut sim, b_host, b_local, &bootstraps, opts.predict);
    // Loss only applies to the punch itself, so that gathering is deterministic.
    sim.loss = opts.loss;

    // PUNCH_ME_NOW: a common start time, B skewed by a few ms.
    let start = sim.now() + Duration::from_millis(50);
    let b_start = if opts.skew_ms >= 0 {
        start + Duration::from_millis(opts.skew_ms as u64)
    } else {
        start - Duration::from_millis((-opts.skew_ms) as u64)
    };
    let mk = |role, local: &Vec<Candidate>, remote: &Vec<Candidate>, start_at| {
        PunchSession::new(
            PunchParams {
                role,
                round: ROUND,
                local: local.clone(),
                remote: remote.clone(),
                start_at,
            },
            opts.config.clone(),
        )
        .unwrap()
    };
    let srflx = |obs: &[Observation]| obs.iter().map(|o| o.mapped).collect::<Vec<_>>();
    let mut peers = [
        Peer {
            host: a_host,
            session: mk(Role::Controlling, &a_cands, &b_cands, start),
            event: None,
            log: Vec::new(),
            heard: HashSet::new(),
            srflx: srflx(&a_obs),
        },
        Peer {
            host: b_host,
            session: mk(Role::Controlled, &b_cands, &a_cands, b_start),
            event: None,
            log: Vec::new(),
            heard: HashSet::new(),
            srflx: srflx(&b_obs),
        },
    ];
    let horizon = start + opts.config.max_duration + opts.config.linger + Duration::from_secs(1);
    loop {
        let now = sim.now();
        for p in peers.iter_mut() {
            while let Some((src, payload)) = sim.recv(p.host) {
                if let Payload::Punch(probe) = payload {
                    p.heard.insert(src);
                    p.session
                        .handle_probe(src, probe.kind, probe.round, probe.seq, now);
                }
            }
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle_timeout(now);
            }
            while let Some(t) = p.session.poll_transmit() {
                p.log.push((now, t));
                sim.send_with_ttl(p.host, PORT, t.dst, Payload::Punch(t.probe), t.ttl);
            }
            while let Some(e) = p.session.poll_event() {
                assert!(p.event.is_none(), "exactly one outcome event");
                p.event = Some((now, e));
            }
        }
        let next = [
            sim.next_delivery(),
            peers[0].session.poll_timeout(),
            peers[1].session.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) if t <= horizon => sim.advance_to(t.max(now)),
            _ => break,
        }
    }
    let behaviours = (infer_mapping(&a_obs), infer_mapping(&b_obs));
    let [a, b] = peers;
    Outcome {
        a,
        b,
        clashes: sim.clashes(),
        behaviours,
        config: opts.config.clone(),
    }
}

/// Invariants that must hold for every run.
fn check_invariants(o: &Outcome) {
    for p in [&o.a, &o.b] {
        // Exactly one outcome, and the session is silent at the end.
        assert!(p.event.is_some(), "session concluded");
        assert!(p.session.is_closed());
        assert_eq!(p.session.poll_timeout(), None);
        // Anti-amplification: bytes toward never-heard destinations bounded.
        let mut per_dst: HashMap<SocketAddr, usize> = HashMap::new();
        for (_, t) in &p.log {
            *per_dst.entry(t.dst).or_default() += t.size_hint;
        }
        for (dst, bytes) in &per_dst {
            if !p.heard.contains(dst) {
                assert!(
                    *bytes <= o.config.max_unverified_bytes_per_dst,
                    "{bytes} bytes to unverified {dst}"
                );
            }
        }
        // Acks are only replies: never more acks to X than probes from X
        // (we count received probes via `heard`, acks ≤ probes received).
        let acks = p
            .log
            .iter()
            .filter(|(_, t)| t.probe.kind == ProbeKind::Ack)
            .count() as u64;
        assert!(acks <= p.session.stats().probes_received);
        for (_, t) in &p.log {
            if t.probe.kind == ProbeKind::Ack {
                assert!(p.heard.contains(&t.dst), "ack only toward a prober");
            }
        }
        // Probes per round bounded.
        let mut by_time: HashMap<Instant, usize> = HashMap::new();
        for (at, t) in &p.log {
            if t.probe.kind == ProbeKind::Probe {
                *by_time.entry(*at).or_default() += 1;
            }
        }
        let cap =
            o.config.max_probes_per_round + o.config.max_targets + o.config.max_peer_reflexive;
        assert!(by_time.values().all(|&n| n <= cap));
        // Nothing after completion: no probes after the outcome, nothing
        // at all after a failure or after the linger period.
        let (done_at, ev) = p.event.clone().unwrap();
        for (at, t) in &p.log {
            if *at > done_at {
                assert_eq!(t.probe.kind, ProbeKind::Ack, "no probes after completion");
                match ev {
                    PunchEvent::Failed { .. } => panic!("transmit after failure"),
                    PunchEvent::PathValidated { .. } => {
                        assert!(*at < done_at + o.config.linger + Duration::from_millis(1))
                    }
                }
            }
        }
    }
}

fn all_kinds() -> Vec<(&'static str, NatType)> {
    vec![
        ("none", NatType::None),
        ("full-cone", NatType::FullCone),
        ("home", NatType::Home),
        ("symmetric", NatType::Symmetric),
        (
            "seq-symmetric",
            NatType::SequentialSymmetric {
                delta: 1,
                jitter: 0,
            },
        ),
        ("udp-blocked", NatType::UdpBlocked),
    ]
}

/// Expected direct connectivity with prediction enabled.
fn expected(a: NatType, b: NatType) -> bool {
    use NatType::*;
    let eim_eif = |k| matches!(k, None | FullCone);
    let predictable_or_eim = |k| matches!(k, Home | SequentialSymmetric { .. });
    match (a, b) {
        (UdpBlocked, _) | (_, UdpBlocked) => false,
        _ if eim_eif(a) || eim_eif(b) => true,
        // Port-restricted (home) needs to know the peer's port: EIM or predicted.
        _ => predictable_or_eim(a) && predictable_or_eim(b),
    }
}

#[test]
fn matrix_with_prediction() {
    let kinds = all_kinds();
    let mut mismatches = Vec::new();
    for &(an, a) in &kinds {
        for &(bn, b) in &kinds {
            let o = run(a, b, &Opts::default());
            check_invariants(&o);
            let want = expected(a, b);
            if want != o.succeeded() || (!want && !o.failed_cleanly()) {
                mismatches.push(format!(
                    "{an} -> {bn}: want {want}, a={:?} b={:?}",
                    o.a.event, o.b.event
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn prediction_is_what_makes_sequential_symmetric_work() {
    let seq = NatType::SequentialSymmetric {
        delta: 1,
        jitter: 0,
    };
    let no_pred = Opts {
        predict: false,
        ..Opts::default()
    };
    for (a, b) in [(seq, seq), (seq, NatType::Home), (NatType::Home, seq)] {
        let with = run(a, b, &Opts::default());
        check_invariants(&with);
        assert!(with.succeeded(), "{a:?} <-> {b:?} with prediction");
        let without = run(a, b, &no_pred);
        check_invariants(&without);
        assert!(
            without.failed_cleanly(),
            "{a:?} <-> {b:?} without prediction"
        );
    }
    let o = run(seq, seq, &Opts::default());
    assert!(matches!(o.behaviours.0, MappingBehaviour::Symmetric { .. }));
}

#[test]
fn random_symmetric_pair_fails_cleanly_and_bounded() {
    let o = run(NatType::Symmetric, NatType::Symmetric, &Opts::default());
    check_invariants(&o);
    assert!(o.failed_cleanly());
    for p in [&o.a, &o.b] {
        let probes = p
            .log
            .iter()
            .filter(|(_, t)| t.probe.kind == ProbeKind::Probe)
            .count();
        // No predictions for random ports: host + two srflx, bounded rounds.
        let dsts: HashSet<SocketAddr> = p.log.iter().map(|(_, t)| t.dst).collect();
        assert!(dsts.len() <= 3);
        let rounds = p.session.stats().rounds_sent as usize;
        assert!(rounds <= o.config.max_rounds as usize);
        // Plus one priming probe per destination.
        assert!(probes <= dsts.len() * (rounds + 1), "{probes}");
        let (at, _) = p.event.clone().unwrap();
        assert!(p.log.iter().all(|(t, _)| *t <= at));
    }
}

#[test]
fn conntrack_clash_rescued_by_peer_reflexive() {
    // B (home, controlled) starts long after A's probe reached its NAT:
    // conntrack records A's flow, B's first packet to A gets a new port.
    for a in [NatType::None, NatType::FullCone] {
        let opts = Opts {
            skew_ms: 60,
            ..Opts::default()
        };
        let o = run(a, NatType::Home, &opts);
        check_invariants(&o);
        assert!(o.clashes >= 1, "the scenario must provoke a clash");
        assert!(o.succeeded(), "{:?} {:?}", o.a.event, o.b.event);
        // A validated B's new, unannounced port.
        let Some((_, PunchEvent::PathValidated { remote, .. })) = o.a.event else {
            unreachable!()
        };
        assert!(!o.b.srflx.contains(&remote));
        assert!(o.a.session.learned_peer_reflexive().any(|x| x == remote));
    }
}

#[test]
fn home_to_home_with_skew_and_stagger() {
    for skew_ms in [-8, -3, 0, 3, 8] {
        for seed in 0..3 {
            let opts = Opts {
                skew_ms,
                seed,
                ..Opts::default()
            };
            let o = run(NatType::Home, NatType::Home, &opts);
            check_invariants(&o);
            assert!(
                o.succeeded(),
                "skew {skew_ms}: {:?} {:?}",
                o.a.event,
                o.b.event
            );
            assert_eq!(o.clashes, 0);
        }
    }
}

#[test]
fn easy_pairs_survive_ten_percent_loss() {
    let easy = [
        (NatType::None, NatType::Home),
        (NatType::FullCone, NatType::Home),
        (NatType::Home, NatType::Home),
        (NatType::FullCone, NatType::FullCone),
        (NatType::Home, NatType::FullCone),
    ];
    for (a, b) in easy {
        for seed in 0..10 {
            let opts = Opts {
                loss: 0.10,
                seed,
                ..Opts::default()
            };
            let o = run(a, b, &opts);
            check_invariants(&o);
            assert!(o.succeeded(), "{a:?} <-> {b:?} seed {seed}");
        }
    }
}

#[test]
fn validated_rtt_matches_network() {
    let o = run(NatType::FullCone, NatType::Home, &Opts::default());
    let Some((_, PunchEvent::PathValidated { rtt, .. })) = o.a.event else {
        panic!("{:?}", o.a.event)
    };
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(200),
        "{rtt:?}"
    );
}

#[test]
fn backoff_timing_as_configured() {
    let config = PunchConfig {
        round_interval: Duration::from_millis(50),
        backoff: 2.0,
        max_rounds: 6,
        max_duration: Duration::from_secs(3),
        prime_ttl: None,
        ..PunchConfig::default()
    };
    let o = run(
        NatType::Home,
        NatType::UdpBlocked,
        &Opts {
            config: config.clone(),
            skew_ms: 0,
            ..Opts::default()
        },
    );
    check_invariants(&o);
    assert!(o.failed_cleanly());
    for (p, stagger) in [(&o.a, Duration::ZERO), (&o.b, config.controlled_stagger)] {
        let mut times: Vec<Instant> = p.log.iter().map(|(t, _)| *t).collect();
        times.dedup();
        assert_eq!(times.len(), 6, "max_rounds rounds");
        let first = times[0];
        for (k, t) in times.iter().enumerate() {
            // 0, 50, 150, 350, 750, 1550 ms after the (staggered) start.
            assert_eq!(*t - first, config.round_offset(k as u32));
        }
        assert_eq!(config.round_offset(5), Duration::from_millis(1550));
        // Failure exactly at start + max_duration (the controlled side's
        // deadline is not staggered).
        let (done, _) = p.event.clone().unwrap();
        assert_eq!(done - (first - stagger), config.max_duration);
    }
}

#[test]
fn priming_lets_home_to_home_survive_skew_beyond_latency() {
    // B starts 40 ms early or late (plus its 5 ms stagger), more than the
    // 20 ms one-way latency but less than that plus the 30 ms prime lead:
    // without priming, the early side's first probe reaches the other NAT
    // before that NAT has a mapping toward it, and the conntrack clash gives
    // the late side a port the early side's NAT filters out.
    for skew_ms in [-40, 40] {
        let primed = run(
            NatType::Home,
            NatType::Home,
            &Opts {
                skew_ms,
                ..Opts::default()
            },
        );
        check_invariants(&primed);
        assert!(
            primed.succeeded(),
            "skew {skew_ms}: {:?} {:?}",
            primed.a.event,
            primed.b.event
        );
        assert_eq!(primed.clashes, 0);
        // The priming probes left first, with the configured TTL.
        for p in [&primed.a, &primed.b] {
            let (_, first) = p.log[0];
            assert_eq!(first.ttl, primed.config.prime_ttl);
        }

        let unprimed = run(
            NatType::Home,
            NatType::Home,
            &Opts {
                skew_ms,
                config: PunchConfig {
                    prime_ttl: None,
                    ..PunchConfig::default()
                },
                ..Opts::default()
            },
        );
        check_invariants(&unprimed);
        assert!(unprimed.clashes >= 1);
        assert!(unprimed.failed_cleanly());
    }
}

#[test]
fn home_to_home_clash_when_skew_exceeds_prime_lead_is_a_known_limit() {
    // Documented limitation: if B starts more than `prime_lead` plus the
    // one-way latency after A, A's full probe is conntrack-recorded at B's
    // NAT before B primed it, B's flow gets a new port and A's
    // port-restricted NAT never lets it in. The sync of PUNCH_ME_NOW is what
    // keeps the skew below that.
    let o = run(
        NatType::Home,
        NatType::Home,
        &Opts {
            skew_ms: 80,
            ..Opts::default()
        },
    );
    check_invariants(&o);
    assert!(o.clashes >= 1);
    assert!(o.failed_cleanly());
}
