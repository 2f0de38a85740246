//! Tests of the Windows module that call Windows: they run on Windows and,
//! in CI on Linux, under Wine (`scripts/xcheck.sh`). Wine answers
//! `GetAdaptersAddresses` with the host's interfaces under their Linux
//! names (`lo`, `eth0`, ...): the loopback is there, with 127.0.0.1/8 and
//! ::1/128 and the host's loopback MTU (65536) where Windows reports none.
//! (The pure helpers' tests live beside them and run on Linux too, through
//! `check.rs`; the named pipes' tests are in `ipc/windows.rs`.)

use std::net::{IpAddr, SocketAddr, UdpSocket};

use windows_sys::Win32::Networking::WinSock::{NlroManual, MIB_IPPROTO_NETMGMT};

use super::{links, route, sys};
use crate::{InterfaceKind, PlatformError};

#[test]
fn interfaces_are_listed_with_sane_fields() {
    let list = links::list().unwrap();
    assert!(!list.is_empty());
    assert!(
        list.windows(2).all(|w| w[0].index < w[1].index),
        "sorted by index, no duplicates: {list:?}"
    );
    for i in &list {
        assert_ne!(i.index, 0, "{i:?}");
        assert!(!i.name.is_empty(), "{i:?}");
        assert_eq!(i.flags.up, i.flags.running, "{i:?}");
        assert_eq!(i.flags.loopback, i.kind == InterfaceKind::Loopback, "{i:?}");
        // The loopback pseudo-interface reports no MTU on Windows.
        if let Some(mtu) = i.mtu {
            assert!((576..=65536).contains(&mtu), "{i:?}");
        }
        for a in &i.addresses {
            let max = if a.addr.is_ipv4() { 32 } else { 128 };
            assert!(a.prefix_len <= max, "{i:?}");
            assert!(!a.addr.is_unspecified() && !a.addr.is_multicast(), "{i:?}");
        }
    }
    let lo = list
        .iter()
        .find(|i| i.flags.loopback)
        .unwrap_or_else(|| panic!("no loopback in {list:?}"));
    assert!(lo.flags.up, "{lo:?}");
    let has = |addr: &str, len: u8| {
        lo.addresses
            .iter()
            .any(|a| a.addr == addr.parse::<IpAddr>().unwrap() && a.prefix_len == len)
    };
    assert!(has("127.0.0.1", 8), "{lo:?}");
    assert!(has("::1", 128), "{lo:?}");
}

/// Every address listed on an interface that is up is this host's: a
/// socket binds to it. (A byte-order slip in the SOCKADDR decoding would
/// list addresses that are nobody's.) Link-local IPv6 addresses need their
/// scope to bind and are left out, as are tentative ones.
#[test]
fn listed_addresses_are_this_hosts() {
    let list = links::list().unwrap();
    let mut bound = 0;
    for i in list.iter().filter(|i| i.flags.up) {
        for a in &i.addresses {
            let link_local = match a.addr {
                IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
                IpAddr::V4(_) => false,
            };
            if link_local || a.tentative {
                continue;
            }
            UdpSocket::bind(SocketAddr::new(a.addr, 0))
                .unwrap_or_else(|e| panic!("bind {} of {}: {e}", a.addr, i.name));
            bound += 1;
        }
    }
    assert!(bound >= 2, "at least the loopback's two: {list:?}");
}

/// A route named by interface (`InterfaceRef::Name`) finds the adapter
/// by its alias: the names `interfaces()` lists resolve to their indexes,
/// and a name nobody has is `NotFound`.
#[test]
fn listed_names_resolve_to_their_indexes() {
    for i in links::list().unwrap() {
        assert_eq!(route::index_of_alias(&i.name).ok(), Some(i.index), "{i:?}");
    }
    assert!(matches!(
        route::index_of_alias("no such adapter"),
        Err(PlatformError::NotFound { .. })
    ));
}

/// The forward-table row of an on-link route: what `add_route` and
/// `del_route` hand to Windows.
#[test]
fn route_rows_are_on_link() {
    for (net, len) in [("10.99.0.0", 16), ("fd00:99::", 48)] {
        let net: IpAddr = net.parse().unwrap();
        let row = route::route_row(7, net, len);
        assert_eq!(row.InterfaceIndex, 7);
        assert_eq!(sys::ip_of_inet(&row.DestinationPrefix.Prefix), Some(net));
        assert_eq!(row.DestinationPrefix.PrefixLength, len);
        let next_hop = sys::ip_of_inet(&row.NextHop).unwrap();
        assert!(next_hop.is_unspecified() && next_hop.is_ipv4() == net.is_ipv4());
        assert_eq!(row.SitePrefixLength, 0);
        assert_eq!(row.Metric, 0);
        assert_eq!(row.Protocol, MIB_IPPROTO_NETMGMT);
        assert_eq!(row.Origin, NlroManual);
    }
}
