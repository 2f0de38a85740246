//! Hostile input on real loopback sockets: a coordination flood against the
//! bootstrap's rate limit, the bootstrap's key allowlist, and the bytes a
//! node sends toward addresses that never proved they want them (spoofed
//! sources, third parties named in PUNCH_ME_NOW).
//!
//! The measured numbers are printed; run with `--no-capture` to see them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{
    bootstrap_with, exchange, loopback, overlay, path_of, raw_node, stat, wait_for,
};
use antq::bootstrap::{Bootstrap, Limits, TcpListen};
use antq::identity::Identity;
use antq::nat::PunchConfig;
use antq::node::overlay::PathKind;
use antq::node::{Node, PeerConnection};
use antq::proto::raw::{encode_relay_header, Probe, ProbeKind, RelayHeader};
use antq::proto::{ControlMessage, UnavailableReason};
use bytes::Bytes;
use rand::{Rng as _, RngCore as _};
use tokio::net::UdpSocket;

async fn connect_to(node: &Node, boot: &Bootstrap) -> PeerConnection {
    node.connect(boot.peer_id(), &[boot.local_addr().unwrap()])
        .await
        .expect("connect to the bootstrap")
}

/// Two keys, the first smaller than the second.
fn ordered_keys() -> (Identity, Identity) {
    let (x, y) = (Identity::generate(), Identity::generate());
    if x.peer_id() < y.peer_id() {
        (x, y)
    } else {
        (y, x)
    }
}

const FLOOD: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordination_flood_is_limited_and_other_peers_still_connect() {
    let limits = Limits {
        coordination_per_sec: 20.0,
        coordination_burst: 60.0,
        ..Limits::default()
    };
    let boot = bootstrap_with(limits, None, TcpListen::Off);
    let (kf, kt) = (Identity::generate(), Identity::generate());
    let (flooder, target) = (raw_node(&kf), raw_node(&kt));
    let fconn = connect_to(&flooder, &boot).await;
    let tconn = connect_to(&target, &boot).await;
    wait_for("both registered", Duration::from_secs(5), || {
        boot.connected_peers().len() == 2
    })
    .await;

    // What reaches the flood's target from the flooder: forwarded messages
    // and relay grants naming it.
    let reached = Arc::new(AtomicU64::new(0));
    {
        let (reached, tconn, from) = (reached.clone(), tconn.clone(), *kf.peer_id().as_bytes());
        tokio::spawn(async move {
            while let Some(msg) = tconn.control().recv().await {
                match msg {
                    ControlMessage::Forward { peer, .. }
                    | ControlMessage::RelayGrant { peer, .. }
                        if peer == from =>
                    {
                        reached.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    }
    let refusals = Arc::new(AtomicU64::new(0));
    {
        let (refusals, fconn) = (refusals.clone(), fconn.clone());
        tokio::spawn(async move {
            while let Some(msg) = fconn.control().recv().await {
                if let ControlMessage::PeerUnavailable {
                    reason: UnavailableReason::RateLimited,
                    ..
                } = msg
                {
                    refusals.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    let start = Instant::now();
    let flood = {
        let (fconn, to) = (fconn.clone(), *kt.peer_id().as_bytes());
        tokio::spawn(async move {
            let mut rng = rand::rngs::OsRng;
            for i in 0..FLOOD {
                let addr: SocketAddr = "198.51.100.7:9000".parse().unwrap();
                let msg = match i % 3 {
                    0 => ControlMessage::Forward {
                        peer: to,
                        inner: Box::new(ControlMessage::PunchMeNow {
                            round: rng.gen(),
                            paired_with_sequence: 0,
                            addr,
                            delay_ms: 0,
                            token: rng.gen(),
                            start_at_unix_micros: 0,
                        }),
                    },
                    1 => ControlMessage::Forward {
                        peer: to,
                        inner: Box::new(ControlMessage::AddAddress { sequence: i, addr }),
                    },
                    _ => ControlMessage::RelayRequest { peer: to },
                };
                fconn
                    .control()
                    .send(msg)
                    .await
                    .expect("flood message queued");
            }
        })
    };

    // Meanwhile a second pair comes up through the same bootstrap.
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay(&ka, &[kb.peer_id()], &boot);
    let b = overlay(&kb, &[ka.peer_id()], &boot);
    let connected = wait_for("a path between a and b", Duration::from_secs(5), || {
        path_of(&a, kb.peer_id()) != PathKind::None && path_of(&b, ka.peer_id()) != PathKind::None
    })
    .await;
    exchange(&a, &b, 20, 0).await;
    exchange(&b, &a, 20, 0).await;

    flood.await.unwrap();
    let s = boot.stats();
    // The bootstrap has handled the whole flood (the pair's own requests
    // come on top).
    wait_for(
        "bootstrap handles the flood",
        Duration::from_secs(20),
        || stat(&s.admitted) + stat(&s.rate_limited) >= FLOOD,
    )
    .await;
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let allowance = (limits.coordination_burst
        + limits.coordination_per_sec * elapsed.as_secs_f64())
    .ceil() as u64;
    let reached = stat(&reached);
    println!(
        "flood of {FLOOD} in {:.2} s: target reached by {reached} (allowance {allowance}), \
         rate_limited {}, admitted {}, forwarded {}, refusals seen by the flooder {}; \
         a-b path after {:.0} ms",
        elapsed.as_secs_f64(),
        stat(&s.rate_limited),
        stat(&s.admitted),
        stat(&s.forwarded),
        stat(&refusals),
        connected.as_secs_f64() * 1e3,
    );
    assert!(reached <= allowance, "{reached} > {allowance}");
    assert!(
        stat(&s.rate_limited) >= FLOOD - allowance,
        "rate_limited {} < {}",
        stat(&s.rate_limited),
        FLOOD - allowance
    );
    assert!(stat(&refusals) > 0, "the flooder is told it is limited");
    // No allocation for the flood's pair (the target never asked for one,
    // however often the flooder did), at most one for a-b.
    assert!(stat(&s.relays_granted) <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_key_gets_no_coordination_or_relay() {
    let (ka, kb, kc) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let boot = bootstrap_with(
        Limits::default(),
        Some(vec![ka.peer_id(), kb.peer_id()]),
        TcpListen::Off,
    );

    // c cannot even connect to the bootstrap: no control channel at all.
    let c_raw = raw_node(&kc);
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        c_raw.connect(boot.peer_id(), &[boot.local_addr().unwrap()]),
    )
    .await
    .expect("refused within 5 s");
    assert!(refused.is_err(), "unlisted key connected");

    // a knows b and c; c tries everything to reach a.
    let a = overlay(&ka, &[kb.peer_id(), kc.peer_id()], &boot);
    let b = overlay(&kb, &[ka.peer_id()], &boot);
    let c = overlay(&kc, &[ka.peer_id()], &boot);
    wait_for("listed keys connect", Duration::from_secs(5), || {
        path_of(&a, kb.peer_id()) != PathKind::None
    })
    .await;
    exchange(&a, &b, 5, 0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(path_of(&c, ka.peer_id()), PathKind::None);
    assert_eq!(path_of(&a, kc.peer_id()), PathKind::None);
    assert!(c.observed_addresses().iter().all(|(_, o)| o.is_none()));
    assert!(!boot.connected_peers().contains(&kc.peer_id()));
    assert!(stat(&boot.stats().relays_granted) <= 1, "a-b at most");
    assert!(stat(&boot.node().stats().handshakes_failed) >= 1);
    // A datagram c sends waits for a connection that never comes.
    c.send(&ka.peer_id(), Bytes::from_static(b"x")).unwrap();
    while let Ok(Some((from, _))) = tokio::time::timeout(Duration::from_millis(500), a.recv()).await
    {
        assert_ne!(from, kc.peer_id());
    }
}

/// What one attacker socket sent and got back.
struct Exchange {
    what: &'static str,
    sent: u64,
    received: u64,
}

impl Exchange {
    fn ratio(&self) -> f64 {
        self.received as f64 / self.sent.max(1) as f64
    }
}

/// Sends `datagrams` from a fresh socket to `victim`, then counts what comes
/// back within `wait`.
async fn probe_victim(
    what: &'static str,
    victim: SocketAddr,
    datagrams: Vec<Vec<u8>>,
    wait: Duration,
) -> Exchange {
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    let mut sent = 0;
    for d in &datagrams {
        sent += socket.send_to(d, victim).await.unwrap() as u64;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        received += n as u64;
    }
    Exchange {
        what,
        sent,
        received,
    }
}

/// The first datagram a real client sends: a padded QUIC Initial with a
/// ClientHello.
async fn real_initial() -> Vec<u8> {
    let capture = UdpSocket::bind(loopback()).await.unwrap();
    let to = capture.local_addr().unwrap();
    let client = raw_node(&Identity::generate());
    let server = Identity::generate().peer_id();
    let dial = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(3), client.connect(server, &[to])).await;
    });
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), capture.recv_from(&mut buf))
        .await
        .expect("an Initial")
        .unwrap();
    dial.abort();
    buf.truncate(n);
    buf
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Hostile datagrams by kind, from an address that never completes anything.
async fn hostile_datagrams() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut rng = rand::thread_rng();
    let garbage = (0..200)
        .map(|_| random(rng.gen_range(1..1400)))
        .collect::<Vec<_>>();
    let probes = (0..200)
        .map(|i| {
            let probe = Probe {
                kind: if i % 2 == 0 {
                    ProbeKind::Probe
                } else {
                    ProbeKind::Ack
                },
                token: rng.gen(),
                round: rng.gen(),
                seq: i,
            };
            let mut out = Vec::new();
            probe.encode(if i % 4 < 2 { 0 } else { 1200 }, &mut out);
            out
        })
        .collect();
    let relay = (0..200)
        .map(|_| {
            let mut header = [0u8; RelayHeader::LEN];
            encode_relay_header(rng.gen(), &mut header);
            let mut d = header.to_vec();
            d.extend(random(1200));
            d
        })
        .collect();
    let short_header = (0..100)
        .map(|_| {
            let mut d = random(1200);
            d[0] = 0x40 | (d[0] & 0x3f);
            d
        })
        .collect();
    let long_header = |version: u32| {
        (0..50)
            .map(|_| {
                let mut d = random(1200);
                d[0] = 0xc0 | (d[0] & 0x0f);
                d[1..5].copy_from_slice(&version.to_be_bytes());
                d[5] = 8;
                d[14] = 8;
                d
            })
            .collect::<Vec<_>>()
    };
    // Each socket gets its own Initial (its own connection IDs): quinn
    // counts every datagram of a connection toward its amplification credit,
    // whichever address it came from, so sharing one would blur the
    // per-address numbers.
    vec![
        ("garbage", garbage),
        ("punch probes/acks, unknown token", probes),
        ("relay frames, unknown channel", relay),
        ("QUIC short header junk", short_header),
        ("QUIC v1 Initial junk", long_header(1)),
        ("QUIC unknown version", long_header(0x1a2a_3a4a)),
        (
            "real QUIC Initial, replayed 3 times",
            vec![real_initial().await; 3],
        ),
        ("real QUIC Initial, once", vec![real_initial().await]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvalidated_sources_get_at_most_three_times_their_bytes() {
    let boot = bootstrap_with(Limits::default(), None, TcpListen::Off);
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let peer = overlay(&ka, &[kb.peer_id()], &boot);
    let victims = [
        ("bootstrap", boot.local_addr().unwrap()),
        ("peer", peer.local_addr().unwrap()),
    ];
    let mut results = Vec::new();
    for (victim, addr) in victims {
        let kinds = hostile_datagrams().await;
        let runs = kinds.into_iter().map(|(what, datagrams)| {
            // QUIC retransmits its handshake flight on timeouts: wait long
            // enough to see the retransmissions the 3x limit allows.
            probe_victim(what, addr, datagrams, Duration::from_secs(4))
        });
        for r in futures_join_all(runs).await {
            println!(
                "{victim:9} {:38} sent {:6} B, got back {:6} B, ratio {:.2}",
                r.what,
                r.sent,
                r.received,
                r.ratio()
            );
            results.push((victim, r));
        }
    }
    for (victim, r) in &results {
        assert!(
            r.received <= 3 * r.sent,
            "{victim}: {}: {} B back for {} B",
            r.what,
            r.received,
            r.sent
        );
    }
    // The real Initials are answered (with a Retry: the address has not
    // been validated), so the measurement means something.
    assert!(results
        .iter()
        .all(|(_, r)| !r.what.starts_with("real") || r.received > 0));
    assert!(stat(&boot.node().stats().retries) >= 2);
    assert!(stat(&peer.node().stats().retries) >= 2);
}

/// Runs the futures concurrently, keeping their order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punch_me_now_toward_a_third_party_sends_a_bounded_number_of_bytes() {
    let boot = bootstrap_with(Limits::default(), None, TcpListen::Off);
    // The hostile peer must not lead coordination, or the victim would
    // ignore its PUNCH_ME_NOW: smaller key.
    let (kh, kv) = ordered_keys();
    let _victim = overlay(&kv, &[kh.peer_id()], &boot);
    let hostile = raw_node(&kh);
    let hconn = connect_to(&hostile, &boot).await;
    {
        let hconn = hconn.clone();
        tokio::spawn(async move { while hconn.control().recv().await.is_some() {} });
    }
    wait_for("victim at the bootstrap", Duration::from_secs(5), || {
        boot.connected_peers().contains(&kv.peer_id())
    })
    .await;

    // A socket that never answers: someone else's address.
    let third = UdpSocket::bind(loopback()).await.unwrap();
    let third_addr = third.local_addr().unwrap();
    let counter = tokio::spawn(async move {
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(9), third.recv_from(&mut buf)).await
        {
            bytes += n as u64;
        }
        bytes
    });

    let to = *kv.peer_id().as_bytes();
    let forward = |inner| ControlMessage::Forward {
        peer: to,
        inner: Box::new(inner),
    };
    let mut sent_requests = 0;
    let mut rng = rand::thread_rng();
    hconn
        .control()
        .send(forward(ControlMessage::AddAddress {
            sequence: 1,
            addr: third_addr,
        }))
        .await
        .unwrap();
    // Let the victim's candidate list settle, then ask it to punch toward
    // the third party again and again, each time with a new round.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..20 {
        hconn
            .control()
            .send(forward(ControlMessage::PunchMeNow {
                round: rng.gen::<u32>() >> 1,
                paired_with_sequence: 1,
                addr: third_addr,
                delay_ms: 0,
                token: rng.gen(),
                start_at_unix_micros: 0,
            }))
            .await
            .unwrap();
        sent_requests += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to_third = counter.await.unwrap();
    let budget = PunchConfig::default().max_unverified_bytes_per_dst as u64;
    println!(
        "{sent_requests} PUNCH_ME_NOW naming a silent third party: it received {to_third} B \
         (one session's budget: {budget} B)"
    );
    assert!(
        to_third > 0,
        "the victim did punch (the test means something)"
    );
    assert!(
        to_third <= budget,
        "{to_third} B toward a silent third party, more than one session's {budget} B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_over_the_per_ip_limit_are_ignored_and_counted() {
    let limits = Limits {
        connections_per_sec_per_ip: 2.0,
        ..Limits::default()
    };
    // Burst: three times the rate (Bootstrap::start), so 6 at once.
    let boot = bootstrap_with(limits, None, TcpListen::Off);
    let nodes: Vec<Node> = (0..20).map(|_| raw_node(&Identity::generate())).collect();
    let to = [boot.local_addr().unwrap()];
    let attempts = nodes
        .iter()
        .map(|n| tokio::time::timeout(Duration::from_secs(2), n.connect(boot.peer_id(), &to)));
    let start = Instant::now();
    let results = futures_join_all_local(attempts).await;
    let elapsed = start.elapsed().as_secs_f64();
    let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count() as f64;
    let s = boot.node().stats();
    println!(
        "20 handshakes from one IP in {elapsed:.1} s: {connected} connected, {} limited, {} retries",
        stat(&s.handshakes_limited),
        stat(&s.retries)
    );
    assert!(connected >= 6.0, "the burst gets through");
    assert!(
        connected <= 6.0 + 2.0 * elapsed + 1.0,
        "{connected} connected"
    );
    assert!(stat(&s.handshakes_limited) >= 20 - connected as u64 - 2);
    // Every handshake was validated by a Retry first, so only validated
    // addresses spent the allowance.
    assert!(stat(&s.retries) >= 20);
}

/// Polls the futures together on this task, keeping their order.
async fn futures_join_all_local<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in pending.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_takes_no_quic_datagrams() {
    // It reads none: a receive buffer would only let clients pin memory.
    let boot = bootstrap_with(Limits::default(), None, TcpListen::Off);
    let node = raw_node(&Identity::generate());
    let conn = connect_to(&node, &boot).await;
    assert_eq!(conn.max_datagram_size(), None);
    assert!(conn.send_datagram(Bytes::from_static(b"x")).is_err());
}
