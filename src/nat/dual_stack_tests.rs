//! Dual-stack host candidates from the platform's interface list: both
//! families of each usable interface become candidates, IPv6 slightly
//! ahead of IPv4 on the same interface and interfaces in OS order; down,
//! loopback, link-local and deprecated addresses never do. The last test
//! runs on the real interfaces of whatever OS runs it.

use std::net::{IpAddr, SocketAddr};

use antq_platform::{Interface, InterfaceAddress, InterfaceFlags, InterfaceKind};

use super::candidate::{host_addresses, interface_addresses};
use super::{CandidateKind, CandidateSet, CandidateSetConfig};

fn addr(a: &str, prefix_len: u8) -> InterfaceAddress {
    InterfaceAddress {
        addr: a.parse().unwrap(),
        prefix_len,
        deprecated: false,
        temporary: false,
        tentative: false,
    }
}

fn iface(
    index: u32,
    name: &str,
    up: bool,
    kind: InterfaceKind,
    addrs: Vec<InterfaceAddress>,
) -> Interface {
    Interface {
        index,
        name: name.into(),
        flags: InterfaceFlags {
            up,
            running: up,
            loopback: kind == InterfaceKind::Loopback,
            point_to_point: false,
            multicast: true,
        },
        mtu: Some(1500),
        kind,
        addresses: addrs,
    }
}

fn candidates(ifaces: &[Interface], port: u16) -> Vec<SocketAddr> {
    let mut set = CandidateSet::new(CandidateSetConfig::default());
    set.add_host_addrs(port, host_addresses(ifaces));
    assert!(set
        .candidates()
        .iter()
        .all(|c| c.kind == CandidateKind::Host));
    set.candidates().iter().map(|c| c.addr).collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A typical dual-stack laptop: wired and Wi-Fi with both families, a
/// docker bridge that is down, loopback.
fn laptop() -> Vec<Interface> {
    let mut deprecated = addr("2001:db8::dead", 64);
    deprecated.deprecated = true;
    let mut temporary = addr("2001:db8:1::5", 64);
    temporary.temporary = true;
    vec![
        iface(
            1,
            "lo",
            true,
            InterfaceKind::Loopback,
            vec![addr("127.0.0.1", 8), addr("::1", 128)],
        ),
        iface(
            2,
            "eth0",
            true,
            InterfaceKind::Ethernet,
            vec![
                addr("192.168.1.10", 24),
                addr("fe80::1", 64),
                addr("2001:db8::10", 64),
                deprecated,
            ],
        ),
        iface(
            3,
            "wlan0",
            true,
            InterfaceKind::Wireless,
            vec![addr("10.0.0.5", 24), temporary],
        ),
        iface(
            4,
            "docker0",
            false,
            InterfaceKind::Virtual,
            vec![addr("172.17.0.1", 16), addr("fd00:d0c::1", 64)],
        ),
    ]
}

#[test]
fn both_families_of_each_usable_interface() {
    assert_eq!(
        candidates(&laptop(), 4000),
        vec![
            sa("[2001:db8::10]:4000"),
            sa("192.168.1.10:4000"),
            sa("[2001:db8:1::5]:4000"),
            sa("10.0.0.5:4000"),
        ]
    );
}

#[test]
fn host_addresses_skip_down_and_loopback_interfaces() {
    let addrs: Vec<(IpAddr, String)> = host_addresses(&laptop())
        .into_iter()
        .map(|(a, i)| (a, i.name))
        .collect();
    assert!(
        addrs.iter().all(|(_, n)| n == "eth0" || n == "wlan0"),
        "{addrs:?}"
    );
    // Every address of those is passed on; filtering is the set's job.
    assert_eq!(addrs.len(), 6);
    let dead = host_addresses(&laptop())
        .into_iter()
        .find(|(a, _)| *a == "2001:db8::dead".parse::<IpAddr>().unwrap())
        .unwrap();
    assert!(dead.1.deprecated);
}

#[test]
fn single_stack_hosts() {
    let v4 = vec![iface(
        2,
        "eth0",
        true,
        InterfaceKind::Ethernet,
        vec![addr("192.168.1.10", 24), addr("fe80::1", 64)],
    )];
    assert_eq!(candidates(&v4, 9), vec![sa("192.168.1.10:9")]);
    let v6 = vec![iface(
        2,
        "eth0",
        true,
        InterfaceKind::Ethernet,
        vec![addr("fe80::1", 64), addr("2001:db8::10", 64)],
    )];
    assert_eq!(candidates(&v6, 9), vec![sa("[2001:db8::10]:9")]);
}

#[test]
fn interface_order_ranks_before_family() {
    // wlan0 listed first: its IPv4 address beats eth0's IPv6 one.
    let mut list = laptop();
    list.swap(1, 2);
    let got = candidates(&list, 1);
    assert_eq!(got[0], sa("[2001:db8:1::5]:1"));
    assert_eq!(got[1], sa("10.0.0.5:1"));
    assert_eq!(got[2], sa("[2001:db8::10]:1"));
}

/// On this machine's real interfaces: candidates come only from up,
/// non-loopback interfaces, and the loopback interface, when loopback is
/// allowed (single-host meshes), gives one candidate per family with IPv6
/// first.
#[test]
fn candidates_from_this_hosts_interfaces() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ifaces = rt.block_on(antq_platform::interfaces()).unwrap();

    let usable: Vec<IpAddr> = ifaces
        .iter()
        .filter(|i| i.flags.up && !i.flags.loopback)
        .flat_map(|i| i.addresses.iter().map(|a| a.addr))
        .collect();
    for c in candidates(&ifaces, 5000) {
        assert!(
            usable.contains(&c.ip()),
            "{c} not from a usable interface: {ifaces:?}"
        );
    }

    let lo = ifaces
        .iter()
        .find(|i| i.flags.loopback)
        .unwrap_or_else(|| panic!("no loopback interface: {ifaces:?}"));
    let mut set = CandidateSet::new(CandidateSetConfig {
        allow_loopback: true,
        ..CandidateSetConfig::default()
    });
    set.add_host_addrs(5000, interface_addresses(lo));
    let got: Vec<SocketAddr> = set.candidates().iter().map(|c| c.addr).collect();
    assert_eq!(got, vec![sa("[::1]:5000"), sa("127.0.0.1:5000")], "{lo:?}");
}
