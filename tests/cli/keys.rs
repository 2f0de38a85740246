//! The key subcommands of the `antq-tun` binary.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::common::bin;

fn antq_tun() -> Command {
    Command::new(bin())
}

fn pubkey_of(private: &str) -> std::process::Output {
    let mut child = antq_tun()
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn keygen_then_pubkey_is_44_chars_and_deterministic() {
    let out = antq_tun().arg("keygen").output().unwrap();
    assert!(out.status.success());
    let private = String::from_utf8(out.stdout).unwrap();
    assert_eq!(private.trim().len(), 44);
    let first = pubkey_of(&private);
    let second = pubkey_of(&private);
    assert!(first.status.success());
    let public = String::from_utf8(first.stdout).unwrap();
    assert_eq!(public.trim().len(), 44);
    assert_eq!(public, String::from_utf8(second.stdout).unwrap());
    assert_ne!(public.trim(), private.trim());
}

#[test]
fn pubkey_rejects_garbage_with_a_clear_message() {
    let out = pubkey_of("definitely not a key");
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("expected 44 base64 characters"), "{err}");
}

#[test]
fn keygen_out_writes_a_private_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let out = antq_tun()
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        printed.trim()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = antq_tun()
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["keygen", "pubkey"] {
        let out = antq_tun().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(!out.stdout.is_empty());
    }
}
