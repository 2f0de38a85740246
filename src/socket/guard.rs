//! The send guard (bootstrap side): 1-RTT QUIC packets go only to proven
//! addresses.
//!
//! QUIC moves a server-side connection to the source of the newest packet
//! before validating it, so one spoofed packet would make quinn send to a
//! victim. With the guard on ([`AntqSocket::guard_sends`]), short-header
//! packets leave only toward addresses someone proved: a handshake's
//! validated source, or an address whose owner answered a challenge
//! ([`AntqSocket::prove`]). Packets to any other address are held while a
//! 17-byte `ADDRESS_CHALLENGE` goes there ([`super::proof`]), and sent once
//! it is proven, or dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use quinn::udp::Transmit;

use super::{proof, AntqSocket};
use crate::nat::canonical;
use crate::proto::raw;

/// Addresses QUIC may send 1-RTT packets to, when the guard is on
/// ([`AntqSocket::guard_sends`]): each is held by [`ProvenGuard`]s, and
/// allowed while one is alive and for [`PROVEN_GRACE`] after the last one
/// went (a closing connection's last packets leave after its owner let go).
#[derive(Debug, Default)]
pub struct ProvenAddrs {
    on: std::sync::atomic::AtomicBool,
    held: RwLock<HashMap<SocketAddr, Holders>>,
}

/// How long an address stays allowed after its last guard went.
pub const PROVEN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The guards of one address, and when the last one went.
#[derive(Debug, Default, Clone, Copy)]
struct Holders {
    count: u32,
    released: Option<Instant>,
}

impl Holders {
    fn allowed(&self, now: Instant) -> bool {
        self.count > 0
            || self
                .released
                .is_some_and(|t| now.saturating_duration_since(t) < PROVEN_GRACE)
    }
}

impl ProvenAddrs {
    /// Whether QUIC may send 1-RTT packets to `addr` now.
    pub(super) fn holds(&self, addr: SocketAddr) -> bool {
        self.held
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&canonical(addr))
            .is_some_and(|h| h.allowed(Instant::now()))
    }
}

/// Keeps one address in [`ProvenAddrs`] while alive.
#[derive(Debug)]
pub struct ProvenGuard {
    socket: Arc<AntqSocket>,
    addr: SocketAddr,
}

impl ProvenGuard {
    /// The address held.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ProvenGuard {
    fn drop(&mut self) {
        let mut held = self
            .socket
            .proven
            .held
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.get_mut(&self.addr) {
            h.count = h.count.saturating_sub(1);
            if h.count == 0 {
                h.released = Some(Instant::now());
            }
        }
    }
}

impl AntqSocket {
    /// Turns on the guard: from now on 1-RTT QUIC packets go only to
    /// addresses held by a [`ProvenGuard`] ([`Self::prove`]). Relay and
    /// stream paths (virtual addresses) and raw frames are not affected, nor
    /// are handshake packets (long header; an unvalidated client gets only a
    /// Retry, which is smaller than what it sent).
    pub fn guard_sends(&self) {
        self.proven.on.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::guard_sends`] is on.
    pub fn guards_sends(&self) -> bool {
        self.proven.on.load(Ordering::Relaxed)
    }

    /// Holds `addr` as proven (a handshake's validated source, or an
    /// address whose owner answered a challenge) until the guard is
    /// dropped. QUIC packets held for it leave now.
    pub fn prove(self: &Arc<Self>, addr: SocketAddr) -> ProvenGuard {
        let addr = canonical(addr);
        {
            let mut held = self
                .proven
                .held
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            held.retain(|_, h| h.allowed(now));
            held.entry(addr).or_default().count += 1;
        }
        let released = self.lock_proofs().release(addr);
        for packet in released {
            let sent = self.inner.try_send(&Transmit {
                destination: self.to_wire(addr),
                ecn: None,
                contents: &packet.contents,
                segment_size: packet.segment_size,
                src_ip: self.source_ip(packet.src_ip),
            });
            if sent.is_ok() {
                self.stats.proven_released.fetch_add(1, Ordering::Relaxed);
            }
        }
        ProvenGuard {
            socket: self.clone(),
            addr,
        }
    }

    /// The address an `ADDRESS_CHALLENGE` with `token` went to, while its
    /// challenge is under way. A peer that sends the token back on its
    /// authenticated connection has shown that it receives there: prove the
    /// address for it ([`Self::prove`]).
    pub fn challenged_address(&self, token: &[u8; 16]) -> Option<SocketAddr> {
        self.lock_proofs().address_of(token)
    }

    /// Challenges under way (addresses with held packets).
    pub fn challenges_pending(&self) -> usize {
        self.lock_proofs().len()
    }

    /// Forgets challenges that ran out, with their held packets.
    pub fn expire_challenges(&self) {
        self.lock_proofs().expire(Instant::now());
    }

    fn lock_proofs(&self) -> std::sync::MutexGuard<'_, proof::Proofs> {
        self.proofs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds a QUIC send to an unproven address and challenges the address
    /// (see [`proof`]).
    pub(super) fn hold_for_proof(&self, transmit: &Transmit<'_>) {
        let to = canonical(transmit.destination);
        let packet = proof::HeldPacket {
            contents: transmit.contents.to_vec(),
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        };
        let held = self
            .lock_proofs()
            .hold(to, packet, Instant::now(), rand::random());
        match held {
            proof::HoldOutcome::Challenge(token) => {
                self.stats.unproven_held.fetch_add(1, Ordering::Relaxed);
                let frame = raw::AddressChallenge { token }.to_bytes();
                if self.try_send_raw(to, &frame).is_ok() {
                    self.stats.challenges_sent.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%to, "QUIC moved a connection to an unproven address; challenged");
            }
            proof::HoldOutcome::Waiting => {
                self.stats.unproven_held.fetch_add(1, Ordering::Relaxed);
            }
            proof::HoldOutcome::Dropped => {
                self.stats.unproven_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
