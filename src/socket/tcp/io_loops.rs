//! Reading and writing one stream path: its deadlines, and buffers that grow
//! on demand and are given back when the stream goes quiet.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::{
    AntqSocket, Refusal, StreamMemory, FIRST_FRAME_TIMEOUT, IDLE_TIMEOUT, IO_CHUNK, PREFACE_TIMEOUT,
};
use crate::socket::framing::FrameDecoder;

/// The read buffer a stream starts with, and goes back to.
const READ_MIN: usize = 4 * 1024;
/// A stream that received nothing for this long gives back its buffers.
const QUIET: Duration = Duration::from_secs(1);
/// A write that makes no progress for this long closes the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The read buffer size after a read of `n` bytes into `len`: doubled (up
/// to [`IO_CHUNK`]) when the read filled it, halved (down to [`READ_MIN`])
/// when it used a quarter or less.
fn next_read_size(len: usize, n: usize) -> usize {
    if n >= len {
        (len * 2).min(IO_CHUNK)
    } else if n <= len / 4 {
        (len / 2).max(READ_MIN)
    } else {
        len
    }
    .max(READ_MIN)
}

/// A stream's read buffer: allocated at its size when there is something
/// to read, dropped when the stream goes quiet. The size grows beyond
/// [`READ_MIN`] only within the socket's growth budget
/// ([`StreamMemory::try_grow`]), which it holds until it shrinks or is
/// dropped (also when the reader task is aborted).
#[derive(Debug)]
struct ReadBuf {
    buf: Vec<u8>,
    size: usize,
    owner: Weak<AntqSocket>,
}

impl ReadBuf {
    fn new(owner: Weak<AntqSocket>) -> Self {
        Self {
            buf: Vec::new(),
            size: READ_MIN,
            owner,
        }
    }

    /// The buffer to read into.
    fn get(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; self.size];
        }
        &mut self.buf
    }

    /// After a read of `n` bytes: the size of the next buffer, grown only if
    /// `may_grow` and the budget allows. Returns the bytes of buffer given
    /// back.
    fn adapt(&mut self, n: usize, may_grow: bool, memory: &StreamMemory) -> usize {
        let next = next_read_size(self.size, n);
        if next > self.size && !(may_grow && memory.try_grow(next - self.size)) {
            return 0;
        }
        if next == self.size {
            return 0;
        }
        if next < self.size {
            memory.shrunk(self.size - next);
        }
        self.size = next;
        // Allocated at the new size by the next read.
        std::mem::take(&mut self.buf).capacity()
    }

    /// Frees the buffer and goes back to the initial size; returns the bytes
    /// given back.
    fn release(&mut self, memory: &StreamMemory) -> usize {
        memory.shrunk(self.size - READ_MIN);
        self.size = READ_MIN;
        std::mem::take(&mut self.buf).capacity()
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Some(socket) = self.owner.upgrade() {
            let freed = self.release(&socket.stream_memory);
            socket.stream_memory.released(freed);
        }
    }
}

/// `now + t`; a `t` too large for [`Instant`] counts as a year (no panic on
/// any configured timeout).
fn later(now: Instant, t: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(t)
        .or_else(|| now.checked_add(YEAR))
        .unwrap_or(now)
}

/// Which deadline of a stream passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// Nothing received for [`IDLE_TIMEOUT`].
    Idle,
    /// Server side: no preface, or no first frame after it, in time.
    Handshake,
    /// Server side: the claim deadline (the stream may have been claimed).
    Claim,
}

/// The deadlines of one stream.
#[derive(Debug)]
struct Deadlines {
    /// Server side, until the first frame: by when the next step of the
    /// handshake (preface, then first frame) must be done.
    handshake: Option<Instant>,
    /// Server side, until the stream is seen claimed.
    claim: Option<Instant>,
    /// When something was last received.
    last_rx: Instant,
}

impl Deadlines {
    /// The deadlines of a stream opened at `now`; `claim_timeout` is given
    /// for server-side streams only.
    fn new(now: Instant, claim_timeout: Option<Duration>) -> Self {
        Self {
            handshake: claim_timeout.map(|_| now + PREFACE_TIMEOUT),
            claim: claim_timeout.map(|t| later(now, t)),
            last_rx: now,
        }
    }

    /// The preface was read in full at `now`.
    fn preface_done(&mut self, now: Instant) {
        if self.handshake.is_some() {
            self.handshake = Some(now + FIRST_FRAME_TIMEOUT);
        }
    }

    /// A whole frame was read.
    fn first_frame(&mut self) {
        self.handshake = None;
    }

    /// The stream was seen claimed.
    fn claimed(&mut self) {
        self.claim = None;
    }

    /// The earliest deadline and what it is.
    fn next(&self) -> (Instant, Expiry) {
        let mut next = (self.last_rx + IDLE_TIMEOUT, Expiry::Idle);
        for (at, what) in [
            (self.handshake, Expiry::Handshake),
            (self.claim, Expiry::Claim),
        ] {
            if let Some(at) = at.filter(|at| *at < next.0) {
                next = (at, what);
            }
        }
        next
    }
}

/// Handles a passed deadline of stream path `addr`: the reason to close it,
/// or `None` if it goes on (it was claimed).
fn expired(
    socket: &AntqSocket,
    addr: SocketAddr,
    peer: SocketAddr,
    expiry: Expiry,
    deadlines: &mut Deadlines,
) -> Option<String> {
    match expiry {
        Expiry::Idle => Some(format!("nothing received for {IDLE_TIMEOUT:?}")),
        Expiry::Handshake => {
            socket.refuse(Refusal::HandshakeTimeout, peer);
            Some(Refusal::HandshakeTimeout.as_str().to_owned())
        }
        Expiry::Claim => match socket.stream_claimed(addr) {
            Some(true) => {
                deadlines.claimed();
                None
            }
            Some(false) => {
                socket.refuse(Refusal::ClaimTimeout, peer);
                Some(Refusal::ClaimTimeout.as_str().to_owned())
            }
            None => Some("closed".to_owned()),
        },
    }
}

/// Reads frames from stream path `addr` (TCP peer `peer`) until it ends,
/// fails or a deadline passes, then closes the path. `claim_timeout` is
/// given for server-side streams only (they expect a preface).
pub(super) async fn read_loop(
    weak: Weak<AntqSocket>,
    addr: SocketAddr,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    claim_timeout: Option<Duration>,
) {
    let server_side = claim_timeout.is_some();
    let mut decoder = FrameDecoder::new(server_side);
    let mut preface_seen = !server_side;
    let mut deadlines = Deadlines::new(Instant::now(), claim_timeout);
    let mut buf = ReadBuf::new(weak.clone());
    // When to give the buffers back, if nothing comes before.
    let mut quiet_at: Option<Instant> = None;
    let reason = loop {
        // Checked before every wait, so a peer that keeps sending cannot put
        // its deadlines off.
        let (deadline, expiry) = deadlines.next();
        if Instant::now() >= deadline {
            let Some(socket) = weak.upgrade() else {
                return;
            };
            match expired(&socket, addr, peer, expiry, &mut deadlines) {
                Some(reason) => break reason,
                None => continue,
            }
        }
        let quiet = quiet_at.filter(|q| *q < deadline);
        let wake = quiet.unwrap_or(deadline);
        match tokio::time::timeout_at(wake.into(), rd.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => break error.to_string(),
            Err(_) if quiet.is_some() => {
                quiet_at = None;
                let Some(socket) = weak.upgrade() else {
                    return;
                };
                let before = decoder.capacity();
                decoder.shrink();
                let freed = buf.release(&socket.stream_memory) + before - decoder.capacity();
                socket.stream_memory.released(freed);
                continue;
            }
            // The deadline: handled at the top.
            Err(_) => continue,
        }
        let n = match rd.try_read(buf.get()) {
            Ok(0) => match decoder.finish() {
                Ok(()) => break "closed by the peer".to_owned(),
                Err(error) => {
                    if let Some(s) = weak.upgrade() {
                        s.stats.stream_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    break error.to_string();
                }
            },
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => break error.to_string(),
        };
        let now = Instant::now();
        deadlines.last_rx = now;
        quiet_at = Some(now + QUIET);
        let Some(socket) = weak.upgrade() else {
            return;
        };
        let mut delivered = false;
        let mut framed = false;
        let decoded = decoder.decode(buf.get().get(..n).unwrap_or_default(), |frame| {
            framed = true;
            delivered |= socket.ingest_stream(addr, frame);
        });
        if delivered {
            socket.wake_recv();
        }
        if let Err(error) = decoded {
            socket.stats.stream_errors.fetch_add(1, Ordering::Relaxed);
            break error.to_string();
        }
        if !preface_seen && decoder.preface_done() {
            preface_seen = true;
            deadlines.preface_done(now);
        }
        if framed {
            deadlines.first_frame();
        }
        // Only a claimed (authenticated) stream's buffer grows: before its
        // QUIC handshake completes, a stream carries a few small packets.
        let mut may_grow = deadlines.claim.is_none();
        if !may_grow && n >= buf.size && socket.stream_claimed(addr) == Some(true) {
            deadlines.claimed();
            may_grow = true;
        }
        let freed = buf.adapt(n, may_grow, &socket.stream_memory);
        socket.stream_memory.released(freed);
    };
    tracing::debug!(%addr, %peer, %reason, "TCP stream ends");
    drop(buf);
    if let Some(socket) = weak.upgrade() {
        socket.stream_memory.released(decoder.capacity());
        socket.close_stream(addr);
    }
}

/// Writes what is queued for stream path `addr` until the queue closes (the
/// path is gone) or a write fails or stalls, then shuts the stream down.
/// Frames queued together are coalesced into one write of up to
/// [`IO_CHUNK`] bytes, in a buffer allocated for that write only.
pub(super) async fn write_loop(
    weak: Weak<AntqSocket>,
    addr: SocketAddr,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(first) = rx.recv().await {
        let mut len = first.len();
        let mut more = Vec::new();
        while len < IO_CHUNK {
            match rx.try_recv() {
                Ok(next) => {
                    len += next.len();
                    more.push(next);
                }
                Err(_) => break,
            }
        }
        // The preface was never counted; saturate instead of wrapping.
        let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
            Some(q.saturating_sub(len))
        });
        let written = if more.is_empty() {
            tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&first)).await
        } else {
            let mut batch = Vec::with_capacity(len);
            batch.extend_from_slice(&first);
            for b in more.drain(..) {
                batch.extend_from_slice(&b);
            }
            tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&batch)).await
        };
        match written {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::tcp::READ_GROWTH_BUDGET;

    #[test]
    fn read_buffer_grows_while_filled_and_shrinks_back() {
        assert_eq!(next_read_size(READ_MIN, READ_MIN), 2 * READ_MIN);
        let mut len = READ_MIN;
        while len < IO_CHUNK {
            len = next_read_size(len, len);
        }
        assert_eq!(len, IO_CHUNK);
        assert_eq!(next_read_size(IO_CHUNK, IO_CHUNK), IO_CHUNK);
        // Reads of a QUIC packet or so keep a small buffer small ...
        assert_eq!(next_read_size(READ_MIN, 1200), READ_MIN);
        assert_eq!(next_read_size(READ_MIN, 1), READ_MIN);
        // ... and bring a large one back down.
        let mut len = IO_CHUNK;
        for _ in 0..8 {
            len = next_read_size(len, 1200);
        }
        assert_eq!(len, READ_MIN);
        assert_eq!(next_read_size(IO_CHUNK, IO_CHUNK / 2), IO_CHUNK);
    }

    #[test]
    fn read_buffers_grow_only_when_allowed_and_within_the_budget() {
        let memory = StreamMemory::default();
        let mut b = ReadBuf::new(Weak::new());
        assert_eq!(b.get().len(), READ_MIN);
        // Not claimed yet: stays small however full the reads.
        assert_eq!(b.adapt(READ_MIN, false, &memory), 0);
        assert_eq!(b.get().len(), READ_MIN);
        // Claimed: doubles while reads fill it, holding budget for it.
        assert_eq!(b.adapt(READ_MIN, true, &memory), READ_MIN);
        assert_eq!(b.get().len(), 2 * READ_MIN);
        assert_eq!(memory.grown.load(Ordering::Relaxed), READ_MIN);
        // With the budget used up by others, it stays as it is.
        assert!(memory.try_grow(READ_GROWTH_BUDGET - READ_MIN));
        assert_eq!(b.adapt(2 * READ_MIN, true, &memory), 0);
        assert_eq!(b.get().len(), 2 * READ_MIN);
        memory.shrunk(READ_GROWTH_BUDGET - READ_MIN);
        // Going quiet gives back the buffer and the budget.
        assert_eq!(b.release(&memory), 2 * READ_MIN);
        assert_eq!(memory.grown.load(Ordering::Relaxed), 0);
        assert_eq!(b.get().len(), READ_MIN);
        // Small reads bring a grown buffer back down, budget and all.
        let mut len = READ_MIN;
        while len < IO_CHUNK {
            assert!(b.adapt(len, true, &memory) > 0);
            len *= 2;
            assert_eq!(b.get().len(), len);
        }
        assert_eq!(memory.grown.load(Ordering::Relaxed), IO_CHUNK - READ_MIN);
        for _ in 0..8 {
            b.adapt(100, true, &memory);
        }
        assert_eq!(b.get().len(), READ_MIN);
        assert_eq!(memory.grown.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn server_side_deadlines_follow_the_handshake_and_the_claim() {
        let t0 = Instant::now();
        let claim = Duration::from_secs(10);
        let mut d = Deadlines::new(t0, Some(claim));
        assert_eq!(d.next(), (t0 + PREFACE_TIMEOUT, Expiry::Handshake));
        let t1 = t0 + Duration::from_secs(3);
        d.last_rx = t1;
        d.preface_done(t1);
        assert_eq!(d.next(), (t1 + FIRST_FRAME_TIMEOUT, Expiry::Handshake));
        d.first_frame();
        assert_eq!(d.next(), (t0 + claim, Expiry::Claim));
        // Receiving does not put off the claim deadline.
        let t2 = t0 + Duration::from_secs(9);
        d.last_rx = t2;
        assert_eq!(d.next(), (t0 + claim, Expiry::Claim));
        d.claimed();
        assert_eq!(d.next(), (t2 + IDLE_TIMEOUT, Expiry::Idle));
        // Any claim timeout, however large, is fine.
        let d = Deadlines::new(t0, Some(Duration::MAX));
        assert!(d.claim.is_some_and(|c| c > t0 + IDLE_TIMEOUT));
        // A claim deadline shorter than the handshake one comes first.
        let d = Deadlines::new(t0, Some(Duration::from_secs(1)));
        assert_eq!(d.next(), (t0 + Duration::from_secs(1), Expiry::Claim));
    }

    #[test]
    fn client_side_streams_only_go_idle() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, None);
        assert_eq!(d.next(), (t0 + IDLE_TIMEOUT, Expiry::Idle));
        d.preface_done(t0);
        assert_eq!(d.next(), (t0 + IDLE_TIMEOUT, Expiry::Idle));
    }
}
