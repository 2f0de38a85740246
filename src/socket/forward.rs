//! Relay forwarding on a bootstrap: paced, batched.
//!
//! A `RELAY_DATA` frame that matches a forwarding entry is re-labelled
//! with the other peer's channel and sent on, within two [`Pacer`]s: its
//! direction's limit and its sender's [`super::RelayBudget`]. Within the
//! burst it leaves at once; above the rate it waits in a queue, at most
//! [`FORWARD_MAX_DELAY`], and leaves when the pacers allow; frames that
//! would wait longer are dropped and counted. A relay that dropped
//! everything above the rate made TCP in the tunnel thrash; this one lets
//! a flow settle at the rate.
//!
//! Frames that leave at once are gathered per receive batch: consecutive
//! frames to the same address go out in one GSO send (a GRO batch from
//! one peer is one send to the other).
//!
//! Lock order: `forwards` (read) → the entry's pacer → its budget; the
//! batch and the queue locks are taken alone.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::relay::RelayRoute;
use super::AntqSocket;
use crate::proto::raw::{encode_relay_header, RelayHeader};
use crate::ratelimit::Pacer;

/// How late a paced relay frame may leave: more is dropped. At the
/// default 25 MB/s that is 625 kB queued per direction at most, enough for
/// a TCP flow's window to back off and keep the direction busy.
pub const FORWARD_MAX_DELAY: Duration = Duration::from_millis(25);

/// Bytes of paced frames held at once, over all directions.
pub const FORWARD_QUEUE_BYTES: usize = 32 << 20;

/// Largest GSO send.
const GSO_MAX_BYTES: usize = 65_000;

/// A pacer for relay forwarding.
pub(super) fn relay_pacer(bytes_per_sec: f64, burst_bytes: f64, now: Instant) -> Pacer {
    Pacer::new(bytes_per_sec, burst_bytes, FORWARD_MAX_DELAY, now)
}

/// Frames to send at once, gathered into GSO sends: all frames of one send
/// go to `to` and have the same length, but the last may be shorter.
#[derive(Debug, Default)]
pub(super) struct ForwardBatch {
    to: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// The last frame was shorter than `segment`: nothing may follow it.
    closed: bool,
    buf: Vec<u8>,
}

/// A frame waiting for its pacers.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delayed {
    at: Instant,
    seq: u64,
    to: SocketAddr,
    frame: Vec<u8>,
}

/// The frames waiting for their pacers, earliest first.
#[derive(Debug, Default)]
pub(super) struct DelayedFrames {
    heap: BinaryHeap<Reverse<Delayed>>,
    bytes: usize,
    seq: u64,
    /// A task sends them (it ends when none is left).
    running: bool,
    wake: Arc<Notify>,
}

impl AntqSocket {
    /// Forwards one relay frame if a forwarding entry matches; returns
    /// whether one did. Frames sent at once wait in the batch until
    /// [`Self::flush_forwards`].
    pub(super) fn forward(&self, from: RelayRoute, segment: &[u8]) -> bool {
        let forwards = self.forwards.read().unwrap_or_else(PoisonError::into_inner);
        let Some(forward) = forwards.get(&from) else {
            return false;
        };
        let now = Instant::now();
        let cost = segment.len() as f64;
        let departure = {
            let mut pacer = forward.pacer.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(ours) = pacer.departure(cost, now) else {
                self.stats.forward_limited.fetch_add(1, Ordering::Relaxed);
                return true;
            };
            let mut budget = forward.budget.lock();
            let Some(theirs) = budget.departure(cost, now) else {
                self.stats
                    .forward_budget_limited
                    .fetch_add(1, Ordering::Relaxed);
                return true;
            };
            pacer.take(cost, now);
            budget.take(cost, now);
            ours.max(theirs)
        };
        let (to, channel) = (forward.to.server, forward.to.channel);
        drop(forwards);
        if departure <= now {
            self.batch_forward(to, channel, segment);
        } else {
            self.delay_forward(departure, to, channel, segment);
        }
        true
    }

    /// Adds a frame to the batch of frames leaving now, re-labelled with
    /// `channel`.
    fn batch_forward(&self, to: SocketAddr, channel: u32, segment: &[u8]) {
        let mut batch = self
            .forward_batch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start = self.batch_frame(&mut batch, to, segment);
        relabel(&mut batch.buf[start..], channel);
    }

    /// Appends `frame` for `to` to `batch`, sending what it held first if
    /// the frame cannot join it; returns where the frame starts.
    fn batch_frame(&self, batch: &mut ForwardBatch, to: SocketAddr, frame: &[u8]) -> usize {
        let fits = batch.to == Some(to)
            && !batch.closed
            && frame.len() <= batch.segment
            && batch.count < self.inner.max_transmit_segments()
            && batch.buf.len() + frame.len() <= GSO_MAX_BYTES;
        if !fits {
            self.send_batch(batch);
            batch.to = Some(to);
            batch.segment = frame.len();
        }
        batch.closed = frame.len() < batch.segment;
        batch.count += 1;
        let start = batch.buf.len();
        batch.buf.extend_from_slice(frame);
        start
    }

    /// Sends the frames batched by [`Self::forward`]: at the end of each
    /// receive batch.
    pub(super) fn flush_forwards(&self) {
        let mut batch = self
            .forward_batch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.send_batch(&mut batch);
    }

    fn send_batch(&self, batch: &mut ForwardBatch) {
        let Some(to) = batch.to.take() else {
            return;
        };
        let count = batch.count;
        // Best effort, like any router: a full socket buffer drops it.
        let segment = (count > 1).then_some(batch.segment);
        let sent = self.try_send_raw_segments(to, &batch.buf, segment).is_ok();
        if sent {
            self.stats
                .forwarded
                .fetch_add(count as u64, Ordering::Relaxed);
            self.stats
                .forwarded_bytes
                .fetch_add(batch.buf.len() as u64, Ordering::Relaxed);
        }
        batch.buf.clear();
        batch.count = 0;
        batch.closed = false;
    }

    /// Queues a frame until `at`; the queue's task sends it then.
    fn delay_forward(&self, at: Instant, to: SocketAddr, channel: u32, segment: &[u8]) {
        let mut frame = segment.to_vec();
        relabel(&mut frame, channel);
        let mut queue = self
            .forward_queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if queue.bytes + frame.len() > FORWARD_QUEUE_BYTES {
            self.stats
                .forward_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !queue.running {
            let (Some(socket), Ok(runtime)) =
                (self.me.upgrade(), tokio::runtime::Handle::try_current())
            else {
                self.stats
                    .forward_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                return;
            };
            runtime.spawn(send_delayed(socket));
            queue.running = true;
        }
        let earliest = queue.heap.peek().is_none_or(|Reverse(d)| at < d.at);
        queue.seq += 1;
        queue.bytes += frame.len();
        let seq = queue.seq;
        queue.heap.push(Reverse(Delayed { at, seq, to, frame }));
        self.stats.forward_delayed.fetch_add(1, Ordering::Relaxed);
        if earliest {
            queue.wake.notify_one();
        }
    }
}

/// Puts `channel` in the relay header at the start of `frame`.
fn relabel(frame: &mut [u8], channel: u32) {
    if let Some(header) = frame.first_chunk_mut::<{ RelayHeader::LEN }>() {
        encode_relay_header(channel, header);
    }
}

/// Sends the queued frames when they are due; ends when none is left.
async fn send_delayed(socket: Arc<AntqSocket>) {
    let mut due = Vec::new();
    loop {
        let (next, wake) = {
            let mut queue = socket
                .forward_queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            while queue.heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                let Some(Reverse(frame)) = queue.heap.pop() else {
                    break;
                };
                queue.bytes -= frame.frame.len();
                due.push(frame);
            }
            let next = queue.heap.peek().map(|Reverse(d)| d.at);
            if next.is_none() && due.is_empty() {
                queue.running = false;
                return;
            }
            (next, queue.wake.clone())
        };
        if !due.is_empty() {
            let mut batch = socket
                .forward_batch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for frame in due.drain(..) {
                // Already re-labelled: batch it as it is.
                socket.batch_frame(&mut batch, frame.to, &frame.frame);
            }
            socket.send_batch(&mut batch);
        }
        if let Some(next) = next {
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                () = wake.notified() => {}
            }
        }
    }
}
