//! Traffic through a mesh's tunnel: an HTTP server of random bytes
//! fetched with a checksum, and ping streams that measure outages.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{describe, wait_until, ChildGuard};
use crate::mesh::Mesh;

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
        Self::serve_at(mesh, host, &mesh.ip4(host), size)
    }

    /// Like [`HttpBlob::serve`], on address `addr` of namespace `host`
    /// (which may be a namespace of the test's own, e.g. a LAN host).
    pub fn serve_at(mesh: &Mesh, host: &str, addr: &str, size: usize) -> HttpBlob {
        use std::io::Read as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut blob = vec![0u8; size];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut blob))
            .expect("random data");
        std::fs::write(dir.path().join("blob"), &blob).expect("write blob");
        let server = mesh
            .command(
                host,
                &[
                    "python3",
                    "-c",
                    HTTP_SERVER,
                    addr,
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
            wait_listening(mesh, host, addr, 8080),
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
