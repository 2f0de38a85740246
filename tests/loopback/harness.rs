//! Shared helpers of the loopback tests: a bootstrap, overlays configured for
//! one host (loopback candidates allowed), bare nodes, polling, datagram
//! exchange.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use antq::bootstrap::{Bootstrap, BootstrapSettings, Limits, TcpListen};
use antq::identity::{Identity, PeerId};
use antq::nat::PunchConfig;
use antq::node::overlay::{Overlay, OverlayConfig, PathKind};
use antq::node::TransportSettings;
use antq::tunnel::config::BootstrapAddr;
use bytes::Bytes;

/// `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Logs to the test's output, filtered by `RUST_LOG` (once per process).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A bare node that speaks the control protocol directly (it never answers
/// address challenges): an attacker.
pub fn raw_node(identity: &Identity) -> antq::node::Node {
    antq::node::Node::bind(antq::node::NodeConfig::new(
        identity.clone(),
        loopback(),
        antq::tls::AcceptPolicy::AnyKey,
    ))
    .unwrap()
}

/// A bare node on loopback that accepts the keys of `allowed` only.
pub fn allowlisted_node(identity: &Identity, allowed: &[&Identity]) -> antq::node::Node {
    let list = antq::tls::Allowlist::new(allowed.iter().map(|i| i.peer_id()));
    antq::node::Node::bind(antq::node::NodeConfig::new(
        identity.clone(),
        loopback(),
        antq::tls::AcceptPolicy::Allowlist(list),
    ))
    .unwrap()
}

/// The value of a statistics counter.
pub fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A relaying bootstrap on loopback with these limits, allowlist and TCP
/// listener.
pub fn bootstrap_with(
    limits: Limits,
    allowed_keys: Option<Vec<PeerId>>,
    tcp_listen: TcpListen,
) -> Bootstrap {
    Bootstrap::start(BootstrapSettings {
        identity: Identity::generate(),
        listen: loopback(),
        tcp_listen,
        observe: antq::bootstrap::ObserveListen::NextPort,
        relay: true,
        allowed_keys,
        limits,
    })
    .unwrap()
}

/// A relaying bootstrap on loopback, default limits, UDP only.
pub fn bootstrap() -> Bootstrap {
    bootstrap_with(Limits::default(), None, TcpListen::Off)
}

/// The config of an overlay on loopback with `peers` and one bootstrap
/// reached at `boot` (loopback candidates allowed, no membership).
pub fn overlay_config(
    identity: &Identity,
    peers: Vec<(PeerId, Option<SocketAddr>)>,
    boot: BootstrapAddr,
) -> OverlayConfig {
    OverlayConfig {
        identity: identity.clone(),
        bind: loopback(),
        peers,
        bootstraps: vec![boot],
        exclude_ips: vec![],
        transport: TransportSettings::default(),
        punch: PunchConfig {
            allow_loopback: true,
            ..PunchConfig::default()
        },
        loopback_only: true,
        port_mapping: false,
        membership: None,
    }
}

/// An overlay on loopback with `peers` (no known endpoints) and one
/// bootstrap reached at `boot`.
pub fn overlay_via(
    identity: &Identity,
    peers: Vec<(PeerId, Option<SocketAddr>)>,
    boot: BootstrapAddr,
) -> Overlay {
    Overlay::start(overlay_config(identity, peers, boot)).unwrap()
}

/// An overlay on loopback with `peers`, using `boot` at its UDP address.
pub fn overlay(identity: &Identity, peers: &[PeerId], boot: &Bootstrap) -> Overlay {
    overlay_via(
        identity,
        peers.iter().map(|p| (*p, None)).collect(),
        BootstrapAddr {
            peer: boot.peer_id(),
            addr: boot.local_addr().unwrap(),
        },
    )
}

/// Polls `cond` every 10 ms; panics naming `what` if it is not true within
/// `within`. Returns how long it took.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// The path `o` uses to `peer` now.
pub fn path_of(o: &Overlay, peer: PeerId) -> PathKind {
    o.status()
        .iter()
        .find(|s| s.public_key == peer.to_string())
        .map_or(PathKind::None, |s| s.path)
}

/// Sends `n` numbered datagrams of at least `size` bytes from `a` to `b`,
/// each received intact within 3 s.
pub async fn exchange(a: &Overlay, b: &Overlay, n: u32, size: usize) {
    exchange_within(a, b, n, size, Duration::from_secs(3)).await;
}

/// [`exchange`], each datagram received within `within`.
pub async fn exchange_within(a: &Overlay, b: &Overlay, n: u32, size: usize, within: Duration) {
    for i in 0..n {
        let mut payload = format!("datagram {i} ").into_bytes();
        payload.resize(size.max(payload.len()), b'x');
        let payload = Bytes::from(payload);
        a.send(&b.peer_id(), payload.clone()).unwrap();
        let (from, got) = tokio::time::timeout(within, b.recv())
            .await
            .unwrap_or_else(|_| panic!("datagram {i} not received within {within:?}"))
            .unwrap();
        assert_eq!(from, a.peer_id());
        assert_eq!(got, payload);
    }
}
