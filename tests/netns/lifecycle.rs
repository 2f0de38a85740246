//! `antq-tun netcheck`, `antq-tun down` and a peer restart in the NAT lab
//! (root only).

use std::time::Duration;

use crate::common::{bin, describe, wait_until};
use crate::mesh::Mesh;

#[test]
#[ignore = "needs root"]
fn netcheck_tells_endpoint_independent_from_symmetric_mapping() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up(&["home", "symmetric"]);
    let boot = std::fs::read_to_string(mesh.dir().join("boot.pub")).unwrap();
    let boot = boot.trim();
    // The bootstrap answers on both of its lab addresses: two observations
    // from one socket tell the mapping behaviour.
    let ask = |host: &str| {
        let out = mesh.exec(
            host,
            &[
                bin(),
                "netcheck",
                "--json",
                "--bootstrap",
                &format!("{boot}@198.18.0.10:9000"),
                "--bootstrap",
                &format!("{boot}@198.18.0.11:9000"),
            ],
        );
        assert!(
            out.status.success(),
            "netcheck on {host}: {}",
            describe(&out)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let home = ask("a");
    assert_eq!(home["mapping"], "EndpointIndependent", "{home}");
    let seen: Vec<_> = home["bootstraps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["observed"].clone())
        .collect();
    assert_eq!(
        seen[0], seen[1],
        "one mapping for both destinations: {home}"
    );
    assert!(
        seen[0].as_str().unwrap().starts_with("198.18.0.20:"),
        "{home}"
    );
    // Its observe port (0.0.0.0:9001) answered on both addresses, each
    // from the address asked (else the reply would be dropped), and saw
    // the same mapping.
    for b in home["bootstraps"].as_array().unwrap() {
        assert_eq!(b["observe_port"]["observed"], b["observed"], "{home}");
    }
    let symmetric = ask("b");
    assert!(
        symmetric["mapping"]
            .as_str()
            .unwrap()
            .starts_with("Symmetric"),
        "{symmetric}"
    );
}

#[test]
#[ignore = "needs root"]
fn down_stops_the_instance_and_removes_the_device() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up(&["home", "full-cone"]);
    let config = mesh.dir().join("a.toml");
    let out = mesh.exec("a", &[bin(), "down", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "down: {}", describe(&out));
    let gone = wait_until(Duration::from_secs(3), || {
        !mesh
            .exec("a", &["ip", "link", "show", "antq0"])
            .status
            .success()
    });
    assert!(gone, "antq0 still exists after down:\n{}", mesh.dump());
    let exited = wait_until(Duration::from_secs(3), || mesh.pid("a").is_none());
    assert!(
        exited,
        "antq-tun up still runs after down:\n{}",
        mesh.dump()
    );

    // A second down finds nothing running and says so.
    let again = mesh.exec("a", &[bin(), "down", "-c", config.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no antq-tun runs interface antq0"));
}

#[test]
#[ignore = "needs root"]
fn restarted_peer_is_reachable_again_through_the_relay() {
    let _alone = crate::root_alone();
    // symmetric ↔ symmetric: relay only, so the new instance must get a new
    // relay connection while the old one is still remembered by the other
    // side.
    let mesh = Mesh::up(&["symmetric", "symmetric"]);
    let ping = |from: &str, to: &str| {
        mesh.exec(from, &["ping", "-c", "1", "-W", "1", &mesh.ip4(to)])
            .status
            .success()
    };
    assert!(
        wait_until(Duration::from_secs(10), || ping("b", "a")),
        "no first ping:\n{}",
        mesh.dump()
    );
    let pid = mesh.pid("a").expect("antq-tun up runs on a");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        wait_until(Duration::from_secs(5), || mesh.pid("a").is_none()),
        "a did not exit"
    );
    let config = mesh.dir().join("a.toml");
    let log = std::fs::File::create(mesh.dir().join("a-restarted.log")).unwrap();
    let _restarted = crate::common::ChildGuard(Some(
        mesh.command("a", &[bin(), "up", "-c", config.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));
    // Before the fix the other side kept the dead relay connection until
    // its 30 s idle timeout; now the relay channel's close retires it.
    let back = wait_until(Duration::from_secs(10), || ping("b", "a"));
    assert!(
        back,
        "restarted peer not reachable within 10 s:\n{}",
        mesh.dump()
    );
}
