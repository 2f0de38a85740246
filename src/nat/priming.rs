//! The TTL of punch priming probes, from the routers on our way out.
//!
//! A priming probe must pass every NAT of ours, so that each opens its
//! mapping toward the peer, and expire before it reaches the peer's NAT
//! (see [`super::PunchConfig::prime_ttl`]). Behind one home router a TTL of
//! 2 does that; behind a home router and a carrier-grade NAT it takes 3: the
//! second NAT would drop a TTL-2 probe (TTL 1 on arrival) before mapping it.
//!
//! Our NATs are the first routers on the path, and they answer from
//! private addresses ([`is_private_ip`]: RFC 1918, the shared CGNAT range
//! 100.64.0.0/10, link-local; IPv6 unique-local and link-local). So the number of leading
//! hops with such an address, as a traceroute toward the bootstrap sees
//! them, counts our NAT layers (an ISP router with a private address in
//! between counts too: one hop more is harmless, the peer's NAT is many
//! hops further away).

use std::net::IpAddr;

use super::addr::is_private_ip;

/// The TTL used when nothing better is known: one NAT (a home router).
pub const DEFAULT_PRIME_TTL: u8 = 2;

/// The largest TTL [`prime_ttl_for`] picks (three layers of private
/// routers). Beyond that a probe could reach a nearby peer's NAT.
pub const MAX_PRIME_TTL: u8 = 4;

/// How many hops a trace for [`prime_ttl_for`] needs to look at.
pub const TRACE_HOPS: u8 = MAX_PRIME_TTL;

/// Priming TTL for a path whose first routers are `hops` (hop 1 first;
/// `None`: that hop did not answer). One more than the number of leading
/// hops with private addresses, between [`DEFAULT_PRIME_TTL`] and
/// [`MAX_PRIME_TTL`]. A silent hop ends the count: what lies behind it is
/// unknown.
pub fn prime_ttl_for(hops: &[Option<IpAddr>]) -> u8 {
    let private = hops
        .iter()
        .take_while(|hop| hop.is_some_and(is_private_ip))
        .count();
    let ttl = u8::try_from(private + 1).unwrap_or(u8::MAX);
    ttl.clamp(DEFAULT_PRIME_TTL, MAX_PRIME_TTL)
}

/// The priming TTL from a traceroute's answers
/// ([`antq_platform::trace_hops`] toward the bootstrap, [`TRACE_HOPS`]
/// deep), with the routers it was derived from (hop 1 first, `None` for a
/// silent hop, up to the destination). The caller runs the trace: this
/// module does no I/O.
pub fn prime_ttl_from_trace(hops: &[antq_platform::Hop]) -> (u8, Vec<Option<IpAddr>>) {
    let routers: Vec<_> = hops
        .iter()
        .take_while(|h| **h != antq_platform::Hop::Destination)
        .map(|h| match h {
            antq_platform::Hop::Router(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    (prime_ttl_for(&routers), routers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(list: &[&str]) -> Vec<Option<IpAddr>> {
        list.iter()
            .map(|h| (*h != "*").then(|| h.parse().unwrap()))
            .collect()
    }

    #[test]
    fn one_home_router_gives_two() {
        assert_eq!(prime_ttl_for(&hops(&["192.168.1.1", "203.0.113.9"])), 2);
        assert_eq!(prime_ttl_for(&hops(&["10.1.0.1", "*", "*"])), 2);
    }

    #[test]
    fn home_router_behind_carrier_nat_gives_three() {
        let trace = hops(&["192.168.1.1", "100.64.12.1", "198.51.100.1"]);
        assert_eq!(prime_ttl_for(&trace), 3);
        // 100.127.x is still the shared range, 100.128.x is not.
        assert_eq!(prime_ttl_for(&hops(&["10.0.0.1", "100.127.0.1"])), 3);
        assert_eq!(prime_ttl_for(&hops(&["10.0.0.1", "100.128.0.1"])), 2);
    }

    #[test]
    fn a_silent_hop_ends_the_count() {
        assert_eq!(prime_ttl_for(&hops(&["192.168.1.1", "*", "10.9.9.9"])), 2);
    }

    #[test]
    fn no_answer_or_a_public_first_hop_keeps_the_default() {
        assert_eq!(prime_ttl_for(&[]), DEFAULT_PRIME_TTL);
        assert_eq!(prime_ttl_for(&hops(&["*", "*"])), DEFAULT_PRIME_TTL);
        assert_eq!(prime_ttl_for(&hops(&["198.51.100.1"])), DEFAULT_PRIME_TTL);
    }

    #[test]
    fn many_private_hops_are_capped() {
        let trace = hops(&["10.0.0.1", "10.0.1.1", "10.0.2.1", "10.0.3.1", "10.0.4.1"]);
        assert_eq!(prime_ttl_for(&trace), MAX_PRIME_TTL);
    }

    #[test]
    fn ipv6_unique_local_and_link_local_are_private() {
        assert_eq!(
            prime_ttl_for(&hops(&["fe80::1", "fd00:1::1", "2001:db8::1"])),
            3
        );
    }
}
