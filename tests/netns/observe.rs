//! NAT mapping with ONE bootstrap (#18, root only): the bootstrap's observe
//! socket (listen port + 1) gives each peer a second observation of its
//! socket, so a host behind `home` (MASQUERADE, port kept) reports
//! `endpoint_independent` and a host behind `symmetric` (MASQUERADE
//! `--random-fully`) reports `symmetric`, in `antq-tun status` (the running
//! tunnel) and in `antq-tun netcheck` with a single `--bootstrap`.
//!
//! Run: `cargo nextest run --test netns --run-ignored only -E 'test(one_bootstrap)'`.

use std::time::{Duration, Instant};

use crate::common::{bin, describe, wait_until};
use crate::mesh::{Failures, Mesh};

#[test]
#[ignore = "needs root"]
fn one_bootstrap_tells_home_from_symmetric_mapping() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up(&["home", "symmetric"]);
    let started = Instant::now();
    let mut failures = Failures::default();
    let boot = mesh.public_key("boot");
    for (host, want, netcheck_want) in [
        ("a", "endpoint_independent", "EndpointIndependent"),
        ("b", "symmetric", "Symmetric"),
    ] {
        // The running tunnel, with the one bootstrap of its config.
        let mut last = serde_json::Value::Null;
        let learned = wait_until(Duration::from_secs(10), || {
            last = mesh.try_status(host).unwrap_or_default();
            last["nat_mapping"] == want
        });
        eprintln!(
            "host {host} ({}): status nat_mapping {} after {:.1} s",
            mesh.kinds[Mesh::index(host)],
            last["nat_mapping"],
            started.elapsed().as_secs_f64()
        );
        failures.check(learned, || {
            format!(
                "host {host}: status nat_mapping {}, want {want}",
                last["nat_mapping"]
            )
        });
        failures.check(
            last["bootstraps"].as_array().map(Vec::len) == Some(1),
            || format!("host {host}: want one bootstrap: {}", last["bootstraps"]),
        );
        let out = mesh.exec(host, &[bin(), "status", "-i", "antq0"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        failures.check(text.contains(&format!("NAT mapping: {want}")), || {
            format!("host {host}: text status has no 'NAT mapping: {want}':\n{text}")
        });

        // netcheck with a single bootstrap (its own key: the tunnel's link
        // is not replaced).
        let out = mesh.exec(
            host,
            &[
                bin(),
                "netcheck",
                "--json",
                "--bootstrap",
                &format!("{boot}@198.18.0.10:9000"),
            ],
        );
        let report = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("netcheck on {host}: {e}: {}", describe(&out)));
        eprintln!("host {host} netcheck: {report}");
        failures.check(
            report["mapping"]
                .as_str()
                .is_some_and(|m| m.starts_with(netcheck_want))
                && report["nat_mapping"] == want,
            || format!("host {host}: netcheck mapping, want {netcheck_want}: {report}"),
        );
        let b = &report["bootstraps"][0];
        let main = b["observed"].as_str().unwrap_or_default().to_owned();
        let second = b["observe_port"]["observed"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        failures.check(b["observe_port"]["address"] == "198.18.0.10:9001", || {
            format!("host {host}: observe port not 198.18.0.10:9001: {b}")
        });
        // Both seen from the NAT's public address; the same port behind
        // home, another one behind symmetric.
        failures.check(
            main.starts_with("198.18.0.") && second.starts_with("198.18.0."),
            || format!("host {host}: observations {main} / {second}"),
        );
        failures.check((main == second) == (want == "endpoint_independent"), || {
            format!("host {host}: main port saw {main}, observe port {second}")
        });
        let text = mesh.exec(
            host,
            &[
                bin(),
                "netcheck",
                "--bootstrap",
                &format!("{boot}@198.18.0.10:9000"),
            ],
        );
        let text = String::from_utf8_lossy(&text.stdout).to_string();
        failures.check(
            text.contains("its observe port 198.18.0.10:9001: sees us as")
                && text.contains(&format!("NAT mapping: {netcheck_want}")),
            || format!("host {host}: netcheck text:\n{text}"),
        );
    }

    // The bootstrap (listening on 0.0.0.0) answered from the address asked,
    // and counts what it answered.
    let out = mesh.exec("boot", &[bin(), "status", "--json", "-i", "bootstrap-9000"]);
    let status = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("bootstrap status: {e}: {}", describe(&out)));
    eprintln!(
        "bootstrap observe: {} at {}",
        status["observe"], status["observe_listen"]
    );
    failures.check(
        status["observe"]["answered"].as_u64().unwrap_or(0) >= 6
            && status["observe"]["malformed"] == 0,
        || format!("bootstrap observe counters: {}", status["observe"]),
    );
    failures.finish(&mesh);
}
