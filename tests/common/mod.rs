//! Helpers shared by the three test binaries (`netns`, `loopback`, `cli`):
//! the `antq-tun` binary under test, the root check of the root-only tests,
//! child processes, free ports, polling and unique namespace names.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `antq-tun` binary the tests run: `ANTQ_TUN_BIN` when set
/// (`scripts/test.sh` points it at a fresh release build, since hole punching
/// between two home NATs is timing-sensitive), else this build's binary.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("ANTQ_TUN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_antq-tun").to_owned())
    })
}

/// Fails the calling test unless it runs as root. Every test that calls it
/// is `#[ignore = "needs root"]`: `sudo scripts/test.sh` runs them, a user's
/// run counts them as skipped, and a user who asks for them anyway
/// (`--run-ignored`) sees them fail here instead of passing untested.
pub fn require_root() {
    assert!(
        antq_platform::is_root(),
        "this test needs root (network namespaces, TUN devices, root's /run/antq): \
         run it with `sudo scripts/test.sh`"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True if any network namespace or lab state file uses `prefix`.
fn prefix_in_use(prefix: &str) -> bool {
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .any(|ns| ns == prefix || ns.starts_with(&format!("{prefix}-")))
        || Path::new(&format!("/run/antq-lab/{prefix}.env")).exists()
        || Path::new(&format!("/run/antq-lab/{prefix}.mesh")).exists()
}

/// A fresh short name `<tag><pid%1000><n>` (at most 6 characters for a
/// two-letter tag) that no namespace or lab uses yet.
pub fn unique_prefix(tag: &str) -> String {
    let pid = std::process::id() % 1000;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // After ten of ours are taken (by someone else), shift the pid part.
        let prefix = format!("{tag}{:03}{}", (pid + n / 10) % 1000, n % 10);
        if !prefix_in_use(&prefix) {
            return prefix;
        }
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stdout and stderr of `out`, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// Kills (SIGKILL) and reaps a background child when dropped.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    /// Takes the child out of the guard (it is then no longer killed).
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago (taken and released:
/// another process may take it in between, which only makes the test that
/// wanted it fail to start).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (see
/// [`free_udp_port`]).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
