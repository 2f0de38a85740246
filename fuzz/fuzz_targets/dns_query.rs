//! Fuzzes the names responder's query path (`tunnel::dns::answer`).
//!
//! Any bytes, over UDP and TCP: never a panic; an answer only to what has
//! a DNS header of a query (12 bytes, QR clear) within the size limit;
//! every answer is a response with the query's ID and the AA bit, parses
//! back, and fits 512 bytes over UDP (1232 with EDNS). Answers come only
//! from the table: an A or AAAA record holds an address of the name asked.
#![no_main]

use std::net::IpAddr;

use antq::tunnel::dns::answer::{MAX_QUERY, MAX_UDP_RESPONSE};
use antq::tunnel::dns::{answer, LocalNames, Names, Transport};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;
use libfuzzer_sys::fuzz_target;

fn table() -> Names {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Names::build(
        &LocalNames {
            own: Some(("a".into(), vec![ip("10.90.0.1"), ip("fd90::1")])),
            peers: vec![
                ("b".into(), vec![ip("10.90.0.2"), ip("fd90::2")]),
                ("db1".into(), vec![ip("10.90.0.3")]),
            ],
        },
        [],
    )
}

fuzz_target!(|data: &[u8]| {
    let names = table();
    for transport in [Transport::Udp, Transport::Tcp] {
        let reply = answer(data, &names, transport);
        let Some(bytes) = reply.bytes else { continue };
        assert!(data.len() >= 12 && data.len() <= MAX_QUERY);
        assert_eq!(data[2] & 0x80, 0, "a response was answered");
        if transport == Transport::Udp {
            assert!(bytes.len() <= usize::from(MAX_UDP_RESPONSE), "{}", bytes.len());
        }
        let m = Message::from_vec(&bytes).expect("our answer parses");
        assert_eq!(m.metadata.id, u16::from_be_bytes([data[0], data[1]]));
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative);
        for record in &m.answers {
            let label = record
                .name
                .iter()
                .next()
                .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                .unwrap_or_default();
            let known = names.lookup(&label).expect("an answer for a known name");
            let ip = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("answered {other:?}"),
            };
            assert!(known.contains(&ip));
        }
    }
});
