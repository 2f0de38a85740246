//! A peer that sends tunnel packets with a forged inner source address
//! (root only): the receiver drops them, counts them in `drop_bad_source`,
//! and nothing comes back; packets from the peer's own address still pass.
//!
//! Run: `cargo test --test netns -- --ignored --nocapture spoof::` as root.

use std::time::Duration;

use crate::common::{describe, wait_until};
use crate::mesh::Mesh;

fn bad_source_drops(mesh: &Mesh, host: &str) -> u64 {
    let status = mesh.status(host);
    status["stats"]["drop_bad_source"]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop_bad_source in the status of {host}: {status}"))
}

fn ping(mesh: &Mesh, host: &str, args: &[&str]) -> std::process::Output {
    let mut full = vec!["ping", "-c", "3", "-i", "0.2", "-W", "1"];
    full.extend_from_slice(args);
    mesh.exec(host, &full)
}

#[test]
#[ignore = "needs root"]
fn forged_inner_sources_are_dropped_and_counted() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up(&["full-cone", "full-cone"]);
    let settled = wait_until(Duration::from_secs(10), || {
        mesh.paths("a")
            .iter()
            .all(|(_, p)| p != "none" && p != "missing")
    });
    assert!(settled, "no path a -> b:\n{}", mesh.dump());

    // Control: a's own addresses are within its allowed IPs at b.
    for target in [mesh.ip4("b"), mesh.ip6("b")] {
        let out = ping(&mesh, "a", &[&target]);
        assert!(
            out.status.success(),
            "ping a -> {target}: {}\n{}",
            describe(&out),
            mesh.dump()
        );
    }
    let before = bad_source_drops(&mesh, "b");
    assert_eq!(before, 0, "no drops before forging");

    // a adds addresses that b does not allow it to send from (outside
    // every peer's allowed IPs) and pings b from them.
    for addr in ["10.90.0.77/32", "fd90::77/128"] {
        let out = mesh.exec("a", &["ip", "addr", "add", addr, "dev", "antq0", "nodad"]);
        assert!(
            out.status.success(),
            "ip addr add {addr}: {}",
            describe(&out)
        );
    }
    let forged = [("10.90.0.77", mesh.ip4("b")), ("fd90::77", mesh.ip6("b"))];
    for (source, target) in &forged {
        let out = ping(&mesh, "a", &["-I", source, target]);
        assert!(
            !out.status.success(),
            "a reply to a forged source {source}: {}",
            describe(&out)
        );
    }
    let after = bad_source_drops(&mesh, "b");
    println!("b dropped {} packets with a forged source", after - before);
    assert!(
        after - before >= 6,
        "b counted {} forged packets, expected at least 6:\n{}",
        after - before,
        mesh.dump()
    );

    // The real addresses still work afterwards.
    let out = ping(&mesh, "a", &[&mesh.ip4("b")]);
    assert!(
        out.status.success(),
        "ping after forging: {}",
        describe(&out)
    );
    assert_eq!(bad_source_drops(&mesh, "b"), after);
}
