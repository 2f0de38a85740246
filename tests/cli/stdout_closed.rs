//! A closed stdout (the reader of a pipe has gone, as in `antq-tun status
//! --json | head -1`) ends a command quietly: exit 0, nothing on stderr, no
//! panic. Errors are still reported.
//!
//! The child's stdout is the write end of a pipe whose read end is closed
//! before the child starts, so its first write fails with EPIPE every time
//! (with a real `| head -1` the output may fit in the pipe before head
//! exits, and nothing fails).

use std::io::Write as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{bin, describe, free_udp_port, require_root, wait_until, ChildGuard};

/// Runs `cmd` with stdout a pipe nobody reads (read end already closed).
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    // SAFETY: both descriptors were just created and are owned by nothing
    // else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    cmd.stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet(args: &[&str], out: &Output) {
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "antq-tun {} with a closed stdout: {}",
        args.join(" "),
        describe(out)
    );
}

fn run_closed(args: &[&str]) {
    let out = with_closed_stdout(Command::new(bin()).args(args).stdin(Stdio::null()));
    assert_quiet(args, &out);
}

#[test]
fn completions_and_keys_end_quietly() {
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["completions", "fish"],
        &["completions", "elvish"],
        &["completions", "powershell"],
        &["keygen"],
        &["--help"],
        &["--version"],
    ] {
        run_closed(args);
    }
    // pubkey, with a key on stdin.
    let key = Command::new(bin()).arg("keygen").output().unwrap();
    let mut child = Command::new(bin())
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before pubkey writes
    child.stdin.take().unwrap().write_all(&key.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_quiet(&["pubkey"], &out);
}

#[test]
fn manpages_end_quietly_after_writing_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    run_closed(&["manpages", path]);
    assert!(dir.path().join("antq-tun.1").is_file());
}

#[test]
fn errors_are_still_reported() {
    let out = with_closed_stdout(
        Command::new(bin())
            .args(["status", "-i", "antq-no-such-interface"])
            .stdin(Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("antq-tun: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `| head -1` for real, under `set -o pipefail` as the project's scripts
/// run: the first line arrives and the pipeline succeeds.
#[test]
fn piped_into_head_under_pipefail() {
    let script = format!(
        "set -o pipefail; '{}' completions bash | head -n 1",
        bin().replace('\'', "'\\''")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("_antq__tun() {"),
        "{}",
        describe(&out)
    );
}

/// `status --json` and `status` of a running bootstrap (root: its control
/// socket lives in root's /run/antq).
#[test]
#[ignore = "needs root"]
fn status_ends_quietly() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let key = Command::new(bin()).arg("keygen").output().unwrap();
    let key = String::from_utf8(key.stdout).unwrap();
    let port = free_udp_port();
    let config = dir.path().join("bootstrap.toml");
    std::fs::write(
        &config,
        format!(
            "[bootstrap]\nprivate_key = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n",
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
    let status = || {
        Command::new(bin())
            .args(["status", "--json", "-i", &name])
            .output()
            .unwrap()
    };
    // It has something to print.
    assert!(
        wait_until(Duration::from_secs(10), || status().status.success()
            && !status().stdout.is_empty()),
        "no status from the bootstrap: {}",
        describe(&status())
    );
    // (One instance by name: listing all could meet another test's
    // bootstrap as it stops, and a note on stderr about it.)
    for args in [
        &["status", "--json", "-i", &name][..],
        &["status", "-i", &name],
    ] {
        run_closed(args);
    }
}
