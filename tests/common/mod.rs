//! Shared harness of the root-only network-namespace tests: an antq mesh in
//! the NAT lab (`scripts/mesh.sh`), commands inside its namespaces, status
//! queries and polling.
//!
//! Every [`Mesh`] has its own short prefix and is torn down by `Drop`
//! (`scripts/mesh.sh down`), also when the test panics.

#![allow(dead_code)] // each test binary uses a different subset

pub mod attack;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `antq-tun` binary built for the tests.
/// The `antq-tun` binary the tests run: `ANTQ_TUN_BIN` when set
/// (`scripts/test.sh` points it at a fresh release build, since hole punching
/// between two home NATs is timing-sensitive), else this build's binary.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("ANTQ_TUN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_antq-tun").to_owned())
    })
}

/// The repository root.
pub fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// Stdout and stderr of `out`, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
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

    /// Host letter owning `public_key`.
    pub fn host_of_key(&self, public_key: &str) -> Option<String> {
        self.hosts()
            .into_iter()
            .find(|h| self.public_key(h) == public_key)
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

/// Waits (up to 10 s) until a TCP socket listens on `addr:port` in `host`.
pub fn wait_listening(mesh: &Mesh, host: &str, addr: &str, port: u16) -> bool {
    let needle = format!("{addr}:{port} ");
    wait_until(Duration::from_secs(10), || {
        let out = mesh.exec(host, &["ss", "-Htln"]);
        String::from_utf8_lossy(&out.stdout).contains(&needle)
    })
}

/// `python3 -c HTTP_SERVER ADDR PORT DIR`: `http.server` without its
/// reverse DNS lookup of the bind address (`getfqdn`), which in a lab
/// namespace waits for a resolver that is unreachable (and must stay so:
/// tests send nothing outside their namespaces).
const HTTP_SERVER: &str = r#"
import functools, http.server, socketserver, sys
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
Server((sys.argv[1], int(sys.argv[2])), handler).serve_forever()
"#;

/// A file of random bytes served over HTTP on a host's tunnel address.
pub struct HttpBlob {
    dir: tempfile::TempDir,
    url: String,
    _server: ChildGuard,
}

/// What fetching an [`HttpBlob`] gave.
#[derive(Debug)]
pub struct Fetch {
    /// curl exited 0.
    pub ok: bool,
    /// The fetched file's SHA-256 equals the served one's.
    pub same: bool,
    /// Wall time of the transfer.
    pub secs: f64,
    /// curl's output, for failure messages.
    pub detail: String,
}

impl HttpBlob {
    /// Serves `size` random bytes at `http://<host's tunnel IPv4>:8080/blob`
    /// (python3 http.server, one TCP connection per fetch).
    pub fn serve(mesh: &Mesh, host: &str, size: usize) -> HttpBlob {
        use std::io::Read as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut blob = vec![0u8; size];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut blob))
            .expect("random data");
        std::fs::write(dir.path().join("blob"), &blob).expect("write blob");
        let addr = mesh.ip4(host);
        let server = mesh
            .command(
                host,
                &[
                    "python3",
                    "-c",
                    HTTP_SERVER,
                    &addr,
                    "8080",
                    dir.path().to_str().unwrap(),
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn http.server");
        let server = ChildGuard(Some(server));
        assert!(
            wait_listening(mesh, host, &addr, 8080),
            "http.server on {host} did not listen"
        );
        HttpBlob {
            url: format!("http://{addr}:8080/blob"),
            dir,
            _server: server,
        }
    }

    /// The curl command that fetches the blob in `host` (at most
    /// `limit_rate`, curl's syntax, e.g. "1M") into a file of its own.
    pub fn fetch_command(&self, mesh: &Mesh, host: &str, limit_rate: Option<&str>) -> Command {
        let out = self.dir.path().join(format!("fetched-{host}"));
        let mut args = vec![
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "120",
            "-o",
            out.to_str().unwrap(),
        ];
        if let Some(rate) = limit_rate {
            args.extend(["--limit-rate", rate]);
        }
        args.push(&self.url);
        let mut cmd = mesh.command(host, &args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Fetches the blob in `host` and compares checksums.
    pub fn fetch(&self, mesh: &Mesh, host: &str) -> Fetch {
        let started = Instant::now();
        let out = self
            .fetch_command(mesh, host, None)
            .output()
            .expect("run curl");
        self.check(host, &out, started)
    }

    /// Compares the file fetched by `host`'s curl (which gave `out`, and
    /// started at `started`) with the served one.
    pub fn check(&self, host: &str, out: &Output, started: Instant) -> Fetch {
        let secs = started.elapsed().as_secs_f64();
        let sums = Command::new("sha256sum")
            .arg(self.dir.path().join("blob"))
            .arg(self.dir.path().join(format!("fetched-{host}")))
            .output()
            .expect("sha256sum");
        let sums = String::from_utf8_lossy(&sums.stdout).into_owned();
        let hashes: Vec<&str> = sums
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        Fetch {
            ok: out.status.success(),
            same: hashes.len() == 2 && hashes[0] == hashes[1],
            secs,
            detail: format!("{} sha256: {sums}", describe(out)),
        }
    }
}

/// A `ping -D -i 0.01` stream (100 packets a second) from one host, for
/// measuring outages.
pub struct PingStream {
    child: ChildGuard,
    started: Instant,
    /// Reads ping's output as it comes (a pipe left unread fills after
    /// about 800 replies, and ping then stops sending); yields the reply
    /// times (unix seconds).
    reader: Option<std::thread::JoinHandle<Vec<f64>>>,
}

/// What a [`PingStream`] saw.
#[derive(Debug)]
pub struct PingSummary {
    /// Replies received.
    pub replies: usize,
    /// Longest time without a reply: between two replies, or from the start
    /// to the first or from the last to the end.
    pub max_gap: Duration,
}

impl PingStream {
    /// Starts pinging `dest` from `host` for `seconds`.
    pub fn start(mesh: &Mesh, host: &str, dest: &str, seconds: u32) -> PingStream {
        let mut child = mesh
            .command(
                host,
                &[
                    "ping",
                    "-D",
                    "-n",
                    "-i",
                    "0.01",
                    "-w",
                    &seconds.to_string(),
                    dest,
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping");
        let stdout = child.stdout.take().expect("ping's stdout");
        let reader = std::thread::spawn(move || {
            use std::io::BufRead as _;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.contains("bytes from"))
                .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
                .collect()
        });
        PingStream {
            child: ChildGuard(Some(child)),
            started: Instant::now(),
            reader: Some(reader),
        }
    }

    /// Ends the stream now (SIGINT, as ping expects) and measures it.
    pub fn stop(self) -> PingSummary {
        if let Some(child) = self.child.0.as_ref() {
            // SAFETY: a signal to our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        }
        self.finish()
    }

    /// Waits for the stream to end and measures it.
    pub fn finish(mut self) -> PingSummary {
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - self.started.elapsed().as_secs_f64();
        self.child.take().wait().expect("wait for ping");
        let ended_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let replies = self
            .reader
            .take()
            .expect("ping reader")
            .join()
            .expect("ping reader thread");
        let mut max_gap = 0f64;
        let mut last = started_unix;
        for t in replies.iter().copied().chain([ended_unix]) {
            max_gap = max_gap.max(t - last);
            last = t;
        }
        PingSummary {
            replies: replies.len(),
            max_gap: Duration::from_secs_f64(max_gap.max(0.0)),
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
