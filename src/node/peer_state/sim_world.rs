//! The world of the two-peer scenarios (`sim_tests`): two [`PeerState`]s
//! over the simulated network of `nat::sim`:
//! real NATs, real punch sessions, bootstraps that relay with both keys'
//! consent and can die. Minutes of simulated time run in milliseconds.
//!
//! What is modelled: each peer's socket at port 5000 behind its NAT; the
//! bootstraps observe the peer's mapped address (binding requests every
//! second, which also keep the mapping); QUIC connections are ids whose
//! packets cross the simulated network for direct paths (a dial is a
//! packet that must get through both NATs, keep-alives decide liveness);
//! relayed paths work while their bootstrap is up and holds the channel. A
//! peer learns a bootstrap died [`LINK_DETECT`] later (its link's own
//! liveness) and reconnects [`RECONNECT`] after the bootstrap is back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{
    Admission, ConnId, LinkView, PathSample, PeerAction, PeerFacts, PeerState, Tick,
    MAINTAIN_INTERVAL,
};
use crate::nat::sim::{HostId, NatType, Payload, Sim};
use crate::nat::{PathCounters, PunchConfig, PunchEvent, PunchParams, PunchSession, Role};
use crate::proto::ControlMessage;

pub(super) const PORT: u16 = 5000;
pub(super) const STEP: Duration = Duration::from_millis(5);
pub(super) const LINK_DETECT: Duration = Duration::from_millis(1200);
pub(super) const RECONNECT: Duration = Duration::from_millis(300);
pub(super) const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const PUNCH_DELAY: Duration = Duration::from_millis(80);

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) struct Boot {
    pub(super) host: HostId,
    pub(super) addr: SocketAddr,
    pub(super) alive: bool,
    pub(super) changed: Instant,
    /// (asking peer, other peer) pairs that asked for a relay.
    pub(super) consent: HashSet<(usize, usize)>,
    /// Channel pairs: each peer's route (virtual address) of a relay.
    pub(super) channels: Vec<[SocketAddr; 2]>,
}

pub(super) struct SimPeer {
    pub(super) state: PeerState,
    pub(super) host: HostId,
    pub(super) local: SocketAddr,
    /// What each bootstrap saw as our address.
    pub(super) observed: Vec<Option<SocketAddr>>,
    /// Whether we believe each bootstrap link is up.
    pub(super) believed: Vec<bool>,
    pub(super) session: Option<PunchSession>,
    pub(super) next_pass: Instant,
    pub(super) woken: bool,
    pub(super) punches: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Conn {
    /// Dialer first.
    pub(super) peers: [usize; 2],
    /// Relayed through this bootstrap, or direct.
    pub(super) boot: Option<usize>,
    /// Where each side sends (direct: the other's address as seen).
    pub(super) remote: [SocketAddr; 2],
    pub(super) open: [bool; 2],
    pub(super) counters: [PathCounters; 2],
}

pub(super) enum Event {
    Forward {
        to: usize,
        via: usize,
        msg: ControlMessage,
    },
    Granted {
        to: usize,
        route: SocketAddr,
    },
    AskedFor {
        to: usize,
        via: usize,
    },
    DialFailed {
        peer: usize,
        addr: SocketAddr,
    },
    Connected {
        id: ConnId,
    },
}

pub(super) struct World {
    pub(super) sim: Sim,
    pub(super) boots: Vec<Boot>,
    pub(super) peers: [SimPeer; 2],
    pub(super) conns: HashMap<ConnId, Conn>,
    pub(super) next_conn: ConnId,
    pub(super) next_route: u16,
    pub(super) events: BTreeMap<(Instant, u64), Event>,
    pub(super) seq: u64,
    /// Direct dials under way: (dialer, addr, conn id) waiting for the ack.
    pub(super) dials: HashMap<ConnId, (usize, SocketAddr, Instant)>,
    /// The bootstrap of every route granted.
    pub(super) route_boots: HashMap<SocketAddr, usize>,
    /// How long each peer takes to find a dead bootstrap link dead.
    pub(super) link_detect: [Duration; 2],
    /// Each peer sends on its relayed connection every this many passes
    /// (an idle peer sends rarely, so it notices a dead relay late).
    pub(super) relay_send_every: [u32; 2],
    pub(super) passes: [u32; 2],
    pub(super) started: Instant,
}

impl World {
    pub(super) fn new(a: NatType, b: NatType, boots: usize) -> Self {
        let t0 = Instant::now();
        let mut sim = Sim::new(7, t0);
        sim.latency = Duration::from_millis(10);
        let boots: Vec<Boot> = (0..boots)
            .map(|i| {
                let addr = SocketAddr::new(ip(&format!("192.0.2.{}", i + 1)), 9000);
                Boot {
                    host: sim.add_public_host(addr.ip()),
                    addr,
                    alive: true,
                    changed: t0 - RECONNECT,
                    consent: HashSet::new(),
                    channels: Vec::new(),
                }
            })
            .collect();
        let mut peer = |kind: NatType, public: &str, private: &str, leads: bool| {
            let host = sim.add_natted_host(kind, ip(public), ip(private));
            let local_ip = if kind == NatType::None {
                ip(public)
            } else {
                ip(private)
            };
            SimPeer {
                state: PeerState::new(PeerFacts {
                    leads,
                    endpoint: None,
                    started: t0,
                    punch_busy: PunchConfig::default().max_duration + PunchConfig::default().linger,
                }),
                host,
                local: SocketAddr::new(local_ip, PORT),
                observed: vec![None; boots.len()],
                believed: vec![true; boots.len()],
                session: None,
                next_pass: t0,
                woken: true,
                punches: 0,
            }
        };
        let peers = [
            peer(a, "203.0.113.1", "192.168.1.10", true),
            peer(b, "198.51.100.1", "10.0.0.10", false),
        ];
        Self {
            sim,
            boots,
            peers,
            conns: HashMap::new(),
            next_conn: 1,
            next_route: 1,
            events: BTreeMap::new(),
            seq: 0,
            dials: HashMap::new(),
            route_boots: HashMap::new(),
            link_detect: [LINK_DETECT; 2],
            relay_send_every: [1; 2],
            passes: [0; 2],
            started: t0,
        }
    }

    pub(super) fn now(&self) -> Instant {
        self.sim.now()
    }

    pub(super) fn at(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.events.insert((self.now() + after, self.seq), event);
    }

    pub(super) fn hop(&self) -> Duration {
        self.sim.latency * 2
    }

    /// The path peer `p` uses now: "direct", "relay" or "none".
    pub(super) fn path(&self, p: usize) -> &'static str {
        let s = &self.peers[p].state;
        if s.direct().is_some() {
            "direct"
        } else if s.relay().is_some() {
            "relay"
        } else {
            "none"
        }
    }

    pub(super) fn relay_boot(&self, p: usize) -> Option<usize> {
        let id = self.peers[p].state.relay()?;
        self.conns.get(&id)?.boot
    }

    pub(super) fn kill(&mut self, b: usize) {
        let now = self.now();
        let boot = &mut self.boots[b];
        boot.alive = false;
        boot.changed = now;
        boot.consent.clear();
        boot.channels.clear();
    }

    pub(super) fn restart(&mut self, b: usize) {
        let now = self.now();
        self.boots[b].alive = true;
        self.boots[b].changed = now;
    }

    /// Runs until `done` holds or `limit` passes; returns the time taken.
    pub(super) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> Option<Duration> {
        let start = self.now();
        while self.now() < start + limit {
            if done(self) {
                return Some(self.now() - start);
            }
            self.step();
        }
        done(self).then(|| self.now() - start)
    }

    pub(super) fn step(&mut self) {
        let now = self.now() + STEP;
        self.sim.advance_to(now);
        self.links(now);
        self.packets(now);
        self.sessions(now);
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let event = entry.remove();
            self.event(event, now);
        }
        for p in 0..2 {
            if self.peers[p].woken || now >= self.peers[p].next_pass {
                self.pass(p, now);
            }
        }
    }

    /// Link beliefs, binding requests (once a second), retiring channels of
    /// a link found dead.
    pub(super) fn links(&mut self, now: Instant) {
        let tick = (now - self.started).as_millis() % 1000 < STEP.as_millis();
        for p in 0..2 {
            for b in 0..self.boots.len() {
                let boot = &self.boots[b];
                let believe = if boot.alive {
                    now >= boot.changed + RECONNECT
                } else {
                    now < boot.changed + self.link_detect[p]
                };
                let was = std::mem::replace(&mut self.peers[p].believed[b], believe);
                if was && !believe {
                    // The link is lost: its relay channels with it.
                    self.peers[p].observed[b] = None;
                    if let Some(route) = self.peers[p].state.relay_route() {
                        if self.route_boot(route) == Some(b) {
                            self.peers[p].state.retire_route(route);
                        }
                    }
                    self.peers[p].woken = true;
                }
                if believe && (tick || !was) {
                    let (host, addr) = (self.peers[p].host, self.boots[b].addr);
                    self.sim.send(host, PORT, addr, Payload::BindingRequest);
                }
            }
        }
    }

    pub(super) fn route_boot(&self, route: SocketAddr) -> Option<usize> {
        self.route_boots.get(&route).copied()
    }

    pub(super) fn packets(&mut self, now: Instant) {
        for b in 0..self.boots.len() {
            while let Some((src, payload)) = self.sim.recv(self.boots[b].host) {
                if self.boots[b].alive && payload == Payload::BindingRequest {
                    let addr = self.boots[b].addr;
                    let host = self.boots[b].host;
                    self.sim
                        .send(host, addr.port(), src, Payload::BindingResponse(src));
                }
            }
        }
        for p in 0..2 {
            while let Some((src, payload)) = self.sim.recv(self.peers[p].host) {
                match payload {
                    Payload::BindingResponse(mapped) => {
                        let Some(b) = self.boots.iter().position(|b| b.addr == src) else {
                            continue;
                        };
                        let old = self.peers[p].observed[b].replace(mapped);
                        if old != Some(mapped) {
                            if old.is_some() {
                                self.peers[p].state.announce_soon();
                            }
                            self.peers[p].woken = true;
                        }
                    }
                    Payload::Punch(probe) => {
                        if let Some(s) = self.peers[p].session.as_mut() {
                            s.handle_probe(src, probe.kind, probe.round, probe.seq, now);
                        }
                    }
                    Payload::Quic(id) => self.quic_in(p, src, id, now),
                    Payload::BindingRequest => {}
                }
            }
        }
    }

    /// A QUIC packet of connection `id` reached peer `p` from `src`.
    pub(super) fn quic_in(&mut self, p: usize, src: SocketAddr, id: ConnId, now: Instant) {
        if let Some((dialer, addr, _)) = self.dials.get(&id).copied() {
            if dialer == p {
                // The handshake's answer: connected.
                self.dials.remove(&id);
                self.peers[p].state.on_dial_done(addr);
                self.install(id, now);
            } else if let std::collections::hash_map::Entry::Vacant(e) = self.conns.entry(id) {
                // The handshake reached the peer: it answers to the source.
                e.insert(Conn {
                    peers: [dialer, p],
                    boot: None,
                    remote: [addr, src],
                    open: [false; 2],
                    counters: [PathCounters::default(); 2],
                });
                let host = self.peers[p].host;
                self.sim.send(host, PORT, src, Payload::Quic(id));
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&id) {
            let side = usize::from(c.peers[1] == p);
            c.counters[side].datagrams_received += 1;
        }
    }

    pub(super) fn install(&mut self, id: ConnId, now: Instant) {
        let c = self.conns[&id];
        for side in 0..2 {
            let p = c.peers[side];
            let admission = self.peers[p].state.on_connection(
                id,
                c.remote[side],
                c.boot.is_some(),
                side == 0,
                now,
            );
            match admission {
                Admission::Install { replaces, .. } => {
                    if let Some(old) = replaces {
                        self.close(old);
                    }
                    self.conns.get_mut(&id).unwrap().open[side] = true;
                }
                Admission::Duplicate => {
                    self.close(id);
                    return;
                }
            }
            self.peers[p].woken = true;
        }
    }

    /// Peer `p` closes its end of `id`; the other end hears of it only if
    /// the path still carries packets (a relay through a dead bootstrap
    /// does not: that end finds out by itself).
    pub(super) fn close_from(&mut self, p: usize, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let side = usize::from(c.peers[1] == p);
        c.open[side] = false;
        let carried = c.boot.is_none_or(|b| self.boots[b].alive);
        let other_open = c.open[1 - side];
        self.peers[p].state.on_closed(id);
        self.peers[p].woken = true;
        if carried || !other_open {
            self.close(id);
        }
    }

    pub(super) fn close(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            for p in c.peers {
                self.peers[p].state.on_closed(id);
                self.peers[p].woken = true;
            }
        }
    }

    pub(super) fn sessions(&mut self, now: Instant) {
        for p in 0..2 {
            let host = self.peers[p].host;
            let Some(s) = self.peers[p].session.as_mut() else {
                continue;
            };
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            let mut out = Vec::new();
            while let Some(t) = s.poll_transmit() {
                out.push(t);
            }
            let mut validated = None;
            while let Some(e) = s.poll_event() {
                if let PunchEvent::PathValidated { remote, .. } = e {
                    validated = Some(remote);
                }
            }
            if s.poll_timeout().is_none() {
                self.peers[p].session = None;
            }
            for t in out {
                self.sim
                    .send_with_ttl(host, PORT, t.dst, Payload::Punch(t.probe), t.ttl);
            }
            if let Some(remote) = validated {
                self.peers[p].state.on_punch_validated(remote, now);
                self.peers[p].woken = true;
            }
        }
    }

    pub(super) fn event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Forward { to, via, msg } => {
                if self.boots[via].alive {
                    let addr = self.boots[via].addr;
                    self.peers[to].state.handle_forwarded(addr, msg, now);
                    self.peers[to].woken = true;
                }
            }
            Event::Granted { to, route } => {
                self.peers[to].state.on_relay_granted(route);
                self.peers[to].woken = true;
            }
            Event::AskedFor { to, via } => {
                let ours = self.relay_boot(to).map(|b| self.boots[b].addr);
                let addr = self.boots[via].addr;
                self.peers[to].state.handle_relay_request(addr, ours);
                self.peers[to].woken = true;
            }
            Event::DialFailed { peer, addr } => {
                self.peers[peer].state.on_dial_done(addr);
                self.peers[peer].woken = true;
            }
            Event::Connected { id } => self.install(id, now),
        }
    }

    pub(super) fn boot_at(&self, addr: SocketAddr) -> usize {
        self.boots.iter().position(|b| b.addr == addr).unwrap()
    }

    pub(super) fn pass(&mut self, p: usize, now: Instant) {
        self.peers[p].woken = false;
        self.passes[p] += 1;
        let relay_sends = self.passes[p].is_multiple_of(self.relay_send_every[p]);
        // Keep-alives on every open connection, and their counters.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        let mut samples = [None, None];
        for id in ids {
            let c = self.conns[&id];
            let Some(side) = c.peers.iter().position(|x| *x == p) else {
                continue;
            };
            if !c.open[side] {
                continue;
            }
            let c = self.conns.get_mut(&id).unwrap();
            if c.boot.is_some() && !relay_sends {
                let sample = PathSample {
                    conn: id,
                    open: true,
                    counters: c.counters[side],
                };
                samples[1] = Some(sample);
                continue;
            }
            c.counters[side].eliciting_sent += 1;
            match c.boot {
                None => {
                    let (host, dst) = (self.peers[p].host, c.remote[side]);
                    self.sim.send(host, PORT, dst, Payload::Quic(id));
                }
                Some(b) => {
                    let boot = &self.boots[b];
                    let works = boot.alive
                        && boot
                            .channels
                            .iter()
                            .any(|ch| ch.contains(&c.remote[0]) || ch.contains(&c.remote[1]));
                    if works {
                        c.counters[1 - side].datagrams_received += 1;
                    }
                }
            }
            let sample = PathSample {
                conn: id,
                open: true,
                counters: self.conns[&id].counters[side],
            };
            samples[usize::from(self.conns[&id].boot.is_some())] = Some(sample);
        }
        let link = (0..self.boots.len())
            .find(|b| self.peers[p].believed[*b])
            .map(|b| LinkView {
                addr: self.boots[b].addr,
                observed: self.peers[p].observed[b].is_some(),
            });
        let tick = Tick {
            direct: samples[0],
            relay: samples[1],
            link,
        };
        self.peers[p].state.handle_timeout(now, tick);
        while let Some(action) = self.peers[p].state.poll_action() {
            self.act(p, action, now);
        }
        // Traffic flows all the time (a ping stream): passes every 200 ms.
        let busy = ((now - self.started).as_millis() as u64, 0);
        self.peers[p].next_pass = self.peers[p]
            .state
            .poll_timeout_after(busy)
            .unwrap_or(now + MAINTAIN_INTERVAL);
    }

    pub(super) fn act(&mut self, p: usize, action: PeerAction, now: Instant) {
        let other = 1 - p;
        match action {
            PeerAction::Dial {
                addr,
                relayed: true,
            } => {
                let pair = self
                    .boots
                    .iter()
                    .enumerate()
                    .find_map(|(b, boot)| {
                        boot.channels
                            .iter()
                            .find(|ch| ch[p] == addr)
                            .map(|ch| (b, *ch))
                    })
                    .filter(|(b, _)| self.boots[*b].alive);
                let granted_there = pair.is_some_and(|(_, ch)| {
                    self.peers[other].state.relay_route() == Some(ch[other])
                });
                match pair.filter(|_| granted_there) {
                    Some((b, ch)) => {
                        let id = self.next_conn;
                        self.next_conn += 1;
                        self.conns.insert(
                            id,
                            Conn {
                                peers: [p, other],
                                boot: Some(b),
                                remote: [ch[p], ch[other]],
                                open: [false; 2],
                                counters: [PathCounters::default(); 2],
                            },
                        );
                        self.peers[p].state.on_dial_done(addr);
                        let hop = self.hop();
                        self.at(hop * 2, Event::Connected { id });
                    }
                    None => self.at(DIAL_TIMEOUT, Event::DialFailed { peer: p, addr }),
                }
            }
            PeerAction::Dial {
                addr,
                relayed: false,
            } => {
                let id = self.next_conn;
                self.next_conn += 1;
                self.dials.insert(id, (p, addr, now));
                let host = self.peers[p].host;
                self.sim.send(host, PORT, addr, Payload::Quic(id));
                self.at(DIAL_TIMEOUT, Event::DialFailed { peer: p, addr });
            }
            PeerAction::RequestRelay { via } => {
                let b = self.boot_at(via);
                if !self.boots[b].alive {
                    return;
                }
                self.boots[b].consent.insert((p, other));
                let hop = self.hop();
                if self.boots[b].consent.contains(&(other, p)) {
                    let routes = [self.route(), self.route()];
                    self.boots[b].consent.clear();
                    self.boots[b].channels.push(routes);
                    self.route_boots.insert(routes[0], b);
                    self.route_boots.insert(routes[1], b);
                    self.at(
                        hop,
                        Event::Granted {
                            to: 0,
                            route: routes[0],
                        },
                    );
                    self.at(
                        hop,
                        Event::Granted {
                            to: 1,
                            route: routes[1],
                        },
                    );
                } else {
                    self.at(hop, Event::AskedFor { to: other, via: b });
                }
            }
            PeerAction::Announce { via } => {
                let mut addrs: Vec<SocketAddr> =
                    self.peers[p].observed.iter().flatten().copied().collect();
                addrs.push(self.peers[p].local);
                addrs.sort_unstable();
                addrs.dedup();
                let messages = self.peers[p].state.announcement(&addrs, now);
                let b = self.boot_at(via);
                let hop = self.hop();
                for msg in messages {
                    self.at(
                        hop,
                        Event::Forward {
                            to: other,
                            via: b,
                            msg,
                        },
                    );
                }
            }
            PeerAction::InitiatePunch { via, .. } => {
                let b = self.boot_at(via);
                let Some(addr) = self.peers[p].observed.iter().flatten().next().copied() else {
                    return;
                };
                let hop = self.hop();
                let round = 100 + self.peers[p].punches;
                self.at(
                    hop,
                    Event::Forward {
                        to: other,
                        via: b,
                        msg: ControlMessage::PunchMeNow {
                            round,
                            paired_with_sequence: 0,
                            addr,
                            delay_ms: PUNCH_DELAY.as_millis() as u64,
                            token: [1; 16],
                            start_at_unix_micros: 0,
                        },
                    },
                );
                self.start_session(p, Role::Controlling, round, now + hop + PUNCH_DELAY, None);
            }
            PeerAction::JoinPunch {
                round,
                delay_ms,
                also,
                ..
            } => {
                let start = now + Duration::from_millis(delay_ms);
                self.start_session(p, Role::Controlled, round, start, also);
            }
            // This world tells no peer its NAT class, so none picks
            // birthday probing (its own sim tests are in nat::birthday).
            PeerAction::JoinBirthday { .. } => {}
            PeerAction::DropDirect { conn, .. } | PeerAction::RelayStalled { conn, .. } => {
                self.close_from(p, conn);
            }
            PeerAction::RetireRelay { conn, .. } => {
                if let Some(conn) = conn {
                    self.close_from(p, conn);
                }
            }
        }
    }

    pub(super) fn route(&mut self) -> SocketAddr {
        self.next_route += 1;
        SocketAddr::new(ip("240.0.0.1"), self.next_route)
    }

    pub(super) fn start_session(
        &mut self,
        p: usize,
        role: Role,
        round: u32,
        start_at: Instant,
        also: Option<SocketAddr>,
    ) {
        let remote = self.peers[p].state.punch_candidates(also);
        if remote.is_empty() {
            return;
        }
        let local = self.peers[p]
            .observed
            .iter()
            .flatten()
            .map(|a| {
                crate::nat::Candidate::new(*a, crate::nat::CandidateKind::ServerReflexive, 65535)
            })
            .collect();
        let params = PunchParams {
            role,
            round,
            local,
            remote,
            start_at,
        };
        let config = PunchConfig {
            prime_ttl: Some(2),
            ..PunchConfig::default()
        };
        self.peers[p].session = Some(PunchSession::new(params, config).unwrap());
        self.peers[p].punches += 1;
        self.peers[p].state.on_punch_started(start_at);
    }
}
