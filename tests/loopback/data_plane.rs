//! The data plane on loopback: datagrams between two overlays leave as
//! `DATA` frames beside QUIC, directly and through a bootstrap's relay,
//! byte for byte; an end without it keeps QUIC datagrams.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::harness::{
    bootstrap, exchange, init_tracing, overlay, overlay_config, path_of, stat, wait_for,
};
use antq::identity::{Identity, PeerId};
use antq::nat::PunchConfig;
use antq::node::overlay::{Overlay, OverlayConfig, PathKind};
use antq::node::BootstrapAddr;

fn frames(o: &Overlay) -> (u64, u64) {
    let s = o.node().socket().stats();
    (stat(&s.data_out), stat(&s.data_in))
}

/// Waits until `o` has a `path` to `peer` and its data plane is up: a
/// datagram it sends leaves as a frame.
async fn wait_for_frames(o: &Overlay, to: &Overlay, path: PathKind) {
    wait_for("path", Duration::from_secs(10), || {
        path_of(o, to.peer_id()) == path
    })
    .await;
    // The hellos cross within a round trip; a datagram sent before that
    // goes in QUIC.
    let before = frames(o).0;
    let start = std::time::Instant::now();
    while frames(o).0 < before + 3 {
        exchange(o, to, 1, 100).await;
        assert!(start.elapsed() < Duration::from_secs(5), "no data frames");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_ride_data_frames_on_a_direct_path() {
    init_tracing();
    let boot = bootstrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, &[kb.peer_id()], &boot);
    let b = overlay(&kb, &[ka.peer_id()], &boot);
    wait_for_frames(&a, &b, PathKind::Direct).await;
    wait_for_frames(&b, &a, PathKind::Direct).await;

    let (a_out, a_in) = frames(&a);
    let (b_out, b_in) = frames(&b);
    // Any bytes, of any size up to the path's, arrive as sent (exchange
    // compares them), each in one frame.
    let big = a.max_datagram_size(&kb.peer_id()).unwrap();
    for size in [0, 1, 100, big] {
        exchange(&a, &b, 50, size).await;
        exchange(&b, &a, 50, size).await;
    }
    assert_eq!(frames(&a).0 - a_out, 200, "every datagram a sent a frame");
    assert_eq!(frames(&b).0 - b_out, 200);
    assert_eq!(frames(&a).1 - a_in, 200);
    assert_eq!(frames(&b).1 - b_in, 200);
    // Larger than the path carries: refused, as by QUIC.
    let too_big = bytes::Bytes::from(vec![0x45; big + 1]);
    assert!(a.send(&kb.peer_id(), too_big).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_ride_data_frames_through_the_relay() {
    init_tracing();
    let boot = bootstrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    // No punching on loopback: the relay is the only path.
    let relay_only = |me: &Identity, peer: PeerId| {
        let config = OverlayConfig {
            punch: PunchConfig::default(),
            ..overlay_config(
                me,
                vec![(peer, None)],
                BootstrapAddr {
                    peer: boot.peer_id(),
                    addr: boot.local_addr().unwrap(),
                },
            )
        };
        Overlay::start(config).unwrap()
    };
    let a = relay_only(&ka, kb.peer_id());
    let b = relay_only(&kb, ka.peer_id());
    wait_for_frames(&a, &b, PathKind::Relay).await;
    wait_for_frames(&b, &a, PathKind::Relay).await;
    let forwarded = stat(&boot.node().socket().stats().forwarded);
    let (a_out, _) = frames(&a);
    exchange(&a, &b, 100, 1000).await;
    exchange(&b, &a, 100, 1000).await;
    assert_eq!(frames(&a).0 - a_out, 100);
    assert!(
        stat(&boot.node().socket().stats().forwarded) >= forwarded + 200,
        "the relay forwarded the frames"
    );
    assert_eq!(path_of(&a, kb.peer_id()), PathKind::Relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_without_the_data_plane_keeps_quic_datagrams() {
    init_tracing();
    let boot = bootstrap();
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, &[kb.peer_id()], &boot);
    let mut config = overlay_config(
        &kb,
        vec![(ka.peer_id(), None)],
        BootstrapAddr {
            peer: boot.peer_id(),
            addr: boot.local_addr().unwrap(),
        },
    );
    config.transport.data_plane = false;
    let b = Overlay::start(config).unwrap();
    wait_for("direct path", Duration::from_secs(10), || {
        path_of(&a, kb.peer_id()) == PathKind::Direct
            && path_of(&b, ka.peer_id()) == PathKind::Direct
    })
    .await;
    exchange(&a, &b, 100, 500).await;
    exchange(&b, &a, 100, 500).await;
    // b offers only antq/1: the connection has no data plane at either
    // end, not even a hello; everything went in QUIC.
    assert_eq!(frames(&a), (0, 0), "a sends and takes no frames");
    assert_eq!(frames(&b), (0, 0), "b sends and takes no frames");
    assert_eq!(
        b.node()
            .socket()
            .stats()
            .data_unclaimed
            .load(Ordering::Relaxed),
        0
    );
}
