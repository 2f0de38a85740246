//! AllowedIPs: which peer owns which tunnel addresses.
//!
//! Outgoing packets go to the peer whose allowed range is the longest prefix
//! match of the destination; a packet arriving from a peer is accepted only
//! if the longest match of its *source* is that same peer (as WireGuard does),
//! so no peer can send as another.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Longest-prefix-match table from address ranges to a peer handle `T`.
#[derive(Clone, Debug)]
pub struct AllowedIps<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        Self {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
        }
    }
}

impl<T: PartialEq> AllowedIps<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `net` to `peer`, returning the previous owner of exactly `net`.
    pub fn insert(&mut self, net: IpNet, peer: T) -> Option<T> {
        match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n, peer),
            IpNet::V6(n) => self.v6.insert(n, peer),
        }
    }

    /// The owner of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, p)| p),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, p)| p),
        }
    }

    /// The owner of the longest prefix containing `addr`, with that
    /// prefix's length.
    pub fn lookup_with_len(&self, addr: IpAddr) -> Option<(&T, u8)> {
        match addr {
            IpAddr::V4(a) => self
                .v4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(n, p)| (p, n.prefix_len())),
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(n, p)| (p, n.prefix_len())),
        }
    }

    /// Whether `peer` may send from `source`.
    pub fn allows_source(&self, peer: &T, source: IpAddr) -> bool {
        self.lookup(source) == Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        t.insert(net("10.1.2.3/32"), 3);
        t.insert(net("fd00::/8"), 4);
        t.insert(net("fd00:1::/32"), 5);
        assert_eq!(t.lookup("10.9.9.9".parse().unwrap()), Some(&1));
        assert_eq!(t.lookup("10.1.9.9".parse().unwrap()), Some(&2));
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(&3));
        assert_eq!(t.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("fd00:1::7".parse().unwrap()), Some(&5));
        assert_eq!(t.lookup("fd77::7".parse().unwrap()), Some(&4));
        assert_eq!(t.lookup("2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn source_check_uses_the_longest_match() {
        let mut t = AllowedIps::new();
        t.insert(net("10.90.0.0/24"), "a");
        t.insert(net("10.90.0.7/32"), "b");
        assert!(t.allows_source(&"a", "10.90.0.2".parse().unwrap()));
        // 10.90.0.7 belongs to b even though it is inside a's range.
        assert!(!t.allows_source(&"a", "10.90.0.7".parse().unwrap()));
        assert!(t.allows_source(&"b", "10.90.0.7".parse().unwrap()));
        assert!(!t.allows_source(&"b", "192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn default_route_catches_everything_of_its_family() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 1);
        t.insert(net("10.0.0.0/8"), 2);
        assert_eq!(t.lookup("203.0.113.9".parse().unwrap()), Some(&1));
        assert_eq!(
            t.lookup_with_len("203.0.113.9".parse().unwrap()),
            Some((&1, 0))
        );
        assert_eq!(
            t.lookup_with_len("10.1.1.1".parse().unwrap()),
            Some((&2, 8))
        );
        assert_eq!(t.lookup("::1".parse().unwrap()), None);
    }
}
