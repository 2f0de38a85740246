//! `antq-tun ping` end to end (root only): two hosts behind home NATs,
//! started together, reach each other through the relay first and then
//! directly; the pings say so, line by line, and `--until-direct` stops
//! at the first direct reply with exit 0. A target nobody owns ends the
//! command at once, non-zero.
//!
//! The "internet" drops UDP between the two NATs for the first second:
//! home<->home may punch before the relayed handshake completes (CI saw a
//! first reply that was already direct), and the relay lines are what the
//! test is about.
//!
//! Run: `sudo scripts/test.sh ping::`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

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
    let mut ping = mesh
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
    // The ping's lines as they come, to lift the block at the first relay
    // reply.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = ping.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let block = |op: &str| {
        for (src, dst) in [
            ("198.18.0.20", "198.18.0.21"),
            ("198.18.0.21", "198.18.0.20"),
        ] {
            let rule = ["-p", "udp", "-s", src, "-d", dst, "-j", "DROP"];
            let out = mesh.exec("inet", &[&["iptables", op, "FORWARD"][..], &rule].concat());
            assert!(out.status.success(), "iptables {op}: {}", describe(&out));
        }
    };
    block("-I");
    let _b = mesh.start("b");
    let mut text = String::new();
    let give_up = Instant::now() + Duration::from_secs(15);
    while let Ok(line) = lines.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
        text += &line;
        text.push('\n');
        if line.contains("via relay ") {
            break;
        }
    }
    block("-D");
    text.extend(lines.iter().map(|l| l + "\n"));
    reader.join().expect("ping reader");
    let out = ping.wait_with_output().unwrap();
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
