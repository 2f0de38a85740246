//! The overlay's counters and their Prometheus names.
//!
//! Events are counted where they happen (atomics only); per-peer values
//! (path, RTT, bytes) and the bootstrap links' state are read at scrape
//! time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{alive, Overlay, PathKind};
use crate::metrics::{load, Histogram, Registry, CONNECT_SECONDS};
use crate::nat::MappingBehaviour;
use crate::node::metrics;
use crate::node::peer_state::PEER_LOST;
use crate::proto::NatClass;

/// Labels of our NAT's mapping behaviour, as far as the bootstraps' views
/// tell (`unknown` with fewer than two observations: two bootstraps, or one
/// with an observe socket).
const NAT_KINDS: [&str; 4] = [
    "endpoint_independent",
    "address_dependent",
    "symmetric",
    "unknown",
];
/// Labels of the two kinds of connection.
const PATHS: [&str; 2] = ["direct", "relay"];

/// Counters of one bootstrap link.
#[derive(Debug, Default)]
pub(super) struct LinkStats {
    /// Connections made.
    pub connects: AtomicU64,
    /// Connections made after a lost link.
    pub reconnects: AtomicU64,
    /// Attempts that failed.
    pub connect_failures: AtomicU64,
    /// Links lost (closed, stalled, TCP stream gone).
    pub lost: AtomicU64,
    /// Links found stalled (a subset of `lost`).
    pub stalled: AtomicU64,
}

/// How a direct path was found: the labels of [`AttemptTally`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    /// `PUNCH_ME_NOW` (with priming).
    Punch,
    /// `BIRTHDAY_ME_NOW`.
    Birthday,
}

impl Method {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Punch => "punch",
            Self::Birthday => "birthday",
        }
    }
}

/// An attempt's result: the labels of [`AttemptTally`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Started,
    Succeeded,
    Failed,
}

const CLASSES: [&str; 4] = ["unknown", "public", "endpoint_independent", "dependent"];
const OUTCOMES: [&str; 3] = ["started", "succeeded", "failed"];

fn class_index(c: NatClass) -> usize {
    match c {
        NatClass::Unknown => 0,
        NatClass::Public => 1,
        NatClass::EndpointIndependent => 2,
        NatClass::Dependent => 3,
    }
}

/// Punch and birthday attempts by method, our NAT class and the peer's,
/// and result (a fixed set of 96 counters).
#[derive(Debug, Default)]
pub(super) struct AttemptTally([[[[AtomicU64; 3]; 4]; 4]; 2]);

impl AttemptTally {
    /// Counts one attempt's start or end, with the classes it started with.
    pub(super) fn note(&self, method: Method, classes: (NatClass, NatClass), outcome: Outcome) {
        let m = usize::from(method == Method::Birthday);
        let o = match outcome {
            Outcome::Started => 0,
            Outcome::Succeeded => 1,
            Outcome::Failed => 2,
        };
        self.0[m][class_index(classes.0)][class_index(classes.1)][o]
            .fetch_add(1, Ordering::Relaxed);
    }

    fn collect(&self, r: &mut Registry) {
        let f = r.counter(
            "antq_punch_attempts_total",
            "Hole punching attempts by method (punch, birthday), our NAT class and the peer's \
             (unknown, public, endpoint_independent, dependent), and result (started, succeeded, \
             failed); only the pairs seen.",
        );
        for (m, method) in [Method::Punch, Method::Birthday].iter().enumerate() {
            for (i, ours) in CLASSES.iter().enumerate() {
                for (j, theirs) in CLASSES.iter().enumerate() {
                    for (o, result) in OUTCOMES.iter().enumerate() {
                        let n = load(&self.0[m][i][j][o]);
                        if n > 0 {
                            f.int(
                                &[
                                    ("method", method.label()),
                                    ("ours", ours),
                                    ("theirs", theirs),
                                    ("result", result),
                                ],
                                n,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Counters of birthday probing (see `overlay::birthday`).
#[derive(Debug, Default)]
pub(super) struct BirthdayCounters {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    primes: AtomicU64,
    probes: AtomicU64,
    acks: AtomicU64,
}

impl BirthdayCounters {
    /// Adds an attempt's sends.
    pub(super) fn probes(&self, s: &crate::nat::BirthdayStats) {
        self.primes.fetch_add(s.primes_sent, Ordering::Relaxed);
        self.probes.fetch_add(s.probes_sent, Ordering::Relaxed);
        self.acks.fetch_add(s.acks_sent, Ordering::Relaxed);
    }
}

/// Counters of an overlay.
#[derive(Debug)]
pub(super) struct OverlayStats {
    attempts: [[AtomicU64; NAT_KINDS.len()]; 2],
    connections: [[AtomicU64; NAT_KINDS.len()]; 2],
    pub punches_started: AtomicU64,
    pub punches_succeeded: AtomicU64,
    pub punches_failed: AtomicU64,
    direct_dropped_stalled: AtomicU64,
    direct_dropped_peer_lost: AtomicU64,
    pub relay_stalled: AtomicU64,
    pub relay_retired: AtomicU64,
    pub network_changes: AtomicU64,
    first_connect: Histogram,
    first_direct: Histogram,
    pub pings: super::ping::PingStats,
    pub birthdays: BirthdayCounters,
    pub attempts_by_class: AttemptTally,
    pub observe: super::observe::ObserveCounters,
    pub portmap: super::portmap::PortMapCounters,
}

impl OverlayStats {
    pub(super) fn new() -> Self {
        Self {
            attempts: Default::default(),
            connections: Default::default(),
            punches_started: AtomicU64::new(0),
            punches_succeeded: AtomicU64::new(0),
            punches_failed: AtomicU64::new(0),
            direct_dropped_stalled: AtomicU64::new(0),
            direct_dropped_peer_lost: AtomicU64::new(0),
            relay_stalled: AtomicU64::new(0),
            relay_retired: AtomicU64::new(0),
            network_changes: AtomicU64::new(0),
            first_connect: Histogram::new(CONNECT_SECONDS),
            first_direct: Histogram::new(CONNECT_SECONDS),
            pings: Default::default(),
            birthdays: BirthdayCounters::default(),
            attempts_by_class: AttemptTally::default(),
            observe: Default::default(),
            portmap: Default::default(),
        }
    }

    /// A direct path was dropped for `why` (`peer_state::STALLED` or
    /// [`PEER_LOST`]).
    pub(super) fn direct_dropped(&self, why: &str) {
        let c = if why == PEER_LOST {
            &self.direct_dropped_peer_lost
        } else {
            &self.direct_dropped_stalled
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer's first connection (`direct`: its first direct one) came
    /// `after` the overlay started.
    pub(super) fn first(&self, direct: bool, after: Duration) {
        let h = if direct {
            &self.first_direct
        } else {
            &self.first_connect
        };
        h.observe(after.as_secs_f64());
    }
}

fn nat_index(m: MappingBehaviour) -> usize {
    match m {
        MappingBehaviour::EndpointIndependent => 0,
        MappingBehaviour::AddressDependent { .. } => 1,
        MappingBehaviour::Symmetric { .. } => 2,
        MappingBehaviour::Unknown => 3,
    }
}

impl Overlay {
    /// Our NAT's mapping behaviour from the bootstraps' observations.
    fn nat_kind(&self) -> usize {
        nat_index(self.nat_mapping())
    }

    /// Counts a connection attempt we start (`relayed`: over a relay).
    pub(super) fn note_attempt(&self, relayed: bool) {
        self.inner.stats.attempts[usize::from(relayed)][self.nat_kind()]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection that became a peer's path (dialed or accepted).
    pub(super) fn note_connection(&self, relayed: bool) {
        self.inner.stats.connections[usize::from(relayed)][self.nat_kind()]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The overlay's metrics, its node's and its socket's, as exposition text.
    pub fn metrics_text(&self) -> String {
        let mut r = Registry::new();
        self.collect_metrics(&mut r);
        r.render()
    }

    /// Adds the overlay's metrics (and its node's and socket's) to `r`.
    pub fn collect_metrics(&self, r: &mut Registry) {
        let s = &self.inner.stats;
        for (family, help, table) in [
            (
                "antq_connection_attempts_total",
                "Connections we dialed to peers, by path and by our NAT mapping kind.",
                &s.attempts,
            ),
            (
                "antq_connections_total",
                "Connections that became a peer's path (dialed or accepted), by path and by our NAT mapping kind.",
                &s.connections,
            ),
        ] {
            let f = r.counter(family, help);
            for (path, row) in PATHS.iter().zip(table) {
                for (nat, c) in NAT_KINDS.iter().zip(row) {
                    f.int(&[("path", path), ("nat", nat)], load(c));
                }
            }
        }
        r.histogram(
            "antq_peer_first_connection_seconds",
            "Time from overlay start to a peer's first connection (any path).",
        )
        .histogram(&[], &s.first_connect.snapshot());
        r.histogram(
            "antq_peer_first_direct_seconds",
            "Time from overlay start to a peer's first direct connection.",
        )
        .histogram(&[], &s.first_direct.snapshot());
        let f = r.counter(
            "antq_punches_total",
            "Hole punching attempts, by result (started, succeeded, failed).",
        );
        f.int(&[("result", "started")], load(&s.punches_started));
        f.int(&[("result", "succeeded")], load(&s.punches_succeeded));
        f.int(&[("result", "failed")], load(&s.punches_failed));
        let f = r.counter(
            "antq_direct_paths_dropped_total",
            "Direct paths dropped as dead (traffic moved to the relay), by reason.",
        );
        f.int(&[("reason", "stalled")], load(&s.direct_dropped_stalled));
        f.int(
            &[("reason", "peer_lost")],
            load(&s.direct_dropped_peer_lost),
        );
        r.counter(
            "antq_relay_paths_stalled_total",
            "Relay connections dropped as stalled (a new channel is asked for).",
        )
        .int(&[], load(&s.relay_stalled));
        r.counter(
            "antq_relay_channels_closed_total",
            "Relay connections dropped because their channel was closed or replaced.",
        )
        .int(&[], load(&s.relay_retired));
        s.attempts_by_class.collect(r);
        let b = &s.birthdays;
        let f = r.counter(
            "antq_birthdays_total",
            "Birthday probing attempts (an easy NAT and a symmetric one), by result.",
        );
        f.int(&[("result", "started")], load(&b.started));
        f.int(&[("result", "succeeded")], load(&b.succeeded));
        f.int(&[("result", "failed")], load(&b.failed));
        let f = r.counter(
            "antq_birthday_packets_total",
            "Packets sent by birthday attempts: primes (small TTL, easy side), probes, acks.",
        );
        f.int(&[("kind", "prime")], load(&b.primes));
        f.int(&[("kind", "probe")], load(&b.probes));
        f.int(&[("kind", "ack")], load(&b.acks));
        let f = r.counter(
            "antq_pings_total",
            "Pings above QUIC (antq-tun ping): ours sent, replied and lost; the peers' answered \
             and refused (malformed or too slow).",
        );
        for (event, value) in s.pings.events() {
            f.int(&[("event", event)], value);
        }
        let f = r.counter(
            "antq_data_plane_total",
            "Data plane (DATA frames beside QUIC): frames in and out, hellos and replies \
             sent, frames dropped (unknown_receiver, refused: did not open or replayed, \
             malformed), opened packets the delivery queue had no room for, frames the \
             socket refused, sessions kept on QUIC datagrams because their index was taken.",
        );
        for (event, value) in self.inner.data.stats.events() {
            f.int(&[("event", event)], value);
        }
        r.gauge(
            "antq_data_plane_sessions",
            "Connections whose data plane session is registered.",
        )
        .int(&[], self.inner.data.sessions() as u64);
        let f = r.counter(
            "antq_nat_observe_total",
            "Requests to the bootstraps' observe sockets (our NAT's mapping): sent, answers \
             learned, runs unanswered, replies dropped as unmatched.",
        );
        for (event, value) in s.observe.events() {
            f.int(&[("event", event)], value);
        }
        let f = r.gauge(
            "antq_nat_mapping",
            "Our NAT's mapping behaviour now: 1 for the current one.",
        );
        let now = nat_index(self.nat_mapping());
        for (i, kind) in NAT_KINDS.iter().enumerate() {
            f.int(&[("kind", kind)], u64::from(i == now));
        }
        r.counter(
            "antq_network_changes_total",
            "Local network changes handled (address, route or link events).",
        )
        .int(&[], load(&s.network_changes));
        self.collect_portmap_metrics(r);
        if let Some((c, refused)) = self.member_counters() {
            r.gauge(
                "antq_members",
                "Members of our network found through the directory, now.",
            )
            .int(&[], self.members().len() as u64);
            let f = r.counter(
                "antq_member_events_total",
                "Directory lookups sent, members joined and removed (expired, revoked, CA no \
                 longer trusted), lookups answered \"no member\", datagrams or messages dropped \
                 at a bound.",
            );
            for (event, value) in [
                ("lookup", c.lookups),
                ("joined", c.joined),
                ("removed", c.removed),
                ("not_found", c.not_found),
                ("dropped", c.dropped),
            ] {
                f.int(&[("event", event)], value);
            }
            let f = r.counter(
                "antq_member_refused_total",
                "Directory answers refused, by reason (unknown_ca, bad_signature, expired, \
                 not_yet_valid, revoked, key_mismatch, wrong_answer, malformed).",
            );
            for (reason, value) in refused {
                f.int(&[("reason", reason)], value);
            }
        }
        self.collect_peers(r);
        self.collect_links(r);
        metrics::collect_node(&self.inner.node, r);
    }

    fn collect_peers(&self, r: &mut Registry) {
        let statuses = self.status();
        let f = r.gauge(
            "antq_peer_path",
            "The path a peer's traffic takes now: 1 for the current one of direct, relay, none.",
        );
        for st in &statuses {
            let peer = short(&st.public_key);
            for (kind, name) in [
                (PathKind::Direct, "direct"),
                (PathKind::Relay, "relay"),
                (PathKind::None, "none"),
            ] {
                f.int(
                    &[("peer", peer), ("path", name)],
                    u64::from(st.path == kind),
                );
            }
        }
        let f = r.gauge(
            "antq_peer_rtt_seconds",
            "Round-trip time of a peer's current path.",
        );
        for st in &statuses {
            if let Some(ms) = st.rtt_ms {
                f.sample(&[("peer", short(&st.public_key))], ms / 1000.0);
            }
        }
        let f = r.counter(
            "antq_peer_received_bytes_total",
            "Datagram payload bytes received from a peer.",
        );
        for st in &statuses {
            f.int(&[("peer", short(&st.public_key))], st.bytes_in);
        }
        let f = r.counter(
            "antq_peer_sent_bytes_total",
            "Datagram payload bytes sent to a peer.",
        );
        for st in &statuses {
            f.int(&[("peer", short(&st.public_key))], st.bytes_out);
        }
    }

    fn collect_links(&self, r: &mut Registry) {
        let boots = self.boot_views();
        let f = r.gauge(
            "antq_bootstrap_up",
            "Whether the link to a bootstrap is connected, by transport (udp, tcp).",
        );
        for (b, link, _) in &boots {
            let addr = b.addr.to_string();
            let transport = link
                .as_ref()
                .filter(|l| alive(&l.conn))
                .map(|l| l.transport);
            for name in ["udp", "tcp"] {
                let up = transport.is_some_and(|t| t.to_string() == name);
                f.int(&[("bootstrap", &addr), ("transport", name)], u64::from(up));
            }
        }
        for (name, help, get) in [
            (
                "antq_bootstrap_connects_total",
                "Connections made to a bootstrap.",
                (|l: &LinkStats| &l.connects) as fn(&LinkStats) -> &AtomicU64,
            ),
            (
                "antq_bootstrap_reconnects_total",
                "Connections made to a bootstrap after its link was lost.",
                |l| &l.reconnects,
            ),
            (
                "antq_bootstrap_connect_failures_total",
                "Failed connection attempts to a bootstrap.",
                |l| &l.connect_failures,
            ),
            (
                "antq_bootstrap_lost_total",
                "Bootstrap links lost (closed, stalled, or their TCP stream gone).",
                |l| &l.lost,
            ),
            (
                "antq_bootstrap_stalled_total",
                "Bootstrap links closed because they stalled (sends unanswered).",
                |l| &l.stalled,
            ),
        ] {
            let f = r.counter(name, help);
            for (b, _, counters) in &boots {
                f.int(&[("bootstrap", &b.addr.to_string())], load(get(counters)));
            }
        }
    }
}

/// The short key form the logs use (first 8 base64 characters).
fn short(key: &str) -> &str {
    key.get(..8).unwrap_or(key)
}
