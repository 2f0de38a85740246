//! `antq-tun up -c FILE` with bad configs (root only): it must fail with a
//! message naming the file and the field and saying how to fix it, before
//! anything is created. Each run happens in a fresh network namespace that is
//! then checked for an `antq0` device.
//!
//! Run: `cargo test --test cli -- --ignored --nocapture config_errors::` as
//! root. Unix only (network namespaces, file modes); ignored unless asked
//! for, as it needs root.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{bin, describe, require_root, unique_prefix};

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = unique_prefix("ac");
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            describe(&out)
        );
        Netns(name)
    }

    /// `ip netns exec NS ARGS...` with a 30 s limit.
    fn exec(&self, args: &[&str], dir: &Path) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "timeout", "-k", "5", "30"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// The interfaces of the namespace (`ip -n NS -o link show`).
    fn links(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-o", "link", "show"])
            .output()
            .expect("ip link show");
        assert!(
            out.status.success(),
            "ip -n {} link show: {}",
            self.0,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A directory with a key pair, two peer keys and a good config.
struct Fixture {
    dir: tempfile::TempDir,
    own_pub: String,
    own_priv: String,
    peer1: String,
    peer2: String,
}

fn run_bin(args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn antq-tun");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "antq-tun {args:?}: {}",
        describe(&out)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("host.key");
        let own_priv = run_bin(&["keygen", "--out", key.to_str().unwrap()], "");
        let own_pub = run_bin(&["pubkey"], &own_priv);
        let peer = || run_bin(&["pubkey"], &run_bin(&["keygen"], ""));
        let (peer1, peer2) = (peer(), peer());
        std::fs::create_dir(dir.path().join("keydir")).unwrap();
        Fixture {
            dir,
            own_pub,
            own_priv,
            peer1,
            peer2,
        }
    }

    /// Writes config `name`; `{OWNPRIV}`, `{OWN}`, `{PEER1}`, `{PEER2}` in
    /// `text` are replaced by keys.
    fn config(&self, name: &str, text: &str) -> PathBuf {
        let text = text
            .replace("{OWNPRIV}", &self.own_priv)
            .replace("{OWN}", &self.own_pub)
            .replace("{PEER1}", &self.peer1)
            .replace("{PEER2}", &self.peer2);
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

const GOOD: &str = r#"[interface]
name = "antq0"
private_key_file = "host.key"
address = ["10.90.0.1/24", "fd90::1/64"]
bootstrap = ["{PEER2}@198.18.0.10:9000"]

[[peer]]
public_key = "{PEER1}"
allowed_ips = ["10.90.0.2/32", "fd90::2/128"]

[[peer]]
public_key = "{PEER2}"
allowed_ips = ["10.90.0.3/32", "fd90::3/128"]
"#;

/// Runs `antq-tun up -c FILE` in a fresh namespace and checks the failure.
/// `field` must appear in stderr (with the file name and "fix:" unless
/// `fix` is false).
fn expect_refused(fx: &Fixture, case: &str, text: &str, field: &str, fix: bool) -> String {
    let ns = Netns::new();
    let file = fx.config(&format!("{case}.toml"), text);
    let out = ns.exec(&[bin(), "up", "-c", file.to_str().unwrap()], fx.dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "--- {case}: exit {:?}\n{}",
        out.status.code(),
        stderr.trim_end()
    );
    let links = ns.links();
    assert!(
        !out.status.success(),
        "{case}: antq-tun up succeeded: {}",
        describe(&out)
    );
    assert!(
        stderr.contains(file.to_str().unwrap()),
        "{case}: stderr does not name the file {}: {stderr}",
        file.display()
    );
    assert!(
        stderr.contains(field),
        "{case}: stderr does not name `{field}`: {stderr}"
    );
    if fix {
        assert!(stderr.contains("fix:"), "{case}: no `fix:` hint: {stderr}");
    }
    assert!(
        !links.contains("antq0"),
        "{case}: antq0 was created: {links}"
    );
    stderr
}

#[test]
#[ignore = "needs root"]
fn missing_key_file() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("host.key", "missing.key");
    let e = expect_refused(
        &fx,
        "missing_key",
        &text,
        "interface.private_key_file",
        true,
    );
    assert!(e.contains("missing.key"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn unreadable_key_file_directory() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("host.key", "keydir");
    expect_refused(&fx, "key_is_dir", &text, "interface.private_key_file", true);
}

#[test]
#[ignore = "needs root"]
fn bad_base64_private_key_inline() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace(
        "private_key_file = \"host.key\"",
        "private_key = \"not base64 at all!\"",
    );
    expect_refused(
        &fx,
        "bad_base64_inline",
        &text,
        "interface.private_key",
        true,
    );
}

#[test]
#[ignore = "needs root"]
fn bad_base64_key_file_contents() {
    require_root();
    let fx = Fixture::new();
    let garbage = fx.dir.path().join("garbage.key");
    std::fs::write(&garbage, "%%%% this is not a key %%%%\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = GOOD.replace("host.key", "garbage.key");
    expect_refused(
        &fx,
        "bad_base64_file",
        &text,
        "interface.private_key_file",
        true,
    );
}

#[test]
#[ignore = "needs root"]
fn bad_base64_peer_key() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("public_key = \"{PEER1}\"", "public_key = \"AAAA!!!!\"");
    expect_refused(&fx, "bad_peer_key", &text, "peer[0].public_key", true);
}

#[test]
#[ignore = "needs root"]
fn overlapping_allowed_ips_between_peers() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("\"10.90.0.3/32\"", "\"10.90.0.0/24\"");
    let e = expect_refused(&fx, "overlap", &text, "peer[1].allowed_ips", true);
    assert!(e.contains("10.90.0.2/32"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn metrics_on_a_public_address() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("bootstrap = [", "metrics = \"0.0.0.0:9900\"\nbootstrap = [");
    let e = expect_refused(&fx, "metrics", &text, "interface.metrics", true);
    assert!(e.contains("not a loopback address"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn peer_with_our_own_key() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("public_key = \"{PEER1}\"", "public_key = \"{OWN}\"");
    expect_refused(&fx, "own_key", &text, "peer[0].public_key", true);
}

#[test]
#[ignore = "needs root"]
fn bad_cidr_in_allowed_ips() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("10.90.0.2/32", "10.90.0.300/32");
    let e = expect_refused(&fx, "bad_cidr", &text, "peer[0].allowed_ips", true);
    assert!(e.contains("10.90.0.300/32"), "{e}");
}

#[test]
#[ignore = "needs root"]
fn bad_cidr_in_address() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("\"10.90.0.1/24\"", "\"10.90.0.1/33\"");
    expect_refused(&fx, "bad_address", &text, "interface.address", true);
}

/// The field is named, with file and line, but there is no `fix:` hint.
#[test]
#[ignore = "needs root"]
fn unknown_field_is_named() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("name = \"antq0\"", "name = \"antq0\"\nlisten_prot = 9000");
    expect_refused(&fx, "unknown_field", &text, "listen_prot", false);
}

/// TOML parse errors (unknown field, syntax) also say how to fix them.
#[test]
#[ignore = "needs root"]
fn unknown_field_has_fix_hint() {
    require_root();
    let fx = Fixture::new();
    let text = GOOD.replace("name = \"antq0\"", "name = \"antq0\"\nlisten_prot = 9000");
    expect_refused(&fx, "unknown_field_fix", &text, "listen_prot", true);
}

/// A good config run as an unprivileged user: refused for lack of root.
#[test]
#[ignore = "needs root"]
fn not_root() {
    require_root();
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: setpriv (util-linux) is missing");
        return;
    }
    let fx = Fixture::new();
    // Everything must be reachable by uid 65534: a world-readable directory,
    // an inline key (a 0600 key file would fail first) and our own copy of
    // the binary (the target directory may not be).
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = fx.dir.path().join("antq-tun");
    std::fs::copy(bin(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = GOOD.replace(
        "private_key_file = \"host.key\"",
        "private_key = \"{OWNPRIV}\"",
    );
    let file = fx.config("not_root.toml", &text);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let ns = Netns::new();
    let out = ns.exec(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            copy.to_str().unwrap(),
            "up",
            "-c",
            file.to_str().unwrap(),
        ],
        fx.dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "--- not_root: exit {:?}\n{}",
        out.status.code(),
        stderr.trim_end()
    );
    let links = ns.links();
    assert!(
        !out.status.success(),
        "up as uid 65534 succeeded: {}",
        describe(&out)
    );
    assert!(
        stderr.contains("root"),
        "stderr does not mention root: {stderr}"
    );
    assert!(!links.contains("antq0"), "antq0 was created: {links}");
}

/// `status` as an unprivileged user cannot list root's control sockets: it
/// says so instead of claiming that nothing runs.
#[test]
#[ignore = "needs root"]
fn status_as_a_user_says_permission_denied() {
    require_root();
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: setpriv (util-linux) is missing");
        return;
    }
    // The directory antq-tun up makes (root's, mode 0700).
    let dir = Path::new("/run/antq");
    if !dir.exists() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let fx = Fixture::new();
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = fx.dir.path().join("antq-tun");
    std::fs::copy(bin(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("permission denied") && stderr.contains("sudo antq-tun status"),
        "{}",
        describe(&out)
    );
    assert!(!stderr.contains("no antq-tun is running"), "{stderr}");
}
