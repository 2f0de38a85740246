//! The responder's answers, query by query.

use super::*;
use crate::tunnel::dns::names::LocalNames;
use hickory_proto::op::Query;

fn names() -> Names {
    let ips = |l: &[&str]| {
        l.iter()
            .map(|a| a.parse().unwrap())
            .collect::<Vec<IpAddr>>()
    };
    Names::build(
        &LocalNames {
            own: Some(("a".into(), ips(&["10.90.0.1", "fd90::1"]))),
            peers: vec![
                ("b".into(), ips(&["10.90.0.2", "fd90::2"])),
                ("v4only".into(), ips(&["10.90.0.3"])),
                (
                    "many".into(),
                    (1..=200).map(|i| IpAddr::from([10, 91, 0, i])).collect(),
                ),
            ],
        },
        [],
    )
}

fn query_for(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn ask(query: &Message) -> (Reply, Message) {
    let reply = answer(&query.to_vec().unwrap(), &names(), Transport::Udp);
    let bytes = reply.bytes.clone().expect("an answer");
    let response = Message::from_vec(&bytes).unwrap();
    assert_eq!(response.metadata.id, query.metadata.id);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    assert!(response.metadata.authoritative);
    assert!(!response.metadata.recursion_available);
    assert_eq!(
        response.metadata.recursion_desired,
        query.metadata.recursion_desired
    );
    (reply, response)
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| {
            assert_eq!(r.ttl, TTL);
            match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                other => panic!("unexpected record {other:?}"),
            }
        })
        .collect()
}

#[test]
fn a_and_aaaa_answer_the_names_addresses_of_that_family() {
    let (r, m) = ask(&query_for("b.antq.", RecordType::A));
    assert_eq!(
        (r.outcome, m.metadata.response_code),
        (Outcome::Answer, ResponseCode::NoError)
    );
    assert_eq!(addresses(&m), ["10.90.0.2"]);
    assert_eq!(m.queries[0].name().to_ascii(), "b.antq.");
    let (r, m) = ask(&query_for("b.antq.", RecordType::AAAA));
    assert_eq!(r.outcome, Outcome::Answer);
    assert_eq!(addresses(&m), ["fd90::2"]);
    let (_, m) = ask(&query_for("a.antq.", RecordType::ANY));
    assert_eq!(addresses(&m), ["10.90.0.1", "fd90::1"]);
}

#[test]
fn names_match_case_insensitively_and_the_question_is_echoed() {
    let (r, m) = ask(&query_for("B.AnTq.", RecordType::A));
    assert_eq!(r.outcome, Outcome::Answer);
    assert_eq!(addresses(&m), ["10.90.0.2"]);
    // 0x20 randomisation: the client checks its own spelling comes back.
    assert_eq!(m.queries[0].name().to_ascii(), "B.AnTq.");
    assert_eq!(m.answers[0].name.to_ascii(), "B.AnTq.");
}

#[test]
fn a_known_name_without_that_family_or_type_is_nodata() {
    for (name, qtype) in [
        ("v4only.antq.", RecordType::AAAA),
        ("b.antq.", RecordType::MX),
        ("b.antq.", RecordType::TXT),
        ("antq.", RecordType::A),
    ] {
        let (r, m) = ask(&query_for(name, qtype));
        assert_eq!(r.outcome, Outcome::NoData, "{name} {qtype}");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
}

#[test]
fn unknown_names_under_antq_are_nxdomain() {
    for name in ["nosuch.antq.", "x.b.antq.", "b.c.antq."] {
        let (r, m) = ask(&query_for(name, RecordType::A));
        assert_eq!(r.outcome, Outcome::NxDomain, "{name}");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
    }
}

#[test]
fn names_outside_antq_and_other_classes_are_refused() {
    for name in ["example.com.", "b.antq.example.", ".", "antqx."] {
        let (r, m) = ask(&query_for(name, RecordType::A));
        assert_eq!(r.outcome, Outcome::Refused, "{name}");
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    let mut q = query_for("b.antq.", RecordType::TXT);
    q.queries[0].set_query_class(DNSClass::CH);
    let (r, _) = ask(&q);
    assert_eq!(r.outcome, Outcome::Refused);
}

#[test]
fn questions_other_than_one_are_formerr() {
    let mut two = query_for("b.antq.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("a.antq.").unwrap(),
        RecordType::A,
    ));
    let mut none = query_for("b.antq.", RecordType::A);
    none.queries.clear();
    for q in [two, none] {
        let (r, m) = ask(&q);
        assert_eq!(r.outcome, Outcome::FormErr);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.answers.is_empty());
    }
}

#[test]
fn other_opcodes_are_notimp() {
    let mut q = query_for("b.antq.", RecordType::A);
    q.metadata.op_code = OpCode::Update;
    let (r, m) = ask(&q);
    assert_eq!(r.outcome, Outcome::NotImp);
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn what_is_not_a_query_gets_nothing() {
    let names = names();
    let good = query_for("b.antq.", RecordType::A).to_vec().unwrap();
    // Shorter than a header; empty.
    for bytes in [&good[..11], &[][..], &[0xff; 5][..]] {
        assert_eq!(
            answer(bytes, &names, Transport::Udp),
            Reply::dropped(Outcome::Malformed)
        );
    }
    // A response (QR set) is never answered.
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(
        answer(&response, &names, Transport::Udp).outcome,
        Outcome::Malformed
    );
    // Too large, however good the start.
    let mut big = good.clone();
    big.resize(MAX_QUERY + 1, 0);
    assert_eq!(
        answer(&big, &names, Transport::Udp),
        Reply::dropped(Outcome::TooLarge)
    );
}

#[test]
fn a_header_with_a_broken_question_is_formerr() {
    let good = query_for("b.antq.", RecordType::A).to_vec().unwrap();
    // The question cut short at every length; a label pointing at itself.
    for cut in 12..good.len() {
        let r = answer(&good[..cut], &names(), Transport::Udp);
        assert_eq!(r.outcome, Outcome::FormErr, "cut at {cut}");
        let m = Message::from_vec(&r.bytes.unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        answer(&looped, &names(), Transport::Udp).outcome,
        Outcome::FormErr
    );
    // A header claiming 65535 questions does not get them read.
    let mut many = good.clone();
    many[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        answer(&many, &names(), Transport::Udp).outcome,
        Outcome::FormErr
    );
}

#[test]
fn edns_is_answered_with_edns_and_a_bad_version_refused() {
    let mut q = query_for("b.antq.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns.clone());
    let (r, m) = ask(&q);
    assert_eq!(r.outcome, Outcome::Answer);
    assert_eq!(
        m.edns.as_ref().map(Edns::max_payload),
        Some(MAX_UDP_RESPONSE)
    );
    edns.set_version(1);
    q.set_edns(edns);
    let (_, m) = ask(&q);
    // 16 (BADVERS; hickory reads 16 back as its twin BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.map(|e| e.version()), Some(0));
}

#[test]
fn an_answer_too_large_for_udp_is_truncated_and_whole_over_tcp() {
    let q = query_for("many.antq.", RecordType::A);
    let (r, m) = ask(&q);
    assert_eq!(r.outcome, Outcome::Answer);
    assert!(m.metadata.truncation && m.answers.is_empty());
    assert!(r.bytes.unwrap().len() <= 512);
    let r = answer(&q.to_vec().unwrap(), &names(), Transport::Tcp);
    let m = Message::from_vec(&r.bytes.unwrap()).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 200);
}

#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    let names = names();
    let good = query_for("b.antq.", RecordType::A).to_vec().unwrap();
    proptest!(ProptestConfig::with_cases(2000), |(bytes in proptest::collection::vec(any::<u8>(), 0..600), flip in 0usize..64, byte in any::<u8>())| {
        let _ = answer(&bytes, &names, Transport::Udp);
        let mut mutated = good.clone();
        let i = flip % mutated.len();
        mutated[i] = byte;
        let r = answer(&mutated, &names, Transport::Udp);
        if let Some(b) = r.bytes {
            prop_assert!(b.len() <= 512);
            prop_assert!(Message::from_vec(&b).is_ok());
        }
    });
}
