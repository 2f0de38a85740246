//! The inbound firewall end to end (root only): a allows tcp/22 from b
//! only, with default deny; replies to a's own flows (TCP, UDP, ICMP
//! errors) pass; the drop counters match what was sent.
//!
//! Run: `sudo scripts/test.sh firewall::`.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::{bin, describe, ChildGuard};
use crate::mesh::{Failures, Mesh};

/// A TCP server on `addr:port` in `host` that accepts and closes, forever.
fn tcp_server(mesh: &Mesh, host: &str, addr: &str, port: u16) -> ChildGuard {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',{port}))\ns.listen(16)\nwhile True:\n  c,_=s.accept(); c.close()\n"
    );
    spawn(mesh, host, &["python3", "-c", &script])
}

/// A UDP echo server on `addr:port` in `host`.
fn udp_echo(mesh: &Mesh, host: &str, addr: &str, port: u16) -> ChildGuard {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{addr}',{port}))\nwhile True:\n  d,a=s.recvfrom(2048); s.sendto(d,a)\n"
    );
    spawn(mesh, host, &["python3", "-c", &script])
}

fn spawn(mesh: &Mesh, host: &str, args: &[&str]) -> ChildGuard {
    let child: Child = mesh
        .command(host, args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ChildGuard(Some(child))
}

/// Whether a TCP connection from `host` to `addr:port` is made within 2 s.
fn connects(mesh: &Mesh, host: &str, addr: &str, port: u16) -> bool {
    let script = format!(
        "import socket,sys\ns=socket.socket()\ns.settimeout(2)\ntry:\n  s.connect(('{addr}',{port})); print('ok')\nexcept Exception as e:\n  print(e); sys.exit(1)\n"
    );
    mesh.exec(host, &["python3", "-c", &script])
        .status
        .success()
}

/// Sends one UDP datagram from `host` to `addr:port` and returns what came
/// back: the echo, `refused` (an ICMP port unreachable reached the
/// socket), or `timeout`.
fn udp_exchange(mesh: &Mesh, host: &str, addr: &str, port: u16) -> String {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.connect(('{addr}',{port}))\ns.send(b'query')\ntry:\n  print(s.recv(2048).decode())\nexcept ConnectionRefusedError:\n  print('refused')\nexcept socket.timeout:\n  print('timeout')\n"
    );
    let out = mesh.exec(host, &["python3", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn dropped(mesh: &Mesh, host: &str) -> u64 {
    mesh.status(host)["firewall"]["dropped"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root"]
fn a_allows_ssh_from_b_only_and_replies_to_its_own_flows() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up_with(&["home", "home", "full-cone"], &["--hold", "a"]);
    let mut failures = Failures::default();
    let dir = mesh.dir();
    let a_toml = dir.join("a.toml");
    let text = std::fs::read_to_string(&a_toml).unwrap();
    let firewall = format!(
        "\n[firewall]\ndefault_inbound = \"deny\"\n[[firewall.inbound]]\nproto = \"tcp\"\nport = \"22\"\nfrom = [\"peer:{}\"]\n",
        mesh.public_key("b")
    );
    // The [firewall] section goes before the first [[peer]].
    let text = text.replacen("\n[[peer]]", &format!("{firewall}\n[[peer]]"), 1);
    std::fs::write(&a_toml, text).unwrap();
    let _a = mesh.start("a");
    let (a4, c4) = (mesh.ip4("a"), mesh.ip4("c"));
    let reachable = crate::common::wait_until(Duration::from_secs(10), || {
        mesh.exec("a", &["ping", "-c", "1", "-W", "0.5", &c4])
            .status
            .success()
    });
    failures.check(reachable, || "a never reached c".to_owned());

    // 1. tcp/22 from b only; nothing on 8080.
    let _ssh = tcp_server(&mesh, "a", &a4, 22);
    let _web = tcp_server(&mesh, "a", &a4, 8080);
    let b_ssh = connects(&mesh, "b", &a4, 22);
    let c_ssh = connects(&mesh, "c", &a4, 22);
    let c_web = connects(&mesh, "c", &a4, 8080);
    let b_web = connects(&mesh, "b", &a4, 8080);
    eprintln!("b->a:22 {b_ssh}, c->a:22 {c_ssh}, c->a:8080 {c_web}, b->a:8080 {b_web}");
    failures.check(b_ssh && !c_ssh && !c_web && !b_web, || {
        format!("b->a:22 {b_ssh} (want true), c->a:22 {c_ssh}, c->a:8080 {c_web}, b->a:8080 {b_web} (want false)")
    });

    // 2. a's own flows: TCP to c, UDP request/reply with c, and the ICMP
    //    port unreachable c's kernel sends for a closed UDP port.
    let _c_tcp = tcp_server(&mesh, "c", &c4, 9000);
    let _c_udp = udp_echo(&mesh, "c", &c4, 5353);
    let a_tcp = connects(&mesh, "a", &c4, 9000);
    let a_udp = udp_exchange(&mesh, "a", &c4, 5353);
    let a_icmp = udp_exchange(&mesh, "a", &c4, 9);
    eprintln!("a->c tcp {a_tcp}, udp '{a_udp}', closed port '{a_icmp}'");
    failures.check(a_tcp, || "a's own TCP connection to c failed".to_owned());
    failures.check(a_udp == "query", || {
        format!("a's UDP exchange with c: {a_udp}")
    });
    failures.check(a_icmp == "refused", || {
        format!("the ICMP error about a's UDP flow did not reach a's socket: {a_icmp}")
    });
    // Path MTU: a 1280-byte ping with DF set still gets an answer, not a
    // silent loss (the tunnel's MTU is 1280).
    let out = mesh.exec(
        "a",
        &["ping", "-M", "do", "-s", "1252", "-c", "2", "-W", "1", &c4],
    );
    let pmtu =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("ping -M do -s 1252: {}", pmtu.lines().last().unwrap_or(""));
    failures.check(out.status.success() || pmtu.contains("mtu"), || {
        format!("1280-byte DF ping from a: {}", describe(&out))
    });

    // 3. The counters count exactly what was dropped: 5 pings from c.
    std::thread::sleep(Duration::from_secs(3));
    let before = dropped(&mesh, "a");
    let out = mesh.exec("c", &["ping", "-c", "5", "-i", "0.2", "-W", "1", &a4]);
    failures.check(!out.status.success(), || {
        "c's pings to a were answered".to_owned()
    });
    std::thread::sleep(Duration::from_millis(500));
    let after = dropped(&mesh, "a");
    eprintln!("a's firewall drops: {before} -> {after}");
    failures.check(after - before == 5, || {
        format!("5 pings dropped, counted {}", after - before)
    });
    let status = mesh.exec("a", &[bin(), "status", "-i", "antq0"]);
    let text = String::from_utf8_lossy(&status.stdout);
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("firewall") || l.contains("[0]"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    failures.check(text.contains("[0] tcp port 22 from peer:"), || {
        format!("no rule table: {text}")
    });

    // 4. `antq-tun ping` is no IP packet: it gets through where c's ICMP
    //    pings did not, and drops nothing.
    let out = mesh.exec("c", &[bin(), "ping", &a4, "-c", "2", "-i", "0.2"]);
    eprintln!(
        "antq-tun ping from c: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    failures.check(out.status.success(), || {
        format!("antq-tun ping from c to a: {}", describe(&out))
    });
    failures.check(dropped(&mesh, "a") == after, || {
        format!(
            "antq-tun ping was dropped: {} -> {}",
            after,
            dropped(&mesh, "a")
        )
    });

    failures.finish(&mesh);
}
