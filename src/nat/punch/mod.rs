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
//!
//! Files: this one holds the session's state and its sans-IO interface
//! (`handle_*`, `poll_*`); `schedule.rs` its targets and probe scheduling;
//! `config.rs` its tunables; `tests.rs` the unit tests.

mod config;
mod schedule;

/// Probe or ack: the kind of punch frame as the wire has it (the session
/// names with it what the driver is to encode).
pub use crate::proto::raw::ProbeKind;
pub use config::{PunchConfig, PunchConfigError};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::addr::canonical;
use super::candidate::{Candidate, CandidateKind, Role};

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
mod tests;
