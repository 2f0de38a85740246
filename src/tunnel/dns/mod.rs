//! Names on the overlay: a small DNS responder on the tunnel's own
//! addresses (port 53, UDP and TCP) that answers `NAME.antq` with the
//! overlay addresses of the peer of that name, and forwards nothing.
//!
//! - [`names`]: the names table (our name, `[[peer]] name`, members'
//!   certificates) and which claim wins.
//! - [`answer`]: the responder's logic, sans-IO: query bytes and the table
//!   in, response bytes and a counted [`Outcome`] out (fuzz target
//!   `dns_query`).
//! - `server`: the sockets, the source check and the rate limits.
//! - `running`: a tunnel's responder: its sockets on the tunnel addresses
//!   and its registration with the system's resolver.
//!
//! What is answered: A and AAAA of `NAME.antq.` (any case) with that
//! name's addresses of the family (ANY: both), TTL [`answer::TTL`], the AA
//! bit set; a known name without an address of the type asked: NOERROR
//! and no answer; an unknown name under `antq.`: NXDOMAIN; any other name
//! or class: REFUSED; another opcode: NOTIMP; a header with a question we
//! cannot read, or not exactly one: FORMERR; what is not a DNS query (too
//! short, a response, larger than [`answer::MAX_QUERY`]): nothing.
//!
//! Who is answered: our own addresses and loopback (this host), addresses
//! a peer owns (peers ask over the tunnel) and the tunnel's networks;
//! others are dropped (`foreign_source`). At most 1000 queries a second in
//! all and 100 from one source (burst 200) are answered
//! (`rate_limited`); at most 16 TCP connections at once, 64 queries and 30 s each.
//!
//! `antq-tun up` registers the responder with the system's resolver for
//! `~antq` ([`antq_platform::register_dns`]) and `down` removes it.

pub mod answer;
pub mod names;
mod running;
mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub use answer::{answer, Outcome, Reply, Transport};
pub use names::{LocalNames, Names};
pub(super) use running::Running;

/// Queries by [`Outcome`].
#[derive(Debug, Default)]
pub struct DnsStats {
    counts: [AtomicU64; Outcome::ALL.len()],
}

impl DnsStats {
    /// Counts one query.
    pub fn count(&self, outcome: Outcome) {
        self.counts[Self::slot(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// How many queries had `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.counts[Self::slot(outcome)].load(Ordering::Relaxed)
    }

    fn slot(outcome: Outcome) -> usize {
        Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or_default()
    }

    /// Every counter by its label (`status --json`).
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Outcome::ALL
            .iter()
            .map(|o| (o.label(), self.get(*o)))
            .collect()
    }

    /// Adds `antq_dns_queries_total{result=...}` to `r`.
    pub fn collect(&self, r: &mut crate::metrics::Registry) {
        let f = r.counter(
            "antq_dns_queries_total",
            "Queries to the names responder (NAME.antq), by result: answer, nodata \
             (a known name without an address of that type), nxdomain, refused \
             (outside antq.), formerr, notimp; dropped unanswered: malformed (not a \
             DNS query), too_large, rate_limited, foreign_source (not from this host, \
             the tunnel or a peer), encode_failed.",
        );
        for o in Outcome::ALL {
            f.int(&[("result", o.label())], self.get(o));
        }
    }
}

/// The responder in [`crate::tunnel::device::TunnelStatus`].
#[derive(Debug, serde::Serialize)]
pub struct DnsReport {
    /// Where it listens (UDP and TCP port 53 of each tunnel address it
    /// could bind).
    pub listen: Vec<std::net::SocketAddr>,
    /// How the system's resolver was told: `systemd-resolved`,
    /// `/etc/resolver`, or why not.
    pub registration: String,
    /// The names answered and their addresses.
    pub names: Names,
    /// Queries by result.
    pub queries: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_by_result_and_snapshot_by_label() {
        let stats = DnsStats::default();
        stats.count(Outcome::Answer);
        stats.count(Outcome::Answer);
        stats.count(Outcome::RateLimited);
        let mut r = crate::metrics::Registry::new();
        stats.collect(&mut r);
        let text = r.render();
        assert!(
            text.contains("antq_dns_queries_total{result=\"answer\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("antq_dns_queries_total{result=\"rate_limited\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("antq_dns_queries_total{result=\"nxdomain\"} 0"),
            "{text}"
        );
        let snap = stats.snapshot();
        assert_eq!(snap.len(), Outcome::ALL.len());
        assert_eq!((snap["answer"], snap["foreign_source"]), (2, 0));
    }
}
