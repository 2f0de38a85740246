//! Birthday probing (sans-IO): a direct path between a peer behind an
//! endpoint-independent NAT (the *easy* side: "home", full cone, or none)
//! and one behind a NAT that maps every destination to a new random port
//! (the *hard* side: symmetric), where a plain punch cannot guess the port.
//!
//! 1. **Easy side first, primed.** From `start_at`, the easy side sends a
//!    priming probe (small TTL, see [`super::priming`]) to
//!    [`BirthdayConfig::easy_ports`] random ports of the hard side's public
//!    address, paced at [`BirthdayConfig::rate`]. Each opens the easy NAT's
//!    filter for that remote port and dies before the hard NAT sees it: an
//!    unsolicited packet there would make a Linux NAT avoid that very port
//!    for the hard side's next mapping (its conntrack tuple is taken), which
//!    is the port we are betting on.
//! 2. **Then the hard side, from many sockets.** Once the priming is over
//!    ([`BirthdayConfig::lead`] after `start_at`), the hard side sends a probe
//!    from each of [`BirthdayConfig::hard_sockets`] fresh local sockets (the
//!    driver opens them; socket `0` is the main one, `1..=N` the extra
//!    ones) to the easy side's address, and once more
//!    [`BirthdayConfig::hard_interval`] later from the same sockets (for
//!    loss: their mappings stay, so the bet is the same). Each socket's first probe gets a random public port;
//!    when one of them is a port the easy side primed, that probe gets
//!    through.
//! 3. **Validation.** A probe is answered by an ack from the socket it came
//!    to, to where it came from; the easy side also probes back such a
//!    source at once (a triggered check). An ack from the probed address
//!    for one of our probes validates the path: [`BirthdayEvent::PathValidated`]
//!    names the socket, which becomes the QUIC path (on the hard side it
//!    is usually not the main socket); every other extra socket can be
//!    closed. Afterwards the session only acks for [`BirthdayConfig::linger`].
//!
//! With 256 sockets and 1024 primed ports out of 64,512, a collision happens
//! with probability 1 - (1 - 1024/64512)^256 ≈ 98 %.
//!
//! **Bounds** (what one attempt may send): the easy side `easy_ports`
//! primes (never reaching the peer), at most [`MAX_TRIGGERED`] triggered
//! probes and one ack per probe received; the hard side `hard_sockets`
//! probes per round for [`BirthdayConfig::hard_rounds`] rounds (512 probes
//! of 25 bytes by default, 12.8 kB), all to the one address the easy side
//! announced, and one ack per probe received. Neither sends faster than
//! `rate` probes a second.
//!
//! Like [`super::punch`], the session only names [`ProbeOut`]s; the driver
//! encodes them with the attempt's token. Randomness (the primed ports)
//! comes from the `seed` passed in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::addr::canonical;
use super::prediction::MappingBehaviour;
use super::punch::{ProbeKind, ProbeOut};

/// The most triggered probes the easy side sends in one attempt (one per
/// new source a probe came from).
pub const MAX_TRIGGERED: usize = 32;

/// Tunables of a birthday attempt. Both sides must use the same values
/// (the hard side waits [`Self::lead`] for the easy side's priming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthdayConfig {
    /// Extra sockets the hard side opens and probes from.
    pub hard_sockets: u16,
    /// Ports of the hard side's address the easy side primes.
    pub easy_ports: u16,
    /// The hard NAT's port range, as far as we know (all unprivileged
    /// ports by default).
    pub port_range: (u16, u16),
    /// Half the primes go within this many ports of a port the hard NAT
    /// gave lately ([`BirthdaySide::Easy::near`]): many NATs hand out ports
    /// from a block or a range (a random-port NAT loses nothing: the ports
    /// near one are as likely as any).
    pub near_window: u16,
    /// Probes (and primes) a second, at most, on either side.
    pub rate: u32,
    /// How often each hard socket probes again.
    pub hard_interval: Duration,
    /// How many times each hard socket probes. A socket keeps its NAT
    /// mapping, so a later round only makes up for loss: a round more does
    /// not widen the bet.
    pub hard_rounds: u32,
    /// The attempt gives up this long after `start_at`.
    pub max_duration: Duration,
    /// After success, acks are still sent this long.
    pub linger: Duration,
}

impl Default for BirthdayConfig {
    fn default() -> Self {
        Self {
            hard_sockets: 256,
            easy_ports: 1024,
            port_range: (1024, 65535),
            near_window: 2048,
            rate: 2000,
            hard_interval: Duration::from_secs(1),
            hard_rounds: 2,
            max_duration: Duration::from_secs(4),
            linger: Duration::from_secs(2),
        }
    }
}

/// A [`BirthdayConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BirthdayConfigError {
    /// A count or the rate is zero.
    #[error("hard_sockets, easy_ports, hard_rounds and rate must be at least 1")]
    Zero,
    /// More ports to prime than the range has.
    #[error("easy_ports ({ports}) exceeds the port range ({range} ports)")]
    RangeTooSmall {
        /// Ports asked for.
        ports: u16,
        /// Ports in the range.
        range: u32,
    },
    /// The hard side would start after the attempt ends.
    #[error("the priming ({lead:?}) does not end before max_duration")]
    TooShort {
        /// The priming time.
        lead: Duration,
    },
}

impl BirthdayConfig {
    /// When the hard side starts, after `start_at`: the easy side's
    /// priming time at `rate`, plus 100 ms for the primes to leave and for
    /// the two clocks to disagree.
    pub fn lead(&self) -> Duration {
        pace(u32::from(self.easy_ports), self.rate) + Duration::from_millis(100)
    }

    fn range_len(&self) -> u32 {
        u32::from(self.port_range.1).saturating_sub(u32::from(self.port_range.0)) + 1
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), BirthdayConfigError> {
        if self.hard_sockets == 0 || self.easy_ports == 0 || self.rate == 0 || self.hard_rounds == 0
        {
            return Err(BirthdayConfigError::Zero);
        }
        if self.port_range.0 > self.port_range.1 || u32::from(self.easy_ports) > self.range_len() {
            return Err(BirthdayConfigError::RangeTooSmall {
                ports: self.easy_ports,
                range: if self.port_range.0 > self.port_range.1 {
                    0
                } else {
                    self.range_len()
                },
            });
        }
        if self.lead() >= self.max_duration {
            return Err(BirthdayConfigError::TooShort { lead: self.lead() });
        }
        Ok(())
    }
}

/// The time `n` probes take at `rate` a second.
fn pace(n: u32, rate: u32) -> Duration {
    Duration::from_secs(u64::from(n)) / rate.max(1)
}

/// The ports the easy side primes, in order: `easy_ports` distinct ones
/// of the range, half of them (alternately) within `near_window` of
/// `near` when it is known and the window holds enough ports.
fn prime_ports(config: &BirthdayConfig, near: Option<u16>, seed: u64) -> Vec<u16> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (lo, hi) = config.port_range;
    let want = usize::from(config.easy_ports);
    let window = near.map(|p| {
        let w = config.near_window;
        (p.saturating_sub(w).max(lo), p.saturating_add(w).min(hi))
    });
    // The window must hold its half with room to spare, else all uniform.
    let window = window.filter(|(a, b)| usize::from(b - a) + 1 >= want);
    let mut chosen = HashSet::with_capacity(want);
    let mut order = Vec::with_capacity(want);
    while order.len() < want {
        let port = match window {
            Some((a, b)) if order.len() % 2 == 0 => rng.gen_range(a..=b),
            _ => rng.gen_range(lo..=hi),
        };
        if chosen.insert(port) {
            order.push(port);
        }
    }
    order
}

/// Which side of a birthday attempt we are, and what we know of the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BirthdaySide {
    /// Our NAT maps endpoint-independently; the peer's public address is
    /// `hard_ip`, its next ports unknown.
    Easy {
        /// The hard side's public IP.
        hard_ip: IpAddr,
        /// A port the hard NAT gave the peer lately (its announced public
        /// address), if known: half the primes go near it.
        near: Option<u16>,
    },
    /// Our NAT maps per destination; the easy side is at `easy`.
    Hard {
        /// The easy side's public address.
        easy: SocketAddr,
    },
}

/// Whether a birthday attempt fits two NATs, and our side in it: `Some`
/// when exactly one of them maps endpoint-independently and the other
/// maps per destination. `true` means we are the easy side.
pub fn birthday_fits(ours: MappingBehaviour, theirs: MappingBehaviour) -> Option<bool> {
    let hard = |m: MappingBehaviour| {
        matches!(
            m,
            MappingBehaviour::Symmetric { .. } | MappingBehaviour::AddressDependent { .. }
        )
    };
    let easy = |m: MappingBehaviour| m == MappingBehaviour::EndpointIndependent;
    match (easy(ours) && hard(theirs), hard(ours) && easy(theirs)) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// Whether `ip` may be a birthday attempt's target: a global unicast
/// address. Never a private, loopback, link-local, multicast or
/// unspecified one: hundreds of probes there would land on our own
/// network (or host), not on a peer's NAT.
pub fn birthday_target(ip: IpAddr) -> bool {
    let ip = super::addr::canonical_ip(ip);
    !(super::addr::is_private_ip(ip)
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unspecified())
}

/// What a birthday attempt is given.
#[derive(Debug, Clone)]
pub struct BirthdayParams {
    /// Easy or hard, with the peer's address.
    pub side: BirthdaySide,
    /// The coordination round; probes of other rounds are ignored.
    pub round: u32,
    /// When the easy side starts priming (the hard side starts
    /// [`BirthdayConfig::lead`] later).
    pub start_at: Instant,
    /// The TTL of priming probes.
    pub prime_ttl: u8,
    /// Seeds the choice of primed ports.
    pub seed: u64,
}

/// A datagram the driver must send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthdayTransmit {
    /// From which socket: `0` the main one, `1..=hard_sockets` the extra
    /// ones of the hard side.
    pub socket: u16,
    /// Destination.
    pub dst: SocketAddr,
    /// What to encode.
    pub probe: ProbeOut,
    /// A priming probe's TTL.
    pub ttl: Option<u8>,
}

/// The outcome of a birthday attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BirthdayEvent {
    /// A direct path works both ways, from `socket` to `remote`.
    PathValidated {
        /// Our socket on the path.
        socket: u16,
        /// The peer's address on it.
        remote: SocketAddr,
        /// Round trip of the validating probe.
        rtt: Duration,
    },
    /// Nothing validated before the deadline.
    Failed,
}

/// Counters of one attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BirthdayStats {
    /// Priming probes sent (easy side).
    pub primes_sent: u64,
    /// Full probes sent (scheduled and triggered).
    pub probes_sent: u64,
    /// Acks sent.
    pub acks_sent: u64,
    /// Probes received.
    pub probes_received: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Succeeded { at: Instant },
    Done,
}

/// One birthday attempt (see the module docs).
#[derive(Debug)]
pub struct BirthdaySession {
    config: BirthdayConfig,
    side: BirthdaySide,
    round: u32,
    prime_ttl: u8,
    start_at: Instant,
    deadline: Instant,
    /// Easy side: the ports still to prime, in order.
    primes: Vec<u16>,
    primed: usize,
    /// Hard side: the next probe round's number and first socket.
    hard_round: u32,
    hard_next_socket: u16,
    triggered: HashSet<SocketAddr>,
    next_seq: u32,
    /// Our probes: seq -> (socket, destination, sent at).
    sent: HashMap<u32, (u16, SocketAddr, Instant)>,
    queue: VecDeque<BirthdayTransmit>,
    events: VecDeque<BirthdayEvent>,
    state: State,
    stats: BirthdayStats,
}

impl BirthdaySession {
    /// A session; nothing is sent before `params.start_at`.
    pub fn new(
        params: BirthdayParams,
        config: BirthdayConfig,
    ) -> Result<Self, BirthdayConfigError> {
        config.validate()?;
        let primes = match params.side {
            BirthdaySide::Easy { near, .. } => prime_ports(&config, near, params.seed),
            BirthdaySide::Hard { .. } => Vec::new(),
        };
        Ok(Self {
            side: params.side,
            round: params.round,
            prime_ttl: params.prime_ttl,
            start_at: params.start_at,
            deadline: params.start_at + config.max_duration,
            primes,
            primed: 0,
            hard_round: 0,
            hard_next_socket: 1,
            triggered: HashSet::new(),
            next_seq: 0,
            sent: HashMap::new(),
            queue: VecDeque::new(),
            events: VecDeque::new(),
            state: State::Running,
            stats: BirthdayStats::default(),
            config,
        })
    }

    /// Extra sockets the driver must open (and keep until the session
    /// ends or validates): `hard_sockets` on the hard side, none on the
    /// easy side.
    pub fn extra_sockets(&self) -> u16 {
        match self.side {
            BirthdaySide::Hard { .. } => self.config.hard_sockets,
            BirthdaySide::Easy { .. } => 0,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> BirthdayStats {
        self.stats
    }

    /// Whether the session is over (nothing more to send).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// When the hard side's round `r` starts.
    fn hard_round_at(&self, r: u32) -> Instant {
        self.start_at + self.config.lead() + self.config.hard_interval * r
    }

    /// When the next scheduled probe (or prime) is due, if any.
    fn next_send(&self) -> Option<Instant> {
        if self.state != State::Running {
            return None;
        }
        let at = match self.side {
            BirthdaySide::Easy { .. } => {
                if self.primed >= self.primes.len() {
                    return None;
                }
                self.start_at + pace(self.primed as u32, self.config.rate)
            }
            BirthdaySide::Hard { .. } => {
                if self.hard_round >= self.config.hard_rounds {
                    return None;
                }
                let sent_in_round = u32::from(self.hard_next_socket - 1);
                self.hard_round_at(self.hard_round) + pace(sent_in_round, self.config.rate)
            }
        };
        (at < self.deadline).then_some(at)
    }

    /// Sends what is due, and ends the attempt at its deadline or after
    /// the linger.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.next_send().is_some_and(|at| at <= now) {
            self.send_next(now);
        }
        match self.state {
            State::Running if now >= self.deadline => {
                self.state = State::Done;
                self.queue.clear();
                self.events.push_back(BirthdayEvent::Failed);
            }
            State::Succeeded { at } if now >= at + self.config.linger => {
                self.state = State::Done;
                self.queue.clear();
            }
            _ => {}
        }
    }

    fn send_next(&mut self, now: Instant) {
        match self.side {
            BirthdaySide::Easy { hard_ip, .. } => {
                let port = self.primes[self.primed];
                self.primed += 1;
                let seq = self.take_seq();
                self.stats.primes_sent += 1;
                self.queue.push_back(BirthdayTransmit {
                    socket: 0,
                    dst: SocketAddr::new(hard_ip, port),
                    probe: self.out(ProbeKind::Probe, seq),
                    ttl: Some(self.prime_ttl),
                });
            }
            BirthdaySide::Hard { easy } => {
                let socket = self.hard_next_socket;
                if socket >= self.config.hard_sockets {
                    self.hard_next_socket = 1;
                    self.hard_round += 1;
                } else {
                    self.hard_next_socket += 1;
                }
                self.probe(socket, easy, now);
            }
        }
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    fn out(&self, kind: ProbeKind, seq: u32) -> ProbeOut {
        ProbeOut {
            kind,
            round: self.round,
            seq,
        }
    }

    fn probe(&mut self, socket: u16, dst: SocketAddr, now: Instant) {
        let seq = self.take_seq();
        self.sent.insert(seq, (socket, dst, now));
        self.stats.probes_sent += 1;
        self.queue.push_back(BirthdayTransmit {
            socket,
            dst,
            probe: self.out(ProbeKind::Probe, seq),
            ttl: None,
        });
    }

    /// Feeds an authenticated probe or ack that came to our `socket` from
    /// `from`.
    pub fn handle_probe(
        &mut self,
        socket: u16,
        from: SocketAddr,
        kind: ProbeKind,
        round: u32,
        seq: u32,
        now: Instant,
    ) {
        let from = canonical(from);
        if round != self.round || self.state == State::Done || socket > self.extra_sockets() {
            return;
        }
        match kind {
            ProbeKind::Probe => {
                if !self.expected_source(from) {
                    return;
                }
                self.stats.probes_received += 1;
                self.stats.acks_sent += 1;
                self.queue.push_back(BirthdayTransmit {
                    socket,
                    dst: from,
                    probe: self.out(ProbeKind::Ack, seq),
                    ttl: None,
                });
                let easy = matches!(self.side, BirthdaySide::Easy { .. });
                if easy
                    && self.state == State::Running
                    && self.triggered.len() < MAX_TRIGGERED
                    && self.triggered.insert(from)
                {
                    self.probe(socket, from, now);
                }
            }
            ProbeKind::Ack => {
                let Some(&(s, dst, sent_at)) = self.sent.get(&seq) else {
                    return;
                };
                if s != socket || dst != from || self.state != State::Running {
                    return;
                }
                self.state = State::Succeeded { at: now };
                self.queue.retain(|t| t.probe.kind == ProbeKind::Ack);
                self.events.push_back(BirthdayEvent::PathValidated {
                    socket,
                    remote: from,
                    rtt: now.saturating_duration_since(sent_at),
                });
            }
        }
    }

    /// Probes come only from the peer: the hard side's IP on the easy
    /// side, the easy side's address on the hard side.
    fn expected_source(&self, from: SocketAddr) -> bool {
        match self.side {
            BirthdaySide::Easy { hard_ip, .. } => from.ip() == hard_ip,
            BirthdaySide::Hard { easy } => from == easy,
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<BirthdayTransmit> {
        self.queue.pop_front()
    }

    /// The outcome, once.
    pub fn poll_event(&mut self) -> Option<BirthdayEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Running => Some(
                self.next_send()
                    .map_or(self.deadline, |t| t.min(self.deadline)),
            ),
            State::Succeeded { at } => Some(at + self.config.linger),
            State::Done => None,
        }
    }
}

#[cfg(test)]
mod tests;
