//! A full 1280-byte IPv6 packet (the IPv6 minimum MTU, antq's default TUN
//! MTU) crosses the tunnel unfragmented, on a direct path and on a relayed
//! one (root only).

use std::time::Duration;

use crate::common::{describe, wait_until};
use crate::mesh::Mesh;

#[test]
#[ignore = "needs root"]
fn full_size_ipv6_packets_fit_direct_and_relayed_paths() {
    let _alone = crate::root_alone();
    // a (symmetric) ↔ b (full-cone) goes direct; a ↔ c (symmetric) is
    // relayed (two symmetric NATs without port mapping).
    let mesh = Mesh::up(&["symmetric", "full-cone", "symmetric"]);
    let settled = wait_until(Duration::from_secs(10), || {
        let paths = mesh.paths("a");
        paths.len() == 2 && paths.iter().all(|(_, p)| p != "none" && p != "missing")
    });
    assert!(settled, "no paths:\n{}", mesh.dump());
    for peer in ["b", "c"] {
        // 1232 bytes of ICMPv6 payload + 8 + 40 = 1280 bytes, don't fragment.
        let out = mesh.exec(
            "a",
            &[
                "ping",
                "-6",
                "-c",
                "3",
                "-W",
                "2",
                "-s",
                "1232",
                "-M",
                "do",
                &mesh.ip6(peer),
            ],
        );
        assert!(
            out.status.success(),
            "1280-byte IPv6 ping a -> {peer}: {}\n{}",
            describe(&out),
            mesh.dump()
        );
        let out = mesh.exec(
            "a",
            &[
                "ping",
                "-c",
                "3",
                "-W",
                "2",
                "-s",
                "1252",
                "-M",
                "do",
                &mesh.ip4(peer),
            ],
        );
        assert!(
            out.status.success(),
            "1280-byte IPv4 ping a -> {peer}: {}\n{}",
            describe(&out),
            mesh.dump()
        );
    }
    let paths = mesh.paths("a");
    println!("paths from a: {paths:?}");
    assert!(
        paths.iter().any(|(_, p)| p == "relay"),
        "one path is relayed: {paths:?}"
    );
}
