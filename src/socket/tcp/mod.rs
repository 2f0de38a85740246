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
//! in [`SocketStats::stream_errors`](super::SocketStats::stream_errors),
//! logged at debug). Each stream has a bounded write queue; when it is full
//! the datagram is dropped and counted (QUIC recovers as from any loss) so
//! that quinn's driver never blocks. A stream that receives nothing for
//! [`IDLE_TIMEOUT`] is closed.
//!
//! # What an unauthenticated client can make a listener hold
//!
//! Anyone can open TCP streams, so everything a stream holds is bounded and
//! every refusal is counted by reason in
//! [`SocketStats`](super::SocketStats) (`streams_refused_*`, their sum in
//! `streams_refused`) and logged at debug only. Limits by source key on
//! [`source_prefix`] (an IPv4 address, or an IPv6 /64), see
//! [`StreamLimits`]:
//!
//! - **New streams per source**: a token bucket per source prefix
//!   (`per_ip_per_sec`, `per_ip_burst`), in bounded memory
//!   ([`KeyedBuckets`](crate::ratelimit::KeyedBuckets): never reset as a
//!   whole, so a flood of sources cannot give a drained one a fresh burst
//!   unless it outnumbers 16,384 of them).
//! - **Streams open at once**: at most `per_ip_max_streams` per source
//!   prefix (16 at a bootstrap) and `max_streams` (4096) in all. The place
//!   is held from accept until the stream path is gone.
//! - **First packet**: a server-side stream must send the preface within
//!   [`PREFACE_TIMEOUT`] of the accept, and a first whole frame within
//!   [`FIRST_FRAME_TIMEOUT`] of the preface.
//! - **Claim**: a server-side stream must be *claimed* with
//!   [`AntqSocket::claim_stream`] within `claim_timeout` (10 s) of the
//!   accept; the bootstrap claims a stream path once a QUIC connection over
//!   it has completed its handshake and been authenticated. An unclaimed
//!   stream is closed at that deadline, so a stream that sends a small frame
//!   now and then but never completes a handshake holds its place for 10 s,
//!   not for ever. Client-side streams ([`AntqSocket::connect_stream`]) are
//!   claimed from the start.
//! - **Memory**: a stream holds no large buffer up front. Its read buffer
//!   starts at 4 KiB and doubles (up to 64 KiB) only while reads fill it,
//!   only once the stream is claimed, and only within a budget of 64 MiB
//!   of growth for all streams together; once the stream has received
//!   nothing for a second the read buffer is given back. The frame decoder
//!   keeps at most one partial frame. The writer coalesces queued frames
//!   into a buffer only while it has something to write. The listener asks
//!   the allocator to hand freed memory back to the OS
//!   ([`antq_platform::release_free_memory`]) at most every 5 s, after many
//!   streams closed or many buffers were given back. Measured with
//!   `examples/tcp_rss.rs` (4096 claimed streams from 256 sources, each
//!   sending a 58 KiB burst): RSS 4 MiB idle, 114 MiB while the bursts are
//!   read, 24 MiB held once quiet (about 5 KiB per stream), 7 MiB from
//!   10 s after they closed; before this design, the same run held
//!   510 MiB and kept 283 MiB 60 s after they closed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::framing::{encode_frame, PREFACE};
use super::AntqSocket;
use crate::nat::canonical;
use crate::ratelimit::{source_prefix, Permit};

mod accept;
mod io_loops;

/// First octet of stream-path virtual addresses.
pub const STREAM_OCTET: u8 = 241;
/// Bytes that may wait in one stream's write queue; more are dropped.
pub const WRITE_QUEUE_BYTES: usize = 256 * 1024;
/// A server-side stream must send its preface within this time of the
/// accept.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(5);
/// A server-side stream must send its first whole frame within this time of
/// its preface.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A stream that receives nothing for this long is closed (QUIC keep-alives
/// come every 10 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// [`StreamLimits::max_streams`] by default.
pub const DEFAULT_MAX_STREAMS: usize = 4096;
/// [`StreamLimits::per_ip_max_streams`] by default.
pub const DEFAULT_PER_IP_MAX_STREAMS: usize = 16;
/// [`StreamLimits::claim_timeout`] by default.
pub const DEFAULT_CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest read buffer, and the most bytes coalesced into one write.
const IO_CHUNK: usize = 64 * 1024;
/// Most bytes by which the read buffers of all streams together may grow
/// beyond their initial 4 KiB (when it is used up, a stream reads in what
/// it has).
const READ_GROWTH_BUDGET: usize = 64 << 20;

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

/// Limits of a TCP listener ([`AntqSocket::serve_tcp`]). "Per IP" means
/// per source prefix: an IPv4 address or an IPv6 /64 ([`source_prefix`]).
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// New streams per second per source.
    pub per_ip_per_sec: f64,
    /// Burst of new streams per source.
    pub per_ip_burst: f64,
    /// Most streams from this listener open at once, from all sources.
    pub max_streams: usize,
    /// Most streams from this listener open at once from one source.
    pub per_ip_max_streams: usize,
    /// A stream not claimed ([`AntqSocket::claim_stream`]) within this time
    /// of its accept is closed.
    pub claim_timeout: Duration,
}

impl Default for StreamLimits {
    /// 20 new streams per second per source (burst 60, as the bootstrap's
    /// default handshake limit), [`DEFAULT_PER_IP_MAX_STREAMS`] per source,
    /// [`DEFAULT_MAX_STREAMS`] in all, [`DEFAULT_CLAIM_TIMEOUT`].
    fn default() -> Self {
        Self {
            per_ip_per_sec: 20.0,
            per_ip_burst: 60.0,
            max_streams: DEFAULT_MAX_STREAMS,
            per_ip_max_streams: DEFAULT_PER_IP_MAX_STREAMS,
            claim_timeout: DEFAULT_CLAIM_TIMEOUT,
        }
    }
}

/// Why an incoming stream was refused, or closed before it was of use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Over its source's rate of new streams.
    Rate,
    /// Its source held `per_ip_max_streams` already.
    SourceCap,
    /// `max_streams` were open already.
    TotalCap,
    /// No preface, or no first frame after it, in time.
    HandshakeTimeout,
    /// Not claimed within `claim_timeout`.
    ClaimTimeout,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "over the per-source rate",
            Self::SourceCap => "over the per-source cap",
            Self::TotalCap => "over the total cap",
            Self::HandshakeTimeout => "no preface or first frame in time",
            Self::ClaimTimeout => "not claimed in time",
        }
    }
}

/// What the listener hands a stream it accepted.
#[derive(Debug)]
struct Admission {
    /// Its place among the streams of its source and of the listener.
    permit: Permit<IpAddr>,
    /// How long it may stay unclaimed.
    claim_timeout: Duration,
}

/// One open stream path.
#[derive(Debug)]
pub(super) struct StreamPath {
    /// The TCP peer (canonical).
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    reader: Option<AbortHandle>,
    /// Claimed by [`AntqSocket::claim_stream`] (client side: from the
    /// start).
    claimed: bool,
    /// Server side: the listener's place, given back when the path goes.
    _permit: Option<Permit<IpAddr>>,
}

/// The stream paths of a socket, by virtual address.
pub(super) type StreamTable = HashMap<SocketAddr, StreamPath>;

/// Memory of a socket's streams: what closed and quiet streams gave back
/// (for the listener's decision to hand freed memory back to the OS), and
/// the budget of read buffers grown beyond their initial size.
#[derive(Debug, Default)]
pub(super) struct StreamMemory {
    /// Stream paths closed.
    closed: AtomicU64,
    /// Bytes of buffers released.
    released: AtomicU64,
    /// Bytes by which read buffers are now larger than their initial size,
    /// at most [`READ_GROWTH_BUDGET`].
    grown: AtomicUsize,
}

impl StreamMemory {
    fn released(&self, bytes: usize) {
        self.released.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Takes `bytes` from the growth budget if it has them.
    fn try_grow(&self, bytes: usize) -> bool {
        self.grown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                g.checked_add(bytes).filter(|t| *t <= READ_GROWTH_BUDGET)
            })
            .is_ok()
    }

    /// Gives `bytes` back to the growth budget.
    fn shrunk(&self, bytes: usize) {
        let _ = self
            .grown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                Some(g.saturating_sub(bytes))
            });
    }
}

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
        let connect = async {
            let socket = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            antq_platform::set_socket_mark(socket2::SockRef::from(&socket), self.mark())
                .map_err(io::Error::other)?;
            socket.connect(addr).await
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| StreamError::Timeout { addr, timeout })?
            .map_err(|source| StreamError::Connect { addr, source })?;
        Ok(self.attach_stream(stream, addr, None))
    }

    /// Bootstrap side: accepts TCP streams on `listener`, each becoming a
    /// stream path, within `limits` (see the [module docs](self)); every
    /// stream must then be claimed ([`Self::claim_stream`]) within
    /// `limits.claim_timeout`. The task ends when the socket is gone (or the
    /// handle is aborted).
    pub fn serve_tcp(
        self: &Arc<Self>,
        listener: TcpListener,
        limits: StreamLimits,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(accept::accept_loop(weak, listener, limits))
    }

    /// Bootstrap side: marks stream path `addr` as in use, so that it is not
    /// closed at its claim deadline. Call it once a QUIC connection over the
    /// stream has completed its handshake and been authenticated. Returns
    /// whether `addr` is an open stream path (claiming twice is harmless).
    pub fn claim_stream(&self, addr: SocketAddr) -> bool {
        match self.lock_streams().get_mut(&canonical(addr)) {
            Some(path) => {
                path.claimed = true;
                true
            }
            None => false,
        }
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

    /// The virtual addresses of the open stream paths.
    pub fn stream_addrs(&self) -> Vec<SocketAddr> {
        self.lock_streams().keys().copied().collect()
    }

    /// Closes a stream path: queued frames are still written, then the
    /// stream is shut down.
    pub fn close_stream(&self, addr: SocketAddr) {
        let removed = self.lock_streams().remove(&canonical(addr));
        if let Some(path) = removed {
            if let Some(reader) = path.reader {
                reader.abort();
            }
            self.stream_memory.closed.fetch_add(1, Ordering::Relaxed);
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

    /// Whether stream path `addr` was claimed; `None` if it is gone.
    fn stream_claimed(&self, addr: SocketAddr) -> Option<bool> {
        self.lock_streams().get(&addr).map(|p| p.claimed)
    }

    /// Counts (by reason and in total) and logs a refused stream.
    fn refuse(&self, reason: Refusal, peer: SocketAddr) {
        let s = &self.stats;
        let counter = match reason {
            Refusal::Rate => &s.streams_refused_rate,
            Refusal::SourceCap => &s.streams_refused_source_cap,
            Refusal::TotalCap => &s.streams_refused_total_cap,
            Refusal::HandshakeTimeout => &s.streams_refused_handshake_timeout,
            Refusal::ClaimTimeout => &s.streams_refused_claim_timeout,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        s.streams_refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, reason = reason.as_str(), "TCP stream refused");
    }

    /// Closes the newest server-side stream of `source`, unclaimed ones
    /// first, to make room at the total cap for a source holding fewer
    /// (see [`crate::ratelimit::Concurrency::acquire_fair`]).
    pub(super) fn evict_stream_of(&self, source: IpAddr) {
        let victim = self
            .lock_streams()
            .iter()
            .filter(|(_, p)| p._permit.is_some() && source_prefix(p.peer.ip()) == source)
            .max_by_key(|(addr, p)| {
                let n = match addr.ip() {
                    IpAddr::V4(v4) => u32::from(v4) & 0x00ff_ffff,
                    IpAddr::V6(_) => 0,
                };
                (!p.claimed, n)
            })
            .map(|(addr, p)| (*addr, p.peer));
        if let Some((addr, peer)) = victim {
            self.stats.streams_evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "TCP stream closed to make room for a source holding fewer");
            self.close_stream(addr);
        }
    }

    /// Registers a connected stream as a stream path and starts its reader
    /// and writer tasks. `admission` is the listener's, server side only.
    fn attach_stream(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        admission: Option<Admission>,
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
        let server_side = admission.is_some();
        let (claim_timeout, permit) = match admission {
            Some(a) => (Some(a.claim_timeout), Some(a.permit)),
            None => (None, None),
        };
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
                claimed: !server_side,
                _permit: permit,
            },
        );
        let weak = Arc::downgrade(self);
        tokio::spawn(io_loops::write_loop(weak.clone(), addr, wr, rx, queued));
        let reader = tokio::spawn(io_loops::read_loop(weak, addr, peer, rd, claim_timeout));
        match self.lock_streams().get_mut(&addr) {
            Some(path) => path.reader = Some(reader.abort_handle()),
            None => reader.abort(),
        }
        tracing::debug!(%addr, %peer, server_side, "TCP stream open");
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_the_bootstrap_ones() {
        let l = StreamLimits::default();
        assert_eq!(l.per_ip_max_streams, 16);
        assert_eq!(l.max_streams, 4096);
        assert_eq!(l.claim_timeout, Duration::from_secs(10));
        assert!(l.per_ip_burst >= l.per_ip_max_streams as f64);
    }
}
