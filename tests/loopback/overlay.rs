//! The overlay on loopback: two peers and a bootstrap. They connect through
//! the relay first, then directly after hole punching (trivial on loopback),
//! and exchange datagrams; a peer whose key is not allowed gets nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{bootstrap, exchange_within, init_tracing, overlay};
use antq::identity::{Identity, PeerId};
use antq::node::overlay::{Overlay, PathKind};
use bytes::Bytes;

async fn wait_for_path(o: &Overlay, peer: PeerId, path: PathKind, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = o.status();
        let s = status
            .iter()
            .find(|s| s.public_key == peer.to_string())
            .unwrap();
        if s.path == path {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "no {path:?} path to {peer} within {within:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_first_then_direct() {
    init_tracing();
    let boot = bootstrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, &[kb.peer_id()], &boot);
    let b = overlay(&kb, &[ka.peer_id()], &boot);

    // Something connects fast: relay (or direct if punching won the race).
    let start = Instant::now();
    loop {
        let s = &a.status()[0];
        if s.path != PathKind::None {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no path within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    exchange_within(&a, &b, 20, 0, Duration::from_secs(2)).await;
    exchange_within(&b, &a, 20, 0, Duration::from_secs(2)).await;

    // Then the direct path takes over on both sides, the relay stays.
    wait_for_path(&a, kb.peer_id(), PathKind::Direct, Duration::from_secs(10)).await;
    wait_for_path(&b, ka.peer_id(), PathKind::Direct, Duration::from_secs(10)).await;
    exchange_within(&a, &b, 100, 0, Duration::from_secs(2)).await;
    exchange_within(&b, &a, 100, 0, Duration::from_secs(2)).await;
    let s = &a.status()[0];
    assert_eq!(s.remote, Some(b.local_addr().unwrap()));
    assert!(s.first_connect_ms.is_some() && s.first_direct_ms.is_some());
    // Both paths stay up (the relay as a backup): wait for the relay
    // connection too, which may come after the direct one on a busy host.
    let start = Instant::now();
    while a.open_connections().both + b.open_connections().both < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "both paths not up: {:?} {:?}",
            a.open_connections(),
            b.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The punch validated both addresses: the direct handshake needed no
    // Retry round trip (the relayed one never does).
    let count = |o: &Overlay, f: fn(&antq::node::NodeStats) -> &AtomicU64| {
        f(o.node().stats()).load(Ordering::Relaxed)
    };
    assert!(count(&a, |s| &s.accepted) + count(&b, |s| &s.accepted) >= 2);
    assert_eq!(count(&a, |s| &s.retries) + count(&b, |s| &s.retries), 0);
    assert!(
        boot.stats()
            .relays_granted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_key_gets_no_connection_direct_or_relayed() {
    let boot = bootstrap();
    let (ka, kc) = (Identity::generate(), Identity::generate());
    // a knows nobody; c lists a and tries everything.
    let a = overlay(&ka, &[], &boot);
    let c = overlay(&kc, &[ka.peer_id()], &boot);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(c.status()[0].path, PathKind::None, "{:?}", c.status());
    assert!(a.status().is_empty());
    assert!(
        a.node()
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    );
    // A datagram c sends waits for a connection that never comes.
    c.send(&ka.peer_id(), Bytes::from_static(b"x")).unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(500), a.recv())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_sent_before_the_first_connection_arrive_once_it_is_up() {
    let boot = bootstrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, &[kb.peer_id()], &boot);
    let b = overlay(&kb, &[ka.peer_id()], &boot);
    // Sent at once, before any connection can exist.
    assert_eq!(a.status()[0].path, PathKind::None);
    for i in 0..3 {
        a.send(&kb.peer_id(), Bytes::from(format!("early {i}")))
            .unwrap();
    }
    for i in 0..3 {
        let (from, got) = tokio::time::timeout(Duration::from_secs(3), b.recv())
            .await
            .expect("a staged datagram arrives once the first connection is up")
            .unwrap();
        assert_eq!(from, ka.peer_id());
        assert_eq!(got, Bytes::from(format!("early {i}")));
    }
    // The staging queue is bounded: beyond it, sends without a path fail.
    let (kc, kd) = (Identity::generate(), Identity::generate());
    let lonely = overlay(&kc, &[kd.peer_id()], &boot);
    for _ in 0..antq::node::overlay::STAGED_MAX {
        lonely
            .send(&kd.peer_id(), Bytes::from_static(b"x"))
            .unwrap();
    }
    assert!(matches!(
        lonely.send(&kd.peer_id(), Bytes::from_static(b"x")),
        Err(antq::node::overlay::SendError::NoPath(_))
    ));
}

/// A reload's new bootstrap list: the link to the removed bootstrap closes
/// (its relay channels with it), the new one connects, and two peers that
/// only share the new one reach each other through it; the direct path
/// between the first two stays up throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstraps_are_replaced_while_running() {
    use antq::tunnel::config::BootstrapAddr;
    init_tracing();
    let (boot1, boot2) = (bootstrap(), bootstrap());
    let addr = |b: &antq::bootstrap::Bootstrap| BootstrapAddr {
        peer: b.peer_id(),
        addr: b.local_addr().unwrap(),
    };
    let (ka, kb, kc) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let a = overlay(&ka, &[kb.peer_id(), kc.peer_id()], &boot1);
    let b = overlay(&kb, &[ka.peer_id()], &boot1);
    let c = overlay(&kc, &[ka.peer_id()], &boot2);
    wait_for_path(&a, kb.peer_id(), PathKind::Direct, Duration::from_secs(10)).await;
    assert_eq!(boot1.status().peers["udp"], 2);
    assert_eq!(boot2.status().peers["udp"], 1);
    // c is only on boot2: a cannot reach it yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.status()
            .iter()
            .find(|s| s.public_key == kc.peer_id().to_string())
            .unwrap()
            .path,
        PathKind::None
    );
    a.set_bootstraps(&[addr(&boot2)]);
    let took = wait_for_path(&a, kc.peer_id(), PathKind::Direct, Duration::from_secs(10)).await;
    eprintln!("a reached c through the new bootstrap in {took:?}");
    crate::harness::wait_for("a left boot1", Duration::from_secs(5), || {
        boot1.status().peers["udp"] == 1
    })
    .await;
    let transports = a.bootstrap_transports();
    assert_eq!(transports.len(), 1);
    assert_eq!(transports[0].0, addr(&boot2));
    // The direct path to b never went away.
    assert_eq!(
        a.status()
            .iter()
            .find(|s| s.public_key == kb.peer_id().to_string())
            .unwrap()
            .path,
        PathKind::Direct
    );
    exchange_within(&a, &b, 20, 0, Duration::from_secs(2)).await;
    exchange_within(&a, &c, 20, 0, Duration::from_secs(2)).await;
}

/// `Overlay::ping`: a PONG over the path the peer's traffic takes (the
/// direct one names the peer's address), counted on both sides; an
/// unknown key is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_name_their_path_and_are_counted() {
    use antq::node::overlay::PingError;
    init_tracing();
    let boot = bootstrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, &[kb.peer_id()], &boot);
    let b = overlay(&kb, &[ka.peer_id()], &boot);
    // The first ping waits for a first connection (relay or direct).
    let first = a.ping(&kb.peer_id(), Duration::from_secs(5)).await.unwrap();
    assert_ne!(first.path, PathKind::None);
    wait_for_path(&a, kb.peer_id(), PathKind::Direct, Duration::from_secs(10)).await;
    let reply = a.ping(&kb.peer_id(), Duration::from_secs(2)).await.unwrap();
    assert_eq!(reply.path, PathKind::Direct);
    assert_eq!(reply.via, b.local_addr().unwrap());
    assert!(reply.rtt < Duration::from_secs(1), "{reply:?}");
    let back = b.ping(&ka.peer_id(), Duration::from_secs(2)).await.unwrap();
    assert_eq!(back.path, PathKind::Direct);
    let stranger = Identity::generate().peer_id();
    assert!(matches!(
        a.ping(&stranger, Duration::from_secs(1)).await,
        Err(PingError::UnknownPeer(p)) if p == stranger
    ));
    let metric = |o: &Overlay, event: &str| {
        let mut r = antq::metrics::Registry::new();
        o.collect_metrics(&mut r);
        let text = r.render();
        let line = format!("antq_pings_total{{event=\"{event}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(metric(&a, "sent"), 2);
    assert_eq!(metric(&a, "replied"), 2);
    assert_eq!(metric(&a, "lost"), 0);
    assert_eq!(metric(&b, "answered"), 2);
    assert_eq!(metric(&a, "answered"), 1);
    assert_eq!(metric(&b, "refused"), 0);
}
