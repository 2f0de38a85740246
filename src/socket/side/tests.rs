//! Side sockets on loopback: raw frames both ways tagged with their
//! socket, then one adopted as a path that quinn sends to and receives
//! from under its virtual address; the others closed.

use std::io::IoSliceMut;
use std::net::UdpSocket;
use std::time::Duration;

use quinn::udp::RecvMeta;
use quinn::AsyncUdpSocket as _;

use super::*;
use crate::socket::bind_udp;

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// The next packet quinn would get from `socket`.
async fn quinn_recv(socket: &AntqSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let mut meta = [RecvMeta::default()];
    let n = tokio::time::timeout(
        Duration::from_secs(2),
        std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            socket.poll_recv(cx, &mut bufs, &mut meta)
        }),
    )
    .await
    .expect("quinn gets the packet")
    .unwrap();
    assert_eq!(n, 1);
    (canonical(meta[0].addr), buf[..meta[0].len].to_vec())
}

#[tokio::test]
async fn raw_frames_by_socket_then_one_adopted_as_a_quic_path() {
    let main = AntqSocket::new(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
    let remote = peer();
    let remote_addr = remote.local_addr().unwrap();
    let mut group = main.open_side_sockets(4, remote_addr).unwrap();
    assert_eq!(group.len(), 4);
    assert!(main
        .open_side_sockets(MAX_SIDE_SOCKETS + 1, remote_addr)
        .is_err());
    let mut raw = group.take_raw_receiver().unwrap();
    assert!(group.try_send_raw(5, remote_addr, &[0x02], None).is_err());

    // A raw frame from socket 3 leaves from its own port; the answer comes
    // back tagged 3. A QUIC-looking packet to a socket that is no path is
    // dropped and counted.
    group
        .try_send_raw(3, remote_addr, &[0x02, 1, 2], Some(2))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = remote.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x02, 1, 2]);
    assert_eq!(from.port(), group.local_addr(3).unwrap().port());
    remote.send_to(&[0x40, 9], from).unwrap();
    remote.send_to(&[0x03, 7], from).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), raw.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.socket, got.packet.from), (3, remote_addr));
    assert_eq!(&got.packet.data[..], &[0x03, 7]);
    assert_eq!(main.stats().side_dropped.load(Ordering::Relaxed), 1);
    assert_eq!(main.stats().side_sockets_opened.load(Ordering::Relaxed), 4);

    // Adopted: quinn's packets to the virtual address leave socket 3 for
    // the remote, segment by segment; the remote's come back from the
    // virtual address. Raw frames still reach the attempt, tagged 3.
    let side3 = group.local_addr(3).unwrap();
    let side1 = group.local_addr(1).unwrap();
    let v = group.adopt(3, remote_addr).unwrap();
    assert!(is_side_addr(v) && crate::socket::is_virtual(v));
    assert_eq!(main.side_remote(v), Some(remote_addr));
    let contents = [0x41u8, 1, 2, 0x42, 3, 4];
    main.try_send(&Transmit {
        destination: v,
        ecn: None,
        contents: &contents,
        segment_size: Some(3),
        src_ip: None,
    })
    .unwrap();
    for want in [[0x41u8, 1, 2], [0x42, 3, 4]] {
        let (n, from) = remote.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (&want[..], side3.port()));
    }
    remote.send_to(&[0x40, 5, 6], side3).unwrap();
    assert_eq!(quinn_recv(&main).await, (v, vec![0x40, 5, 6]));
    assert_eq!(main.stats().side_in.load(Ordering::Relaxed), 1);
    remote.send_to(&[0x03, 8], side3).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), raw.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.socket, &got.packet.data[..]), (3, &[0x03u8, 8][..]));
    // A stranger on the path: dropped.
    let stranger = peer();
    stranger.send_to(&[0x40, 1], side3).unwrap();
    // The group's other sockets are closed: nothing listens on socket 1's
    // port any more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(main.stats().side_dropped.load(Ordering::Relaxed), 2);
    assert!(UdpSocket::bind(side1).is_ok(), "socket 1 still open");

    // Removed: packets to the virtual address go nowhere, counted.
    main.remove_side_path(v);
    assert_eq!(main.side_remote(v), None);
    main.try_send(&Transmit {
        destination: v,
        ecn: None,
        contents: &[0x40],
        segment_size: None,
        src_ip: None,
    })
    .unwrap();
    assert_eq!(main.stats().side_unroutable.load(Ordering::Relaxed), 1);
}
