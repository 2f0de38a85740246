//! Interface discovery: `RTM_GETLINK` + `RTM_GETADDR` dumps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use rtnetlink::packet_route::AddressFamily;

use super::{nl_error, with_netlink};
use crate::{Interface, InterfaceAddress, InterfaceFlags, InterfaceKind, PlatformError};

pub(crate) async fn interfaces() -> Result<Vec<Interface>, PlatformError> {
    let (links, addrs) = with_netlink("list interfaces", |handle| async move {
        let links: Vec<LinkMessage> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error("dump links (RTM_GETLINK)", e))?;
        let addrs: Vec<AddressMessage> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error("dump addresses (RTM_GETADDR)", e))?;
        Ok((links, addrs))
    })
    .await?;

    let mut by_index: HashMap<u32, Vec<InterfaceAddress>> = HashMap::new();
    for msg in &addrs {
        if let Some(addr) = parse_address(msg) {
            by_index.entry(msg.header.index).or_default().push(addr);
        }
    }
    let mut out: Vec<Interface> = links
        .iter()
        .filter_map(|l| parse_link(l, is_wireless))
        .collect();
    for iface in &mut out {
        iface.addresses = by_index.remove(&iface.index).unwrap_or_default();
    }
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// Wireless devices are Ethernet-framed; only sysfs tells them apart.
fn is_wireless(name: &str) -> bool {
    let dir = Path::new("/sys/class/net").join(name);
    dir.join("wireless").exists() || dir.join("phy80211").exists()
}

/// Converts a link message; `None` for messages without a name.
pub(super) fn parse_link(msg: &LinkMessage, wireless: impl Fn(&str) -> bool) -> Option<Interface> {
    let mut name = None;
    let mut mtu = None;
    let mut info_kind = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                info_kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.clone()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    let name = name?;
    let f = msg.header.flags;
    let flags = InterfaceFlags {
        up: f.contains(LinkFlags::Up),
        running: f.contains(LinkFlags::Running),
        loopback: f.contains(LinkFlags::Loopback),
        point_to_point: f.contains(LinkFlags::Pointopoint),
        multicast: f.contains(LinkFlags::Multicast),
    };
    let kind = classify(
        msg.header.link_layer_type,
        info_kind.as_ref(),
        flags.loopback,
        || wireless(&name),
    );
    Some(Interface {
        index: msg.header.index,
        name,
        flags,
        mtu,
        kind,
        addresses: Vec::new(),
    })
}

/// Decides the [`InterfaceKind`] from the `IFLA_INFO_KIND` of virtual
/// devices, else from the link-layer (`ARPHRD_*`) type.
pub(super) fn classify(
    link_layer: LinkLayerType,
    info_kind: Option<&InfoKind>,
    loopback: bool,
    wireless: impl FnOnce() -> bool,
) -> InterfaceKind {
    if loopback || link_layer == LinkLayerType::Loopback {
        return InterfaceKind::Loopback;
    }
    if let Some(kind) = info_kind {
        match kind {
            // `tun` covers TAP too; a TAP device is Ethernet-framed.
            InfoKind::Tun if link_layer == LinkLayerType::Ether => return InterfaceKind::Virtual,
            InfoKind::Tun
            | InfoKind::Wireguard
            | InfoKind::IpIp
            | InfoKind::Ip6Tnl
            | InfoKind::SitTun
            | InfoKind::GreTun
            | InfoKind::GreTun6
            | InfoKind::GreTap
            | InfoKind::GreTap6
            | InfoKind::ErSpan
            | InfoKind::Ip6ErSpan
            | InfoKind::Vti
            | InfoKind::Vti6
            | InfoKind::Xfrm
            | InfoKind::Vxlan
            | InfoKind::Geneve
            | InfoKind::Gtp
            | InfoKind::Amt
            | InfoKind::BareUdp
            | InfoKind::Pfcp => return InterfaceKind::Tunnel,
            InfoKind::Dummy
            | InfoKind::Ifb
            | InfoKind::Bridge
            | InfoKind::Vlan
            | InfoKind::Veth
            | InfoKind::Bond
            | InfoKind::Team
            | InfoKind::IpVlan
            | InfoKind::IpVtap
            | InfoKind::MacVlan
            | InfoKind::MacVtap
            | InfoKind::MacSec
            | InfoKind::Vrf
            | InfoKind::Nlmon
            | InfoKind::Hsr
            | InfoKind::Netkit
            | InfoKind::Netdevsim
            | InfoKind::BatAdv
            | InfoKind::Dsa => return InterfaceKind::Virtual,
            InfoKind::VirtWifi => return InterfaceKind::Wireless,
            InfoKind::Vcan
            | InfoKind::Vxcan
            | InfoKind::Can
            | InfoKind::Ipoib
            | InfoKind::Wwan
            | InfoKind::RmNet => return InterfaceKind::Other,
            // Unknown kinds: judge by the link layer below.
            _ => {}
        }
    }
    match link_layer {
        LinkLayerType::Ether if wireless() => InterfaceKind::Wireless,
        LinkLayerType::Ether => InterfaceKind::Ethernet,
        LinkLayerType::Ieee80211
        | LinkLayerType::Ieee80211Prism
        | LinkLayerType::Ieee80211Radiotap => InterfaceKind::Wireless,
        LinkLayerType::None
        | LinkLayerType::Tunnel
        | LinkLayerType::Tunnel6
        | LinkLayerType::Sit
        | LinkLayerType::Ipgre
        | LinkLayerType::Ip6gre => InterfaceKind::Tunnel,
        _ => InterfaceKind::Other,
    }
}

/// The local address of an address message (`IFA_LOCAL`, which differs from
/// `IFA_ADDRESS` on point-to-point links, else `IFA_ADDRESS`).
pub(super) fn local_address(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

/// Converts an IPv4/IPv6 address message; `None` for other families.
pub(super) fn parse_address(msg: &AddressMessage) -> Option<InterfaceAddress> {
    let v6 = match msg.header.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let addr = local_address(msg)?;
    // IFA_FLAGS (32 bit) supersedes the 8-bit header field when present.
    let flags = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits())));
    Some(InterfaceAddress {
        addr,
        prefix_len: msg.header.prefix_len,
        deprecated: flags.contains(AddressFlags::Deprecated),
        // IFA_F_TEMPORARY shares its bit with IFA_F_SECONDARY (IPv4 only).
        temporary: v6 && flags.contains(AddressFlags::Secondary),
        tentative: flags.contains(AddressFlags::Tentative),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::address::AddressHeaderFlags;

    fn link(
        index: u32,
        name: &str,
        llt: LinkLayerType,
        flags: LinkFlags,
        kind: Option<InfoKind>,
    ) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.link_layer_type = llt;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::Mtu(1400));
        if let Some(k) = kind {
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(k)]));
        }
        m
    }

    #[test]
    fn link_parsing() {
        let m = link(
            7,
            "tun3",
            LinkLayerType::None,
            LinkFlags::Up | LinkFlags::Running | LinkFlags::Pointopoint | LinkFlags::Multicast,
            Some(InfoKind::Tun),
        );
        let i = parse_link(&m, |_| false).unwrap();
        assert_eq!(i.index, 7);
        assert_eq!(i.name, "tun3");
        assert_eq!(i.mtu, Some(1400));
        assert_eq!(i.kind, InterfaceKind::Tunnel);
        assert_eq!(
            i.flags,
            InterfaceFlags {
                up: true,
                running: true,
                loopback: false,
                point_to_point: true,
                multicast: true
            }
        );
        let mut nameless = m.clone();
        nameless
            .attributes
            .retain(|a| !matches!(a, LinkAttribute::IfName(_)));
        assert!(parse_link(&nameless, |_| false).is_none());
    }

    #[test]
    fn kind_classification() {
        use InterfaceKind as K;
        use LinkLayerType as L;
        let c = |l, k: Option<InfoKind>, lo, w| classify(l, k.as_ref(), lo, || w);
        assert_eq!(c(L::Loopback, None, true, false), K::Loopback);
        assert_eq!(c(L::Ether, None, false, false), K::Ethernet);
        assert_eq!(c(L::Ether, None, false, true), K::Wireless);
        assert_eq!(c(L::Ether, Some(InfoKind::Veth), false, false), K::Virtual);
        assert_eq!(
            c(L::Ether, Some(InfoKind::Bridge), false, false),
            K::Virtual
        );
        assert_eq!(c(L::Ether, Some(InfoKind::Tun), false, false), K::Virtual);
        assert_eq!(c(L::None, Some(InfoKind::Tun), false, false), K::Tunnel);
        assert_eq!(
            c(L::None, Some(InfoKind::Wireguard), false, false),
            K::Tunnel
        );
        assert_eq!(c(L::Sit, None, false, false), K::Tunnel);
        assert_eq!(c(L::Ppp, None, false, false), K::Other);
        assert_eq!(
            c(
                L::Ether,
                Some(InfoKind::Other("weird".into())),
                false,
                false
            ),
            K::Ethernet
        );
    }

    fn addr_msg(family: AddressFamily, ip: &str, prefix: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family;
        m.header.prefix_len = prefix;
        m.header.index = 2;
        m.attributes
            .push(AddressAttribute::Address(ip.parse().unwrap()));
        m
    }

    #[test]
    fn address_parsing() {
        let mut m = addr_msg(AddressFamily::Inet6, "2001:db8::5", 64);
        m.attributes.push(AddressAttribute::Flags(
            AddressFlags::Secondary | AddressFlags::Deprecated,
        ));
        let a = parse_address(&m).unwrap();
        assert_eq!(a.addr, "2001:db8::5".parse::<IpAddr>().unwrap());
        assert_eq!(a.prefix_len, 64);
        assert!(a.temporary && a.deprecated && !a.tentative);

        // Header flags only; IPv4 "secondary" is not "temporary".
        let mut m = addr_msg(AddressFamily::Inet, "10.0.0.2", 24);
        m.header.flags = AddressHeaderFlags::Secondary | AddressHeaderFlags::Tentative;
        let a = parse_address(&m).unwrap();
        assert!(!a.temporary && a.tentative && !a.deprecated);

        // Point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer.
        let mut m = addr_msg(AddressFamily::Inet, "10.0.0.9", 32);
        m.attributes
            .push(AddressAttribute::Local("10.0.0.1".parse().unwrap()));
        assert_eq!(
            parse_address(&m).unwrap().addr,
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );

        assert!(parse_address(&addr_msg(AddressFamily::Packet, "10.0.0.1", 8)).is_none());
    }
}
