//! The responder's sockets: UDP and TCP port 53 on each tunnel address,
//! the source check and the rate limits around [`super::answer`].
//!
//! A socket that cannot be bound (the port taken by another server on
//! that address) is a logged warning: the tunnel runs without it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::answer::{answer, Outcome, Transport, MAX_QUERY};
use super::{DnsStats, Names};
use crate::ratelimit::{KeyedBuckets, TokenBucket};

/// Queries a second answered in all (and the burst): far above what the
/// hosts of a tunnel ask (resolvers cache for [`super::answer::TTL`]),
/// far below what would cost the datapath.
pub const GLOBAL_RATE: f64 = 1000.0;
/// Queries a second answered from one source (an IPv4 address or IPv6
/// /64); the burst is twice that.
pub const SOURCE_RATE: f64 = 100.0;
/// Sources whose rate is tracked at once (the least recently seen are
/// forgotten first).
const SOURCES_TRACKED: usize = 4096;
/// TCP connections served at once; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 16;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries one TCP connection may ask before it is closed.
const TCP_QUERIES: usize = 64;
/// The longest a TCP connection is kept, however it trickles: a slow
/// client holds one of [`MAX_TCP_CONNECTIONS`] at most this long.
const TCP_LIFETIME: Duration = Duration::from_secs(30);

/// What the responder answers from and counts into.
pub(crate) trait Zone: Send + Sync + 'static {
    /// The names table now.
    fn names(&self) -> Arc<Names>;
    /// Whether `source` may ask (this host, the tunnel, a peer).
    fn may_ask(&self, source: IpAddr) -> bool;
    /// The counters.
    fn stats(&self) -> &DnsStats;
}

/// The rate limits, shared by every socket.
struct Limits {
    global: TokenBucket,
    per_source: KeyedBuckets<IpAddr>,
}

impl Limits {
    fn new() -> Self {
        Self {
            global: TokenBucket::new(GLOBAL_RATE, GLOBAL_RATE, Instant::now()),
            per_source: KeyedBuckets::new(SOURCE_RATE, 2.0 * SOURCE_RATE, SOURCES_TRACKED),
        }
    }

    /// Takes a token of `source`'s bucket, then of the global one: one
    /// flooding source cannot drain the global bucket beyond its own rate.
    fn allow(&mut self, source: IpAddr) -> bool {
        let now = Instant::now();
        self.per_source
            .try_take(crate::ratelimit::source_prefix(source), 1.0, now)
            && self.global.try_take(1.0, now)
    }
}

struct Context<Z> {
    zone: Arc<Z>,
    limits: Mutex<Limits>,
    tcp_slots: Arc<tokio::sync::Semaphore>,
}

impl<Z: Zone> Context<Z> {
    /// Checks, answers and counts one query from `from`.
    fn handle(&self, query: &[u8], from: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        let stats = self.zone.stats();
        if !self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(from)
        {
            stats.count(Outcome::RateLimited);
            return None;
        }
        let reply = answer(query, &self.zone.names(), transport);
        stats.count(reply.outcome);
        if reply.bytes.is_none() {
            tracing::debug!(%from, outcome = reply.outcome.label(), len = query.len(), "DNS query dropped");
        }
        reply.bytes
    }
}

/// The running responder; dropping it closes its sockets.
pub(crate) struct Responder {
    /// The UDP addresses bound (TCP is on the same where it could bind).
    pub(crate) listen: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Responder {
    /// Binds UDP and TCP `port` on each of `addresses` and serves `zone`
    /// there. Port 0 (tests): a free UDP port, and TCP on the same.
    pub(crate) async fn start<Z: Zone>(zone: Arc<Z>, addresses: &[IpAddr], port: u16) -> Self {
        let cx = Arc::new(Context {
            zone,
            limits: Mutex::new(Limits::new()),
            tcp_slots: Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS)),
        });
        let mut listen = Vec::new();
        let mut tasks = Vec::new();
        for ip in addresses {
            let udp = match UdpSocket::bind(SocketAddr::new(*ip, port)).await {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(address = %ip, port, %error, "DNS responder not listening on this address (UDP)");
                    continue;
                }
            };
            let Ok(local) = udp.local_addr() else {
                continue;
            };
            listen.push(local);
            tasks.push(tokio::spawn(serve_udp(udp, cx.clone())));
            match TcpListener::bind(local).await {
                Ok(tcp) => tasks.push(tokio::spawn(serve_tcp(tcp, cx.clone()))),
                Err(error) => {
                    tracing::warn!(address = %local, %error, "DNS responder not listening on this address (TCP)");
                }
            }
        }
        Self { listen, tasks }
    }
}

async fn serve_udp<Z: Zone>(socket: UdpSocket, cx: Arc<Context<Z>>) {
    // Room for any datagram: one larger than the buffer is an error on
    // Windows (WSAEMSGSIZE) rather than a cut copy, and would go uncounted.
    // Read whole, it is judged (and counted) by its size.
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(error) => {
                tracing::debug!(%error, "DNS socket receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !cx.zone.may_ask(from.ip()) {
            cx.zone.stats().count(Outcome::ForeignSource);
            continue;
        }
        if let Some(response) = cx.handle(&buf[..n], from.ip(), Transport::Udp) {
            if let Err(error) = socket.send_to(&response, from).await {
                tracing::debug!(%from, %error, "DNS response not sent");
            }
        }
    }
}

async fn serve_tcp<Z: Zone>(listener: TcpListener, cx: Arc<Context<Z>>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(got) => got,
            Err(error) => {
                tracing::debug!(%error, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !cx.zone.may_ask(from.ip()) {
            cx.zone.stats().count(Outcome::ForeignSource);
            continue;
        }
        let Ok(slot) = cx.tcp_slots.clone().try_acquire_owned() else {
            cx.zone.stats().count(Outcome::RateLimited);
            continue;
        };
        let cx = cx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let served =
                tokio::time::timeout(TCP_LIFETIME, serve_connection(stream, from.ip(), &cx)).await;
            match served {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%from, %error, "DNS TCP connection ended"),
                Err(_) => tracing::debug!(%from, "DNS TCP connection closed after its lifetime"),
            }
        });
    }
}

/// Length-prefixed queries (RFC 1035 4.2.2) until the client closes, goes
/// idle, sends what gets no answer, or has asked [`TCP_QUERIES`] (and at
/// most [`TCP_LIFETIME`], see `serve_tcp`).
async fn serve_connection<Z: Zone>(
    mut stream: TcpStream,
    from: IpAddr,
    cx: &Context<Z>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_QUERY];
    for _ in 0..TCP_QUERIES {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        if len > MAX_QUERY {
            cx.zone.stats().count(Outcome::TooLarge);
            return Ok(());
        }
        let query = &mut buf[..len];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(query)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let Some(response) = cx.handle(query, from, Transport::Tcp) else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(response.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(2 + response.len());
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&response);
        stream.write_all(&framed).await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
