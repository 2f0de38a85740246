//! The bootstrap node: a public node that peers keep a QUIC connection to.
//!
//! For each connected peer it:
//! - reports the address it observes (`OBSERVED_ADDRESS`, again whenever the
//!   peer's address changes);
//! - keeps the peer's announced candidates (`ADD_ADDRESS`/`REMOVE_ADDRESS`);
//! - forwards coordination messages between two peers (`FORWARD` carrying
//!   `ADD_ADDRESS`, `REMOVE_ADDRESS` or `PUNCH_ME_NOW`), within a per-key
//!   rate limit;
//! - relays traffic for a pair that asked (`RELAY_REQUEST` → `RELAY_GRANT` to
//!   both): forwarding entries in the shared socket move `RELAY_DATA` frames
//!   between the two peers' validated addresses, one out per one in, within a
//!   per-direction bandwidth limit. The relay never sees the peers' keys
//!   material: their QUIC is end to end.
//!
//! Sessions, candidates and relay allocations of a peer go away when its
//! connection closes.
//!
//! Peers whose network drops UDP reach the bootstrap over TCP
//! ([`crate::socket::tcp`]; by default on the same address and port as UDP).
//! Such a peer's QUIC connection runs from a virtual stream-path address: it
//! is never reported as `OBSERVED_ADDRESS` nor accepted as a candidate, so
//! the peer gets no direct path and is reached through the relay only.

pub mod config;
mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore as _;

use crate::identity::{Identity, PeerId};
use crate::node::{Node, NodeConfig, NodeError, PeerConnection};
use crate::proto::{ControlMessage, UnavailableReason};
use crate::ratelimit::TokenBucket;
use crate::socket::{
    bind_tcp, canonical, is_stream_addr, is_virtual, RelayLimit, RelayRoute, StreamLimits,
    Transport,
};
use crate::tls::{AcceptPolicy, Allowlist};

/// How many candidates a peer may announce.
const MAX_CANDIDATES: usize = 16;
/// How often a session checks whether the peer's address changed.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(250);

/// Rate limits of a bootstrap node.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Coordination requests (FORWARD, RELAY_REQUEST) per second per key.
    pub coordination_per_sec: f64,
    /// Burst of coordination requests per key.
    pub coordination_burst: f64,
    /// Relay bandwidth per direction of a pair, bytes per second.
    pub relay_bytes_per_sec: f64,
    /// Relay burst per direction, bytes.
    pub relay_burst_bytes: f64,
    /// New connections per second per source IP (QUIC handshakes, and
    /// separately new TCP streams).
    pub connections_per_sec_per_ip: f64,
    /// Most TCP streams open at once.
    pub tcp_max_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            coordination_per_sec: 20.0,
            coordination_burst: 60.0,
            relay_bytes_per_sec: 25_000_000.0,
            relay_burst_bytes: 2_000_000.0,
            connections_per_sec_per_ip: 20.0,
            tcp_max_streams: 4096,
        }
    }
}

/// Where a bootstrap listens for TCP streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpListen {
    /// The same IP and port as the UDP socket (the port actually bound).
    SameAsUdp,
    /// This address.
    At(SocketAddr),
    /// No TCP listener.
    Off,
}

/// What a bootstrap server needs to start.
#[derive(Clone, Debug)]
pub struct BootstrapSettings {
    /// The bootstrap's key pair.
    pub identity: Identity,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// TCP listener for peers whose network drops UDP.
    pub tcp_listen: TcpListen,
    /// Whether to relay traffic.
    pub relay: bool,
    /// If set, only these keys may connect.
    pub allowed_keys: Option<Vec<PeerId>>,
    /// Rate limits.
    pub limits: Limits,
}

impl From<config::BootstrapConfig> for BootstrapSettings {
    fn from(c: config::BootstrapConfig) -> Self {
        Self {
            identity: c.identity,
            listen: c.listen,
            tcp_listen: c.tcp_listen,
            relay: c.relay,
            allowed_keys: c.allowed_keys,
            limits: c.limits,
        }
    }
}

/// Counters of a bootstrap node.
#[derive(Debug, Default)]
pub struct BootstrapStats {
    /// Peers currently connected.
    pub peers: AtomicU64,
    /// Messages forwarded between peers.
    pub forwarded: AtomicU64,
    /// Coordination requests (FORWARD, RELAY_REQUEST) the rate limit let
    /// through.
    pub admitted: AtomicU64,
    /// Coordination requests refused by the rate limit.
    pub rate_limited: AtomicU64,
    /// Relay allocations made.
    pub relays_granted: AtomicU64,
    /// Messages refused for other reasons (unknown or invalid target key,
    /// not forwardable, relay disabled).
    pub refused: AtomicU64,
    /// Admitted messages dropped because the target's control queue was
    /// full (it reads slower than others write to it).
    pub target_queue_full: AtomicU64,
}

struct PeerEntry {
    conn: PeerConnection,
    observed: SocketAddr,
    candidates: BTreeMap<u64, SocketAddr>,
    coordination: TokenBucket,
}

/// A relay allocation between two peers; `a < b` by key.
#[derive(Clone, Copy, Debug)]
struct Allocation {
    a: PeerId,
    b: PeerId,
    channel_a: u32,
    channel_b: u32,
    addr_a: SocketAddr,
    addr_b: SocketAddr,
}

#[derive(Default)]
struct Registry {
    peers: HashMap<PeerId, PeerEntry>,
    relays: HashMap<(PeerId, PeerId), Allocation>,
}

/// Aborts the TCP listener task when the last bootstrap handle goes.
#[derive(Debug)]
struct TcpServer {
    local: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running bootstrap node.
#[derive(Clone)]
pub struct Bootstrap {
    node: Node,
    tcp: Option<Arc<TcpServer>>,
    settings: Arc<BootstrapSettings>,
    registry: Arc<Mutex<Registry>>,
    stats: Arc<BootstrapStats>,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn pair(x: PeerId, y: PeerId) -> (PeerId, PeerId) {
    if x < y {
        (x, y)
    } else {
        (y, x)
    }
}

impl Bootstrap {
    /// Binds the bootstrap's endpoint and starts serving. Must run inside a
    /// tokio runtime.
    pub fn start(settings: BootstrapSettings) -> Result<Self, NodeError> {
        let accept = match &settings.allowed_keys {
            Some(keys) => AcceptPolicy::Allowlist(Allowlist::new(keys.iter().copied())),
            None => AcceptPolicy::AnyKey,
        };
        let mut config = NodeConfig::new(settings.identity.clone(), settings.listen, accept);
        config.transport.datagram_receive_buffer = None;
        config.incoming_per_ip = Some((
            settings.limits.connections_per_sec_per_ip,
            settings.limits.connections_per_sec_per_ip * 3.0,
        ));
        let node = Node::bind(config)?;
        let tcp_addr = match settings.tcp_listen {
            TcpListen::Off => None,
            TcpListen::At(addr) => Some(addr),
            TcpListen::SameAsUdp => Some(node.local_addr().map_err(NodeError::Endpoint)?),
        };
        let tcp = match tcp_addr {
            Some(addr) => {
                let listener = bind_tcp(addr)?;
                let local = listener.local_addr().map_err(NodeError::Endpoint)?;
                let limits = StreamLimits {
                    per_ip_per_sec: settings.limits.connections_per_sec_per_ip,
                    per_ip_burst: settings.limits.connections_per_sec_per_ip * 3.0,
                    max_streams: settings.limits.tcp_max_streams,
                    // Stand-in until this file calls AntqSocket::claim_stream
                    // after a connection's handshake: no claim deadline.
                    claim_timeout: Duration::from_secs(365 * 24 * 3600),
                    ..StreamLimits::default()
                };
                let task = node.socket().serve_tcp(listener, limits).abort_handle();
                tracing::debug!(%local, "TCP listener up");
                Some(Arc::new(TcpServer { local, task }))
            }
            None => None,
        };
        let this = Self {
            node,
            tcp,
            settings: Arc::new(settings),
            registry: Arc::default(),
            stats: Arc::default(),
        };
        let server = this.clone();
        tokio::spawn(async move {
            while let Some(conn) = server.node.accept().await {
                let session = server.clone();
                let span = tracing::info_span!("peer", id = %conn.peer_id().short());
                tokio::spawn(tracing::Instrument::instrument(session.serve(conn), span));
            }
        });
        Ok(this)
    }

    /// The bootstrap's key.
    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.node.local_addr()
    }

    /// The bound TCP address, if the TCP listener is on.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|t| t.local)
    }

    /// Counters.
    pub fn stats(&self) -> &BootstrapStats {
        &self.stats
    }

    /// The underlying node (socket counters, relay statistics).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Keys of the connected peers.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.lock().peers.keys().copied().collect()
    }

    /// The candidates a peer announced.
    pub fn candidates_of(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.lock()
            .peers
            .get(peer)
            .map(|e| e.candidates.values().copied().collect())
            .unwrap_or_default()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        if let Some(tcp) = &self.tcp {
            tcp.task.abort();
        }
        self.node.close().await;
        self.node.socket().close_all_streams();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn serve(self, conn: PeerConnection) {
        let peer = conn.peer_id();
        let mut observed = canonical(conn.remote_address());
        let mut sequence = 0u64;
        let previous = self.lock().peers.insert(
            peer,
            PeerEntry {
                conn: conn.clone(),
                observed,
                candidates: BTreeMap::new(),
                coordination: TokenBucket::new(
                    self.settings.limits.coordination_per_sec,
                    self.settings.limits.coordination_burst,
                    Instant::now(),
                ),
            },
        );
        match previous {
            Some(old) => {
                old.conn.close("replaced by a new connection");
                // The peer reconnected, maybe over another transport (TCP
                // back to UDP): its relays follow it to the new address.
                if old.observed != observed {
                    self.address_changed(peer, observed);
                }
            }
            None => {
                self.stats.peers.fetch_add(1, Ordering::Relaxed);
            }
        }
        let transport = Transport::of(observed);
        tracing::info!(%observed, %transport, "peer connected");
        if let Some(tcp_peer) = self.node.socket().stream_peer(observed) {
            tracing::info!(%tcp_peer, "peer is on TCP: relay only, no observed address");
        }
        self.send_observed(&conn, sequence, observed).await;

        let mut tick = tokio::time::interval(OBSERVE_INTERVAL);
        loop {
            tokio::select! {
                msg = conn.control().recv() => match msg {
                    Some(msg) => self.handle(peer, &conn, msg).await,
                    None => break,
                },
                _ = tick.tick() => {
                    let now = canonical(conn.remote_address());
                    if now != observed {
                        observed = now;
                        sequence += 1;
                        tracing::info!(%observed, "peer address changed");
                        self.address_changed(peer, observed);
                        self.send_observed(&conn, sequence, observed).await;
                    }
                    if is_stream_addr(observed) && !self.node.socket().has_stream(observed) {
                        conn.close("TCP stream closed");
                        break;
                    }
                }
                _ = conn.closed() => break,
            }
        }
        self.disconnected(peer, &conn);
        if is_stream_addr(observed) {
            self.node.socket().close_stream(observed);
        }
    }

    /// Tells the peer its observed address, unless it is a virtual one (a
    /// TCP stream path), which means nothing to anyone else.
    async fn send_observed(&self, conn: &PeerConnection, sequence: u64, addr: SocketAddr) {
        if is_virtual(addr) {
            return;
        }
        let _ = conn
            .control()
            .send(ControlMessage::ObservedAddress { sequence, addr })
            .await;
    }

    async fn handle(&self, peer: PeerId, conn: &PeerConnection, msg: ControlMessage) {
        match msg {
            ControlMessage::AddAddress { sequence, addr } if is_virtual(addr) => {
                tracing::debug!(sequence, %addr, "virtual address refused as a candidate");
            }
            ControlMessage::AddAddress { sequence, addr } => {
                let mut reg = self.lock();
                if let Some(entry) = reg.peers.get_mut(&peer) {
                    if entry.candidates.len() < MAX_CANDIDATES
                        || entry.candidates.contains_key(&sequence)
                    {
                        entry.candidates.insert(sequence, addr);
                    }
                }
            }
            ControlMessage::RemoveAddress { sequence } => {
                if let Some(entry) = self.lock().peers.get_mut(&peer) {
                    entry.candidates.remove(&sequence);
                }
            }
            ControlMessage::Forward {
                peer: target,
                inner,
            } => {
                let target = PeerId::from_bytes(target).ok();
                let reply = match target {
                    Some(target) => self.forward(peer, target, *inner),
                    None => {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        Err(UnavailableReason::NotConnected)
                    }
                };
                if let (Err(reason), Some(target)) = (reply, target) {
                    let _ = conn.control().try_send(ControlMessage::PeerUnavailable {
                        peer: *target.as_bytes(),
                        reason,
                    });
                }
            }
            ControlMessage::RelayRequest { peer: target } => {
                let Ok(target) = PeerId::from_bytes(target) else {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if let Err(reason) = self.relay(peer, target) {
                    let _ = conn.control().try_send(ControlMessage::PeerUnavailable {
                        peer: *target.as_bytes(),
                        reason,
                    });
                }
            }
            other => {
                tracing::debug!(?other, "ignoring a message a bootstrap does not handle");
            }
        }
    }

    /// Takes one coordination token of `peer`.
    fn admit(&self, reg: &mut Registry, peer: PeerId) -> Result<(), UnavailableReason> {
        let ok = reg
            .peers
            .get_mut(&peer)
            .is_some_and(|e| e.coordination.try_take(1.0, Instant::now()));
        if ok {
            self.stats.admitted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            Err(UnavailableReason::RateLimited)
        }
    }

    fn forward(
        &self,
        from: PeerId,
        target: PeerId,
        inner: ControlMessage,
    ) -> Result<(), UnavailableReason> {
        let allowed = match &inner {
            // A virtual address is no punch candidate.
            ControlMessage::AddAddress { addr, .. } | ControlMessage::PunchMeNow { addr, .. } => {
                !is_virtual(*addr)
            }
            ControlMessage::RemoveAddress { .. } => true,
            _ => false,
        };
        if !allowed {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(UnavailableReason::NotAllowed);
        }
        let mut reg = self.lock();
        self.admit(&mut reg, from)?;
        let Some(entry) = reg.peers.get(&target) else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(UnavailableReason::NotConnected);
        };
        let msg = ControlMessage::Forward {
            peer: *from.as_bytes(),
            inner: Box::new(inner),
        };
        entry.conn.control().try_send(msg).map_err(|_| {
            self.stats.target_queue_full.fetch_add(1, Ordering::Relaxed);
            UnavailableReason::RateLimited
        })?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn relay(&self, from: PeerId, target: PeerId) -> Result<(), UnavailableReason> {
        if !self.settings.relay {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(UnavailableReason::RelayDisabled);
        }
        let mut reg = self.lock();
        self.admit(&mut reg, from)?;
        let (Some(e_from), Some(e_target)) = (reg.peers.get(&from), reg.peers.get(&target)) else {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(UnavailableReason::NotConnected);
        };
        let (addr_from, addr_target) = (e_from.observed, e_target.observed);
        let key = pair(from, target);
        let alloc = match reg.relays.get(&key) {
            Some(existing) => *existing,
            None => {
                let mut rng = rand::rngs::OsRng;
                let channel_a = rng.next_u32();
                let channel_b = loop {
                    let c = rng.next_u32();
                    if c != channel_a {
                        break c;
                    }
                };
                let (addr_a, addr_b) = if key.0 == from {
                    (addr_from, addr_target)
                } else {
                    (addr_target, addr_from)
                };
                let alloc = Allocation {
                    a: key.0,
                    b: key.1,
                    channel_a,
                    channel_b,
                    addr_a,
                    addr_b,
                };
                self.install(&alloc);
                reg.relays.insert(key, alloc);
                self.stats.relays_granted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(a = %alloc.a.short(), b = %alloc.b.short(), "relay allocated");
                alloc
            }
        };
        for (to, other, channel) in [
            (alloc.a, alloc.b, alloc.channel_a),
            (alloc.b, alloc.a, alloc.channel_b),
        ] {
            if let Some(entry) = reg.peers.get(&to) {
                let _ = entry.conn.control().try_send(ControlMessage::RelayGrant {
                    peer: *other.as_bytes(),
                    channel,
                });
            }
        }
        Ok(())
    }

    fn install(&self, alloc: &Allocation) {
        let limit = RelayLimit {
            bytes_per_sec: self.settings.limits.relay_bytes_per_sec,
            burst_bytes: self.settings.limits.relay_burst_bytes,
        };
        let a = RelayRoute {
            server: alloc.addr_a,
            channel: alloc.channel_a,
        };
        let b = RelayRoute {
            server: alloc.addr_b,
            channel: alloc.channel_b,
        };
        self.node.socket().set_relay_forward(a, b, limit);
        self.node.socket().set_relay_forward(b, a, limit);
    }

    fn uninstall(&self, alloc: &Allocation) {
        let socket = self.node.socket();
        socket.remove_relay_forward(RelayRoute {
            server: alloc.addr_a,
            channel: alloc.channel_a,
        });
        socket.remove_relay_forward(RelayRoute {
            server: alloc.addr_b,
            channel: alloc.channel_b,
        });
    }

    /// A peer's validated address changed (migration): move its entry and its
    /// relay forwarding to the new address.
    fn address_changed(&self, peer: PeerId, addr: SocketAddr) {
        let mut reg = self.lock();
        if let Some(entry) = reg.peers.get_mut(&peer) {
            entry.observed = addr;
        }
        for alloc in reg
            .relays
            .values_mut()
            .filter(|a| a.a == peer || a.b == peer)
        {
            self.uninstall(alloc);
            if alloc.a == peer {
                alloc.addr_a = addr;
            } else {
                alloc.addr_b = addr;
            }
            self.install(alloc);
        }
    }

    fn disconnected(&self, peer: PeerId, conn: &PeerConnection) {
        let mut reg = self.lock();
        let current = reg
            .peers
            .get(&peer)
            .is_some_and(|e| e.conn.quinn().stable_id() == conn.quinn().stable_id());
        if !current {
            return;
        }
        reg.peers.remove(&peer);
        self.stats.peers.fetch_sub(1, Ordering::Relaxed);
        let gone: Vec<_> = reg
            .relays
            .iter()
            .filter(|(_, a)| a.a == peer || a.b == peer)
            .map(|(k, a)| (*k, *a))
            .collect();
        for (key, alloc) in gone {
            reg.relays.remove(&key);
            self.uninstall(&alloc);
            let (other, channel) = if alloc.a == peer {
                (alloc.b, alloc.channel_b)
            } else {
                (alloc.a, alloc.channel_a)
            };
            if let Some(entry) = reg.peers.get(&other) {
                let _ = entry
                    .conn
                    .control()
                    .try_send(ControlMessage::RelayClose { channel });
            }
        }
        tracing::info!("peer disconnected");
    }
}
