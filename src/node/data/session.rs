//! [`DataSession`]: one connection's data plane as the datapath shares it
//! (its sending and receiving halves, each behind its own lock, and
//! whether the peer has shown that it takes frames).
//!
//! Lock order: `sealer` and `opener` are never held together, nor while
//! anything else is locked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{DataError, DataKeys, Opener, Sealer};
use crate::proto::data::{DataHeader, DataKind, Signal};

/// How often a hello is repeated while the peer has not shown that it
/// takes frames and we have traffic for it.
pub const HELLO_INTERVAL: Duration = Duration::from_millis(100);

/// One connection's data plane.
pub struct DataSession {
    local_index: u32,
    sealer: Mutex<Sealer>,
    opener: Mutex<Opener>,
    /// An authenticated frame came from the peer: its receive side is up.
    peer_ready: AtomicBool,
    /// When the last hello left (`None`: never).
    last_hello: Mutex<Option<Instant>>,
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
    /// A session from its keys.
    pub fn new(keys: DataKeys) -> Self {
        DataSession {
            local_index: keys.local_index,
            sealer: Mutex::new(keys.sealer),
            opener: Mutex::new(keys.opener),
            peer_ready: AtomicBool::new(false),
            last_hello: Mutex::new(None),
        }
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
            DataSession::new(DataKeys::from_exporter(&material, true)),
            DataSession::new(DataKeys::from_exporter(&material, false)),
        )
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
