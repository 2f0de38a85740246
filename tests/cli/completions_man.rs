//! `antq-tun completions SHELL` and `antq-tun manpages DIR`: what
//! scripts/package.sh puts in the Debian package, generated from the clap
//! definitions.

use std::process::Command;
#[cfg(unix)]
use std::process::Stdio;

use crate::common::{bin, describe};

/// The visible subcommands, as the man pages and completions name them.
const SUBCOMMANDS: &[&str] = &[
    "keygen",
    "pubkey",
    "up",
    "down",
    "reload",
    "status",
    "ping",
    "bootstrap",
    "netcheck",
    "ca",
    "completions",
    "manpages",
];

/// Subcommands of subcommands, which have their own pages too.
const NESTED: &[&str] = &["ca-init", "ca-sign", "ca-show"];

#[test]
fn completions_of_every_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", describe(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
    }
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// The bash script loads and registers the completion.
#[cfg(unix)]
#[test]
fn bash_completion_loads() {
    let script = format!(
        "source <('{}' completions bash) && complete -p antq-tun",
        bin().replace('\'', "'\\''")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("antq-tun"),
        "{}",
        describe(&out)
    );
}

#[test]
fn manpages_one_per_subcommand_dated_by_source_date_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("manpages")
        .arg(dir.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let mut expected: Vec<String> = SUBCOMMANDS
        .iter()
        .chain(NESTED)
        .map(|s| format!("antq-tun-{s}.1"))
        .collect();
    expected.push("antq-tun.1".to_owned());
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, expected);

    let main = std::fs::read_to_string(dir.path().join("antq-tun.1")).unwrap();
    let title = main.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
    assert!(
        title.starts_with(".TH antq-tun 1 2023-11-14 \"antq-tun "),
        "{title}"
    );
    for section in [
        "SUBCOMMANDS",
        "EXIT STATUS",
        "PRIVILEGES",
        "ENVIRONMENT",
        "FILES",
    ] {
        assert!(
            main.contains(&format!(".SH \"{section}\""))
                || main.contains(&format!(".SH {section}")),
            "no {section}"
        );
    }
    let up = std::fs::read_to_string(dir.path().join("antq-tun-up.1")).unwrap();
    assert!(up.contains("config"), "antq-tun-up.1 has no --config");
}

/// Each page renders without a groff warning (where man-db is installed).
#[cfg(unix)]
#[test]
fn manpages_render_cleanly() {
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("no man here: rendering not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("manpages")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            path.display(),
            describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    }
}
