//! Address challenges of the send guard, sans-IO: QUIC packets held for
//! addresses not yet proven, and the challenges sent there.
//!
//! When the guard is on ([`super::AntqSocket::guard_sends`]) and QUIC wants
//! to send a 1-RTT packet to an address nobody proved (a connection just
//! moved there: a NAT rebinding, or a spoofed source), the packet is held
//! here and an `ADDRESS_CHALLENGE` goes to the address instead. If the
//! connection's owner answers with the token (`ADDRESS_PROOF` on its
//! connection), the owner of the guard proves the address and the held
//! packets leave at once, so QUIC's own path validation completes; if
//! nobody answers, they are dropped after [`PROOF_TIMEOUT`]. A victim of a
//! spoofed source thus gets nothing but a few 17-byte challenges.
//!
//! Everything is bounded: [`MAX_PENDING`] addresses, [`MAX_HELD_PACKETS`] and
//! [`MAX_HELD_BYTES`] per address, [`MAX_TRIES`] challenges per address a
//! [`CHALLENGE_REPEAT`] apart, and a global challenge rate.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::ratelimit::TokenBucket;

/// Addresses with held packets at most; more are dropped outright.
pub const MAX_PENDING: usize = 256;
/// Packets held per address at most.
pub const MAX_HELD_PACKETS: usize = 16;
/// Bytes held per address at most.
pub const MAX_HELD_BYTES: usize = 32 * 1024;
/// Challenges per address at most.
pub const MAX_TRIES: u32 = 3;
/// Time between two challenges to the same address.
pub const CHALLENGE_REPEAT: Duration = Duration::from_secs(1);
/// Held packets and their challenge are forgotten this long after the first
/// challenge.
pub const PROOF_TIMEOUT: Duration = Duration::from_secs(3);
/// Challenges per second in total, and their burst.
const CHALLENGES_PER_SEC: f64 = 200.0;
const CHALLENGE_BURST: f64 = 400.0;

/// A QUIC send held until its destination is proven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPacket {
    /// The datagram(s): one, or several of `segment_size` each (GSO).
    pub contents: Vec<u8>,
    /// GSO segment size.
    pub segment_size: Option<usize>,
    /// The local address quinn asked to send from.
    pub src_ip: Option<IpAddr>,
}

/// What to do with a send to an unproven address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held; send a challenge with this token to the address.
    Challenge([u8; 16]),
    /// Held; a challenge is on its way already.
    Waiting,
    /// Not held (no room, or the address ran out of tries): drop it.
    Dropped,
}

#[derive(Debug)]
struct Pending {
    token: [u8; 16],
    first: Instant,
    last: Instant,
    tries: u32,
    packets: VecDeque<HeldPacket>,
    bytes: usize,
}

/// The challenges under way and the packets they hold.
#[derive(Debug)]
pub struct Proofs {
    pending: HashMap<SocketAddr, Pending>,
    tokens: HashMap<[u8; 16], SocketAddr>,
    challenges: TokenBucket,
}

impl Proofs {
    /// Nothing pending.
    pub fn new(now: Instant) -> Self {
        Self {
            pending: HashMap::new(),
            tokens: HashMap::new(),
            challenges: TokenBucket::new(CHALLENGES_PER_SEC, CHALLENGE_BURST, now),
        }
    }

    /// Addresses with a challenge under way.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is under way.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// QUIC wants to send `packet` to `to`, which is not proven. `token` is
    /// a fresh random token, used if a challenge is due.
    pub fn hold(
        &mut self,
        to: SocketAddr,
        packet: HeldPacket,
        now: Instant,
        token: [u8; 16],
    ) -> HoldOutcome {
        self.expire(now);
        if !self.pending.contains_key(&to) {
            if self.pending.len() >= MAX_PENDING || !self.challenges.try_take(1.0, now) {
                return HoldOutcome::Dropped;
            }
            self.pending.insert(
                to,
                Pending {
                    token,
                    first: now,
                    last: now,
                    tries: 1,
                    packets: VecDeque::new(),
                    bytes: 0,
                },
            );
            self.tokens.insert(token, to);
            self.keep(to, packet);
            return HoldOutcome::Challenge(token);
        }
        self.keep(to, packet);
        let Some(p) = self.pending.get_mut(&to) else {
            return HoldOutcome::Dropped;
        };
        if p.tries < MAX_TRIES
            && now.saturating_duration_since(p.last) >= CHALLENGE_REPEAT
            && self.challenges.try_take(1.0, now)
        {
            p.tries += 1;
            p.last = now;
            return HoldOutcome::Challenge(p.token);
        }
        HoldOutcome::Waiting
    }

    /// The address a token was sent to, if its challenge is still under way.
    pub fn address_of(&self, token: &[u8; 16]) -> Option<SocketAddr> {
        self.tokens.get(token).copied()
    }

    /// `addr` is proven: its held packets, oldest first, to send now.
    pub fn release(&mut self, addr: SocketAddr) -> Vec<HeldPacket> {
        match self.pending.remove(&addr) {
            Some(p) => {
                self.tokens.remove(&p.token);
                p.packets.into()
            }
            None => Vec::new(),
        }
    }

    /// Forgets challenges older than [`PROOF_TIMEOUT`] and their packets.
    pub fn expire(&mut self, now: Instant) {
        let tokens = &mut self.tokens;
        self.pending.retain(|_, p| {
            let keep = now.saturating_duration_since(p.first) < PROOF_TIMEOUT;
            if !keep {
                tokens.remove(&p.token);
            }
            keep
        });
    }

    fn keep(&mut self, to: SocketAddr, packet: HeldPacket) {
        let Some(p) = self.pending.get_mut(&to) else {
            return;
        };
        if p.packets.len() < MAX_HELD_PACKETS && p.bytes + packet.contents.len() <= MAX_HELD_BYTES {
            p.bytes += packet.contents.len();
            p.packets.push_back(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(n: u8) -> HeldPacket {
        HeldPacket {
            contents: vec![0x40 | (n & 0x3f); 100],
            segment_size: None,
            src_ip: None,
        }
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200u32 + i)),
            4433,
        )
    }

    #[test]
    fn packets_wait_for_the_proof_then_leave_in_order() {
        let t0 = Instant::now();
        let mut p = Proofs::new(t0);
        assert_eq!(
            p.hold(addr(1), packet(1), t0, [1; 16]),
            HoldOutcome::Challenge([1; 16])
        );
        assert_eq!(
            p.hold(addr(1), packet(2), t0, [2; 16]),
            HoldOutcome::Waiting
        );
        assert_eq!(p.address_of(&[1; 16]), Some(addr(1)));
        assert_eq!(p.address_of(&[2; 16]), None);
        assert_eq!(p.release(addr(1)), vec![packet(1), packet(2)]);
        assert!(p.is_empty());
        assert_eq!(p.address_of(&[1; 16]), None, "a token is good once");
    }

    #[test]
    fn challenges_repeat_a_few_times_then_everything_is_dropped() {
        let t0 = Instant::now();
        let mut p = Proofs::new(t0);
        let mut challenges = 0;
        for ms in (0..2900).step_by(100) {
            let t = t0 + Duration::from_millis(ms);
            if let HoldOutcome::Challenge(token) = p.hold(addr(1), packet(0), t, [9; 16]) {
                assert_eq!(token, [9; 16], "the same token each time");
                challenges += 1;
            }
        }
        assert_eq!(challenges, MAX_TRIES);
        p.expire(t0 + PROOF_TIMEOUT);
        assert!(p.is_empty());
        assert!(p.release(addr(1)).is_empty());
    }

    #[test]
    fn held_packets_and_addresses_are_bounded() {
        let t0 = Instant::now();
        let mut p = Proofs::new(t0);
        for n in 0..100 {
            p.hold(addr(1), packet(n), t0, [1; 16]);
        }
        assert_eq!(p.release(addr(1)).len(), MAX_HELD_PACKETS);
        let mut big = packet(0);
        big.contents = vec![0x40; MAX_HELD_BYTES];
        p.hold(addr(2), big.clone(), t0, [2; 16]);
        p.hold(addr(2), packet(1), t0, [2; 16]);
        assert_eq!(p.release(addr(2)), vec![big]);
        for i in 0..1000 {
            let token = (i as u128).to_be_bytes();
            p.hold(addr(10 + i), packet(0), t0, token);
        }
        assert_eq!(p.len(), MAX_PENDING);
        assert_eq!(
            p.hold(addr(5000), packet(0), t0, [7; 16]),
            HoldOutcome::Dropped
        );
    }
}
