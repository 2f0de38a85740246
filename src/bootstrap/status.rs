//! The bootstrap's status: what it holds, its limits, and everything it
//! refused, by reason. `antq-tun status` shows it (the bootstrap answers on
//! its ipc endpoint, [`ipc_name`]); the metrics carry the same
//! counters ([`super::metrics`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::{Bootstrap, Limits};
use crate::socket::Transport;

/// The name of a bootstrap's ipc endpoint (like a tunnel's interface
/// name): `bootstrap-PORT` when it listens on every address, else
/// `bootstrap-IP-PORT` (`:` of IPv6 written as `_`).
pub fn ipc_name(listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("bootstrap-{}", listen.port())
    } else {
        let ip = listen.ip().to_string().replace(':', "_");
        format!("bootstrap-{ip}-{}", listen.port())
    }
}

/// A snapshot of a bootstrap (serialized as JSON for `antq-tun status`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BootstrapStatus {
    /// The bootstrap's public key.
    pub bootstrap: String,
    /// The UDP address it listens on.
    pub listen: Option<SocketAddr>,
    /// The TCP address it listens on, if any.
    pub tcp_listen: Option<SocketAddr>,
    /// The UDP address of its observe socket, if any.
    pub observe_listen: Option<SocketAddr>,
    /// Whether it relays.
    pub relay: bool,
    /// Connected peers by transport.
    pub peers: BTreeMap<&'static str, usize>,
    /// Relay allocations in place.
    pub relays: usize,
    /// Relay requests waiting for the other key.
    pub relay_requests_waiting: usize,
    /// Addresses with QUIC packets held for a proof.
    pub address_challenges: usize,
    /// TCP streams open.
    pub tcp_streams: usize,
    /// Relay allocations made, coordination messages forwarded.
    pub totals: BTreeMap<&'static str, u64>,
    /// Members with a certificate in the directory.
    pub members: usize,
    /// Directory registrations and lookups, by outcome.
    pub directory: BTreeMap<&'static str, u64>,
    /// `OBSERVE_REQUEST`s on the observe socket, by outcome (answered,
    /// rate_limited, malformed, send_failed); empty when it is off.
    pub observe: BTreeMap<&'static str, u64>,
    /// Moves of peers' connections, by outcome.
    pub address_proofs: BTreeMap<&'static str, u64>,
    /// Everything a limit refused, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// The limits in force.
    pub limits: Limits,
}

impl Bootstrap {
    /// What the bootstrap holds and refused, now.
    pub fn status(&self) -> BootstrapStatus {
        let (tcp, held) = {
            let reg = self.lock();
            let tcp = reg
                .peers()
                .filter(|(_, _, addr)| Transport::of(*addr) == Transport::Tcp)
                .count();
            (tcp, reg.held())
        };
        let socket = self.node.socket();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        BootstrapStatus {
            bootstrap: self.peer_id().to_string(),
            listen: self.local_addr().ok(),
            tcp_listen: self.tcp_local_addr(),
            observe_listen: self.observe_local_addr(),
            relay: self.settings.relay,
            peers: BTreeMap::from([("udp", held.peers - tcp), ("tcp", tcp)]),
            relays: held.relays,
            relay_requests_waiting: held.relay_requests_waiting,
            address_challenges: socket.challenges_pending(),
            tcp_streams: socket.stream_count(),
            totals: BTreeMap::from([
                ("relays_granted", load(&self.stats.relays_granted)),
                ("relay_requests_held", load(&self.stats.relay_requests_held)),
                ("coordination_forwarded", load(&self.stats.forwarded)),
                ("raw_unexpected", load(&self.stats.raw_unexpected)),
            ]),
            members: held.members,
            directory: BTreeMap::from([
                ("registered", load(&self.stats.members_registered)),
                ("refused", load(&self.stats.members_refused)),
                ("lookups_found", load(&self.stats.lookups_found)),
                ("lookups_not_found", load(&self.stats.lookups_not_found)),
            ]),
            observe: self
                .observe_stats()
                .map(|o| o.events().into_iter().collect())
                .unwrap_or_default(),
            address_proofs: self.address_proofs().into_iter().collect(),
            refused: self.refusals().into_iter().collect(),
            limits: self.settings.limits,
        }
    }

    /// Moves of peers' connections to new addresses, by outcome.
    pub fn address_proofs(&self) -> [(&'static str, u64); 5] {
        let s = &self.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "challenged",
                load(&self.node.socket().stats().challenges_sent),
            ),
            ("proven", load(&s.proofs_accepted)),
            ("followed", load(&s.migrations_followed)),
            ("unmatched", load(&s.proofs_unmatched)),
            ("ignored_virtual", load(&s.migrations_ignored)),
        ]
    }

    /// Everything a limit refused or dropped, by reason (docs/security.md).
    pub fn refusals(&self) -> [(&'static str, u64); 20] {
        let s = &self.stats;
        let sock = self.node.socket().stats();
        let node = self.node.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        [
            ("coordination_rate", load(&s.rate_limited)),
            ("relay_per_key_cap", load(&s.relay_refused_per_key)),
            ("relay_total_cap", load(&s.relay_refused_total)),
            ("relay_evicted_for_fairness", load(&s.relays_evicted)),
            ("not_connected_or_invalid", load(&s.refused)),
            ("target_queue_full", load(&s.target_queue_full)),
            ("handshake_rate", load(&node.handshakes_limited)),
            ("handshake_per_ip", load(&node.refused_per_source)),
            ("handshake_total", load(&node.refused_total)),
            ("handshake_pending", load(&node.refused_pending)),
            ("evicted_for_fairness", load(&node.evicted)),
            ("tcp_rate", load(&sock.streams_refused_rate)),
            ("tcp_per_ip", load(&sock.streams_refused_source_cap)),
            ("tcp_total", load(&sock.streams_refused_total_cap)),
            (
                "tcp_handshake_timeout",
                load(&sock.streams_refused_handshake_timeout),
            ),
            (
                "tcp_claim_timeout",
                load(&sock.streams_refused_claim_timeout),
            ),
            ("tcp_evicted_for_fairness", load(&sock.streams_evicted)),
            ("relay_bandwidth", load(&sock.forward_limited)),
            ("relay_key_budget", load(&sock.forward_budget_limited)),
            ("relay_queue_full", load(&sock.forward_queue_full)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_names_are_file_and_pipe_safe() {
        assert_eq!(ipc_name("0.0.0.0:9000".parse().unwrap()), "bootstrap-9000");
        assert_eq!(ipc_name("[::]:9000".parse().unwrap()), "bootstrap-9000");
        assert_eq!(
            ipc_name("198.18.0.10:9000".parse().unwrap()),
            "bootstrap-198.18.0.10-9000"
        );
        assert_eq!(
            ipc_name("[2001:db8::1]:443".parse().unwrap()),
            "bootstrap-2001_db8__1-443"
        );
    }
}
