//! A host whose network drops all UDP (`udp-blocked`) in the NAT lab (root
//! only): it reaches the bootstrap over TCP and its peer (behind a `home`
//! NAT) through the bootstrap's relay. Ping both ways, a checksum-verified
//! HTTP download, `status --json` showing the relay path and the TCP
//! transport; then UDP is unblocked and the host moves back to UDP.
//!
//! Run: `cargo nextest run --test netns --run-ignored only tcp_relay::` as
//! root (`ANTQ_TUN_BIN` pointing at a release build, like `scripts/test.sh`
//! does).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{describe, wait_until};
use crate::mesh::{Failures, Mesh};
use crate::traffic::HttpBlob;

/// `(bootstrap transport, peer path, peer transport, peer remote)` from
/// `host`'s status.
fn summary(mesh: &Mesh, host: &str) -> (String, String, String, String) {
    let status = mesh.try_status(host).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let peer = &status["peers"][0];
    (
        text(&status["bootstraps"][0]["transport"]),
        text(&peer["path"]),
        text(&peer["transport"]),
        text(&peer["remote"]),
    )
}

fn ping(mesh: &Mesh, from: &str, family: &str, addr: &str, failures: &mut Failures) {
    let out = mesh.exec(
        from,
        &["ping", family, "-c", "5", "-i", "0.2", "-W", "2", addr],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("packets transmitted") || l.starts_with("rtt"))
        .collect();
    eprintln!("ping {from} -> {addr}: {}", summary.join(" / "));
    failures.check(out.status.success(), || {
        format!("ping {from} -> {addr} failed: {}", describe(&out))
    });
}

#[test]
#[ignore = "needs root"]
fn udp_blocked_host_reaches_its_peer_through_the_tcp_relay() {
    let _alone = crate::root_alone();
    let test_start = Instant::now();
    let mesh = Mesh::up(&["udp-blocked", "home"]);
    let mut failures = Failures::default();

    // 1. Both sides get the relay path; a is on TCP, b on UDP.
    let start = Instant::now();
    let (mut sa, mut sb) = Default::default();
    let connected = wait_until(Duration::from_secs(20), || {
        sa = summary(&mesh, "a");
        sb = summary(&mesh, "b");
        sa.1 == "relay" && sb.1 == "relay"
    });
    eprintln!(
        "connected: {connected} after {:.1} s; a (udp-blocked): {sa:?}; b (home): {sb:?}",
        start.elapsed().as_secs_f64()
    );
    failures.check(connected, || {
        format!("no relay path within 20 s: a {sa:?}, b {sb:?}")
    });
    failures.check(sa.0 == "tcp" && sa.2 == "tcp", || {
        format!("a should reach the bootstrap and the relay over TCP: {sa:?}")
    });
    failures.check(sa.3 == "198.18.0.10:9000", || {
        format!("a's relay remote should be the bootstrap's address: {sa:?}")
    });
    failures.check(sb.0 == "udp" && sb.2 == "udp", || {
        format!("b should be on UDP: {sb:?}")
    });
    let status_a = mesh.try_status("a").unwrap_or_default();
    failures.check(status_a["bootstraps"][0]["observed"].is_null(), || {
        format!("a must not have an observed address over TCP: {status_a}")
    });

    // 2. Ping both ways, IPv4 and IPv6 inside the tunnel.
    for (from, to) in [("a", "b"), ("b", "a")] {
        ping(&mesh, from, "-4", &mesh.ip4(to), &mut failures);
        ping(&mesh, from, "-6", &mesh.ip6(to), &mut failures);
    }

    // 3. HTTP: a ~5 MB random file on b, fetched by a, checksummed.
    let size = 5 * 1024 * 1024;
    let blob = HttpBlob::serve(&mesh, "b", size);
    let fetch = blob.fetch(&mesh, "a");
    eprintln!(
        "http a <- b over the TCP relay: curl {}, {:.1} s ({:.1} Mbit/s), sha256 {}",
        if fetch.ok { "ok" } else { "failed" },
        fetch.secs,
        size as f64 * 8.0 / fetch.secs / 1e6,
        if fetch.same { "equal" } else { "DIFFERENT" },
    );
    failures.check(fetch.ok && fetch.same, || {
        format!("http a <- b: {}", fetch.detail)
    });
    // Still relay-only over TCP after the transfer.
    let sa = summary(&mesh, "a");
    failures.check(sa.1 == "relay" && sa.2 == "tcp", || {
        format!("a left the TCP relay: {sa:?}")
    });

    // 4. UDP comes back (the router's UDP drop rules go; conntrack is left
    // alone, so the TCP stream lives on): a retries UDP every 30-39 s and
    // moves its bootstrap link and its relay path back to UDP.
    let ra = mesh.ns("ra");
    for tool in ["iptables", "ip6tables"] {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &ra, tool, "-D", "LAB_FWD", "-p", "udp", "-j", "DROP",
            ])
            .output()
            .expect("iptables");
        failures.check(out.status.success(), || {
            format!("{tool} -D LAB_FWD in {ra}: {}", describe(&out))
        });
    }
    let start = Instant::now();
    let mut now = summary(&mesh, "a");
    let back = wait_until(Duration::from_secs(60), || {
        now = summary(&mesh, "a");
        now.0 == "udp" && (now.1 == "direct" || (now.1 == "relay" && now.2 == "udp"))
    });
    eprintln!(
        "back on UDP: {back} after {:.1} s: {now:?}",
        start.elapsed().as_secs_f64()
    );
    failures.check(back, || {
        format!("a did not move back to UDP within 60 s: {now:?}")
    });
    failures.check(mesh.log("a").contains("leaving TCP"), || {
        "a's log does not show the move from TCP to UDP".to_owned()
    });
    ping(&mesh, "a", "-4", &mesh.ip4("b"), &mut failures);
    ping(&mesh, "b", "-4", &mesh.ip4("a"), &mut failures);

    eprintln!("test took {:.1} s", test_start.elapsed().as_secs_f64());
    failures.finish(&mesh);
}
