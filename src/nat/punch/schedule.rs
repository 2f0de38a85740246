//! Probe scheduling of a [`PunchSession`]: its targets (the peer's
//! candidates and the peer-reflexive addresses it learns), their send
//! order, the priming probes and rounds, the anti-amplification budget per
//! target, and acks.

use std::net::SocketAddr;
use std::time::Instant;

use super::{ProbeKind, ProbeOut, PunchSession, Target, Transmit};
use crate::nat::addr::canonical;
use crate::nat::candidate::{is_unusable_ip, pair_priority, Candidate, CandidateKind};

impl PunchSession {
    /// Best pair priority for a remote candidate, or `None` if no local
    /// candidate shares its address family.
    fn best_pair_priority(&self, remote: &Candidate) -> Option<u64> {
        if self.local.is_empty() {
            return Some(pair_priority(self.role, 0, remote.priority));
        }
        self.local
            .iter()
            .filter(|l| l.base.unwrap_or(l.addr).is_ipv4() == remote.addr.is_ipv4())
            .map(|l| pair_priority(self.role, l.priority, remote.priority))
            .max()
    }

    pub(super) fn add_target(&mut self, c: &Candidate) -> Option<usize> {
        let addr = canonical(c.addr);
        let loopback_ok = self.config.allow_loopback && addr.ip().is_loopback();
        if c.kind == CandidateKind::Relay
            || addr.port() == 0
            || (is_unusable_ip(addr.ip()) && !loopback_ok)
        {
            return None;
        }
        if let Some(i) = self.find(addr) {
            return Some(i);
        }
        let pair_priority = self.best_pair_priority(c)?;
        self.targets.push(Target {
            addr,
            kind: c.kind,
            pair_priority,
            heard: false,
            bytes_sent: 0,
            triggered_round: None,
        });
        Some(self.targets.len() - 1)
    }

    pub(super) fn find(&self, addr: SocketAddr) -> Option<usize> {
        self.targets.iter().position(|t| t.addr == addr)
    }

    /// Send order: predicted targets first in the peer's order (a symmetric
    /// NAT allocates ports in packet order), then by pair priority.
    fn send_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.targets.len()).collect();
        order.sort_by_key(|&i| {
            let t = &self.targets[i];
            let predicted = t.kind == CandidateKind::Predicted;
            // Predicted targets keep insertion (priority, i.e. prediction) order.
            (
                !predicted,
                if predicted {
                    0
                } else {
                    u64::MAX - t.pair_priority
                },
                i,
            )
        });
        order
    }

    pub(super) fn queue_probe(&mut self, idx: usize, now: Instant) {
        self.queue_probe_with_ttl(idx, now, None);
    }

    fn queue_probe_with_ttl(&mut self, idx: usize, now: Instant, ttl: Option<u8>) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let size = self.config.probe_size;
        let t = &mut self.targets[idx];
        t.bytes_sent += size;
        self.sent.insert(seq, (idx, now));
        self.stats.probes_sent += 1;
        self.stats.bytes_sent += size as u64;
        self.queue.push_back(Transmit {
            dst: t.addr,
            probe: ProbeOut {
                kind: ProbeKind::Probe,
                round: self.round,
                seq,
            },
            size_hint: size,
            ttl,
        });
    }

    fn within_budget(&self, idx: usize) -> bool {
        let t = &self.targets[idx];
        t.heard || t.bytes_sent + self.config.probe_size <= self.config.max_unverified_bytes_per_dst
    }

    /// One priming probe per target (within budget), in send order.
    pub(super) fn send_primes(&mut self, now: Instant) {
        let ttl = self.config.prime_ttl;
        let order = self.send_order();
        for idx in order.into_iter().take(self.config.max_probes_per_round) {
            if self.within_budget(idx) {
                self.queue_probe_with_ttl(idx, now, ttl);
            }
        }
    }

    pub(super) fn send_round(&mut self, now: Instant) {
        let mut budget = self.config.max_probes_per_round;
        for idx in self.send_order() {
            if budget == 0 {
                break;
            }
            if !self.within_budget(idx) {
                self.stats.suppressed += 1;
                continue;
            }
            self.queue_probe(idx, now);
            budget -= 1;
        }
        self.stats.rounds_sent += 1;
    }

    pub(super) fn queue_ack(&mut self, to: SocketAddr, round: u32, seq: u32) {
        let size = self.config.probe_size;
        self.stats.acks_sent += 1;
        self.stats.bytes_sent += size as u64;
        self.queue.push_back(Transmit {
            dst: to,
            probe: ProbeOut {
                kind: ProbeKind::Ack,
                round,
                seq,
            },
            size_hint: size,
            ttl: None,
        });
    }
}
