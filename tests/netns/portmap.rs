//! Port mapping in the netns lab (root only): a host behind a symmetric
//! NAT and one behind a `upnp` router (symmetric too, with miniupnpd
//! granting PCP, NAT-PMP and UPnP IGD mappings) go direct in 10 of 10 fresh
//! pairs, with one bootstrap: the `upnp` side maps its port, announces the
//! mapped address and reports its NAT class as public, so the plain punch
//! works. After `antq-tun down` the mapping is gone from the router
//! (miniupnpd's DNAT rule in its legacy `MINIUPNPD` chain). `antq-tun
//! netcheck` behind the `upnp` router reports all three protocols, behind
//! the plain symmetric one none.
//!
//! Run: `sudo scripts/test.sh portmap::`.

use std::time::{Duration, Instant};

use crate::common::{bin, wait_until};
use crate::mesh::{Failures, Mesh};

/// miniupnpd's DNAT rules in router `rb` (one per mapping).
fn router_mappings(mesh: &Mesh) -> Vec<String> {
    let out = mesh.exec("rb", &["iptables-legacy", "-t", "nat", "-S", "MINIUPNPD"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A MINIUPNPD"))
        .map(str::to_owned)
        .collect()
}

/// `antq-tun netcheck` on `host` against the mesh's bootstrap.
fn netcheck(mesh: &Mesh, host: &str) -> String {
    let boot = format!("{}@198.18.0.10:9000", mesh.public_key("boot"));
    let out = mesh.exec(host, &[bin(), "netcheck", "--bootstrap", &boot]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root"]
fn symmetric_and_upnp_go_direct_by_port_mapping() {
    let _alone = crate::root_alone();
    let mut failures = Vec::new();
    let mut times = Vec::new();
    for run in 0..10 {
        let mesh = Mesh::up(&["symmetric", "upnp"]);
        let mut f = Failures::default();
        let started = Instant::now();
        let direct = wait_until(Duration::from_secs(10), || {
            mesh.paths("a").iter().all(|(_, path)| path == "direct")
                && mesh.paths("b").iter().all(|(_, path)| path == "direct")
        });
        let ms = mesh.status("a")["peers"][0]["first_direct_ms"].as_u64();
        let b = mesh.status("b");
        let mapping = b["port_mapping"]["mapping"].clone();
        eprintln!(
            "run {run}: {} after {:.1} s (a's first_direct_ms {ms:?}); b's mapping {mapping}",
            if direct { "direct" } else { "relayed" },
            started.elapsed().as_secs_f64(),
        );
        f.check(direct, || format!("run {run}: not direct within 10 s"));
        f.check(mapping["protocol"] == "pcp", || {
            format!("run {run}: b holds no PCP mapping: {}", b["port_mapping"])
        });
        // The peer goes direct to the mapped address.
        let external = mapping["external"].as_str().unwrap_or("-").to_owned();
        let a_remote = mesh.status("a")["peers"][0]["remote"].clone();
        f.check(a_remote == external.as_str(), || {
            format!("run {run}: a's direct path runs to {a_remote}, not the mapping {external}")
        });
        if direct {
            times.extend(ms);
        }
        let port = external.rsplit(':').next().unwrap_or("-").to_owned();
        let before = router_mappings(&mesh);
        f.check(
            before
                .iter()
                .any(|r| r.contains(&format!("--dport {port} "))),
            || format!("run {run}: the router has no rule for port {port}: {before:?}"),
        );
        if run == 0 {
            let text = netcheck(&mesh, "b");
            eprintln!("netcheck behind upnp:\n{text}");
            for p in ["PCP", "NAT-PMP", "UPnP IGD"] {
                f.check(
                    text.contains(&format!("{p}: yes, mapped 198.18.0.21:")),
                    || format!("netcheck behind upnp: no `{p}: yes`:\n{text}"),
                );
            }
            let text = netcheck(&mesh, "a");
            eprintln!("netcheck behind symmetric:\n{text}");
            for p in ["PCP", "NAT-PMP", "UPnP IGD"] {
                f.check(text.contains(&format!("{p}: no")), || {
                    format!("netcheck behind symmetric: no `{p}: no`:\n{text}")
                });
            }
            // Its test mappings are removed again.
            let after = router_mappings(&mesh);
            f.check(after == before, || {
                format!("netcheck left mappings: {after:?} (before {before:?})")
            });
        }
        let toml = mesh.dir().join("b.toml");
        let down = mesh.exec("b", &[bin(), "down", "-c", &toml.to_string_lossy()]);
        f.check(down.status.success(), || {
            format!("run {run}: down failed: {down:?}")
        });
        let after = router_mappings(&mesh);
        eprintln!("  router rules before down: {before:?}, after: {after:?}");
        f.check(after.is_empty(), || {
            format!("run {run}: mappings left on the router after down: {after:?}")
        });
        f.check(mesh.log("b").contains("port mapping removed"), || {
            format!("run {run}: b did not log the removal")
        });
        if !f.is_empty() {
            eprintln!("{}", mesh.dump());
            failures.extend(f.into_messages());
        }
    }
    times.sort_unstable();
    eprintln!(
        "symmetric<->upnp: direct in {}/10, median time to direct {:?} ms, all {times:?}",
        times.len(),
        times.get(times.len() / 2)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
