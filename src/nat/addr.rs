//! Address helpers every layer shares: the canonical form of an address,
//! which every table keyed by address and every comparison uses, and what
//! counts as a private address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Canonical form of an IP: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer)
/// becomes plain IPv4; any other address is left alone.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Canonical form of a socket address:
///
/// - an IPv4-mapped IPv6 address becomes plain IPv4 ([`canonical_ip`]);
/// - IPv6 flow info is cleared: it labels a flow, not a place (the kernel
///   reports 0 for received packets), so no key may depend on it;
/// - the IPv6 scope id is cleared, except on a link-local address
///   (`fe80::/10`), where it names the link: `fe80::1%2` and `fe80::1%3`
///   are different hosts, and a send to a link-local address without its
///   scope fails. Any other address has scope 0 as the kernel reports it,
///   and none when decoded from the wire or a config file, so the two
///   forms compare equal.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => addr,
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => {
                let scope = if is_link_local_v6(v6.ip()) {
                    v6.scope_id()
                } else {
                    0
                };
                SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, scope))
            }
        },
    }
}

/// Whether `ip` is a private address, one the public internet never
/// routes: RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), the shared
/// carrier-grade NAT range `100.64.0.0/10` (RFC 6598), IPv4 link-local
/// `169.254/16`, IPv6 unique-local `fc00::/7` and link-local `fe80::/10`.
/// An IPv4-mapped address is judged as IPv4. The routers of our own NATs
/// answer from such addresses ([`super::priming`]), and a peer's candidate
/// with one is worth less than a public one.
pub fn is_private_ip(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && b & 0xc0 == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00 || is_link_local_v6(&v6),
    }
}

/// Whether `ip` is an IPv6 unicast link-local address (`fe80::/10`).
pub fn is_link_local_v6(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v6(ip: &str, port: u16, flow: u32, scope: u32) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(ip.parse().unwrap(), port, flow, scope))
    }

    #[test]
    fn canonical_unmaps_ipv4() {
        assert_eq!(canonical(sa("[::ffff:192.0.2.1]:9")), sa("192.0.2.1:9"));
        assert_eq!(
            canonical(v6("::ffff:192.0.2.1", 9, 7, 3)),
            sa("192.0.2.1:9")
        );
        assert_eq!(canonical(sa("192.0.2.1:9")), sa("192.0.2.1:9"));
        assert_eq!(canonical(sa("[2001:db8::1]:9")), sa("[2001:db8::1]:9"));
        assert_eq!(
            canonical_ip("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn canonical_clears_flow_info_and_keeps_scope_only_on_link_local() {
        assert_eq!(
            canonical(v6("2001:db8::1", 9, 0x12345, 4)),
            sa("[2001:db8::1]:9")
        );
        assert_eq!(
            canonical(v6("fe80::1", 9, 0x12345, 4)),
            v6("fe80::1", 9, 0, 4)
        );
        assert_ne!(
            canonical(v6("fe80::1", 9, 0, 4)),
            canonical(v6("fe80::1", 9, 0, 5))
        );
        // Idempotent.
        for a in [
            v6("fe80::1", 9, 1, 4),
            v6("fd00::1", 9, 1, 4),
            sa("[::ffff:1.2.3.4]:5"),
        ] {
            assert_eq!(canonical(canonical(a)), canonical(a));
        }
    }

    #[test]
    fn private_addresses_include_the_carrier_nat_range() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "::ffff:192.168.1.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
        ] {
            assert!(is_private_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "198.51.100.1",
            "8.8.8.8",
            "2001:db8::1",
            "fec0::1",
            "::1",
        ] {
            assert!(!is_private_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
