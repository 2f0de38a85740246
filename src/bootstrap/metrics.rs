//! The bootstrap node's Prometheus metrics.

use std::sync::Arc;

use super::Bootstrap;
use crate::metrics::{self, load, Registry};
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
        let (udp, tcp, relays) = {
            let reg = self.lock();
            let tcp = reg
                .peers
                .values()
                .filter(|e| Transport::of(e.observed) == Transport::Tcp)
                .count();
            (reg.peers.len() - tcp, tcp, reg.relays.len())
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
        .int(&[], relays as u64);
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
        r.counter(
            "antq_bootstrap_requests_refused_total",
            "Coordination requests refused (target not connected, message not forwardable).",
        )
        .int(&[], load(&s.refused));
        let sock = self.node.socket().stats();
        let node = self.node.stats();
        let f = r.counter(
            "antq_bootstrap_rate_limited_total",
            "Requests refused or dropped by a limit: coordination (per key), \
             connections_per_ip (QUIC handshakes), tcp_streams (per IP or total), \
             relay_bandwidth (relay frames).",
        );
        for (limit, value) in [
            ("coordination", load(&s.rate_limited)),
            ("connections_per_ip", load(&node.handshakes_limited)),
            ("tcp_streams", load(&sock.streams_refused)),
            ("relay_bandwidth", load(&sock.forward_limited)),
        ] {
            f.int(&[("limit", limit)], value);
        }
        metrics::collect_node(&self.node, r);
    }
}
