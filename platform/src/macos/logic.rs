//! The OS-independent part of the macOS module: utun names, interface
//! kinds from BSD link types and names, netmask and scope-id handling,
//! `SCDynamicStore` key parsing and the before/after
//! comparison that turns a notification into [`ChangeEvent`]s. Kept free of
//! macOS APIs so that it is compiled and unit-tested on Linux as well.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{ChangeEvent, Interface, InterfaceFlags, InterfaceKind, PlatformError};

// Link types (`ifi_type`) from <net/if_types.h>.
pub(super) const IFT_ETHER: u8 = 0x06;
pub(super) const IFT_PPP: u8 = 0x17;
pub(super) const IFT_LOOP: u8 = 0x18;
pub(super) const IFT_GIF: u8 = 0x37;
pub(super) const IFT_STF: u8 = 0x39;
pub(super) const IFT_IEEE80211: u8 = 0x47;
pub(super) const IFT_L2VLAN: u8 = 0x87;
pub(super) const IFT_IEEE8023ADLAG: u8 = 0x88;
pub(super) const IFT_BRIDGE: u8 = 0xd1;

/// Name prefixes of layer-3 tunnels (utun: VPNs and our own devices).
const TUNNEL_PREFIXES: &[&str] = &["utun", "ipsec", "gif", "stf", "wg", "tun"];
/// Name prefixes of Ethernet-framed interfaces riding on the Wi-Fi radio
/// (AirDrop's awdl, low-latency WLAN, the access-point interface).
const WIRELESS_PREFIXES: &[&str] = &["awdl", "llw", "ap"];
/// Name prefixes of purely virtual Ethernet-framed interfaces.
const VIRTUAL_PREFIXES: &[&str] = &["bridge", "feth", "vmenet", "vlan", "bond", "anpi", "tap"];

fn has_prefix(name: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// The kind of an interface from its link type (`None` if it has no
/// `AF_LINK` entry), name, loopback flag and whether SystemConfiguration
/// calls it IEEE 802.11.
pub(super) fn classify(
    link_type: Option<u8>,
    name: &str,
    loopback: bool,
    wifi: bool,
) -> InterfaceKind {
    if loopback || link_type == Some(IFT_LOOP) {
        return InterfaceKind::Loopback;
    }
    if wifi || link_type == Some(IFT_IEEE80211) {
        return InterfaceKind::Wireless;
    }
    if has_prefix(name, TUNNEL_PREFIXES) {
        return InterfaceKind::Tunnel;
    }
    match link_type {
        Some(IFT_GIF | IFT_STF) => InterfaceKind::Tunnel,
        Some(IFT_BRIDGE | IFT_L2VLAN | IFT_IEEE8023ADLAG) => InterfaceKind::Virtual,
        Some(IFT_ETHER) if has_prefix(name, WIRELESS_PREFIXES) => InterfaceKind::Wireless,
        Some(IFT_ETHER) if has_prefix(name, VIRTUAL_PREFIXES) => InterfaceKind::Virtual,
        Some(IFT_ETHER) => InterfaceKind::Ethernet,
        Some(IFT_PPP) => InterfaceKind::Other,
        _ => InterfaceKind::Other,
    }
}

/// Prefix length of a netmask given as its address bytes (the leading one
/// bits; a BSD netmask sockaddr may be cut short, missing bytes are zero).
pub(super) fn prefix_len(mask: &[u8]) -> u8 {
    let mut len = 0u8;
    for &b in mask {
        let ones = b.leading_ones() as u8;
        len += ones;
        if ones < 8 {
            break;
        }
    }
    len
}

/// The KAME stack embeds the interface index in the second 16-bit word of
/// link-local (and interface/link-local multicast) addresses it hands out;
/// this removes it.
pub(super) fn without_embedded_scope(a: Ipv6Addr) -> Ipv6Addr {
    let mut s = a.segments();
    let link_local = s[0] & 0xffc0 == 0xfe80;
    let local_multicast = s[0] == 0xff01 || s[0] == 0xff02;
    if link_local || local_multicast {
        s[1] = 0;
    }
    Ipv6Addr::from(s)
}

/// `IFNAMSIZ` on macOS, including the terminating NUL.
const IFNAMSIZ: usize = 16;

/// utun names are `utun<N>`: the kernel picks the unit from the number.
pub(super) fn validate_utun_name(name: &str) -> Result<(), PlatformError> {
    let invalid = |reason| {
        Err(PlatformError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.len() >= IFNAMSIZ {
        return invalid("longer than 15 bytes");
    }
    match name.strip_prefix("utun") {
        Some(n) if n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok() => Ok(()),
        _ => invalid("macOS TUN devices are named utun<N>, e.g. utun7"),
    }
}

/// What an `SCDynamicStore` key that changed is about.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Key<'a> {
    /// `State:/Network/Interface/<name>/...`: one interface.
    Interface { name: &'a str, link: bool },
    /// `State:/Network/Interface`: the list of interfaces.
    InterfaceList,
    /// `State:/Network/Global/IPv4|IPv6`: the primary service, i.e. the
    /// default route.
    Global,
    /// Anything else.
    Other,
}

/// The regular expressions (POSIX extended) of the keys we watch.
pub(super) const KEY_PATTERNS: &[&str] = &[
    "State:/Network/Interface/[^/]+/(IPv4|IPv6|Link)",
    "State:/Network/Global/(IPv4|IPv6)",
];
/// Keys we watch literally.
pub(super) const KEYS: &[&str] = &["State:/Network/Interface"];

pub(super) fn parse_key(key: &str) -> Key<'_> {
    if key == "State:/Network/Interface" {
        return Key::InterfaceList;
    }
    if let Some(rest) = key.strip_prefix("State:/Network/Interface/") {
        return match rest.split_once('/') {
            Some((name, entity)) if !name.is_empty() => Key::Interface {
                name,
                link: entity == "Link",
            },
            _ => Key::Other,
        };
    }
    if key.starts_with("State:/Network/Global/") {
        return Key::Global;
    }
    Key::Other
}

/// What the watcher compares between notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    links: BTreeMap<u32, (String, InterfaceFlags, Option<u32>)>,
    addrs: BTreeSet<(u32, IpAddr)>,
}

impl Snapshot {
    pub(super) fn of(ifaces: &[Interface]) -> Snapshot {
        Snapshot {
            links: ifaces
                .iter()
                .map(|i| (i.index, (i.name.clone(), i.flags, i.mtu)))
                .collect(),
            addrs: ifaces
                .iter()
                .flat_map(|i| i.addresses.iter().map(move |a| (i.index, a.addr)))
                .collect(),
        }
    }

    fn index_of(&self, name: &str) -> Option<u32> {
        self.links
            .iter()
            .find_map(|(index, (n, _, _))| (n == name).then_some(*index))
    }

    /// The events that lead from `self` to `new`, given the keys that
    /// changed: links that appeared, vanished or changed flags/MTU, or
    /// whose `Link` key changed; removed, then added addresses; one
    /// `RouteChanged` if a global key changed.
    pub(super) fn changes(&self, new: &Snapshot, keys: &[Key<'_>]) -> Vec<ChangeEvent> {
        let mut links: BTreeSet<u32> = self
            .links
            .iter()
            .filter(|(i, old)| new.links.get(i) != Some(old))
            .map(|(i, _)| *i)
            .chain(
                new.links
                    .keys()
                    .filter(|i| !self.links.contains_key(i))
                    .copied(),
            )
            .collect();
        for key in keys {
            if let Key::Interface { name, link: true } = key {
                links.extend(new.index_of(name).or_else(|| self.index_of(name)));
            }
        }
        let mut out: Vec<ChangeEvent> = links
            .into_iter()
            .map(|index| ChangeEvent::LinkChanged { index })
            .collect();
        out.extend(
            self.addrs
                .difference(&new.addrs)
                .map(|&(index, addr)| ChangeEvent::AddressRemoved { index, addr }),
        );
        out.extend(
            new.addrs
                .difference(&self.addrs)
                .map(|&(index, addr)| ChangeEvent::AddressAdded { index, addr }),
        );
        if keys.contains(&Key::Global) {
            out.push(ChangeEvent::RouteChanged);
        }
        out
    }
}

/// The IPv4 default gateway among routing-table rows `(destination,
/// prefix length, gateway)`: the first default route (0.0.0.0/0) whose
/// gateway is an IPv4 address (a route through an interface has a
/// link-level gateway, `None`).
pub(super) fn pick_default_v4(
    routes: impl IntoIterator<Item = (IpAddr, u8, Option<IpAddr>)>,
) -> Option<Ipv4Addr> {
    routes
        .into_iter()
        .find_map(|(dest, prefix, gateway)| match gateway {
            Some(IpAddr::V4(gw)) if dest == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && prefix == 0 => {
                (!gw.is_unspecified()).then_some(gw)
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InterfaceAddress;

    #[test]
    fn utun_names() {
        for good in ["utun0", "utun7", "utun123"] {
            assert!(validate_utun_name(good).is_ok(), "{good}");
        }
        for bad in [
            "tun0",
            "utun",
            "utun+1",
            "utun-1",
            "antq0",
            "utun99999999999",
        ] {
            assert!(
                matches!(
                    validate_utun_name(bad),
                    Err(PlatformError::InvalidName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn kinds() {
        use InterfaceKind as K;
        assert_eq!(classify(Some(IFT_LOOP), "lo0", true, false), K::Loopback);
        assert_eq!(classify(Some(IFT_ETHER), "en0", false, true), K::Wireless);
        assert_eq!(classify(Some(IFT_ETHER), "en1", false, false), K::Ethernet);
        assert_eq!(classify(Some(0x01), "utun3", false, false), K::Tunnel);
        assert_eq!(classify(None, "utun0", false, false), K::Tunnel);
        assert_eq!(classify(Some(IFT_GIF), "gif0", false, false), K::Tunnel);
        assert_eq!(
            classify(Some(IFT_BRIDGE), "bridge0", false, false),
            K::Virtual
        );
        assert_eq!(
            classify(Some(IFT_ETHER), "vmenet0", false, false),
            K::Virtual
        );
        assert_eq!(
            classify(Some(IFT_ETHER), "awdl0", false, false),
            K::Wireless
        );
        assert_eq!(
            classify(Some(IFT_ETHER), "apple0", false, false),
            K::Ethernet
        );
        assert_eq!(classify(Some(IFT_PPP), "ppp0", false, false), K::Other);
    }

    #[test]
    fn masks_and_scopes() {
        assert_eq!(prefix_len(&[255, 255, 255, 0]), 24);
        assert_eq!(prefix_len(&[255, 255, 240]), 20);
        assert_eq!(prefix_len(&[]), 0);
        assert_eq!(prefix_len(&[255; 16]), 128);
        let a: Ipv6Addr = "fe80:4::1".parse().unwrap();
        assert_eq!(
            without_embedded_scope(a),
            "fe80::1".parse::<Ipv6Addr>().unwrap()
        );
        let g: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(without_embedded_scope(g), g);
    }

    #[test]
    fn keys() {
        assert_eq!(
            parse_key("State:/Network/Interface/en0/IPv4"),
            Key::Interface {
                name: "en0",
                link: false
            }
        );
        assert_eq!(
            parse_key("State:/Network/Interface/utun3/Link"),
            Key::Interface {
                name: "utun3",
                link: true
            }
        );
        assert_eq!(parse_key("State:/Network/Interface"), Key::InterfaceList);
        assert_eq!(parse_key("State:/Network/Global/IPv6"), Key::Global);
        assert_eq!(parse_key("Setup:/Network/Global/IPv4"), Key::Other);
    }

    fn iface(index: u32, name: &str, up: bool, addrs: &[&str]) -> Interface {
        Interface {
            index,
            name: name.into(),
            flags: InterfaceFlags {
                up,
                ..InterfaceFlags::default()
            },
            mtu: Some(1500),
            kind: InterfaceKind::Ethernet,
            addresses: addrs
                .iter()
                .map(|a| InterfaceAddress {
                    addr: a.parse().unwrap(),
                    prefix_len: 24,
                    deprecated: false,
                    temporary: false,
                    tentative: false,
                })
                .collect(),
        }
    }

    #[test]
    fn snapshot_changes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let before = Snapshot::of(&[iface(4, "en0", true, &["10.0.0.2", "fd00::2"])]);
        let after = Snapshot::of(&[
            iface(4, "en0", true, &["10.0.0.3", "fd00::2"]),
            iface(9, "utun3", true, &[]),
        ]);
        assert_eq!(
            before.changes(&after, &[]),
            vec![
                ChangeEvent::LinkChanged { index: 9 },
                ChangeEvent::AddressRemoved {
                    index: 4,
                    addr: ip("10.0.0.2")
                },
                ChangeEvent::AddressAdded {
                    index: 4,
                    addr: ip("10.0.0.3")
                },
            ]
        );
        // A link key reports the link even when nothing visible changed;
        // a global key reports a route change.
        assert_eq!(
            before.changes(
                &before,
                &[
                    Key::Interface {
                        name: "en0",
                        link: true
                    },
                    Key::Global
                ]
            ),
            vec![
                ChangeEvent::LinkChanged { index: 4 },
                ChangeEvent::RouteChanged
            ]
        );
        // Down and gone.
        let down = Snapshot::of(&[iface(4, "en0", false, &["10.0.0.2", "fd00::2"])]);
        assert_eq!(
            before.changes(&down, &[]),
            vec![ChangeEvent::LinkChanged { index: 4 }]
        );
        assert_eq!(
            Snapshot::default().changes(&Snapshot::default(), &[]),
            vec![]
        );
    }

    #[test]
    fn the_default_gateway_is_the_first_ipv4_default_route() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let rows = [
            (ip("10.0.0.0"), 8, Some(ip("10.0.0.1"))),
            (ip("0.0.0.0"), 0, None),
            (ip("::"), 0, Some(ip("fe80::1"))),
            (ip("0.0.0.0"), 0, Some(ip("192.168.1.1"))),
            (ip("0.0.0.0"), 0, Some(ip("192.168.2.1"))),
        ];
        assert_eq!(pick_default_v4(rows), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(pick_default_v4(rows[..3].to_vec()), None);
    }
}
