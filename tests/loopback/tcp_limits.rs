//! The TCP listener's limits on loopback, against a bare socket serving TCP
//! (no QUIC endpoint behind it): the per-source cap, the claim deadline, the
//! preface / first-frame deadline and the refusal counters. Many source
//! addresses come from binding clients to 127.0.x.y (loopback has all of
//! 127.0.0.0/8; no root needed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::wait_for;
use antq::socket::framing::{encode_frame, PREFACE};
use antq::socket::{bind_tcp, bind_udp, AntqSocket, SocketStats, StreamLimits};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A socket serving TCP on loopback within `limits`, and its TCP address.
fn serve(limits: StreamLimits) -> (Arc<AntqSocket>, SocketAddr) {
    let socket = AntqSocket::new(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    socket.serve_tcp(listener, limits);
    (socket, addr)
}

/// Limits generous on rate, with the default caps and `claim_timeout`.
fn limits(claim_timeout: Duration) -> StreamLimits {
    StreamLimits {
        per_ip_per_sec: 100.0,
        per_ip_burst: 100.0,
        claim_timeout,
        ..StreamLimits::default()
    }
}

/// A TCP stream to `server` from source address `src`.
async fn connect_from(src: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// The preface and one small QUIC-looking frame.
fn hello() -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    encode_frame(&[0x40; 40], &mut bytes).unwrap();
    bytes
}

/// Whether the server closes `s` within `within` (reads give EOF or an
/// error); nothing else is expected on it.
async fn closed_within(s: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The per-reason refusal counters, in the order rate, per-source cap,
/// total cap, handshake timeout, claim timeout; checks that their sum is
/// `streams_refused`.
fn refusals(s: &SocketStats) -> [u64; 5] {
    let by_reason = [
        load(&s.streams_refused_rate),
        load(&s.streams_refused_source_cap),
        load(&s.streams_refused_total_cap),
        load(&s.streams_refused_handshake_timeout),
        load(&s.streams_refused_claim_timeout),
    ];
    assert_eq!(by_reason.iter().sum::<u64>(), load(&s.streams_refused));
    by_reason
}

#[tokio::test]
async fn per_source_cap_refuses_the_17th_stream_while_another_source_gets_one() {
    let (socket, server) = serve(limits(Duration::from_secs(30)));
    let first = Ipv4Addr::new(127, 0, 7, 1);
    let mut held = Vec::new();
    for i in 1..=16 {
        let mut s = connect_from(first, server).await;
        s.write_all(&hello()).await.unwrap();
        held.push(s);
        wait_for("stream open", Duration::from_secs(2), || {
            socket.stream_count() == i
        })
        .await;
    }
    let mut seventeenth = connect_from(first, server).await;
    let _ = seventeenth.write_all(&hello()).await;
    assert!(closed_within(&mut seventeenth, Duration::from_secs(2)).await);
    assert_eq!(refusals(socket.stats()), [0, 1, 0, 0, 0]);
    assert_eq!(socket.stream_count(), 16);

    let mut other = connect_from(Ipv4Addr::new(127, 0, 7, 2), server).await;
    other.write_all(&hello()).await.unwrap();
    wait_for("stream from another source", Duration::from_secs(2), || {
        socket.stream_count() == 17
    })
    .await;
    // When one of the first source's streams closes, its place is free.
    drop(held.pop());
    wait_for("stream gone", Duration::from_secs(2), || {
        socket.stream_count() == 16
    })
    .await;
    let mut again = connect_from(first, server).await;
    again.write_all(&hello()).await.unwrap();
    wait_for("place taken again", Duration::from_secs(2), || {
        socket.stream_count() == 17
    })
    .await;
    assert_eq!(refusals(socket.stats()), [0, 1, 0, 0, 0]);
    assert!(!closed_within(&mut other, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn unclaimed_stream_is_closed_at_the_claim_deadline_and_a_claimed_one_stays() {
    let (socket, server) = serve(limits(Duration::from_secs(1)));
    let mut kept = connect_from(Ipv4Addr::new(127, 0, 8, 1), server).await;
    let mut dropped = connect_from(Ipv4Addr::new(127, 0, 8, 2), server).await;
    for s in [&mut kept, &mut dropped] {
        s.write_all(&hello()).await.unwrap();
    }
    wait_for("two streams", Duration::from_secs(2), || {
        socket.stream_count() == 2
    })
    .await;
    let kept_local = kept.local_addr().unwrap();
    let path = socket
        .stream_addrs()
        .into_iter()
        .find(|a| socket.stream_peer(*a) == Some(kept_local))
        .unwrap();
    assert!(socket.claim_stream(path));
    assert!(socket.claim_stream(path), "claiming twice is harmless");
    assert!(!socket.claim_stream("241.255.255.255:1".parse().unwrap()));

    // Sending all the time does not put the claim deadline off.
    let (mut dropped_rd, mut dropped_wr) = dropped.into_split();
    let sender = tokio::spawn(async move {
        let mut frame = Vec::new();
        encode_frame(&[0x42; 200], &mut frame).unwrap();
        while dropped_wr.write_all(&frame).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let started = tokio::time::Instant::now();
    assert!(closed_within(&mut dropped_rd, Duration::from_secs(3)).await);
    let waited = started.elapsed();
    sender.abort();
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert_eq!(refusals(socket.stats()), [0, 0, 0, 0, 1]);
    // The claimed one outlives its deadline by far, and still delivers.
    assert!(!closed_within(&mut kept, Duration::from_secs(2)).await);
    assert!(socket.has_stream(path));
    assert_eq!(socket.stream_count(), 1);
    let frames_in = load(&socket.stats().stream_frames_in);
    let mut frame = Vec::new();
    encode_frame(&[0x41; 40], &mut frame).unwrap();
    kept.write_all(&frame).await.unwrap();
    wait_for(
        "frame on the claimed stream",
        Duration::from_secs(2),
        || load(&socket.stats().stream_frames_in) == frames_in + 1,
    )
    .await;
    assert_eq!(refusals(socket.stats()), [0, 0, 0, 0, 1]);
}

#[tokio::test]
async fn streams_without_preface_or_first_frame_are_closed_in_time() {
    let (socket, server) = serve(limits(Duration::from_secs(30)));
    // Nothing at all; the preface only; the preface one byte a second.
    let mut silent = connect_from(Ipv4Addr::new(127, 0, 9, 1), server).await;
    let mut preface_only = connect_from(Ipv4Addr::new(127, 0, 9, 2), server).await;
    preface_only.write_all(PREFACE).await.unwrap();
    let mut trickle = connect_from(Ipv4Addr::new(127, 0, 9, 3), server).await;
    let started = tokio::time::Instant::now();
    let trickler = tokio::spawn(async move {
        for b in PREFACE {
            if trickle.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        closed_within(&mut trickle, Duration::from_secs(8)).await
    });
    wait_for("three streams", Duration::from_secs(2), || {
        socket.stream_count() == 3
    })
    .await;
    assert!(closed_within(&mut silent, Duration::from_secs(8)).await);
    assert!(closed_within(&mut preface_only, Duration::from_secs(8)).await);
    assert!(trickler.await.unwrap());
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(9)).contains(&waited),
        "{waited:?}"
    );
    wait_for("paths gone", Duration::from_secs(1), || {
        socket.stream_count() == 0
    })
    .await;
    assert_eq!(refusals(socket.stats()), [0, 0, 0, 3, 0]);
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let (socket, server) = serve(StreamLimits {
        per_ip_per_sec: 0.01,
        per_ip_burst: 1.0,
        max_streams: 3,
        per_ip_max_streams: 16,
        claim_timeout: Duration::from_secs(30),
    });
    let a = Ipv4Addr::new(127, 0, 10, 1);
    let mut open = Vec::new();
    let mut s = connect_from(a, server).await;
    s.write_all(&hello()).await.unwrap();
    open.push(s);
    // a's burst is used up.
    let mut second = connect_from(a, server).await;
    assert!(closed_within(&mut second, Duration::from_secs(2)).await);
    assert_eq!(refusals(socket.stats()), [1, 0, 0, 0, 0]);
    // Two more places in all, one stream each, then none: nobody holds two
    // more than the newcomer, so nobody makes room for it.
    for (i, last) in [(2, false), (3, false), (4, true)] {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 10, i), server).await;
        if last {
            assert!(closed_within(&mut s, Duration::from_secs(2)).await);
        } else {
            s.write_all(&hello()).await.unwrap();
            open.push(s);
            wait_for("stream open", Duration::from_secs(2), || {
                socket.stream_count() == open.len()
            })
            .await;
        }
    }
    assert_eq!(refusals(socket.stats()), [1, 0, 1, 0, 0]);
    for s in &mut open {
        assert!(!closed_within(s, Duration::from_millis(100)).await);
    }
}

#[tokio::test]
async fn at_the_total_cap_the_largest_source_makes_room() {
    let (socket, server) = serve(StreamLimits {
        max_streams: 4,
        ..limits(Duration::from_secs(30))
    });
    let hog = Ipv4Addr::new(127, 30, 0, 1);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(hog, server).await;
        s.write_all(&hello()).await.unwrap();
        held.push(s);
        wait_for("stream open", Duration::from_secs(2), || {
            socket.stream_count() == held.len()
        })
        .await;
    }
    // Full. Another source still gets a stream: the hog's newest goes.
    let mut newcomer = connect_from(Ipv4Addr::new(127, 30, 0, 2), server).await;
    newcomer.write_all(&hello()).await.unwrap();
    let mut newest = held.pop().unwrap();
    assert!(
        closed_within(&mut newest, Duration::from_secs(2)).await,
        "the hog's newest stream stays"
    );
    assert!(
        !closed_within(&mut newcomer, Duration::from_millis(300)).await,
        "the newcomer was refused"
    );
    assert_eq!(load(&socket.stats().streams_evicted), 1);
    // The hog asking again finds nobody holding two more than it: refused.
    let mut again = connect_from(hog, server).await;
    assert!(closed_within(&mut again, Duration::from_secs(2)).await);
    assert!(load(&socket.stats().streams_refused_total_cap) >= 1);
}
