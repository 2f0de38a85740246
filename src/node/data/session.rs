//! [`DataSession`]: one connection's data plane as the datapath shares it
//! (its sending and receiving halves, each behind its own lock, and
//! whether the peer has shown that it takes frames).
//!
//! Lock order: `sealer` and `opener` are never held together, nor while
//! anything else is locked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{DataError, DataKeys, Opener, Sealer};
use crate::proto::data::{DataHeader, DataKind, Signal};

/// How often a hello is repeated while the peer has not shown that it
/// takes frames and we have traffic for it; also how often one address
/// is probed.
pub const HELLO_INTERVAL: Duration = Duration::from_millis(100);

/// A receiver that has sent the peer nothing for this long answers the
/// frames it gets with a reply, so that the sender's dead-path detection
/// ([`crate::nat::Liveness`], which waits for answers) hears from it even
/// when the traffic goes one way.
pub const ANSWER_AFTER: Duration = Duration::from_millis(250);

/// Where frames go, and the address being proven.
#[derive(Debug)]
struct PathState {
    /// A proven address of the peer: where the connection was made, or
    /// where a hello with our token reached it.
    dest: SocketAddr,
    /// A hello sent to another address: that address, its token, when.
    probe: Option<(SocketAddr, [u8; 8], Instant)>,
}

/// One connection's data plane.
pub struct DataSession {
    local_index: u32,
    sealer: Mutex<Sealer>,
    opener: Mutex<Opener>,
    /// An authenticated frame came from the peer: its receive side is up.
    peer_ready: AtomicBool,
    /// When the last hello left (`None`: never).
    last_hello: Mutex<Option<Instant>>,
    path: Mutex<PathState>,
    /// Frames that opened.
    received: AtomicU64,
    /// Frames sealed when last looked at, and when that count last moved
    /// ([`Self::answer_due`]).
    sends_seen: Mutex<(u64, Option<Instant>)>,
}

impl std::fmt::Debug for DataSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSession")
            .field("local_index", &self.local_index)
            .field("peer_ready", &self.peer_ready())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DataSession {
    /// A session from its keys, sending to `dest` (the address the
    /// connection was made with: proven by its handshake).
    pub fn new(keys: DataKeys, dest: SocketAddr) -> Self {
        DataSession {
            local_index: keys.local_index,
            sealer: Mutex::new(keys.sealer),
            opener: Mutex::new(keys.opener),
            peer_ready: AtomicBool::new(false),
            last_hello: Mutex::new(None),
            path: Mutex::new(PathState { dest, probe: None }),
            received: AtomicU64::new(0),
            sends_seen: Mutex::new((0, None)),
        }
    }

    /// Frames received that opened.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether frames that just arrived should be answered: we have sent
    /// the peer nothing for [`ANSWER_AFTER`] (then at most one answer per
    /// [`ANSWER_AFTER`]).
    pub fn answer_due(&self, now: Instant) -> bool {
        let sent = self.sent();
        let mut seen = lock(&self.sends_seen);
        match *seen {
            (count, Some(at)) if count == sent => {
                if now.saturating_duration_since(at) >= ANSWER_AFTER {
                    seen.1 = Some(now);
                    true
                } else {
                    false
                }
            }
            _ => {
                *seen = (sent, Some(now));
                false
            }
        }
    }

    /// Where frames go: the peer's proven address.
    pub fn dest(&self) -> SocketAddr {
        lock(&self.path).dest
    }

    /// The peer seems to be at `addr` now (its frames come from there, or
    /// QUIC moved the connection there): unless `addr` is proven already,
    /// returns the token for a hello to send there, at most every
    /// [`HELLO_INTERVAL`] per address. `token` is fresh randomness.
    pub fn probe(&self, addr: SocketAddr, now: Instant, token: [u8; 8]) -> Option<[u8; 8]> {
        let mut path = lock(&self.path);
        if path.dest == addr {
            return None;
        }
        match path.probe {
            Some((at, _, sent))
                if at == addr && now.saturating_duration_since(sent) < HELLO_INTERVAL =>
            {
                None
            }
            _ => {
                path.probe = Some((addr, token, now));
                Some(token)
            }
        }
    }

    /// A reply with `token` opened: if it answers our probe, the peer
    /// received the hello at that address, which becomes the destination
    /// (returned).
    pub fn on_reply(&self, token: [u8; 8]) -> Option<SocketAddr> {
        let mut path = lock(&self.path);
        let (addr, expected, _) = path.probe?;
        if expected != token {
            return None;
        }
        path.dest = addr;
        path.probe = None;
        Some(addr)
    }

    /// Our receiver index: frames for this session carry it.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// Whether the peer showed that it takes frames (then we send them).
    pub fn peer_ready(&self) -> bool {
        self.peer_ready.load(Ordering::Relaxed)
    }

    /// Appends a `DATA` frame carrying `payload` to `out`; returns its
    /// length.
    pub fn seal(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<usize, DataError> {
        lock(&self.sealer).seal(DataKind::Datagram, payload, out)
    }

    /// Frames sealed so far.
    pub fn sent(&self) -> u64 {
        lock(&self.sealer).sent()
    }

    /// Appends a `DATA_SIGNAL` frame carrying `signal` to `out`.
    pub fn seal_signal(&self, signal: Signal, out: &mut Vec<u8>) -> Result<usize, DataError> {
        lock(&self.sealer).seal(DataKind::Signal, &signal.to_bytes(), out)
    }

    /// Whether a hello is due at `now` (none sent yet, or the last one
    /// [`HELLO_INTERVAL`] ago) while the peer is not ready; records it as
    /// sent.
    pub fn hello_due(&self, now: Instant) -> bool {
        if self.peer_ready() {
            return false;
        }
        let mut last = lock(&self.last_hello);
        match *last {
            Some(at) if now.saturating_duration_since(at) < HELLO_INTERVAL => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Opens a received frame in place; marks the peer ready when it
    /// opens.
    pub fn open<'a>(
        &self,
        header: DataHeader,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], DataError> {
        let payload = lock(&self.opener).open(header, sealed)?;
        self.peer_ready.store(true, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::data::EXPORTER_LEN;

    fn pair() -> (DataSession, DataSession) {
        let material = [7u8; EXPORTER_LEN];
        (
            DataSession::new(DataKeys::from_exporter(&material, true), addr(1)),
            DataSession::new(DataKeys::from_exporter(&material, false), addr(2)),
        )
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn frames_are_answered_when_we_sent_nothing_for_a_while() {
        let (a, _) = pair();
        let t0 = Instant::now();
        assert!(!a.answer_due(t0), "first look");
        assert!(!a.answer_due(t0 + ANSWER_AFTER / 2));
        assert!(a.answer_due(t0 + ANSWER_AFTER));
        assert!(!a.answer_due(t0 + ANSWER_AFTER), "once per interval");
        // Anything we send is the answer.
        a.seal(&[0x45], &mut Vec::new()).unwrap();
        assert!(!a.answer_due(t0 + 3 * ANSWER_AFTER));
        assert!(!a.answer_due(t0 + 3 * ANSWER_AFTER + ANSWER_AFTER / 2));
        assert!(a.answer_due(t0 + 4 * ANSWER_AFTER));
    }

    #[test]
    fn a_new_address_is_used_once_a_hello_there_is_answered() {
        let (a, _) = pair();
        let t0 = Instant::now();
        assert_eq!(a.probe(addr(1), t0, [1; 8]), None, "the proven one");
        assert_eq!(a.probe(addr(9), t0, [1; 8]), Some([1; 8]));
        assert_eq!(a.probe(addr(9), t0, [2; 8]), None, "once per interval");
        assert_eq!(a.probe(addr(9), t0 + HELLO_INTERVAL, [3; 8]), Some([3; 8]));
        // Old tokens and strangers' answers move nothing.
        assert_eq!(a.on_reply([1; 8]), None);
        assert_eq!(a.dest(), addr(1));
        assert_eq!(a.on_reply([3; 8]), Some(addr(9)));
        assert_eq!(a.dest(), addr(9));
        assert_eq!(a.on_reply([3; 8]), None, "answered once");
        // Another address replaces the one being proven.
        assert_eq!(a.probe(addr(7), t0, [4; 8]), Some([4; 8]));
        assert_eq!(a.probe(addr(8), t0, [5; 8]), Some([5; 8]));
        assert_eq!(a.on_reply([4; 8]), None);
        assert_eq!(a.dest(), addr(9));
    }

    #[test]
    fn a_peer_is_ready_once_one_of_its_frames_opened() {
        let (a, b) = pair();
        let t0 = Instant::now();
        assert!(a.hello_due(t0));
        assert!(!a.hello_due(t0 + HELLO_INTERVAL / 2));
        assert!(a.hello_due(t0 + HELLO_INTERVAL));
        let mut hello = Vec::new();
        a.seal_signal(Signal::Hello { token: [1; 8] }, &mut hello)
            .unwrap();
        assert!(!b.peer_ready());
        let (header, _) = DataHeader::decode(&hello).unwrap();
        let payload = b.open(header, &mut hello[DataHeader::LEN..]).unwrap();
        assert_eq!(header.kind, DataKind::Signal);
        assert_eq!(Signal::decode(payload), Ok(Signal::Hello { token: [1; 8] }));
        assert!(b.peer_ready());
        assert!(!b.hello_due(t0), "no hellos to a ready peer");
        // A frame that does not open proves nothing.
        let mut junk = hello.clone();
        let n = junk.len();
        junk[n - 1] ^= 1;
        let (header, _) = DataHeader::decode(&junk).unwrap();
        assert!(a.open(header, &mut junk[DataHeader::LEN..]).is_err());
        assert!(!a.peer_ready());
    }
}
