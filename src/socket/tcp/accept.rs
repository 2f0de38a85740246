//! The listener's accept loop: per-source rate and caps, and giving freed
//! memory back to the OS.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;

use super::{Admission, AntqSocket, Refusal, StreamLimits, StreamMemory};
use crate::nat::canonical;
use crate::ratelimit::{source_prefix, Concurrency, ConcurrencyError, KeyedBuckets};

/// Most source prefixes tracked by the listener's rate limit.
const MAX_TRACKED_SOURCES: usize = 16_384;
/// How often the listener looks whether to give memory back.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// Closed streams since the last release that make one worth it.
const RELEASE_AFTER_STREAMS: u64 = 64;
/// Bytes of stream buffers given back since the last release that make one
/// worth it.
const RELEASE_AFTER_BYTES: u64 = 8 << 20;

/// Decides when to give freed memory back to the OS: when many streams
/// closed or many buffers were released since the last time.
#[derive(Debug, Default)]
struct ReleaseCheck {
    streams: u64,
    bytes: u64,
}

impl ReleaseCheck {
    /// Whether to release now, given the totals so far (then they become the
    /// new baseline).
    fn due(&mut self, streams: u64, bytes: u64) -> bool {
        let due = streams.saturating_sub(self.streams) >= RELEASE_AFTER_STREAMS
            || bytes.saturating_sub(self.bytes) >= RELEASE_AFTER_BYTES;
        if due {
            self.streams = streams;
            self.bytes = bytes;
        }
        due
    }

    fn due_for(&mut self, memory: &StreamMemory) -> bool {
        self.due(
            memory.closed.load(Ordering::Relaxed),
            memory.released.load(Ordering::Relaxed),
        )
    }
}

/// Accepts streams on `listener` within `limits` until the socket is gone.
pub(super) async fn accept_loop(
    weak: Weak<AntqSocket>,
    listener: TcpListener,
    limits: StreamLimits,
) {
    let mut rate = KeyedBuckets::new(
        limits.per_ip_per_sec,
        limits.per_ip_burst,
        MAX_TRACKED_SOURCES,
    );
    let held: Concurrency<IpAddr> = Concurrency::new(limits.per_ip_max_streams, limits.max_streams);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut release = ReleaseCheck::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = housekeeping.tick() => {
                let Some(socket) = weak.upgrade() else {
                    return;
                };
                if release.due_for(&socket.stream_memory) {
                    // Takes the allocator's locks for a few milliseconds:
                    // not on a runtime thread.
                    tokio::task::spawn_blocking(antq_platform::release_free_memory);
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
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
        let source = source_prefix(peer.ip());
        if !rate.try_take(source, 1.0, Instant::now()) {
            socket.refuse(Refusal::Rate, peer);
            continue;
        }
        let permit = match held.acquire_fair(source) {
            Ok((permit, victim)) => {
                // At the total cap: the largest holder makes room.
                if let Some(victim) = victim {
                    socket.evict_stream_of(victim);
                }
                permit
            }
            Err(ConcurrencyError::PerKey) => {
                socket.refuse(Refusal::SourceCap, peer);
                continue;
            }
            Err(ConcurrencyError::Total) => {
                socket.refuse(Refusal::TotalCap, peer);
                continue;
            }
        };
        let admission = Admission {
            permit,
            claim_timeout: limits.claim_timeout,
        };
        socket.attach_stream(stream, peer, Some(admission));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_due_after_many_closes_or_many_bytes() {
        let mut check = ReleaseCheck::default();
        assert!(!check.due(0, 0));
        assert!(!check.due(RELEASE_AFTER_STREAMS - 1, RELEASE_AFTER_BYTES - 1));
        assert!(check.due(RELEASE_AFTER_STREAMS, 0));
        // The baseline moved: the same totals are not due again.
        assert!(!check.due(RELEASE_AFTER_STREAMS, 0));
        assert!(!check.due(RELEASE_AFTER_STREAMS + 1, RELEASE_AFTER_BYTES - 1));
        assert!(check.due(RELEASE_AFTER_STREAMS + 1, RELEASE_AFTER_BYTES));
        assert!(!check.due(2 * RELEASE_AFTER_STREAMS, RELEASE_AFTER_BYTES + 1));
    }
}
