//! Real-socket tests of the node API on loopback: mutual raw-public-key
//! authentication, allowlists, datagrams and streams.

use std::net::SocketAddr;
use std::time::Duration;

use antq::identity::Identity;
use antq::node::{ConnectError, Node};
use bytes::Bytes;

use crate::harness::allowlisted_node;

fn addr(node: &Node) -> SocketAddr {
    node.local_addr().unwrap()
}

#[tokio::test]
async fn allowed_peers_exchange_datagrams_and_streams() {
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = allowlisted_node(&ka, &[&kb]);
    let b = allowlisted_node(&kb, &[&ka]);

    let b_addr = [addr(&b)];
    let (dialed, accepted) = tokio::join!(a.connect(kb.peer_id(), &b_addr), b.accept());
    let ab = dialed.expect("a connects to b");
    let ba = accepted.expect("b accepts a");
    assert_eq!(ab.peer_id(), kb.peer_id());
    assert_eq!(ba.peer_id(), ka.peer_id());
    assert!(ab.max_datagram_size().unwrap() >= 1200);

    // 1000 datagrams each way, each numbered; loopback may still drop a few
    // under load, so send in paced bursts and require all of them.
    for (tx, rx) in [(&ab, &ba), (&ba, &ab)] {
        let receiver = {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut seen = vec![false; 1000];
                while seen.iter().any(|s| !s) {
                    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv_datagram())
                        .await
                        .expect("datagram within 5 s")
                        .unwrap();
                    let n = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
                    assert_eq!(d.len(), 1000, "datagram {n} kept its size");
                    seen[n] = true;
                }
            })
        };
        for n in 0u32..1000 {
            let mut payload = vec![0xab; 1000];
            payload[..4].copy_from_slice(&n.to_be_bytes());
            tx.send_datagram(Bytes::from(payload)).unwrap();
            if n % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        receiver.await.unwrap();
    }

    // A stream message and its reply.
    let server = tokio::spawn({
        let ba = ba.clone();
        async move {
            let (mut send, mut recv) = ba.accept_bi().await.unwrap();
            let msg = recv.read_to_end(1 << 16).await.unwrap();
            send.write_all(&msg.iter().rev().copied().collect::<Vec<_>>())
                .await
                .unwrap();
            send.finish().unwrap();
            msg
        }
    });
    let (mut send, mut recv) = ab.open_bi().await.unwrap();
    send.write_all(b"hello over a stream").await.unwrap();
    send.finish().unwrap();
    let reply = recv.read_to_end(1 << 16).await.unwrap();
    assert_eq!(server.await.unwrap(), b"hello over a stream");
    assert_eq!(reply, b"maerts a revo olleh");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn unlisted_client_is_refused_with_an_error() {
    let (ka, kb, stranger) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let b = allowlisted_node(&kb, &[&ka]);
    // The stranger allows b, but b does not allow the stranger.
    let s = allowlisted_node(&stranger, &[&kb]);
    let result = tokio::time::timeout(Duration::from_secs(5), s.connect(kb.peer_id(), &[addr(&b)]))
        .await
        .expect("refusal arrives as an error, not a hang");
    match result {
        Err(ConnectError::Refused { peer, .. }) => assert_eq!(peer, kb.peer_id()),
        other => panic!("expected Refused, got {other:?}"),
    }
    // b never hands the stranger's connection to the application.
    assert!(tokio::time::timeout(Duration::from_millis(300), b.accept())
        .await
        .is_err());
    assert!(
        b.stats()
            .handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn unlisted_server_is_refused_by_the_client() {
    // a dials b's key at an address where a stranger listens: a's verifier
    // refuses the stranger's key and reports both keys.
    let (ka, kb, stranger) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let a = allowlisted_node(&ka, &[&kb]);
    let s = allowlisted_node(&stranger, &[&ka]);
    let result = a.connect(kb.peer_id(), &[addr(&s)]).await;
    match result {
        Err(ConnectError::WrongKey {
            expected,
            presented,
            ..
        }) => {
            assert_eq!(expected, kb.peer_id());
            assert_eq!(presented, stranger.peer_id());
            let text = ConnectError::WrongKey {
                addr: addr(&s),
                expected,
                presented,
            }
            .to_string();
            assert!(
                text.contains(&kb.peer_id().to_string())
                    && text.contains(&stranger.peer_id().to_string())
            );
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), s.accept())
        .await
        .is_err());
}

#[tokio::test]
async fn first_reachable_address_wins() {
    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = allowlisted_node(&ka, &[&kb]);
    let b = allowlisted_node(&kb, &[&ka]);
    // A dead address first (nothing listens there), then the real one.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let conn = a.connect(kb.peer_id(), &[dead, addr(&b)]).await.unwrap();
    assert_eq!(conn.remote_address().port(), addr(&b).port());
}
