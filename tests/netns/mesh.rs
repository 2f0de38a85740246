//! An antq mesh in the NAT lab (`scripts/mesh.sh`): commands inside its
//! namespaces, status queries, logs, and failures collected over a test.
//!
//! Every [`Mesh`] has its own short prefix and is torn down by `Drop`
//! (`scripts/mesh.sh down`), also when the test panics.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use crate::common::{bin, describe, unique_prefix};

/// The repository root.
pub fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running antq mesh in the NAT lab: bootstrap in `P-boot`, `antq-tun up`
/// on hosts `P-a`, `P-b`, ... Host i has 10.90.0.(i+1) and fd90::(i+1).
pub struct Mesh {
    /// The lab prefix.
    pub prefix: String,
    /// NAT kind of each host, in order a, b, c, ...
    pub kinds: Vec<String>,
}

impl Mesh {
    /// Builds the lab and the mesh with the test binary. Panics (after
    /// tearing down) if `mesh.sh up` fails.
    pub fn up(kinds: &[&str]) -> Mesh {
        Self::up_with(kinds, &[])
    }

    /// Like [`Mesh::up`], with more `mesh.sh up` options (e.g.
    /// `["--bootstraps", "2"]`).
    pub fn up_with(kinds: &[&str], options: &[&str]) -> Mesh {
        let mesh = Mesh {
            prefix: unique_prefix("ae"),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        };
        let started = Instant::now();
        // mesh.sh leaves background subshells that keep its stdout/stderr
        // open, so they go to a file: a pipe would never see EOF.
        let log_path = std::env::temp_dir().join(format!("{}.mesh-up.log", mesh.prefix));
        let log = std::fs::File::create(&log_path).expect("create mesh.sh log");
        let status = Command::new("bash")
            .arg(root_dir().join("scripts/mesh.sh"))
            .args(["up", "--prefix", &mesh.prefix, "--hosts", &kinds.join(",")])
            .args(["--bin", bin()])
            .args(options)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .status()
            .expect("run scripts/mesh.sh");
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&log_path);
        assert!(
            status.success(),
            "mesh.sh up --prefix {} failed ({status}):\n{output}",
            mesh.prefix
        );
        eprintln!(
            "mesh {} up in {:.1} s: {}",
            mesh.prefix,
            started.elapsed().as_secs_f64(),
            kinds.join(",")
        );
        mesh
    }

    /// Host letter of index `i` (0 = a).
    pub fn letter(i: usize) -> String {
        ((b'a' + i as u8) as char).to_string()
    }

    /// Index of host `letter`.
    pub fn index(host: &str) -> usize {
        (host.as_bytes()[0] - b'a') as usize
    }

    /// Host letters a, b, ...
    pub fn hosts(&self) -> Vec<String> {
        (0..self.kinds.len()).map(Self::letter).collect()
    }

    /// Namespace of `host` (`a`, `b`, ..., `boot`, `ra`, ...).
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Tunnel IPv4 address of `host`.
    pub fn ip4(&self, host: &str) -> String {
        format!("10.90.0.{}", Self::index(host) + 1)
    }

    /// Tunnel IPv6 address of `host`.
    pub fn ip6(&self, host: &str) -> String {
        format!("fd90::{}", Self::index(host) + 1)
    }

    /// The mesh's file directory (keys, configs, logs, pids).
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/antq-lab/{}.mesh", self.prefix))
    }

    /// Public key of `host` (or `boot`).
    pub fn public_key(&self, host: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{host}.pub")))
            .expect("read public key")
            .trim()
            .to_owned()
    }

    /// Log of `host`'s daemon, without colour escapes.
    pub fn log(&self, host: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir().join(format!("{host}.log"))).unwrap_or_default();
        strip_ansi(&text)
    }

    /// The pid of the `antq-tun` daemon (`up`, or `bootstrap` in `boot`)
    /// running in `host`'s namespace. Found with `ip netns pids`: mesh.sh's
    /// pid file holds the pids of its wrapper subshells, not of antq-tun.
    pub fn pid(&self, host: &str) -> Option<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(host)])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"antq-tun"))
                    && args
                        .get(1)
                        .is_some_and(|a| *a == b"up" || *a == b"bootstrap")
            })
    }

    /// Runs `scripts/lab.sh COMMAND --prefix P ARGS...` (renumber,
    /// set-kind, flush-conntrack, ...); panics if it fails.
    pub fn lab(&self, command: &str, args: &[&str]) -> String {
        self.script("lab.sh", command, args)
    }

    /// Runs `scripts/mesh.sh COMMAND --prefix P ARGS...` (stop-boot,
    /// start-boot); panics if it fails.
    pub fn mesh(&self, command: &str, args: &[&str]) -> String {
        self.script("mesh.sh", command, &[&["--bin", bin()], args].concat())
    }

    fn script(&self, script: &str, command: &str, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(root_dir().join("scripts").join(script))
            .args([command, "--prefix", &self.prefix])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .expect("run a lab script");
        assert!(
            out.status.success(),
            "{script} {command} {args:?}: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `ip netns exec P-host ARGS...`, killed after 120 s.
    pub fn exec(&self, host: &str, args: &[&str]) -> Output {
        let mut full = vec!["timeout", "-k", "5", "120"];
        full.extend_from_slice(args);
        self.command(host, &full)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// `ip netns exec P-host ARGS...` (no time limit), for background
    /// processes: `ip` execs ARGS, so the child's pid is the program's.
    pub fn command(&self, host: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).args(args);
        cmd
    }

    /// `antq-tun status --json -i antq0` of `host`.
    pub fn try_status(&self, host: &str) -> Result<serde_json::Value, String> {
        let out = self.exec(host, &[bin(), "status", "--json", "-i", "antq0"]);
        if !out.status.success() {
            return Err(describe(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", describe(&out)))
    }

    /// `antq-tun status --json -i antq0` of `host`; panics on failure.
    pub fn status(&self, host: &str) -> serde_json::Value {
        self.try_status(host)
            .unwrap_or_else(|e| panic!("status of host {host}: {e}"))
    }

    /// `(peer host letter, path)` for every peer in `host`'s status; peers
    /// missing from the status are reported with path `missing`.
    pub fn paths(&self, host: &str) -> Vec<(String, String)> {
        let status = self.try_status(host).unwrap_or_default();
        let peers = status["peers"].as_array().cloned().unwrap_or_default();
        self.hosts()
            .into_iter()
            .filter(|h| h != host)
            .map(|h| {
                let key = self.public_key(&h);
                let path = peers
                    .iter()
                    .find(|p| p["public_key"] == key.as_str())
                    .and_then(|p| p["path"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "missing".to_owned());
                (h, path)
            })
            .collect()
    }

    /// Starts host `host`'s tunnel from `HOST.toml` in the mesh's dir (a
    /// host held back with `--hold`), logging to `HOST.log` there.
    pub fn start(&self, host: &str) -> crate::common::ChildGuard {
        let dir = self.dir();
        let config = dir.join(format!("{host}.toml"));
        let log = std::fs::File::create(dir.join(format!("{host}.log"))).expect("create log");
        crate::common::ChildGuard(Some(
            self.command(
                host,
                &[bin(), "up", "-c", config.to_str().expect("utf-8 path")],
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn antq-tun up"),
        ))
    }

    /// Status of every host, pretty-printed, for failure messages.
    pub fn dump(&self) -> String {
        let mut text = String::new();
        for h in self.hosts() {
            let status = match self.try_status(&h) {
                Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
                Err(e) => e,
            };
            text += &format!(
                "=== host {h} ({}) status\n{status}\n",
                self.kinds[Self::index(&h)]
            );
            let log = self.log(&h);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text += &format!("=== host {h} log (last 30 lines)\n");
            for line in tail.into_iter().rev() {
                text += line;
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(root_dir().join("scripts/mesh.sh"))
            .args(["down", "--prefix", &self.prefix])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "mesh.sh down --prefix {} failed: {}",
                self.prefix,
                describe(&o)
            ),
            Err(e) => eprintln!("mesh.sh down --prefix {}: {e}", self.prefix),
        }
    }
}

/// Collects failures so that one run reports every broken step; panics in
/// [`Failures::finish`] with all of them, the mesh's state and the
/// bootstrap's log.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Records `what()` unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let text = what();
            eprintln!("FAIL: {text}");
            self.0.push(text);
        }
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The failures recorded.
    pub fn into_messages(self) -> Vec<String> {
        self.0
    }

    /// Panics if anything failed.
    pub fn finish(self, mesh: &Mesh) {
        if !self.0.is_empty() {
            panic!(
                "{} failure(s):\n- {}\n\n{}\n=== boot log\n{}",
                self.0.len(),
                self.0.join("\n- "),
                mesh.dump(),
                mesh.log("boot")
            );
        }
    }
}
