//! Tooling of the bootstrap attack tests ([`crate::bootstrap_attack`], root
//! only): a hostile client in-process, inside a lab namespace; source
//! address spoofing with a raw socket; relay pumps; TCP stream holders;
//! byte counters (nftables), the bootstrap's metrics and its RSS.
//!
//! Every socket an attacker creates lives in a namespace the test attached
//! to the lab's bridge ([`spawn_in_netns`]), so all its traffic stays inside
//! the lab.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use antq::identity::{Identity, PeerId};
use antq::node::{Node, NodeConfig, PeerConnection};
use antq::proto::raw::{encode_relay_header, RelayHeader};
use antq::proto::ControlMessage;
use antq::socket::framing::{encode_frame, PREFACE};
use antq::tls::AcceptPolicy;
use antq_platform::rss_kib;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, UdpSocket};

use crate::common::describe;
use crate::mesh::Mesh;

/// Raises this process's open-file limit to `want`, or to its hard limit
/// if it may not go further (the bootstrap, started from it, inherits it:
/// 4096 TCP streams need more than the usual 1024).
pub fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur >= want {
            return;
        }
        let hard = lim.rlim_max;
        lim.rlim_max = hard.max(want);
        lim.rlim_cur = want;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            // No CAP_SYS_RESOURCE: as far as the hard limit goes.
            lim.rlim_max = hard;
            lim.rlim_cur = hard.min(want);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Runs `f` on a new thread inside network namespace `ns` (every socket it
/// creates lives there), on a current-thread tokio runtime: one core at
/// most, so the attacker leaves the other to the system under attack.
pub fn spawn_in_netns<F, Fut, T>(ns: &str, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(f())
        })
        .expect("spawn a thread")
}

/// The bootstrap under attack.
#[derive(Clone, Copy, Debug)]
pub struct Boot {
    /// Its key.
    pub id: PeerId,
    /// Its UDP (and TCP) address.
    pub addr: SocketAddr,
    /// Its IPv6 address (the bootstrap listens dual-stack).
    pub addr6: SocketAddr,
}

impl Boot {
    /// The bootstrap of `mesh` (`mesh.sh up --boot-listen ::`).
    pub fn of(mesh: &Mesh) -> Boot {
        Boot {
            id: mesh.public_key("boot").parse().expect("bootstrap key"),
            addr: "198.18.0.10:9000".parse().unwrap(),
            addr6: "[2001:db8:ff::10]:9000".parse().unwrap(),
        }
    }
}

/// A node of the attacker's (any key accepted, 5 s connect timeout), bound
/// to `bind`, with a fresh key.
pub fn hostile_node(bind: SocketAddr) -> std::io::Result<Node> {
    let mut config = NodeConfig::new(Identity::generate(), bind, AcceptPolicy::AnyKey);
    config.transport.connect_timeout = Duration::from_secs(5);
    Node::bind(config).map_err(std::io::Error::other)
}

/// An attacker's authenticated connection to the bootstrap. Its control
/// channel is drained by a task that records every `RELAY_GRANT`.
pub struct Hostile {
    /// The node (its socket sends the raw frames).
    pub node: Node,
    /// The connection to the bootstrap.
    pub conn: PeerConnection,
    /// `RELAY_GRANT`s received: peer key -> channel.
    pub grants: Arc<Mutex<HashMap<PeerId, u32>>>,
}

impl Hostile {
    /// Connects `node` to the bootstrap at `to` and starts draining its
    /// control channel.
    pub async fn connect(node: Node, boot_id: PeerId, to: SocketAddr) -> Result<Hostile, String> {
        let conn = node
            .connect(boot_id, &[to])
            .await
            .map_err(|e| e.to_string())?;
        let grants: Arc<Mutex<HashMap<PeerId, u32>>> = Arc::default();
        {
            let (conn, grants) = (conn.clone(), grants.clone());
            tokio::spawn(async move {
                while let Some(msg) = conn.control().recv().await {
                    if let ControlMessage::RelayGrant { peer, channel } = msg {
                        if let Ok(peer) = PeerId::from_bytes(peer) {
                            grants
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(peer, channel);
                        }
                    }
                }
            });
        }
        Ok(Hostile { node, conn, grants })
    }

    /// This connection's key.
    pub fn id(&self) -> PeerId {
        self.node.peer_id()
    }

    /// Whether the connection is still open.
    pub fn alive(&self) -> bool {
        self.conn.quinn().close_reason().is_none()
    }

    /// Waits up to `wait` for a grant naming `peer`.
    pub async fn grant_for(&self, peer: PeerId, wait: Duration) -> Option<u32> {
        let deadline = Instant::now() + wait;
        loop {
            let grant = self
                .grants
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&peer)
                .copied();
            if grant.is_some() || Instant::now() >= deadline {
                return grant;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the bootstrap for a relay to `peer`.
    pub async fn relay_request(&self, peer: PeerId) -> bool {
        self.conn
            .control()
            .send(ControlMessage::RelayRequest {
                peer: *peer.as_bytes(),
            })
            .await
            .is_ok()
    }
}

/// Sends `RELAY_DATA` frames of 1200 bytes on `channel` from `node`'s
/// socket to `to` at `bytes_per_sec` for `duration`; returns the bytes sent
/// (UDP payload).
pub async fn pump(
    node: &Node,
    to: SocketAddr,
    channel: u32,
    bytes_per_sec: f64,
    duration: Duration,
) -> u64 {
    const FRAME: usize = 1200;
    const TICK: Duration = Duration::from_millis(5);
    let mut frame = vec![0x5au8; FRAME];
    let header: &mut [u8; RelayHeader::LEN] = frame.first_chunk_mut().unwrap();
    encode_relay_header(channel, header);
    let per_tick = bytes_per_sec * TICK.as_secs_f64() / FRAME as f64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = tokio::time::Instant::now() + duration;
    let (mut credit, mut sent) = (0f64, 0u64);
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        credit += per_tick;
        while credit >= 1.0 {
            credit -= 1.0;
            if node.socket().try_send_raw(to, &frame).is_ok() {
                sent += FRAME as u64;
            }
        }
    }
    sent
}

/// The one's-complement sum of `data` (16-bit words), folded.
fn ones_complement(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// An IPv4 + UDP packet from `src` to `dst` carrying `payload`, checksums
/// filled in: what a raw socket with `IP_HDRINCL` sends as is, whatever
/// its own address.
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]); // id 0, DF, TTL 64, UDP
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let ip_sum = !(ones_complement(0, &p[..20]) as u16);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let sum = ones_complement(ones_complement(0, &pseudo), &p[20..]);
    let udp_sum = match !(sum as u16) {
        0 => 0xffff,
        s => s,
    };
    p[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

/// A UDP proxy between a local QUIC client and the bootstrap: the client
/// dials [`SpoofProxy::front`]; its datagrams go to the bootstrap from the
/// proxy's `back` socket, or, while spoofing is on, from a raw socket with
/// `spoof_as` as their source address. What the bootstrap sends back to
/// `back` goes to the client (QUIC only; relay frames are counted and
/// dropped).
pub struct SpoofProxy {
    /// The address the client dials.
    pub front: SocketAddr,
    spoof: Arc<AtomicBool>,
    /// `RELAY_DATA` frames that reached the proxy's real address.
    pub relay_frames_in: Arc<AtomicU64>,
    /// Datagrams sent with the spoofed source (their bytes: the `spoofed`
    /// nftables counter in the attacker's namespace).
    pub spoofed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SpoofProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SpoofProxy {
    /// Starts the proxy; `back` is bound to `back_bind`.
    pub async fn start(
        back_bind: SocketAddrV4,
        server: SocketAddrV4,
        spoof_as: SocketAddrV4,
    ) -> std::io::Result<SpoofProxy> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind(back_bind).await?;
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::from(libc::SOCK_RAW),
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )?;
        let front_addr = front.local_addr()?;
        let spoof = Arc::new(AtomicBool::new(false));
        let relay_frames_in = Arc::new(AtomicU64::new(0));
        let spoofed = Arc::new(AtomicU64::new(0));
        let task = {
            let (spoof, relay_in) = (spoof.clone(), relay_frames_in.clone());
            let spoofed = spoofed.clone();
            let raw_dst = socket2::SockAddr::from(SocketAddr::V4(server));
            tokio::spawn(async move {
                let mut client: Option<SocketAddr> = None;
                let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
                loop {
                    tokio::select! {
                        r = front.recv_from(&mut up) => {
                            let Ok((n, from)) = r else { continue };
                            client = Some(from);
                            if spoof.load(Ordering::Relaxed) {
                                let packet = ipv4_udp(spoof_as, server, &up[..n]);
                                if raw.send_to(&packet, &raw_dst).is_ok() {
                                    spoofed.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                let _ = back.send_to(&up[..n], SocketAddr::V4(server)).await;
                            }
                        }
                        r = back.recv_from(&mut down) => {
                            let Ok((n, _)) = r else { continue };
                            if n > 0 && down[0] & 0xc0 == 0 {
                                relay_in.fetch_add(1, Ordering::Relaxed);
                            } else if let Some(c) = client {
                                let _ = front.send_to(&down[..n], c).await;
                            }
                        }
                    }
                }
            })
        };
        Ok(SpoofProxy {
            front: front_addr,
            spoof,
            relay_frames_in,
            spoofed,
            task,
        })
    }

    /// Turns spoofing on or off.
    pub fn set_spoofing(&self, on: bool) {
        self.spoof.store(on, Ordering::Relaxed);
    }
}

/// Counters of a [`TcpHold`].
#[derive(Debug, Default)]
pub struct TcpHoldStats {
    /// Streams open now (connected, not closed by the server).
    pub open: AtomicUsize,
    /// Most streams open at once.
    pub peak: AtomicUsize,
    /// Streams connected in total.
    pub opened: AtomicU64,
    /// Streams the server closed.
    pub closed_by_server: AtomicU64,
    /// Connection attempts that failed or timed out.
    pub connect_failed: AtomicU64,
}

/// TCP streams to the bootstrap held open from many source addresses, the
/// way an attacker keeps TCP slots: the preface and one small frame, then
/// another small frame every 20 s (the server's idle timeout is 60 s); a
/// stream the server closes is opened again, each source at most 20 a
/// second (the default per-IP rate), and after a stream was refused (closed
/// within 2 s) not before a second has passed.
pub struct TcpHold {
    /// Counters.
    pub stats: Arc<TcpHoldStats>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl TcpHold {
    /// Starts holding `per_source` streams to `server` from each source IP.
    /// Must run inside the attacker's runtime.
    pub fn start(sources: &[IpAddr], per_source: usize, server: SocketAddr) -> TcpHold {
        let stats = Arc::new(TcpHoldStats::default());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut frame = PREFACE.to_vec();
        // A raw frame of an unknown type: dropped by the server, nothing
        // answered; it only shows the stream is alive.
        encode_frame(&[0x00], &mut frame).unwrap();
        let frame: Arc<[u8]> = frame.into();
        for &src in sources {
            let (stats, mut stop_rx, frame) = (stats.clone(), stop_rx.clone(), frame.clone());
            tokio::spawn(async move {
                let mine = Arc::new(AtomicUsize::new(0));
                let refused = Arc::new(AtomicBool::new(false));
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    let wait = if refused.swap(false, Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_secs(1))
                    } else {
                        tokio::time::sleep(Duration::ZERO)
                    };
                    tokio::select! {
                        _ = stop_rx.changed() => return,
                        _ = async { wait.await; tick.tick().await } => {}
                    }
                    if mine.load(Ordering::Relaxed) >= per_source {
                        continue;
                    }
                    let stream = async {
                        let socket = match src {
                            IpAddr::V4(_) => TcpSocket::new_v4(),
                            IpAddr::V6(_) => TcpSocket::new_v6(),
                        }?;
                        socket.bind(SocketAddr::new(src, 0))?;
                        socket.connect(server).await
                    };
                    let mut stream =
                        match tokio::time::timeout(Duration::from_secs(2), stream).await {
                            Ok(Ok(s)) => s,
                            _ => {
                                stats.connect_failed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                    if stream.write_all(&frame).await.is_err() {
                        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                        refused.store(true, Ordering::Relaxed);
                        continue;
                    }
                    let opened_at = Instant::now();
                    stats.opened.fetch_add(1, Ordering::Relaxed);
                    let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                    stats.peak.fetch_max(open, Ordering::Relaxed);
                    mine.fetch_add(1, Ordering::Relaxed);
                    let (stats, mine, refused) = (stats.clone(), mine.clone(), refused.clone());
                    let (mut stop_rx, frame) = (stop_rx.clone(), frame.clone());
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        let keepalive = &frame[PREFACE.len()..];
                        loop {
                            tokio::select! {
                                _ = stop_rx.changed() => break,
                                r = stream.read(&mut buf) => match r {
                                    Ok(n) if n > 0 => {}
                                    _ => {
                                        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                                        if opened_at.elapsed() < Duration::from_secs(2) {
                                            refused.store(true, Ordering::Relaxed);
                                        }
                                        break;
                                    }
                                },
                                _ = tokio::time::sleep(Duration::from_secs(20)) => {
                                    if stream.write_all(keepalive).await.is_err() {
                                        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                                        break;
                                    }
                                }
                            }
                        }
                        stats.open.fetch_sub(1, Ordering::Relaxed);
                        mine.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            });
        }
        TcpHold { stats, stop }
    }

    /// Closes every stream and stops opening new ones.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for TcpHold {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a handshake flood got.
#[derive(Debug, Default)]
pub struct FloodStats {
    /// Handshakes attempted.
    pub attempted: AtomicU64,
    /// Handshakes completed (the bootstrap's HELLO read).
    pub completed: AtomicU64,
    /// Handshakes that failed or timed out.
    pub failed: AtomicU64,
}

/// `count` handshakes with fresh keys to `to`, spread evenly over `spread`,
/// source addresses taken in turn from `sources`; the connections are kept
/// (held open) in `held`. Returns when every attempt has ended.
pub async fn handshake_flood(
    sources: &[IpAddr],
    count: usize,
    spread: Duration,
    boot_id: PeerId,
    to: SocketAddr,
    held: Arc<Mutex<Vec<Hostile>>>,
) -> Arc<FloodStats> {
    let stats = Arc::new(FloodStats::default());
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..count {
        let at = start + spread.mul_f64(i as f64 / count as f64);
        tokio::time::sleep_until(at).await;
        let src = sources[i % sources.len()];
        let (stats, held) = (stats.clone(), held.clone());
        stats.attempted.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let result = match hostile_node(SocketAddr::new(src, 0)) {
                Ok(node) => Hostile::connect(node, boot_id, to).await,
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(h) => {
                    stats.completed.fetch_add(1, Ordering::Relaxed);
                    held.lock().unwrap_or_else(PoisonError::into_inner).push(h);
                }
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    stats
}

/// How many of `held` are still open.
pub fn alive(held: &Mutex<Vec<Hostile>>) -> usize {
    held.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|h| h.alive())
        .count()
}

/// Times a fresh client with a fresh key connecting to the bootstrap, over
/// UDP and over TCP, from namespace `ns`; `None` when it did not connect
/// within 5 s.
#[derive(Debug, Clone)]
pub struct LegitConnect {
    /// Time to an authenticated connection over UDP.
    pub udp: Option<Duration>,
    /// Time to an authenticated connection over TCP (stream, then QUIC).
    pub tcp: Option<Duration>,
    /// Time for two fresh keys that ask for each other to both get a relay
    /// grant (over UDP).
    pub relay: Option<Duration>,
    /// Why an attempt failed.
    pub errors: Vec<String>,
}

impl LegitConnect {
    /// Runs both attempts (one after the other) from a fresh thread in `ns`.
    pub fn probe(ns: &str, boot: Boot) -> LegitConnect {
        spawn_in_netns(ns, move || async move {
            let mut errors = Vec::new();
            let limit = Duration::from_secs(5);
            let udp = async {
                let node = hostile_node("0.0.0.0:0".parse().unwrap()).map_err(|e| e.to_string())?;
                let start = Instant::now();
                let conn = tokio::time::timeout(limit, node.connect(boot.id, &[boot.addr]))
                    .await
                    .map_err(|_| "timeout".to_owned())?
                    .map_err(|e| e.to_string())?;
                let took = start.elapsed();
                conn.close("probe done");
                Ok::<_, String>(took)
            }
            .await;
            let tcp = async {
                let node = hostile_node("0.0.0.0:0".parse().unwrap()).map_err(|e| e.to_string())?;
                let start = Instant::now();
                let attempt = async {
                    let path = node
                        .socket()
                        .connect_stream(boot.addr, limit)
                        .await
                        .map_err(|e| e.to_string())?;
                    node.connect(boot.id, &[path])
                        .await
                        .map_err(|e| e.to_string())
                };
                let conn = tokio::time::timeout(limit, attempt)
                    .await
                    .map_err(|_| "timeout".to_owned())??;
                let took = start.elapsed();
                conn.close("probe done");
                tokio::time::sleep(Duration::from_millis(50)).await;
                node.socket().close_all_streams();
                Ok::<_, String>(took)
            }
            .await;
            let relay = async {
                let mut pair = Vec::new();
                for _ in 0..2 {
                    let node =
                        hostile_node("0.0.0.0:0".parse().unwrap()).map_err(|e| e.to_string())?;
                    let conn =
                        tokio::time::timeout(limit, Hostile::connect(node, boot.id, boot.addr))
                            .await
                            .map_err(|_| "timeout".to_owned())??;
                    pair.push(conn);
                }
                let (x, y) = (&pair[0], &pair[1]);
                // Both ask, and ask again every 500 ms like a real peer (a
                // request that reaches the bootstrap before it has
                // registered the other key is refused, not held).
                let start = Instant::now();
                let got = loop {
                    x.relay_request(y.id()).await;
                    y.relay_request(x.id()).await;
                    let wait = Duration::from_millis(500);
                    let got = (
                        x.grant_for(y.id(), wait).await,
                        y.grant_for(x.id(), wait).await,
                    );
                    if (got.0.is_some() && got.1.is_some()) || start.elapsed() >= limit {
                        break got;
                    }
                };
                let took = start.elapsed();
                for h in &pair {
                    h.conn.close("probe done");
                }
                match got {
                    (Some(_), Some(_)) => Ok::<_, String>(took),
                    _ => Err(format!("no relay grant to both within {limit:?}")),
                }
            }
            .await;
            let udp = udp.map_err(|e| errors.push(format!("udp: {e}"))).ok();
            let tcp = tcp.map_err(|e| errors.push(format!("tcp: {e}"))).ok();
            let relay = relay.map_err(|e| errors.push(format!("relay: {e}"))).ok();
            LegitConnect {
                udp,
                tcp,
                relay,
                errors,
            }
        })
        .join()
        .expect("legit client thread")
    }
}

/// Runs `nft -f -` with `script` in `host`'s namespace; panics on failure.
pub fn nft(mesh: &Mesh, host: &str, script: &str) {
    let mut child = mesh
        .command(host, &["nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft in {host}: {}\n{script}",
        describe(&out)
    );
}

/// Bytes counted so far by named counter `name` of table `inet TABLE` in
/// `host`'s namespace.
pub fn counter_bytes(mesh: &Mesh, host: &str, table: &str, name: &str) -> u64 {
    let out = mesh.exec(host, &["nft", "list", "counter", "inet", table, name]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "bytes" {
            if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    panic!("no counter {table}/{name} in {host}: {}", describe(&out));
}

/// The bootstrap's Prometheus metrics, `series -> value` (a series is the
/// name with its labels, as printed).
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    /// Reads them (`curl` in the bootstrap's namespace, port 9901).
    pub fn read(mesh: &Mesh) -> Metrics {
        let out = mesh.exec(
            "boot",
            &[
                "curl",
                "-s",
                "--max-time",
                "3",
                "http://127.0.0.1:9901/metrics",
            ],
        );
        Metrics(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The value of `series` (0 if absent).
    pub fn get(&self, series: &str) -> f64 {
        self.find(series).unwrap_or(0.0)
    }

    /// The value of `series`, if it is there.
    pub fn find(&self, series: &str) -> Option<f64> {
        self.0.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
    }

    /// Every series whose name starts with `prefix`, `name value` per line
    /// (names may change with the fix: read them by prefix).
    pub fn dump(&self, prefix: &str) -> String {
        self.0
            .iter()
            .filter(|(s, _)| s.starts_with(prefix))
            .map(|(s, v)| format!("  {s} {v}\n"))
            .collect()
    }

    /// Changes from `before` to `self`, for series starting with `prefix`
    /// (only those that changed).
    pub fn delta(&self, before: &Metrics, prefix: &str) -> String {
        self.0
            .iter()
            .filter(|(s, _)| s.starts_with(prefix))
            .filter_map(|(s, v)| {
                let old = before.get(s);
                (*v != old).then(|| format!("  {s} {old} -> {v}\n"))
            })
            .collect()
    }
}

/// Samples a process's RSS every 200 ms on a thread of its own.
pub struct RssMonitor {
    peak: Arc<AtomicU64>,
    overall: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
}

impl RssMonitor {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssMonitor {
        let now = rss_kib(pid).unwrap_or(0);
        let peak = Arc::new(AtomicU64::new(now));
        let overall = Arc::new(AtomicU64::new(now));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, overall, stop) = (peak.clone(), overall.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                        overall.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        RssMonitor {
            peak,
            overall,
            stop,
            thread: Some(thread),
            pid,
        }
    }

    /// RSS now, KiB.
    pub fn now(&self) -> u64 {
        rss_kib(self.pid).unwrap_or(0)
    }

    /// The peak since the last call (or the start), KiB; starts a new
    /// period.
    pub fn take_peak(&self) -> u64 {
        let now = self.now();
        self.peak.swap(now, Ordering::Relaxed).max(now)
    }

    /// The peak since the start, KiB.
    pub fn overall_peak(&self) -> u64 {
        self.overall.load(Ordering::Relaxed).max(self.now())
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One line of the closing table: what an attack cost and what it got.
#[derive(Debug, Default, Clone)]
pub struct Row {
    /// Which attack (and phase).
    pub attack: String,
    /// Bytes that left the attacker's namespace (IP packets).
    pub attacker_bytes: u64,
    /// Of those, bytes with a spoofed source (attack 1).
    pub spoofed_bytes: Option<u64>,
    /// Bytes from the bootstrap that reached the victim (IP packets).
    pub victim_bytes: Option<u64>,
    /// Peak RSS of the bootstrap during the attack, KiB.
    pub peak_rss_kib: u64,
    /// Relay allocations at the bootstrap at the end of the attack (`None`:
    /// the metric is missing).
    pub relay_allocations: Option<u64>,
    /// Handshakes: what the attacker got accepted and held.
    pub accepted: String,
    /// Time for a fresh legitimate client to connect over UDP / TCP.
    pub legit: Option<LegitConnect>,
    /// Longest gap of the ping stream over the direct / relayed pair.
    pub gap_direct: Duration,
    /// Longest gap of the relayed ping stream.
    pub gap_relayed: Duration,
    /// Anything else worth printing.
    pub notes: String,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("FAILED".to_owned(), |d| {
        format!("{:.0}", d.as_secs_f64() * 1e3)
    })
}

impl Row {
    /// Victim bytes / attacker bytes.
    pub fn amplification(&self) -> Option<f64> {
        self.victim_bytes
            .map(|v| v as f64 / self.attacker_bytes.max(1) as f64)
    }

    /// The header of [`Row::line`].
    pub fn header() -> String {
        "ATTACK-ROW | attack | attacker bytes (spoofed) | bytes to victim | amplification | \
         peak RSS MiB | relay allocations | handshakes | legit connect udp/tcp/relay ms | \
         ping max gap direct/relayed ms | notes"
            .to_owned()
    }

    /// The row as one line.
    pub fn line(&self) -> String {
        let spoofed = self
            .spoofed_bytes
            .map_or(String::new(), |s| format!(" ({s} spoofed)"));
        let victim = self.victim_bytes.map_or("-".to_owned(), |v| v.to_string());
        let amp = match (self.amplification(), self.spoofed_bytes) {
            (Some(a), Some(s)) => format!(
                "{a:.2} (x{:.0} of spoofed)",
                self.victim_bytes.unwrap_or(0) as f64 / s.max(1) as f64
            ),
            (Some(a), None) => format!("{a:.2}"),
            (None, _) => "-".to_owned(),
        };
        let legit = self.legit.as_ref().map_or("-".to_owned(), |l| {
            format!("{}/{}/{}", ms(l.udp), ms(l.tcp), ms(l.relay))
        });
        format!(
            "ATTACK-ROW | {} | {}{spoofed} | {victim} | {amp} | {:.1} | {} | {} | {legit} | {:.0}/{:.0} | {}",
            self.attack,
            self.attacker_bytes,
            self.peak_rss_kib as f64 / 1024.0,
            self.relay_allocations
                .map_or("metric missing".to_owned(), |n| n.to_string()),
            if self.accepted.is_empty() { "-" } else { &self.accepted },
            self.gap_direct.as_secs_f64() * 1e3,
            self.gap_relayed.as_secs_f64() * 1e3,
            self.notes
        )
    }
}

/// `n` consecutive IPv4 addresses from `first`.
pub fn ipv4_range(first: Ipv4Addr, n: u32) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(first) + i)))
        .collect()
}
