//! Subnet routes and the exit node end to end (root only).
//!
//! - A LAN namespace behind host c (no antq on it), reached from a by its
//!   LAN addresses through the tunnel: c is a gateway for its subnets and
//!   masquerades, so the LAN needs no route back. A subnet c does not serve
//!   stays out of reach even though a sends it to c.
//! - A "far" namespace reachable only through c's uplink: with c as a's
//!   exit node, a reaches it over IPv4 and IPv6 while a's links to the
//!   bootstrap and to b stay as they were; after `down`, and after
//!   `kill -9`, `up` (with `--exit-node`) and `down`, a's routes, rules,
//!   nftables ruleset and sysctls are exactly as before.
//!
//! Run: `sudo scripts/test.sh routes::`.

use std::time::Duration;

use crate::common::{bin, describe, wait_until};
use crate::mesh::{Failures, Mesh};
use crate::traffic::HttpBlob;

/// A namespace `P-name` linked to `host` by a veth pair: `dev` in `host`
/// with `host_addrs`, `eth0` in the new namespace with `far_addrs`, and no
/// route beyond the link (the lab's `down` removes it with the rest).
fn attach_behind(
    mesh: &Mesh,
    host: &str,
    name: &str,
    dev: &str,
    host_addrs: &[&str],
    far_addrs: &[&str],
) {
    let ns = mesh.ns(name);
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", describe(&out));
    };
    run(&["netns", "add", &ns]);
    run(&[
        "-n",
        &mesh.ns(host),
        "link",
        "add",
        dev,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &ns,
    ]);
    for (n, dev, addrs) in [
        (mesh.ns(host), dev, host_addrs),
        (ns.clone(), "eth0", far_addrs),
    ] {
        for a in addrs {
            run(&["-n", &n, "addr", "add", a, "dev", dev, "nodad"]);
        }
        run(&["-n", &n, "link", "set", dev, "up"]);
    }
    run(&["-n", &ns, "link", "set", "lo", "up"]);
}

/// Puts `lines` into `[interface]` of `host`'s config.
fn add_to_interface(mesh: &Mesh, host: &str, lines: &str) {
    let path = mesh.dir().join(format!("{host}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("[interface]\n", &format!("[interface]\n{lines}\n"), 1);
    std::fs::write(&path, text).unwrap();
}

/// Adds `nets` to the allowed IPs of `peer` in `host`'s config.
fn give_peer(mesh: &Mesh, host: &str, peer: &str, nets: &[&str]) {
    let path = mesh.dir().join(format!("{host}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let key = mesh.public_key(peer);
    let at = text.find(&key).expect("peer in config");
    let line_start = at + text[at..].find("allowed_ips = [").unwrap() + "allowed_ips = [".len();
    let extra: String = nets.iter().map(|n| format!("\"{n}\", ")).collect();
    let text = format!("{}{extra}{}", &text[..line_start], &text[line_start..]);
    std::fs::write(&path, text).unwrap();
}

fn ping(mesh: &Mesh, host: &str, addr: &str) -> bool {
    mesh.exec(host, &["ping", "-c", "3", "-i", "0.2", "-W", "2", addr])
        .status
        .success()
}

fn peer_up(mesh: &Mesh, host: &str, peer: &str) -> bool {
    mesh.paths(host)
        .iter()
        .any(|(h, p)| h == peer && (p == "direct" || p == "relay"))
}

/// Everything a tunnel may change in `host`'s namespace, as text.
fn snapshot(mesh: &Mesh, host: &str) -> String {
    let mut text = String::new();
    for args in [
        &["ip", "-4", "route", "show", "table", "all"][..],
        &["ip", "-6", "route", "show", "table", "all"],
        &["ip", "-4", "rule"],
        &["ip", "-6", "rule"],
        &["nft", "list", "ruleset"],
        &[
            "sysctl",
            "net.ipv4.ip_forward",
            "net.ipv6.conf.all.forwarding",
            "net.ipv4.conf.all.src_valid_mark",
            "net.ipv6.conf.eth0.accept_ra",
        ],
    ] {
        let out = mesh.exec(host, args);
        text += &format!(
            "$ {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    text
}

/// Waits until `host`'s tunnel process is gone and its device with it.
fn wait_gone(mesh: &Mesh, host: &str) -> bool {
    wait_until(Duration::from_secs(15), || {
        !mesh
            .exec(host, &["ip", "link", "show", "antq0"])
            .status
            .success()
    })
}

/// `antq-tun down` of `host` (started by `guard`), then checks that its
/// namespace is back to `before` (see [`snapshot`]); `when` names the
/// moment in failure messages.
fn down_and_compare(
    mesh: &Mesh,
    failures: &mut Failures,
    host: &str,
    guard: crate::common::ChildGuard,
    before: &str,
    when: &str,
) {
    let config = mesh.dir().join(format!("{host}.toml"));
    let out = mesh.exec(host, &[bin(), "down", "-c", config.to_str().unwrap()]);
    failures.check(out.status.success(), || format!("down: {}", describe(&out)));
    drop(guard);
    failures.check(wait_gone(mesh, host), || format!("{host}'s device stayed"));
    let after = snapshot(mesh, host);
    failures.check(after == before, || {
        format!("{host} not restored {when}:\n--- before\n{before}\n--- after\n{after}")
    });
}

/// `antq-tun up --exit-node KEY` in `host`, logging to `log` in the mesh's
/// directory.
fn start_with_exit_node(
    mesh: &Mesh,
    host: &str,
    key: &str,
    log: &str,
) -> crate::common::ChildGuard {
    let config = mesh.dir().join(format!("{host}.toml"));
    let child = mesh
        .command(
            host,
            &[
                bin(),
                "up",
                "-c",
                config.to_str().unwrap(),
                "--exit-node",
                key,
            ],
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(mesh.dir().join(log)).unwrap())
        .spawn()
        .unwrap();
    crate::common::ChildGuard(Some(child))
}

#[test]
#[ignore = "needs root"]
fn gateway_carries_a_to_the_lan_behind_c() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up_with(&["home", "full-cone", "home"], &["--hold", "a,b,c"]);
    let mut failures = Failures::default();
    attach_behind(
        &mesh,
        "c",
        "lanc",
        "lan0",
        &["192.168.50.1/24", "192.168.60.1/24", "fd50::1/64"],
        &["192.168.50.2/24", "192.168.60.2/24", "fd50::2/64"],
    );
    add_to_interface(
        &mesh,
        "c",
        "gateway = true\nsubnets = [\"192.168.50.0/24\", \"fd50::/64\"]\nmasquerade = true",
    );
    // a sends c's subnets to c, and one subnet c does not serve.
    give_peer(
        &mesh,
        "a",
        "c",
        &["192.168.50.0/24", "fd50::/64", "192.168.60.0/24"],
    );
    let before_c = snapshot(&mesh, "c");
    let (_a, _b, c) = (mesh.start("a"), mesh.start("b"), mesh.start("c"));
    let up = wait_until(Duration::from_secs(20), || peer_up(&mesh, "a", "c"));
    assert!(up, "a never reached c:\n{}", mesh.dump());

    failures.check(ping(&mesh, "a", "192.168.50.2"), || {
        "a cannot ping the LAN behind c over IPv4".into()
    });
    failures.check(ping(&mesh, "a", "fd50::2"), || {
        "a cannot ping the LAN behind c over IPv6".into()
    });
    let blob = HttpBlob::serve_at(&mesh, "lanc", "192.168.50.2", 5 << 20);
    let fetch = blob.fetch(&mesh, "a");
    failures.check(fetch.ok && fetch.same, || {
        format!("5 MB from the LAN: {fetch:?}")
    });
    eprintln!("5 MB from the LAN behind c in {:.2} s", fetch.secs);
    failures.check(!ping(&mesh, "a", "192.168.60.2"), || {
        "a reached 192.168.60.2, a subnet c does not serve".into()
    });
    let st = mesh.status("c");
    failures.check(
        st["routing"]["gateway"] == true
            && st["routing"]["host_changes"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|c| c.as_str().is_some_and(|c| c.contains("ip_forward")))
            }),
        || format!("c's status does not show the gateway: {}", st["routing"]),
    );
    let text = mesh.exec("c", &[bin(), "status", "-i", "antq0"]);
    failures.check(
        String::from_utf8_lossy(&text.stdout)
            .contains("gateway for 192.168.50.0/24, fd50::/64, masquerading"),
        || format!("text status: {}", describe(&text)),
    );

    // The LAN link stays (it is not the tunnel's); everything else is back.
    down_and_compare(&mesh, &mut failures, "c", c, &before_c, "after down");
    failures.finish(&mesh);
}

#[test]
#[ignore = "needs root"]
fn exit_node_carries_everything_and_leaves_routing_as_before() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up_with(&["home", "full-cone", "home"], &["--hold", "a,b,c"]);
    let mut failures = Failures::default();
    attach_behind(
        &mesh,
        "c",
        "farc",
        "far0",
        &["203.0.113.1/24", "2001:db8:113::1/64"],
        &["203.0.113.10/24", "2001:db8:113::10/64"],
    );
    failures.check(!ping(&mesh, "a", "203.0.113.10"), || {
        "a reaches the far namespace without the tunnel: the test proves nothing".into()
    });
    add_to_interface(&mesh, "c", "exit = true");
    let c_key = mesh.public_key("c");
    add_to_interface(&mesh, "a", &format!("exit_node = \"{c_key}\""));
    // A strict reverse-path filter, as many hosts have: replies to the
    // tunnel's own (marked) sockets must still come in.
    let out = mesh.exec("a", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let before = snapshot(&mesh, "a");
    let (_b, _c) = (mesh.start("b"), mesh.start("c"));
    let a = mesh.start("a");
    let up = wait_until(Duration::from_secs(20), || {
        peer_up(&mesh, "a", "c")
            && mesh
                .paths("a")
                .iter()
                .any(|(h, p)| h == "b" && p == "direct")
    });
    assert!(up, "a never reached c and b (direct):\n{}", mesh.dump());
    let links = |st: &serde_json::Value| {
        let b = mesh.public_key("b");
        let peer = st["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["public_key"] == b.as_str()).cloned())
            .unwrap_or_default();
        (
            peer["path"].clone(),
            peer["remote"].clone(),
            st["bootstraps"].clone(),
        )
    };
    let first = links(&mesh.status("a"));

    failures.check(ping(&mesh, "a", "203.0.113.10"), || {
        "a cannot reach the far side through c (IPv4)".into()
    });
    failures.check(ping(&mesh, "a", "2001:db8:113::10"), || {
        "a cannot reach the far side through c (IPv6)".into()
    });
    let blob = HttpBlob::serve_at(&mesh, "farc", "203.0.113.10", 5 << 20);
    let fetch = blob.fetch(&mesh, "a");
    failures.check(fetch.ok && fetch.same, || {
        format!("5 MB through the exit node: {fetch:?}")
    });
    // Tunnel addresses still go to their owners, not to the exit node.
    failures.check(ping(&mesh, "a", &mesh.ip4("b")), || {
        "a cannot ping b".into()
    });
    let then = links(&mesh.status("a"));
    failures.check(first == then, || {
        format!("a's links moved while the exit node carried traffic:\n{first:?}\n{then:?}")
    });
    let st = mesh.status("a");
    failures.check(st["routing"]["exit_node"] == c_key.as_str(), || {
        format!("a's status: {}", st["routing"])
    });

    down_and_compare(&mesh, &mut failures, "a", a, &before, "after down");

    // kill -9 leaves rules and sysctls behind; the next up (exit node from
    // the command line this time) cleans them, and its down restores all.
    let a = mesh.start("a");
    let up = wait_until(Duration::from_secs(20), || peer_up(&mesh, "a", "c"));
    failures.check(up, || "a did not come up again".into());
    // The guard kills with SIGKILL.
    drop(a);
    failures.check(wait_gone(&mesh, "a"), || {
        "a's device stayed after kill -9".into()
    });
    let crashed = snapshot(&mesh, "a");
    failures.check(crashed != before, || {
        "kill -9 left nothing behind: the check proves nothing".into()
    });
    let text = std::fs::read_to_string(mesh.dir().join("a.toml")).unwrap();
    std::fs::write(
        mesh.dir().join("a.toml"),
        text.replace(&format!("exit_node = \"{c_key}\"\n"), ""),
    )
    .unwrap();
    let a = start_with_exit_node(&mesh, "a", &c_key, "a2.log");
    let started = std::time::Instant::now();
    let up = wait_until(Duration::from_secs(20), || peer_up(&mesh, "a", "c"));
    failures.check(up, || "a did not come up with --exit-node".into());
    // c may still hold the killed instance's connection for a moment.
    let reached = wait_until(Duration::from_secs(10), || ping(&mesh, "a", "203.0.113.10"));
    eprintln!(
        "after kill -9 and up --exit-node: far side reached {reached} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    failures.check(reached, || "--exit-node: far side not reached".into());
    down_and_compare(
        &mesh,
        &mut failures,
        "a",
        a,
        &before,
        "after kill -9, up, down",
    );
    failures.finish(&mesh);
}

#[test]
#[ignore = "needs root"]
fn exit_node_may_be_a_network_member() {
    let _alone = crate::root_alone();
    // Members are looked up in the directory when traffic needs them: the
    // exit node (by its key) as soon as a packet is for it, the other
    // members by their overlay addresses, never through the exit node.
    let mesh = Mesh::up_with(
        &["home", "full-cone", "home"],
        &["--hold", "a,b,c", "--network"],
    );
    let mut failures = Failures::default();
    attach_behind(
        &mesh,
        "c",
        "farc",
        "far0",
        &["203.0.113.1/24"],
        &["203.0.113.10/24"],
    );
    add_to_interface(&mesh, "c", "exit = true");
    let before = snapshot(&mesh, "a");
    let (_b, _c) = (mesh.start("b"), mesh.start("c"));
    std::thread::sleep(Duration::from_millis(500));
    let a = start_with_exit_node(&mesh, "a", &mesh.public_key("c"), "a.log");
    let reached = wait_until(Duration::from_secs(15), || ping(&mesh, "a", "203.0.113.10"));
    failures.check(reached, || {
        "the far side not reached through member c".into()
    });
    failures.check(ping(&mesh, "a", &mesh.ip4("b")), || {
        "member b (looked up by address) not reached with an exit node".into()
    });
    let st = mesh.status("a");
    let b_key = mesh.public_key("b");
    failures.check(
        st["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["public_key"] == b_key.as_str())),
        || format!("b is not a peer of a: {}", st["peers"]),
    );
    down_and_compare(&mesh, &mut failures, "a", a, &before, "after down");
    failures.finish(&mesh);
}
