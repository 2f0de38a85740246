//! Fuzzes the raw UDP frame parsers: classify, relay, probe, probe answer,
//! address challenge, observe request (and its answer) and observe reply.
#![no_main]

use std::net::SocketAddr;

use antq::proto::raw::{
    classify, encode_relay_header, parse_raw, parse_relay, AddressChallenge, ObserveReply,
    ObserveRequest, PacketClass, Probe, ProbeKind, RawFrame, RelayHeader,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(&first) = data.first() else {
        assert!(parse_raw(data).is_err());
        return;
    };
    let class = classify(first);
    let raw = parse_raw(data);
    if class == PacketClass::Quic {
        assert!(raw.is_err(), "QUIC packet parsed as raw frame");
    }

    if let Ok((channel, payload)) = parse_relay(data) {
        assert_eq!(class, PacketClass::Raw);
        assert_eq!(raw, Ok(RawFrame::Relay { channel, payload }));
        let mut header = [0; RelayHeader::LEN];
        encode_relay_header(channel, &mut header);
        assert_eq!(&data[..RelayHeader::LEN], &header);
    }

    if let Ok(probe) = Probe::decode(data) {
        assert_eq!(raw, Ok(RawFrame::Probe(probe)));
        let mut out = Vec::new();
        probe.encode(data.len(), &mut out);
        assert_eq!(out.len(), data.len().clamp(Probe::LEN, Probe::MAX_LEN));
        assert_eq!(Probe::decode(&out), Ok(probe));

        let mut ack = Vec::new();
        let pad = usize::from(first) * 40;
        match Probe::answer(data, pad, &mut ack) {
            Ok(answered) => {
                assert_eq!(probe.kind, ProbeKind::Probe);
                assert_eq!(answered, probe);
                assert!(ack.len() <= data.len(), "ACK larger than probe");
                assert_eq!(Probe::decode(&ack), Ok(probe.ack()));
            }
            Err(_) => {
                assert_eq!(probe.kind, ProbeKind::Ack);
                assert!(ack.is_empty());
            }
        }
    }

    if let Ok(challenge) = AddressChallenge::decode(data) {
        assert_eq!(raw, Ok(RawFrame::AddressChallenge(challenge)));
        assert_eq!(challenge.to_bytes().as_slice(), data);
    }

    if let Ok(request) = ObserveRequest::decode(data) {
        assert_eq!(raw, Ok(RawFrame::ObserveRequest(request)));
        assert!(data.len() >= ObserveRequest::MIN_LEN);
        assert_eq!(
            request.to_bytes()[..17],
            data[..17],
            "token re-encodes to the input"
        );
        // The longest reply (IPv6) is never larger than the request.
        let observed: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let mut reply = Vec::new();
        assert_eq!(ObserveRequest::answer(data, observed, &mut reply), Ok(request));
        assert!(reply.len() <= data.len(), "reply larger than request");
        assert_eq!(
            ObserveReply::decode(&reply),
            Ok(ObserveReply {
                token: request.token,
                observed
            })
        );
    } else {
        let mut reply = Vec::new();
        let observed: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert!(ObserveRequest::answer(data, observed, &mut reply).is_err());
        assert!(reply.is_empty(), "a refused request got an answer");
    }

    if let Ok(reply) = ObserveReply::decode(data) {
        assert_eq!(raw, Ok(RawFrame::ObserveReply(reply)));
        let mut out = Vec::new();
        assert_eq!(reply.encode(&mut out), data.len());
        assert_eq!(out, data, "a reply re-encodes to its input");
    }
});
