//! `antq-tun ping` end to end (root only): two hosts behind home NATs,
//! started together, reach each other through the relay first and then
//! directly; the pings say so, line by line, and `--until-direct` stops
//! at the first direct reply with exit 0. A target nobody owns ends the
//! command at once, non-zero.
//!
//! Run: `sudo scripts/test.sh ping::`.

use std::process::Stdio;
use std::time::Duration;

use crate::common::{bin, describe, wait_until};
use crate::mesh::{Failures, Mesh};

#[test]
#[ignore = "needs root"]
fn ping_shows_relay_then_direct_and_stops_at_direct() {
    let _alone = crate::root_alone();
    let mesh = Mesh::up_with(&["home", "home"], &["--hold", "a,b"]);
    let mut failures = Failures::default();
    let _a = mesh.start("a");
    let a_up = wait_until(Duration::from_secs(10), || mesh.try_status("a").is_ok());
    assert!(a_up, "a's tunnel did not come up:\n{}", mesh.dump());
    // The ping waits (-W) for a first path; b comes up while it waits.
    let b4 = mesh.ip4("b");
    let ping = mesh
        .command(
            "a",
            &[
                bin(),
                "ping",
                &b4,
                "--until-direct",
                "-i",
                "0.05",
                "-W",
                "10",
                "-c",
                "400",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _b = mesh.start("b");
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    let first = |what: &str| text.lines().position(|l| l.contains(what));
    let (relay, direct) = (first("via relay "), first("via direct "));
    failures.check(out.status.success(), || {
        format!("ping --until-direct did not exit 0: {}", describe(&out))
    });
    failures.check(relay.is_some() && relay < direct, || {
        format!("want 'via relay' lines, then 'via direct':\n{text}")
    });
    // It stopped at the first direct reply: that is the last reply line,
    // and the summary counts it.
    let replies: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("reply from"))
        .collect();
    failures.check(
        replies.last().is_some_and(|l| l.contains("via direct "))
            && text.contains("replies (1 direct)"),
        || format!("did not stop at the first direct reply:\n{text}"),
    );

    // Nobody owns this address: said at once, exit non-zero.
    let out = mesh.exec("a", &[bin(), "ping", "10.255.255.1", "-c", "3"]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    failures.check(
        !out.status.success() && said.contains("no peer owns"),
        || format!("ping to an unowned address: {}", describe(&out)),
    );
    failures.finish(&mesh);
}
