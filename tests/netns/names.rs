//! Names on the overlay (root only): the responder on a tunnel address
//! answers `NAME.antq` for every named peer (`[[peer]] name`, mesh.sh names
//! each peer by its letter) and for members from their certificates;
//! unknown names get NXDOMAIN, other names REFUSED; garbage sent to port 53
//! neither kills the process nor stops the answers; a peer asks over the
//! tunnel; a renamed peer answers by its new name after `reload`.
//!
//! Run: `sudo scripts/test.sh names::`.

use std::time::Duration;

use crate::common::{bin, describe, wait_until};
use crate::mesh::{Failures, Mesh};

/// `dig` in `host`'s namespace with `args`, one try of 2 s: its stdout.
fn dig(mesh: &Mesh, host: &str, args: &[&str]) -> String {
    let mut full = vec!["dig", "+time=2", "+tries=1"];
    full.extend_from_slice(args);
    let out = mesh.exec(host, &full);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `dig +short` answers, one per line.
fn short(mesh: &Mesh, host: &str, server: &str, name: &str, qtype: &str) -> Vec<String> {
    let at = format!("@{server}");
    dig(mesh, host, &["+short", &at, name, qtype])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `status:` of a full `dig` answer (NOERROR, NXDOMAIN, REFUSED...).
fn status_of(mesh: &Mesh, host: &str, server: &str, name: &str) -> String {
    let at = format!("@{server}");
    let text = dig(mesh, host, &[&at, name, "A"]);
    text.split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or(&text)
        .to_owned()
}

/// Waits until `host`'s responder listens (status `dns.listen`).
fn wait_for_responder(mesh: &Mesh, host: &str) -> bool {
    wait_until(Duration::from_secs(10), || {
        mesh.try_status(host)
            .is_ok_and(|s| s["dns"]["listen"].as_array().is_some_and(|a| !a.is_empty()))
    })
}

/// Random datagrams, truncated headers, a response and an oversized query
/// to `server` port 53, from `host`'s namespace.
fn send_garbage(mesh: &Mesh, host: &str, server: &str) {
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         a = ('{server}', 53)\n\
         q = bytes.fromhex('123401000001000000000000') + b'\\x01b\\x04antq\\x00\\x00\\x01\\x00\\x01'\n\
         for n in range(0, 700, 7): s.sendto(os.urandom(n), a)\n\
         for n in range(len(q)): s.sendto(q[:n], a)\n\
         for i in range(len(q)):\n\
         \x20   b = bytearray(q); b[i] ^= 0xff; s.sendto(bytes(b), a)\n\
         s.sendto(bytes([0x12, 0x34, 0x81]) + q[3:], a)\n\
         s.sendto(q + os.urandom(600), a)\n"
    );
    let out = mesh.exec(host, &["python3", "-c", &script]);
    assert!(out.status.success(), "garbage sender: {}", describe(&out));
}

#[test]
#[ignore = "needs root"]
fn peers_names_answer_on_the_tunnel_address() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up(&["home", "home", "full-cone"]);
    let mut failures = Failures::default();
    let a4 = mesh.ip4("a");
    assert!(
        wait_for_responder(&mesh, "a"),
        "a's responder did not listen:\n{}",
        mesh.dump()
    );

    let got = short(&mesh, "a", &a4, "b.antq", "A");
    failures.check(got == [mesh.ip4("b")], || format!("b.antq A: {got:?}"));
    let got = short(&mesh, "a", &a4, "b.antq", "AAAA");
    failures.check(got == [mesh.ip6("b")], || format!("b.antq AAAA: {got:?}"));
    let got = short(&mesh, "a", &a4, "C.ANTQ", "A");
    failures.check(got == [mesh.ip4("c")], || format!("C.ANTQ A: {got:?}"));
    // Over TCP and over IPv6 to the responder's other address.
    let at_a = format!("@{a4}");
    let got = dig(&mesh, "a", &["+short", "+tcp", &at_a, "b.antq", "A"]);
    failures.check(got == mesh.ip4("b"), || format!("+tcp b.antq: {got:?}"));
    let got = short(&mesh, "a", &mesh.ip6("a"), "c.antq", "AAAA");
    failures.check(got == [mesh.ip6("c")], || {
        format!("@fd90::1 c.antq AAAA: {got:?}")
    });
    for (name, want) in [("nosuch.antq", "NXDOMAIN"), ("example.com", "REFUSED")] {
        let got = status_of(&mesh, "a", &a4, name);
        failures.check(got == want, || format!("{name}: status {got}, want {want}"));
    }
    // a has no name of its own (no certificate): not in its own table.
    let got = status_of(&mesh, "a", &a4, "a.antq");
    failures.check(got == "NXDOMAIN", || format!("a.antq at a: {got}"));

    let pid = mesh.pid("a");
    send_garbage(&mesh, "a", &a4);
    let got = short(&mesh, "a", &a4, "b.antq", "A");
    failures.check(got == [mesh.ip4("b")], || {
        format!("b.antq after the garbage: {got:?}")
    });
    failures.check(pid.is_some() && mesh.pid("a") == pid, || {
        format!("a's antq-tun died: {pid:?} -> {:?}", mesh.pid("a"))
    });

    // b asks a's responder over the tunnel (its first packets may wait
    // for a path to a).
    let asked = wait_until(Duration::from_secs(20), || {
        short(&mesh, "b", &a4, "c.antq", "A") == [mesh.ip4("c")]
    });
    failures.check(asked, || {
        "b could not ask a's responder over the tunnel".to_owned()
    });

    let status = mesh.status("a");
    let q = &status["dns"]["queries"];
    eprintln!("a's dns status: {}", status["dns"]);
    failures.check(
        q["answer"].as_u64() >= Some(6)
            && q["nxdomain"].as_u64() >= Some(2)
            && q["refused"].as_u64() >= Some(1)
            && q["malformed"].as_u64() >= Some(1)
            && q["formerr"].as_u64() >= Some(1)
            && q["too_large"].as_u64() >= Some(1),
        || format!("a's query counters: {q}"),
    );
    failures.check(status["dns"]["names"]["b"].is_array(), || {
        format!("names in a's status: {}", status["dns"]["names"])
    });
    let peer_names: Vec<&str> = status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    failures.check(
        peer_names.contains(&"b") && peer_names.contains(&"c"),
        || format!("peer names in a's status: {peer_names:?}"),
    );

    // `antq-tun ping` takes the same names.
    let out = mesh.exec("a", &[bin(), "ping", "c.antq", "-c", "1", "-W", "10"]);
    failures.check(out.status.success(), || {
        format!("antq-tun ping c.antq: {}", describe(&out))
    });

    // A renamed peer answers by its new name after a reload, not the old.
    let config = mesh.dir().join("a.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("name = \"b\"", "name = \"bee\"")).unwrap();
    let out = mesh.exec("a", &[bin(), "reload", "-c", config.to_str().unwrap()]);
    failures.check(out.status.success(), || {
        format!("reload: {}", describe(&out))
    });
    let renamed = wait_until(Duration::from_secs(5), || {
        short(&mesh, "a", &a4, "bee.antq", "A") == [mesh.ip4("b")]
    });
    failures.check(renamed, || "bee.antq after the reload".to_owned());
    let got = status_of(&mesh, "a", &a4, "b.antq");
    failures.check(got == "NXDOMAIN", || {
        format!("b.antq after the rename: {got}")
    });
    failures.finish(&mesh);
}

#[test]
#[ignore = "needs root"]
fn members_names_come_from_their_certificates() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up_with(&["home", "full-cone"], &["--network"]);
    let mut failures = Failures::default();
    let a4 = mesh.ip4("a");
    assert!(
        wait_for_responder(&mesh, "a"),
        "a's responder did not listen:\n{}",
        mesh.dump()
    );
    // Our own name, from our certificate.
    let got = short(&mesh, "a", &a4, "a.antq", "A");
    failures.check(got == [a4.clone()], || format!("a.antq at a: {got:?}"));
    // A member is known once met (found through the directory by address).
    let met = wait_until(Duration::from_secs(20), || {
        mesh.exec("a", &["ping", "-c", "1", "-W", "1", &mesh.ip4("b")])
            .status
            .success()
    });
    failures.check(met, || "a never reached b".to_owned());
    let got = short(&mesh, "a", &a4, "b.antq", "AAAA");
    failures.check(got == [mesh.ip6("b")], || {
        format!("b.antq AAAA at a: {got:?}")
    });
    failures.finish(&mesh);
}
