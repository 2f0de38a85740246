//! The overlay: a node that keeps connections to a fixed set of peers,
//! directly when a hole can be punched and through a bootstrap's relay when
//! not, and moves datagrams between them.
//!
//! Per peer, the overlay:
//! 1. dials the peer's known endpoint, if configured;
//! 2. through the first connected bootstrap, asks for a relay channel and
//!    connects over it (fast first packet, end-to-end encrypted);
//! 3. exchanges candidates (`ADD_ADDRESS` in `FORWARD`) and, from the peer
//!    with the smaller key, starts coordinated hole punching
//!    (`PUNCH_ME_NOW`); once a direct path validates, a direct QUIC
//!    connection is made (make-before-break) and traffic moves to it, with
//!    the relay connection kept as backup.
//!
//! Both peers may end up dialing the same path; the connection dialed by
//! the peer with the smaller key is kept and the other closed, a rule both
//! sides apply alike.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::{Rng as _, RngCore as _};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::Instrument as _;

mod network;
mod stats;

pub use network::trace_prime_ttl;

use super::punch_driver::{self, ProbeIn};
use super::{BootstrapAddr, Node, NodeConfig, NodeError, PeerConnection, TransportSettings};
use crate::identity::{Identity, PeerId};
use crate::nat::{
    canonical, host_addresses, predict_ports, Candidate, CandidateKind, CandidateSet,
    CandidateSetConfig, Observation, PredictionConfig, PunchConfig, PunchEvent, PunchParams,
    PunchSession, Role,
};
use crate::proto::raw::{parse_raw, Probe, RawFrame};
use crate::proto::{ControlMessage, UnavailableReason};
use crate::ratelimit::TokenBucket;
use crate::socket::{is_virtual, AntqSocket, RelayRoute, Transport};
use crate::tls::{AcceptPolicy, Allowlist};

/// Queue of datagrams received from all peers.
const RECV_QUEUE: usize = 4096;
/// How often the per-peer task re-checks its paths (and samples their
/// liveness: this adds to the time a dead path takes to notice).
const MAINTAIN_INTERVAL: Duration = Duration::from_millis(200);
/// The re-check period of a peer with both paths up and no datagram either
/// way since the last check. Its next outgoing datagram wakes the task at
/// once, so a path that died while idle is noticed as fast as ever once
/// traffic resumes; only keep-alives on an idle dead path are sampled
/// less often.
const IDLE_MAINTAIN_INTERVAL: Duration = Duration::from_secs(1);
/// Candidate announcements are repeated this often while there is no direct path.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(3);
/// How long the peer's candidate set must stay unchanged before the leader
/// punches with it (an announcement arrives within microseconds).
const CANDIDATES_SETTLE: Duration = Duration::from_millis(30);
/// How long UDP to a bootstrap may take before TCP is tried in parallel.
const TCP_FALLBACK_DELAY: Duration = Duration::from_secs(1);
/// While a bootstrap is reached over TCP, UDP is retried this often (plus up
/// to 30 % jitter).
const UDP_RETRY: Duration = Duration::from_secs(30);
/// For this long after losing a bootstrap link, reconnect attempts are
/// short and frequent (a restarting bootstrap is back within seconds)...
const FAST_RECONNECT_WINDOW: Duration = Duration::from_secs(60);
/// ...each attempt gets this long (quinn retransmits its Initial within it)...
const FAST_RECONNECT_ATTEMPT: Duration = Duration::from_secs(2);
/// ...and they are at most this far apart (plus jitter); later, up to 30 s.
const FAST_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// How long a bootstrap whose relay path stalled is passed over for new
/// relay channels: longer than its link takes to be found dead.
const SUSPECT_FOR: Duration = Duration::from_secs(3);

/// Datagrams that wait for a peer's first connection (see [`Overlay::send`]).
pub const STAGED_MAX: usize = 128;

/// Staged datagrams older than this when the connection comes up are
/// dropped: the application has retried or given up by then.
pub const STAGED_MAX_AGE: Duration = Duration::from_secs(2);

/// A failed punch is retried on the same addresses only this long after
/// its session ended (last probe sent): by then the NATs have forgotten the
/// half-open entries its probes left (Linux: 30 s for unreplied UDP, counted
/// from the last packet), which would otherwise make the retry run into the
/// same port clash. Measured from the attempt's start it raced that timeout.
const PUNCH_QUIET: Duration = Duration::from_secs(32);

/// A punch waits for the priming TTL's traceroute until this long before
/// it starts, then goes on with what is known (the driver needs a few ms to
/// set up its sending thread).
const PRIME_TRACE_MARGIN: Duration = Duration::from_millis(20);

/// How long after a punch validated an address its handshakes skip the
/// Retry: enough for the dial that follows (the other side waits 0.5 s, then
/// the handshake itself).
const PUNCHED_TRUST: Duration = Duration::from_secs(10);

/// After a direct path is lost, the leader waits this long before punching
/// again: the bootstrap must first see (and tell us) where our NAT maps us
/// now. A punch where one side probes stale addresses is worse than none:
/// the other side's probes leave half-open entries in the NAT that spoil
/// the next attempts (see `PeerSlot::direct_lost`).
const REPUNCH_SETTLE: Duration = Duration::from_millis(500);
/// Address challenges from our bootstraps answered per second at most
/// (a bootstrap sends one per migration it sees; more is someone spoofing
/// the bootstrap's address).
const CHALLENGE_ANSWERS_PER_SEC: f64 = 10.0;
/// A duplicate connection is closed after this grace period.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);
/// A peer announces candidates only while it has no direct path: one that
/// arrives while ours is older than this means the peer lost that path.
const STALE_DIRECT_AFTER: Duration = Duration::from_secs(2);

/// Everything an overlay needs.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// Our key pair.
    pub identity: Identity,
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// The peers: key and optional known endpoint.
    pub peers: Vec<(PeerId, Option<SocketAddr>)>,
    /// Bootstrap nodes, in order of preference.
    pub bootstraps: Vec<BootstrapAddr>,
    /// Addresses that must never become candidates (the tunnel's own).
    pub exclude_ips: Vec<IpAddr>,
    /// Transport settings.
    pub transport: TransportSettings,
    /// Hole punching settings.
    pub punch: PunchConfig,
    /// All peers and bootstraps live on this host's loopback (single-machine
    /// tests): offer loopback candidates and no interface addresses.
    pub loopback_only: bool,
}

/// A consumer that takes received datagrams as they arrive, on the task
/// that read them from the connection, instead of through
/// [`Overlay::recv`]'s queue: one task hop less per packet, which is most
/// of the latency a datagram adds on a fast path.
pub trait DatagramSink: Send + Sync + 'static {
    /// Takes the datagrams `peer` sent, in order, draining `datagrams`: the
    /// first one that arrived and whatever else had arrived by then (up to
    /// [`SINK_BATCH`]), so that they can be written in one go. Runs on the
    /// runtime: must not block (drop what cannot be taken at once).
    fn deliver(&self, peer: PeerId, datagrams: &mut Vec<Bytes>);
}

/// The most datagrams handed to a [`DatagramSink`] at once: more than one
/// GSO super-packet's worth (64 KiB in full-size packets).
pub const SINK_BATCH: usize = 64;

/// Where received datagrams go.
#[derive(Clone)]
enum Delivery {
    /// To [`Overlay::recv`].
    Queue(mpsc::Sender<(PeerId, Bytes)>),
    /// To a [`DatagramSink`].
    Sink(Arc<dyn DatagramSink>),
}

/// Which path a peer's traffic currently takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// A direct QUIC connection.
    Direct,
    /// Through a bootstrap's relay.
    Relay,
    /// No connection.
    None,
}

/// What `status` reports per peer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerStatus {
    /// The peer's key.
    pub public_key: String,
    /// The path in use.
    pub path: PathKind,
    /// The remote address of that path (the relay server for relayed paths).
    pub remote: Option<SocketAddr>,
    /// What carries the path: `udp`, or `tcp` for a relay reached over a
    /// TCP stream.
    pub transport: Option<Transport>,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Bytes received from the peer (datagram payloads).
    pub bytes_in: u64,
    /// Bytes sent to the peer (datagram payloads).
    pub bytes_out: u64,
    /// Seconds since the Unix epoch of the last completed handshake.
    pub last_handshake_unix: Option<u64>,
    /// Milliseconds from overlay start to the first connection.
    pub first_connect_ms: Option<u64>,
    /// Milliseconds from overlay start to the first direct connection.
    pub first_direct_ms: Option<u64>,
}

/// How many peers have a live connection of each kind
/// ([`Overlay::open_connections`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenConnections {
    /// Peers with a live direct connection.
    pub direct: usize,
    /// Peers with a live relay connection (kept as a backup while the
    /// direct one is up, so a peer often counts in both).
    pub relay: usize,
    /// Peers with both.
    pub both: usize,
}

/// Why a datagram could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The peer is not configured.
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    /// No connection to the peer yet, and [`STAGED_MAX`] datagrams are
    /// already waiting for one.
    #[error("no path to peer {0}")]
    NoPath(PeerId),
    /// QUIC refused the datagram (too large, or the connection closed).
    #[error("datagram to {peer}: {source}")]
    Datagram {
        /// The peer.
        peer: PeerId,
        /// The QUIC error.
        source: quinn::SendDatagramError,
    },
}

#[derive(Default)]
struct Paths {
    direct: Option<PeerConnection>,
    /// When the direct connection was installed.
    direct_since: Option<Instant>,
    relay: Option<PeerConnection>,
}

impl Paths {
    /// The path traffic takes: direct while it is alive, else the relay.
    fn active(&self) -> (PathKind, Option<&PeerConnection>) {
        match (
            self.direct.as_ref().filter(|c| alive(c)),
            self.relay.as_ref().filter(|c| alive(c)),
        ) {
            (Some(d), _) => (PathKind::Direct, Some(d)),
            (None, Some(r)) => (PathKind::Relay, Some(r)),
            (None, None) => (PathKind::None, None),
        }
    }
}

struct PeerSlot {
    id: PeerId,
    endpoint: Option<SocketAddr>,
    paths: RwLock<Paths>,
    candidates: Mutex<BTreeMap<u64, SocketAddr>>,
    /// Our candidates as last announced to this peer, with their sequence
    /// numbers (so a vanished address can be withdrawn).
    announced: Mutex<HashMap<SocketAddr, u64>>,
    /// When the peer's candidates last changed: a punch starts only once an
    /// announcement has fully arrived, not on its first address.
    candidates_changed: Mutex<Option<Instant>>,
    relay_route: Mutex<Option<SocketAddr>>,
    punching: Mutex<Option<Instant>>,
    /// When the last direct path was dropped as dead.
    direct_lost: Mutex<Option<Instant>>,
    /// Set when the peer's candidates arrive and ours should go out at once
    /// (the peer may have missed our earlier announcement).
    announce_now: std::sync::atomic::AtomicBool,
    /// The maintenance task sleeps for [`IDLE_MAINTAIN_INTERVAL`]: the next
    /// send wakes it.
    idle: std::sync::atomic::AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Datagrams sent while there was no path, with when they were sent:
    /// they go out when the first connection comes up.
    staged: Mutex<VecDeque<(Instant, Bytes)>>,
    last_handshake: Mutex<Option<SystemTime>>,
    first_connect: Mutex<Option<Duration>>,
    first_direct: Mutex<Option<Duration>>,
    wake: Notify,
    /// Where a dial to the peer is under way (its endpoint, a relay path):
    /// a handshake that is slow (a busy peer) is not joined by more to the
    /// same place, each of which would cost the peer a connection.
    dialing: Mutex<Vec<SocketAddr>>,
}

/// A dial under way to one of a peer's addresses; ends when dropped.
struct Dialing {
    slot: Arc<PeerSlot>,
    addr: SocketAddr,
}

impl Dialing {
    /// Marks a dial to `addr` as under way, unless one already is.
    fn begin(slot: &Arc<PeerSlot>, addr: SocketAddr) -> Option<Self> {
        let mut dialing = slot.dialing.lock().unwrap_or_else(PoisonError::into_inner);
        if dialing.contains(&addr) {
            return None;
        }
        dialing.push(addr);
        Some(Self {
            slot: slot.clone(),
            addr,
        })
    }
}

impl Drop for Dialing {
    fn drop(&mut self) {
        self.slot
            .dialing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|a| *a != self.addr);
    }
}

impl PeerSlot {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Paths> {
        self.paths.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Paths> {
        self.paths.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_direct(&self) -> bool {
        self.read().direct.as_ref().is_some_and(alive)
    }

    fn has_relay(&self) -> bool {
        self.read().relay.as_ref().is_some_and(alive)
    }
}

fn alive(conn: &PeerConnection) -> bool {
    conn.quinn().close_reason().is_none()
}

/// One connected bootstrap.
#[derive(Clone)]
struct Link {
    conn: PeerConnection,
    /// The address the connection runs to: the bootstrap's UDP address, or
    /// a stream path's virtual address on TCP. Relay routes through this
    /// bootstrap use it as their server.
    addr: SocketAddr,
    transport: Transport,
    observed: Arc<Mutex<Option<SocketAddr>>>,
}

impl Link {
    fn new(conn: PeerConnection) -> Self {
        let addr = canonical(conn.remote_address());
        Self {
            conn,
            addr,
            transport: Transport::of(addr),
            observed: Arc::default(),
        }
    }
}

/// Closes a stream path when dropped, unless [`StreamGuard::keep`] was called.
struct StreamGuard {
    socket: Arc<AntqSocket>,
    addr: Option<SocketAddr>,
}

impl StreamGuard {
    fn keep(mut self) {
        self.addr = None;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(addr) = self.addr {
            self.socket.close_stream(addr);
        }
    }
}

/// Closes a stream path a little later, so that the CONNECTION_CLOSE of the
/// connection over it still goes out.
fn close_stream_later(socket: Arc<AntqSocket>, addr: SocketAddr) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        socket.close_stream(addr);
    });
}

struct Inner {
    node: Node,
    config: OverlayConfig,
    started: Instant,
    peers: HashMap<PeerId, Arc<PeerSlot>>,
    links: RwLock<Vec<Option<Link>>>,
    punches: Mutex<HashMap<[u8; 16], mpsc::Sender<ProbeIn>>>,
    delivery: Delivery,
    incoming_rx: tokio::sync::Mutex<mpsc::Receiver<(PeerId, Bytes)>>,
    announce_seq: AtomicU64,
    last_poke: Mutex<Option<Instant>>,
    /// A bootstrap whose relay path just stalled, and when: new relay
    /// channels are asked for elsewhere for [`SUSPECT_FOR`], since the
    /// bootstrap itself may be what died (its link notices a second later).
    suspect: Mutex<Option<(SocketAddr, Instant)>>,
    /// TTL of punch priming probes learned from the routers toward the
    /// bootstrap (see [`crate::nat::priming`]); 0 until learned.
    prime_ttl: AtomicU8,
    /// Whether the first traceroute for [`Self::prime_ttl`] has finished
    /// (or cannot run).
    prime_traced: tokio::sync::watch::Sender<bool>,
    stats: stats::OverlayStats,
}

/// A running overlay.
#[derive(Clone)]
pub struct Overlay {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Overlay {
    /// Binds the node and starts connecting to every peer. Must run inside
    /// a tokio runtime.
    pub fn start(config: OverlayConfig) -> Result<Self, NodeError> {
        Self::start_with(config, None)
    }

    /// Like [`Self::start`], with received datagrams handed to `sink` as
    /// they arrive; [`Self::recv`] then never returns any.
    pub fn start_with_sink(
        config: OverlayConfig,
        sink: Arc<dyn DatagramSink>,
    ) -> Result<Self, NodeError> {
        Self::start_with(config, Some(sink))
    }

    fn start_with(
        config: OverlayConfig,
        sink: Option<Arc<dyn DatagramSink>>,
    ) -> Result<Self, NodeError> {
        let allow = Allowlist::new(config.peers.iter().map(|(p, _)| *p));
        let mut node_config = NodeConfig::new(
            config.identity.clone(),
            config.bind,
            AcceptPolicy::Allowlist(allow),
        );
        node_config.transport = config.transport.clone();
        let node = Node::bind(node_config)?;
        let peers = config
            .peers
            .iter()
            .map(|(id, endpoint)| {
                let slot = PeerSlot {
                    id: *id,
                    endpoint: *endpoint,
                    paths: RwLock::default(),
                    candidates: Mutex::default(),
                    announced: Mutex::default(),
                    candidates_changed: Mutex::default(),
                    relay_route: Mutex::default(),
                    punching: Mutex::default(),
                    direct_lost: Mutex::default(),
                    announce_now: std::sync::atomic::AtomicBool::new(false),
                    idle: std::sync::atomic::AtomicBool::new(false),
                    bytes_in: AtomicU64::new(0),
                    bytes_out: AtomicU64::new(0),
                    staged: Mutex::default(),
                    last_handshake: Mutex::default(),
                    first_connect: Mutex::default(),
                    first_direct: Mutex::default(),
                    wake: Notify::new(),
                    dialing: Mutex::default(),
                };
                (*id, Arc::new(slot))
            })
            .collect();
        let (tx, rx) = mpsc::channel(RECV_QUEUE);
        let links = RwLock::new(vec![None; config.bootstraps.len()]);
        let stats = stats::OverlayStats::new(config.bootstraps.len());
        let inner = Arc::new(Inner {
            node,
            config,
            started: Instant::now(),
            peers,
            links,
            punches: Mutex::default(),
            delivery: match sink {
                Some(sink) => Delivery::Sink(sink),
                None => Delivery::Queue(tx),
            },
            incoming_rx: tokio::sync::Mutex::new(rx),
            announce_seq: AtomicU64::new(0),
            last_poke: Mutex::default(),
            suspect: Mutex::default(),
            prime_ttl: AtomicU8::new(0),
            prime_traced: tokio::sync::watch::Sender::new(false),
            stats,
        });
        let overlay = Self { inner };
        overlay.spawn_tasks();
        Ok(overlay)
    }

    fn spawn_tasks(&self) {
        let inner = &self.inner;
        // Incoming connections.
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(conn) = this.inner.node.accept().await {
                this.install(conn);
            }
        });
        // Raw frames: punch probes, and address challenges from bootstraps.
        if let Some(mut raw) = inner.node.socket().take_raw_receiver() {
            let this = self.clone();
            tokio::spawn(async move {
                let bootstraps: Vec<SocketAddr> = this
                    .inner
                    .config
                    .bootstraps
                    .iter()
                    .map(|b| canonical(b.addr))
                    .collect();
                let mut answers = TokenBucket::new(
                    CHALLENGE_ANSWERS_PER_SEC,
                    CHALLENGE_ANSWERS_PER_SEC,
                    Instant::now(),
                );
                while let Some(packet) = raw.recv().await {
                    match parse_raw(&packet.data) {
                        Ok(RawFrame::Probe(probe)) => this.probe_in(packet.from, probe),
                        Ok(RawFrame::AddressChallenge(challenge)) => {
                            // A bootstrap checks that we receive here: the
                            // token goes back on our connection to it, at a
                            // bounded rate. Challenges from anyone else are
                            // dropped.
                            let link = bootstraps
                                .contains(&packet.from)
                                .then(|| this.link_at(packet.from))
                                .flatten();
                            match link {
                                Some(link) if answers.try_take(1.0, Instant::now()) => {
                                    let sent = link.conn.control().try_send(
                                        ControlMessage::AddressProof {
                                            token: challenge.token,
                                        },
                                    );
                                    tracing::debug!(from = %packet.from, ok = sent.is_ok(), "address challenge answered");
                                }
                                _ => {
                                    tracing::debug!(from = %packet.from, "address challenge dropped")
                                }
                            }
                        }
                        Ok(RawFrame::Relay { .. }) | Err(_) => {
                            tracing::debug!(from = %packet.from, "unexpected raw frame dropped");
                        }
                    }
                }
            });
        }
        // Bootstrap links.
        for index in 0..inner.config.bootstraps.len() {
            let this = self.clone();
            tokio::spawn(async move { this.bootstrap_link(index).await });
        }
        // Network changes (and the traceroute for the priming TTL).
        if inner.config.loopback_only {
            inner.prime_traced.send_replace(true);
        } else {
            let this = self.clone();
            tokio::spawn(async move { this.watch_network().await });
        }
        // Per-peer maintenance.
        for slot in inner.peers.values() {
            let this = self.clone();
            let slot = slot.clone();
            let span = tracing::info_span!("peer", id = %slot.id.short());
            tokio::spawn(async move { this.maintain(slot).await }.instrument(span));
        }
    }

    /// The bootstrap link whose connection runs to `addr`.
    fn link_at(&self, addr: SocketAddr) -> Option<Link> {
        self.read_links()
            .iter()
            .flatten()
            .find(|l| l.addr == addr)
            .cloned()
    }

    /// A punch probe or ACK: to the punch session with its token.
    fn probe_in(&self, from: SocketAddr, probe: Probe) {
        let sender = self.lock_punches().get(&probe.token).cloned();
        match sender {
            Some(tx) => {
                let _ = tx.try_send(ProbeIn { from, probe });
            }
            None => tracing::debug!(%from, "probe with an unknown token dropped"),
        }
    }

    /// Our key.
    pub fn peer_id(&self) -> PeerId {
        self.inner.node.peer_id()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.node.local_addr()
    }

    /// The TTL of punch priming probes: learned from the routers toward the
    /// bootstrap once known ([`crate::nat::prime_ttl_for`]), else the
    /// configured one; `None` when priming is off.
    pub fn prime_ttl(&self) -> Option<u8> {
        let configured = self.inner.config.punch.prime_ttl?;
        match self.inner.prime_ttl.load(Ordering::Relaxed) {
            0 => Some(configured),
            learned => Some(learned),
        }
    }

    /// Waits until the first traceroute for the priming TTL has finished,
    /// or until `deadline`.
    async fn prime_ttl_traced(&self, deadline: Instant) {
        let mut traced = self.inner.prime_traced.subscribe();
        let _ = tokio::time::timeout_at(deadline.into(), traced.wait_for(|done| *done)).await;
    }

    /// The underlying node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Sends a datagram to `peer` on its best path (direct, else relay).
    ///
    /// Before the peer's first connection is up (or while it has none),
    /// up to [`STAGED_MAX`] datagrams wait and go out when one comes up, if
    /// they are not older than [`STAGED_MAX_AGE`] by then: the first packet
    /// of a new flow (a ping, a TCP SYN) is not lost to connection setup.
    pub fn send(&self, peer: &PeerId, data: Bytes) -> Result<(), SendError> {
        let slot = self
            .inner
            .peers
            .get(peer)
            .ok_or(SendError::UnknownPeer(*peer))?;
        let len = data.len() as u64;
        let paths = slot.read();
        let Some(conn) = paths.active().1 else {
            drop(paths);
            let mut staged = slot.staged.lock().unwrap_or_else(PoisonError::into_inner);
            if staged.len() >= STAGED_MAX {
                return Err(SendError::NoPath(*peer));
            }
            staged.push_back((Instant::now(), data));
            return Ok(());
        };
        conn.send_datagram(data)
            .map_err(|source| SendError::Datagram {
                peer: *peer,
                source,
            })?;
        slot.bytes_out.fetch_add(len, Ordering::SeqCst);
        if slot.idle.load(Ordering::SeqCst) {
            slot.idle.store(false, Ordering::Relaxed);
            slot.wake.notify_one();
        }
        Ok(())
    }

    /// The largest datagram that can be sent to `peer` now.
    pub fn max_datagram_size(&self, peer: &PeerId) -> Option<usize> {
        let slot = self.inner.peers.get(peer)?;
        let paths = slot.read();
        paths.active().1.and_then(PeerConnection::max_datagram_size)
    }

    /// Receives the next datagram from any peer (never, when the overlay
    /// was started with a [`DatagramSink`]: waits forever).
    pub async fn recv(&self) -> Option<(PeerId, Bytes)> {
        self.inner.incoming_rx.lock().await.recv().await
    }

    /// Our addresses as observed by each bootstrap (`None` when not connected).
    pub fn observed_addresses(&self) -> Vec<(BootstrapAddr, Option<SocketAddr>)> {
        self.read_links()
            .iter()
            .zip(&self.inner.config.bootstraps)
            .map(|(link, b)| {
                (
                    *b,
                    link.as_ref()
                        .and_then(|l| *l.observed.lock().unwrap_or_else(PoisonError::into_inner)),
                )
            })
            .collect()
    }

    /// The transport of each bootstrap link (`None` when not connected).
    pub fn bootstrap_transports(&self) -> Vec<(BootstrapAddr, Option<Transport>)> {
        self.read_links()
            .iter()
            .zip(&self.inner.config.bootstraps)
            .map(|(link, b)| {
                (
                    *b,
                    link.as_ref()
                        .filter(|l| alive(&l.conn))
                        .map(|l| l.transport),
                )
            })
            .collect()
    }

    /// Per-peer status.
    pub fn status(&self) -> Vec<PeerStatus> {
        let mut out: Vec<_> = self
            .inner
            .peers
            .values()
            .map(|slot| {
                let paths = slot.read();
                let (path, conn) = paths.active();
                let socket = self.inner.node.socket();
                // The relay server's address for a relayed path; over TCP
                // the stream path's virtual address stands for the server.
                let hop = conn.map(|c| {
                    let addr = canonical(c.remote_address());
                    socket.relay_route(addr).map_or(addr, |r| r.server)
                });
                let transport = hop.map(Transport::of);
                let remote = hop.map(|a| socket.stream_peer(a).unwrap_or(a));
                let ms = |d: &Mutex<Option<Duration>>| {
                    d.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .map(|d| d.as_millis() as u64)
                };
                PeerStatus {
                    public_key: slot.id.to_string(),
                    path,
                    remote,
                    transport,
                    rtt_ms: conn.map(|c| c.rtt().as_secs_f64() * 1000.0),
                    bytes_in: slot.bytes_in.load(Ordering::Relaxed),
                    bytes_out: slot.bytes_out.load(Ordering::Relaxed),
                    last_handshake_unix: slot
                        .last_handshake
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    first_connect_ms: ms(&slot.first_connect),
                    first_direct_ms: ms(&slot.first_direct),
                }
            })
            .collect();
        out.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        out
    }

    /// Counts the peers' live connections, direct and relay.
    pub fn open_connections(&self) -> OpenConnections {
        let mut open = OpenConnections::default();
        for slot in self.inner.peers.values() {
            let paths = slot.read();
            let direct = paths.direct.as_ref().is_some_and(alive);
            let relay = paths.relay.as_ref().is_some_and(alive);
            open.direct += usize::from(direct);
            open.relay += usize::from(relay);
            open.both += usize::from(direct && relay);
        }
        open
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.inner.node.close().await;
    }

    fn lock_punches(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], mpsc::Sender<ProbeIn>>> {
        self.inner
            .punches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read_links(&self) -> std::sync::RwLockReadGuard<'_, Vec<Option<Link>>> {
        self.inner
            .links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The bootstrap (its link address) carrying our live relay with
    /// `slot`, if we have one.
    fn relay_server(&self, slot: &PeerSlot) -> Option<SocketAddr> {
        let paths = slot.read();
        let conn = paths.relay.as_ref().filter(|c| alive(c))?;
        let route = self
            .inner
            .node
            .socket()
            .relay_route(canonical(conn.remote_address()))?;
        Some(route.server)
    }

    fn primary_link(&self) -> Option<Link> {
        let suspect = self
            .inner
            .suspect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .filter(|(_, since)| since.elapsed() < SUSPECT_FOR)
            .map(|(addr, _)| addr);
        let links = self.read_links();
        let mut alive_links = links.iter().flatten().filter(|l| alive(&l.conn));
        let first = alive_links.clone().next().cloned();
        alive_links
            .find(|l| Some(l.addr) != suspect)
            .cloned()
            .or(first)
    }

    /// Whether we lead coordination with `peer` (smaller key).
    fn leads(&self, peer: &PeerId) -> bool {
        self.peer_id() < *peer
    }

    /// Puts a new connection into its peer's slot, resolving duplicates.
    fn install(&self, conn: PeerConnection) {
        let Some(slot) = self.inner.peers.get(&conn.peer_id()).cloned() else {
            conn.close("not a configured peer");
            return;
        };
        let relayed = conn.is_relayed();
        let we_dialed = conn.quinn().side() == quinn::Side::Client;
        let preferred = we_dialed == self.leads(&slot.id);
        let replaced = {
            let mut paths = slot.write();
            let place = if relayed {
                &mut paths.relay
            } else {
                &mut paths.direct
            };
            let replaced = match place {
                Some(existing) if alive(existing) && !preferred => {
                    let keep_existing =
                        (existing.quinn().side() == quinn::Side::Client) == self.leads(&slot.id);
                    if keep_existing {
                        drop(paths);
                        close_later(conn, "duplicate connection");
                        return;
                    }
                    place.replace(conn.clone())
                }
                _ => place.replace(conn.clone()),
            };
            if !relayed {
                paths.direct_since = Some(Instant::now());
            }
            replaced
        };
        if let Some(old) = replaced {
            if old.quinn().stable_id() != conn.quinn().stable_id() && alive(&old) {
                close_later(old, "duplicate connection");
            }
        }
        self.note_connection(relayed);
        let elapsed = self.inner.started.elapsed();
        let firsts = [(false, &slot.first_connect), (true, &slot.first_direct)];
        for (direct, first) in firsts.into_iter().filter(|(d, _)| !*d || !relayed) {
            let mut first = first.lock().unwrap_or_else(PoisonError::into_inner);
            if first.is_none() {
                *first = Some(elapsed);
                self.inner.stats.first(direct, elapsed);
            }
        }
        *slot
            .last_handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(SystemTime::now());
        tracing::info!(peer = %slot.id.short(), path = if relayed { "relay" } else { "direct" }, remote = %canonical(conn.remote_address()), "connected");
        let staged =
            std::mem::take(&mut *slot.staged.lock().unwrap_or_else(PoisonError::into_inner));
        for (at, data) in staged {
            if at.elapsed() <= STAGED_MAX_AGE {
                let len = data.len() as u64;
                if conn.send_datagram(data).is_ok() {
                    slot.bytes_out.fetch_add(len, Ordering::Relaxed);
                }
            }
        }
        self.spawn_reader(slot.clone(), conn);
        slot.wake.notify_one();
    }

    fn spawn_reader(&self, slot: Arc<PeerSlot>, conn: PeerConnection) {
        let delivery = self.inner.delivery.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(SINK_BATCH);
            loop {
                match conn.recv_datagram().await {
                    Ok(data) => {
                        batch.push(data);
                        if let Delivery::Sink(_) = delivery {
                            while batch.len() < SINK_BATCH {
                                match conn.try_recv_datagram() {
                                    Some(Ok(data)) => batch.push(data),
                                    // A closed connection shows at the next read.
                                    Some(Err(_)) | None => break,
                                }
                            }
                        }
                        let bytes: usize = batch.iter().map(Bytes::len).sum();
                        slot.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
                        match &delivery {
                            Delivery::Sink(sink) => sink.deliver(slot.id, &mut batch),
                            Delivery::Queue(tx) => {
                                for data in batch.drain(..) {
                                    if tx.send((slot.id, data)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        batch.clear();
                    }
                    Err(error) => {
                        tracing::info!(peer = %slot.id.short(), relayed = conn.is_relayed(), %error, "connection closed");
                        slot.wake.notify_one();
                        return;
                    }
                }
            }
        });
    }

    /// Keeps a peer's paths up: endpoint dialing, relay, punching.
    async fn maintain(self, slot: Arc<PeerSlot>) {
        let mut endpoint_backoff = Backoff::new();
        let mut relay_backoff = Backoff::new();
        let mut punch_backoff = Backoff::starting_at(PUNCH_QUIET);
        let mut last_announce: Option<Instant> = None;
        let mut monitors = network::PathMonitors::default();
        // The peer's and our candidates when the last punch started.
        let mut last_punched: (Vec<SocketAddr>, Vec<SocketAddr>) = Default::default();
        // Bytes in and out at the last pass.
        let mut last_traffic = None;
        loop {
            let now = Instant::now();
            let mut recheck = MAINTAIN_INTERVAL;
            self.check_paths(&slot, &mut monitors, now);
            // 1. Known endpoint.
            if let Some(endpoint) = slot.endpoint {
                if !slot.has_direct() && endpoint_backoff.ready(now) {
                    endpoint_backoff.arm(now);
                    self.dial(&slot, endpoint, false);
                } else if slot.has_direct() {
                    endpoint_backoff.reset();
                }
            }
            if let Some(link) = self.primary_link() {
                // 2. Relay: both sides ask (the bootstrap makes a channel
                // pair only once both keys asked for each other, and tells
                // the other side when one asks first); the leader dials it,
                // the other side only if no connection came after a while.
                let dial_wait = if self.leads(&slot.id) {
                    Duration::ZERO
                } else {
                    Duration::from_secs(2)
                };
                if !slot.has_relay() && relay_backoff.ready(now) {
                    relay_backoff.arm(now);
                    let route = *slot
                        .relay_route
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    match route {
                        Some(virtual_addr)
                            if self.inner.node.socket().relay_route(virtual_addr).is_some() =>
                        {
                            if now.duration_since(self.inner.started) >= dial_wait {
                                self.dial(&slot, virtual_addr, true);
                            }
                        }

                        _ => {
                            let _ = link.conn.control().try_send(ControlMessage::RelayRequest {
                                peer: *slot.id.as_bytes(),
                            });
                        }
                    }
                } else if slot.has_relay() {
                    relay_backoff.reset();
                }
                // 3. Candidates and punching.
                // Candidates go out once the bootstrap has told us our
                // server-reflexive address, the one that matters behind NAT.
                let observed = link
                    .observed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some();
                if !slot.has_direct() && observed {
                    let asked = slot.announce_now.swap(false, Ordering::Relaxed);
                    if asked
                        || last_announce.is_none_or(|t| now.duration_since(t) >= ANNOUNCE_INTERVAL)
                    {
                        last_announce = Some(now);
                        self.announce(&link, &slot).await;
                    }
                    let changed = *slot
                        .candidates_changed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    let settled = changed.is_some_and(|t| t.elapsed() >= CANDIDATES_SETTLE);
                    if changed.is_some() && !settled {
                        recheck = CANDIDATES_SETTLE;
                    }
                    let remote: Vec<SocketAddr> = slot
                        .candidates
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .values()
                        .copied()
                        .collect();
                    let have_candidates = settled && !remote.is_empty();
                    let punching = *slot.punching.lock().unwrap_or_else(PoisonError::into_inner);
                    let busy = punching.is_some_and(|t| now < t);
                    if let Some(until) = punching {
                        punch_backoff.not_before(until + PUNCH_QUIET);
                    }
                    let mut ours: Vec<SocketAddr> = slot
                        .announced
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .keys()
                        .copied()
                        .collect();
                    ours.sort_unstable();
                    let candidates = (remote, ours);
                    // New candidates (either side moved) are punched at once,
                    // even over a running or failed attempt on the old ones:
                    // the backoff is for retrying the same addresses.
                    let fresh = candidates != last_punched;
                    let settling = slot
                        .direct_lost
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .map(|t| REPUNCH_SETTLE.saturating_sub(now.duration_since(t)))
                        .filter(|left| !left.is_zero());
                    if let Some(left) = settling {
                        recheck = recheck.min(left);
                    }
                    if self.leads(&slot.id)
                        && settling.is_none()
                        && have_candidates
                        && (fresh || (!busy && punch_backoff.ready(now)))
                    {
                        punch_backoff.arm(now);
                        last_punched = candidates;
                        self.initiate_punch(&link, &slot);
                    }
                } else {
                    punch_backoff.reset();
                }
            }
            // Both paths up and nothing sent or received since the last
            // pass: sleep longer. The flag goes up before the counters are
            // read (SeqCst on both sides), so a send either shows in them
            // or sees the flag and wakes us.
            let steady = recheck == MAINTAIN_INTERVAL && slot.has_direct() && slot.has_relay();
            slot.idle.store(steady, Ordering::SeqCst);
            let traffic = (
                slot.bytes_in.load(Ordering::SeqCst),
                slot.bytes_out.load(Ordering::SeqCst),
            );
            let quiet = last_traffic.replace(traffic) == Some(traffic);
            if steady && quiet {
                recheck = IDLE_MAINTAIN_INTERVAL;
            }
            tokio::select! {
                () = slot.wake.notified() => {}
                () = tokio::time::sleep(recheck) => {}
            }
        }
    }

    /// A relay channel is gone (the bootstrap closed it, or granted a new
    /// one): forget its route and close the connection that ran over it.
    /// That connection is dead even if no close reached us (the peer may have
    /// restarted), and keeping it would hide the new relay connection.
    fn retire_relay(&self, slot: &PeerSlot, virtual_addr: SocketAddr) {
        self.inner.node.socket().remove_relay_route(virtual_addr);
        let stale = {
            let mut paths = slot.write();
            let on_route = paths
                .relay
                .as_ref()
                .is_some_and(|c| canonical(c.remote_address()) == virtual_addr);
            if on_route {
                paths.relay.take()
            } else {
                None
            }
        };
        if let Some(conn) = stale {
            self.inner
                .stats
                .relay_retired
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %slot.id.short(), "relay channel closed; dropping its connection");
            conn.close("relay channel closed");
            slot.wake.notify_one();
        }
    }

    /// Dials the peer at `addr` (its known endpoint, or with `relayed` a
    /// relay path's virtual address), unless a dial there is still under
    /// way.
    fn dial(&self, slot: &Arc<PeerSlot>, addr: SocketAddr, relayed: bool) {
        let Some(dialing) = Dialing::begin(slot, addr) else {
            return;
        };
        self.note_attempt(relayed);
        let this = self.clone();
        let peer = slot.id;
        tokio::spawn(async move {
            let _dialing = dialing;
            match this.inner.node.connect(peer, &[addr]).await {
                Ok(conn) => this.install(conn),
                Err(error) if relayed => {
                    tracing::debug!(peer = %peer.short(), %error, "relay dial failed")
                }
                Err(error) => {
                    tracing::debug!(peer = %peer.short(), endpoint = %addr, %error, "endpoint dial failed")
                }
            }
        });
    }

    /// Our candidates: host addresses and what the bootstraps observed.
    async fn local_candidates(&self) -> Vec<Candidate> {
        let port = self.local_addr().map(|a| a.port()).unwrap_or(0);
        let loopback_only = self.inner.config.loopback_only;
        let mut set = CandidateSet::new(CandidateSetConfig {
            allow_loopback: loopback_only,
            ..CandidateSetConfig::default()
        });
        set.exclude_ips(self.inner.config.exclude_ips.iter().copied());
        let interfaces = if loopback_only {
            Ok(Vec::new())
        } else {
            antq_platform::interfaces().await
        };
        match interfaces {
            Ok(ifaces) => {
                set.add_host_addrs(port, host_addresses(&ifaces));
            }
            Err(error) => tracing::debug!(%error, "cannot list interfaces"),
        }
        let base = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port);
        let mut observations = Vec::new();
        for (server, observed) in self.observed_addresses() {
            if let Some(mapped) = observed {
                set.add_server_reflexive(mapped, base);
                observations.push(Observation {
                    server: server.addr,
                    base,
                    mapped,
                });
            }
        }
        // Behind a symmetric NAT that allocates ports in a pattern (seen
        // across several bootstraps), the next ports are candidates too.
        for p in predict_ports(&observations, &PredictionConfig::default()) {
            set.add_predicted(p.addr, Some(base), p.confidence);
        }
        set.into_vec()
    }

    /// Sends our candidates to `slot`'s peer through the bootstrap,
    /// withdrawing the ones we no longer have. Only done while there is no
    /// direct path: the peer reads an announcement as "my direct path is
    /// gone" (see `handle_forwarded`).
    async fn announce(&self, link: &Link, slot: &PeerSlot) {
        let candidates = self.local_candidates().await;
        tracing::debug!(peer = %slot.id.short(), ?candidates, "announcing candidates");
        let addrs: Vec<_> = candidates.iter().map(|c| c.addr).collect();
        let (withdrawn, added) = self.announcement(slot, &addrs);
        let messages = withdrawn
            .into_iter()
            .map(|sequence| ControlMessage::RemoveAddress { sequence })
            .chain(
                added
                    .into_iter()
                    .map(|(sequence, addr)| ControlMessage::AddAddress { sequence, addr }),
            );
        for inner in messages {
            let msg = ControlMessage::Forward {
                peer: *slot.id.as_bytes(),
                inner: Box::new(inner),
            };
            if link.conn.control().try_send(msg).is_err() {
                return;
            }
        }
    }

    fn remote_candidates(slot: &PeerSlot) -> Vec<Candidate> {
        let mut seen = Vec::new();
        slot.candidates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|a| !is_virtual(**a))
            .filter(|a| {
                let fresh = !seen.contains(*a);
                seen.push(**a);
                fresh
            })
            .map(|a| {
                // ADD_ADDRESS carries no kind: addresses that look public rank
                // first, since probes to them are the ones that race NATs.
                let private = match a.ip() {
                    IpAddr::V4(v4) => {
                        v4.is_private() || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
                    }
                    IpAddr::V6(v6) => v6.is_unique_local(),
                };
                Candidate::new(
                    *a,
                    CandidateKind::ServerReflexive,
                    if private { 0 } else { 65535 },
                )
            })
            .collect()
    }

    /// Leader side: starts a coordinated punch round with the peer.
    ///
    /// The round and the 16-byte token come from `OsRng` (the operating
    /// system's CSPRNG, `getrandom`): the token authenticates the session's
    /// probes and acks, so someone who sees neither bootstrap connection
    /// cannot guess it and forge a validating ack. (`rand::thread_rng`, used
    /// elsewhere only for backoff jitter, would also do: in rand 0.8 it is
    /// ChaCha12 reseeded from the OS, a CSPRNG.)
    fn initiate_punch(&self, link: &Link, slot: &Arc<PeerSlot>) {
        let mut token = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let round = rand::rngs::OsRng.gen::<u32>() >> 1;
        let rtt = link.conn.rtt();
        // Long enough for both sides to set up the session and its sending
        // thread before the instant (a few ms even in debug builds).
        let delay = Duration::from_millis(60) + rtt * 2;
        let Some(addr) = self.observed_addresses().into_iter().find_map(|(_, o)| o) else {
            return;
        };
        // The peer gets the message about one bootstrap round trip later
        // (half our RTT there, half its own, assumed alike); with clocks that
        // agree, both sides start at the same wall-clock instant instead.
        let (now, now_unix) = clock_pair();
        let lead = rtt + delay;
        let start_at = now + lead;
        let start_unix = now_unix + lead.as_micros() as u64;
        let msg = ControlMessage::Forward {
            peer: *slot.id.as_bytes(),
            inner: Box::new(ControlMessage::PunchMeNow {
                round,
                paired_with_sequence: 0,
                addr,
                delay_ms: delay.as_millis() as u64,
                token,
                start_at_unix_micros: start_unix,
            }),
        };
        if link.conn.control().try_send(msg).is_err() {
            return;
        }
        self.start_punch(slot, Role::Controlling, round, token, start_at, None);
    }

    fn start_punch(
        &self,
        slot: &Arc<PeerSlot>,
        role: Role,
        round: u32,
        token: [u8; 16],
        start_at: Instant,
        also: Option<SocketAddr>,
    ) {
        let mut remote = Self::remote_candidates(slot);
        if let Some(addr) = also.filter(|a| !remote.iter().any(|c| c.addr == *a)) {
            remote.push(Candidate::new(addr, CandidateKind::ServerReflexive, 65535));
        }
        if remote.is_empty() {
            return;
        }
        let local = self
            .observed_addresses()
            .into_iter()
            .filter_map(|(_, o)| o)
            .map(|a| Candidate::new(a, CandidateKind::ServerReflexive, 65535))
            .collect();
        let span = tracing::info_span!("punch", peer = %slot.id.short(), round);
        tracing::info!(parent: &span, ?role, candidates = remote.len(), "hole punching starts");
        let config = self.inner.config.punch.clone();
        let busy_until = start_at + config.max_duration + config.linger;
        *slot.punching.lock().unwrap_or_else(PoisonError::into_inner) = Some(busy_until);
        self.inner
            .stats
            .punches_started
            .fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(256);
        self.lock_punches().insert(token, tx);
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(
            async move {
                // The priming TTL comes from a traceroute started with the
                // overlay; the first punch may come before it is done.
                this.prime_ttl_traced(start_at.checked_sub(PRIME_TRACE_MARGIN).unwrap_or(start_at))
                    .await;
                let mut config = config;
                config.prime_ttl = this.prime_ttl();
                let params = PunchParams {
                    role,
                    round,
                    local,
                    remote,
                    start_at,
                };
                match PunchSession::new(params, config) {
                    Ok(session) => {
                        let socket = this.inner.node.socket().clone();
                        punch_driver::run(session, token, socket, rx, outcome_tx).await;
                    }
                    Err(error) => tracing::warn!(%error, "invalid punch configuration"),
                }
            }
            .instrument(span.clone()),
        );
        let this = self.clone();
        let slot = slot.clone();
        tokio::spawn(
            async move {
                match outcome_rx.await {
                    Ok(PunchEvent::PathValidated { remote, rtt }) => {
                        this.inner
                            .stats
                            .punches_succeeded
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%remote, ?rtt, "direct path validated");
                        // Whichever side dials, the other needs no Retry.
                        this.inner
                            .node
                            .trust_punched_address(remote, Instant::now() + PUNCHED_TRUST);
                        // The leader dials at once; the other side only if
                        // no direct connection shows up.
                        if !this.leads(&slot.id) {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        if !slot.has_direct() {
                            this.note_attempt(false);
                            match this.inner.node.connect(slot.id, &[remote]).await {
                                Ok(conn) => this.install(conn),
                                Err(error) => tracing::info!(%remote, %error, "direct dial after punch failed"),
                            }
                        }
                    }
                    Ok(PunchEvent::Failed { reason }) => {
                        this.inner
                            .stats
                            .punches_failed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%reason, "hole punching failed");
                    }
                    Err(_) => {}
                }
                // Leave the token registered through the linger period.
                tokio::time::sleep_until(busy_until.into()).await;
                this.lock_punches().remove(&token);
                let mut punching = slot.punching.lock().unwrap_or_else(PoisonError::into_inner);
                if punching.is_some_and(|t| t <= Instant::now()) {
                    *punching = None;
                }
            }
            .instrument(span),
        );
    }

    /// Keeps one bootstrap link up, reconnecting with backoff and jitter.
    /// Connects over UDP, or over TCP when UDP does not get through (see
    /// [`Self::connect_bootstrap`]); while on TCP, UDP is retried every
    /// [`UDP_RETRY`] and the link moves back to it when it works.
    async fn bootstrap_link(self, index: usize) {
        let server = self.inner.config.bootstraps[index];
        let span = tracing::info_span!("bootstrap", addr = %server.addr);
        let mut delay = Duration::from_millis(250);
        let mut lost_at: Option<Instant> = None;
        loop {
            let recent = lost_at.is_some_and(|t| t.elapsed() < FAST_RECONNECT_WINDOW);
            let attempt = self.connect_bootstrap(server).instrument(span.clone());
            let result = if recent {
                tokio::time::timeout(FAST_RECONNECT_ATTEMPT, attempt)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {FAST_RECONNECT_ATTEMPT:?}")))
            } else {
                attempt.await
            };
            let counters = &self.inner.stats.links[index];
            match result {
                Ok(conn) => {
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    if lost_at.is_some() {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    delay = Duration::from_millis(250);
                    let mut link = Link::new(conn);
                    loop {
                        self.inner
                            .links
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)[index] = Some(link.clone());
                        tracing::info!(parent: &span, transport = %link.transport, "bootstrap connected");
                        for slot in self.inner.peers.values() {
                            slot.wake.notify_one();
                        }
                        let upgraded = match link.transport {
                            Transport::Udp => {
                                self.serve_link(&link, index).instrument(span.clone()).await;
                                None
                            }
                            Transport::Tcp => {
                                tokio::select! {
                                    () = self.serve_link(&link, index).instrument(span.clone()) => None,
                                    () = self.watch_stream(&link) => None,
                                    conn = self.retry_udp(server).instrument(span.clone()) => Some(conn),
                                }
                            }
                        };
                        let Some(conn) = upgraded else { break };
                        // Back on UDP: relay routes through the stream move
                        // to the UDP address under the same virtual
                        // addresses, so relayed connections carry on (the
                        // bootstrap moves its forwarding when it sees the new
                        // connection).
                        let socket = self.inner.node.socket();
                        let moved = socket.repoint_relay_routes(link.addr, canonical(server.addr));
                        tracing::info!(parent: &span, relay_routes = moved, "bootstrap reachable over UDP again; leaving TCP");
                        link.conn.close("moved to UDP");
                        close_stream_later(socket.clone(), link.addr);
                        link = Link::new(conn);
                    }
                    self.inner
                        .links
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)[index] = None;
                    if link.transport == Transport::Tcp {
                        self.inner.node.socket().close_stream(link.addr);
                    }
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(parent: &span, "bootstrap connection lost");
                    // Its relay channels went with it (over UDP or the TCP
                    // stream): drop them now rather than at their idle
                    // timeout; peers ask the next bootstrap (or this one,
                    // once back) for new ones.
                    let via = link.addr;
                    self.retire_relays_where(|r| r.server == via);
                    for slot in self.inner.peers.values() {
                        slot.wake.notify_one();
                    }
                    lost_at = Some(Instant::now());
                }
                Err(error) => {
                    counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(parent: &span, %error, "bootstrap connect failed");
                }
            }
            let jitter = rand::thread_rng().gen_range(0.0..0.5);
            tokio::time::sleep(delay.mul_f64(1.0 + jitter)).await;
            let max = if lost_at.is_some_and(|t| t.elapsed() < FAST_RECONNECT_WINDOW) {
                FAST_RECONNECT_MAX_DELAY
            } else {
                Duration::from_secs(30)
            };
            delay = (delay * 2).min(max);
        }
    }

    /// Connects to a bootstrap, happy-eyeballs style: UDP first; if it has
    /// not connected after [`TCP_FALLBACK_DELAY`] (or failed), a TCP stream
    /// path is tried in parallel; the first to connect wins.
    async fn connect_bootstrap(&self, server: BootstrapAddr) -> Result<PeerConnection, String> {
        let node = &self.inner.node;
        let (failed_tx, failed_rx) = oneshot::channel::<()>();
        let udp = async move {
            let result = node.connect(server.peer, &[server.addr]).await;
            if result.is_err() {
                let _ = failed_tx.send(());
            }
            result
        };
        let tcp = async move {
            let _ = tokio::time::timeout(TCP_FALLBACK_DELAY, failed_rx).await;
            tracing::debug!("trying the bootstrap over TCP");
            let socket = node.socket();
            let timeout = self.inner.config.transport.connect_timeout;
            let addr = socket
                .connect_stream(server.addr, timeout)
                .await
                .map_err(|e| e.to_string())?;
            // Closes the stream unless the connection over it wins.
            let guard = StreamGuard {
                socket: socket.clone(),
                addr: Some(addr),
            };
            let conn = node
                .connect(server.peer, &[addr])
                .await
                .map_err(|e| e.to_string())?;
            guard.keep();
            Ok::<_, String>(conn)
        };
        tokio::pin!(udp, tcp);
        let (mut udp_error, mut tcp_error) = (None, None);
        loop {
            tokio::select! {
                result = &mut udp, if udp_error.is_none() => match result {
                    Ok(conn) => return Ok(conn),
                    Err(e) => udp_error = Some(e.to_string()),
                },
                result = &mut tcp, if tcp_error.is_none() => match result {
                    Ok(conn) => return Ok(conn),
                    Err(e) => tcp_error = Some(e),
                },
            }
            if let (Some(u), Some(t)) = (&udp_error, &tcp_error) {
                return Err(format!("over UDP: {u}; over TCP: {t}"));
            }
        }
    }

    /// While the link is on TCP: tries UDP every [`UDP_RETRY`] (with jitter)
    /// and returns the first connection that completes.
    async fn retry_udp(&self, server: BootstrapAddr) -> PeerConnection {
        loop {
            let jitter = rand::thread_rng().gen_range(0.0..0.3);
            tokio::time::sleep(UDP_RETRY.mul_f64(1.0 + jitter)).await;
            match self.inner.node.connect(server.peer, &[server.addr]).await {
                Ok(conn) => return conn,
                Err(error) => tracing::debug!(%error, "bootstrap still unreachable over UDP"),
            }
        }
    }

    /// Returns when the link's TCP stream has closed (the QUIC connection
    /// over it would otherwise only notice at its idle timeout).
    async fn watch_stream(&self, link: &Link) {
        let socket = self.inner.node.socket();
        while socket.has_stream(link.addr) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::info!("TCP stream to the bootstrap closed");
        link.conn.close("TCP stream closed");
    }

    async fn serve_link(&self, link: &Link, index: usize) {
        let mut monitor = network::LinkMonitor::new();
        let mut tick = tokio::time::interval(MAINTAIN_INTERVAL);
        loop {
            let msg = tokio::select! {
                msg = link.conn.control().recv() => match msg {
                    Some(msg) => msg,
                    None => return,
                },
                _ = tick.tick() => {
                    if monitor.stalled(&link.conn) {
                        self.inner.stats.links[index]
                            .stalled
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!("bootstrap link stalled");
                        link.conn.close("stalled");
                        return;
                    }
                    continue;
                }
            };
            match msg {
                ControlMessage::ObservedAddress { addr, .. } if is_virtual(addr) => {
                    tracing::debug!(%addr, "virtual observed address ignored");
                }
                ControlMessage::ObservedAddress { addr, .. } => {
                    let addr = canonical(addr);
                    let previous = link
                        .observed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replace(addr);
                    tracing::info!(%addr, "observed address");
                    // A new public address (our NAT renumbered or remapped
                    // us): peers without a direct path need it now.
                    let moved = previous.is_some_and(|p| p != addr);
                    for slot in self.inner.peers.values() {
                        if moved {
                            slot.announce_now.store(true, Ordering::Relaxed);
                        }
                        slot.wake.notify_one();
                    }
                }
                ControlMessage::RelayGrant { peer, channel } => {
                    let Some(slot) = PeerId::from_bytes(peer)
                        .ok()
                        .and_then(|p| self.inner.peers.get(&p).cloned())
                    else {
                        continue;
                    };
                    let route = RelayRoute {
                        server: link.addr,
                        channel,
                    };
                    let virtual_addr = self.inner.node.socket().add_relay_route(route);
                    let old = slot
                        .relay_route
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replace(virtual_addr);
                    if let Some(old) = old.filter(|o| *o != virtual_addr) {
                        self.retire_relay(&slot, old);
                    }
                    tracing::info!(peer = %slot.id.short(), channel, "relay granted");
                    if self.leads(&slot.id) && !slot.has_relay() {
                        self.dial(&slot, virtual_addr, true);
                    }
                }
                ControlMessage::RelayRequest { peer } => {
                    // A peer asked this bootstrap for a relay with us; it
                    // gets one only once we ask too. We do for a configured
                    // peer unless our live relay with it already runs
                    // through this bootstrap: a relay through another one
                    // may be dead before we notice (the peer asking says it
                    // is), and waiting for our own detection doubled the
                    // outage of a relay failover.
                    let Some(slot) = PeerId::from_bytes(peer)
                        .ok()
                        .and_then(|p| self.inner.peers.get(&p).cloned())
                    else {
                        tracing::debug!("relay request from an unconfigured peer ignored");
                        continue;
                    };
                    if self.relay_server(&slot) != Some(link.addr) {
                        tracing::debug!(peer = %slot.id.short(), "peer asked for a relay; asking too");
                        let _ = link.conn.control().try_send(ControlMessage::RelayRequest {
                            peer: *slot.id.as_bytes(),
                        });
                    }
                }
                ControlMessage::RelayClose { channel } => {
                    let route = RelayRoute {
                        server: link.addr,
                        channel,
                    };
                    self.retire_relays_where(|r| r == route);
                }
                ControlMessage::Forward { peer, inner } => {
                    let Some(slot) = PeerId::from_bytes(peer)
                        .ok()
                        .and_then(|p| self.inner.peers.get(&p).cloned())
                    else {
                        tracing::debug!("forwarded message from an unconfigured peer dropped");
                        continue;
                    };
                    self.handle_forwarded(link, &slot, *inner);
                }
                ControlMessage::PeerUnavailable { peer, reason } => {
                    if reason != UnavailableReason::NotConnected {
                        tracing::debug!(?reason, peer = ?PeerId::from_bytes(peer).ok(), "bootstrap refused a request");
                    }
                }
                other => tracing::debug!(?other, "unexpected message from bootstrap"),
            }
        }
    }

    fn handle_forwarded(&self, link: &Link, slot: &Arc<PeerSlot>, msg: ControlMessage) {
        tracing::trace!(peer = %slot.id.short(), ?msg, "forwarded");
        match msg {
            ControlMessage::AddAddress { addr, .. } if is_virtual(addr) => {
                tracing::debug!(peer = %slot.id.short(), %addr, "virtual address is no punch candidate; ignored");
            }
            ControlMessage::AddAddress { sequence, addr } => {
                // The peer announces only while it has no direct path: if
                // ours is established (not just racing this message), the
                // peer lost it (it moved, or its NAT did) and so did we.
                let stale = {
                    let paths = slot.read();
                    paths.direct.clone().filter(|_| {
                        paths
                            .direct_since
                            .is_some_and(|t| t.elapsed() >= STALE_DIRECT_AFTER)
                    })
                };
                if let Some(conn) = stale {
                    self.drop_direct(slot, &conn, stats::PEER_LOST);
                }
                let mut c = slot
                    .candidates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if c.is_empty() {
                    tracing::debug!(peer = %slot.id.short(), %addr, "first candidate of the peer");
                    slot.announce_now.store(true, Ordering::Relaxed);
                    slot.wake.notify_one();
                }
                if c.len() >= 64 {
                    c.pop_first();
                }
                c.insert(sequence, canonical(addr));
                *slot
                    .candidates_changed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
            ControlMessage::RemoveAddress { sequence } => {
                slot.candidates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&sequence);
                *slot
                    .candidates_changed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
            ControlMessage::PunchMeNow {
                round,
                addr,
                delay_ms,
                token,
                start_at_unix_micros,
                ..
            } => {
                if self.leads(&slot.id) || slot.has_direct() {
                    return;
                }
                // One session per peer at a time: each session may spend its
                // anti-amplification budget on every candidate the peer
                // named, so a peer repeating PUNCH_ME_NOW (with a new round
                // each time) would otherwise multiply the bytes we send to
                // addresses that never answered, possibly someone else's.
                let busy = slot
                    .punching
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some_and(|t| Instant::now() < t);
                if busy {
                    tracing::debug!(round, "punch requested while one is running; ignored");
                    return;
                }
                let start_at = punch_start(delay_ms, start_at_unix_micros, link.conn.rtt());
                let in_ms = start_at
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    * 1e3;
                tracing::debug!(peer = %slot.id.short(), round, in_ms, "punch requested");
                // `addr` is where the leader's NAT maps it now, which its
                // announcement may not have told us yet.
                let also = Some(canonical(addr)).filter(|a| !is_virtual(*a));
                self.start_punch(slot, Role::Controlled, round, token, start_at, also);
            }
            other => tracing::debug!(?other, "unexpected forwarded message"),
        }
    }
}

fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The monotonic clock and the wall clock (µs since the epoch) read at the
/// same moment, give or take a few microseconds: both peers turn the agreed
/// wall-clock start into their own monotonic instant, and a read that was
/// interrupted in between would shift it.
fn clock_pair() -> (Instant, u64) {
    let mut best: Option<(Duration, Instant, u64)> = None;
    for _ in 0..5 {
        let before = Instant::now();
        let wall = unix_micros(SystemTime::now());
        let after = Instant::now();
        let spread = after - before;
        if best.as_ref().is_none_or(|(s, _, _)| spread < *s) {
            best = Some((spread, before + spread / 2, wall));
        }
        if spread < Duration::from_micros(5) {
            break;
        }
    }
    let (_, instant, wall) = best.unwrap_or_else(|| {
        (
            Duration::ZERO,
            Instant::now(),
            unix_micros(SystemTime::now()),
        )
    });
    (instant, wall)
}

/// When to start a punch the peer asked for: at its wall-clock start time if
/// that lies in the window the relative delay allows (so the clocks agree
/// within about one bootstrap round trip), else `delay_ms` from now.
fn punch_start(delay_ms: u64, start_at_unix_micros: u64, rtt: Duration) -> Instant {
    let (now, now_unix) = clock_pair();
    let delay = Duration::from_millis(delay_ms.min(5_000));
    let by_delay = now + delay;
    if start_at_unix_micros == 0 {
        return by_delay;
    }

    let until = Duration::from_micros(start_at_unix_micros.saturating_sub(now_unix));
    let slack = rtt * 2 + Duration::from_millis(10);
    if start_at_unix_micros >= now_unix && until <= delay + slack {
        now + until
    } else {
        by_delay
    }
}

/// Closes a duplicate connection after a grace period, so packets already
/// sent on it are not lost.
fn close_later(conn: PeerConnection, reason: &'static str) {
    tokio::spawn(async move {
        tokio::time::sleep(DUPLICATE_GRACE).await;
        conn.close(reason);
    });
}

/// Exponential backoff between attempts: the first attempt at once, then
/// `initial` doubling up to ten times `initial` (at least 30 s).
struct Backoff {
    next: Option<Instant>,
    initial: Duration,
    delay: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self::starting_at(Duration::from_millis(500))
    }

    fn starting_at(initial: Duration) -> Self {
        Self {
            next: None,
            initial,
            delay: initial,
        }
    }

    fn max(&self) -> Duration {
        (self.initial * 10).max(Duration::from_secs(30))
    }

    fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    fn arm(&mut self, now: Instant) {
        self.next = Some(now + self.delay);
        self.delay = (self.delay * 2).min(self.max());
    }

    fn reset(&mut self) {
        *self = Self::starting_at(self.initial);
    }

    /// Holds the next attempt back until at least `t`.
    fn not_before(&mut self, t: Instant) {
        self.next = Some(self.next.map_or(t, |next| next.max(t)));
    }
}
