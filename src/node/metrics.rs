//! The Prometheus metrics every node has: QUIC handshakes, refused keys,
//! outgoing connection errors, and those of its socket
//! ([`crate::socket`]'s collector). The overlay and the bootstrap add
//! theirs on top.

use super::Node;
use crate::metrics::{load, Registry};
use crate::socket::metrics::collect_socket;

/// The counters every node has (QUIC handshakes, refused keys, outgoing
/// connection errors, the shared socket), for overlays and bootstraps.
pub(crate) fn collect_node(node: &Node, r: &mut Registry) {
    let s = node.stats();
    r.counter(
        "antq_handshakes_accepted_total",
        "Incoming connections accepted (handshake and key check passed).",
    )
    .int(&[], load(&s.accepted));
    r.counter(
        "antq_handshakes_failed_total",
        "Incoming handshakes that failed (refused key, malformed, timeout).",
    )
    .int(&[], load(&s.handshakes_failed));
    r.counter(
        "antq_handshakes_rate_limited_total",
        "Incoming handshakes ignored by the per-source (IPv4 address, IPv6 /64) rate limit.",
    )
    .int(&[], load(&s.handshakes_limited));
    r.counter(
        "antq_handshake_retries_total",
        "QUIC Retry packets sent to validate a client's address before its handshake.",
    )
    .int(&[], load(&s.retries));
    r.counter(
        "antq_keys_refused_total",
        "Incoming handshakes whose client key is not on the allowlist.",
    )
    .int(&[], node.keys_refused());
    let f = r.counter(
        "antq_connect_errors_total",
        "Outgoing connections that failed, by the error reported.",
    );
    for (kind, count) in s.connect_errors.counts() {
        f.int(&[("error", kind)], count);
    }
    collect_socket(node.socket().stats(), r);
}
