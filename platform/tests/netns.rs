//! Root-only tests, each inside a fresh network namespace of its own.
//!
//! Each test body runs on a thread that called `unshare(CLONE_NEWNET)`: the
//! thread (and every socket, TUN device and child it creates) lives in a new
//! namespace that the kernel tears down when the thread exits, so nothing in
//! the root namespace is touched and nothing leaks on panic. Test setup
//! (veth pairs, addresses, route dumps) uses rtnetlink directly. Every test
//! is `#[ignore = "needs root"]`: `sudo scripts/test.sh` runs them.
#![cfg(target_os = "linux")]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use antq_platform::{
    add_route, create_tun, del_route, interfaces, watch_changes, ChangeEvent, ChangeWatcher,
    GroTable, Interface, InterfaceKind, PlatformError, TunConfig, BATCH_HEADROOM,
};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::time::timeout;

mod common;
use common::{is_udp4_to, require_root, udp4_packet};

/// Runs `body` on a new thread in a new network namespace with `lo` up.
fn in_netns<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    require_root(test);
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) as root");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let h = netlink();
            set_up(&h, 1).await; // lo is index 1 in every namespace
            body().await;
        });
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn netlink() -> Handle {
    let (conn, handle, _) = rtnetlink::new_connection().unwrap();
    tokio::spawn(conn);
    handle
}

async fn set_up(h: &Handle, index: u32) {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .unwrap();
}

/// Adds a veth pair, returns the index of `a`.
async fn add_veth(h: &Handle, a: &str, b: &str) -> u32 {
    h.link()
        .add(LinkVeth::new(a, b).build())
        .execute()
        .await
        .unwrap();
    index_of(a).await
}

async fn index_of(name: &str) -> u32 {
    find(&interfaces().await.unwrap(), name)
        .unwrap_or_else(|| panic!("{name} not listed"))
        .index
}

fn find<'a>(list: &'a [Interface], name: &str) -> Option<&'a Interface> {
    list.iter().find(|i| i.name == name)
}

async fn add_addr(h: &Handle, index: u32, addr: &str, prefix: u8, nodad: bool) {
    let addr: IpAddr = addr.parse().unwrap();
    let mut req = h.address().add(index, addr, prefix);
    if nodad {
        let m = req.message_mut();
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await.unwrap();
}

async fn del_addr(h: &Handle, index: u32, addr: &str) {
    let addr: IpAddr = addr.parse().unwrap();
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(addr)
        .execute()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1, "address {addr} to delete");
    h.address().del(msgs[0].clone()).execute().await.unwrap();
}

/// `(destination, prefix length)` of the main-table routes through `oif`.
async fn routes_via(h: &Handle, oif: u32) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    let dumps = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for query in dumps {
        let routes: Vec<RouteMessage> = h.route().get(query).execute().try_collect().await.unwrap();
        for r in routes {
            if !r.attributes.contains(&RouteAttribute::Oif(oif)) {
                continue;
            }
            let dest = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                _ => None,
            });
            if let Some(dest) = dest {
                out.push((dest, r.header.destination_prefix_length));
            }
        }
    }
    out
}

/// Waits up to 1 s for an event matching `want`, skipping others.
async fn expect_event(w: &mut ChangeWatcher, what: &str, want: impl Fn(&ChangeEvent) -> bool) {
    let found = timeout(Duration::from_secs(1), async {
        loop {
            match w.next().await {
                Some(ev) if want(&ev) => return ev,
                Some(_) => continue,
                None => panic!("watcher ended while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within 1 s"));
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
#[ignore = "needs root"]
fn interfaces_lists_loopback_and_veth() {
    in_netns("interfaces_lists_loopback_and_veth", || async {
        let list = interfaces().await.unwrap();
        let lo = find(&list, "lo").expect("lo listed");
        assert_eq!(lo.kind, InterfaceKind::Loopback);
        assert!(lo.flags.loopback && lo.flags.up);
        let has = |i: &Interface, a: &str, p: u8| {
            i.addresses
                .iter()
                .any(|x| x.addr == ip(a) && x.prefix_len == p)
        };
        assert!(has(lo, "127.0.0.1", 8), "{lo:?}");
        assert!(has(lo, "::1", 128), "{lo:?}");

        let h = netlink();
        let v0 = add_veth(&h, "antqv0", "antqv1").await;
        add_addr(&h, v0, "10.99.0.1", 24, false).await;
        // Added while the link is down: DAD cannot run, stays tentative.
        add_addr(&h, v0, "fd00:99::1", 64, false).await;
        let list = interfaces().await.unwrap();
        let v = find(&list, "antqv0").unwrap();
        assert_eq!(v.index, v0);
        assert_eq!(v.kind, InterfaceKind::Virtual);
        assert_eq!(v.mtu, Some(1500));
        assert!(!v.flags.up && !v.flags.running && !v.flags.loopback);
        assert!(v.flags.multicast && !v.flags.point_to_point);
        assert!(has(v, "10.99.0.1", 24), "{v:?}");
        assert!(has(v, "fd00:99::1", 64), "{v:?}");
        let v6 = v
            .addresses
            .iter()
            .find(|a| a.addr == ip("fd00:99::1"))
            .unwrap();
        assert!(v6.tentative && !v6.deprecated && !v6.temporary, "{v6:?}");
        let v4 = v
            .addresses
            .iter()
            .find(|a| a.addr == ip("10.99.0.1"))
            .unwrap();
        assert!(!v4.tentative && !v4.deprecated && !v4.temporary, "{v4:?}");

        // Both ends up: carrier, so running.
        set_up(&h, v0).await;
        set_up(&h, index_of("antqv1").await).await;
        let running = timeout(Duration::from_secs(2), async {
            loop {
                let list = interfaces().await.unwrap();
                let v = find(&list, "antqv0").unwrap();
                if v.flags.up && v.flags.running {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(running.is_ok(), "antqv0 not running after both ends up");
    });
}

#[test]
#[ignore = "needs root"]
fn watch_changes_reports_addresses_links_routes() {
    in_netns("watch_changes_reports_addresses_links_routes", || async {
        let h = netlink();
        let v0 = add_veth(&h, "antqw0", "antqw1").await;
        let mut w = watch_changes().unwrap();

        add_addr(&h, v0, "10.98.0.1", 24, false).await;
        expect_event(&mut w, "IPv4 AddressAdded", |e| {
            *e == ChangeEvent::AddressAdded {
                index: v0,
                addr: ip("10.98.0.1"),
            }
        })
        .await;
        add_addr(&h, v0, "fd00:98::1", 64, true).await;
        expect_event(&mut w, "IPv6 AddressAdded", |e| {
            *e == ChangeEvent::AddressAdded {
                index: v0,
                addr: ip("fd00:98::1"),
            }
        })
        .await;

        del_addr(&h, v0, "10.98.0.1").await;
        expect_event(&mut w, "IPv4 AddressRemoved", |e| {
            *e == ChangeEvent::AddressRemoved {
                index: v0,
                addr: ip("10.98.0.1"),
            }
        })
        .await;
        del_addr(&h, v0, "fd00:98::1").await;
        expect_event(&mut w, "IPv6 AddressRemoved", |e| {
            *e == ChangeEvent::AddressRemoved {
                index: v0,
                addr: ip("fd00:98::1"),
            }
        })
        .await;

        set_up(&h, v0).await;
        expect_event(&mut w, "LinkChanged", |e| {
            *e == ChangeEvent::LinkChanged { index: v0 }
        })
        .await;
        add_route(v0, ip("10.123.0.0"), 16).await.unwrap();
        expect_event(&mut w, "RouteChanged", |e| *e == ChangeEvent::RouteChanged).await;
    });
}

async fn tun_names() -> Vec<String> {
    interfaces()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

#[test]
#[ignore = "needs root"]
fn tun_created_configured_and_carries_packets() {
    in_netns("tun_created_configured_and_carries_packets", || async {
        let cfg = TunConfig {
            name: Some("antqt0".into()),
            mtu: 1380,
            addresses: vec![(ip("10.77.0.1"), 24), (ip("fd00:77::1"), 64)],
            offload: false,
        };
        let tun = create_tun(&cfg).await.unwrap();
        assert_eq!(tun.name(), "antqt0");
        assert_eq!(tun.mtu(), 1380);
        assert!(!tun.offload());

        let list = interfaces().await.unwrap();
        let i = find(&list, "antqt0").unwrap();
        assert_eq!(i.index, tun.index());
        assert_eq!(i.mtu, Some(1380));
        assert_eq!(i.kind, InterfaceKind::Tunnel);
        assert!(i.flags.up, "{i:?}");
        for (a, p) in &cfg.addresses {
            let x = i
                .addresses
                .iter()
                .find(|x| x.addr == *a)
                .expect("address on TUN");
            assert_eq!(x.prefix_len, *p);
            assert!(!x.tentative, "DAD should be off: {x:?}");
        }
        // Usable at once: binding needs a non-tentative address.
        UdpSocket::bind("[fd00:77::1]:0").expect("IPv6 address usable without DAD");

        // Kernel -> TUN: a datagram to the TUN subnet comes out of recv().
        let sock = UdpSocket::bind("10.77.0.1:0").unwrap();
        let dst: SocketAddr = "10.77.0.2:5555".parse().unwrap();
        sock.send_to(b"antq-out", dst).unwrap();
        let mut buf = vec![0u8; 2048];
        timeout(Duration::from_secs(2), async {
            loop {
                let n = tun.recv(&mut buf).await.unwrap();
                if is_udp4_to(&buf[..n], dst, b"antq-out") {
                    return;
                }
            }
        })
        .await
        .expect("IPv4 packet read from the TUN within 2 s");

        // TUN -> kernel: a packet written with send() reaches a socket.
        let listener = tokio::net::UdpSocket::bind("10.77.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let pkt = udp4_packet("10.77.0.2:4444".parse().unwrap(), to, b"antq-in");
        assert_eq!(tun.send(&pkt).await.unwrap(), pkt.len());
        let mut got = [0u8; 64];
        let (n, from) = timeout(Duration::from_secs(2), listener.recv_from(&mut got))
            .await
            .expect("datagram from the TUN within 2 s")
            .unwrap();
        assert_eq!(&got[..n], b"antq-in");
        assert_eq!(from, "10.77.0.2:4444".parse::<SocketAddr>().unwrap());

        // Same name again while it exists: refused, not attached.
        assert!(matches!(
            create_tun(&cfg).await,
            Err(PlatformError::AlreadyExists { .. })
        ));

        drop(tun);
        assert!(!tun_names().await.contains(&"antqt0".to_string()));
    });
}

#[test]
#[ignore = "needs root"]
fn tun_with_offload_uses_batches() {
    in_netns("tun_with_offload_uses_batches", || async {
        let cfg = TunConfig {
            name: None,
            mtu: 1400,
            addresses: vec![(ip("10.78.0.1"), 24)],
            offload: true,
        };
        let tun = create_tun(&cfg).await.unwrap();
        assert!(tun.offload(), "kernel without IFF_VNET_HDR?");
        assert!(
            tun.name().starts_with("tun"),
            "kernel-chosen name {}",
            tun.name()
        );
        let mut one = [0u8; 100];
        assert_eq!(
            tun.recv(&mut one).await.unwrap_err().kind(),
            std::io::ErrorKind::Unsupported
        );

        let sock = UdpSocket::bind("10.78.0.1:0").unwrap();
        let dst: SocketAddr = "10.78.0.2:5555".parse().unwrap();
        sock.send_to(b"batch-out", dst).unwrap();
        let mut scratch = vec![0u8; BATCH_HEADROOM + 65535];
        let mut bufs = vec![vec![0u8; BATCH_HEADROOM + 1500]; 64];
        let mut sizes = vec![0usize; 64];
        timeout(Duration::from_secs(2), async {
            loop {
                let n = tun
                    .recv_batch(&mut scratch, &mut bufs, &mut sizes, BATCH_HEADROOM)
                    .await
                    .unwrap();
                for i in 0..n {
                    let p = &bufs[i][BATCH_HEADROOM..BATCH_HEADROOM + sizes[i]];
                    if is_udp4_to(p, dst, b"batch-out") {
                        return;
                    }
                }
            }
        })
        .await
        .expect("packet from recv_batch within 2 s");

        let listener = tokio::net::UdpSocket::bind("10.78.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let pkt = udp4_packet("10.78.0.2:4444".parse().unwrap(), to, b"batch-in");
        let mut out = vec![[vec![0u8; BATCH_HEADROOM], pkt].concat()];
        let mut gro = GroTable::new();
        assert!(
            tun.send_batch(&mut gro, &mut out, BATCH_HEADROOM)
                .await
                .unwrap()
                > 0
        );
        let mut got = [0u8; 64];
        let (n, _) = timeout(Duration::from_secs(2), listener.recv_from(&mut got))
            .await
            .expect("datagram from send_batch within 2 s")
            .unwrap();
        assert_eq!(&got[..n], b"batch-in");
        assert!(tun.send_batch(&mut gro, &mut out, 0).await.is_err());

        let name = tun.name().to_string();
        drop(tun);
        assert!(!tun_names().await.contains(&name));
    });
}

#[test]
#[ignore = "needs root"]
fn routes_added_and_deleted_through_tun() {
    in_netns("routes_added_and_deleted_through_tun", || async {
        let tun = create_tun(&TunConfig {
            name: Some("antqr0".into()),
            mtu: 1400,
            addresses: vec![(ip("10.79.0.1"), 24), (ip("fd00:79::1"), 64)],
            offload: false,
        })
        .await
        .unwrap();
        let h = netlink();
        let idx = tun.index();

        add_route(&tun, ip("10.200.1.2"), 16).await.unwrap(); // host bits cleared
        add_route("antqr0", ip("fd00:200::"), 48).await.unwrap();
        let routes = routes_via(&h, idx).await;
        assert!(routes.contains(&(ip("10.200.0.0"), 16)), "{routes:?}");
        assert!(routes.contains(&(ip("fd00:200::"), 48)), "{routes:?}");

        assert!(matches!(
            add_route(idx, ip("10.200.0.0"), 16).await,
            Err(PlatformError::AlreadyExists { .. })
        ));
        assert!(matches!(
            add_route("antq-nonesuch", ip("10.201.0.0"), 16).await,
            Err(PlatformError::NotFound { .. })
        ));
        assert!(matches!(
            add_route(idx, ip("10.0.0.0"), 33).await,
            Err(PlatformError::InvalidArgument { .. })
        ));

        del_route(idx, ip("10.200.0.0"), 16).await.unwrap();
        del_route(&tun, ip("fd00:200::"), 48).await.unwrap();
        let routes = routes_via(&h, idx).await;
        assert!(!routes.contains(&(ip("10.200.0.0"), 16)), "{routes:?}");
        assert!(!routes.contains(&(ip("fd00:200::"), 48)), "{routes:?}");
        // The on-link routes of the TUN's own addresses stay.
        assert!(routes.contains(&(ip("10.79.0.0"), 24)), "{routes:?}");

        assert!(matches!(
            del_route(idx, ip("10.200.0.0"), 16).await,
            Err(PlatformError::NotFound { .. })
        ));
    });
}

#[test]
#[ignore = "needs root"]
fn has_net_admin_as_root() {
    require_root("has_net_admin_as_root");
    assert!(antq_platform::has_net_admin());
}
