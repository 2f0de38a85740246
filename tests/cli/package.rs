//! The Debian package (root only): `scripts/package.sh` builds it (from the
//! release binary scripts/test.sh has just built: `ANTQ_TUN_BIN` set means
//! `--no-build`), `dpkg -i` installs it on this machine, what it installed
//! is checked (`antq-tun --version`, `man -w`, the completions, no file
//! capability, `systemd-analyze verify` on the unit; an instance is
//! enabled as an admin would), then `dpkg -r` and `dpkg -P` remove it, and
//! the file lists of /usr, /etc and dpkg's and systemd's state taken before
//! and after must not differ in anything of the package's. Refuses to run where a package `antq` is installed (it
//! would remove it).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{describe, require_root};

const PKG: &str = "antq";

/// Where a package's files and its maintainer scripts' traces can be.
const WATCHED: &[&str] = &[
    "/usr",
    "/etc",
    "/opt",
    "/var/lib/dpkg/info",
    "/var/lib/dpkg/alternatives",
    "/var/lib/systemd",
];

/// Files the package must install (besides directories and the rest).
const EXPECTED: &[&str] = &[
    "/usr/bin/antq-tun",
    "/usr/lib/systemd/system/antq-tun@.service",
    "/usr/share/doc/antq/copyright",
    "/usr/share/doc/antq/README.md",
    "/usr/share/doc/antq/examples/peer.toml",
    "/usr/share/doc/antq/examples/bootstrap.toml",
    "/usr/share/doc/antq/examples/member.toml",
    "/usr/share/man/man1/antq-tun.1.gz",
    "/usr/share/man/man1/antq-tun-up.1.gz",
    "/usr/share/man/man1/antq-tun-status.1.gz",
    "/usr/share/bash-completion/completions/antq-tun",
    "/usr/share/zsh/vendor-completions/_antq-tun",
    "/usr/share/fish/vendor_completions.d/antq-tun.fish",
];

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg, waiting (up to 2 minutes) while another dpkg or apt holds its lock.
fn dpkg(args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run("dpkg", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && stderr.contains("lock") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert!(
            out.status.success(),
            "dpkg {}: {}",
            args.join(" "),
            describe(&out)
        );
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
}

/// `dpkg-query`'s status of the package, e.g. `ii ` or `rc `; `None` when
/// dpkg does not know it (any more).
fn status() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", PKG]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.trim().is_empty() && !text.starts_with("un")).then_some(text)
}

/// Every path under [`WATCHED`] (symlinks not followed).
fn snapshot() -> BTreeSet<String> {
    let dirs: Vec<&str> = WATCHED
        .iter()
        .copied()
        .filter(|d| Path::new(d).exists())
        .collect();
    let out = Command::new("find")
        .args(&dirs)
        .arg("-xdev")
        .output()
        .unwrap();
    // (find may complain about files that vanish under it.)
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Purges the package if a check failed half-way.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if std::thread::panicking() && status().is_some() {
            let _ = run("dpkg", &["-P", PKG]);
        }
    }
}

#[test]
#[ignore = "needs root"]
fn deb_installs_works_and_leaves_nothing() {
    require_root();
    assert!(
        status().is_none(),
        "a package {PKG} is installed here ({:?}): this test installs and purges its own; \
         remove it first (dpkg -P {PKG})",
        status()
    );
    let root = env!("CARGO_MANIFEST_DIR");

    // Build.
    let mut package = Command::new("bash");
    package.arg(format!("{root}/scripts/package.sh"));
    if std::env::var_os("ANTQ_TUN_BIN").is_some() {
        package.arg("--no-build");
    }
    let out = package.output().unwrap();
    assert!(out.status.success(), "package.sh: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout.lines().last().unwrap_or("").trim().to_owned();
    assert!(
        Path::new(&deb).is_file() && deb.ends_with(".deb"),
        "package.sh printed no .deb path: {}",
        describe(&out)
    );
    let name = Path::new(&deb).file_name().unwrap().to_string_lossy();
    assert!(
        name.starts_with(&format!("{PKG}_{}-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );

    // What is in it.
    let listing: BTreeSet<String> = ok("dpkg-deb", &["-c", &deb])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| {
            let p = p.trim_start_matches('.').trim_end_matches('/');
            if p.is_empty() { "/" } else { p }.to_owned()
        })
        .collect();
    for path in EXPECTED {
        assert!(
            listing.contains(*path),
            "{path} not in the package: {listing:#?}"
        );
    }
    let depends = ok("dpkg-deb", &["-f", &deb, "Depends"]);
    assert!(depends.contains("libc6"), "Depends: {depends}");

    let before = snapshot();
    let _purge = Purge;
    dpkg(&["-i", &deb]);
    assert_eq!(status().as_deref().map(str::trim), Some("ii"));

    // It works.
    let version = ok("/usr/bin/antq-tun", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("antq-tun {}", env!("CARGO_PKG_VERSION"))
    );
    if Command::new("man").arg("--version").output().is_ok() {
        for page in ["antq-tun", "antq-tun-up", "antq-tun-completions"] {
            let path = ok("man", &["-w", page]);
            assert_eq!(path.trim(), format!("/usr/share/man/man1/{page}.1.gz"));
        }
    } else {
        eprintln!("no man here: checked the page files only");
    }
    for path in EXPECTED {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(meta.len() > 0, "{path} is empty");
    }
    let bash = ok(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/antq-tun && complete -p antq-tun",
        ],
    );
    assert!(bash.contains("antq-tun"), "{bash}");
    // No capability unless the admin adds one (README: setcap).
    if let Ok(out) = Command::new("getcap").arg("/usr/bin/antq-tun").output() {
        assert!(out.stdout.is_empty(), "{}", describe(&out));
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        // (Also resolves ExecStart= and the Documentation= man pages.)
        ok(
            "systemd-analyze",
            &["verify", "/usr/lib/systemd/system/antq-tun@.service"],
        );
    } else {
        eprintln!("no systemd-analyze here: unit not verified");
    }

    // An admin's enabled instance: its link must go with the purge.
    if Command::new("systemctl").arg("--version").output().is_ok() {
        ok("systemctl", &["enable", "antq-tun@pkgtest.service"]);
        assert!(
            Path::new("/etc/systemd/system/multi-user.target.wants/antq-tun@pkgtest.service")
                .symlink_metadata()
                .is_ok(),
            "systemctl enable made no link"
        );
    }

    // Remove, then purge.
    dpkg(&["-r", PKG]);
    for path in &listing {
        let p = Path::new(path);
        if p.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            panic!("{path} is still there after dpkg -r");
        }
    }
    dpkg(&["-P", PKG]);
    assert_eq!(status(), None, "dpkg still knows {PKG}");

    let after = snapshot();
    // Other tests may install or remove unrelated files meanwhile: only
    // paths of the package (its listing, directories included) or named
    // after it count.
    let ours = |p: &&String| listing.contains(*p) || p.contains("antq");
    let left: Vec<&String> = after.difference(&before).filter(ours).collect();
    let lost: Vec<&String> = before.difference(&after).filter(ours).collect();
    assert!(left.is_empty(), "left behind after dpkg -P: {left:#?}");
    assert!(
        lost.is_empty(),
        "gone after dpkg -P that were there before: {lost:#?}"
    );
    let other: Vec<&String> = after.symmetric_difference(&before).collect();
    if !other.is_empty() {
        eprintln!("changed meanwhile, not by the package: {other:#?}");
    }
}
