//! Pings between peers, above QUIC (`antq-tun ping`): one `PING` on a
//! bidirectional stream of the connection a peer's traffic takes now,
//! answered by one `PONG`. The answer shows which path carried it (direct,
//! with the peer's address, or relayed, with the bootstrap's) and its round
//! trip, and works whatever the tunnel's firewall lets through (it is not
//! an IP packet).
//!
//! Every connection answers pings on a task of its own, one at a time
//! (QUIC's stream limit bounds how many wait), each within
//! [`PONG_DEADLINE`]; anything but one well-formed `PING` is counted and
//! the stream reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{alive, Overlay, PathKind};
use crate::identity::PeerId;
use crate::nat::canonical;
use crate::node::PeerConnection;
use crate::proto::{decode_frame, ControlMessage};
use crate::socket::Transport;

/// The largest `PING` / `PONG` frame read (both are 13 bytes).
const FRAME_MAX: usize = 64;

/// How long a peer's `PING` may take to arrive whole and be answered.
pub const PONG_DEADLINE: Duration = Duration::from_secs(2);

/// How often a ping with no connection yet looks again for one.
const PATH_POLL: Duration = Duration::from_millis(10);

/// A `PONG`: the path it took and the round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PingReply {
    /// Direct or relay.
    pub path: PathKind,
    /// The peer's address on a direct path; the relaying bootstrap's on a
    /// relay path.
    pub via: SocketAddr,
    /// UDP, or TCP for a relay over a bootstrap's TCP stream path.
    pub transport: Transport,
    /// From the `PING` written to the `PONG` read.
    pub rtt: Duration,
}

/// Why a ping got no `PONG`.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The key is no peer of ours (not configured, not a member found).
    #[error("{0} is not a peer")]
    UnknownPeer(PeerId),
    /// No connection to the peer came up in time.
    #[error("no path to the peer yet")]
    NoPath,
    /// The `PONG` did not come in time.
    #[error("no reply")]
    Timeout,
    /// The stream failed, or the peer answered something else.
    #[error("ping failed: {0}")]
    Failed(String),
}

/// Counters of pings sent and answered.
#[derive(Debug, Default)]
pub(super) struct PingStats {
    sent: AtomicU64,
    replied: AtomicU64,
    lost: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
}

impl PingStats {
    /// `(event, count)` for the metrics.
    pub(super) fn events(&self) -> [(&'static str, u64); 5] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("sent", l(&self.sent)),
            ("replied", l(&self.replied)),
            ("lost", l(&self.lost)),
            ("answered", l(&self.answered)),
            ("refused", l(&self.refused)),
        ]
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Overlay {
    /// Pings `peer` on the path its traffic takes now, waiting for a first
    /// connection if there is none yet; gives up after `timeout` in all.
    pub async fn ping(&self, peer: &PeerId, timeout: Duration) -> Result<PingReply, PingError> {
        let deadline = Instant::now() + timeout;
        let slot = self.slot(peer).ok_or(PingError::UnknownPeer(*peer))?;
        let conn = loop {
            if let (_, Some(conn)) = slot.read().active() {
                break conn.clone();
            }
            // Wakes an idle peer's maintenance, as traffic would.
            slot.idle.store(false, Ordering::Relaxed);
            slot.wake.notify_one();
            if Instant::now() + PATH_POLL > deadline {
                return Err(PingError::NoPath);
            }
            tokio::time::sleep(PATH_POLL).await;
        };
        let (path, via, transport) = self.hop(&conn);
        let stats = &self.inner.stats.pings;
        count(&stats.sent);
        let token: [u8; 8] = rand::random();
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(fail)?;
            let start = Instant::now();
            let mut ping = Vec::with_capacity(16);
            ControlMessage::Ping { token }
                .encode(&mut ping)
                .map_err(fail)?;
            send.write_all(&ping).await.map_err(fail)?;
            send.finish().map_err(fail)?;
            let bytes = recv.read_to_end(FRAME_MAX).await.map_err(fail)?;
            let rtt = start.elapsed();
            match decode_frame(&bytes) {
                Ok(Some((ControlMessage::Pong { token: t }, n)))
                    if t == token && n == bytes.len() =>
                {
                    Ok(rtt)
                }
                _ => Err(PingError::Failed("the peer answered something else".into())),
            }
        };
        let rtt = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(result) => result,
            Err(_) => Err(PingError::Timeout),
        }
        .inspect_err(|_| count(&stats.lost))?;
        count(&stats.replied);
        Ok(PingReply {
            path,
            via,
            transport,
            rtt,
        })
    }

    /// Where `conn` goes: direct to the peer (from a side socket: the
    /// peer's real address), or relayed by a bootstrap (over TCP: the
    /// bootstrap's stream address stands for it).
    pub(super) fn hop(&self, conn: &PeerConnection) -> (PathKind, SocketAddr, Transport) {
        let socket = self.inner.node.socket();
        let addr = canonical(conn.remote_address());
        if let Some(remote) = socket.side_remote(addr) {
            return (PathKind::Direct, remote, Transport::Udp);
        }
        let server = socket.relay_route(addr).map_or(addr, |r| r.server);
        let remote = socket.stream_peer(server).unwrap_or(server);
        let path = if conn.is_relayed() {
            PathKind::Relay
        } else {
            PathKind::Direct
        };
        (path, remote, Transport::of(server))
    }

    /// Answers the pings that come on `conn`, until it closes.
    pub(super) fn spawn_pong(&self, peer: PeerId, conn: PeerConnection) {
        let overlay = self.clone();
        tokio::spawn(async move {
            while alive(&conn) {
                let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                    return;
                };
                let stats = &overlay.inner.stats.pings;
                let answer = async {
                    let bytes = recv.read_to_end(FRAME_MAX).await.ok()?;
                    let token = match decode_frame(&bytes) {
                        Ok(Some((ControlMessage::Ping { token }, n))) if n == bytes.len() => token,
                        _ => return None,
                    };
                    let mut pong = Vec::with_capacity(16);
                    ControlMessage::Pong { token }.encode(&mut pong).ok()?;
                    send.write_all(&pong).await.ok()?;
                    send.finish().ok()
                };
                match tokio::time::timeout(PONG_DEADLINE, answer).await {
                    Ok(Some(())) => count(&stats.answered),
                    _ => {
                        count(&stats.refused);
                        tracing::debug!(peer = %peer.short(), "a ping stream that was no ping, or too slow: reset");
                        let _ = send.reset(0u32.into());
                    }
                }
            }
        });
    }
}

fn fail(error: impl std::fmt::Display) -> PingError {
    PingError::Failed(error.to_string())
}
