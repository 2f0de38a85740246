//! The bootstrap's observe socket: a second UDP socket on the listen IP
//! (by default on the listen port + 1) that answers one thing,
//! `OBSERVE_REQUEST`, with `OBSERVE_REPLY` (the source address it saw),
//! sent back from that socket. A peer compares the answer with the
//! `OBSERVED_ADDRESS` of the main port: its NAT's mapping toward a second
//! destination port of the same IP tells endpoint-independent mapping from
//! symmetric with a single bootstrap (`nat::infer_mapping`).
//!
//! Anyone can send to it, with any source address, so: a reply is never
//! larger than the request ([`ObserveRequest::answer`]), answers are rate
//! limited per source (IPv4 address or IPv6 /64, in bounded memory) and in
//! total, nothing is stored per request, and everything is counted
//! ([`ObserveStats`]). [`Answerer`] decides (sans-IO); [`spawn`] runs it.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use super::Limits;
use crate::nat::canonical;
use crate::proto::raw::ObserveRequest;
use crate::ratelimit::{source_prefix, KeyedBuckets, TokenBucket};

/// Sources whose rate is tracked at once (older ones are forgotten, see
/// [`KeyedBuckets`]).
const TRACKED_SOURCES: usize = 4096;
/// Datagrams read per receive call.
const BATCH: usize = 16;
/// Room for one received datagram (or a GRO batch of small ones); larger
/// requests are truncated by the kernel and still answered (the reply is
/// at most 36 bytes).
const RECV_BUF: usize = 2048;

/// Counters of the observe socket.
#[derive(Debug, Default)]
pub struct ObserveStats {
    /// Requests answered.
    pub answered: AtomicU64,
    /// Requests not answered: over the per-source or the total rate.
    pub rate_limited: AtomicU64,
    /// Datagrams that were no valid `OBSERVE_REQUEST` (anything else, too
    /// short to answer without amplification), dropped.
    pub malformed: AtomicU64,
    /// Replies the socket could not send (buffer full), dropped.
    pub send_failed: AtomicU64,
}

impl ObserveStats {
    /// The counters by name (status and metrics).
    pub fn events(&self) -> [(&'static str, u64); 4] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("answered", load(&self.answered)),
            ("rate_limited", load(&self.rate_limited)),
            ("malformed", load(&self.malformed)),
            ("send_failed", load(&self.send_failed)),
        ]
    }
}

/// What to do with one datagram received on the observe socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back to the source.
    Reply(Vec<u8>),
    /// A valid request over a rate limit: dropped.
    RateLimited,
    /// Not a valid request: dropped.
    Malformed,
}

/// The observe socket's decisions: which datagrams get an answer (sans-IO:
/// time is passed in).
#[derive(Debug)]
pub struct Answerer {
    per_source: KeyedBuckets<IpAddr>,
    total: TokenBucket,
}

impl Answerer {
    /// An answerer with the observe limits of `limits`.
    pub fn new(limits: &Limits, now: Instant) -> Self {
        let per_sec = limits.observe_per_sec_per_ip;
        Self {
            per_source: KeyedBuckets::new(per_sec, per_sec * 3.0, TRACKED_SOURCES),
            total: TokenBucket::new(limits.observe_per_sec, limits.observe_per_sec, now),
        }
    }

    /// Decides about `datagram` from `from`, counting the outcome in
    /// `stats`. Malformed datagrams cost no tokens; a request over the
    /// per-source limit takes none from the total.
    pub fn handle(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        stats: &ObserveStats,
    ) -> Answer {
        let from = canonical(from);
        if ObserveRequest::decode(datagram).is_err() {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return Answer::Malformed;
        }
        if !self.per_source.try_take(source_prefix(from.ip()), 1.0, now)
            || !self.total.try_take(1.0, now)
        {
            stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Answer::RateLimited;
        }
        let mut reply = Vec::new();
        match ObserveRequest::answer(datagram, from, &mut reply) {
            Ok(_) => {
                stats.answered.fetch_add(1, Ordering::Relaxed);
                Answer::Reply(reply)
            }
            Err(_) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                Answer::Malformed
            }
        }
    }
}

/// A bound observe socket and its task.
#[derive(Debug)]
pub(super) struct ObserveServer {
    /// The address it is bound to.
    pub(super) local: SocketAddr,
    /// Its counters.
    pub(super) stats: Arc<ObserveStats>,
    pub(super) task: tokio::task::AbortHandle,
}

impl Drop for ObserveServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the observe socket at `addr` and starts answering on it. Replies
/// leave from the IP the request was sent to (so a bootstrap listening on
/// every address answers from the right one).
pub(super) fn spawn(addr: SocketAddr, limits: &Limits) -> io::Result<ObserveServer> {
    let std = crate::socket::bind_udp(addr)?;
    std.set_nonblocking(true)?;
    let state = UdpSocketState::new((&std).into())?;
    let socket = tokio::net::UdpSocket::from_std(std)?;
    let local = socket.local_addr()?;
    let stats = Arc::new(ObserveStats::default());
    let answerer = Answerer::new(limits, Instant::now());
    let task = tokio::spawn(serve(socket, state, answerer, stats.clone())).abort_handle();
    tracing::debug!(%local, "observe socket up");
    Ok(ObserveServer { local, stats, task })
}

async fn serve(
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    mut answerer: Answerer,
    stats: Arc<ObserveStats>,
) {
    let mut bufs = vec![[0u8; RECV_BUF]; BATCH];
    let mut meta = vec![RecvMeta::default(); BATCH];
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let received = {
            let mut slices: Vec<IoSliceMut<'_>> = bufs
                .iter_mut()
                .map(|b| IoSliceMut::new(&mut b[..]))
                .collect();
            socket.try_io(Interest::READABLE, || {
                state.recv((&socket).into(), &mut slices, &mut meta)
            })
        };
        let count = match received {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                // ICMP errors of earlier replies and the like.
                tracing::trace!(%error, "observe socket receive error");
                continue;
            }
        };
        let now = Instant::now();
        for (m, buf) in meta.iter().zip(&bufs).take(count) {
            let data = &buf[..m.len.min(RECV_BUF)];
            // GRO may have joined several datagrams of one source; an
            // empty datagram is one (malformed) datagram too.
            let stride = m.stride.max(1);
            let datagrams = data.chunks(stride).chain(data.is_empty().then_some(data));
            for datagram in datagrams {
                let Answer::Reply(reply) = answerer.handle(m.addr, datagram, now, &stats) else {
                    tracing::trace!(from = %m.addr, "observe request dropped");
                    continue;
                };
                let transmit = Transmit {
                    destination: m.addr,
                    ecn: None,
                    contents: &reply,
                    segment_size: None,
                    src_ip: m.dst_ip,
                };
                let sent = socket.try_io(Interest::WRITABLE, || {
                    state.try_send((&socket).into(), &transmit)
                });
                if sent.is_err() {
                    stats.send_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::raw::{ObserveReply, OBSERVE_REPLY};

    fn request(token: u8) -> Vec<u8> {
        ObserveRequest { token: [token; 16] }.to_bytes().to_vec()
    }

    fn limits(per_ip: f64, total: f64) -> Limits {
        Limits {
            observe_per_sec_per_ip: per_ip,
            observe_per_sec: total,
            ..Limits::default()
        }
    }

    #[test]
    fn answers_with_the_source_address_and_token() {
        let now = Instant::now();
        let stats = ObserveStats::default();
        let mut a = Answerer::new(&Limits::default(), now);
        for from in [
            "203.0.113.7:40000",
            "[2001:db8::7]:5",
            "[::ffff:203.0.113.8]:6",
        ] {
            let from: SocketAddr = from.parse().unwrap();
            let Answer::Reply(reply) = a.handle(from, &request(9), now, &stats) else {
                panic!("no reply for {from}");
            };
            assert!(reply.len() <= ObserveRequest::MIN_LEN);
            let decoded = ObserveReply::decode(&reply).unwrap();
            assert_eq!(decoded.token, [9; 16]);
            // IPv4-mapped sources are told as IPv4.
            assert_eq!(decoded.observed, canonical(from));
        }
        assert_eq!(stats.answered.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn drops_anything_else_and_counts_it() {
        let now = Instant::now();
        let stats = ObserveStats::default();
        let mut a = Answerer::new(&Limits::default(), now);
        let from: SocketAddr = "198.51.100.1:1".parse().unwrap();
        let mut reply_frame = vec![OBSERVE_REPLY];
        reply_frame.extend_from_slice(&[0; 23]);
        for bad in [
            Vec::new(),
            request(1)[..35].to_vec(), // too short to answer
            reply_frame,
            vec![0x02; 64],
            vec![0xc0; 1200], // QUIC
        ] {
            assert_eq!(a.handle(from, &bad, now, &stats), Answer::Malformed);
        }
        assert_eq!(
            stats.events(),
            [
                ("answered", 0),
                ("rate_limited", 0),
                ("malformed", 5),
                ("send_failed", 0)
            ]
        );
        // Malformed input took no tokens.
        assert!(matches!(
            a.handle(from, &request(1), now, &stats),
            Answer::Reply(_)
        ));
    }

    #[test]
    fn per_source_limit_with_burst_then_rate() {
        let now = Instant::now();
        let stats = ObserveStats::default();
        let mut a = Answerer::new(&limits(2.0, 1000.0), now);
        let from: SocketAddr = "198.51.100.1:1000".parse().unwrap();
        let answered = (0..20)
            .filter(|_| matches!(a.handle(from, &request(1), now, &stats), Answer::Reply(_)))
            .count();
        assert_eq!(answered, 6, "burst of three times the rate");
        // Another port of the same IP shares its bucket; another IP does not.
        let same_ip: SocketAddr = "198.51.100.1:2000".parse().unwrap();
        assert_eq!(
            a.handle(same_ip, &request(1), now, &stats),
            Answer::RateLimited
        );
        let other: SocketAddr = "198.51.100.2:1000".parse().unwrap();
        assert!(matches!(
            a.handle(other, &request(1), now, &stats),
            Answer::Reply(_)
        ));
        // The same /64 is one source.
        let mut a = Answerer::new(&limits(1.0, 1000.0), now);
        for i in 0..3 {
            let v6: SocketAddr = format!("[2001:db8::{i}]:1").parse().unwrap();
            assert!(matches!(
                a.handle(v6, &request(1), now, &stats),
                Answer::Reply(_)
            ));
        }
        let v6: SocketAddr = "[2001:db8::ffff]:1".parse().unwrap();
        assert_eq!(a.handle(v6, &request(1), now, &stats), Answer::RateLimited);
        // Refilled after a second: two more.
        let later = now + Duration::from_secs(1);
        let mut a = Answerer::new(&limits(2.0, 1000.0), now);
        for _ in 0..6 {
            a.handle(from, &request(1), now, &stats);
        }
        let answered = (0..5)
            .filter(|_| matches!(a.handle(from, &request(1), later, &stats), Answer::Reply(_)))
            .count();
        assert_eq!(answered, 2);
    }

    #[test]
    fn total_limit_over_many_sources() {
        let now = Instant::now();
        let stats = ObserveStats::default();
        let mut a = Answerer::new(&limits(5.0, 100.0), now);
        let answered = (0..1000u32)
            .filter(|i| {
                let from = SocketAddr::from(([10, (i >> 8) as u8, *i as u8, 1], 1));
                matches!(a.handle(from, &request(1), now, &stats), Answer::Reply(_))
            })
            .count();
        assert_eq!(answered, 100);
        assert_eq!(stats.rate_limited.load(Ordering::Relaxed), 900);
        assert_eq!(stats.answered.load(Ordering::Relaxed), 100);
    }
}
