//! Scale benchmark: many concurrent traversal sessions on one bootstrap, or
//! one node with many peers.
//!
//! Both modes start `antq-tun bootstrap` as a child process on loopback (so
//! its CPU time and memory can be read from /proc apart from everything
//! else).
//!
//! `--pairs N` then starts, in this process, `2 × N` overlays at once, each
//! configured with one peer: every pair gets a relay channel, exchanges
//! candidates and punches a direct path through the bootstrap, all at the
//! same time. Prints how many connected (relay) and went direct, median and
//! p99 times, the bootstrap's CPU seconds and RSS, and memory per idle peer
//! on both sides.
//!
//! `--hub N` measures what one node pays per peer: this program runs itself
//! again as a child (`--hub-node`, the hub) holding ONE overlay configured
//! with N peers, and starts the N spoke overlays in this process, each with
//! the hub as its only peer. The hub's RSS is read from /proc before any
//! peer connects and again after all are connected and have idled; with
//! nothing else in its process, the difference over N is the memory per
//! idle peer. Each peer holds two QUIC connections at the hub: the relay
//! connection through the bootstrap, kept as a backup, and the direct one.
//!
//! To profile the hub, set `SCALE_HUB_WRAPPER` to a command that runs
//! another (e.g. `heaptrack -o /tmp/hub`): the hub child runs under it.
//!
//! Run through `scripts/scale.sh` (which builds it in release mode and raises
//! the file descriptor limit): `scale --pairs 1000 --bin target/release/antq-tun`
//! or `scale --hub 1000 --bin target/release/antq-tun`.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use antq::identity::{Identity, PeerId};
use antq::nat::PunchConfig;
use antq::node::overlay::{Overlay, OverlayConfig, PeerStatus};
use antq::node::{BootstrapAddr, TransportSettings};
use common::{heap_live, rss_kib};

enum Mode {
    /// N pairs of one-peer overlays.
    Pairs(usize),
    /// One overlay with N peers (in a child process) and its N spokes.
    Hub(usize),
    /// The hub's child process, reading its keys from this file.
    HubNode(PathBuf),
}

struct Args {
    mode: Mode,
    bin: String,
    timeout: Duration,
    /// `--hub`: the spokes know the hub's address and dial it (as peers of
    /// a hub with a public address would), besides the relay and punching.
    known_endpoint: bool,
}

fn args() -> Args {
    let mut args = Args {
        mode: Mode::Pairs(1000),
        bin: "target/release/antq-tun".to_owned(),
        timeout: Duration::from_secs(120),
        known_endpoint: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--known-endpoint" {
            args.known_endpoint = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--pairs" => args.mode = Mode::Pairs(value.parse().unwrap_or_else(|_| usage())),
            "--hub" => args.mode = Mode::Hub(value.parse().unwrap_or_else(|_| usage())),
            "--hub-node" => args.mode = Mode::HubNode(value.into()),
            "--bin" => args.bin = value,
            "--timeout-secs" => {
                args.timeout = Duration::from_secs(value.parse().unwrap_or_else(|_| usage()))
            }
            _ => usage(),
        }
    }
    args
}

fn usage() -> ! {
    eprintln!(
        "usage: scale [--pairs N | --hub N [--known-endpoint]] [--bin PATH/antq-tun] [--timeout-secs S]"
    );
    std::process::exit(2)
}

/// User + system CPU seconds of a process (/proc/PID/stat fields 14, 15).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process that is killed when this is dropped, also when this
/// process panics: no bootstrap outlives a failed run.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the bootstrap binary with limits sized for one source IP carrying
/// every peer, and waits until it answers.
fn start_bootstrap(bin: &str, dir: &Path) -> (KillOnDrop, BootstrapAddr) {
    let identity = Identity::generate();
    let key = dir.join("boot.key");
    identity.save_new(&key).expect("write bootstrap key");
    let port = free_udp_port();
    let config = dir.join("boot.toml");
    std::fs::write(
        &config,
        format!(
            "[bootstrap]\nprivate_key_file = \"boot.key\"\nlisten = \"127.0.0.1:{port}\"\n\
             relay = true\ntcp_listen = \"off\"\n\
             connections_per_sec_per_ip = 1000000.0\n\
             max_connections_per_ip = 1000000\nmax_peers = 1000000\n\
             max_pending_handshakes = 65536\n\
             relay_max_per_key = 1000000\nrelay_max_total = 1000000\n"
        ),
    )
    .expect("write bootstrap config");
    let child = Command::new(bin)
        .args(["bootstrap", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the bootstrap");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // It is up once its port is taken.
    let started = Instant::now();
    while std::net::UdpSocket::bind(addr).is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bootstrap did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (
        KillOnDrop(child),
        BootstrapAddr {
            peer: identity.peer_id(),
            addr,
        },
    )
}

/// Starts an overlay on loopback with `peers` and their known endpoints, if
/// any (a peer without one is found through the bootstrap only).
fn start_overlay(
    identity: &Identity,
    peers: Vec<(PeerId, Option<SocketAddr>)>,
    bootstrap: BootstrapAddr,
) -> Overlay {
    Overlay::start(OverlayConfig {
        identity: identity.clone(),
        bind: "127.0.0.1:0".parse().expect("a loopback address"),
        peers,
        bootstraps: vec![bootstrap],
        exclude_ips: vec![],
        transport: TransportSettings::default(),
        punch: PunchConfig {
            allow_loopback: true,
            ..PunchConfig::default()
        },
        loopback_only: true,
        port_mapping: false,
        membership: None,
    })
    .expect("start an overlay")
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

fn show(label: &str, mut ms: Vec<u64>) {
    ms.sort_unstable();
    let f = |p| percentile(&ms, p).map_or("-".to_owned(), |v| format!("{v} ms"));
    println!(
        "{label:<24} median {:>8}   p99 {:>8}   max {:>8}",
        f(0.5),
        f(0.99),
        f(1.0)
    );
}

#[tokio::main]
async fn main() {
    let args = args();
    match &args.mode {
        Mode::Pairs(pairs) => run_pairs(&args, *pairs).await,
        Mode::Hub(peers) => run_hub(&args, *peers).await,
        Mode::HubNode(spec) => run_hub_node(spec).await,
    }
}

/// `--pairs`: `2 × pairs` one-peer overlays in this process.
async fn run_pairs(args: &Args, pairs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (boot, bootstrap) = start_bootstrap(&args.bin, dir.path());
    let boot_pid = boot.0.id();
    let me = std::process::id();
    let boot_rss_idle = rss_kib(boot_pid);
    let my_rss_before = rss_kib(me);
    let n = pairs * 2;
    let identities: Vec<Identity> = (0..n).map(|_| Identity::generate()).collect();
    println!(
        "{} pairs ({} overlays) on one bootstrap, loopback, all started at once",
        pairs, n
    );

    let started = Instant::now();
    let overlays: Vec<Overlay> = identities
        .iter()
        .enumerate()
        .map(|(i, identity)| {
            start_overlay(
                identity,
                vec![(identities[i ^ 1].peer_id(), None)],
                bootstrap,
            )
        })
        .collect();
    let spawned = started.elapsed();

    let statuses = |overlays: &[Overlay]| -> Vec<PeerStatus> {
        overlays.iter().flat_map(Overlay::status).collect()
    };
    let deadline = started + args.timeout;
    loop {
        let all = statuses(&overlays);
        let direct = all.iter().filter(|s| s.first_direct_ms.is_some()).count();
        if direct == n || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let busy_for = started.elapsed();
    let all = statuses(&overlays);
    let connected: Vec<u64> = all.iter().filter_map(|s| s.first_connect_ms).collect();
    let direct: Vec<u64> = all.iter().filter_map(|s| s.first_direct_ms).collect();
    let boot_cpu = cpu_secs(boot_pid);
    let boot_rss_busy = rss_kib(boot_pid);

    // Idle: connections stay up with keep-alives only.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let boot_rss_after = rss_kib(boot_pid);
    let my_rss_after = rss_kib(me);
    let boot_cpu_idle = cpu_secs(boot_pid) - boot_cpu;

    println!("overlays started in {:.2} s", spawned.as_secs_f64());
    println!(
        "connected (first datagram path): {}/{} ({:.1} %)",
        connected.len(),
        n,
        100.0 * connected.len() as f64 / n as f64
    );
    println!(
        "direct (hole punched):           {}/{} ({:.1} %), all within {:.1} s",
        direct.len(),
        n,
        100.0 * direct.len() as f64 / n as f64,
        busy_for.as_secs_f64()
    );
    show("time to connect", connected);
    show("time to direct", direct);
    println!(
        "bootstrap: CPU {:.2} s during setup, {:.2} s in 10 s idle; RSS {:.1} MiB idle before, {:.1} MiB busy, {:.1} MiB with {} idle peers ({:.1} KiB per peer)",
        boot_cpu,
        boot_cpu_idle,
        boot_rss_idle as f64 / 1024.0,
        boot_rss_busy as f64 / 1024.0,
        boot_rss_after as f64 / 1024.0,
        n,
        boot_rss_after.saturating_sub(boot_rss_idle) as f64 / n as f64
    );
    println!(
        "peers' process: RSS {:.1} MiB for {} idle overlays ({:.1} KiB each: endpoint, bootstrap link, relay and direct connections to its one peer)",
        my_rss_after as f64 / 1024.0,
        n,
        my_rss_after.saturating_sub(my_rss_before) as f64 / n as f64
    );
    // No orderly close: each would wait for its peer's acknowledgement, and
    // the process exit frees everything at once.
    drop(boot);
    std::process::exit(0);
}

/// What the hub child reports on `status`.
#[derive(Clone, Copy, Debug, Default)]
struct HubStatus {
    /// Peers with a live direct connection.
    direct: usize,
    /// Peers with a live relay connection.
    relay: usize,
    /// Peers with both.
    both: usize,
    /// QUIC connections open on the hub's endpoint (bootstrap link included).
    quic: usize,
    /// Whether the bootstrap link is up (our address observed).
    link: bool,
    /// Live heap bytes.
    heap: usize,
    /// Incoming connections accepted so far.
    accepted: usize,
    /// Incoming handshakes that failed so far.
    failed: usize,
}

impl HubStatus {
    fn parse(line: &str) -> Option<Self> {
        let mut st = Self::default();
        for field in line.strip_prefix("status ")?.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let value: usize = value.parse().ok()?;
            match key {
                "direct" => st.direct = value,
                "relay" => st.relay = value,
                "both" => st.both = value,
                "quic" => st.quic = value,
                "link" => st.link = value != 0,
                "heap" => st.heap = value,
                "accepted" => st.accepted = value,
                "failed" => st.failed = value,
                _ => {}
            }
        }
        Some(st)
    }
}

/// Marks the hub's answers on its stdout (a wrapper may print there too).
const ANSWER: &str = "@ ";

/// The hub child process and the pipes it answers on, one line per request.
struct HubChild {
    child: Child,
    io: Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
}

impl HubChild {
    /// Sends `request` and returns the answer line (off the runtime's
    /// threads: the hub may be slow to answer while it is busy).
    async fn ask(&self, request: &'static str) -> String {
        let io = self.io.clone();
        tokio::task::spawn_blocking(move || {
            let mut io = io.lock().expect("hub pipes");
            let (stdin, stdout) = &mut *io;
            writeln!(stdin, "{request}").expect("write to the hub");
            loop {
                let mut line = String::new();
                stdout.read_line(&mut line).expect("read from the hub");
                assert!(!line.is_empty(), "the hub exited");
                match line.trim_end().strip_prefix(ANSWER) {
                    Some(answer) => return answer.to_owned(),
                    // A wrapper's own output.
                    None => eprint!("hub: {line}"),
                }
            }
        })
        .await
        .expect("hub request")
    }

    async fn status(&self) -> HubStatus {
        let line = self.ask("status").await;
        HubStatus::parse(&line).unwrap_or_else(|| panic!("bad hub status line: {line}"))
    }
}

/// `--hub`: one overlay with `peers` peers in a child process, and its
/// spokes here.
async fn run_hub(args: &Args, peers: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (boot, bootstrap) = start_bootstrap(&args.bin, dir.path());
    let boot_pid = boot.0.id();
    let hub_identity = Identity::generate();
    let spokes: Vec<Identity> = (0..peers).map(|_| Identity::generate()).collect();
    let spec = dir.path().join("hub.txt");
    let mut text = format!(
        "bootstrap {} {}\nkey {}\n",
        bootstrap.peer,
        bootstrap.addr,
        hub_identity.to_base64().as_str()
    );
    for spoke in &spokes {
        text.push_str(&format!("peer {}\n", spoke.peer_id()));
    }
    std::fs::write(&spec, text).expect("write the hub's keys");
    let exe = std::env::current_exe().expect("own executable");
    // A profiler may wrap the hub (its RSS is then the wrapper's).
    let wrapper = std::env::var("SCALE_HUB_WRAPPER").unwrap_or_default();
    let mut command = match wrapper.split_whitespace().collect::<Vec<_>>().split_first() {
        Some((program, wrapper_args)) => {
            let mut c = Command::new(program);
            c.args(wrapper_args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = command
        .arg("--hub-node")
        .arg(&spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the hub");
    let stdin = child.stdin.take().expect("hub stdin");
    let stdout = BufReader::new(child.stdout.take().expect("hub stdout"));
    let hub = HubChild {
        child,
        io: Arc::new(Mutex::new((stdin, stdout))),
    };
    let hub_pid = hub.child.id();
    let hub_addr = hub.ask("addr").await;
    println!(
        "hub with {peers} peers (its own process) and {peers} spokes on one bootstrap, loopback{}",
        if args.known_endpoint {
            "; the spokes know the hub's address"
        } else {
            ""
        }
    );

    // The hub's bootstrap link first; then a moment for its start to settle
    // (its relay requests for peers not yet there are refused).
    let started = Instant::now();
    while !hub.status().await.link {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the hub did not reach the bootstrap"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = rss_kib(hub_pid);
    let heap_before = hub.status().await.heap;
    let cpu_before = cpu_secs(hub_pid);

    let started = Instant::now();
    let hub_key = hub_identity.peer_id();
    let endpoint = args
        .known_endpoint
        .then_some(hub_addr.parse().expect("hub address"));
    let overlays: Vec<Overlay> = spokes
        .iter()
        .map(|identity| start_overlay(identity, vec![(hub_key, endpoint)], bootstrap))
        .collect();
    let spawned = started.elapsed();
    let deadline = started + args.timeout;
    let last = loop {
        let st = hub.status().await;
        if (st.direct == peers && st.relay == peers) || Instant::now() >= deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let busy_for = started.elapsed();
    let spoke_status: Vec<PeerStatus> = overlays.iter().flat_map(Overlay::status).collect();
    let connected: Vec<u64> = spoke_status
        .iter()
        .filter_map(|s| s.first_connect_ms)
        .collect();
    let direct: Vec<u64> = spoke_status
        .iter()
        .filter_map(|s| s.first_direct_ms)
        .collect();
    let rss_busy = rss_kib(hub_pid);
    let cpu_setup = cpu_secs(hub_pid) - cpu_before;
    let boot_cpu = cpu_secs(boot_pid);

    // Idle: connections stay up with keep-alives only.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after = rss_kib(hub_pid);
    let idle = hub.status().await;
    let cpu_idle = cpu_secs(hub_pid) - cpu_before - cpu_setup;
    let trimmed = hub.ask("trim").await;
    let rss_trimmed = rss_kib(hub_pid);
    let boot_rss = rss_kib(boot_pid);

    let per_peer = |after: u64, before: u64| after.saturating_sub(before) as f64 / peers as f64;
    println!("spokes started in {:.2} s", spawned.as_secs_f64());
    println!(
        "spokes connected (first datagram path): {}/{peers}, direct: {}/{peers}; hub saw all {} within {:.1} s",
        connected.len(),
        direct.len(),
        if last.direct == peers && last.relay == peers {
            "connected"
        } else {
            "NOT connected"
        },
        busy_for.as_secs_f64()
    );
    show("time to connect", connected);
    show("time to direct", direct);
    println!(
        "hub connections after 10 s idle: {} peers direct, {} relay, {} both (a relay connection is kept as backup next to the direct one); {} QUIC connections open incl. the bootstrap link; {} incoming accepted in all, {} incoming handshakes failed",
        idle.direct, idle.relay, idle.both, idle.quic, idle.accepted, idle.failed
    );
    println!(
        "hub CPU: {cpu_setup:.2} s while its peers connected, {cpu_idle:.2} s in 10 s idle; bootstrap CPU {boot_cpu:.2} s, RSS {:.1} MiB",
        boot_rss as f64 / 1024.0
    );
    // Per QUIC connection to a peer (the bootstrap link was there before).
    let conns = idle.quic.saturating_sub(1).max(1) as f64;
    let heap_grown = idle.heap.saturating_sub(heap_before) as f64 / 1024.0;
    println!(
        "hub heap in use: before {} KiB, after {} KiB, per idle peer {:.1} KiB, per peer connection {:.1} KiB",
        heap_before / 1024,
        idle.heap / 1024,
        heap_grown / peers as f64,
        heap_grown / conns
    );
    println!(
        "hub RSS: busy {rss_busy} KiB; after malloc_trim ({trimmed}) {rss_trimmed} KiB, per idle peer {:.1} KiB; per peer connection {:.1} KiB",
        per_peer(rss_trimmed, rss_before),
        rss_after.saturating_sub(rss_before) as f64 / conns
    );
    println!(
        "hub: {peers} peers, RSS before {rss_before} KiB, after {rss_after} KiB, per idle peer {:.1} KiB",
        per_peer(rss_after, rss_before)
    );
    // The end of its stdin ends the hub (at once: no orderly close).
    let HubChild { mut child, io } = hub;
    drop(io);
    let _ = child.wait();
    drop(boot);
    std::process::exit(0);
}

/// `--hub-node SPEC`: the hub, one overlay with every peer in `SPEC`.
/// Answers `status` and `trim` on stdin, one line each; exits at the end of
/// stdin.
async fn run_hub_node(spec: &Path) {
    let text = std::fs::read_to_string(spec).expect("read the hub's keys");
    let mut identity = None;
    let mut bootstrap = None;
    let mut peers = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["bootstrap", peer, addr] => {
                bootstrap = Some(BootstrapAddr {
                    peer: peer.parse().expect("bootstrap key"),
                    addr: addr.parse().expect("bootstrap address"),
                })
            }
            ["key", secret] => identity = Some(Identity::from_base64(secret).expect("hub key")),
            ["peer", peer] => peers.push((peer.parse::<PeerId>().expect("peer key"), None)),
            _ => panic!("bad line in {}: {line}", spec.display()),
        }
    }
    let identity = identity.expect("a key line");
    let bootstrap = bootstrap.expect("a bootstrap line");
    let overlay = start_overlay(&identity, peers, bootstrap);
    let answers = overlay.clone();
    tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout().lock();
        for line in std::io::stdin().lock().lines() {
            let answer = match line.expect("read stdin").as_str() {
                "status" => {
                    let open = answers.open_connections();
                    let stats = answers.node().stats();
                    let link = answers
                        .observed_addresses()
                        .iter()
                        .any(|(_, o)| o.is_some());
                    format!(
                        "status direct={} relay={} both={} quic={} link={} heap={} accepted={} failed={}",
                        open.direct,
                        open.relay,
                        open.both,
                        answers.node().open_connections(),
                        u8::from(link),
                        heap_live(),
                        stats.accepted.load(Ordering::Relaxed),
                        stats.handshakes_failed.load(Ordering::Relaxed)
                    )
                }
                "trim" => trim(),
                "addr" => format!("{}", answers.local_addr().expect("hub address")),
                other => format!("unknown request {other:?}"),
            };
            writeln!(stdout, "{ANSWER}{answer}").expect("write stdout");
            stdout.flush().expect("flush stdout");
        }
    })
    .await
    .expect("hub request loop");
    std::process::exit(0);
}

/// Returns the heap's free memory to the system where the allocator allows
/// (glibc's `malloc_trim`), so RSS shows what is in use rather than what the
/// allocator keeps from busier times.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> String {
    // SAFETY: malloc_trim only walks glibc's own heap structures.
    let released = unsafe { libc::malloc_trim(0) };
    format!("trimmed={released}")
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> String {
    "trim=unsupported".to_owned()
}
