//! The relay data plane on real loopback sockets: two peers run their own
//! end-to-end QUIC connection through a third node's relay forwarding, via
//! virtual addresses in their shared sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use antq::identity::Identity;
use antq::node::Node;
use antq::socket::{is_virtual, RelayBudget, RelayLimit, RelayRoute, SocketStats};
use bytes::Bytes;

use crate::harness::{allowlisted_node, stat};

/// Peers a and c, which accept each other, and a relay node.
fn trio() -> (Node, Node, Node) {
    let (ka, kc, kr) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    (
        allowlisted_node(&ka, &[&kc]),
        allowlisted_node(&kc, &[&ka]),
        allowlisted_node(&kr, &[]),
    )
}

const UNLIMITED: RelayLimit = RelayLimit {
    bytes_per_sec: 1e9,
    burst_bytes: 1e9,
};

#[tokio::test]
async fn peers_talk_end_to_end_through_a_relay() {
    let (a, c, relay) = trio();
    let (a_addr, c_addr, r_addr) = (
        a.local_addr().unwrap(),
        c.local_addr().unwrap(),
        relay.local_addr().unwrap(),
    );

    // Channel 11 is A's label on the relay, 22 is C's.
    let from_a = RelayRoute {
        server: a_addr,
        channel: 11,
    };
    let from_c = RelayRoute {
        server: c_addr,
        channel: 22,
    };
    let budget = || Arc::new(RelayBudget::new(UNLIMITED));
    relay
        .socket()
        .set_relay_forward(from_a, from_c, UNLIMITED, budget());
    relay
        .socket()
        .set_relay_forward(from_c, from_a, UNLIMITED, budget());
    let c_via_relay = a.socket().add_relay_route(RelayRoute {
        server: r_addr,
        channel: 11,
    });
    let a_via_relay = c.socket().add_relay_route(RelayRoute {
        server: r_addr,
        channel: 22,
    });
    assert!(is_virtual(c_via_relay) && is_virtual(a_via_relay));

    let target = [c_via_relay];
    let (dialed, accepted) = tokio::join!(a.connect(c.peer_id(), &target), c.accept());
    let ac = dialed.expect("connect through the relay");
    let ca = accepted.unwrap();
    assert_eq!(ca.peer_id(), a.peer_id());
    assert_eq!(antq::nat::canonical(ca.remote_address()), a_via_relay);

    for i in 0u32..200 {
        ac.send_datagram(Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), ca.recv_datagram())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], &i.to_be_bytes());
    }
    let forwarded = relay.socket().stats().forwarded.load(Ordering::Relaxed);
    assert!(forwarded >= 200, "relay forwarded {forwarded} frames");

    // Frames from an address that has no forwarding entry are dropped.
    let stranger = allowlisted_node(&Identity::generate(), &[]);
    stranger
        .socket()
        .send_raw(r_addr, &[1, 0, 0, 0, 11, 0xc0, 0, 0])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(relay.socket().stats().relay_unknown.load(Ordering::Relaxed) >= 1);
}

/// Forwards relay channel `from` of `a` to channel `to` of `c` on `relay`.
fn forward(
    relay: &Node,
    (a, from): (&Node, u32),
    (c, to): (&Node, u32),
    limit: RelayLimit,
    budget: Arc<RelayBudget>,
) {
    relay.socket().set_relay_forward(
        RelayRoute {
            server: a.local_addr().unwrap(),
            channel: from,
        },
        RelayRoute {
            server: c.local_addr().unwrap(),
            channel: to,
        },
        limit,
        budget,
    );
}

/// Sends `n` relay frames of 1005 bytes (1000 of payload) on each of
/// `channels` from `a` to `relay`, then gives the relay 200 ms to forward
/// or drop them. Returns the relay's forwarded frames and the counter that
/// `dropped` picks from its stats.
async fn flood(
    a: &Node,
    relay: &Node,
    channels: &[u8],
    n: usize,
    dropped: impl Fn(&SocketStats) -> &AtomicU64,
) -> (u64, u64) {
    for &channel in channels {
        let mut frame = vec![1u8, 0, 0, 0, channel];
        frame.extend_from_slice(&[0xc0; 1000]);
        for _ in 0..n {
            a.socket()
                .send_raw(relay.local_addr().unwrap(), &frame)
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = relay.socket().stats();
    (stat(&stats.forwarded), stat(dropped(stats)))
}

#[tokio::test]
async fn relay_bandwidth_limit_drops_the_excess() {
    let (a, c, relay) = trio();
    let limit = RelayLimit {
        bytes_per_sec: 10_000.0,
        burst_bytes: 20_000.0,
    };
    let budget = Arc::new(RelayBudget::new(UNLIMITED));
    forward(&relay, (&a, 1), (&c, 2), limit, budget);
    let (fwd, limited) = flood(&a, &relay, &[1], 100, |s| &s.forward_limited).await;
    assert!(
        fwd <= 25,
        "forwarded {fwd} frames of 1005 bytes within a 20 kB burst"
    );
    assert!(limited >= 70, "limited {limited}");
}

/// Above the rate, frames wait for the pacer (up to 25 ms) instead of being
/// dropped: 30 frames of 1005 bytes at 1 MB/s with a 10 kB burst all get
/// through, the ones past the burst a millisecond apart.
#[tokio::test]
async fn relay_frames_above_the_rate_are_paced_not_dropped() {
    let (a, c, relay) = trio();
    let limit = RelayLimit {
        bytes_per_sec: 1_000_000.0,
        burst_bytes: 10_000.0,
    };
    let budget = Arc::new(RelayBudget::new(UNLIMITED));
    forward(&relay, (&a, 1), (&c, 2), limit, budget);
    let (fwd, limited) = flood(&a, &relay, &[1], 30, |s| &s.forward_limited).await;
    let delayed = stat(&relay.socket().stats().forward_delayed);
    assert_eq!((fwd, limited), (30, 0), "forwarded, limited");
    // 9 fit the burst; how many of the others wait depends on how fast
    // the sender sent them, but some must have.
    assert!(delayed >= 5, "{delayed} of 30 frames waited");
}

/// One sender's budget is shared by all its relay directions: two
/// allocations do not double what it may make the relay send.
#[tokio::test]
async fn a_senders_budget_covers_all_its_relays() {
    let (a, c, relay) = trio();
    let budget = Arc::new(RelayBudget::new(RelayLimit {
        bytes_per_sec: 10_000.0,
        burst_bytes: 20_000.0,
    }));
    for (from, to) in [(1, 2), (3, 4)] {
        forward(&relay, (&a, from), (&c, to), UNLIMITED, budget.clone());
    }
    let (fwd, limited) = flood(&a, &relay, &[1, 3], 50, |s| &s.forward_budget_limited).await;
    assert!(
        fwd <= 25,
        "forwarded {fwd} frames of 1005 bytes on two channels within one 20 kB budget"
    );
    assert!(limited >= 70, "budget-limited {limited}");
}
