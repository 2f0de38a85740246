//! Unit tests of [`PeerState`]: every decision, on a clock the test moves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::nat::PathCounters;
use crate::proto::ControlMessage;

const BOOT: &str = "198.18.0.10:9000";
const OTHER_BOOT: &str = "198.18.0.11:9000";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A relay channel's virtual address (see `socket::is_virtual`).
fn route(n: u16) -> SocketAddr {
    SocketAddr::from(([240, 0, 0, 1], n))
}

struct Peer {
    state: PeerState,
    now: Instant,
    link: Option<LinkView>,
    /// Counters fed to both paths: eliciting frames sent, datagrams in.
    counters: PathCounters,
}

impl Peer {
    fn new(leads: bool, endpoint: Option<&str>) -> Self {
        let now = Instant::now();
        Self {
            state: PeerState::new(PeerFacts {
                leads,
                endpoint: endpoint.map(sa),
                started: now,
                punch_busy: Duration::from_secs(6),
            }),
            now,
            link: Some(LinkView {
                addr: sa(BOOT),
                observed: true,
            }),
            counters: PathCounters::default(),
        }
    }

    fn sample(&self, conn: Option<ConnId>) -> Option<PathSample> {
        conn.map(|conn| PathSample {
            conn,
            open: true,
            counters: self.counters,
        })
    }

    /// Runs a pass and returns its actions (an announcement asked for is
    /// answered with `ours`).
    fn pass(&mut self) -> Vec<PeerAction> {
        let tick = Tick {
            direct: self.sample(self.state.direct()),
            relay: self.sample(self.state.relay()),
            link: self.link,
        };
        self.state.handle_timeout(self.now, tick);
        self.drain()
    }

    fn drain(&mut self) -> Vec<PeerAction> {
        let mut out = Vec::new();
        while let Some(a) = self.state.poll_action() {
            if let PeerAction::Announce { .. } = a {
                self.state.announcement(&[sa("203.0.113.1:4000")], self.now);
            }
            out.push(a);
        }
        out
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn connect(&mut self, conn: ConnId, remote: SocketAddr, relayed: bool) -> Admission {
        let we_dialed = self.state.leads();
        self.state
            .on_connection(conn, remote, relayed, we_dialed, self.now)
    }

    fn add_candidate(&mut self, sequence: u64, addr: &str) -> Vec<PeerAction> {
        self.state.handle_forwarded(
            sa(BOOT),
            ControlMessage::AddAddress {
                sequence,
                addr: sa(addr),
            },
            self.now,
        );
        self.drain()
    }
}

fn dials(actions: &[PeerAction]) -> Vec<(SocketAddr, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::Dial { addr, relayed } => Some((*addr, *relayed)),
            _ => None,
        })
        .collect()
}

fn has(actions: &[PeerAction], want: impl Fn(&PeerAction) -> bool) -> bool {
    actions.iter().any(want)
}

#[test]
fn endpoint_is_dialed_with_backoff_and_not_while_direct() {
    let mut p = Peer::new(true, Some("192.0.2.7:51820"));
    p.link = None;
    assert_eq!(dials(&p.pass()), vec![(sa("192.0.2.7:51820"), false)]);
    // The dial is under way: no second one when the backoff allows (the
    // attempt still counts).
    p.advance(Duration::from_millis(600));
    assert!(dials(&p.pass()).is_empty());
    p.state.on_dial_done(sa("192.0.2.7:51820"));
    p.advance(Duration::from_millis(900));
    assert!(dials(&p.pass()).is_empty(), "second wait is 1 s");
    p.advance(Duration::from_millis(100));
    assert_eq!(dials(&p.pass()).len(), 1);
    p.state.on_dial_done(sa("192.0.2.7:51820"));
    p.advance(Duration::from_millis(1900));
    assert!(dials(&p.pass()).is_empty(), "third wait is 2 s");
    p.advance(Duration::from_millis(100));
    assert_eq!(dials(&p.pass()).len(), 1);
    p.state.on_dial_done(sa("192.0.2.7:51820"));
    // Once direct, nothing is dialed and the backoff starts over.
    assert!(matches!(
        p.connect(1, sa("192.0.2.7:51820"), false),
        Admission::Install { .. }
    ));
    assert!(dials(&p.pass()).is_empty());
    p.state.on_closed(1);
    assert_eq!(dials(&p.pass()).len(), 1, "direct closed: dialed at once");
}

#[test]
fn relay_is_asked_for_then_dialed_by_the_leader_at_once() {
    let mut p = Peer::new(true, None);
    let actions = p.pass();
    assert!(has(&actions, |a| *a
        == PeerAction::RequestRelay { via: sa(BOOT) }));
    p.state.on_relay_granted(route(1));
    assert_eq!(dials(&p.drain()), vec![(route(1), true)]);
}

#[test]
fn follower_dials_a_granted_relay_only_after_its_wait() {
    let mut p = Peer::new(false, None);
    p.pass();
    p.state.on_relay_granted(route(1));
    assert!(dials(&p.drain()).is_empty(), "the leader dials first");
    p.advance(Duration::from_millis(600));
    assert!(dials(&p.pass()).is_empty(), "within the follower's wait");
    p.advance(FOLLOWER_RELAY_DIAL_WAIT);
    assert_eq!(dials(&p.pass()), vec![(route(1), true)]);
}

#[test]
fn a_stalled_relay_is_dropped_and_a_new_channel_asked_for_at_once() {
    let mut p = Peer::new(true, None);
    p.pass();
    p.state.on_relay_granted(route(1));
    p.drain();
    p.state.on_dial_done(route(1));
    p.connect(7, route(1), true);
    p.pass();
    // Sends go unanswered for over a second.
    for _ in 0..7 {
        p.counters.eliciting_sent += 3;
        p.advance(MAINTAIN_INTERVAL);
        let actions = p.pass();
        if has(&actions, |a| matches!(a, PeerAction::RelayStalled { .. })) {
            assert!(has(&actions, |a| *a
                == PeerAction::RelayStalled {
                    conn: 7,
                    route: Some(route(1))
                }));
            assert!(p.state.relay().is_none() && p.state.relay_route().is_none());
            // The relay backoff was reset while the relay was up.
            assert!(has(&actions, |a| matches!(
                a,
                PeerAction::RequestRelay { .. }
            )));
            return;
        }
    }
    panic!("stall not detected");
}

#[test]
fn relay_request_is_answered_unless_our_relay_runs_through_that_bootstrap() {
    let mut p = Peer::new(false, None);
    p.state.handle_relay_request(sa(BOOT), None);
    assert_eq!(
        p.drain(),
        vec![PeerAction::RequestRelay { via: sa(BOOT) }],
        "no relay yet"
    );
    p.state.on_relay_granted(route(1));
    p.connect(3, route(1), true);
    p.drain();
    p.state.handle_relay_request(sa(BOOT), Some(sa(BOOT)));
    assert!(p.drain().is_empty(), "our relay runs through it");
    // Ours runs through a bootstrap that may have died: the peer says so.
    p.state.handle_relay_request(sa(OTHER_BOOT), Some(sa(BOOT)));
    assert_eq!(
        p.drain(),
        vec![PeerAction::RequestRelay {
            via: sa(OTHER_BOOT)
        }]
    );
}

#[test]
fn a_new_grant_retires_the_old_channel_and_its_connection() {
    let mut p = Peer::new(true, None);
    p.state.on_relay_granted(route(1));
    p.drain();
    p.connect(3, route(1), true);
    p.state.on_relay_granted(route(2));
    let actions = p.drain();
    assert_eq!(
        actions[0],
        PeerAction::RetireRelay {
            route: route(1),
            conn: Some(3)
        }
    );
    assert_eq!(dials(&actions), vec![(route(2), true)]);
    // A closed channel that is not ours changes nothing.
    assert!(!p.state.retire_route(route(1)));
    assert!(p.state.retire_route(route(2)));
    assert_eq!(p.state.relay_route(), None);
}

#[test]
fn leader_punches_once_candidates_settle_and_again_only_when_they_change() {
    let mut p = Peer::new(true, None);
    let first = p.pass();
    assert!(has(&first, |a| matches!(a, PeerAction::Announce { .. })));
    p.add_candidate(0, "203.0.113.50:6000");
    p.add_candidate(1, "10.0.0.5:6000");
    p.advance(Duration::from_millis(10));
    let actions = p.pass();
    assert!(
        !has(&actions, |a| matches!(a, PeerAction::InitiatePunch { .. })),
        "the announcement is still arriving"
    );
    assert_eq!(
        p.state.poll_timeout_after((0, 0)),
        Some(p.now + CANDIDATES_SETTLE),
        "re-checked when the candidates have settled"
    );
    p.advance(CANDIDATES_SETTLE);
    let actions = p.pass();
    assert!(has(&actions, |a| *a
        == PeerAction::InitiatePunch {
            via: sa(BOOT),
            birthday: None
        }));
    p.state.on_punch_started(p.now + Duration::from_millis(100));
    // Same candidates: no retry while it runs, nor within PUNCH_QUIET of
    // its end.
    for _ in 0..10 {
        p.advance(Duration::from_secs(3));
        assert!(!has(&p.pass(), |a| matches!(
            a,
            PeerAction::InitiatePunch { .. }
        )));
    }
    // The peer moved: its new address is punched at once.
    p.add_candidate(2, "203.0.113.51:6001");
    p.advance(CANDIDATES_SETTLE);
    assert!(has(&p.pass(), |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
}

#[test]
fn only_the_leader_initiates_and_only_without_a_direct_path() {
    let mut p = Peer::new(false, None);
    p.pass();
    p.add_candidate(0, "203.0.113.50:6000");
    p.advance(CANDIDATES_SETTLE);
    assert!(!has(&p.pass(), |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
    let mut p = Peer::new(true, None);
    p.connect(1, sa("203.0.113.50:6000"), false);
    let actions = p.pass();
    assert!(!has(&actions, |a| matches!(a, PeerAction::Announce { .. })));
    p.add_candidate(0, "203.0.113.50:6000");
    p.advance(CANDIDATES_SETTLE);
    assert!(!has(&p.pass(), |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
}

#[test]
fn no_candidates_go_out_before_the_bootstrap_observed_us() {
    let mut p = Peer::new(true, None);
    p.link = Some(LinkView {
        addr: sa(BOOT),
        observed: false,
    });
    assert!(!has(&p.pass(), |a| matches!(
        a,
        PeerAction::Announce { .. }
    )));
    p.link.as_mut().unwrap().observed = true;
    assert!(has(&p.pass(), |a| matches!(a, PeerAction::Announce { .. })));
    p.advance(Duration::from_secs(1));
    assert!(!has(&p.pass(), |a| matches!(
        a,
        PeerAction::Announce { .. }
    )));
    p.state.announce_soon();
    assert!(has(&p.pass(), |a| matches!(a, PeerAction::Announce { .. })));
    p.advance(ANNOUNCE_INTERVAL);
    assert!(has(&p.pass(), |a| matches!(a, PeerAction::Announce { .. })));
}

#[test]
fn announcement_withdraws_vanished_addresses_and_keeps_sequences() {
    let mut p = Peer::new(true, None);
    let a = sa("203.0.113.1:4000");
    let b = sa("10.0.0.2:4000");
    let c = sa("203.0.113.9:4000");
    let first = p.state.announcement(&[a, b], p.now);
    assert_eq!(
        first,
        vec![
            ControlMessage::AddAddress {
                sequence: 0,
                addr: a
            },
            ControlMessage::AddAddress {
                sequence: 1,
                addr: b
            }
        ]
    );
    let second = p.state.announcement(&[a, c], p.now);
    assert_eq!(
        second,
        vec![
            ControlMessage::RemoveAddress { sequence: 1 },
            ControlMessage::AddAddress {
                sequence: 0,
                addr: a
            },
            ControlMessage::AddAddress {
                sequence: 2,
                addr: c
            }
        ]
    );
}

#[test]
fn candidates_from_a_peer_with_an_established_direct_path_mean_it_lost_it() {
    let mut p = Peer::new(true, None);
    p.connect(1, sa("203.0.113.50:6000"), false);
    // Racing our connection: kept.
    assert!(p.add_candidate(0, "203.0.113.50:6000").is_empty());
    assert_eq!(p.state.direct(), Some(1));
    p.advance(STALE_DIRECT_AFTER);
    let actions = p.add_candidate(1, "203.0.113.60:7000");
    assert_eq!(
        actions,
        vec![PeerAction::DropDirect {
            conn: 1,
            why: PEER_LOST
        }]
    );
    assert_eq!(p.state.direct(), None);
    // The old candidates went with the path; the new one is kept, and the
    // leader waits for the bootstrap to tell where its NAT maps it now.
    p.advance(CANDIDATES_SETTLE);
    let actions = p.pass();
    assert!(has(&actions, |a| matches!(a, PeerAction::Announce { .. })));
    assert!(!has(&actions, |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
    p.advance(REPUNCH_SETTLE - CANDIDATES_SETTLE - Duration::from_millis(1));
    assert!(!has(&p.pass(), |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
    p.advance(Duration::from_millis(1));
    assert!(has(&p.pass(), |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
}

#[test]
fn a_stalled_direct_path_is_dropped() {
    let mut p = Peer::new(true, None);
    p.connect(1, sa("203.0.113.50:6000"), false);
    p.pass();
    let mut dropped = false;
    for _ in 0..8 {
        p.counters.eliciting_sent += 2;
        p.advance(MAINTAIN_INTERVAL);
        let actions = p.pass();
        if has(&actions, |a| {
            *a == PeerAction::DropDirect {
                conn: 1,
                why: STALLED,
            }
        }) {
            dropped = true;
            break;
        }
    }
    assert!(dropped);
    // Answers coming back keep a path alive.
    p.connect(2, sa("203.0.113.50:6000"), false);
    for _ in 0..20 {
        p.counters.eliciting_sent += 2;
        p.counters.datagrams_received += 2;
        p.advance(MAINTAIN_INTERVAL);
        assert!(!has(&p.pass(), |a| matches!(
            a,
            PeerAction::DropDirect { .. }
        )));
    }
}

fn punch_me_now(round: u32) -> ControlMessage {
    ControlMessage::PunchMeNow {
        round,
        paired_with_sequence: 0,
        addr: sa("203.0.113.77:5000"),
        delay_ms: 60,
        token: [7; 16],
        start_at_unix_micros: 0,
    }
}

#[test]
fn punch_requests_are_joined_once_at_a_time_by_the_follower_only() {
    let mut p = Peer::new(false, None);
    p.state.handle_forwarded(sa(BOOT), punch_me_now(1), p.now);
    let actions = p.drain();
    assert!(matches!(
        actions[..],
        [PeerAction::JoinPunch {
            round: 1,
            also: Some(_),
            ..
        }]
    ));
    p.state.on_punch_started(p.now);
    p.state
        .handle_forwarded(sa(BOOT), punch_me_now(2), p.now + Duration::from_secs(1));
    assert!(p.drain().is_empty(), "one session at a time");
    p.advance(Duration::from_secs(7));
    p.state.handle_forwarded(sa(BOOT), punch_me_now(3), p.now);
    assert_eq!(p.drain().len(), 1, "after the first ended");
    // The leader never follows a request; nor does a peer with a direct path.
    let mut leader = Peer::new(true, None);
    leader
        .state
        .handle_forwarded(sa(BOOT), punch_me_now(4), leader.now);
    assert!(leader.drain().is_empty());
    let mut direct = Peer::new(false, None);
    direct.connect(1, sa("203.0.113.77:5000"), false);
    direct
        .state
        .handle_forwarded(sa(BOOT), punch_me_now(5), direct.now);
    assert!(direct.drain().is_empty());
}

#[test]
fn punch_candidates_rank_public_first_and_skip_virtual_ones() {
    let mut p = Peer::new(true, None);
    p.add_candidate(0, "10.0.0.5:6000");
    p.add_candidate(1, "100.64.3.4:6000");
    p.add_candidate(2, "203.0.113.5:6000");
    p.add_candidate(3, "203.0.113.5:6000");
    p.state.handle_forwarded(
        sa(BOOT),
        ControlMessage::AddAddress {
            sequence: 4,
            addr: route(9),
        },
        p.now,
    );
    let c = p.state.punch_candidates(Some(sa("198.51.100.1:1")));
    let ranked: Vec<(SocketAddr, bool)> = c
        .iter()
        .map(|c| {
            let lowest = Candidate::new(c.addr, CandidateKind::ServerReflexive, 0);
            (c.addr, c.priority > lowest.priority)
        })
        .collect();
    assert_eq!(
        ranked,
        vec![
            (sa("10.0.0.5:6000"), false),
            (sa("100.64.3.4:6000"), false),
            (sa("203.0.113.5:6000"), true),
            (sa("198.51.100.1:1"), true),
        ]
    );
}

#[test]
fn remote_candidates_are_bounded() {
    let mut p = Peer::new(true, None);
    for i in 0..200u16 {
        p.add_candidate(u64::from(i), &format!("203.0.113.1:{}", 1000 + i));
    }
    let c = p.state.punch_candidates(None);
    assert_eq!(c.len(), MAX_REMOTE_CANDIDATES);
    assert_eq!(c[0].addr, sa("203.0.113.1:1136"), "the oldest went first");
}

#[test]
fn a_validated_punch_is_dialed_by_the_leader_at_once_and_by_the_follower_later() {
    let mut leader = Peer::new(true, None);
    leader
        .state
        .on_punch_validated(sa("203.0.113.9:7000"), leader.now);
    assert_eq!(
        dials(&leader.drain()),
        vec![(sa("203.0.113.9:7000"), false)]
    );

    let mut follower = Peer::new(false, None);
    follower.link = None;
    follower
        .state
        .on_punch_validated(sa("203.0.113.8:7000"), follower.now);
    assert!(follower.drain().is_empty());
    follower.advance(FOLLOWER_DIRECT_DIAL_WAIT - Duration::from_millis(1));
    assert!(dials(&follower.pass()).is_empty());
    assert!(
        follower.state.poll_timeout_after((0, 0)) <= Some(follower.now + Duration::from_millis(1))
    );
    follower.advance(Duration::from_millis(1));
    assert_eq!(
        dials(&follower.pass()),
        vec![(sa("203.0.113.8:7000"), false)]
    );
    // The leader's connection came first: no second dial.
    let mut follower = Peer::new(false, None);
    follower.link = None;
    follower
        .state
        .on_punch_validated(sa("203.0.113.8:7000"), follower.now);
    follower
        .state
        .on_connection(1, sa("203.0.113.8:7000"), false, false, follower.now);
    follower.advance(FOLLOWER_DIRECT_DIAL_WAIT);
    assert!(dials(&follower.pass()).is_empty());
}

#[test]
fn duplicate_connections_resolve_alike_on_both_sides() {
    // The connection dialed by the leader (smaller key) wins, whichever
    // came first, on both sides.
    for leader_first in [true, false] {
        let mut leader = Peer::new(true, None);
        let mut follower = Peer::new(false, None);
        let remote = sa("203.0.113.9:7000");
        // Connection 1 dialed by the leader, 2 by the follower.
        let order: [(ConnId, bool); 2] = if leader_first {
            [(1, true), (2, false)]
        } else {
            [(2, false), (1, true)]
        };
        for (conn, by_leader) in order {
            leader
                .state
                .on_connection(conn, remote, false, by_leader, leader.now);
            follower
                .state
                .on_connection(conn, remote, false, !by_leader, follower.now);
        }
        assert_eq!(
            leader.state.direct(),
            Some(1),
            "leader_first={leader_first}"
        );
        assert_eq!(
            follower.state.direct(),
            Some(1),
            "leader_first={leader_first}"
        );
    }
}

#[test]
fn firsts_are_recorded_once() {
    let mut p = Peer::new(true, None);
    p.advance(Duration::from_millis(40));
    let a = p.connect(1, route(1), true);
    assert_eq!(
        a,
        Admission::Install {
            replaces: None,
            first_connect: Some(Duration::from_millis(40)),
            first_direct: None
        }
    );
    p.advance(Duration::from_millis(100));
    let a = p.connect(2, sa("203.0.113.9:7000"), false);
    assert_eq!(
        a,
        Admission::Install {
            replaces: None,
            first_connect: None,
            first_direct: Some(Duration::from_millis(140))
        }
    );
    assert_eq!(
        p.state.firsts(),
        (
            Some(Duration::from_millis(40)),
            Some(Duration::from_millis(140))
        )
    );
}

#[test]
fn idle_peers_with_both_paths_are_checked_less_often() {
    let mut p = Peer::new(true, None);
    p.connect(1, sa("203.0.113.9:7000"), false);
    p.connect(2, route(1), true);
    p.pass();
    assert!(p.state.steady());
    let t = p.now;
    assert_eq!(
        p.state.poll_timeout_after((5, 5)),
        Some(t + MAINTAIN_INTERVAL)
    );
    assert_eq!(
        p.state.poll_timeout_after((5, 5)),
        Some(t + IDLE_MAINTAIN_INTERVAL),
        "no traffic since the last check"
    );
    assert_eq!(
        p.state.poll_timeout_after((6, 5)),
        Some(t + MAINTAIN_INTERVAL),
        "traffic"
    );
    p.state.on_closed(2);
    p.pass();
    assert!(!p.state.steady());
}

#[test]
fn backoff_doubles_to_its_cap_and_resets() {
    let t = Instant::now();
    let mut b = Backoff::new();
    assert!(b.ready(t));
    b.arm(t);
    assert!(!b.ready(t + Duration::from_millis(499)));
    assert!(b.ready(t + Duration::from_millis(500)));
    let mut at = t;
    for _ in 0..20 {
        b.arm(at);
        at += Duration::from_secs(60);
    }
    b.arm(at);
    assert!(b.ready(at + Duration::from_secs(30)), "capped at 30 s");
    assert!(!b.ready(at + Duration::from_secs(29)));
    b.not_before(at + Duration::from_secs(90));
    assert!(!b.ready(at + Duration::from_secs(60)));
    b.reset();
    assert!(b.ready(at));
}

fn birthday_me_now(sender_easy: bool) -> ControlMessage {
    ControlMessage::BirthdayMeNow {
        round: 9,
        token: [9; 16],
        delay_ms: 60,
        start_at_unix_micros: 0,
        sender_easy,
        easy: sa("203.0.113.77:5000"),
        hard: "198.51.100.9".parse().unwrap(),
    }
}

/// The NAT classes pick the method: birthday probing only between an
/// endpoint-independent NAT and a dependent one, with our side; the class
/// goes out with the candidates, and a class learned late is news.
#[test]
fn nat_classes_pick_birthday_probing_and_its_side() {
    use crate::proto::NatClass::{Dependent, EndpointIndependent, Public, Unknown};
    let mut p = Peer::new(true, None);
    p.state.set_own_nat(EndpointIndependent);
    let actions = p.pass();
    assert!(has(&actions, |a| matches!(a, PeerAction::Announce { .. })));
    let sent = p.state.announcement(&[sa("203.0.113.1:4000")], p.now);
    assert_eq!(
        sent.last(),
        Some(&ControlMessage::NatMapping {
            class: EndpointIndependent
        })
    );
    p.add_candidate(0, "198.51.100.9:6000");
    p.advance(CANDIDATES_SETTLE);
    assert!(has(&p.pass(), |a| *a
        == PeerAction::InitiatePunch {
            via: sa(BOOT),
            birthday: None
        }));
    p.state.on_punch_started(p.now);
    // The peer says it is behind a symmetric NAT: news, at once.
    p.state.handle_forwarded(
        sa(BOOT),
        ControlMessage::NatMapping { class: Dependent },
        p.now,
    );
    assert_eq!(p.state.birthday_side(), Some(true));
    p.advance(CANDIDATES_SETTLE);
    assert!(has(&p.pass(), |a| *a
        == PeerAction::InitiatePunch {
            via: sa(BOOT),
            birthday: Some(true)
        }));
    // The leader starts no second birthday while one runs, even for news.
    p.state.on_birthday_started(p.now);
    p.add_candidate(1, "198.51.100.9:6001");
    p.advance(CANDIDATES_SETTLE);
    assert!(!has(&p.pass(), |a| matches!(
        a,
        PeerAction::InitiatePunch { .. }
    )));
    // Not knowing our class for a moment changes nothing.
    p.state.set_own_nat(Unknown);
    assert_eq!(p.state.birthday_side(), Some(true));
    // Our class changing is announced again.
    p.state.set_own_nat(Dependent);
    assert_eq!(p.state.birthday_side(), None, "two hard NATs: no birthday");
    assert!(has(&p.pass(), |a| matches!(a, PeerAction::Announce { .. })));
    for (own, remote, side) in [
        (Dependent, EndpointIndependent, Some(false)),
        (Public, Dependent, None),
        (EndpointIndependent, EndpointIndependent, None),
        (Unknown, Dependent, None),
    ] {
        let mut p = Peer::new(true, None);
        p.state.set_own_nat(own);
        p.state.handle_forwarded(
            sa(BOOT),
            ControlMessage::NatMapping { class: remote },
            p.now,
        );
        assert_eq!(p.state.birthday_side(), side, "{own:?} {remote:?}");
    }
}

/// The follower joins a birthday attempt only when its own class agrees
/// on the sides, one at a time, and never as the leader.
#[test]
fn birthday_requests_are_joined_when_the_sides_agree() {
    use crate::proto::NatClass::{Dependent, EndpointIndependent};
    let mut p = Peer::new(false, None);
    p.state.set_own_nat(Dependent);
    p.state.handle_forwarded(
        sa(BOOT),
        ControlMessage::NatMapping {
            class: EndpointIndependent,
        },
        p.now,
    );
    // An easy address the peer never announced: nothing to probe.
    p.state
        .handle_forwarded(sa(BOOT), birthday_me_now(true), p.now);
    assert!(p.drain().is_empty(), "not one of the peer's addresses");
    p.add_candidate(0, "203.0.113.77:5000");
    // A plain punch running (begun before the classes were known) does
    // not hold a birthday off.
    p.state.on_punch_started(p.now);
    // The sender claims to be hard too: refused.
    p.state
        .handle_forwarded(sa(BOOT), birthday_me_now(false), p.now);
    assert!(p.drain().is_empty());
    p.state
        .handle_forwarded(sa(BOOT), birthday_me_now(true), p.now);
    let actions = p.drain();
    assert!(matches!(
        actions[..],
        [PeerAction::JoinBirthday {
            round: 9,
            we_easy: false,
            ..
        }]
    ));
    p.state.on_birthday_started(p.now);
    p.state
        .handle_forwarded(sa(BOOT), birthday_me_now(true), p.now);
    assert!(p.drain().is_empty(), "one at a time");
    let mut leader = Peer::new(true, None);
    leader.state.set_own_nat(Dependent);
    leader
        .state
        .handle_forwarded(sa(BOOT), birthday_me_now(true), leader.now);
    assert!(leader.drain().is_empty(), "the leader starts its own");
}

/// The easy side primes only a public IP the peer announced.
#[test]
fn the_easy_side_primes_only_an_announced_public_ip() {
    use crate::proto::NatClass::{Dependent, EndpointIndependent};
    let mut p = Peer::new(false, None);
    p.state.set_own_nat(EndpointIndependent);
    p.state.handle_forwarded(
        sa(BOOT),
        ControlMessage::NatMapping { class: Dependent },
        p.now,
    );
    let hard_at = |ip: &str| ControlMessage::BirthdayMeNow {
        round: 9,
        token: [9; 16],
        delay_ms: 60,
        start_at_unix_micros: 0,
        sender_easy: false,
        easy: sa("203.0.113.1:4000"),
        hard: ip.parse().unwrap(),
    };
    p.state
        .handle_forwarded(sa(BOOT), hard_at("198.51.100.9"), p.now);
    assert!(p.drain().is_empty(), "not announced");
    p.add_candidate(0, "10.0.0.9:6000");
    p.state
        .handle_forwarded(sa(BOOT), hard_at("10.0.0.9"), p.now);
    assert!(p.drain().is_empty(), "private");
    p.add_candidate(1, "198.51.100.9:6000");
    p.state
        .handle_forwarded(sa(BOOT), hard_at("198.51.100.9"), p.now);
    assert!(matches!(
        p.drain()[..],
        [PeerAction::JoinBirthday { we_easy: true, .. }]
    ));
}
