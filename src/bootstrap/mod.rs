//! The bootstrap node: a public node that peers keep a QUIC connection to.
//!
//! For each connected peer it:
//! - reports the address it observes (`OBSERVED_ADDRESS`, again whenever the
//!   peer proves a new one);
//! - keeps the peer's announced candidates (`ADD_ADDRESS`/`REMOVE_ADDRESS`);
//! - forwards coordination messages between two peers (`FORWARD` carrying
//!   `ADD_ADDRESS`, `REMOVE_ADDRESS` or `PUNCH_ME_NOW`), within a per-key
//!   rate limit;
//! - relays traffic for a pair in which **both** keys asked for each other
//!   (`RELAY_REQUEST` both ways → `RELAY_GRANT` to both): forwarding entries
//!   in the shared socket move `RELAY_DATA` frames between the two peers'
//!   proven addresses, one out per one in, within a per-direction bandwidth
//!   limit and a byte budget per sending key. The relay never sees the
//!   peers' key material: their QUIC is end to end.
//!
//! What any key can make it hold or send is bounded: connections per source
//! (IPv4 address or IPv6 /64) and in total, handshakes under way, relay
//! requests and allocations per key and in total, TCP streams per source and
//! in total ([`Limits`]; `docs/security.md` has the threat model). Every
//! refusal is counted by reason ([`BootstrapStats`], metrics).
//!
//! **Addresses are proven before use.** QUIC moves a connection to the
//! source of the newest packet before validating it, so a client could point
//! its relay traffic at a victim by spoofing a few packets. The bootstrap
//! therefore uses a peer's handshake address, and follows it elsewhere only
//! after the peer answered an `ADDRESS_CHALLENGE` sent there
//! ([`registry`]).
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
pub mod registry;
pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore as _;

use self::registry::{Allocation, Held, Moved, Refusal, Registry, RelayOutcome};
use crate::identity::{Identity, PeerId};
use crate::nat::canonical;
use crate::node::{IncomingLimits, Node, NodeConfig, NodeError, PeerConnection};
use crate::proto::{ControlMessage, UnavailableReason};
use crate::socket::{
    bind_tcp, is_stream_addr, is_virtual, ProvenGuard, RelayBudget, RelayLimit, RelayRoute,
    StreamLimits, Transport,
};
use crate::tls::{AcceptPolicy, Allowlist};

/// How often a session checks whether QUIC moved the peer's connection.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(250);
/// How often expired relay requests and challenges are dropped.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(1);
/// Peers gone that make shrinking the tables and handing memory back to
/// the OS worth it.
const TRIM_AFTER_GONE: u64 = 64;
/// Ticks without a departure after which any departures since the last
/// trim are trimmed too.
const TRIM_AFTER_QUIET_TICKS: u32 = 3;

/// Limits of a bootstrap node. The defaults suit a small VPS (1 vCPU, 1 GiB);
/// `docs/security.md` explains each and how to tune them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Coordination requests (FORWARD, RELAY_REQUEST) per second per key.
    pub coordination_per_sec: f64,
    /// Burst of coordination requests per key.
    pub coordination_burst: f64,
    /// Relay bandwidth per direction of a pair, bytes per second.
    pub relay_bytes_per_sec: f64,
    /// Relay burst per direction, bytes.
    pub relay_burst_bytes: f64,
    /// Relay bandwidth of one sending key over all its relays, bytes per
    /// second.
    pub relay_key_bytes_per_sec: f64,
    /// Relay burst of one sending key over all its relays, bytes.
    pub relay_key_burst_bytes: f64,
    /// Relay allocations one key may be in, and relay requests it may have
    /// waiting for the other key's consent (each).
    pub relay_max_per_key: usize,
    /// Relay allocations in total, and relay requests waiting in total
    /// (each).
    pub relay_max_total: usize,
    /// New connections per second per source (an IPv4 address or an IPv6
    /// /64): QUIC handshakes, and separately new TCP streams. The burst is
    /// three times this.
    pub connections_per_sec_per_ip: f64,
    /// Connections held at once from one source.
    pub max_connections_per_ip: usize,
    /// Connected peers (connections held) in total.
    pub max_peers: usize,
    /// QUIC handshakes under way at once.
    pub max_pending_handshakes: usize,
    /// TCP streams open at once in total.
    pub tcp_max_streams: usize,
    /// TCP streams open at once from one source.
    pub tcp_max_streams_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            coordination_per_sec: 20.0,
            coordination_burst: 60.0,
            relay_bytes_per_sec: 25_000_000.0,
            relay_burst_bytes: 2_000_000.0,
            relay_key_bytes_per_sec: 25_000_000.0,
            relay_key_burst_bytes: 4_000_000.0,
            relay_max_per_key: 1024,
            relay_max_total: 16_384,
            connections_per_sec_per_ip: 20.0,
            max_connections_per_ip: 32,
            max_peers: 4096,
            max_pending_handshakes: 256,
            tcp_max_streams: 4096,
            tcp_max_streams_per_ip: 16,
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

/// What a bootstrap server needs to start ([`config::BootstrapConfig`]
/// reads it from a file).
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
    /// Limits.
    pub limits: Limits,
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
    /// Relay requests held until the other key asks too.
    pub relay_requests_held: AtomicU64,
    /// Relay requests refused by the per-key cap.
    pub relay_refused_per_key: AtomicU64,
    /// Relay requests refused by the total cap.
    pub relay_refused_total: AtomicU64,
    /// Allocations removed at the total cap to make room for a pair with
    /// fewer relays.
    pub relays_evicted: AtomicU64,
    /// Messages refused for other reasons (unknown or invalid target key,
    /// target not connected, not forwardable, relay disabled).
    pub refused: AtomicU64,
    /// Admitted messages dropped because the target's control queue was
    /// full (it reads slower than others write to it).
    pub target_queue_full: AtomicU64,
    /// `ADDRESS_PROOF`s that answered a challenge under way: the peer
    /// receives at the challenged address.
    pub proofs_accepted: AtomicU64,
    /// `ADDRESS_PROOF`s that answered no challenge under way (unknown or
    /// expired token).
    pub proofs_unmatched: AtomicU64,
    /// Moves of a peer's connection followed (to an address it proved).
    pub migrations_followed: AtomicU64,
    /// Moves not followed because QUIC moved the connection to a virtual
    /// address (a peer changing transport reconnects instead).
    pub migrations_ignored: AtomicU64,
    /// Raw frames other than relay data reaching the bootstrap, dropped.
    pub raw_unexpected: AtomicU64,
}

/// A connected peer, as the driver holds it.
#[derive(Clone, Debug)]
struct Session {
    conn: PeerConnection,
    /// The relay byte budget of this key as a sender.
    budget: Arc<RelayBudget>,
    /// Keeps the address the peer proved by a challenge open to QUIC (its
    /// handshake address is held by the node while the connection lives).
    proven: Arc<Mutex<Option<ProvenGuard>>>,
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
    registry: Arc<Mutex<Registry<Session>>>,
    stats: Arc<BootstrapStats>,
    /// `OBSERVED_ADDRESS` sequence numbers (one counter for all peers: they
    /// only need to grow per connection).
    sequence: Arc<AtomicU64>,
    /// Peers gone since memory was last handed back to the OS.
    gone_since_trim: Arc<AtomicU64>,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("node", &self.node)
            .finish_non_exhaustive()
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
        let limits = settings.limits;
        let mut config = NodeConfig::new(settings.identity.clone(), settings.listen, accept);
        config.transport.datagram_receive_buffer = None;
        config.send_only_to_proven = true;
        config.incoming = IncomingLimits {
            per_source_rate: Some((
                limits.connections_per_sec_per_ip,
                limits.connections_per_sec_per_ip * 3.0,
            )),
            max_per_source: limits.max_connections_per_ip,
            max_total: limits.max_peers,
            max_pending: limits.max_pending_handshakes,
        };
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
                    per_ip_per_sec: limits.connections_per_sec_per_ip,
                    per_ip_burst: limits.connections_per_sec_per_ip * 3.0,
                    max_streams: limits.tcp_max_streams,
                    per_ip_max_streams: limits.tcp_max_streams_per_ip,
                    // A stream is claimed (below, in `serve`) once a
                    // connection over it is authenticated.
                    ..StreamLimits::default()
                };
                let task = node.socket().serve_tcp(listener, limits).abort_handle();
                tracing::debug!(%local, "TCP listener up");
                Some(Arc::new(TcpServer { local, task }))
            }
            None => None,
        };
        let raw = node.socket().take_raw_receiver();
        let this = Self {
            node,
            tcp,
            registry: Arc::new(Mutex::new(Registry::new(limits))),
            settings: Arc::new(settings),
            stats: Arc::default(),
            sequence: Arc::default(),
            gone_since_trim: Arc::default(),
        };
        let server = this.clone();
        tokio::spawn(async move {
            while let Some(conn) = server.node.accept().await {
                let session = server.clone();
                let span = tracing::info_span!("peer", id = %conn.peer_id().short());
                tokio::spawn(tracing::Instrument::instrument(session.serve(conn), span));
            }
        });
        if let Some(mut raw) = raw {
            // Relay data is forwarded inside the socket; any other raw frame
            // is nothing a bootstrap answers.
            let stats = this.stats.clone();
            tokio::spawn(async move {
                while let Some(packet) = raw.recv().await {
                    stats.raw_unexpected.fetch_add(1, Ordering::Relaxed);
                    tracing::trace!(from = %packet.from, "unexpected raw frame dropped");
                }
            });
        }
        let (registry, socket, gone) = (
            Arc::downgrade(&this.registry),
            Arc::downgrade(this.node.socket()),
            this.gone_since_trim.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRE_INTERVAL);
            // Departures counted at the last tick, and ticks since one.
            let (mut seen, mut quiet) = (0, 0u32);
            loop {
                tick.tick().await;
                let (Some(registry), Some(socket)) = (registry.upgrade(), socket.upgrade()) else {
                    return;
                };
                let mut reg = registry.lock().unwrap_or_else(PoisonError::into_inner);
                reg.expire(Instant::now());
                socket.expire_challenges();
                // After many peers left (a flood ended), and once more when
                // departures have stopped (connections still closing at the
                // first trim free their memory later): shrink the tables and
                // hand freed memory back to the OS, off the runtime.
                let left = gone.load(Ordering::Relaxed);
                quiet = if left == seen { quiet + 1 } else { 0 };
                seen = left;
                if left >= TRIM_AFTER_GONE || (left > 0 && quiet >= TRIM_AFTER_QUIET_TICKS) {
                    gone.store(0, Ordering::Relaxed);
                    seen = 0;
                    reg.shrink();
                    drop(reg);
                    socket.shrink_tables();
                    tokio::task::spawn_blocking(antq_platform::release_free_memory);
                }
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

    /// What the bootstrap holds now (peers, relays, requests waiting,
    /// challenges under way).
    pub fn held(&self) -> Held {
        self.lock().held()
    }

    /// The limits it runs with.
    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// The underlying node (socket counters, relay statistics).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Keys of the connected peers.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.lock().peers().map(|(id, _, _)| id).collect()
    }

    /// The candidates a peer announced.
    pub fn candidates_of(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.lock().candidates_of(peer)
    }

    /// The address the bootstrap uses for a peer: proven by its handshake
    /// or by a challenge, never just QUIC's latest source address.
    pub fn address_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.lock().address_of(peer)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        if let Some(tcp) = &self.tcp {
            tcp.task.abort();
        }
        self.node.close().await;
        self.node.socket().close_all_streams();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry<Session>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn serve(self, conn: PeerConnection) {
        let peer = conn.peer_id();
        let origin = conn.origin();
        let session = Session {
            conn: conn.clone(),
            budget: Arc::new(RelayBudget::new(RelayLimit {
                bytes_per_sec: self.settings.limits.relay_key_bytes_per_sec,
                burst_bytes: self.settings.limits.relay_key_burst_bytes,
            })),
            proven: Arc::default(),
        };
        let (previous, moved) = self.lock().connect(peer, session, origin, Instant::now());
        match previous {
            Some(old) => old.conn.close("replaced by a new connection"),
            None => {
                self.stats.peers.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The peer reconnected from elsewhere, maybe over another transport
        // (TCP back to UDP): its relays follow it to the new address.
        if let Some(moved) = moved {
            self.apply_move(&moved);
        }
        if is_stream_addr(origin) {
            // Authenticated: the stream may stay (and its buffers grow).
            self.node.socket().claim_stream(origin);
        }
        let transport = Transport::of(origin);
        tracing::info!(%origin, %transport, "peer connected");
        if let Some(tcp_peer) = self.node.socket().stream_peer(origin) {
            tracing::info!(%tcp_peer, "peer is on TCP: relay only, no observed address");
        }
        self.send_observed(&conn, origin);

        let mut tick = tokio::time::interval(OBSERVE_INTERVAL);
        let mut ignored: Option<SocketAddr> = None;
        loop {
            tokio::select! {
                msg = conn.control().recv() => match msg {
                    Some(msg) => self.handle(peer, &conn, msg),
                    None => break,
                },
                _ = tick.tick() => {
                    self.check_address(peer, &conn, &mut ignored);
                    if is_stream_addr(origin) && !self.node.socket().has_stream(origin) {
                        conn.close("TCP stream closed");
                        break;
                    }
                }
                _ = conn.closed() => break,
            }
        }
        self.disconnected(peer, &conn);
        if is_stream_addr(origin) {
            self.node.socket().close_stream(origin);
        }
    }

    /// QUIC may have moved the connection (a NAT rebinding, or a spoofed
    /// packet). The move is followed once the peer proved the new address:
    /// the socket holds QUIC's packets to it and challenges it
    /// ([`crate::socket::proof`]), the peer answers with `ADDRESS_PROOF`
    /// ([`Self::address_proof`]).
    fn check_address(&self, peer: PeerId, conn: &PeerConnection, ignored: &mut Option<SocketAddr>) {
        let now_at = canonical(conn.remote_address());
        if is_virtual(now_at) {
            if self.address_of(&peer) != Some(now_at) && *ignored != Some(now_at) {
                *ignored = Some(now_at);
                self.stats
                    .migrations_ignored
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%now_at, "move to a virtual address not followed");
            }
            return;
        }
        let moved = self.lock().follow(peer, now_at);
        if let Some(moved) = moved {
            self.followed(&moved, conn);
        }
    }

    /// The peer sent back the token of an `ADDRESS_CHALLENGE`: it receives
    /// at the address the token went to.
    fn address_proof(&self, peer: PeerId, conn: &PeerConnection, token: [u8; 16]) {
        let socket = self.node.socket();
        let Some(addr) = socket.challenged_address(&token) else {
            self.stats.proofs_unmatched.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("address proof that answers no challenge dropped");
            return;
        };
        self.stats.proofs_accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%addr, "peer proved an address");
        // QUIC's held packets to it leave now (its own path validation
        // completes), and the address stays open while the peer is on it.
        let guard = socket.prove(addr);
        let moved = {
            let mut reg = self.lock();
            reg.proved(peer, addr);
            if let Some(session) = reg.handle(&peer) {
                *session
                    .proven
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(guard);
            }
            if canonical(conn.remote_address()) == addr {
                reg.follow(peer, addr)
            } else {
                None
            }
        };
        if let Some(moved) = moved {
            self.followed(&moved, conn);
        }
    }

    /// The peer's proven address changed: relays follow, and it is told.
    fn followed(&self, moved: &Moved, conn: &PeerConnection) {
        self.stats
            .migrations_followed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(from = %moved.from, to = %moved.to, "peer address changed (proven)");
        self.apply_move(moved);
        self.send_observed(conn, moved.to);
    }

    /// Tells the peer its observed address, unless it is a virtual one (a
    /// TCP stream path), which means nothing to anyone else.
    fn send_observed(&self, conn: &PeerConnection, addr: SocketAddr) {
        if is_virtual(addr) {
            return;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let _ = conn
            .control()
            .try_send(ControlMessage::ObservedAddress { sequence, addr });
    }

    fn handle(&self, peer: PeerId, conn: &PeerConnection, msg: ControlMessage) {
        match msg {
            ControlMessage::AddAddress { sequence, addr } if is_virtual(addr) => {
                tracing::debug!(sequence, %addr, "virtual address refused as a candidate");
            }
            ControlMessage::AddAddress { sequence, addr } => {
                self.lock().add_candidate(peer, sequence, addr);
            }
            ControlMessage::RemoveAddress { sequence } => {
                self.lock().remove_candidate(peer, sequence);
            }
            ControlMessage::AddressProof { token } => self.address_proof(peer, conn, token),
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

    /// Counts a refusal and gives the reason to send.
    fn refuse(&self, refusal: Refusal) -> UnavailableReason {
        let counter = match refusal {
            Refusal::CoordinationRate => &self.stats.rate_limited,
            Refusal::NotConnected => &self.stats.refused,
            Refusal::RelayPerKeyCap => &self.stats.relay_refused_per_key,
            Refusal::RelayTotalCap => &self.stats.relay_refused_total,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        refusal.reason()
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
        reg.admit(from, Instant::now())
            .map_err(|r| self.refuse(r))?;
        self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        let Some(target) = reg.handle(&target) else {
            return Err(self.refuse(Refusal::NotConnected));
        };
        let msg = ControlMessage::Forward {
            peer: *from.as_bytes(),
            inner: Box::new(inner),
        };
        target.conn.control().try_send(msg).map_err(|_| {
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
        let now = Instant::now();
        let mut rng = rand::rngs::OsRng;
        let channels = [rng.next_u32(), rng.next_u32()];
        let mut reg = self.lock();
        if !reg.answers_waiting(from, target, now) {
            reg.admit(from, now).map_err(|r| self.refuse(r))?;
            self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = reg.relay_request(from, target, now, channels);
        // Room made at the total cap: that allocation is gone for its pair.
        while let Some(gone) = reg.poll_evicted() {
            self.stats.relays_evicted.fetch_add(1, Ordering::Relaxed);
            self.close_allocation(&reg, &gone);
        }
        let alloc = match outcome {
            Err(refusal) => return Err(self.refuse(refusal)),
            Ok(RelayOutcome::StillWaiting) => return Ok(()),
            Ok(RelayOutcome::Waiting) => {
                // Tell the target we asked: if it wants the relay too, it
                // asks now rather than at its next retry.
                self.stats
                    .relay_requests_held
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(target) = reg.handle(&target) {
                    let _ = target
                        .conn
                        .control()
                        .try_send(ControlMessage::RelayRequest {
                            peer: *from.as_bytes(),
                        });
                }
                return Ok(());
            }
            Ok(RelayOutcome::Created(alloc)) => {
                self.install(&reg, &alloc);
                self.stats.relays_granted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(a = %alloc.a.short(), b = %alloc.b.short(), "relay allocated");
                alloc
            }
            Ok(RelayOutcome::Exists(alloc)) => alloc,
        };
        for (to, other, channel) in [
            (alloc.a, alloc.b, alloc.channel_a),
            (alloc.b, alloc.a, alloc.channel_b),
        ] {
            if let Some(session) = reg.handle(&to) {
                let _ = session.conn.control().try_send(ControlMessage::RelayGrant {
                    peer: *other.as_bytes(),
                    channel,
                });
            }
        }
        Ok(())
    }

    /// Installs both directions of `alloc`, each within its sender's
    /// budget.
    fn install(&self, reg: &Registry<Session>, alloc: &Allocation) {
        let limit = RelayLimit {
            bytes_per_sec: self.settings.limits.relay_bytes_per_sec,
            burst_bytes: self.settings.limits.relay_burst_bytes,
        };
        let (Some(sa), Some(sb)) = (reg.handle(&alloc.a), reg.handle(&alloc.b)) else {
            return;
        };
        let a = RelayRoute {
            server: alloc.addr_a,
            channel: alloc.channel_a,
        };
        let b = RelayRoute {
            server: alloc.addr_b,
            channel: alloc.channel_b,
        };
        let socket = self.node.socket();
        socket.set_relay_forward(a, b, limit, sa.budget.clone());
        socket.set_relay_forward(b, a, limit, sb.budget.clone());
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

    /// Removes an allocation's forwarding and tells the ends still
    /// connected (`RELAY_CLOSE` with each one's channel).
    fn close_allocation(&self, reg: &Registry<Session>, alloc: &Allocation) {
        self.uninstall(alloc);
        for (end, channel) in [(alloc.a, alloc.channel_a), (alloc.b, alloc.channel_b)] {
            if let Some(session) = reg.handle(&end) {
                let _ = session
                    .conn
                    .control()
                    .try_send(ControlMessage::RelayClose { channel });
            }
        }
    }

    /// A peer proved a new address: its relay forwarding moves there.
    fn apply_move(&self, moved: &Moved) {
        let reg = self.lock();
        for (before, after) in &moved.relays {
            self.uninstall(before);
            self.install(&reg, after);
        }
    }

    fn disconnected(&self, peer: PeerId, conn: &PeerConnection) {
        let id = conn.quinn().stable_id();
        let mut reg = self.lock();
        let Some(left) = reg.disconnect(peer, |s| s.conn.quinn().stable_id() == id) else {
            return;
        };
        self.stats.peers.fetch_sub(1, Ordering::Relaxed);
        self.gone_since_trim.fetch_add(1, Ordering::Relaxed);
        for alloc in &left.relays {
            self.close_allocation(&reg, alloc);
        }
        tracing::info!("peer disconnected");
    }
}
