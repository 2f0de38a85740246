//! The bootstrap's state, sans-IO: connected peers, their proven addresses
//! and candidates, relay requests waiting for consent, relay allocations,
//! and the address challenges under way.
//!
//! Every decision about what a peer may make the bootstrap hold or send is
//! taken here, with time and randomness passed in; [`super::Bootstrap`] only
//! does the I/O (control messages, forwarding entries in the socket, raw
//! challenge frames). Each method returns what the driver must do.
//!
//! Rules:
//! - **An address is used only once the peer proved it.** A peer's address
//!   comes from its handshake (validated by a QUIC Retry or a TCP
//!   connection). When QUIC moves the connection elsewhere (which it does on
//!   the first packet from a new source, before validating it), the socket
//!   challenges the new address ([`crate::socket::proof`]); the peer's
//!   answer on its own connection is recorded with [`Registry::proved`], and
//!   only then does [`Registry::follow`] move the peer and its relays there.
//!   A proof counts only for the peer that sent it: another host at the
//!   address (which also sees the token) proves it for itself, not for a
//!   spoofer.
//! - **Relays need both keys' consent.** [`Registry::relay_request`] from a
//!   to b is held (for [`RELAY_REQUEST_TTL`]) until b asks for a too; only
//!   then is an allocation made. Requests and allocations are capped per key
//!   and in total; at the total cap, a key in at least two more than the
//!   asking pair gives one up ([`Registry::poll_evicted`]), so that keys
//!   with many relays cannot lock out keys with few.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::directory::Directory;
use super::Limits;
use crate::cert::CertError;
use crate::identity::PeerId;
use crate::proto::cert::Certificate;
use crate::proto::UnavailableReason;
use crate::ratelimit::TokenBucket;

/// How many candidates a peer may announce.
pub const MAX_CANDIDATES: usize = 16;
/// How long a relay request waits for the other key's.
pub const RELAY_REQUEST_TTL: Duration = Duration::from_secs(60);
/// Addresses a peer proved that are remembered (the newest ones).
const MAX_PROVEN: usize = 4;

/// A relay allocation between two peers; `a < b` by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The smaller key.
    pub a: PeerId,
    /// The larger key.
    pub b: PeerId,
    /// The channel `a` sends on (and receives `b`'s frames on).
    pub channel_a: u32,
    /// The channel `b` sends on.
    pub channel_b: u32,
    /// `a`'s proven address.
    pub addr_a: SocketAddr,
    /// `b`'s proven address.
    pub addr_b: SocketAddr,
}

impl Allocation {
    /// Whether `peer` is one of the two ends.
    pub fn has(&self, peer: PeerId) -> bool {
        self.a == peer || self.b == peer
    }

    /// The other end and the channel it receives on.
    pub fn other(&self, peer: PeerId) -> (PeerId, u32) {
        if self.a == peer {
            (self.b, self.channel_b)
        } else {
            (self.a, self.channel_a)
        }
    }
}

/// What a relay request led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Held until the other key asks too: tell it that we asked (it may
    /// answer at once instead of at its next retry).
    Waiting,
    /// Already held; nothing new to tell.
    StillWaiting,
    /// A new allocation: install its forwarding and grant both.
    Created(Allocation),
    /// The allocation exists already: grant both again.
    Exists(Allocation),
}

/// Why a request was refused, for the reply and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The coordination rate limit of the asking key.
    CoordinationRate,
    /// The other peer is not connected.
    NotConnected,
    /// A per-key cap on relay requests or allocations.
    RelayPerKeyCap,
    /// The total cap on relay requests or allocations.
    RelayTotalCap,
}

impl Refusal {
    /// The reason sent to the peer.
    pub fn reason(self) -> UnavailableReason {
        match self {
            Self::CoordinationRate => UnavailableReason::RateLimited,
            Self::NotConnected => UnavailableReason::NotConnected,
            Self::RelayPerKeyCap | Self::RelayTotalCap => UnavailableReason::LimitReached,
        }
    }
}

/// A peer proved a new address: its relays move there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The peer.
    pub peer: PeerId,
    /// The address it left.
    pub from: SocketAddr,
    /// The address it proved.
    pub to: SocketAddr,
    /// Its allocations, before and after the move (uninstall the first,
    /// install the second).
    pub relays: Vec<(Allocation, Allocation)>,
}

/// A peer left: its allocations are gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Left {
    /// Allocations removed (uninstall them; tell the other end).
    pub relays: Vec<Allocation>,
}

/// One connected peer.
#[derive(Debug)]
struct PeerEntry<H> {
    handle: H,
    /// The proven address.
    addr: SocketAddr,
    candidates: BTreeMap<u64, SocketAddr>,
    coordination: TokenBucket,
    /// Other addresses the peer proved (answered a challenge there), newest
    /// last.
    proven: Vec<SocketAddr>,
    /// Relay requests this key has waiting, and allocations it is in.
    waiting: usize,
    relays: usize,
}

/// Counts of what the registry holds, for metrics and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// Connected peers.
    pub peers: usize,
    /// Relay allocations.
    pub relays: usize,
    /// Relay requests waiting for the other key.
    pub relay_requests_waiting: usize,
    /// Members with a certificate in the directory.
    pub members: usize,
}

/// The bootstrap's state. `H` is the driver's handle on a peer's
/// connection (tests use a number).
#[derive(Debug)]
pub struct Registry<H> {
    limits: Limits,
    peers: HashMap<PeerId, PeerEntry<H>>,
    relays: HashMap<(PeerId, PeerId), Allocation>,
    /// Relay requests `(from, to)` waiting for `to`'s, with when they came.
    waiting: HashMap<(PeerId, PeerId), Instant>,
    /// Allocations removed to make room, for the driver.
    evicted: Vec<Allocation>,
    /// Connected members' certificates.
    directory: Directory,
}

fn pair(x: PeerId, y: PeerId) -> (PeerId, PeerId) {
    if x < y {
        (x, y)
    } else {
        (y, x)
    }
}

impl<H> Registry<H> {
    /// An empty registry under `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            peers: HashMap::new(),
            relays: HashMap::new(),
            waiting: HashMap::new(),
            evicted: Vec::new(),
            directory: Directory::new(),
        }
    }

    /// The member directory (certificates of connected peers).
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// A connected peer registers its certificate at `now` (Unix
    /// seconds); see [`Directory::register`]. Ignored for a key that is not
    /// connected (its registration would outlive it).
    pub fn register_member(
        &mut self,
        peer: PeerId,
        cert: Certificate,
        now: u64,
    ) -> Result<(), CertError> {
        if !self.peers.contains_key(&peer) {
            return Ok(());
        }
        self.directory.register(peer, cert, now)
    }

    /// What is held now.
    pub fn held(&self) -> Held {
        Held {
            peers: self.peers.len(),
            relays: self.relays.len(),
            relay_requests_waiting: self.waiting.len(),
            members: self.directory.len(),
        }
    }

    /// The handle of a connected peer.
    pub fn handle(&self, peer: &PeerId) -> Option<&H> {
        self.peers.get(peer).map(|e| &e.handle)
    }

    /// Every connected peer with its handle and proven address.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &H, SocketAddr)> {
        self.peers.iter().map(|(id, e)| (*id, &e.handle, e.addr))
    }

    /// A peer's proven address.
    pub fn address_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.peers.get(peer).map(|e| e.addr)
    }

    /// The candidates a peer announced.
    pub fn candidates_of(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.peers
            .get(peer)
            .map(|e| e.candidates.values().copied().collect())
            .unwrap_or_default()
    }

    /// A peer connected from `addr` (proven by its handshake). A key that was
    /// connected already is replaced: the old handle is returned (close it),
    /// and if the address changed, the relays follow.
    pub fn connect(
        &mut self,
        peer: PeerId,
        handle: H,
        addr: SocketAddr,
        now: Instant,
    ) -> (Option<H>, Option<Moved>) {
        let entry = PeerEntry {
            handle,
            addr,
            candidates: BTreeMap::new(),
            coordination: TokenBucket::new(
                self.limits.coordination_per_sec,
                self.limits.coordination_burst,
                now,
            ),
            proven: Vec::new(),
            waiting: 0,
            relays: 0,
        };
        match self.peers.entry(peer) {
            Entry::Vacant(v) => {
                v.insert(entry);
                (None, None)
            }
            Entry::Occupied(mut o) => {
                let old = o.get_mut();
                let from = old.addr;
                let kept_waiting = old.waiting;
                let kept_relays = old.relays;
                let old = std::mem::replace(o.get_mut(), entry);
                let e = o.get_mut();
                e.waiting = kept_waiting;
                e.relays = kept_relays;
                let moved = (from != addr).then(|| self.move_relays(peer, from, addr));
                (Some(old.handle), moved)
            }
        }
    }

    /// The peer with `handle` disconnected. Nothing happens if the key has
    /// reconnected since (`is_current` tells the handles apart).
    pub fn disconnect(
        &mut self,
        peer: PeerId,
        is_current: impl FnOnce(&H) -> bool,
    ) -> Option<Left> {
        if !self.peers.get(&peer).is_some_and(|e| is_current(&e.handle)) {
            return None;
        }
        self.peers.remove(&peer)?;
        self.directory.remove(&peer);
        let gone: Vec<(PeerId, PeerId)> = self
            .waiting
            .keys()
            .filter(|(from, to)| *from == peer || *to == peer)
            .copied()
            .collect();
        for key in gone {
            self.unwait(key);
        }
        let keys: Vec<(PeerId, PeerId)> = self
            .relays
            .iter()
            .filter(|(_, a)| a.has(peer))
            .map(|(k, _)| *k)
            .collect();
        let mut relays = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(alloc) = self.relays.remove(&key) {
                let (other, _) = alloc.other(peer);
                if let Some(e) = self.peers.get_mut(&other) {
                    e.relays = e.relays.saturating_sub(1);
                }
                relays.push(alloc);
            }
        }
        Some(Left { relays })
    }

    /// A candidate the peer announced; at most [`MAX_CANDIDATES`] are kept.
    pub fn add_candidate(&mut self, peer: PeerId, sequence: u64, addr: SocketAddr) {
        if let Some(e) = self.peers.get_mut(&peer) {
            if e.candidates.len() < MAX_CANDIDATES || e.candidates.contains_key(&sequence) {
                e.candidates.insert(sequence, addr);
            }
        }
    }

    /// A candidate the peer withdrew.
    pub fn remove_candidate(&mut self, peer: PeerId, sequence: u64) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.candidates.remove(&sequence);
        }
    }

    /// Takes one coordination token of `peer` (a FORWARD or RELAY_REQUEST).
    pub fn admit(&mut self, peer: PeerId, now: Instant) -> Result<(), Refusal> {
        let ok = self
            .peers
            .get_mut(&peer)
            .is_some_and(|e| e.coordination.try_take(1.0, now));
        if ok {
            Ok(())
        } else {
            Err(Refusal::CoordinationRate)
        }
    }

    /// Whether a relay request from `from` to `to` would answer one `to` has
    /// waiting (and so make the allocation). Such a consent costs no
    /// coordination token: a hub answering hundreds of peers at once would
    /// otherwise wait on its own rate limit, and what it makes is capped
    /// anyway.
    pub fn answers_waiting(&self, from: PeerId, to: PeerId, now: Instant) -> bool {
        self.waiting
            .get(&(to, from))
            .is_some_and(|t| now.saturating_duration_since(*t) < RELAY_REQUEST_TTL)
            && !self.relays.contains_key(&pair(from, to))
    }

    /// `from` asks for a relay with `to` (already admitted by
    /// [`Self::admit`], unless it [answers](Self::answers_waiting) a
    /// waiting request). `channels` are two distinct random numbers, used if
    /// an allocation is made.
    pub fn relay_request(
        &mut self,
        from: PeerId,
        to: PeerId,
        now: Instant,
        channels: [u32; 2],
    ) -> Result<RelayOutcome, Refusal> {
        let (Some(e_from), Some(e_to)) = (self.peers.get(&from), self.peers.get(&to)) else {
            return Err(Refusal::NotConnected);
        };
        if from == to {
            return Err(Refusal::NotConnected);
        }
        let key = pair(from, to);
        if let Some(existing) = self.relays.get(&key) {
            return Ok(RelayOutcome::Exists(*existing));
        }
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < RELAY_REQUEST_TTL;
        if self.waiting.get(&(to, from)).is_some_and(fresh) {
            if e_from.relays >= self.limits.relay_max_per_key
                || e_to.relays >= self.limits.relay_max_per_key
            {
                return Err(Refusal::RelayPerKeyCap);
            }
            let (addr_from, addr_to) = (e_from.addr, e_to.addr);
            let mine = e_from.relays.max(e_to.relays);
            if self.relays.len() >= self.limits.relay_max_total && !self.make_relay_room(mine) {
                return Err(Refusal::RelayTotalCap);
            }
            let [c0, c1] = channels;
            let (addr_a, addr_b) = if key.0 == from {
                (addr_from, addr_to)
            } else {
                (addr_to, addr_from)
            };
            let alloc = Allocation {
                a: key.0,
                b: key.1,
                channel_a: c0,
                channel_b: if c1 == c0 { c0.wrapping_add(1) } else { c1 },
                addr_a,
                addr_b,
            };
            self.unwait((to, from));
            self.unwait((from, to));
            self.relays.insert(key, alloc);
            for p in [from, to] {
                if let Some(e) = self.peers.get_mut(&p) {
                    e.relays += 1;
                }
            }
            return Ok(RelayOutcome::Created(alloc));
        }
        if let Some(asked) = self.waiting.get_mut(&(from, to)) {
            let renewed = !fresh(asked);
            *asked = now;
            return Ok(if renewed {
                RelayOutcome::Waiting
            } else {
                RelayOutcome::StillWaiting
            });
        }
        if e_from.waiting >= self.limits.relay_max_per_key {
            self.expire_waiting_of(from, now);
        }
        if self
            .peers
            .get(&from)
            .is_some_and(|e| e.waiting >= self.limits.relay_max_per_key)
        {
            return Err(Refusal::RelayPerKeyCap);
        }
        if self.waiting.len() >= self.limits.relay_max_total {
            self.expire(now);
            let mine = self.peers.get(&from).map_or(0, |e| e.waiting);
            if self.waiting.len() >= self.limits.relay_max_total && !self.make_waiting_room(mine) {
                return Err(Refusal::RelayTotalCap);
            }
        }
        self.waiting.insert((from, to), now);
        if let Some(e) = self.peers.get_mut(&from) {
            e.waiting += 1;
        }
        Ok(RelayOutcome::Waiting)
    }

    /// The peer answered a challenge to `addr` on its own connection: it
    /// receives there.
    pub fn proved(&mut self, peer: PeerId, addr: SocketAddr) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.proven.retain(|a| *a != addr);
            if e.proven.len() >= MAX_PROVEN {
                e.proven.remove(0);
            }
            e.proven.push(addr);
        }
    }

    /// QUIC says the peer's packets now come from `addr`: if the peer proved
    /// that address, it and its relays move there.
    pub fn follow(&mut self, peer: PeerId, addr: SocketAddr) -> Option<Moved> {
        let e = self.peers.get_mut(&peer)?;
        if e.addr == addr || !e.proven.contains(&addr) {
            return None;
        }
        let from = e.addr;
        e.addr = addr;
        Some(self.move_relays(peer, from, addr))
    }

    /// An allocation removed to make room at the total cap: uninstall it and
    /// tell both ends (`RELAY_CLOSE`). Drain after each
    /// [`Self::relay_request`].
    pub fn poll_evicted(&mut self) -> Option<Allocation> {
        self.evicted.pop()
    }

    /// The key holding the most by `count`, if that is at least two more
    /// than `mine` (the fair-share rule of the total caps).
    fn holder_above(&self, mine: usize, count: impl Fn(&PeerEntry<H>) -> usize) -> Option<PeerId> {
        let (top, n) = self
            .peers
            .iter()
            .map(|(id, e)| (*id, count(e)))
            .max_by_key(|(_, n)| *n)?;
        (n >= mine + 2).then_some(top)
    }

    /// At the total cap of allocations: if some key is in at least two more
    /// than `mine` (the larger count of the pair asking), one of its
    /// allocations goes, so that keys with many relays cannot lock out keys
    /// with few. Returns whether room was made.
    fn make_relay_room(&mut self, mine: usize) -> bool {
        let Some(top) = self.holder_above(mine, |e| e.relays) else {
            return false;
        };
        let Some(key) = self
            .relays
            .iter()
            .find(|(_, a)| a.has(top))
            .map(|(k, _)| *k)
        else {
            return false;
        };
        let Some(alloc) = self.relays.remove(&key) else {
            return false;
        };
        for p in [alloc.a, alloc.b] {
            if let Some(e) = self.peers.get_mut(&p) {
                e.relays = e.relays.saturating_sub(1);
            }
        }
        self.evicted.push(alloc);
        true
    }

    /// At the total cap of waiting requests: the oldest request of the key
    /// with the most waiting goes if it has at least two more than `mine`.
    fn make_waiting_room(&mut self, mine: usize) -> bool {
        let Some(top) = self.holder_above(mine, |e| e.waiting) else {
            return false;
        };
        let oldest = self
            .waiting
            .iter()
            .filter(|((from, _), _)| *from == top)
            .min_by_key(|(_, t)| **t)
            .map(|(k, _)| *k);
        match oldest {
            Some(key) => {
                self.unwait(key);
                true
            }
            None => false,
        }
    }

    /// Gives back the memory of tables much larger than what they hold (after
    /// a flood).
    pub fn shrink(&mut self) {
        fn sparse<K, V>(m: &HashMap<K, V>) -> bool {
            m.capacity() > 64 && m.len() * 4 < m.capacity()
        }
        if sparse(&self.peers) {
            self.peers.shrink_to_fit();
        }
        if sparse(&self.relays) {
            self.relays.shrink_to_fit();
        }
        if sparse(&self.waiting) {
            self.waiting.shrink_to_fit();
        }
    }

    /// Forgets relay requests that ran out. Call about once a second.
    pub fn expire(&mut self, now: Instant) {
        let stale: Vec<(PeerId, PeerId)> = self
            .waiting
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= RELAY_REQUEST_TTL)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            self.unwait(key);
        }
    }

    fn expire_waiting_of(&mut self, peer: PeerId, now: Instant) {
        let stale: Vec<(PeerId, PeerId)> = self
            .waiting
            .iter()
            .filter(|((from, _), t)| {
                *from == peer && now.saturating_duration_since(**t) >= RELAY_REQUEST_TTL
            })
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            self.unwait(key);
        }
    }

    fn unwait(&mut self, key: (PeerId, PeerId)) {
        if self.waiting.remove(&key).is_some() {
            if let Some(e) = self.peers.get_mut(&key.0) {
                e.waiting = e.waiting.saturating_sub(1);
            }
        }
    }

    fn move_relays(&mut self, peer: PeerId, from: SocketAddr, to: SocketAddr) -> Moved {
        let mut relays = Vec::new();
        for alloc in self.relays.values_mut().filter(|a| a.has(peer)) {
            let before = *alloc;
            if alloc.a == peer {
                alloc.addr_a = to;
            } else {
                alloc.addr_b = to;
            }
            relays.push((before, *alloc));
        }
        Moved {
            peer,
            from,
            to,
            relays,
        }
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
