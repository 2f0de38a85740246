//! Scale benchmark: many concurrent traversal sessions on one bootstrap.
//!
//! Starts `antq-tun bootstrap` as a child process on loopback (so its CPU
//! time and memory can be read from /proc apart from everything else), then,
//! in this process, `2 × pairs` overlays at once, each configured with one
//! peer: every pair gets a relay channel, exchanges candidates and punches a
//! direct path through the bootstrap, all at the same time. Prints how many
//! connected (relay) and went direct, median and p99 times, the bootstrap's
//! CPU seconds and RSS, and memory per idle peer on both sides.
//!
//! Run through `scripts/scale.sh` (which builds it in release mode and raises
//! the file descriptor limit): `scale --pairs 1000 --bin target/release/antq-tun`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use antq::identity::Identity;
use antq::nat::PunchConfig;
use antq::node::overlay::{Overlay, OverlayConfig, PeerStatus};
use antq::node::TransportSettings;
use antq::tunnel::config::BootstrapAddr;

struct Args {
    pairs: usize,
    bin: String,
    timeout: Duration,
}

fn args() -> Args {
    let mut args = Args {
        pairs: 1000,
        bin: "target/release/antq-tun".to_owned(),
        timeout: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--pairs" => args.pairs = value.parse().unwrap_or_else(|_| usage()),
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
    eprintln!("usage: scale [--pairs N] [--bin PATH/antq-tun] [--timeout-secs S]");
    std::process::exit(2)
}

/// Resident set size of a process, in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
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

/// Starts the bootstrap binary with limits sized for one source IP carrying
/// every peer, and waits until it answers.
fn start_bootstrap(bin: &str, dir: &std::path::Path) -> (Child, BootstrapAddr) {
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
             connections_per_sec_per_ip = 1000000.0\n"
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
        child,
        BootstrapAddr {
            peer: identity.peer_id(),
            addr,
        },
    )
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
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut boot, bootstrap) = start_bootstrap(&args.bin, dir.path());
    let boot_pid = boot.id();
    let me = std::process::id();
    let boot_rss_idle = rss_kib(boot_pid);
    let my_rss_before = rss_kib(me);
    let n = args.pairs * 2;
    let identities: Vec<Identity> = (0..n).map(|_| Identity::generate()).collect();
    println!(
        "{} pairs ({} overlays) on one bootstrap, loopback, all started at once",
        args.pairs, n
    );

    let started = Instant::now();
    let overlays: Vec<Overlay> = identities
        .iter()
        .enumerate()
        .map(|(i, identity)| {
            let peer = identities[i ^ 1].peer_id();
            Overlay::start(OverlayConfig {
                identity: identity.clone(),
                bind: "127.0.0.1:0".parse().unwrap(),
                peers: vec![(peer, None)],
                bootstraps: vec![bootstrap],
                exclude_ips: vec![],
                transport: TransportSettings::default(),
                punch: PunchConfig {
                    allow_loopback: true,
                    ..PunchConfig::default()
                },
                loopback_only: true,
            })
            .expect("start an overlay")
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
    let _ = boot.kill();
    let _ = boot.wait();
    std::process::exit(0);
}
