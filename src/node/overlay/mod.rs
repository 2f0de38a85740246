//! The overlay: a node that keeps connections to a set of peers (fixed at
//! the start, plus those added later with [`Overlay::add_peer`]),
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

//!
//! Files: `peer` (the per-peer driver around [`PeerState`]), `links`
//! (bootstrap links), `punch` (candidates and punch sessions), `network`
//! (network changes, dead links, the priming TTL), `observe` (our NAT's
//! mapping behaviour from a bootstrap's observe socket), `birthday`
//! (birthday probing with a hard NAT), `ping` (pings above QUIC), `data`
//! (datagrams in data plane frames beside QUIC: sessions, sends, the
//! receive path), `stats`. See `docs/architecture.md` for the tasks and who
//! owns what.
//!
//! [`PeerState`]: crate::node::peer_state::PeerState

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::Instrument as _;

mod birthday;
mod data;
mod links;
mod members;
mod network;
mod observe;
mod peer;
mod ping;
mod portmap;
mod punch;
mod stats;

pub use self::data::SendBatch;
use self::links::{BootSlot, Link};
use self::peer::{alive, PeerSlot};
pub use self::ping::{PingError, PingReply, PONG_DEADLINE};
pub use self::portmap::{PortMapStatus, REMOVE_WAIT};
use super::link_state::RelayChoice;
use super::members::{MemberBook, MembershipConfig};
use super::peer_state::PeerFacts;
use super::punch_driver::ProbeIn;
use super::{Node, NodeConfig, NodeError, PeerConnection, TransportSettings};
use crate::identity::{Identity, PeerId};
use crate::nat::canonical;
use crate::nat::PunchConfig;
use crate::node::BootstrapAddr;
use crate::proto::raw::{parse_raw, RawFrame};
use crate::proto::ControlMessage;
use crate::ratelimit::TokenBucket;
use crate::socket::Transport;
use crate::tls::{AcceptPolicy, Allowlist};

/// Queue of datagrams received from all peers.
const RECV_QUEUE: usize = 4096;

/// Datagrams that wait for a peer's first connection (see [`Overlay::send`]).
pub const STAGED_MAX: usize = 128;

/// Staged datagrams older than this when the connection comes up are
/// dropped: the application has retried or given up by then.
pub const STAGED_MAX_AGE: Duration = Duration::from_secs(2);

/// Address challenges from our bootstraps answered per second at most
/// (a bootstrap sends one per migration it sees; more is someone spoofing
/// the bootstrap's address).
const CHALLENGE_ANSWERS_PER_SEC: f64 = 10.0;

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
    /// Membership of a network (CA): members are found through the
    /// bootstraps' directory and become peers without being listed.
    pub membership: Option<MembershipConfig>,
    /// Ask the IPv4 default gateway for a mapping of our port (PCP,
    /// NAT-PMP, UPnP IGD; see `overlay::portmap`). Never with
    /// `loopback_only`.
    pub port_mapping: bool,
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
    /// How the direct path in use was found: `punch` or `birthday` (a
    /// path validated by that attempt), else `null` (dialed at a known
    /// endpoint, or accepted from the peer's dial).
    pub direct_found_by: Option<&'static str>,
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

/// How long a punch or birthday attempt keeps a peer busy (no other
/// starts meanwhile).
fn punch_busy(punch: &PunchConfig) -> Duration {
    let birthday = crate::nat::BirthdayConfig::default();
    (punch.max_duration + punch.linger).max(birthday.max_duration + birthday.linger)
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
    /// No peer owns the address, and no member of our network does (or we
    /// have no network).
    #[error("no member owns {0}")]
    NoMember(IpAddr),
    /// QUIC refused the datagram (too large, or the connection closed).
    #[error("datagram to {peer}: {source}")]
    Datagram {
        /// The peer.
        peer: PeerId,
        /// The QUIC error.
        source: quinn::SendDatagramError,
    },
}

/// The peers by key. Read on every datagram (a lock-free load); changed
/// only by [`Overlay::add_peer`] and [`Overlay::remove_peer`], one at a time
/// (under `Inner::peers_change`).
type PeerMap = HashMap<PeerId, Arc<PeerSlot>>;

struct Inner {
    node: Node,
    config: OverlayConfig,
    peers: ArcSwap<PeerMap>,
    /// Serializes changes of `peers` (taken alone).
    peers_change: Mutex<()>,
    /// The keys whose handshakes we accept: the peers'.
    allow: Allowlist,
    /// The bootstraps, in order of preference: each with its link when
    /// connected (a reload may change the list; taken alone).
    boots: RwLock<Vec<BootSlot>>,
    punches: Mutex<HashMap<[u8; 16], mpsc::Sender<ProbeIn>>>,
    delivery: Delivery,
    incoming_rx: tokio::sync::Mutex<mpsc::Receiver<(PeerId, Bytes)>>,
    last_poke: Mutex<Option<Instant>>,
    /// Which bootstrap new relay channels are asked of.
    relay_choice: Mutex<RelayChoice>,
    /// The membership book, with a network (taken alone).
    members: Option<Mutex<MemberBook>>,
    /// Bumped when members join or leave.
    members_changed: tokio::sync::watch::Sender<u64>,
    /// TTL of punch priming probes learned from the routers toward the
    /// bootstrap (see [`crate::nat::priming`]); 0 until learned.
    prime_ttl: AtomicU8,
    /// Whether the first traceroute for [`Self::prime_ttl`] has finished
    /// (or cannot run).
    prime_traced: tokio::sync::watch::Sender<bool>,
    stats: stats::OverlayStats,
    /// Port mapping, when on (taken alone).
    portmap: Option<Mutex<portmap::PortMapState>>,
    /// Wakes the port mapping task (a network change).
    portmap_wake: tokio::sync::Notify,
    /// The port mapping task, aborted by [`Overlay::close`].
    portmap_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The data plane's sessions and receive path (the socket's
    /// [`crate::socket::DataReceiver`]).
    data: Arc<data::DataPlane>,
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
            AcceptPolicy::Allowlist(allow.clone()),
        );
        node_config.transport = config.transport.clone();
        let node = Node::bind(node_config)?;
        let started = Instant::now();
        let punch_busy = punch_busy(&config.punch);
        let peers: PeerMap = config
            .peers
            .iter()
            .map(|(id, endpoint)| {
                let facts = PeerFacts {
                    leads: config.identity.peer_id() < *id,
                    endpoint: *endpoint,
                    started,
                    punch_busy,
                };
                (*id, Arc::new(PeerSlot::new(*id, facts)))
            })
            .collect();
        let own = config.identity.peer_id();
        let membership = config.membership.clone();
        let (tx, rx) = mpsc::channel(RECV_QUEUE);
        let boots = RwLock::new(
            config
                .bootstraps
                .iter()
                .map(|b| BootSlot::new(*b))
                .collect(),
        );
        let stats = stats::OverlayStats::new();
        let portmap = (config.port_mapping && !config.loopback_only)
            .then(|| Mutex::new(portmap::PortMapState::new(started)));
        let delivery = match sink {
            Some(sink) => Delivery::Sink(sink),
            None => Delivery::Queue(tx),
        };
        let data = Arc::new(data::DataPlane::new(
            node.socket().clone(),
            delivery.clone(),
        ));
        let receiver: Arc<dyn crate::socket::DataReceiver> = data.clone();
        node.socket().set_data_receiver(Arc::downgrade(&receiver));
        let inner = Arc::new(Inner {
            node,
            config,
            peers: ArcSwap::from_pointee(peers),
            peers_change: Mutex::default(),
            allow,
            boots,
            punches: Mutex::default(),
            delivery,
            incoming_rx: tokio::sync::Mutex::new(rx),
            last_poke: Mutex::default(),
            relay_choice: Mutex::default(),
            members: membership.map(|m| Mutex::new(MemberBook::new(m, own, started))),
            members_changed: tokio::sync::watch::Sender::new(0),
            prime_ttl: AtomicU8::new(0),
            prime_traced: tokio::sync::watch::Sender::new(false),
            stats,
            portmap,
            portmap_wake: tokio::sync::Notify::new(),
            portmap_task: Mutex::default(),
            data,
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
        // Raw frames: punch probes, address challenges from bootstraps, and
        // the answers of their observe sockets.
        if let Some(mut raw) = inner.node.socket().take_raw_receiver() {
            let this = self.clone();
            tokio::spawn(async move {
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
                            let configured = this
                                .boot_views()
                                .iter()
                                .any(|(b, _, _)| canonical(b.addr) == packet.from);
                            let link = configured.then(|| this.link_at(packet.from)).flatten();
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
                        Ok(RawFrame::ObserveReply(reply)) => {
                            this.observe_reply(packet.from, reply);
                        }
                        Ok(
                            RawFrame::Relay { .. }
                            | RawFrame::ObserveRequest(_)
                            | RawFrame::Data { .. },
                        )
                        | Err(_) => {
                            tracing::debug!(from = %packet.from, "unexpected raw frame dropped");
                        }
                    }
                }
            });
        }
        // Bootstrap links.
        for server in inner.config.bootstraps.clone() {
            self.spawn_link(server);
        }
        // Network changes (and the traceroute for the priming TTL).
        if inner.config.loopback_only {
            inner.prime_traced.send_replace(true);
        } else {
            let this = self.clone();
            tokio::spawn(async move { this.watch_network().await });
        }
        if inner.members.is_some() {
            let this = self.clone();
            tokio::spawn(async move { this.tend_members().await });
        }
        if inner.portmap.is_some() {
            let this = self.clone();
            let task = tokio::spawn(
                async move { this.run_portmap().await }.instrument(tracing::info_span!("portmap")),
            );
            *inner
                .portmap_task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        // Per-peer maintenance.
        for slot in inner.peers.load().values() {
            self.spawn_maintain(slot.clone());
        }
    }

    fn spawn_maintain(&self, slot: Arc<PeerSlot>) {
        let this = self.clone();
        let span = tracing::info_span!("peer", id = %slot.id.short());
        tokio::spawn(async move { this.maintain(slot).await }.instrument(span));
    }

    /// Every peer now (a snapshot).
    fn slots(&self) -> Arc<PeerMap> {
        self.inner.peers.load_full()
    }

    /// The peer with key `id`.
    fn slot(&self, id: &PeerId) -> Option<Arc<PeerSlot>> {
        self.inner.peers.load().get(id).cloned()
    }

    /// Changes the peer map with `change` (given a copy to edit; `None`
    /// leaves the map as it is), one change at a time.
    fn change_peers<R>(&self, change: impl FnOnce(&mut PeerMap) -> Option<R>) -> Option<R> {
        let _one = self
            .inner
            .peers_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = (*self.inner.peers.load_full()).clone();
        let result = change(&mut next)?;
        self.inner.peers.store(Arc::new(next));
        Some(result)
    }

    /// Whether `id` is one of our peers now.
    pub fn is_peer(&self, id: &PeerId) -> bool {
        self.inner.peers.load().contains_key(id)
    }

    /// Adds a peer (one learned after the start, e.g. a member of the
    /// network found through the directory): its handshakes are accepted
    /// from now on and the overlay connects to it as to a configured one.
    /// Returns false if it is a peer already, or our own key.
    pub fn add_peer(&self, id: PeerId, endpoint: Option<SocketAddr>) -> bool {
        let me = self.peer_id();
        if id == me {
            return false;
        }
        let config = &self.inner.config;
        let facts = PeerFacts {
            leads: me < id,
            endpoint,
            started: Instant::now(),
            punch_busy: punch_busy(&config.punch),
        };
        let added = self.change_peers(|peers| {
            if peers.contains_key(&id) {
                return None;
            }
            let slot = Arc::new(PeerSlot::new(id, facts));
            peers.insert(id, slot.clone());
            self.inner.allow.insert(id);
            Some(slot)
        });
        let Some(slot) = added else { return false };
        tracing::info!(peer = %id.short(), "peer added");
        self.spawn_maintain(slot);
        true
    }

    /// Removes a peer: its handshakes are refused from now on, its
    /// connections close and its relay channel is retired. Returns false if
    /// it was no peer.
    pub fn remove_peer(&self, id: &PeerId) -> bool {
        let removed = self.change_peers(|peers| {
            let slot = peers.remove(id)?;
            self.inner.allow.remove(id);
            Some(slot)
        });
        let Some(slot) = removed else { return false };
        tracing::info!(peer = %id.short(), "peer removed");
        slot.remove();
        true
    }

    /// The bootstrap link whose connection runs to `addr`.
    fn link_at(&self, addr: SocketAddr) -> Option<Link> {
        self.read_links().into_iter().find(|l| l.addr == addr)
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
        let mut batch = SendBatch::default();
        let sent = self.send_batched(&mut batch, peer, data);
        self.flush(&mut batch);
        sent
    }

    /// Like [`Self::send`], but a datagram that goes in a data plane frame
    /// waits in `batch` (sealed) until [`Self::flush`], so that the
    /// datagrams of one device read leave in one GSO send.
    pub fn send_batched(
        &self,
        batch: &mut SendBatch,
        peer: &PeerId,
        data: Bytes,
    ) -> Result<(), SendError> {
        let peers = self.inner.peers.load();
        let slot = peers.get(peer).ok_or(SendError::UnknownPeer(*peer))?;
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
        let plane = &self.inner.data;
        let framed = match plane.route(conn) {
            Some((session, to)) if data.len() <= batch.room(conn) => batch
                .push(plane, session, (to, conn.local_ip()), &data)
                .is_ok(),
            Some(_) => {
                return Err(SendError::Datagram {
                    peer: *peer,
                    source: quinn::SendDatagramError::TooLarge,
                })
            }
            None => {
                plane.hello_if_due(conn);
                false
            }
        };
        if !framed {
            conn.send_datagram(data)
                .map_err(|source| SendError::Datagram {
                    peer: *peer,
                    source,
                })?;
        }
        slot.bytes_out.fetch_add(len, Ordering::SeqCst);
        if slot.idle.load(Ordering::SeqCst) {
            slot.idle.store(false, Ordering::Relaxed);
            slot.wake.notify_one();
        }
        Ok(())
    }

    /// Sends the data frames waiting in `batch`.
    pub fn flush(&self, batch: &mut SendBatch) {
        batch.send(&self.inner.data);
    }

    /// The largest datagram that can be sent to `peer` now.
    pub fn max_datagram_size(&self, peer: &PeerId) -> Option<usize> {
        let peers = self.inner.peers.load();
        let slot = peers.get(peer)?;
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
        self.boot_views()
            .into_iter()
            .map(|(b, link, _)| {
                (
                    b,
                    link.and_then(|l| *l.observed.lock().unwrap_or_else(PoisonError::into_inner)),
                )
            })
            .collect()
    }

    /// The transport of each bootstrap link (`None` when not connected).
    pub fn bootstrap_transports(&self) -> Vec<(BootstrapAddr, Option<Transport>)> {
        self.boot_views()
            .into_iter()
            .map(|(b, link, _)| (b, link.filter(|l| alive(&l.conn)).map(|l| l.transport)))
            .collect()
    }

    /// Per-peer status.
    pub fn status(&self) -> Vec<PeerStatus> {
        let mut out: Vec<_> = self
            .slots()
            .values()
            .map(|slot| {
                let paths = slot.read();
                let (path, conn) = paths.active();
                let hop = conn.map(|c| self.hop(c));
                let transport = hop.map(|(_, _, t)| t);
                let remote = hop.map(|(_, via, _)| via);
                let (first_connect, first_direct) = slot.state().firsts();
                let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
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
                    first_connect_ms: ms(first_connect),
                    first_direct_ms: ms(first_direct),
                    direct_found_by: conn.filter(|_| path == PathKind::Direct).and_then(|c| {
                        let validated = *slot
                            .validated
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        validated
                            .filter(|(addr, _)| *addr == canonical(c.remote_address()))
                            .map(|(_, method)| method.label())
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        out
    }

    /// Counts the peers' live connections, direct and relay.
    pub fn open_connections(&self) -> OpenConnections {
        let mut open = OpenConnections::default();
        for slot in self.slots().values() {
            let paths = slot.read();
            let direct = paths.direct.as_ref().is_some_and(alive);
            let relay = paths.relay.as_ref().is_some_and(alive);
            open.direct += usize::from(direct);
            open.relay += usize::from(relay);
            open.both += usize::from(direct && relay);
        }
        open
    }

    /// Closes every connection and removes our port mapping from the
    /// gateway (waiting at most [`REMOVE_WAIT`] for it to confirm).
    pub async fn close(&self) {
        tokio::join!(self.close_portmap(), self.inner.node.close());
    }

    /// The connected bootstrap links, in order of preference.
    fn read_links(&self) -> Vec<Link> {
        self.inner
            .boots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|b| b.link.clone())
            .collect()
    }

    /// Every bootstrap with its link (if connected) and counters.
    fn boot_views(&self) -> Vec<(BootstrapAddr, Option<Link>, Arc<stats::LinkStats>)> {
        self.inner
            .boots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|b| (b.server, b.link.clone(), b.counters.clone()))
            .collect()
    }

    /// Passes over the bootstrap at `server` for new relay channels for a
    /// while: its relay path just stalled, and it may be what died.
    fn suspect(&self, server: SocketAddr) {
        self.inner
            .relay_choice
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .suspect(server, Instant::now());
    }

    /// The connected bootstrap that new relay channels are asked of.
    fn primary_link(&self) -> Option<Link> {
        // Copied out first: the two locks are never held together.
        let alive_links: Vec<Link> = self
            .read_links()
            .into_iter()
            .filter(|l| alive(&l.conn))
            .collect();
        let addrs: Vec<SocketAddr> = alive_links.iter().map(|l| l.addr).collect();
        let chosen = self
            .inner
            .relay_choice
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .choose(&addrs, Instant::now())?;
        alive_links.into_iter().find(|l| l.addr == chosen)
    }

    /// The slot of the configured peer with key `peer`.
    fn slot_of(&self, peer: [u8; 32]) -> Option<Arc<PeerSlot>> {
        let id = PeerId::from_bytes(peer).ok()?;
        self.slot(&id)
    }
}
