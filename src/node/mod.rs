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
//!
//! Files: this one holds [`Node`], its errors and counters; `config.rs`
//! what a node starts with ([`NodeConfig`], [`BootstrapAddr`]);
//! `admission.rs` who gets in ([`IncomingLimits`], the accept loop);
//! `connection.rs` [`PeerConnection`]; [`data`] the data plane's sessions
//! (sans-IO); [`control`] the QUIC control
//! channel; `metrics.rs` the node's Prometheus collector; [`overlay`] the
//! peer-to-peer overlay; `punch_driver.rs` runs punch sessions on the
//! socket.

mod admission;
mod birthday_driver;
mod config;
mod connection;
pub mod control;
pub mod data;
mod link_state;
pub mod members;
pub(crate) mod metrics;
pub mod overlay;
pub mod peer_state;
pub mod portmap;
mod punch_driver;

pub use admission::IncomingLimits;
pub use config::{BootstrapAddr, NodeConfig, TransportSettings};
pub use connection::PeerConnection;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use self::admission::{accept_loop, PunchedAddrs};
use self::config::transport_config;
use self::control::{ControlChannel, ControlError, FrameReader};
use crate::identity::{Identity, PeerId};
use crate::nat::canonical;
use crate::socket::{self, AntqSocket};
use crate::tls::{self, AcceptPolicy, TlsError};

/// Delay between starting connection attempts to successive addresses.
const ATTEMPT_STAGGER: Duration = Duration::from_millis(150);

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
    /// A bootstrap's observe socket could not be bound.
    #[error(
        "cannot bind the observe socket (UDP {addr}): {source}; set bootstrap.observe_port \
         to a free port, or \"off\""
    )]
    ObserveBind {
        /// The address we tried.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
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
        socket
            .set_mark(config.transport.socket_mark)
            .map_err(NodeError::Endpoint)?;
        if config.send_only_to_proven {
            socket.guard_sends();
        }
        let transport = Arc::new(transport_config(&config.transport)?);

        let server_crypto = tls::server_config(
            &config.identity,
            config.accept.clone(),
            config.transport.data_plane,
        )?;
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
            config.transport.data_plane,
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
        let data_plane = self.inner.settings.data_plane;
        let (crypto, presented) =
            tls::client_config(&self.inner.identity, peer, self.inner.settings.data_plane)?;
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
            let data = connection::data_session(&conn, canonical(addr), data_plane);
            let local_ip = conn.local_ip();
            Ok(PeerConnection {
                conn,
                peer,
                origin: canonical(addr),
                control,
                data,
                local_ip,
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
