//! The bootstrap node: a public node that peers keep a QUIC connection to.
//!
//! For each connected peer it:
//! - reports the address it observes (`OBSERVED_ADDRESS`, again whenever the
//!   peer proves a new one), and where its observe socket is (`OBSERVE_AT`):
//!   a second UDP port that answers `OBSERVE_REQUEST` with the address it
//!   sees, so that the peer can tell its NAT's mapping behaviour
//!   ([`observe`]);
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
//! Files: this one starts the bootstrap and holds its state and counters;
//! `session.rs` serves one connected peer; `relay.rs` makes and removes
//! relays; [`registry`] is the sans-IO bookkeeping of peers, candidates,
//! requests and allocations; `settings.rs` and [`config`] what it runs
//! with; [`status`] and `metrics.rs` what it reports.
//!
//! Peers whose network drops UDP reach the bootstrap over TCP
//! ([`crate::socket::tcp`]; by default on the same address and port as UDP).
//! Such a peer's QUIC connection runs from a virtual stream-path address: it
//! is never reported as `OBSERVED_ADDRESS` nor accepted as a candidate, so
//! the peer gets no direct path and is reached through the relay only.

pub mod config;
pub mod directory;
mod metrics;
pub mod observe;
pub mod registry;
mod relay;
mod session;
mod settings;
pub mod status;

pub use settings::{BootstrapSettings, Limits, ObserveListen, TcpListen};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use self::registry::{Held, Refusal, Registry};
use self::session::Session;
use crate::identity::PeerId;
use crate::node::{IncomingLimits, Node, NodeConfig, NodeError};
use crate::proto::UnavailableReason;
use crate::socket::{bind_tcp, StreamLimits};
use crate::tls::{AcceptPolicy, Allowlist};

/// How often expired relay requests and challenges are dropped.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(1);
/// Peers gone that make shrinking the tables and handing memory back to
/// the OS worth it.
const TRIM_AFTER_GONE: u64 = 64;
/// Ticks without a departure after which any departures since the last
/// trim are trimmed too.
const TRIM_AFTER_QUIET_TICKS: u32 = 3;

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
    /// Certificates registered (`MEMBER_REGISTER` accepted).
    pub members_registered: AtomicU64,
    /// Certificates refused at registration (wrong key, bad signature,
    /// expired or not yet valid).
    pub members_refused: AtomicU64,
    /// Lookups answered with a certificate.
    pub lookups_found: AtomicU64,
    /// Lookups answered `NO_MEMBER` (no such member of the asker's network,
    /// or the asker is no member).
    pub lookups_not_found: AtomicU64,
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
    observe: Option<Arc<observe::ObserveServer>>,
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
        // Nor data plane frames: a bootstrap relays them, it is no end.
        config.transport.data_plane = false;
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
        let observe = match settings.observe.bind_addr(settings.listen) {
            Some(addr) => {
                let bound = observe::spawn(addr, &limits).or_else(|error| {
                    // The default port is only a convention (peers learn
                    // the real one from OBSERVE_AT): when it is taken, any
                    // free port will do. A configured port must be that one.
                    if settings.observe != ObserveListen::NextPort || addr.port() == 0 {
                        return Err(error);
                    }
                    let any = SocketAddr::new(addr.ip(), 0);
                    let server = observe::spawn(any, &limits)?;
                    tracing::warn!(%addr, %error, local = %server.local, "observe port taken; using another (set observe_port to choose)");
                    Ok(server)
                });
                Some(Arc::new(
                    bound.map_err(|source| NodeError::ObserveBind { addr, source })?,
                ))
            }
            None => None,
        };
        let raw = node.socket().take_raw_receiver();
        let this = Self {
            node,
            tcp,
            observe,
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

    /// The bound address of the observe socket, if it is on.
    pub fn observe_local_addr(&self) -> Option<SocketAddr> {
        self.observe.as_ref().map(|o| o.local)
    }

    /// The observe socket's counters (answered, rate limited, malformed,
    /// send failed); `None` when it is off.
    pub fn observe_stats(&self) -> Option<&observe::ObserveStats> {
        self.observe.as_ref().map(|o| &*o.stats)
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
        if let Some(observe) = &self.observe {
            observe.task.abort();
        }
        self.node.close().await;
        self.node.socket().close_all_streams();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry<Session>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
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
}
