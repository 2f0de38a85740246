//! The high-level peer-to-peer API: one QUIC endpoint that is client and
//! server on the same UDP port, authenticated by raw public keys.
//!
//! [`Node::connect`] dials a peer by key at one or more addresses (attempts
//! are staggered, the first to succeed wins); [`Node::accept`] yields
//! connections from peers the [`AcceptPolicy`] allows. A [`PeerConnection`]
//! carries unreliable datagrams (RFC 9221) and streams.
//!
//! In TLS 1.3 the client finishes its handshake before the server has checked
//! the client's key, so a refused client would otherwise see a connection that
//! dies a moment later. The accepting side therefore opens the control
//! channel ([`control`]) with a `HELLO` once it has accepted the key, and
//! `connect` returns only after reading it: a refusal is reported as
//! [`ConnectError::Refused`].

pub mod control;
pub(crate) mod metrics;
pub mod overlay;
mod punch_driver;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use self::control::{ControlChannel, ControlError, FrameReader};
use crate::identity::{Identity, PeerId};
use crate::nat::canonical;
use crate::ratelimit::{source_prefix, Concurrency, ConcurrencyError, KeyedBuckets};
use crate::socket::{self, AntqSocket};
use crate::tls::{self, AcceptPolicy, TlsError};

/// Delay between starting connection attempts to successive addresses.
const ATTEMPT_STAGGER: Duration = Duration::from_millis(150);

/// Transport settings shared by every connection of a node.
#[derive(Clone, Debug)]
pub struct TransportSettings {
    /// Interval of QUIC keep-alive packets; keeps NAT mappings open.
    pub keep_alive: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long `connect` waits for a handshake and welcome.
    pub connect_timeout: Duration,
    /// Initial UDP payload size; MTU discovery probes upwards from here.
    /// Must be at least 1200 (the QUIC minimum). It is also the floor:
    /// quinn's black-hole detection never goes below it, since the tunnel
    /// promises its devices datagrams of this size (a lossy path would
    /// otherwise shrink them below the TUN MTU for minutes).
    pub initial_mtu: u16,
    /// Unidirectional streams a peer may have open at once. The protocol
    /// opens one in each direction, the control channel ([`control`]).
    /// quinn sets up every stream a peer may open when the connection
    /// starts (its default of 100 costs about 8 KiB per connection), and
    /// buffers data for streams nobody reads up to the stream window.
    pub max_uni_streams: u32,
    /// Bidirectional streams a peer may have open at once. The overlay and
    /// the bootstrap open none; [`PeerConnection::open_bi`] is there for
    /// other users of [`Node`].
    pub max_bidi_streams: u32,
    /// Bytes of QUIC datagrams from a peer that may wait unread. `None`:
    /// peers may not send datagrams at all (the bootstrap, which relays raw
    /// frames outside QUIC and reads no datagram; a buffer there would only
    /// let every client pin memory).
    pub datagram_receive_buffer: Option<usize>,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            initial_mtu: 1360,
            max_uni_streams: 4,
            max_bidi_streams: 4,
            datagram_receive_buffer: Some(4 << 20),
        }
    }
}

/// Everything needed to start a [`Node`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's key pair.
    pub identity: Identity,
    /// UDP address to bind; `[::]:port` binds dual-stack.
    pub bind: SocketAddr,
    /// Which client keys may connect to this node.
    pub accept: AcceptPolicy,
    /// Transport settings.
    pub transport: TransportSettings,
    /// Limits on incoming connections (rate and number per source, total,
    /// handshakes under way).
    pub incoming: IncomingLimits,
    /// Validate a client's address with a QUIC Retry before answering its
    /// handshake (on by default). Without it, quinn answers an Initial from
    /// any (possibly spoofed) source with up to three times its size plus
    /// one datagram (its anti-amplification check lets the last datagram
    /// overshoot); with it, the only answer to an unvalidated address is a
    /// Retry smaller than the Initial, at the cost of one round trip per
    /// incoming handshake. Relay paths (virtual addresses) are exempt: the
    /// relay only forwards between addresses it validated itself. The
    /// per-IP limit counts validated addresses only, so spoofed Initials
    /// cannot use up another host's allowance.
    pub validate_addresses: bool,
    /// Send 1-RTT QUIC packets only to proven addresses: the validated
    /// source of each accepted handshake, the address of each connection we
    /// dialed, and what the owner proves with [`AntqSocket::prove`] (see
    /// [`crate::socket::ProvenAddrs`]). Off by default; a bootstrap turns it
    /// on so that a client spoofing its source address cannot make QUIC
    /// send anything to a victim.
    pub send_only_to_proven: bool,
}

impl NodeConfig {
    /// A config with default transport settings.
    pub fn new(identity: Identity, bind: SocketAddr, accept: AcceptPolicy) -> Self {
        Self {
            identity,
            bind,
            accept,
            transport: TransportSettings::default(),
            incoming: IncomingLimits::default(),
            validate_addresses: true,
            send_only_to_proven: false,
        }
    }
}

/// A bootstrap node to keep a link to: its key and UDP address (the
/// `bootstrap = ["KEY@ADDR:PORT"]` entries of a tunnel config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapAddr {
    /// The bootstrap's key.
    pub peer: PeerId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// Limits on incoming connections. A *source* is an IPv4 address or an
/// IPv6 /64 ([`crate::ratelimit::source_prefix`]); a TCP stream path counts
/// as its TCP peer's address. The defaults bound only the handshakes under
/// way: a peer node takes whatever its allowlist lets in, a bootstrap sets
/// all of them.
#[derive(Clone, Copy, Debug)]
pub struct IncomingLimits {
    /// New handshakes per second per source and their burst. Excess
    /// handshakes are ignored without an answer.
    pub per_source_rate: Option<(f64, f64)>,
    /// Incoming connections held at once (handshaking or established) from
    /// one source. Excess handshakes are refused (the client sees
    /// `ConnectionRefused`).
    pub max_per_source: usize,
    /// Incoming connections held at once in total. At the cap, a handshake
    /// from a source holding at least two fewer connections than the
    /// largest holder closes that holder's newest connection to make room;
    /// others are refused. So sources holding many cannot lock out sources
    /// holding few.
    pub max_total: usize,
    /// Handshakes under way at once (key checks not yet finished). Excess
    /// handshakes are ignored without an answer.
    pub max_pending: usize,
}

impl Default for IncomingLimits {
    fn default() -> Self {
        Self {
            per_source_rate: None,
            max_per_source: usize::MAX,
            max_total: usize::MAX,
            max_pending: 256,
        }
    }
}

/// Errors from starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address we tried.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The TCP listener (bootstrap) could not be bound.
    #[error(transparent)]
    Stream(#[from] socket::StreamError),
    /// A transport setting is out of range.
    #[error("invalid transport setting: {0}")]
    Transport(String),
    /// The QUIC endpoint could not be created.
    #[error("cannot create QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
}

/// Errors from [`Node::connect`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No address was given.
    #[error("no address to dial peer {peer}")]
    NoAddress {
        /// The peer we wanted.
        peer: PeerId,
    },
    /// The server presented a different key than the one we dialed.
    #[error("wrong key at {addr}: expected {expected}, presented {presented}")]
    WrongKey {
        /// The address dialed.
        addr: SocketAddr,
        /// The key we dialed.
        expected: PeerId,
        /// The key the server presented.
        presented: PeerId,
    },
    /// The peer refused our key (or failed the handshake on its side).
    #[error("peer {peer} at {addr} refused the connection: {reason}")]
    Refused {
        /// The peer we dialed.
        peer: PeerId,
        /// The address dialed.
        addr: SocketAddr,
        /// What the peer said.
        reason: String,
    },
    /// No attempt completed in time.
    #[error("connecting to peer {peer} timed out after {timeout:?}")]
    Timeout {
        /// The peer we dialed.
        peer: PeerId,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The connection failed for another reason.
    #[error("connecting to peer {peer} at {addr}: {source}")]
    Connection {
        /// The peer we dialed.
        peer: PeerId,
        /// The address dialed.
        addr: SocketAddr,
        /// The QUIC error.
        source: quinn::ConnectionError,
    },
    /// The address cannot be dialed from this endpoint.
    #[error("cannot dial {addr}: {source}")]
    Dial {
        /// The address.
        addr: SocketAddr,
        /// Why quinn refused it.
        source: quinn::ConnectError,
    },
    /// The peer completed the handshake but did not speak antq.
    #[error("peer {peer} at {addr} sent no valid welcome")]
    Protocol {
        /// The peer we dialed.
        peer: PeerId,
        /// The address dialed.
        addr: SocketAddr,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl ConnectError {
    /// Every value [`Self::kind`] returns.
    pub const KINDS: [&'static str; 8] = [
        "no_address",
        "wrong_key",
        "refused",
        "protocol",
        "connection",
        "dial",
        "tls",
        "timeout",
    ];

    /// A short name of the error's kind, e.g. `wrong_key` (a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoAddress { .. } => "no_address",
            Self::WrongKey { .. } => "wrong_key",
            Self::Refused { .. } => "refused",
            Self::Protocol { .. } => "protocol",
            Self::Connection { .. } => "connection",
            Self::Dial { .. } => "dial",
            Self::Tls(_) => "tls",
            Self::Timeout { .. } => "timeout",
        }
    }

    /// How much this error says about the peer: when every attempt fails,
    /// the most telling error is reported.
    fn weight(&self) -> u8 {
        match self {
            Self::WrongKey { .. } => 5,
            Self::Refused { .. } => 4,
            Self::Protocol { .. } => 3,
            Self::Connection { .. } | Self::Dial { .. } | Self::Tls(_) => 2,
            Self::Timeout { .. } => 1,
            Self::NoAddress { .. } => 0,
        }
    }
}

/// Counters of a node, for status and metrics.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Connections accepted (handshake and key check passed).
    pub accepted: AtomicU64,
    /// Incoming handshakes that failed (refused key, malformed, timeout).
    pub handshakes_failed: AtomicU64,
    /// Incoming handshakes ignored by the per-source rate limit.
    pub handshakes_limited: AtomicU64,
    /// Incoming handshakes refused because their source holds
    /// [`IncomingLimits::max_per_source`] connections.
    pub refused_per_source: AtomicU64,
    /// Incoming handshakes refused because [`IncomingLimits::max_total`]
    /// connections are held.
    pub refused_total: AtomicU64,
    /// Incoming handshakes ignored because [`IncomingLimits::max_pending`]
    /// handshakes were under way.
    pub refused_pending: AtomicU64,
    /// Connections closed at the total cap to make room for a source
    /// holding fewer (see [`IncomingLimits::max_total`]).
    pub evicted: AtomicU64,
    /// Retry packets sent to validate a client's address
    /// ([`NodeConfig::validate_addresses`]).
    pub retries: AtomicU64,
    /// Outgoing connections that failed, by error.
    pub connect_errors: ConnectErrorCounts,
}

/// Failed [`Node::connect`] calls, counted by [`ConnectError::kind`].
#[derive(Debug, Default)]
pub struct ConnectErrorCounts([AtomicU64; ConnectError::KINDS.len()]);

impl ConnectErrorCounts {
    /// Counts one failure.
    pub fn record(&self, error: &ConnectError) {
        if let Some(i) = ConnectError::KINDS.iter().position(|k| *k == error.kind()) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every kind with its count.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ConnectError::KINDS
            .iter()
            .zip(&self.0)
            .map(|(k, c)| (*k, c.load(Ordering::Relaxed)))
    }
}

/// A QUIC endpoint with a raw-public-key identity.
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<NodeInner>,
}

#[derive(Debug)]
struct NodeInner {
    identity: Identity,
    endpoint: quinn::Endpoint,
    socket: Arc<AntqSocket>,
    transport: Arc<quinn::TransportConfig>,
    settings: TransportSettings,
    accept: AcceptPolicy,
    incoming: Mutex<mpsc::Receiver<PeerConnection>>,
    stats: Arc<NodeStats>,
    punched: Arc<PunchedAddrs>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeInner {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl Node {
    /// Binds the UDP socket and starts the endpoint. Must run inside a tokio
    /// runtime.
    pub fn bind(config: NodeConfig) -> Result<Self, NodeError> {
        let std_socket = socket::bind_udp(config.bind).map_err(|source| NodeError::Bind {
            addr: config.bind,
            source,
        })?;
        let socket = AntqSocket::new(std_socket).map_err(NodeError::Endpoint)?;
        if config.send_only_to_proven {
            socket.guard_sends();
        }
        let transport = Arc::new(transport_config(&config.transport)?);

        let server_crypto = tls::server_config(&config.identity, config.accept.clone())?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());

        let mut endpoint_config =
            quinn::EndpointConfig::new(Arc::new(config.identity.stateless_reset_key()));

        // Our raw frames share the socket; they are told apart from QUIC by
        // the fixed bit, so it must never be greased.
        endpoint_config.grease_quic_bit(false);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server),
            socket.clone(),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(NodeError::Endpoint)?;

        let stats = Arc::new(NodeStats::default());
        let punched = Arc::new(PunchedAddrs::default());
        let (tx, rx) = mpsc::channel(64);
        let accept_task = tokio::spawn(accept_loop(
            endpoint.clone(),
            socket.clone(),
            tx,
            stats.clone(),
            config.incoming,
            config.validate_addresses.then(|| punched.clone()),
        ));
        Ok(Self {
            inner: Arc::new(NodeInner {
                identity: config.identity,
                endpoint,
                socket,
                transport,
                settings: config.transport,
                accept: config.accept,
                incoming: Mutex::new(rx),
                stats,
                punched,
                accept_task,
            }),
        })
    }

    /// Lets a handshake from `addr` skip address validation (the Retry round
    /// trip of [`NodeConfig::validate_addresses`]) until `until`.  For an
    /// address that has just answered a hole punch: the punch proved it
    /// reachable and owned by the peer, so a Retry would only delay the
    /// direct connection.
    pub fn trust_punched_address(&self, addr: SocketAddr, until: Instant) {
        self.inner.punched.insert(addr, until);
    }

    /// This node's key.
    pub fn peer_id(&self) -> PeerId {
        self.inner.identity.peer_id()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// The socket shared by QUIC, punch probes and relay paths.
    pub fn socket(&self) -> &Arc<AntqSocket> {
        &self.inner.socket
    }

    /// The node's counters.
    pub fn stats(&self) -> &NodeStats {
        &self.inner.stats
    }

    /// QUIC connections open on this endpoint: established, handshaking or
    /// draining, to peers and bootstraps alike.
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// Incoming handshakes refused because the client's key is not on the
    /// allowlist (0 for a node that accepts any key).
    pub fn keys_refused(&self) -> u64 {
        match &self.inner.accept {
            AcceptPolicy::Allowlist(list) => list.refused(),
            AcceptPolicy::AnyKey => 0,
        }
    }

    /// Tells every connection that the local network changed: each switches
    /// to a fresh connection ID and sends a PING at once, so the other ends
    /// learn our new address (a server-side peer or bootstrap migrates to it)
    /// and a dead path shows up within a round trip instead of at the next
    /// keep-alive. Implemented as quinn's rebind onto the same socket: our
    /// socket is bound to the wildcard address and keeps working across
    /// address changes, so nothing needs a new one.
    pub fn network_changed(&self) {
        if let Err(error) = self
            .inner
            .endpoint
            .rebind_abstract(self.inner.socket.clone())
        {
            tracing::debug!(%error, "rebind after a network change failed");
        }
    }

    /// Connects to `peer`, trying `addrs` in order with staggered starts;
    /// the first attempt that completes wins and the others are dropped.
    pub async fn connect(
        &self,
        peer: PeerId,
        addrs: &[SocketAddr],
    ) -> Result<PeerConnection, ConnectError> {
        if addrs.is_empty() {
            let error = ConnectError::NoAddress { peer };
            self.inner.stats.connect_errors.record(&error);
            return Err(error);
        }
        let timeout = self.inner.settings.connect_timeout;
        let span = tracing::info_span!("peer", id = %peer.short());
        let mut attempts = JoinSet::new();
        for (i, &addr) in addrs.iter().enumerate() {
            let node = self.clone();
            let delay = ATTEMPT_STAGGER * u32::try_from(i).unwrap_or(u32::MAX);
            attempts.spawn(
                async move {
                    tokio::time::sleep(delay).await;
                    node.connect_one(peer, addr).await
                }
                .instrument(span.clone()),
            );
        }
        let mut best: Option<ConnectError> = None;
        let deadline = tokio::time::sleep(timeout + ATTEMPT_STAGGER * addrs.len() as u32);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = attempts.join_next() => match joined {
                    Some(Ok(Ok(conn))) => return Ok(conn),
                    Some(Ok(Err(e))) => {
                        if best.as_ref().is_none_or(|b| e.weight() > b.weight()) {
                            best = Some(e);
                        }
                    }
                    Some(Err(join_error)) => {
                        tracing::warn!(%join_error, "connection attempt task failed");
                    }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        let error = best.unwrap_or(ConnectError::Timeout { peer, timeout });
        self.inner.stats.connect_errors.record(&error);
        Err(error)
    }

    async fn connect_one(
        &self,
        peer: PeerId,
        addr: SocketAddr,
    ) -> Result<PeerConnection, ConnectError> {
        let timeout = self.inner.settings.connect_timeout;
        let (crypto, presented) = tls::client_config(&self.inner.identity, peer)?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(self.inner.transport.clone());
        let connecting = self
            .inner
            .endpoint
            .connect_with(client, addr, tls::SERVER_NAME)
            .map_err(|source| ConnectError::Dial { addr, source })?;
        let classify = |source: quinn::ConnectionError| match presented.get() {
            Some(presented) if presented != peer => ConnectError::WrongKey {
                addr,
                expected: peer,
                presented,
            },
            _ => match &source {
                quinn::ConnectionError::ConnectionClosed(close) if is_crypto_code(close) => {
                    ConnectError::Refused {
                        peer,
                        addr,
                        reason: close.to_string(),
                    }
                }
                _ => ConnectError::Connection { peer, addr, source },
            },
        };
        let attempt = async {
            let conn = connecting.await.map_err(classify)?;
            let recv = conn.accept_uni().await.map_err(classify)?;
            let mut reader = FrameReader::new(recv);
            match reader.expect_hello().await {
                Ok(()) => {}
                Err(ControlError::Stream(_)) if conn.close_reason().is_some() => {
                    return Err(classify(
                        conn.close_reason()
                            .unwrap_or(quinn::ConnectionError::LocallyClosed),
                    ))
                }
                Err(_) => return Err(ConnectError::Protocol { peer, addr }),
            }
            let mut send = conn.open_uni().await.map_err(classify)?;
            control::send_hello(&mut send)
                .await
                .map_err(|_| ConnectError::Protocol { peer, addr })?;
            let control = Arc::new(ControlChannel::new(conn.clone(), send, reader));
            Ok(PeerConnection {
                conn,
                peer,
                origin: canonical(addr),
                control,
            })
        };
        let proven = self
            .inner
            .socket
            .guards_sends()
            .then(|| self.inner.socket.prove(addr));
        let conn = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| ConnectError::Timeout { peer, timeout })??;
        if let Some(proven) = proven {
            // The address we dialed stays proven while the connection lives.
            let closed = conn.conn.clone();
            tokio::spawn(async move {
                closed.closed().await;
                drop(proven);
            });
        }
        tracing::debug!(%addr, "connected");
        Ok(conn)
    }

    /// Waits for the next accepted connection. Returns `None` once the node
    /// is closed.
    pub async fn accept(&self) -> Option<PeerConnection> {
        self.inner.incoming.lock().await.recv().await
    }

    /// Closes every connection and waits (briefly) for the peers to be told.
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"node closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

/// Whether a peer's CONNECTION_CLOSE carries a TLS alert (crypto error codes
/// 0x100..=0x1ff, RFC 9001 §4.8).
fn is_crypto_code(close: &quinn::ConnectionClose) -> bool {
    (0x100..=0x1ff).contains(&u64::from(close.error_code))
}

fn transport_config(settings: &TransportSettings) -> Result<quinn::TransportConfig, NodeError> {
    if settings.initial_mtu < 1200 {
        return Err(NodeError::Transport(format!(
            "initial_mtu {} is below the QUIC minimum of 1200",
            settings.initial_mtu
        )));
    }
    let idle = quinn::IdleTimeout::try_from(settings.idle_timeout).map_err(|_| {
        NodeError::Transport(format!(
            "idle timeout {:?} too large",
            settings.idle_timeout
        ))
    })?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(settings.keep_alive))
        .max_idle_timeout(Some(idle))
        .initial_mtu(settings.initial_mtu)
        .min_mtu(settings.initial_mtu)
        .max_concurrent_uni_streams(settings.max_uni_streams.into())
        .max_concurrent_bidi_streams(settings.max_bidi_streams.into())
        .datagram_receive_buffer_size(settings.datagram_receive_buffer)
        .datagram_send_buffer_size(4 << 20);
    Ok(transport)
}

/// Most sources tracked by the incoming rate limit (see [`KeyedBuckets`]
/// for which are forgotten first).
const MAX_TRACKED_SOURCES: usize = 16_384;

/// Most addresses remembered by [`PunchedAddrs`].
const MAX_PUNCHED_ADDRS: usize = 1024;

/// Addresses that answered a hole punch a moment ago, with the time until
/// which their handshakes skip the Retry.
#[derive(Debug, Default)]
struct PunchedAddrs(std::sync::Mutex<HashMap<SocketAddr, Instant>>);

impl PunchedAddrs {
    fn insert(&self, addr: SocketAddr, until: Instant) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, t| *t > now);
        if map.len() < MAX_PUNCHED_ADDRS {
            map.insert(canonical(addr), until);
        }
    }

    fn contains(&self, addr: SocketAddr, now: Instant) -> bool {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&canonical(addr)).is_some_and(|t| *t > now)
    }
}

/// `validate`: send a Retry to every client whose address is not yet
/// validated, except the addresses in it.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    socket: Arc<AntqSocket>,
    tx: mpsc::Sender<PeerConnection>,
    stats: Arc<NodeStats>,
    limits: IncomingLimits,
    validate: Option<Arc<PunchedAddrs>>,
) {
    let mut buckets = limits
        .per_source_rate
        .map(|(rate, burst)| KeyedBuckets::new(rate, burst, MAX_TRACKED_SOURCES));
    let held = Concurrency::new(limits.max_per_source, limits.max_total);
    let by_source = BySource::default();
    let pending = Arc::new(tokio::sync::Semaphore::new(limits.max_pending));
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        if validate
            .as_ref()
            .is_some_and(|punched| !punched.contains(remote, Instant::now()))
            && !socket::is_virtual(remote)
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            stats.retries.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = incoming.retry() {
                tracing::debug!(%remote, "cannot send a Retry; handshake ignored");
                error.into_incoming().ignore();
            }
            continue;
        }
        // A stream path counts as the TCP peer behind it.
        let source = source_prefix(
            socket
                .stream_peer(remote)
                .unwrap_or_else(|| canonical(remote))
                .ip(),
        );
        if let Some(buckets) = &mut buckets {
            if !buckets.try_take(source, 1.0, Instant::now()) {
                stats.handshakes_limited.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, "incoming connection over the per-source rate ignored");
                incoming.ignore();
                continue;
            }
        }
        let Ok(pending) = pending.clone().try_acquire_owned() else {
            stats.refused_pending.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, "too many handshakes under way; ignored");
            incoming.ignore();
            continue;
        };
        let permit = match held.acquire_fair(source) {
            Ok((permit, victim)) => {
                if let Some(victim) = victim {
                    make_room(&by_source, victim, &stats);
                }
                permit
            }
            Err(error) => {
                let counter = match error {
                    ConcurrencyError::PerKey => &stats.refused_per_source,
                    ConcurrencyError::Total => &stats.refused_total,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, %error, "incoming connection refused");
                incoming.refuse();
                continue;
            }
        };
        let proven = socket.guards_sends().then(|| socket.prove(remote));
        let tx = tx.clone();
        let stats = stats.clone();
        let by_source = by_source.clone();
        tokio::spawn(async move {
            let accepted = accept_one(incoming).await;
            drop(pending);
            match accepted {
                Ok(conn) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let closed = conn.conn.clone();
                    let id = closed.stable_id();
                    lock_sources(&by_source)
                        .entry(source)
                        .or_default()
                        .push(closed.clone());
                    if tx.send(conn).await.is_ok() {
                        // The connection's place is held until it closes.
                        closed.closed().await;
                    }
                    let mut sources = lock_sources(&by_source);
                    if let Some(list) = sources.get_mut(&source) {
                        list.retain(|c| c.stable_id() != id);
                        if list.is_empty() {
                            sources.remove(&source);
                        }
                    }
                    drop(sources);
                    drop((permit, proven));
                }
                Err(error) => {
                    stats.handshakes_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, %error, "incoming handshake failed");
                }
            }
        });
    }
}

/// Established incoming connections by source, newest last.
type BySource = Arc<std::sync::Mutex<HashMap<std::net::IpAddr, Vec<quinn::Connection>>>>;

fn lock_sources(
    by_source: &BySource,
) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, Vec<quinn::Connection>>> {
    by_source.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closes the newest connection of `source`, the largest holder, so that a
/// source holding fewer gets in.
fn make_room(by_source: &BySource, source: std::net::IpAddr, stats: &NodeStats) {
    let newest = lock_sources(by_source).get_mut(&source).and_then(Vec::pop);
    if let Some(conn) = newest {
        stats.evicted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%source, remote = %conn.remote_address(), "connection closed to make room");
        conn.close(0u32.into(), b"too many connections from your network");
    }
}

async fn accept_one(incoming: quinn::Incoming) -> Result<PeerConnection, AcceptError> {
    let origin = canonical(incoming.remote_address());
    let conn = incoming.await?;
    let peer = conn
        .peer_identity()
        .as_deref()
        .and_then(tls::peer_id_of)
        .ok_or(AcceptError::NoPeerKey)?;
    let mut send = conn.open_uni().await?;
    control::send_hello(&mut send).await?;
    let mut reader = FrameReader::new(conn.accept_uni().await?);
    reader.expect_hello().await?;
    let control = Arc::new(ControlChannel::new(conn.clone(), send, reader));
    tracing::debug!(peer = %peer.short(), remote = %conn.remote_address(), "accepted");
    Ok(PeerConnection {
        conn,
        peer,
        origin,
        control,
    })
}

/// Why an incoming connection was not accepted.
#[derive(Debug, thiserror::Error)]
enum AcceptError {
    #[error("handshake: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    #[error("handshake finished without a peer key")]
    NoPeerKey,
    #[error("control channel: {0}")]
    Control(#[from] ControlError),
}

/// An authenticated connection to one peer.
#[derive(Clone, Debug)]
pub struct PeerConnection {
    conn: quinn::Connection,
    peer: PeerId,
    origin: SocketAddr,
    control: Arc<ControlChannel>,
}

impl PeerConnection {
    /// The peer's authenticated key.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The peer's current UDP address, as QUIC sees it. QUIC moves a
    /// connection to the source of the newest packet *before* it has
    /// validated that address, so this may be a spoofed one for a moment:
    /// never send anything on the peer's behalf there (see
    /// [`Self::origin`] and the bootstrap's address proofs).
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The address the connection was made with (canonical form): the one
    /// we dialed, or the source of an accepted handshake, which the QUIC
    /// Retry (or the TCP connection of a stream path) validated.
    pub fn origin(&self) -> SocketAddr {
        self.origin
    }

    /// Current round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// The largest datagram that can be sent now, if the peer accepts datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.conn.max_datagram_size()
    }

    /// Sends an unreliable datagram.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), quinn::SendDatagramError> {
        self.conn.send_datagram(data)
    }

    /// Receives the next datagram.
    pub async fn recv_datagram(&self) -> Result<Bytes, quinn::ConnectionError> {
        self.conn.read_datagram().await
    }

    /// A datagram that has already arrived, without waiting: `None` when
    /// there is none yet.
    pub fn try_recv_datagram(&self) -> Option<Result<Bytes, quinn::ConnectionError>> {
        crate::now_or_never(self.conn.read_datagram())
    }

    /// Opens a bidirectional stream.
    pub async fn open_bi(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
        self.conn.open_bi().await
    }

    /// Accepts a bidirectional stream opened by the peer.
    pub async fn accept_bi(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
        self.conn.accept_bi().await
    }

    /// Resolves when the connection closes, with the reason.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.conn.closed().await
    }

    /// Closes the connection.
    pub fn close(&self, reason: &str) {
        self.conn.close(0u32.into(), reason.as_bytes());
    }

    /// Transport statistics.
    pub fn stats(&self) -> quinn::ConnectionStats {
        self.conn.stats()
    }

    /// The counters dead-path detection needs ([`crate::nat::Liveness`]).
    pub fn path_counters(&self) -> crate::nat::PathCounters {
        let stats = self.conn.stats();
        let f = &stats.frame_tx;
        crate::nat::PathCounters {
            eliciting_sent: f.datagram
                + f.stream
                + f.ping
                + f.crypto
                + f.max_data
                + f.max_stream_data
                + f.new_connection_id
                + f.retire_connection_id
                + f.path_challenge
                + f.path_response,
            datagrams_received: stats.udp_rx.datagrams,
        }
    }

    /// The connection's control channel.
    pub fn control(&self) -> &ControlChannel {
        &self.control
    }

    /// Whether this connection runs over a relay (a virtual address).
    pub fn is_relayed(&self) -> bool {
        socket::is_virtual(self.conn.remote_address())
    }

    /// The underlying quinn connection.
    pub fn quinn(&self) -> &quinn::Connection {
        &self.conn
    }
}
