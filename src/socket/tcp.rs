//! Datagrams over TCP, for hosts whose network drops all UDP.
//!
//! A host that cannot reach its bootstrap over UDP opens a TCP stream to the
//! bootstrap's TCP listener (by default the same address and port as its UDP
//! socket) and sends through it exactly the datagrams it would otherwise
//! send over UDP: its QUIC connection to the bootstrap and `RELAY_DATA`
//! frames of its relay paths. Framing is in [`super::framing`].
//!
//! Inside [`AntqSocket`] each stream is a **stream path**: a virtual address
//! in `241.0.0.0/8` (relay paths use `240.0.0.0/8`; both are in the reserved
//! `240.0.0.0/4`, see [`super::is_virtual`]). Datagrams quinn sends to that
//! address become frames on the stream; frames read from the stream are
//! handed to quinn as if they came from it, through the same pending queue as
//! unwrapped relay packets, and `RELAY_DATA` frames go through the same relay
//! unwrapping and (bootstrap side) forwarding as over UDP. A relay route
//! whose server is a stream path sends its frames over the stream. The
//! bootstrap gives every accepted stream its own stream path, so to quinn a
//! TCP client is just a peer at a virtual address.
//!
//! **No TLS on the stream**, on purpose: everything carried is already
//! protected end to end. The QUIC connection to the bootstrap is QUIC (TLS
//! 1.3 with raw public keys), and relayed traffic is the two peers' own QUIC
//! packets, which the bootstrap (and anyone on the path) only sees as
//! ciphertext. An on-path attacker can do what it could do to UDP: drop,
//! delay, reorder or inject packets, which QUIC's packet protection rejects.
//! It can also reset the stream, which UDP has no equivalent of; the host
//! then reconnects. Another TLS layer would only add a handshake round trip
//! and a second encryption.
//!
//! Robustness: a bad preface, a frame length of 0 or above
//! [`MAX_DATAGRAM`](super::framing::MAX_DATAGRAM) close the stream (counted
//! in [`SocketStats::stream_errors`], logged at debug). Each stream has a
//! bounded write queue; when it is full the datagram is dropped and counted
//! (QUIC recovers as from any loss) so that quinn's driver never blocks. A
//! stream that sends no preface within [`PREFACE_TIMEOUT`] or nothing at all
//! for [`IDLE_TIMEOUT`] is closed. The listener limits new streams per source
//! IP and in total ([`StreamLimits`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::framing::{encode_frame, FrameDecoder, PREFACE};
use super::{canonical, AntqSocket};
use crate::ratelimit::TokenBucket;

/// First octet of stream-path virtual addresses.
pub const STREAM_OCTET: u8 = 241;
/// Bytes that may wait in one stream's write queue; more are dropped.
pub const WRITE_QUEUE_BYTES: usize = 256 * 1024;
/// A server-side stream must send its preface within this time.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(5);
/// A stream that receives nothing for this long is closed (QUIC keep-alives
/// come every 10 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A write that makes no progress for this long closes the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer size, and the most bytes coalesced into one write.
const IO_CHUNK: usize = 64 * 1024;
/// Most source IPs tracked by the listener's rate limit.
const MAX_TRACKED_IPS: usize = 16_384;

/// Whether `addr` is a stream path's virtual address (`241.0.0.0/8`).
pub fn is_stream_addr(addr: SocketAddr) -> bool {
    match canonical(addr).ip() {
        IpAddr::V4(v4) => v4.octets()[0] == STREAM_OCTET,
        IpAddr::V6(_) => false,
    }
}

/// Which transport carries a connection's datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain UDP.
    Udp,
    /// A framed TCP stream (stream path).
    Tcp,
}

impl Transport {
    /// The transport of a connection to `addr` (a stream path is TCP).
    pub fn of(addr: SocketAddr) -> Self {
        if is_stream_addr(addr) {
            Self::Tcp
        } else {
            Self::Udp
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// Errors of opening a stream path.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The TCP connection failed.
    #[error("TCP connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The TCP connection did not complete in time.
    #[error("TCP connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The TCP listener could not be bound.
    #[error("cannot bind TCP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
}

/// Limits of a TCP listener.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// New streams per second per source IP.
    pub per_ip_per_sec: f64,
    /// Burst of new streams per source IP.
    pub per_ip_burst: f64,
    /// Most streams open at once.
    pub max_streams: usize,
}

/// One open stream path.
#[derive(Debug)]
pub(super) struct StreamPath {
    /// The TCP peer (canonical).
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    reader: Option<AbortHandle>,
}

/// The stream paths of a socket, by virtual address.
pub(super) type StreamTable = HashMap<SocketAddr, StreamPath>;

/// Binds a TCP listener; an unspecified IPv6 address binds dual-stack.
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, StreamError> {
    let bind = || -> io::Result<TcpListener> {
        let domain = socket2::Domain::for_address(addr);
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(!addr.ip().is_unspecified())?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    bind().map_err(|source| StreamError::Bind { addr, source })
}

impl AntqSocket {
    /// Client side: opens a TCP stream to `server` and returns the stream
    /// path's virtual address; connect QUIC to that address to talk to the
    /// server over TCP. Use the same address as a relay route's `server`.
    pub async fn connect_stream(
        self: &Arc<Self>,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, StreamError> {
        let addr = canonical(server);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| StreamError::Timeout { addr, timeout })?
            .map_err(|source| StreamError::Connect { addr, source })?;
        Ok(self.attach_stream(stream, addr, false))
    }

    /// Bootstrap side: accepts TCP streams on `listener`, each becoming a
    /// stream path, within `limits`. The task ends when the socket is gone
    /// (or the handle is aborted).
    pub fn serve_tcp(
        self: &Arc<Self>,
        listener: TcpListener,
        limits: StreamLimits,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(accept_loop(weak, listener, limits))
    }

    /// Whether `addr` is an open stream path.
    pub fn has_stream(&self, addr: SocketAddr) -> bool {
        self.lock_streams().contains_key(&canonical(addr))
    }

    /// The TCP peer behind a stream path.
    pub fn stream_peer(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.lock_streams().get(&canonical(addr)).map(|s| s.peer)
    }

    /// Number of open stream paths.
    pub fn stream_count(&self) -> usize {
        self.lock_streams().len()
    }

    /// Closes a stream path: queued frames are still written, then the
    /// stream is shut down.
    pub fn close_stream(&self, addr: SocketAddr) {
        let removed = self.lock_streams().remove(&canonical(addr));
        if let Some(path) = removed {
            if let Some(reader) = path.reader {
                reader.abort();
            }
            tracing::debug!(%addr, peer = %path.peer, "TCP stream closed");
        }
    }

    /// Closes every stream path.
    pub fn close_all_streams(&self) {
        let all: Vec<_> = self.lock_streams().keys().copied().collect();
        for addr in all {
            self.close_stream(addr);
        }
    }

    /// Queues `datagrams` as frames on stream path `addr`; drops (and counts)
    /// them when the stream is gone or its queue is full. Never blocks.
    pub(super) fn send_stream<'a>(
        &self,
        addr: SocketAddr,
        datagrams: impl Iterator<Item = &'a [u8]>,
    ) {
        let mut buf = Vec::new();
        let mut count = 0u64;
        for d in datagrams {
            if encode_frame(d, &mut buf).is_err() {
                self.stats.stream_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            count += 1;
        }
        if buf.is_empty() {
            return;
        }
        let streams = self.lock_streams();
        let Some(path) = streams.get(&canonical(addr)) else {
            self.stats
                .relay_unroutable
                .fetch_add(count, Ordering::Relaxed);
            return;
        };
        let len = buf.len();
        if path.queued.load(Ordering::Relaxed) + len > WRITE_QUEUE_BYTES {
            self.stats
                .stream_dropped
                .fetch_add(count, Ordering::Relaxed);
            return;
        }
        path.queued.fetch_add(len, Ordering::Relaxed);
        if path.tx.send(Bytes::from(buf)).is_err() {
            path.queued.fetch_sub(len, Ordering::Relaxed);
            self.stats
                .stream_dropped
                .fetch_add(count, Ordering::Relaxed);
            return;
        }
        self.stats
            .stream_frames_out
            .fetch_add(count, Ordering::Relaxed);
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, StreamTable> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connected stream as a stream path and starts its reader
    /// and writer tasks.
    fn attach_stream(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        server_side: bool,
    ) -> SocketAddr {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let peer = canonical(peer);
        let n = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let [_, b, c, d] = n.to_be_bytes();
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(STREAM_OCTET, b, c, d)),
            peer.port().max(1),
        );
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        if !server_side {
            let _ = tx.send(Bytes::from_static(PREFACE));
        }
        self.lock_streams().insert(
            addr,
            StreamPath {
                peer,
                tx,
                queued: queued.clone(),
                reader: None,
            },
        );
        let weak = Arc::downgrade(self);
        tokio::spawn(write_loop(weak.clone(), addr, wr, rx, queued));
        let reader = tokio::spawn(read_loop(weak, addr, rd, server_side)).abort_handle();
        match self.lock_streams().get_mut(&addr) {
            Some(path) => path.reader = Some(reader),
            None => reader.abort(),
        }
        tracing::debug!(%addr, %peer, server_side, "TCP stream open");
        addr
    }
}

async fn accept_loop(weak: Weak<AntqSocket>, listener: TcpListener, limits: StreamLimits) {
    let mut buckets: HashMap<IpAddr, TokenBucket> = HashMap::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(socket) = weak.upgrade() else {
            return;
        };
        let peer = canonical(peer);
        let now = Instant::now();
        if buckets.len() >= MAX_TRACKED_IPS {
            buckets.clear();
        }
        let bucket = buckets
            .entry(peer.ip())
            .or_insert_with(|| TokenBucket::new(limits.per_ip_per_sec, limits.per_ip_burst, now));
        if !bucket.try_take(1.0, now) {
            socket.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "TCP stream over the per-IP limit refused");
            continue;
        }
        if socket.stream_count() >= limits.max_streams {
            socket.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, max = limits.max_streams, "TCP stream over the total limit refused");
            continue;
        }
        socket.attach_stream(stream, peer, true);
    }
}

async fn read_loop(
    weak: Weak<AntqSocket>,
    addr: SocketAddr,
    mut rd: OwnedReadHalf,
    server_side: bool,
) {
    let mut decoder = FrameDecoder::new(server_side);
    let mut buf = vec![0u8; IO_CHUNK];
    let reason = loop {
        let timeout = if decoder.preface_done() {
            IDLE_TIMEOUT
        } else {
            PREFACE_TIMEOUT
        };
        let n = match tokio::time::timeout(timeout, rd.read(&mut buf)).await {
            Err(_) => break format!("nothing received for {timeout:?}"),
            Ok(Ok(0)) => match decoder.finish() {
                Ok(()) => break "closed by the peer".to_owned(),
                Err(error) => {
                    if let Some(s) = weak.upgrade() {
                        s.stats.stream_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    break error.to_string();
                }
            },
            Ok(Ok(n)) => n,
            Ok(Err(error)) => break error.to_string(),
        };
        let Some(socket) = weak.upgrade() else {
            return;
        };
        decoder.push(buf.get(..n).unwrap_or_default());
        let mut delivered = false;
        let failed = loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => delivered |= socket.ingest_stream(addr, frame),
                Ok(None) => break None,
                Err(error) => break Some(error),
            }
        };
        if delivered {
            socket.wake_recv();
        }
        if let Some(error) = failed {
            socket.stats.stream_errors.fetch_add(1, Ordering::Relaxed);
            break error.to_string();
        }
    };
    tracing::debug!(%addr, %reason, "TCP stream ends");
    if let Some(socket) = weak.upgrade() {
        socket.close_stream(addr);
    }
}

async fn write_loop(
    weak: Weak<AntqSocket>,
    addr: SocketAddr,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(IO_CHUNK);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < IO_CHUNK {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        // The preface was never counted; saturate instead of wrapping.
        let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
            Some(q.saturating_sub(batch.len()))
        });
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, "TCP write failed");
                break;
            }
            Err(_) => {
                tracing::debug!(%addr, "TCP write stalled");
                break;
            }
        }
    }
    if let Some(socket) = weak.upgrade() {
        socket.close_stream(addr);
    }
    let _ = wr.shutdown().await;
}
