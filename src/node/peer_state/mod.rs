//! The decisions the overlay takes for one peer, sans-IO.
//!
//! [`PeerState`] holds everything the overlay knows about one configured
//! peer's paths (which connection is the direct path, which the relayed one,
//! the relay channel, the peer's candidates, our last announcement, punch
//! bookkeeping, backoffs) and decides what to do next. It does no I/O,
//! reads no clock and draws no random numbers: time comes in as `now`,
//! connections are named by their [`ConnId`], and what the driver must do
//! comes out of [`PeerState::poll_action`] as [`PeerAction`]s, in order.
//! [`PeerState::poll_timeout`] tells when it wants [`PeerState::handle_timeout`]
//! again.
//!
//! Inputs, grouped as in quinn-proto's `Connection`:
//! - the periodic pass: [`PeerState::handle_timeout`] with a [`Tick`] (the
//!   liveness counters of both paths and the bootstrap link to use);
//! - connections: [`PeerState::on_connection`] (admit or refuse as a
//!   duplicate), [`PeerState::on_closed`], [`PeerState::on_dial_done`];
//! - the bootstrap: [`PeerState::on_relay_granted`],
//!   [`PeerState::handle_relay_request`], [`PeerState::retire_route`],
//!   [`PeerState::handle_forwarded`] (the peer's candidates and punch
//!   requests);
//! - punching: [`PeerState::on_punch_started`],
//!   [`PeerState::on_punch_validated`];
//! - our side: [`PeerState::announce_soon`], [`PeerState::announcement`].
//!
//! The driver (`overlay`) keeps one `PeerState` per peer behind that peer's
//! own mutex, feeds it from its tasks and executes the actions from the
//! peer's maintenance task alone.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod backoff;
mod io;

pub use self::backoff::Backoff;
pub use self::io::{Admission, ConnId, LinkView, PathSample, PeerAction, PeerFacts, Tick};

use crate::nat::{birthday_target, canonical, is_private_ip};
use crate::nat::{Candidate, CandidateKind, Liveness, LivenessConfig, PathHealth};
use crate::proto::{ControlMessage, NatClass};
use crate::socket::is_virtual;

/// How often the peer's paths are re-checked (and their liveness sampled:
/// this adds to the time a dead path takes to notice).
pub const MAINTAIN_INTERVAL: Duration = Duration::from_millis(200);
/// The re-check period of a peer with both paths up and no datagram either
/// way since the last check. Its next outgoing datagram wakes the driver at
/// once (see [`PeerState::steady`]), so a path that died while idle is
/// noticed as fast as ever once traffic resumes.
pub const IDLE_MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);
/// Candidate announcements are repeated this often while there is no direct
/// path.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(3);
/// How long the peer's candidate set must stay unchanged before the leader
/// punches with it (an announcement arrives within microseconds).
pub const CANDIDATES_SETTLE: Duration = Duration::from_millis(30);
/// A failed punch is retried on the same addresses only this long after
/// its session ended (last probe sent): by then the NATs have forgotten the
/// half-open entries its probes left (Linux: 30 s for unreplied UDP, counted
/// from the last packet), which would otherwise make the retry run into the
/// same port clash. Measured from the attempt's start it raced that timeout.
pub const PUNCH_QUIET: Duration = Duration::from_secs(32);
/// After a direct path is lost, the leader waits this long before punching
/// again: the bootstrap must first see (and tell us) where our NAT maps us
/// now. A punch where one side probes stale addresses is worse than none:
/// the other side's probes leave half-open entries in the NAT that spoil
/// the next attempts.
pub const REPUNCH_SETTLE: Duration = Duration::from_millis(500);
/// A peer announces candidates only while it has no direct path: one that
/// arrives while ours is older than this means the peer lost that path.
pub const STALE_DIRECT_AFTER: Duration = Duration::from_secs(2);
/// The side that does not lead waits this long after the overlay started
/// before it dials a relay channel itself (the leader dials at once).
pub const FOLLOWER_RELAY_DIAL_WAIT: Duration = Duration::from_secs(2);
/// After a punch validated a path, the side that does not lead dials it
/// only if no direct connection came from the leader within this time.
pub const FOLLOWER_DIRECT_DIAL_WAIT: Duration = Duration::from_millis(500);
/// The peer's candidates kept at most (the oldest goes first).
pub const MAX_REMOTE_CANDIDATES: usize = 64;

/// Why a direct path was dropped (also the connection's close reason).
pub const STALLED: &str = "direct path stalled";
/// The peer announced candidates while we had an established direct path:
/// it lost that path (it moved, or its NAT did), and so did we.
pub const PEER_LOST: &str = "the peer lost its direct path";

/// One connection as a path to the peer.
#[derive(Clone, Debug)]
struct Path {
    conn: ConnId,
    /// Where the connection runs: the peer's address, or a relay channel's
    /// virtual address.
    remote: SocketAddr,
    /// Whether we dialed it (client side).
    we_dialed: bool,
    since: Instant,
    liveness: Liveness,
}

/// Everything the overlay decides for one peer (see the module doc).
#[derive(Debug)]
pub struct PeerState {
    facts: PeerFacts,
    direct: Option<Path>,
    relay: Option<Path>,
    /// The current relay channel's virtual address.
    relay_route: Option<SocketAddr>,
    /// The peer's candidates by sequence number.
    candidates: BTreeMap<u64, SocketAddr>,
    /// When they last changed.
    candidates_changed: Option<Instant>,
    /// Our candidates as last announced, with their sequence numbers.
    announced: HashMap<SocketAddr, u64>,
    next_sequence: u64,
    announce_now: bool,
    last_announce: Option<Instant>,
    /// Until when a punch session runs.
    punching: Option<Instant>,
    /// The peer's and our candidates when the last punch started.
    last_punched: (Vec<SocketAddr>, Vec<SocketAddr>, (NatClass, NatClass)),
    /// Our NAT class, as the driver last told it ([`Self::set_own_nat`]).
    own_nat: NatClass,
    /// The peer's, as its last `NAT_MAPPING` said.
    remote_nat: NatClass,
    /// Until when a birthday attempt runs (no second one meanwhile; a
    /// plain punch may run beside it).
    birthday_until: Option<Instant>,
    /// When the last direct path was dropped as dead.
    direct_lost: Option<Instant>,
    /// A validated punch address the follower dials at this time unless a
    /// direct connection came first.
    dial_after_punch: Option<(Instant, SocketAddr)>,
    dialing: Vec<SocketAddr>,
    endpoint_backoff: Backoff,
    relay_backoff: Backoff,
    punch_backoff: Backoff,
    first_connect: Option<Duration>,
    first_direct: Option<Duration>,
    /// The link of a pass waiting for our announcement before it decides
    /// on punching.
    pending_punch: Option<LinkView>,
    /// The re-check period chosen by the last pass.
    recheck: Duration,
    /// When the last pass ran.
    last_pass: Option<Instant>,
    /// Traffic counters at the last [`Self::poll_timeout_after`].
    last_traffic: Option<(u64, u64)>,
    actions: VecDeque<PeerAction>,
}

impl PeerState {
    /// A peer with no path yet.
    pub fn new(facts: PeerFacts) -> Self {
        Self {
            facts,
            direct: None,
            relay: None,
            relay_route: None,
            candidates: BTreeMap::new(),
            candidates_changed: None,
            announced: HashMap::new(),
            next_sequence: 0,
            announce_now: false,
            last_announce: None,
            punching: None,
            last_punched: (
                Vec::new(),
                Vec::new(),
                (NatClass::Unknown, NatClass::Unknown),
            ),
            own_nat: NatClass::Unknown,
            remote_nat: NatClass::Unknown,
            birthday_until: None,
            direct_lost: None,
            dial_after_punch: None,
            dialing: Vec::new(),
            endpoint_backoff: Backoff::new(),
            relay_backoff: Backoff::new(),
            punch_backoff: Backoff::starting_at(PUNCH_QUIET),
            first_connect: None,
            first_direct: None,
            pending_punch: None,
            recheck: MAINTAIN_INTERVAL,
            last_pass: None,
            last_traffic: None,
            actions: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// Whether we lead coordination with the peer.
    pub fn leads(&self) -> bool {
        self.facts.leads
    }

    /// The direct connection, if there is one.
    pub fn direct(&self) -> Option<ConnId> {
        self.direct.as_ref().map(|p| p.conn)
    }

    /// The relayed connection, if there is one.
    pub fn relay(&self) -> Option<ConnId> {
        self.relay.as_ref().map(|p| p.conn)
    }

    /// The current relay channel's virtual address.
    pub fn relay_route(&self) -> Option<SocketAddr> {
        self.relay_route
    }

    /// The virtual address the relayed connection runs to.
    pub fn relay_remote(&self) -> Option<SocketAddr> {
        self.relay.as_ref().map(|p| p.remote)
    }

    /// Time from the start to the first connection, and to the first
    /// direct one.
    pub fn firsts(&self) -> (Option<Duration>, Option<Duration>) {
        (self.first_connect, self.first_direct)
    }

    /// Whether both paths are up and the last pass had nothing pending:
    /// the driver may then sleep [`IDLE_MAINTAIN_INTERVAL`] once traffic
    /// stops, and the datapath must wake it on its next send.
    pub fn steady(&self) -> bool {
        self.recheck == MAINTAIN_INTERVAL && self.direct.is_some() && self.relay.is_some()
    }

    /// The peer's candidates to punch toward, public-looking ones first in
    /// rank, `also` added (the leader's current address from its request).
    pub fn punch_candidates(&self, also: Option<SocketAddr>) -> Vec<Candidate> {
        let mut seen = HashSet::new();
        let mut remote: Vec<Candidate> = self
            .candidates
            .values()
            .filter(|a| !is_virtual(**a) && seen.insert(**a))
            .map(|a| {
                // ADD_ADDRESS carries no kind: addresses that look public
                // rank first, since probes to them are the ones that race
                // NATs.
                let private = is_private_ip(a.ip());
                Candidate::new(
                    *a,
                    CandidateKind::ServerReflexive,
                    if private { 0 } else { 65535 },
                )
            })
            .collect();
        if let Some(addr) = also.filter(|a| !remote.iter().any(|c| c.addr == *a)) {
            remote.push(Candidate::new(addr, CandidateKind::ServerReflexive, 65535));
        }
        remote
    }

    // ---- poll ----

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<PeerAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is due, given the traffic counters
    /// (bytes in, bytes out) read *after* the driver published
    /// [`Self::steady`] to the datapath: with both paths up and no traffic
    /// since the last call, the pass may wait [`IDLE_MAINTAIN_INTERVAL`].
    pub fn poll_timeout_after(&mut self, traffic: (u64, u64)) -> Option<Instant> {
        let last = self.last_pass?;
        let quiet = self.last_traffic.replace(traffic) == Some(traffic);
        let mut wait = self.recheck;
        if self.steady() && quiet {
            wait = IDLE_MAINTAIN_INTERVAL;
        }
        let mut at = last + wait;
        if let Some((t, _)) = self.dial_after_punch {
            at = at.min(t);
        }
        Some(at)
    }

    // ---- the periodic pass ----

    /// The periodic pass: checks both paths' liveness, dials the endpoint,
    /// asks for and dials the relay, announces candidates and decides on
    /// punching.
    pub fn handle_timeout(&mut self, now: Instant, tick: Tick) {
        self.last_pass = Some(now);
        self.recheck = MAINTAIN_INTERVAL;
        self.pending_punch = None;
        self.check_paths(now, &tick);
        if let Some((at, addr)) = self.dial_after_punch {
            if now >= at {
                self.dial_after_punch = None;
                if self.direct.is_none() {
                    self.dial(addr, false);
                }
            }
        }
        // 1. Known endpoint.
        if let Some(endpoint) = self.facts.endpoint {
            if self.direct.is_none() && self.endpoint_backoff.ready(now) {
                self.endpoint_backoff.arm(now);
                self.dial(endpoint, false);
            } else if self.direct.is_some() {
                self.endpoint_backoff.reset();
            }
        }
        let Some(link) = tick.link else { return };
        // 2. Relay: both sides ask (the bootstrap makes a channel pair only
        // once both keys asked for each other, and tells the other side when
        // one asks first); the leader dials it, the other side only if no
        // connection came after a while.
        let dial_wait = if self.facts.leads {
            Duration::ZERO
        } else {
            FOLLOWER_RELAY_DIAL_WAIT
        };
        if self.relay.is_none() && self.relay_backoff.ready(now) {
            self.relay_backoff.arm(now);
            match self.relay_route {
                Some(route) => {
                    if now.duration_since(self.facts.started) >= dial_wait {
                        self.dial(route, true);
                    }
                }
                None => self
                    .actions
                    .push_back(PeerAction::RequestRelay { via: link.addr }),
            }
        } else if self.relay.is_some() {
            self.relay_backoff.reset();
        }
        // 3. Candidates and punching.
        if self.direct.is_none() && link.observed {
            let asked = std::mem::take(&mut self.announce_now);
            if asked
                || self
                    .last_announce
                    .is_none_or(|t| now.duration_since(t) >= ANNOUNCE_INTERVAL)
            {
                self.last_announce = Some(now);
                self.actions
                    .push_back(PeerAction::Announce { via: link.addr });
                // Punching waits for the announcement: it decides with our
                // candidates as announced.
                self.pending_punch = Some(link);
                return;
            }
            self.punch_step(now, link);
        } else {
            self.punch_backoff.reset();
        }
    }

    /// Samples both paths; drops the ones that stalled.
    fn check_paths(&mut self, now: Instant, tick: &Tick) {
        for (relayed, sample) in [(false, tick.direct), (true, tick.relay)] {
            let path = if relayed {
                &mut self.relay
            } else {
                &mut self.direct
            };
            let Some(p) = path.as_mut() else { continue };
            let Some(sample) = sample.filter(|s| s.conn == p.conn) else {
                continue;
            };
            if !sample.open {
                *path = None;
                continue;
            }
            let stalled = matches!(
                p.liveness.observe(now, sample.counters),
                PathHealth::Stalled { .. }
            );
            if stalled {
                let conn = p.conn;
                if relayed {
                    self.relay_stalled(conn);
                } else {
                    self.drop_direct(conn, STALLED, now);
                }
            }
        }
    }

    /// Leader: punch when the candidates settled and are new, or the
    /// backoff allows a retry on the same ones.
    fn punch_step(&mut self, now: Instant, link: LinkView) {
        let settled = self
            .candidates_changed
            .is_some_and(|t| now.duration_since(t) >= CANDIDATES_SETTLE);
        if self.candidates_changed.is_some() && !settled {
            self.recheck = CANDIDATES_SETTLE;
        }
        let remote: Vec<SocketAddr> = self.candidates.values().copied().collect();
        let have_candidates = settled && !remote.is_empty();
        let busy = self.punching.is_some_and(|t| now < t);
        if let Some(until) = self.punching {
            self.punch_backoff.not_before(until + PUNCH_QUIET);
            if until <= now {
                self.punching = None;
            }
        }
        let mut ours: Vec<SocketAddr> = self.announced.keys().copied().collect();
        ours.sort_unstable();
        // A NAT class learned late counts as new candidates: it may call
        // for another method.
        let candidates = (remote, ours, (self.own_nat, self.remote_nat));
        // New candidates (either side moved) are punched at once, even over
        // a running or failed attempt on the old ones: the backoff is for
        // retrying the same addresses.
        let fresh = candidates != self.last_punched;
        let settling = self
            .direct_lost
            .map(|t| REPUNCH_SETTLE.saturating_sub(now.duration_since(t)))
            .filter(|left| !left.is_zero());
        if let Some(left) = settling {
            self.recheck = self.recheck.min(left);
        }
        // One birthday attempt at a time, fresh candidates or not: each
        // opens hundreds of sockets or primes a thousand ports.
        let birthday = self.birthday_side();
        let birthday_busy = birthday.is_some() && self.birthday_until.is_some_and(|t| now < t);
        if self.facts.leads
            && settling.is_none()
            && have_candidates
            && !birthday_busy
            && (fresh || (!busy && self.punch_backoff.ready(now)))
        {
            self.punch_backoff.arm(now);
            self.last_punched = candidates;
            self.actions.push_back(PeerAction::InitiatePunch {
                via: link.addr,
                birthday,
            });
        }
    }

    fn dial(&mut self, addr: SocketAddr, relayed: bool) {
        // A handshake that is slow (a busy peer) is not joined by more to
        // the same place, each of which would cost the peer a connection.
        if self.dialing.contains(&addr) {
            return;
        }
        self.dialing.push(addr);
        self.actions.push_back(PeerAction::Dial { addr, relayed });
    }

    fn drop_direct(&mut self, conn: ConnId, why: &'static str, now: Instant) {
        if self.direct.as_ref().is_none_or(|p| p.conn != conn) {
            return;
        }
        self.direct = None;
        self.direct_lost = Some(now);
        // The punch that made this path may still be lingering (answering
        // late probes): it must not hold off the new one, which the peer
        // asks for within a second.
        self.punching = None;
        self.candidates.clear();
        self.announce_now = true;
        self.actions.push_back(PeerAction::DropDirect { conn, why });
    }

    fn relay_stalled(&mut self, conn: ConnId) {
        self.relay = None;
        let route = self.relay_route.take();
        self.actions
            .push_back(PeerAction::RelayStalled { conn, route });
    }

    /// Our NAT class and the peer's, as known now.
    pub fn nat_classes(&self) -> (NatClass, NatClass) {
        (self.own_nat, self.remote_nat)
    }

    /// Our side of a birthday attempt with the peer (`Some(true)`: the
    /// easy side), when one of the two NATs maps endpoint-independently
    /// and the other per destination: a plain punch cannot guess the hard
    /// side's port. A host without NAT needs no birthday (the hard side's
    /// probes reach it).
    pub fn birthday_side(&self) -> Option<bool> {
        match (self.own_nat, self.remote_nat) {
            (NatClass::EndpointIndependent, NatClass::Dependent) => Some(true),
            (NatClass::Dependent, NatClass::EndpointIndependent) => Some(false),
            _ => None,
        }
    }

    /// Our NAT class now (the driver reads it from the bootstraps' views
    /// before each pass). A change is announced to the peer; `Unknown`
    /// changes nothing.
    pub fn set_own_nat(&mut self, class: NatClass) {
        // Not knowing for a moment (our NAT is asked again) is no news:
        // the last class known stands until another one is.
        if class != self.own_nat && class != NatClass::Unknown {
            self.own_nat = class;
            if !self.announced.is_empty() {
                self.announce_now = true;
            }
        }
    }

    // ---- our announcement ----

    /// Asks for our candidates to go out at the next pass (the peer may
    /// have missed them, or they changed).
    pub fn announce_soon(&mut self) {
        self.announce_now = true;
    }

    /// What to send so that the peer has exactly `current` as our
    /// candidates: withdrawals of vanished addresses, then every current one
    /// (an address keeps its sequence number across announcements). Then
    /// the pass that asked for it ([`PeerAction::Announce`]) decides on
    /// punching.
    pub fn announcement(&mut self, current: &[SocketAddr], now: Instant) -> Vec<ControlMessage> {
        let keep: HashSet<_> = current.iter().collect();
        let mut messages = Vec::new();
        self.announced.retain(|addr, sequence| {
            let kept = keep.contains(addr);
            if !kept {
                messages.push(ControlMessage::RemoveAddress {
                    sequence: *sequence,
                });
            }
            kept
        });
        for addr in current {
            let next = &mut self.next_sequence;
            let sequence = *self.announced.entry(*addr).or_insert_with(|| {
                *next += 1;
                *next - 1
            });
            messages.push(ControlMessage::AddAddress {
                sequence,
                addr: *addr,
            });
        }
        if self.own_nat != NatClass::Unknown {
            messages.push(ControlMessage::NatMapping {
                class: self.own_nat,
            });
        }
        if let Some(link) = self.pending_punch.take() {
            self.punch_step(now, link);
        }
        messages
    }

    // ---- connections ----

    /// A connection to the peer came up (dialed by us or accepted): it
    /// becomes the path of its kind unless a live one of that kind wins the
    /// tie-break (the one dialed by the peer with the smaller key is kept,
    /// a rule both sides apply alike).
    pub fn on_connection(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        relayed: bool,
        we_dialed: bool,
        now: Instant,
    ) -> Admission {
        let leads = self.facts.leads;
        let place = if relayed {
            &mut self.relay
        } else {
            &mut self.direct
        };
        let preferred = we_dialed == leads;
        if let Some(existing) = place.as_ref().filter(|p| p.conn != conn) {
            if !preferred && existing.we_dialed == leads {
                return Admission::Duplicate;
            }
        }
        let replaces = place
            .replace(Path {
                conn,
                remote: canonical(remote),
                we_dialed,
                since: now,
                liveness: Liveness::new(LivenessConfig::default()),
            })
            .map(|p| p.conn)
            .filter(|old| *old != conn);
        let elapsed = now.saturating_duration_since(self.facts.started);
        let first_connect = self.first_connect.is_none().then_some(elapsed);
        self.first_connect = self.first_connect.or(first_connect);
        let first_direct = (!relayed && self.first_direct.is_none()).then_some(elapsed);
        self.first_direct = self.first_direct.or(first_direct);
        Admission::Install {
            replaces,
            first_connect,
            first_direct,
        }
    }

    /// A connection closed (its reader ended): it is no path any more.
    pub fn on_closed(&mut self, conn: ConnId) {
        if self.direct.as_ref().is_some_and(|p| p.conn == conn) {
            self.direct = None;
            // As when we drop it ourselves: the punch that made the path
            // may still be lingering and must not hold off the next one
            // (the peer that closed it asks for one within a second).
            self.punching = None;
        }
        if self.relay.as_ref().is_some_and(|p| p.conn == conn) {
            self.relay = None;
        }
    }

    /// A dial to `addr` ended (connected or not).
    pub fn on_dial_done(&mut self, addr: SocketAddr) {
        self.dialing.retain(|a| *a != addr);
    }

    // ---- the bootstrap ----

    /// The bootstrap granted a relay channel, at `route` (its virtual
    /// address): it replaces the previous channel, and the leader dials it.
    pub fn on_relay_granted(&mut self, route: SocketAddr) {
        if let Some(old) = self.relay_route.replace(route).filter(|o| *o != route) {
            self.retire(old);
        }
        if self.facts.leads && self.relay.is_none() {
            self.dial(route, true);
        }
    }

    /// The bootstrap at `via` says the peer asked it for a relay with us;
    /// `our_relay_via` is the bootstrap our live relay runs through, if any.
    /// We ask too unless that is the same bootstrap: a relay through
    /// another one may be dead before we notice (the peer asking says it
    /// is), and waiting for our own detection doubled the outage of a relay
    /// failover.
    pub fn handle_relay_request(&mut self, via: SocketAddr, our_relay_via: Option<SocketAddr>) {
        if self.relay.is_none() || our_relay_via != Some(via) {
            self.actions.push_back(PeerAction::RequestRelay { via });
        }
    }

    /// The relay channel at `route` is gone (the bootstrap closed it, or
    /// its link was lost): forget it and drop the connection on it. That
    /// connection is dead even if no close reached us (the peer may have
    /// restarted), and keeping it would hide the next relay connection.
    /// Returns whether `route` was the current channel.
    pub fn retire_route(&mut self, route: SocketAddr) -> bool {
        if self.relay_route != Some(route) {
            return false;
        }
        self.relay_route = None;
        self.retire(route);
        true
    }

    fn retire(&mut self, route: SocketAddr) {
        let conn = self.relay.take_if(|p| p.remote == route).map(|p| p.conn);
        self.actions
            .push_back(PeerAction::RetireRelay { route, conn });
    }

    /// A message the peer sent us through the bootstrap at `via`.
    pub fn handle_forwarded(&mut self, via: SocketAddr, msg: ControlMessage, now: Instant) {
        match msg {
            ControlMessage::AddAddress { addr, .. } if is_virtual(addr) => {
                tracing::debug!(%addr, "virtual address is no punch candidate; ignored");
            }
            ControlMessage::AddAddress { sequence, addr } => {
                // The peer announces only while it has no direct path: if
                // ours is established (not just racing this message), the
                // peer lost it (it moved, or its NAT did) and so did we.
                let stale = self
                    .direct
                    .as_ref()
                    .filter(|p| now.duration_since(p.since) >= STALE_DIRECT_AFTER)
                    .map(|p| p.conn);
                if let Some(conn) = stale {
                    self.drop_direct(conn, PEER_LOST, now);
                }
                if self.candidates.is_empty() {
                    tracing::debug!(%addr, "first candidate of the peer");
                    self.announce_now = true;
                }
                if self.candidates.len() >= MAX_REMOTE_CANDIDATES {
                    self.candidates.pop_first();
                }
                self.candidates.insert(sequence, canonical(addr));
                self.candidates_changed = Some(now);
            }
            ControlMessage::RemoveAddress { sequence } => {
                self.candidates.remove(&sequence);
                self.candidates_changed = Some(now);
            }
            ControlMessage::NatMapping { class } => {
                if class != self.remote_nat {
                    self.remote_nat = class;
                    self.candidates_changed = Some(now);
                }
            }
            ControlMessage::BirthdayMeNow {
                round,
                token,
                delay_ms,
                start_at_unix_micros,
                sender_easy,
                easy,
                hard,
            } => {
                if self.facts.leads || self.direct.is_some() {
                    return;
                }
                // One attempt at a time, as for PUNCH_ME_NOW (a plain
                // punch that began before the NAT classes were known may
                // still run: it does not hold this off); and only where
                // our own view agrees on the sides.
                if self.birthday_until.is_some_and(|t| now < t) {
                    tracing::debug!(round, "birthday requested while one runs; ignored");
                    return;
                }
                if self.birthday_side() != Some(!sender_easy) {
                    tracing::debug!(round, own = ?self.own_nat, "birthday requested, but our NAT class disagrees; ignored");
                    return;
                }
                // We probe only the peer's own public addresses: as the
                // hard side 512 probes to `easy`, as the easy side primes
                // to many ports of `hard`. An address the peer did not
                // announce (someone else's) gets nothing.
                let (easy, hard) = (canonical(easy), crate::nat::canonical_ip(hard));
                let announced = if sender_easy {
                    birthday_target(easy.ip()) && self.candidates.values().any(|a| *a == easy)
                } else {
                    birthday_target(hard) && self.candidates.values().any(|a| a.ip() == hard)
                };
                if !announced {
                    tracing::debug!(round, %easy, %hard, "birthday toward an address the peer did not announce; ignored");
                    return;
                }
                self.actions.push_back(PeerAction::JoinBirthday {
                    via,
                    round,
                    token,
                    delay_ms,
                    start_at_unix_micros,
                    easy,
                    hard,
                    we_easy: !sender_easy,
                });
            }
            ControlMessage::PunchMeNow {
                round,
                addr,
                delay_ms,
                token,
                start_at_unix_micros,
                ..
            } => {
                if self.facts.leads || self.direct.is_some() {
                    return;
                }
                // One session per peer at a time: each session may spend its
                // anti-amplification budget on every candidate the peer
                // named, so a peer repeating PUNCH_ME_NOW (with a new round
                // each time) would otherwise multiply the bytes we send to
                // addresses that never answered, possibly someone else's.
                if self.punching.is_some_and(|t| now < t) {
                    tracing::debug!(round, "punch requested while one is running; ignored");
                    return;
                }
                // `addr` is where the leader's NAT maps it now, which its
                // announcement may not have told us yet.
                let also = Some(canonical(addr)).filter(|a| !is_virtual(*a));
                self.actions.push_back(PeerAction::JoinPunch {
                    via,
                    round,
                    token,
                    delay_ms,
                    start_at_unix_micros,
                    also,
                });
            }
            other => tracing::debug!(?other, "unexpected forwarded message"),
        }
    }

    // ---- punching ----

    /// A punch session started at `start_at`: no other runs until it ends.
    pub fn on_punch_started(&mut self, start_at: Instant) {
        self.punching = Some(start_at + self.facts.punch_busy);
    }

    /// A birthday attempt starts at `start_at`: no other runs until it
    /// ends.
    pub fn on_birthday_started(&mut self, start_at: Instant) {
        self.birthday_until = Some(start_at + self.facts.punch_busy);
    }

    /// A punch validated a direct path to `remote`: the leader dials it at
    /// once, the other side only if no direct connection came within
    /// [`FOLLOWER_DIRECT_DIAL_WAIT`].
    pub fn on_punch_validated(&mut self, remote: SocketAddr, now: Instant) {
        if self.facts.leads {
            if self.direct.is_none() {
                self.dial(remote, false);
            }
        } else {
            self.dial_after_punch = Some((now + FOLLOWER_DIRECT_DIAL_WAIT, remote));
        }
    }
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod sim_world;
#[cfg(test)]
mod tests;
