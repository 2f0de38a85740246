//! The platform contract, the same test on every OS: what antq relies on
//! from `interfaces()`, `watch_changes()`, `create_tun()` and the route
//! functions.
//!
//! The unprivileged tests run everywhere (CI runs them on Linux, macOS and
//! Windows). The TUN test needs root / an elevated process and is
//! `#[ignore]`d: `sudo scripts/test.sh` runs it on Linux (in a private
//! network namespace, like `netns.rs`); elsewhere it is run by hand with
//! `sudo cargo test -p antq-platform -- --ignored`
//! (Windows: from an elevated terminal, with `wintun.dll` next to the test
//! binary in `target\debug\deps`, and the firewall letting the test's UDP
//! datagram in).

use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use antq_platform::{
    add_route, create_tun, del_route, interfaces, watch_changes, ChangeEvent, InterfaceKind,
    InterfaceRef, PlatformError, TunConfig,
};
use tokio::time::timeout;

mod common;
use common::{is_udp4_to, udp4_packet};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn loopback_is_listed_with_both_families() {
    runtime().block_on(async {
        let list = interfaces().await.unwrap();
        assert!(
            list.iter().all(|i| i.index != 0 && !i.name.is_empty()),
            "{list:?}"
        );
        let mut indexes: Vec<u32> = list.iter().map(|i| i.index).collect();
        indexes.dedup();
        assert_eq!(
            indexes.len(),
            list.len(),
            "sorted, unique indexes: {list:?}"
        );

        let lo = list
            .iter()
            .find(|i| i.flags.loopback)
            .unwrap_or_else(|| panic!("no loopback interface in {list:?}"));
        assert_eq!(lo.kind, InterfaceKind::Loopback, "{lo:?}");
        assert!(lo.flags.up, "{lo:?}");
        let has = |a: &str, p: u8| {
            lo.addresses
                .iter()
                .any(|x| x.addr == ip(a) && x.prefix_len == p)
        };
        assert!(has("127.0.0.1", 8), "{lo:?}");
        assert!(has("::1", 128), "{lo:?}");
    });
}

#[test]
fn watcher_subscribes_and_stops() {
    runtime().block_on(async {
        let mut w = watch_changes().unwrap();
        // Nothing needs to happen meanwhile; waiting must neither fail nor
        // end the subscription.
        if let Ok(event) = timeout(Duration::from_millis(300), w.next()).await {
            assert!(event.is_some(), "subscription ended");
        }
        drop(w);
        // A second subscription works after the first is gone.
        drop(watch_changes().unwrap());
    });
}

#[test]
fn bad_arguments_are_refused_before_the_os_is_asked() {
    runtime().block_on(async {
        assert!(matches!(
            add_route(InterfaceRef::Index(0), ip("10.0.0.0"), 8).await,
            Err(PlatformError::InvalidArgument { .. })
        ));
        assert!(matches!(
            add_route(InterfaceRef::Index(1), ip("10.0.0.0"), 33).await,
            Err(PlatformError::InvalidArgument { .. })
        ));
        assert!(matches!(
            del_route(InterfaceRef::Index(1), ip("fd00::"), 129).await,
            Err(PlatformError::InvalidArgument { .. })
        ));
        let small_v6 = TunConfig {
            mtu: 1200,
            addresses: vec![(ip("fd00::1"), 64)],
            ..TunConfig::default()
        };
        assert!(matches!(
            create_tun(&small_v6).await,
            Err(PlatformError::InvalidArgument { .. })
        ));
    });
}

/// Runs a test that needs root / admin (and is ignored unless asked for).
/// Linux: on a thread in a new network namespace. Elsewhere: directly.
fn privileged<F, Fut>(test: &str, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    #[cfg(target_os = "linux")]
    {
        common::require_root(test);
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET) as root");
            runtime().block_on(body());
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        assert!(
            antq_platform::has_net_admin(),
            "{test} needs {}",
            antq_platform::REQUIRED_PRIVILEGE
        );
        runtime().block_on(body());
    }
}

#[test]
#[ignore = "needs root/admin: creates a TUN device and routes (Windows: and wintun.dll)"]
fn tun_address_route_and_packets() {
    privileged("tun_address_route_and_packets", || async {
        let mut w = watch_changes().unwrap();
        let cfg = TunConfig {
            name: None,
            mtu: 1400,
            addresses: vec![(ip("10.81.0.1"), 24), (ip("fd00:81::1"), 64)],
            offload: false,
        };
        let tun = create_tun(&cfg).await.unwrap();
        assert!(!tun.offload());
        assert_eq!(tun.mtu(), 1400);

        // Listed, up, with its addresses.
        let list = interfaces().await.unwrap();
        let i = list
            .iter()
            .find(|i| i.index == tun.index())
            .unwrap_or_else(|| panic!("{} not listed in {list:?}", tun.name()));
        assert_eq!(i.name, tun.name());
        assert_eq!(i.kind, InterfaceKind::Tunnel, "{i:?}");
        assert!(i.flags.up, "{i:?}");
        for (a, p) in &cfg.addresses {
            assert!(
                i.addresses
                    .iter()
                    .any(|x| x.addr == *a && x.prefix_len == *p),
                "{a}/{p} missing: {i:?}"
            );
        }

        // The watcher saw the IPv4 address arrive.
        let index = tun.index();
        timeout(Duration::from_secs(5), async {
            loop {
                match w.next().await {
                    Some(ChangeEvent::AddressAdded { index: i, addr })
                        if i == index && addr == ip("10.81.0.1") =>
                    {
                        return
                    }
                    Some(_) => continue,
                    None => panic!("watcher ended"),
                }
            }
        })
        .await
        .expect("AddressAdded for the TUN's address within 5 s");

        // Routes through the device: added, refused twice, removed.
        add_route(&tun, ip("10.82.3.4"), 16).await.unwrap();
        add_route(&tun, ip("fd00:82::"), 48).await.unwrap();
        assert!(matches!(
            add_route(&tun, ip("10.82.0.0"), 16).await,
            Err(PlatformError::AlreadyExists { .. })
        ));
        del_route(&tun, ip("10.82.0.0"), 16).await.unwrap();
        del_route(tun.name(), ip("fd00:82::"), 48).await.unwrap();
        assert!(matches!(
            del_route(&tun, ip("10.82.0.0"), 16).await,
            Err(PlatformError::NotFound { .. })
        ));

        // Kernel -> TUN.
        let sock = UdpSocket::bind("10.81.0.1:0").unwrap();
        let dst: SocketAddr = "10.81.0.2:5555".parse().unwrap();
        let mut buf = vec![0u8; 2048];
        timeout(Duration::from_secs(3), async {
            loop {
                sock.send_to(b"contract-out", dst).unwrap();
                let got = timeout(Duration::from_millis(300), tun.recv(&mut buf)).await;
                if let Ok(n) = got {
                    if is_udp4_to(&buf[..n.unwrap()], dst, b"contract-out") {
                        return;
                    }
                }
            }
        })
        .await
        .expect("datagram read from the TUN within 3 s");

        // TUN -> kernel.
        let listener = tokio::net::UdpSocket::bind("10.81.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let pkt = udp4_packet("10.81.0.2:4444".parse().unwrap(), to, b"contract-in");
        assert_eq!(tun.send(&pkt).await.unwrap(), pkt.len());
        let mut got = [0u8; 64];
        let (n, from) = timeout(Duration::from_secs(3), listener.recv_from(&mut got))
            .await
            .expect("datagram from the TUN within 3 s")
            .unwrap();
        assert_eq!(&got[..n], b"contract-in");
        assert_eq!(from, "10.81.0.2:4444".parse::<SocketAddr>().unwrap());

        let name = tun.name().to_owned();
        drop(tun);
        let gone = timeout(Duration::from_secs(3), async {
            while interfaces().await.unwrap().iter().any(|i| i.name == name) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(gone.is_ok(), "{name} still listed after drop");
    });
}
