//! Admission of incoming connections: the Retry that validates a client's
//! address, per-source rate limits, caps per source and in total (with
//! fair eviction at the total cap), handshakes under way, and the
//! handshake itself (key check, `HELLO` both ways).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc;

use super::control::{self, ControlChannel, ControlError, FrameReader};
use super::{NodeStats, PeerConnection};
use crate::nat::canonical;
use crate::ratelimit::{source_prefix, Concurrency, ConcurrencyError, KeyedBuckets};
use crate::socket::{self, AntqSocket};
use crate::tls;

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

/// Most sources tracked by the incoming rate limit (see [`KeyedBuckets`]
/// for which are forgotten first).
const MAX_TRACKED_SOURCES: usize = 16_384;

/// Most addresses remembered by [`PunchedAddrs`].
const MAX_PUNCHED_ADDRS: usize = 1024;

/// Addresses that answered a hole punch a moment ago, with the time until
/// which their handshakes skip the Retry.
#[derive(Debug, Default)]
pub(super) struct PunchedAddrs(std::sync::Mutex<HashMap<SocketAddr, Instant>>);

impl PunchedAddrs {
    pub(super) fn insert(&self, addr: SocketAddr, until: Instant) {
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
pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    socket: Arc<AntqSocket>,
    tx: mpsc::Sender<PeerConnection>,
    stats: Arc<NodeStats>,
    limits: IncomingLimits,
    validate: Option<Arc<PunchedAddrs>>,
    data_plane: bool,
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
            let accepted = accept_one(incoming, data_plane).await;
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

async fn accept_one(
    incoming: quinn::Incoming,
    data_plane: bool,
) -> Result<PeerConnection, AcceptError> {
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
    let data = super::connection::data_session(&conn, origin, data_plane);
    let local_ip = conn.local_ip();
    Ok(PeerConnection {
        conn,
        peer,
        origin,
        control,
        local_ip,
        data,
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
