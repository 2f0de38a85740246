//! `antq-tun status` on a host running a bootstrap (root: the control
//! endpoint lives in root's `/run/antq`): peers, relays, limits and refusals
//! by reason, as text and JSON.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{bin, describe, free_udp_port, require_root, wait_until, ChildGuard};

#[test]
#[ignore = "needs root"]
fn status_shows_a_running_bootstrap() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = Command::new(bin()).arg("keygen").output().unwrap();
    let key = String::from_utf8(key.stdout).unwrap();
    let port = free_udp_port();
    let config = dir.path().join("bootstrap.toml");
    std::fs::write(
        &config,
        format!(
            "[bootstrap]\nprivate_key = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nmax_peers = 77\n",
            key.trim()
        ),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["bootstrap", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = ChildGuard(Some(child));
    let name = format!("bootstrap-127.0.0.1-{port}");
    let status = |json: bool| {
        let mut cmd = Command::new(bin());
        cmd.args(["status", "-i", &name]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(10), || status(true).status.success()),
        "no status from the bootstrap: {}",
        describe(&status(true))
    );
    let out = status(true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(v["limits"]["max_peers"], 77);
    assert_eq!(v["peers"]["udp"], 0);
    assert_eq!(v["refused"]["relay_per_key_cap"], 0);
    assert_eq!(v["bootstrap"].as_str().map(str::len), Some(44));
    let out = status(false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text.contains("bootstrap: "), "{text}");
    assert!(
        text.contains("peers: 0 udp, 0 tcp (max 77, 32 per IP)"),
        "{text}"
    );
    assert!(text.contains("refused: none"), "{text}");
    // SIGTERM: it removes its endpoint (a Unix socket file, which would
    // outlive the process) on the way out. (On Windows the named pipe goes
    // with the process, and there is no SIGTERM to send.)
    #[cfg(unix)]
    {
        let mut child = _guard;
        let pid = child.0.as_ref().map(|c| c.id()).unwrap();
        // SAFETY: kill takes no pointers; `pid` is our own child, not reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let _ = child.take().wait();
        assert!(
            !status(true).status.success(),
            "still answering after SIGTERM"
        );
    }
}
