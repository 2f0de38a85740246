//! Memory of a TCP listener under many held streams (issue #13).
//!
//! Serves TCP on loopback from a node's socket (as a bootstrap does), then
//! opens `--streams N` (4096) streams from `--sources S` (256) loopback
//! source addresses (127.10.x.y), each sending the preface and one
//! 1200-byte frame (the size of a QUIC Initial). The listener has the
//! bootstrap's caps (16 streams per source, `--streams` in all) and every
//! stream is claimed as soon as it is open (as the bootstrap does once the
//! QUIC handshake over it completed), so that all are held. Then every
//! stream sends a burst of `--burst-frames F` (48) more frames in one write,
//! so that its buffers see a burst; then all are closed. Prints the
//! process's RSS (`VmRSS` of /proc/self/status) and live heap (bytes
//! allocated and not freed) idle, with all streams open (before and right
//! after the bursts, and after 5 s of quiet), and every 10 s for
//! `--after-secs T` (60) after they all closed.
//!
//! `cargo run --release --example tcp_rss` (no root: loopback has all of
//! 127.0.0.0/8; needs about 2N+64 file descriptors).

mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use antq::identity::Identity;
use antq::node::{Node, NodeConfig};
use antq::socket::framing::{encode_frame, PREFACE};
use antq::socket::{bind_tcp, AntqSocket, StreamLimits};
use antq::tls::AcceptPolicy;
use common::{heap_live, rss_kib};

struct Args {
    streams: usize,
    sources: usize,
    burst_frames: usize,
    after: Duration,
}

fn args() -> Args {
    let mut args = Args {
        streams: 4096,
        sources: 256,
        burst_frames: 48,
        after: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value: u64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        let n = usize::try_from(value).unwrap_or_else(|_| usage());
        match a.as_str() {
            "--streams" => args.streams = n,
            "--sources" => args.sources = n.max(1),
            "--burst-frames" => args.burst_frames = n,
            "--after-secs" => args.after = Duration::from_secs(value),
            _ => usage(),
        }
    }
    args
}

fn usage() -> ! {
    eprintln!("usage: tcp_rss [--streams N] [--sources S] [--burst-frames F] [--after-secs T]");
    std::process::exit(2)
}

fn report(what: &str) {
    println!(
        "{what:<28} RSS {:>8.1} MiB   live heap {:>8.1} MiB",
        rss_kib(std::process::id()) as f64 / 1024.0,
        heap_live() as f64 / (1024.0 * 1024.0)
    );
}

/// Raises the soft file descriptor limit to the hard one.
#[cfg(unix)]
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Windows has no such limit on sockets.
#[cfg(not(unix))]
fn raise_fd_limit() {}

/// The preface and `frames` frames of 1200 bytes (the size of a QUIC
/// Initial), when `preface`.
fn client_bytes(preface: bool, frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if preface {
        out.extend_from_slice(PREFACE);
    }
    let mut datagram = vec![0u8; 1200];
    for (i, b) in datagram.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    // A short-header QUIC packet for no known connection: the endpoint
    // drops it (or answers with a stateless reset).
    datagram[0] = 0x40;
    for _ in 0..frames {
        encode_frame(&datagram, &mut out).expect("1200 bytes fit a frame");
    }
    out
}

/// Opens `n` streams to `server` from `sources` addresses 127.10.x.y, each
/// sending `bytes`.
fn open_clients(
    server: SocketAddr,
    n: usize,
    sources: usize,
    bytes: &[u8],
) -> Vec<std::net::TcpStream> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let s = u16::try_from(i % sources).unwrap_or(0);
        let [hi, lo] = (s + 1).to_be_bytes();
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 10, hi, lo)), 0);
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.bind(&src.into()).expect("bind a loopback source");
        sock.connect(&server.into()).expect("connect");
        let mut stream: std::net::TcpStream = sock.into();
        let _ = stream.write_all(bytes);
        out.push(stream);
    }
    out
}

/// Waits until `done` or 30 s passed.
async fn wait_until(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    raise_fd_limit();
    let node = Node::bind(NodeConfig::new(
        Identity::generate(),
        "127.0.0.1:0".parse().unwrap(),
        AcceptPolicy::AnyKey,
    ))
    .expect("node");
    let socket = node.socket().clone();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).expect("TCP listener");
    let server = listener.local_addr().expect("local address");
    // The bootstrap's caps; a rate that lets each source open its 16 at
    // once; every stream is claimed as soon as it is open (as the bootstrap
    // does after the QUIC handshake), so that all are held.
    let limits = StreamLimits {
        per_ip_per_sec: 1000.0,
        per_ip_burst: 1000.0,
        max_streams: args.streams,
        ..StreamLimits::default()
    };
    let _task = socket.serve_tcp(listener, limits);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "{} streams from {} sources, {} burst frames each",
        args.streams, args.sources, args.burst_frames
    );
    report("idle");

    let hello = client_bytes(true, 1);
    let (n, sources) = (args.streams, args.sources);
    let mut clients = tokio::task::spawn_blocking(move || open_clients(server, n, sources, &hello))
        .await
        .expect("clients");
    wait_until(|| {
        for addr in socket.stream_addrs() {
            socket.claim_stream(addr);
        }
        socket.stream_count() >= args.streams
    })
    .await;
    println!("open: {} streams", socket.stream_count());
    report("all open");

    let frames_in = |s: &AntqSocket| s.stats().stream_frames_in.load(Ordering::Relaxed);
    let expected = frames_in(&socket) + (args.streams * args.burst_frames) as u64;
    let burst = client_bytes(false, args.burst_frames);
    clients = tokio::task::spawn_blocking(move || {
        for c in &mut clients {
            let _ = c.write_all(&burst);
        }
        clients
    })
    .await
    .expect("bursts");
    wait_until(|| frames_in(&socket) >= expected).await;
    report("all open, bursts read");
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("open: {} streams", socket.stream_count());
    report("all open, 5 s quiet");

    drop(clients);
    let started = Instant::now();
    wait_until(|| socket.stream_count() == 0).await;
    println!("closed in {:?}", started.elapsed());
    report("all closed");
    let closed = Instant::now();
    let mut next = Duration::from_secs(10);
    while next <= args.after {
        tokio::time::sleep_until((closed + next).into()).await;
        report(&format!("{} s after closing", next.as_secs()));
        next += Duration::from_secs(10);
    }
    let stats = serde_json::to_string(socket.stats()).unwrap_or_default();
    println!("socket stats: {stats}");
}
