use super::*;
use crate::proto::data::{DataHeader, DataKind};

fn pair() -> (DataKeys, DataKeys) {
    let mut material = [0u8; EXPORTER_LEN];
    for (i, b) in material.iter_mut().enumerate() {
        *b = i as u8;
    }
    (
        DataKeys::from_exporter(&material, true),
        DataKeys::from_exporter(&material, false),
    )
}

fn open<'a>(opener: &mut Opener, frame: &'a mut [u8]) -> Result<&'a [u8], DataError> {
    let (header, _) = DataHeader::decode(frame).expect("a data frame");
    opener.open(header, &mut frame[DataHeader::LEN..])
}

#[test]
fn each_end_opens_what_the_other_sealed() {
    let (mut client, mut server) = pair();
    let mut out = Vec::new();
    let n = client
        .sealer
        .seal(DataKind::Datagram, b"\x45hello", &mut out)
        .unwrap();
    assert_eq!(n, 6 + DataHeader::OVERHEAD);
    let (header, _) = DataHeader::decode(&out).unwrap();
    assert_eq!(
        header.receiver, server.local_index,
        "addressed to the server"
    );
    assert_eq!(header.counter, 0);
    assert_eq!(
        open(&mut server.opener, &mut out.clone()),
        Ok(&b"\x45hello"[..])
    );
    // Not by the sender's own opener (another direction's key).
    assert_eq!(open(&mut client.opener, &mut out), Err(DataError::Auth));

    let mut back = Vec::new();
    server
        .sealer
        .seal(DataKind::Datagram, b"\x60back", &mut back)
        .unwrap();
    assert_eq!(
        DataHeader::decode(&back).unwrap().0.receiver,
        client.local_index
    );
    assert_eq!(open(&mut client.opener, &mut back), Ok(&b"\x60back"[..]));
}

#[test]
fn derivation_vector() {
    // Pins the key schedule: exporter bytes 0..72, the client's first frame.
    let (mut client, server) = pair();
    assert_eq!(server.local_index, 0x4041_4243);
    assert_eq!(client.local_index, 0x4445_4647);
    let mut out = Vec::new();
    client
        .sealer
        .seal(DataKind::Datagram, &[0x45, 0, 0, 0], &mut out)
        .unwrap();
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, include_str!("vector_frame.txt").trim());
}

#[test]
fn tampering_replays_and_old_frames_are_refused() {
    let (mut client, mut server) = pair();
    let mut frames = Vec::new();
    for i in 0..3u8 {
        let mut out = Vec::new();
        client
            .sealer
            .seal(DataKind::Datagram, &[0x45, i], &mut out)
            .unwrap();
        frames.push(out);
    }
    for (at, _) in frames[0].iter().enumerate().skip(1) {
        let mut bad = frames[0].clone();
        bad[at] ^= 0x01;
        assert!(
            open(&mut server.opener, &mut bad).is_err(),
            "byte {at} flipped"
        );
    }
    // Out of order, then a replay of each.
    for i in [2, 0, 1] {
        assert_eq!(
            open(&mut server.opener, &mut frames[i].clone()),
            Ok(&[0x45, i as u8][..])
        );
    }
    for f in &frames {
        assert_eq!(
            open(&mut server.opener, &mut f.clone()),
            Err(DataError::Replayed)
        );
    }
}

#[test]
fn a_forged_frame_does_not_move_the_window() {
    let (mut client, mut server) = pair();
    let mut forged = DataHeader {
        kind: DataKind::Datagram,
        receiver: server.local_index,
        counter: 5_000,
    }
    .to_bytes()
    .to_vec();
    forged.extend_from_slice(&[0; 20]);
    assert_eq!(open(&mut server.opener, &mut forged), Err(DataError::Auth));
    let mut first = Vec::new();
    client
        .sealer
        .seal(DataKind::Datagram, &[0x45], &mut first)
        .unwrap();
    assert_eq!(open(&mut server.opener, &mut first), Ok(&[0x45][..]));
}

#[test]
fn keys_change_every_epoch_and_reordering_across_it_works() {
    let (mut client, mut server) = pair();
    let per_epoch = 1u64 << EPOCH_BITS;
    client.sealer.counter = per_epoch - 2;
    let mut frames = Vec::new();
    for _ in 0..4 {
        let mut out = Vec::new();
        client
            .sealer
            .seal(DataKind::Datagram, &[0x45], &mut out)
            .unwrap();
        frames.push(out);
    }
    // Frames of epoch 0 then 1, delivered 1 first; the receiver starts at
    // epoch 0 and has the next epoch's key at hand.
    server.opener.window.commit(per_epoch - 3);
    for i in [2, 0, 3, 1] {
        assert_eq!(
            open(&mut server.opener, &mut frames[i].clone()),
            Ok(&[0x45][..]),
            "{i}"
        );
    }
    assert_eq!(server.opener.current, 1);
    // Same counter, same bytes? No: the epoch-1 key differs from epoch 0's.
    let (mut c2, _) = pair();
    c2.sealer.counter = per_epoch;
    let mut again = Vec::new();
    c2.sealer
        .seal(DataKind::Datagram, &[0x45], &mut again)
        .unwrap();
    assert_eq!(again, frames[2]);
    let k0 = Secret::new(&[1; 32]).key(0);
    let k1 = Secret::new(&[1; 32]).key(1);
    let mut a = vec![0u8; 16];
    let mut b = vec![0u8; 16];
    let ta = k0
        .seal_in_place_separate_tag(nonce(7), Aad::empty(), &mut a)
        .unwrap();
    let tb = k1
        .seal_in_place_separate_tag(nonce(7), Aad::empty(), &mut b)
        .unwrap();
    assert_ne!((a, ta.as_ref().to_vec()), (b, tb.as_ref().to_vec()));
}

#[test]
fn epochs_too_far_away_are_refused() {
    let (mut client, mut server) = pair();
    client.sealer.counter = 2 << EPOCH_BITS;
    let mut out = Vec::new();
    client
        .sealer
        .seal(DataKind::Datagram, &[0x45], &mut out)
        .unwrap();
    assert_eq!(open(&mut server.opener, &mut out), Err(DataError::Epoch));
}

#[test]
fn the_last_counter_ends_the_session() {
    let (mut client, _) = pair();
    client.sealer.counter = MAX_COUNTER;
    let mut out = Vec::new();
    assert!(client
        .sealer
        .seal(DataKind::Datagram, &[0x45], &mut out)
        .is_ok());
    assert_eq!(
        client.sealer.seal(DataKind::Datagram, &[0x45], &mut out),
        Err(DataError::Exhausted)
    );
}
