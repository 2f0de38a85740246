//! Birthday probing in the netns lab (root only): a host behind a home NAT
//! and one behind a symmetric NAT (random ports, or a port range) go
//! direct, ten fresh pairs each, where a plain punch cannot: in at least 9
//! of 10, with a median time to the direct path of at most 5 s.
//!
//! Run: `sudo scripts/test.sh birthday::`.

use std::time::{Duration, Instant};

use crate::common::wait_until;
use crate::mesh::Mesh;

/// The packets the hosts' birthday attempts sent, from their logs
/// (`birthday attempt over stats=...`).
fn packets(mesh: &Mesh) -> String {
    ["a", "b"]
        .iter()
        .flat_map(|h| {
            mesh.log(h)
                .lines()
                .filter_map(|l| {
                    l.split_once("birthday attempt over stats=")
                        .map(|(_, s)| format!("{h}: {s}"))
                })
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Brings up `kinds` (a, b) `runs` times; returns each run's time to the
/// direct path as a sees it (`first_direct_ms`), `None` for a run that
/// stayed relayed for 10 s.
fn runs(kinds: [&str; 2], runs: usize) -> Vec<Option<u64>> {
    (0..runs)
        .map(|run| {
            let mesh = Mesh::up(&kinds);
            let started = Instant::now();
            let direct = wait_until(Duration::from_secs(10), || {
                mesh.paths("a").iter().any(|(_, path)| path == "direct")
            });
            let status = mesh.status("a");
            let ms = direct
                .then(|| status["peers"][0]["first_direct_ms"].as_u64())
                .flatten();
            let found_by = status["peers"][0]["direct_found_by"].clone();
            eprintln!(
                "{}<->{} run {run}: {} after {:.1} s (first_direct_ms {ms:?}, found by {found_by})",
                kinds[0],
                kinds[1],
                if direct { "direct" } else { "relayed" },
                started.elapsed().as_secs_f64()
            );
            // The attempt's linger ends 2 s after it validated.
            std::thread::sleep(Duration::from_millis(2500));
            eprintln!("  sent: {}", packets(&mesh));
            if !direct {
                eprintln!("{}", mesh.dump());
            }
            ms
        })
        .collect()
}

fn check(kinds: [&str; 2], failures: &mut Vec<String>) {
    let results = runs(kinds, 10);
    let mut times: Vec<u64> = results.iter().flatten().copied().collect();
    times.sort_unstable();
    let median = times.get(times.len() / 2).copied();
    eprintln!(
        "{}<->{}: direct in {}/10, median time to direct {median:?} ms, all {times:?}",
        kinds[0],
        kinds[1],
        times.len()
    );
    if times.len() < 9 {
        failures.push(format!(
            "{}<->{}: direct in {}/10 only",
            kinds[0],
            kinds[1],
            times.len()
        ));
    }
    if median.is_none_or(|m| m > 5000) {
        failures.push(format!(
            "{}<->{}: median time to direct {median:?} ms",
            kinds[0], kinds[1]
        ));
    }
}

#[test]
#[ignore = "needs root"]
fn home_and_symmetric_go_direct_by_birthday_probing() {
    let _alone = crate::root_alone();
    let mut failures = Vec::new();
    check(["home", "symmetric"], &mut failures);
    check(["home", "symmetric-range"], &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
