//! One coordinated hole-punch attempt toward a peer (sans-IO).
//!
//! Both peers learn each other's candidates and a common start time from a
//! bootstrap's PUNCH_ME_NOW, then each runs a [`PunchSession`]:
//!
//! 1. At `start_at` (the controlled side a configurable `controlled_stagger`
//!    later) one *priming* probe goes to every remote target with a small IP
//!    TTL (`prime_ttl`): it opens our own NAT's mapping toward the target but
//!    expires in the network before it reaches the peer's NAT. A Linux NAT
//!    that sees an unsolicited packet from the peer before its host sent
//!    anything there records that flow, and the host's own packet to the
//!    peer then gets a fresh port (the conntrack port clash), so the side
//!    whose first full probe arrives early would break the other's mapping.
//!    With both mappings primed, full probes may arrive in any order: they
//!    start `prime_lead` later, so the two sides' clocks and schedulers may
//!    disagree by that much instead of by the one-way latency.
//!    Then, every round with exponential backoff, bounded by `max_rounds`
//!    and `max_duration`, a probe is sent to every remote target. Predicted
//!    targets are probed first and in order, because a symmetric NAT hands out
//!    ports to new destinations in the order packets leave; the peer predicted
//!    our ports assuming exactly that. The driver must send every round from
//!    the same local socket, so the NAT mappings opened in earlier rounds are
//!    reused.
//! 2. A received probe is answered with an ack to the address it *actually*
//!    came from; an unknown source is learned as a peer-reflexive target and
//!    immediately probed back (a triggered check). This is what rescues the
//!    Linux conntrack port clash, where the peer's NAT gives its outgoing flow
//!    toward us a fresh port that no candidate announced.
//! 3. An ack for one of our probes, arriving from the probed address, proves
//!    both directions work: the first such path wins (ties within the same
//!    instant go to the higher pair priority), [`PunchEvent::PathValidated`]
//!    is emitted and all probing stops. Afterwards the session only answers
//!    the peer's probes with acks for a short `linger` period so the peer can
//!    validate too, then goes silent. Without validation before the deadline
//!    the session emits [`PunchEvent::Failed`] and goes silent immediately.
//!
//! Anti-amplification: toward an address we never heard from, at most
//! `max_unverified_bytes_per_dst` bytes are sent; the number of targets,
//! learned peer-reflexive targets and probes per round are bounded; an ack
//! is only ever sent in reply to a probe (one ack per probe, never larger).
//!
//! The session never touches bytes: [`Transmit`]s carry a [`ProbeOut`] that
//! the driver encodes (with its auth token) using the proto module.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::addr::canonical;
use super::candidate::{is_unusable_ip, pair_priority, Candidate, CandidateKind, Role};

/// Probe or ack: the kind of punch frame as the wire has it (the session
/// names with it what the driver is to encode).
pub use crate::proto::raw::ProbeKind;

/// A punch packet to encode and send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOut {
    /// Probe or ack.
    pub kind: ProbeKind,
    /// The coordination round (from PUNCH_ME_NOW) this belongs to.
    pub round: u32,
    /// Sequence number: unique per probe within a session; echoed by acks.
    pub seq: u32,
}

/// A datagram the driver must send from the session's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// What to encode.
    pub probe: ProbeOut,
    /// Bytes the encoded datagram is expected to take (for accounting).
    pub size_hint: usize,
    /// Send with this IP TTL / IPv6 hop limit instead of the socket's
    /// (priming probes, see the module docs).
    pub ttl: Option<u8>,
}

/// Why a punch attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PunchFailure {
    /// No path was validated before the deadline.
    #[error("no path validated after {rounds} rounds toward {targets} targets")]
    Timeout {
        /// Probe rounds sent.
        rounds: u32,
        /// Number of targets tried.
        targets: usize,
    },
}

/// Output events of a [`PunchSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PunchEvent {
    /// A direct path works in both directions.
    PathValidated {
        /// The remote address to use.
        remote: SocketAddr,
        /// Round-trip time of the validating probe.
        rtt: Duration,
    },
    /// The attempt is over without a path.
    Failed {
        /// Why.
        reason: PunchFailure,
    },
}

/// Invalid [`PunchConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PunchConfigError {
    /// `backoff` must be finite and ≥ 1.
    #[error("backoff factor must be finite and >= 1")]
    InvalidBackoff,
    /// `max_rounds` must be ≥ 1.
    #[error("max_rounds must be at least 1")]
    NoRounds,
    /// `round_interval` must be non-zero.
    #[error("round_interval must be non-zero")]
    ZeroInterval,
    /// `probe_size` must be non-zero.
    #[error("probe_size must be non-zero")]
    ZeroProbeSize,
}

/// Tunables of a [`PunchSession`].
#[derive(Debug, Clone, PartialEq)]
pub struct PunchConfig {
    /// Delay between the first and second round.
    pub round_interval: Duration,
    /// Each following interval is the previous one times this factor.
    pub backoff: f64,
    /// Maximum number of probe rounds.
    pub max_rounds: u32,
    /// The attempt fails this long after `start_at`.
    pub max_duration: Duration,
    /// Maximum probes sent in one round (triggered probes excluded, they go
    /// only to addresses we heard from, at most one per target per round).
    pub max_probes_per_round: usize,
    /// Maximum remote targets taken from the peer's candidates.
    pub max_targets: usize,
    /// Maximum peer-reflexive targets learned from incoming probes.
    pub max_peer_reflexive: usize,
    /// Expected size of an encoded probe or ack.
    pub probe_size: usize,
    /// Byte budget toward a destination we never heard from.
    pub max_unverified_bytes_per_dst: usize,
    /// The controlled side starts this much after `start_at`.
    pub controlled_stagger: Duration,
    /// After success, keep acking the peer's probes for this long.
    pub linger: Duration,
    /// TTL of the priming probes, which open our NAT's mappings before any
    /// full probe is sent: enough to pass our own NAT(s), too little to
    /// reach the peer's. `None`: no priming, the first round starts at once.
    pub prime_ttl: Option<u8>,
    /// Full probes start this long after the priming probes.
    pub prime_lead: Duration,
    /// Probe loopback candidates (single-host tests). Off by default.
    pub allow_loopback: bool,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            round_interval: Duration::from_millis(100),
            backoff: 1.5,
            max_rounds: 10,
            max_duration: Duration::from_secs(5),
            max_probes_per_round: 16,
            max_targets: 16,
            max_peer_reflexive: 4,
            probe_size: 64,
            max_unverified_bytes_per_dst: 16 * 64,
            controlled_stagger: Duration::from_millis(5),
            linger: Duration::from_secs(2),
            prime_ttl: Some(2),
            prime_lead: Duration::from_millis(30),
            allow_loopback: false,
        }
    }
}

impl PunchConfig {
    /// Checks the configuration for nonsensical values.
    pub fn validate(&self) -> Result<(), PunchConfigError> {
        if !self.backoff.is_finite() || self.backoff < 1.0 {
            return Err(PunchConfigError::InvalidBackoff);
        }
        if self.max_rounds == 0 {
            return Err(PunchConfigError::NoRounds);
        }
        if self.round_interval.is_zero() {
            return Err(PunchConfigError::ZeroInterval);
        }
        if self.probe_size == 0 {
            return Err(PunchConfigError::ZeroProbeSize);
        }
        Ok(())
    }

    /// Offset from the (staggered) start of round `k` (0-based).
    pub fn round_offset(&self, k: u32) -> Duration {
        let mut total = Duration::ZERO;
        let mut interval = self.round_interval;
        for _ in 0..k {
            total += interval;
            interval = interval.mul_f64(self.backoff);
        }
        total
    }
}

/// Inputs of a [`PunchSession`] decided by the caller.
#[derive(Debug, Clone)]
pub struct PunchParams {
    /// Our role (controlling = initiator).
    pub role: Role,
    /// Coordination round from PUNCH_ME_NOW; probes of other rounds are ignored.
    pub round: u32,
    /// Our candidates (for pair priorities and address-family filtering).
    pub local: Vec<Candidate>,
    /// The peer's candidates.
    pub remote: Vec<Candidate>,
    /// When to send the first round.
    pub start_at: Instant,
}

/// Per-session counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PunchStats {
    /// Probes sent (scheduled and triggered).
    pub probes_sent: u64,
    /// Acks sent.
    pub acks_sent: u64,
    /// Probes received (current round).
    pub probes_received: u64,
    /// Bytes sent in total.
    pub bytes_sent: u64,
    /// Probe rounds sent.
    pub rounds_sent: u32,
    /// Probes skipped by the anti-amplification budget.
    pub suppressed: u64,
}

#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    kind: CandidateKind,
    pair_priority: u64,
    heard: bool,
    bytes_sent: usize,
    triggered_round: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Succeeded {
        target: usize,
        rtt: Duration,
        at: Instant,
        reported: bool,
    },
    Failed {
        reported: bool,
    },
}

/// One coordinated hole-punch attempt (see the module docs).
#[derive(Debug)]
pub struct PunchSession {
    config: PunchConfig,
    role: Role,
    round: u32,
    local: Vec<Candidate>,
    targets: Vec<Target>,
    learned: usize,
    prime_at: Option<Instant>,
    first_round_at: Instant,
    deadline: Instant,
    next_round: u32,
    next_round_at: Option<Instant>,
    next_seq: u32,
    sent: HashMap<u32, (usize, Instant)>,
    queue: VecDeque<Transmit>,
    state: State,
    closed: bool,
    failure: Option<PunchFailure>,
    stats: PunchStats,
}

impl PunchSession {
    /// Creates a session; nothing is sent before `params.start_at`.
    pub fn new(params: PunchParams, config: PunchConfig) -> Result<Self, PunchConfigError> {
        config.validate()?;
        let stagger = match params.role {
            Role::Controlling => Duration::ZERO,
            Role::Controlled => config.controlled_stagger,
        };
        let prime_at = config.prime_ttl.map(|_| params.start_at + stagger);
        let lead = if prime_at.is_some() {
            config.prime_lead
        } else {
            Duration::ZERO
        };
        let first_round_at = params.start_at + stagger + lead;
        let deadline = params.start_at + config.max_duration;
        let local: Vec<Candidate> = params
            .local
            .into_iter()
            .filter(|c| c.kind != CandidateKind::Relay)
            .collect();
        let mut s = PunchSession {
            role: params.role,
            round: params.round,
            local,
            targets: Vec::new(),
            learned: 0,
            prime_at: prime_at.filter(|t| *t < deadline),
            first_round_at,
            deadline,
            next_round: 0,
            next_round_at: (first_round_at < deadline).then_some(first_round_at),
            next_seq: 0,
            sent: HashMap::new(),
            queue: VecDeque::new(),
            state: State::Running,
            closed: false,
            failure: None,
            stats: PunchStats::default(),
            config,
        };
        let mut remote = params.remote;
        remote.sort_by_key(|c| std::cmp::Reverse(c.priority));
        for c in remote {
            if s.targets.len() >= s.config.max_targets {
                break;
            }
            s.add_target(&c);
        }
        Ok(s)
    }

    /// Best pair priority for a remote candidate, or `None` if no local
    /// candidate shares its address family.
    fn best_pair_priority(&self, remote: &Candidate) -> Option<u64> {
        if self.local.is_empty() {
            return Some(pair_priority(self.role, 0, remote.priority));
        }
        self.local
            .iter()
            .filter(|l| l.base.unwrap_or(l.addr).is_ipv4() == remote.addr.is_ipv4())
            .map(|l| pair_priority(self.role, l.priority, remote.priority))
            .max()
    }

    fn add_target(&mut self, c: &Candidate) -> Option<usize> {
        let addr = canonical(c.addr);
        let loopback_ok = self.config.allow_loopback && addr.ip().is_loopback();
        if c.kind == CandidateKind::Relay
            || addr.port() == 0
            || (is_unusable_ip(addr.ip()) && !loopback_ok)
        {
            return None;
        }
        if let Some(i) = self.find(addr) {
            return Some(i);
        }
        let pair_priority = self.best_pair_priority(c)?;
        self.targets.push(Target {
            addr,
            kind: c.kind,
            pair_priority,
            heard: false,
            bytes_sent: 0,
            triggered_round: None,
        });
        Some(self.targets.len() - 1)
    }

    fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.targets.iter().position(|t| t.addr == addr)
    }

    /// Send order: predicted targets first in the peer's order (a symmetric
    /// NAT allocates ports in packet order), then by pair priority.
    fn send_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.targets.len()).collect();
        order.sort_by_key(|&i| {
            let t = &self.targets[i];
            let predicted = t.kind == CandidateKind::Predicted;
            // Predicted targets keep insertion (priority, i.e. prediction) order.
            (
                !predicted,
                if predicted {
                    0
                } else {
                    u64::MAX - t.pair_priority
                },
                i,
            )
        });
        order
    }

    fn queue_probe(&mut self, idx: usize, now: Instant) {
        self.queue_probe_with_ttl(idx, now, None);
    }

    fn queue_probe_with_ttl(&mut self, idx: usize, now: Instant, ttl: Option<u8>) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let size = self.config.probe_size;
        let t = &mut self.targets[idx];
        t.bytes_sent += size;
        self.sent.insert(seq, (idx, now));
        self.stats.probes_sent += 1;
        self.stats.bytes_sent += size as u64;
        self.queue.push_back(Transmit {
            dst: t.addr,
            probe: ProbeOut {
                kind: ProbeKind::Probe,
                round: self.round,
                seq,
            },
            size_hint: size,
            ttl,
        });
    }

    fn within_budget(&self, idx: usize) -> bool {
        let t = &self.targets[idx];
        t.heard || t.bytes_sent + self.config.probe_size <= self.config.max_unverified_bytes_per_dst
    }

    /// One priming probe per target (within budget), in send order.
    fn send_primes(&mut self, now: Instant) {
        let ttl = self.config.prime_ttl;
        let order = self.send_order();
        for idx in order.into_iter().take(self.config.max_probes_per_round) {
            if self.within_budget(idx) {
                self.queue_probe_with_ttl(idx, now, ttl);
            }
        }
    }

    fn send_round(&mut self, now: Instant) {
        let mut budget = self.config.max_probes_per_round;
        for idx in self.send_order() {
            if budget == 0 {
                break;
            }
            if !self.within_budget(idx) {
                self.stats.suppressed += 1;
                continue;
            }
            self.queue_probe(idx, now);
            budget -= 1;
        }
        self.stats.rounds_sent += 1;
    }

    /// Advances timers: sends due rounds, fails at the deadline, ends the
    /// post-success linger period.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Running => {
                if self.prime_at.is_some_and(|at| at <= now) {
                    self.prime_at = None;
                    self.send_primes(now);
                }
                while let Some(at) = self.next_round_at {
                    if at > now {
                        break;
                    }
                    self.send_round(now);
                    self.next_round += 1;
                    let next = self.first_round_at + self.config.round_offset(self.next_round);
                    self.next_round_at = (self.next_round < self.config.max_rounds
                        && next < self.deadline)
                        .then_some(next);
                }
                if now >= self.deadline {
                    self.failure = Some(PunchFailure::Timeout {
                        rounds: self.stats.rounds_sent,
                        targets: self.targets.len(),
                    });
                    self.state = State::Failed { reported: false };
                    self.closed = true;
                    self.queue.clear();
                }
            }
            State::Succeeded { at, .. } => {
                if now >= at + self.config.linger {
                    self.closed = true;
                    self.queue.clear();
                }
            }
            State::Failed { .. } => {}
        }
    }

    /// Feeds an authenticated probe or ack received from `from`.
    pub fn handle_probe(
        &mut self,
        from: SocketAddr,
        kind: ProbeKind,
        round: u32,
        seq: u32,
        now: Instant,
    ) {
        let from = canonical(from);
        if round != self.round || self.closed {
            return;
        }
        match (kind, self.state) {
            (ProbeKind::Probe, State::Running) => {
                self.stats.probes_received += 1;
                let idx = match self.find(from) {
                    Some(i) => Some(i),
                    None if self.learned < self.config.max_peer_reflexive => {
                        let c = Candidate::peer_reflexive(from, None);
                        let idx = self.add_target(&c);
                        if idx.is_some() {
                            self.learned += 1;
                        }
                        idx
                    }
                    None => None,
                };
                self.queue_ack(from, round, seq);
                if let Some(idx) = idx {
                    self.targets[idx].heard = true;
                    // Triggered check: at most one per target per round.
                    if self.targets[idx].triggered_round != Some(self.next_round) {
                        self.targets[idx].triggered_round = Some(self.next_round);
                        self.queue_probe(idx, now);
                    }
                }
            }
            (ProbeKind::Probe, State::Succeeded { .. }) => {
                // Let the peer validate too; one ack per probe.
                self.stats.probes_received += 1;
                self.queue_ack(from, round, seq);
            }
            (ProbeKind::Ack, State::Running | State::Succeeded { .. }) => {
                let Some(&(idx, sent_at)) = self.sent.get(&seq) else {
                    return;
                };
                if self.targets[idx].addr != from {
                    // Non-symmetric response: not a validated path.
                    return;
                }
                self.targets[idx].heard = true;
                self.validate(idx, now.saturating_duration_since(sent_at), now);
            }
            _ => {}
        }
    }

    fn queue_ack(&mut self, to: SocketAddr, round: u32, seq: u32) {
        let size = self.config.probe_size;
        self.stats.acks_sent += 1;
        self.stats.bytes_sent += size as u64;
        self.queue.push_back(Transmit {
            dst: to,
            probe: ProbeOut {
                kind: ProbeKind::Ack,
                round,
                seq,
            },
            size_hint: size,
            ttl: None,
        });
    }

    fn validate(&mut self, idx: usize, rtt: Duration, now: Instant) {
        match self.state {
            State::Running => {
                self.state = State::Succeeded {
                    target: idx,
                    rtt,
                    at: now,
                    reported: false,
                };
                self.next_round_at = None;
                self.prime_at = None;
                // Stop all other attempts; queued acks may still go out.
                self.queue.retain(|t| t.probe.kind == ProbeKind::Ack);
            }
            State::Succeeded {
                target,
                at,
                reported: false,
                ..
            } if at == now
                && self.targets[idx].pair_priority > self.targets[target].pair_priority =>
            {
                self.state = State::Succeeded {
                    target: idx,
                    rtt,
                    at,
                    reported: false,
                };
            }
            _ => {}
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        match self.state {
            State::Running => Some(
                [self.prime_at, self.next_round_at]
                    .into_iter()
                    .flatten()
                    .fold(self.deadline, Instant::min),
            ),
            State::Succeeded { at, .. } => Some(at + self.config.linger),
            State::Failed { .. } => None,
        }
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<PunchEvent> {
        match self.state {
            State::Succeeded {
                target,
                rtt,
                at,
                reported: false,
            } => {
                self.state = State::Succeeded {
                    target,
                    rtt,
                    at,
                    reported: true,
                };
                Some(PunchEvent::PathValidated {
                    remote: self.targets[target].addr,
                    rtt,
                })
            }
            State::Failed { reported: false } => {
                self.state = State::Failed { reported: true };
                Some(PunchEvent::Failed {
                    reason: self.failure.clone().unwrap_or(PunchFailure::Timeout {
                        rounds: self.stats.rounds_sent,
                        targets: self.targets.len(),
                    }),
                })
            }
            _ => None,
        }
    }

    /// Whether the attempt has concluded (validated or failed).
    pub fn is_finished(&self) -> bool {
        !matches!(self.state, State::Running)
    }

    /// Whether the session will never transmit again.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Peer-reflexive addresses learned from incoming probes.
    pub fn learned_peer_reflexive(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.targets
            .iter()
            .filter(|t| t.kind == CandidateKind::PeerReflexive)
            .map(|t| t.addr)
    }

    /// Bytes sent to `dst` as probes (acks excluded).
    pub fn probe_bytes_sent_to(&self, dst: SocketAddr) -> usize {
        self.find(canonical(dst))
            .map_or(0, |i| self.targets[i].bytes_sent)
    }

    /// Counters.
    pub fn stats(&self) -> PunchStats {
        self.stats
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }
}

#[cfg(test)]
mod tests {
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
    fn probe_from_unknown_learns_prflx_acks_and_triggers() {
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
}
