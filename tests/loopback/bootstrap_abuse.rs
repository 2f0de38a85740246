//! A bootstrap's relay under abuse, on real loopback sockets: relays need
//! both keys' consent, and a connection moved to a new source address (a
//! spoofed one, or a real NAT rebinding) redirects relay traffic only once
//! the new address answered a challenge.
//!
//! A small UDP proxy stands between a client and the bootstrap. It can
//! switch the client's packets to another upstream socket: with replies
//! forwarded back, that is a NAT rebinding; with replies kept and counted,
//! it is a client spoofing a victim's source address, and the socket is the
//! victim. The root netns test `netns::bootstrap_attack` does the same with
//! raw sockets across namespaces.
//!
//! Run with `--no-capture` to see the measured bytes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{
    bootstrap_with, exchange, init_tracing, loopback, path_of, raw_node, stat, wait_for,
};
use antq::bootstrap::{Bootstrap, Limits, TcpListen};
use antq::identity::Identity;
use antq::nat::PunchConfig;
use antq::node::overlay::{Overlay, OverlayConfig, PathKind};
use antq::node::{Node, NodeConfig, PeerConnection, TransportSettings};
use antq::proto::raw::{encode_relay_header, RelayHeader, RELAY_DATA};
use antq::proto::ControlMessage;
use antq::tls::AcceptPolicy;
use antq::tunnel::config::BootstrapAddr;
use tokio::net::UdpSocket;

/// Bytes and relay frames a socket received.
#[derive(Debug, Default)]
struct Received {
    bytes: AtomicU64,
    datagrams: AtomicU64,
    relay_frames: AtomicU64,
}

impl Received {
    fn count(&self, data: &[u8]) {
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.datagrams.fetch_add(1, Ordering::Relaxed);
        if data.first() == Some(&RELAY_DATA) {
            self.relay_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A UDP proxy from one client to `target`.
struct Proxy {
    /// Where the client sends.
    front: Arc<UdpSocket>,
    /// The socket client packets leave from now.
    upstream: Arc<Mutex<Arc<UdpSocket>>>,
    /// Bytes sent from the current upstream socket.
    sent: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let front = Arc::new(UdpSocket::bind(loopback()).await.unwrap());
        let first = Arc::new(UdpSocket::bind(loopback()).await.unwrap());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let proxy = Proxy {
            front: front.clone(),
            upstream: Arc::new(Mutex::new(first.clone())),
            sent: Arc::default(),
        };
        // Client -> current upstream socket -> target.
        let (up, sent, who) = (proxy.upstream.clone(), proxy.sent.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *who.lock().unwrap() = Some(from);
                let socket = up.lock().unwrap().clone();
                if socket.send_to(&buf[..n], target).await.is_ok() {
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        });
        proxy.reply_path(first, client);
        proxy
    }

    /// Forwards what `socket` receives back to the client.
    fn reply_path(&self, socket: Arc<UdpSocket>, client: Arc<Mutex<Option<SocketAddr>>>) {
        let front = self.front.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                let to = *client.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
    }

    fn addr(&self) -> SocketAddr {
        self.front.local_addr().unwrap()
    }

    fn upstream_addr(&self) -> SocketAddr {
        self.upstream.lock().unwrap().local_addr().unwrap()
    }

    /// A NAT rebinding: client packets leave from a new socket, whose
    /// replies reach the client.
    async fn rebind(&self, client: SocketAddr) -> SocketAddr {
        let socket = Arc::new(UdpSocket::bind(loopback()).await.unwrap());
        self.reply_path(socket.clone(), Arc::new(Mutex::new(Some(client))));
        *self.upstream.lock().unwrap() = socket.clone();
        socket.local_addr().unwrap()
    }

    /// Spoofing: client packets leave from `victim`, whose replies the
    /// client never sees. Returns the bytes sent before the switch.
    fn spoof_from(&self, victim: Arc<UdpSocket>) -> u64 {
        *self.upstream.lock().unwrap() = victim;
        self.sent.swap(0, Ordering::Relaxed)
    }
}

/// A victim: a socket that receives whatever is sent to it and counts it.
async fn victim() -> (Arc<UdpSocket>, Arc<Received>) {
    let socket = Arc::new(UdpSocket::bind(loopback()).await.unwrap());
    let received = Arc::new(Received::default());
    let (s, r) = (socket.clone(), received.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = s.recv_from(&mut buf).await {
            r.count(&buf[..n]);
        }
    });
    (socket, received)
}

async fn connect(node: &Node, boot: &Bootstrap, at: SocketAddr) -> PeerConnection {
    node.connect(boot.peer_id(), &[at])
        .await
        .expect("connect to the bootstrap")
}

/// Waits for a RELAY_GRANT naming `peer` on `conn`; returns its channel.
async fn grant_for(conn: &PeerConnection, peer: &Identity) -> Option<u32> {
    let want = *peer.peer_id().as_bytes();
    tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(msg) = conn.control().recv().await {
            if let ControlMessage::RelayGrant { peer, channel } = msg {
                if peer == want {
                    return Some(channel);
                }
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

fn relay_frame(channel: u32, len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; RelayHeader::LEN];
    let header: &mut [u8; RelayHeader::LEN] = (&mut frame[..]).try_into().unwrap();
    encode_relay_header(channel, header);
    frame.resize(len, 0xc3);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_needs_both_keys_to_ask() {
    let boot = bootstrap_with(Limits::default(), None, TcpListen::Off);
    let at = boot.local_addr().unwrap();
    let (kt, kv) = (Identity::generate(), Identity::generate());
    let (thrower, target) = (raw_node(&kt), raw_node(&kv));
    let tconn = connect(&thrower, &boot, at).await;
    let vconn = connect(&target, &boot, at).await;
    wait_for("both registered", Duration::from_secs(5), || {
        boot.connected_peers().len() == 2
    })
    .await;

    // A throwaway key that only knows the target's public key asks.
    tconn
        .control()
        .send(ControlMessage::RelayRequest {
            peer: *kv.peer_id().as_bytes(),
        })
        .await
        .unwrap();
    // The target is told, and nothing is granted to anyone.
    let told = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match vconn.control().recv().await {
                Some(ControlMessage::RelayRequest { peer }) => return peer,
                Some(ControlMessage::RelayGrant { .. }) => panic!("granted without consent"),
                Some(_) => {}
                None => panic!("control stream ended"),
            }
        }
    })
    .await
    .expect("the target hears of the request");
    assert_eq!(told, *kt.peer_id().as_bytes());
    assert_eq!(boot.held().relays, 0);
    assert_eq!(boot.held().relay_requests_waiting, 1);

    // The thrower pumps relay frames on every channel it could guess: none
    // reaches the target.
    let before = stat(&boot.node().socket().stats().relay_unknown);
    for channel in 0..2000u32 {
        thrower
            .socket()
            .send_raw(at, &relay_frame(channel, 1200))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = boot.node().socket().stats();
    println!(
        "no consent: 2000 relay frames in, {} forwarded, {} dropped as unknown",
        stat(&s.forwarded),
        stat(&s.relay_unknown) - before
    );
    assert_eq!(stat(&s.forwarded), 0);
    assert_eq!(stat(&target.socket().stats().relay_unknown), 0);

    // Once the target asks too, both are granted.
    vconn
        .control()
        .send(ControlMessage::RelayRequest {
            peer: *kt.peer_id().as_bytes(),
        })
        .await
        .unwrap();
    assert!(grant_for(&vconn, &kt).await.is_some());
    assert!(grant_for(&tconn, &kv).await.is_some());
    assert_eq!(boot.held().relays, 1);
    assert_eq!(boot.held().relay_requests_waiting, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_move_does_not_redirect_relay_traffic() {
    let boot = bootstrap_with(Limits::default(), None, TcpListen::Off);
    let at = boot.local_addr().unwrap();
    let (ka, kc) = (Identity::generate(), Identity::generate());
    let (attacker, conspirator) = (raw_node(&ka), raw_node(&kc));
    let proxy = Proxy::start(at).await;
    let aconn = connect(&attacker, &boot, proxy.addr()).await;
    let cconn = connect(&conspirator, &boot, at).await;
    wait_for("both registered", Duration::from_secs(5), || {
        boot.connected_peers().len() == 2
    })
    .await;
    // A consenting pair: both keys are the attacker's.
    for (conn, other) in [(&aconn, &kc), (&cconn, &ka)] {
        conn.control()
            .send(ControlMessage::RelayRequest {
                peer: *other.peer_id().as_bytes(),
            })
            .await
            .unwrap();
    }
    let channel_c = grant_for(&cconn, &ka).await.expect("relay granted");
    let home = proxy.upstream_addr();
    assert_eq!(boot.address_of(&ka.peer_id()), Some(home));

    // The conspirator pumps relay data toward the attacker's side the whole
    // time, at up to the relay's limit.
    let pump = {
        let c = conspirator.clone();
        tokio::spawn(async move {
            let frame = relay_frame(channel_c, 1200);
            for _ in 0..4000 {
                let _ = c.socket().send_raw(at, &frame).await;
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Now the attacker's QUIC packets carry the victim's source address.
    let (victim_socket, victim) = victim().await;
    proxy.spoof_from(victim_socket);
    for i in 0..40u64 {
        let _ = aconn.control().try_send(ControlMessage::AddAddress {
            sequence: i % 8,
            addr: "198.51.100.1:1".parse().unwrap(),
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pump.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spoofed = stat(&proxy.sent);
    let (to_victim, relay_frames) = (stat(&victim.bytes), stat(&victim.relay_frames));
    let s = boot.stats();
    println!(
        "spoofed move: {spoofed} bytes sent from the victim's address, {to_victim} bytes \
         ({} datagrams, {relay_frames} relay frames) to the victim, factor {:.2}; \
         challenges {}, followed {}, forwarded {} frames",
        stat(&victim.datagrams),
        to_victim as f64 / spoofed.max(1) as f64,
        stat(&boot.node().socket().stats().challenges_sent),
        stat(&s.migrations_followed),
        stat(&boot.node().socket().stats().forwarded),
    );
    assert!(spoofed > 0, "the attack sent nothing");
    assert_eq!(relay_frames, 0, "relay traffic reached the victim");
    assert!(
        to_victim <= 3 * spoofed,
        "{to_victim} bytes to the victim for {spoofed} sent"
    );
    assert!(to_victim <= 64 * 1024, "{to_victim} bytes to the victim");
    assert!(stat(&boot.node().socket().stats().challenges_sent) >= 1);
    assert_eq!(stat(&s.migrations_followed), 0);
    assert_eq!(boot.address_of(&ka.peer_id()), Some(home));
}

/// A relay-only overlay (no loopback candidates, so no direct path) whose
/// bootstrap is reached at `boot_at`.
fn relay_only_overlay(
    identity: &Identity,
    peer: &Identity,
    boot: &Bootstrap,
    boot_at: SocketAddr,
) -> Overlay {
    Overlay::start(OverlayConfig {
        identity: identity.clone(),
        bind: loopback(),
        peers: vec![(peer.peer_id(), None)],
        bootstraps: vec![BootstrapAddr {
            peer: boot.peer_id(),
            addr: boot_at,
        }],
        exclude_ips: vec![],
        transport: TransportSettings::default(),
        punch: PunchConfig::default(),
        loopback_only: true,
        port_mapping: false,
        membership: None,
    })
    .unwrap()
}

/// Sends a datagram from `a` to `b` every 100 ms until one arrives; returns
/// how long that took.
async fn wait_for_datagram(a: &Overlay, b: &Overlay, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let _ = a.send(&b.peer_id(), bytes::Bytes::from_static(b"probe"));
        if let Ok(Some((from, _))) =
            tokio::time::timeout(Duration::from_millis(100), b.recv()).await
        {
            if from == a.peer_id() {
                // Drain what else arrived.
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(50), b.recv()).await
                {
                }
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < within,
            "no datagram a -> b within {within:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_move_is_followed_once_proven() {
    init_tracing();
    let boot = bootstrap_with(Limits::default(), None, TcpListen::Off);
    let at = boot.local_addr().unwrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let proxy = Proxy::start(at).await;
    let a = relay_only_overlay(&ka, &kb, &boot, proxy.addr());
    let b = relay_only_overlay(&kb, &ka, &boot, at);
    wait_for("a relay path both ways", Duration::from_secs(5), || {
        path_of(&a, kb.peer_id()) == PathKind::Relay && path_of(&b, ka.peer_id()) == PathKind::Relay
    })
    .await;
    exchange(&a, &b, 10, 1000).await;
    exchange(&b, &a, 10, 1000).await;

    // a's NAT gives it a new public port; a notices a network change.
    let moved_to = proxy.rebind(a.local_addr().unwrap()).await;
    a.node().network_changed();
    let took = wait_for("the bootstrap follows a", Duration::from_secs(3), || {
        boot.address_of(&ka.peer_id()) == Some(moved_to)
    })
    .await;
    let s = boot.stats();
    println!(
        "real move: followed after {:.0} ms, challenges {}, followed {}",
        took.as_secs_f64() * 1e3,
        stat(&boot.node().socket().stats().challenges_sent),
        stat(&s.migrations_followed)
    );
    assert_eq!(stat(&s.migrations_followed), 1);
    // The relay path carries on from the new address (a datagram sent
    // while the move was not yet proven may be lost).
    let recovered = wait_for_datagram(&a, &b, Duration::from_secs(3)).await;
    println!(
        "relay path carries datagrams again {:.0} ms after the proof",
        recovered.as_secs_f64() * 1e3
    );
    exchange(&a, &b, 10, 1000).await;
    exchange(&b, &a, 10, 1000).await;
    assert_eq!(path_of(&a, kb.peer_id()), PathKind::Relay);
}

/// A bare node bound to `ip` (loopback has all of 127.0.0.0/8: each is a
/// source of its own).
fn node_at(ip: &str) -> Node {
    Node::bind(NodeConfig::new(
        Identity::generate(),
        format!("{ip}:0").parse().unwrap(),
        AcceptPolicy::AnyKey,
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_source_and_fairly_in_total() {
    let limits = Limits {
        max_connections_per_ip: 3,
        max_peers: 4,
        ..Limits::default()
    };
    let boot = bootstrap_with(limits, None, TcpListen::Off);
    let at = boot.local_addr().unwrap();
    // One source takes its three places; a fourth is refused.
    let hog: Vec<Node> = (0..4).map(|_| node_at("127.0.0.2")).collect();
    let mut held = Vec::new();
    for n in &hog[..3] {
        held.push(connect(n, &boot, at).await);
    }
    let refused = hog[3].connect(boot.peer_id(), &[at]).await;
    assert!(refused.is_err(), "a fourth connection from one source");
    // Another source fills the last place.
    let other = node_at("127.0.0.3");
    let _o = connect(&other, &boot, at).await;
    // Full. A third source still gets in: the largest holder (three
    // places) gives up its newest connection.
    let third = node_at("127.0.0.4");
    let _t = connect(&third, &boot, at).await;
    let s = boot.node().stats();
    wait_for(
        "the hog's newest connection closes",
        Duration::from_secs(3),
        || held[2].quinn().close_reason().is_some(),
    )
    .await;
    assert!(held[0].quinn().close_reason().is_none());
    println!(
        "per source: refused {}, total: refused {}, evicted {}",
        stat(&s.refused_per_source),
        stat(&s.refused_total),
        stat(&s.evicted)
    );
    assert_eq!(stat(&s.refused_per_source), 1);
    assert_eq!(stat(&s.evicted), 1);
    // Now nobody holds two more than the hog would: it gets nothing.
    let again = node_at("127.0.0.2");
    assert!(again.connect(boot.peer_id(), &[at]).await.is_err());
}
