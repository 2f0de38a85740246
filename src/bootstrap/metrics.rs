//! The bootstrap node's Prometheus metrics.

use std::sync::Arc;

use super::Bootstrap;
use crate::metrics::{self, load, Registry};
use crate::node::metrics::collect_node;
use crate::socket::Transport;

impl Bootstrap {
    /// A renderer of the bootstrap's metrics for [`crate::metrics::serve`].
    pub fn metrics(&self) -> metrics::http::Render {
        let this = self.clone();
        Arc::new(move || {
            let mut r = Registry::new();
            this.collect_metrics(&mut r);
            r.render()
        })
    }

    /// Adds the bootstrap's metrics (and its node's and socket's) to `r`.
    pub fn collect_metrics(&self, r: &mut Registry) {
        let (udp, tcp, held) = {
            let reg = self.lock();
            let tcp = reg
                .peers()
                .filter(|(_, _, addr)| Transport::of(*addr) == Transport::Tcp)
                .count();
            let held = reg.held();
            (held.peers - tcp, tcp, held)
        };
        let f = r.gauge(
            "antq_bootstrap_peers",
            "Peers connected to this bootstrap, by the transport they use.",
        );
        f.int(&[("transport", "udp")], udp as u64);
        f.int(&[("transport", "tcp")], tcp as u64);
        r.gauge(
            "antq_bootstrap_relay_allocations",
            "Relay allocations (peer pairs) in place now.",
        )
        .int(&[], held.relays as u64);
        r.gauge(
            "antq_bootstrap_relay_requests_waiting",
            "Relay requests waiting for the other key to ask too.",
        )
        .int(&[], held.relay_requests_waiting as u64);
        r.gauge(
            "antq_bootstrap_address_challenges",
            "Address challenges under way (a peer's connection moved, not yet proven).",
        )
        .int(&[], self.node.socket().challenges_pending() as u64);
        let s = &self.stats;
        r.counter(
            "antq_bootstrap_relay_allocations_total",
            "Relay allocations made.",
        )
        .int(&[], load(&s.relays_granted));
        r.counter(
            "antq_bootstrap_coordination_forwarded_total",
            "Coordination messages (candidates, punch requests) forwarded between peers.",
        )
        .int(&[], load(&s.forwarded));
        let sock = self.node.socket().stats();
        let f = r.counter(
            "antq_bootstrap_address_proofs_total",
            "Moves of peers' connections to new addresses: challenges sent there, proofs the \
             peers sent back, moves followed once proven, proofs that matched no challenge, \
             moves to a virtual address not followed.",
        );
        for (result, value) in self.address_proofs() {
            f.int(&[("result", result)], value);
        }
        let f = r.counter(
            "antq_bootstrap_unproven_packets_total",
            "QUIC packets to an address not yet proven: held for its proof, sent once proven, \
             dropped (no proof in time, or no room).",
        );
        for (result, c) in [
            ("held", &sock.unproven_held),
            ("released", &sock.proven_released),
            ("dropped", &sock.unproven_dropped),
        ] {
            f.int(&[("result", result)], load(c));
        }
        r.counter(
            "antq_bootstrap_relay_requests_held_total",
            "Relay requests held until the other key asks too (relays need both keys' consent).",
        )
        .int(&[], load(&s.relay_requests_held));
        r.gauge(
            "antq_bootstrap_members",
            "Members with a certificate in the directory.",
        )
        .int(&[], self.lock().held().members as u64);
        let f = r.counter(
            "antq_bootstrap_directory_total",
            "Directory registrations (accepted, refused) and lookups (found, not found).",
        );
        for (event, c) in [
            ("registered", &s.members_registered),
            ("refused", &s.members_refused),
            ("lookup_found", &s.lookups_found),
            ("lookup_not_found", &s.lookups_not_found),
        ] {
            f.int(&[("event", event)], load(c));
        }
        if let Some(observe) = self.observe_stats() {
            let f = r.counter(
                "antq_bootstrap_observe_requests_total",
                "OBSERVE_REQUESTs on the observe socket, by result (answered, rate_limited, \
                 malformed, send_failed).",
            );
            for (result, value) in observe.events() {
                f.int(&[("result", result)], value);
            }
        }
        r.counter(
            "antq_bootstrap_raw_unexpected_total",
            "Raw frames other than address responses and relay data, dropped.",
        )
        .int(&[], load(&s.raw_unexpected));
        let f = r.counter(
            "antq_bootstrap_refused_total",
            "Requests, connections and frames refused or dropped by a limit, by reason \
             (docs/security.md lists each limit).",
        );
        for (reason, value) in self.refusals() {
            f.int(&[("reason", reason)], value);
        }
        let l = self.limits();
        let f = r.gauge(
            "antq_bootstrap_limit",
            "The limits this bootstrap runs with (see docs/security.md).",
        );
        for (limit, value) in [
            ("max_peers", l.max_peers),
            ("max_connections_per_ip", l.max_connections_per_ip),
            ("max_pending_handshakes", l.max_pending_handshakes),
            ("relay_max_per_key", l.relay_max_per_key),
            ("relay_max_total", l.relay_max_total),
            ("tcp_max_streams", l.tcp_max_streams),
            ("tcp_max_streams_per_ip", l.tcp_max_streams_per_ip),
        ] {
            f.int(&[("limit", limit)], value as u64);
        }
        collect_node(&self.node, r);
    }
}
