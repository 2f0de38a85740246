//! The TCP transport on loopback: a bootstrap listening on UDP and TCP, a
//! peer `a` reaching it over UDP and a peer `b` whose bootstrap address has
//! no UDP listener (the port is the bootstrap's TCP port), so `b` falls back
//! to TCP after its UDP attempt gets no answer. The two exchange datagrams
//! through the relay: `a` over UDP, `b` over its TCP stream.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::{bootstrap_with, exchange, init_tracing, loopback, overlay_via, wait_for};
use antq::bootstrap::{Bootstrap, BootstrapSettings, Limits, TcpListen};
use antq::identity::{Identity, PeerId};
use antq::node::overlay::{Overlay, PathKind};
use antq::socket::framing::MAX_DATAGRAM;
use antq::socket::Transport;
use antq::tunnel::config::BootstrapAddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An overlay with one peer that reaches the bootstrap at `boot_addr` (its
/// UDP or its TCP address).
fn overlay(identity: &Identity, peer: PeerId, boot: &Bootstrap, boot_addr: SocketAddr) -> Overlay {
    overlay_via(
        identity,
        vec![(peer, None)],
        BootstrapAddr {
            peer: boot.peer_id(),
            addr: boot_addr,
        },
    )
}

/// Opens a TCP stream to `addr`, writes `bytes` and expects the other side
/// to close it within 2 s without answering.
async fn expect_closed(addr: SocketAddr, bytes: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_peer_talks_through_the_relay() {
    init_tracing();
    let boot = bootstrap_with(Limits::default(), None, TcpListen::At(loopback()));
    let udp_addr = boot.local_addr().unwrap();
    let tcp_addr = boot.tcp_local_addr().unwrap();
    assert_ne!(udp_addr.port(), tcp_addr.port());
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, kb.peer_id(), &boot, udp_addr);
    let b = overlay(&kb, ka.peer_id(), &boot, tcp_addr);

    let started = Instant::now();
    wait_for(
        "b's bootstrap link over TCP",
        Duration::from_secs(8),
        || b.bootstrap_transports()[0].1 == Some(Transport::Tcp),
    )
    .await;
    let fallback = started.elapsed();
    assert!(
        fallback >= Duration::from_millis(900),
        "TCP started before the UDP head start: {fallback:?}"
    );
    assert_eq!(a.bootstrap_transports()[0].1, Some(Transport::Udp));
    for (o, peer) in [(&a, kb.peer_id()), (&b, ka.peer_id())] {
        wait_for("relay path", Duration::from_secs(10), || {
            o.status()
                .iter()
                .any(|s| s.public_key == peer.to_string() && s.path == PathKind::Relay)
        })
        .await;
    }
    exchange(&a, &b, 50, 40).await;
    exchange(&b, &a, 50, 40).await;
    // Full-size datagrams cross the stream too.
    let big = a.max_datagram_size(&kb.peer_id()).unwrap().min(1200);
    exchange(&a, &b, 20, big).await;
    exchange(&b, &a, 20, big).await;

    let sb = &b.status()[0];
    assert_eq!(sb.transport, Some(Transport::Tcp), "{sb:?}");
    assert_eq!(sb.remote, Some(tcp_addr), "{sb:?}");
    let sa = &a.status()[0];
    assert_eq!(sa.transport, Some(Transport::Udp), "{sa:?}");
    assert_eq!(sa.remote, Some(udp_addr), "{sa:?}");
    // b is never told a virtual address as its own, so it offers no
    // candidates and nobody punches towards it: it stays relay-only.
    assert_eq!(b.observed_addresses()[0].1, None);
    assert!(boot.candidates_of(&kb.peer_id()).is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.status()[0].path, PathKind::Relay);
    assert_eq!(b.status()[0].path, PathKind::Relay);

    let stats = boot.node().socket().stats();
    // b sent 70 datagrams over its stream, a 70 over UDP: each a frame
    // (a data plane frame, or a QUIC packet), each forwarded.
    assert!(stats.stream_frames_in.load(Ordering::Relaxed) >= 70);
    assert!(stats.forwarded.load(Ordering::Relaxed) >= 140);
    assert_eq!(stats.stream_errors.load(Ordering::Relaxed), 0);
    assert_eq!(boot.node().socket().stream_count(), 1);

    // When b goes away, the bootstrap drops its stream at once (no wait for
    // the QUIC idle timeout).
    b.close().await;
    drop(b);
    wait_for(
        "stream closed at the bootstrap",
        Duration::from_secs(5),
        || boot.node().socket().stream_count() == 0,
    )
    .await;
}

#[tokio::test]
async fn bad_streams_are_closed_and_counted() {
    let boot = bootstrap_with(Limits::default(), None, TcpListen::At(loopback()));
    let tcp_addr = boot.tcp_local_addr().unwrap();
    let stats = boot.node().socket().stats();

    // Not our protocol.
    expect_closed(tcp_addr, b"GET / HTTP/1.1\r\n\r\n").await;

    // Good preface, then an oversize frame.
    let mut bytes = antq::socket::framing::PREFACE.to_vec();
    bytes.extend_from_slice(&u16::try_from(MAX_DATAGRAM + 1).unwrap().to_be_bytes());
    expect_closed(tcp_addr, &bytes).await;

    // A zero-length frame.
    let mut bytes = antq::socket::framing::PREFACE.to_vec();
    bytes.extend_from_slice(&[0, 0]);
    expect_closed(tcp_addr, &bytes).await;

    wait_for("errors counted", Duration::from_secs(2), || {
        stats.stream_errors.load(Ordering::Relaxed) == 3
    })
    .await;
    assert_eq!(boot.node().socket().stream_count(), 0);
}

#[tokio::test]
async fn new_streams_are_rate_limited_per_ip() {
    let boot = Bootstrap::start(BootstrapSettings {
        identity: Identity::generate(),
        listen: loopback(),
        tcp_listen: TcpListen::SameAsUdp,
        observe: antq::bootstrap::ObserveListen::NextPort,
        relay: true,
        allowed_keys: None,
        limits: Limits {
            connections_per_sec_per_ip: 1.0,
            tcp_max_streams: 2,
            ..Limits::default()
        },
    })
    .unwrap();
    // Same port as UDP by default.
    assert_eq!(boot.tcp_local_addr(), Some(boot.local_addr().unwrap()));
    let addr = boot.tcp_local_addr().unwrap();
    let mut open = Vec::new();
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(antq::socket::framing::PREFACE).await.unwrap();
        open.push(s);
    }
    let stats = boot.node().socket().stats();
    wait_for("streams refused", Duration::from_secs(2), || {
        stats.streams_refused.load(Ordering::Relaxed) >= 4
    })
    .await;
    assert!(boot.node().socket().stream_count() <= 2);
}
