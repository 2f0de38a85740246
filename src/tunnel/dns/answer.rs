//! The responder's logic, without I/O: query bytes and the names table in,
//! response bytes (or nothing) and a counted [`Outcome`] out. The wire
//! format is hickory-proto's; nothing here parses DNS by hand.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::names::Names;

/// The zone answered: `NAME.antq.`.
pub const ZONE: &str = "antq";

/// Time to live of every answer, seconds. Names follow membership (members
/// join, leave, are revoked, are given new keys): a resolver's cache
/// should not hold an address much longer than that takes to show, and a
/// lookup a minute per name and client costs nothing.
pub const TTL: u32 = 60;

/// Largest query taken: one question (a name is at most 255 bytes) with an
/// EDNS record fits; anything larger is not a query of ours and is dropped.
pub const MAX_QUERY: usize = 512;

/// Largest UDP response we send to a client that advertises more with EDNS
/// (the DNS flag day 2020 size: no fragmentation on any usual path).
pub const MAX_UDP_RESPONSE: u16 = 1232;

/// Largest UDP response to a client without EDNS (RFC 1035).
const CLASSIC_UDP_RESPONSE: u16 = 512;

/// How the query came: the largest response differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: 512 bytes, or what EDNS advertises up to
    /// [`MAX_UDP_RESPONSE`]; larger answers are sent truncated (TC).
    Udp,
    /// A TCP stream: up to 65535 bytes.
    Tcp,
}

/// What became of one query, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Addresses answered.
    Answer,
    /// A known name without an address of the type asked (NOERROR, no
    /// answer).
    NoData,
    /// An unknown name under `antq.`.
    NxDomain,
    /// A name outside `antq.` or a class other than IN: we forward nothing.
    Refused,
    /// A DNS header with a question we cannot read or more than one.
    FormErr,
    /// An opcode other than QUERY.
    NotImp,
    /// Dropped: not a DNS query at all (shorter than a header, or a
    /// response).
    Malformed,
    /// Dropped: larger than [`MAX_QUERY`].
    TooLarge,
    /// Dropped: over the rate limit (counted by the I/O part).
    RateLimited,
    /// Dropped: from an address that is neither ours, nor a peer's, nor
    /// loopback (counted by the I/O part).
    ForeignSource,
    /// Dropped: the response could not be encoded (a bug; logged).
    EncodeFailed,
}

impl Outcome {
    /// Every outcome, in the order of the counters.
    pub const ALL: [Outcome; 11] = [
        Outcome::Answer,
        Outcome::NoData,
        Outcome::NxDomain,
        Outcome::Refused,
        Outcome::FormErr,
        Outcome::NotImp,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::RateLimited,
        Outcome::ForeignSource,
        Outcome::EncodeFailed,
    ];

    /// The metric label (`result="..."`) and status key.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answer => "answer",
            Outcome::NoData => "nodata",
            Outcome::NxDomain => "nxdomain",
            Outcome::Refused => "refused",
            Outcome::FormErr => "formerr",
            Outcome::NotImp => "notimp",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::RateLimited => "rate_limited",
            Outcome::ForeignSource => "foreign_source",
            Outcome::EncodeFailed => "encode_failed",
        }
    }
}

/// The answer to one query.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// What it was.
    pub outcome: Outcome,
    /// The response to send; `None`: send nothing.
    pub bytes: Option<Vec<u8>>,
}

impl Reply {
    fn dropped(outcome: Outcome) -> Self {
        Self {
            outcome,
            bytes: None,
        }
    }
}

/// Answers `query` from `names`: A and AAAA (and ANY: both) of
/// `NAME.antq.`, case-insensitively; NXDOMAIN for another name under
/// `antq.`; REFUSED outside it; FORMERR, NOTIMP for what is DNS but not a
/// query we take; nothing for what is not DNS. Never panics on any input
/// (fuzz target `dns_query`).
pub fn answer(query: &[u8], names: &Names, transport: Transport) -> Reply {
    if query.len() > MAX_QUERY {
        return Reply::dropped(Outcome::TooLarge);
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
        return Reply::dropped(Outcome::Malformed);
    };
    // Never answer a response: two responders could echo each other.
    if header.metadata.message_type != MessageType::Query {
        return Reply::dropped(Outcome::Malformed);
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.authoritative = true;
    let mut response = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    response.metadata = metadata;
    if header.metadata.op_code != OpCode::Query {
        return encode(
            response,
            ResponseCode::NotImp,
            Outcome::NotImp,
            transport,
            None,
        );
    }
    let formerr = |response| {
        encode(
            response,
            ResponseCode::FormErr,
            Outcome::FormErr,
            transport,
            None,
        )
    };
    let c = header.counts;
    // One question; no answers or authority in a query; at most an OPT and
    // a signature in the additional section. Checked before hickory reads
    // the rest, so a header cannot make it reserve room for 65535 records.
    if c.queries != 1 || c.answers != 0 || c.authorities != 0 || c.additionals > 2 {
        return formerr(response);
    }
    let Ok(request) = Message::from_vec(query) else {
        return formerr(response);
    };
    let Some(question) = request.queries.first() else {
        return formerr(response);
    };
    response.add_query(question.clone());
    let client_size = request.edns.as_ref().map(Edns::max_payload);
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_RESPONSE);
        if edns.version() != 0 {
            ours.set_rcode_high(ResponseCode::BADVERS.high());
            response.set_edns(ours);
            return encode(
                response,
                ResponseCode::BADVERS,
                Outcome::FormErr,
                transport,
                client_size,
            );
        }
        response.set_edns(ours);
    }
    let (code, outcome) = resolve(
        question.name(),
        question.query_type(),
        question.query_class(),
        names,
        &mut response,
    );
    encode(response, code, outcome, transport, client_size)
}

/// Looks `name` up and adds the answers to `response`.
fn resolve(
    name: &Name,
    qtype: RecordType,
    class: DNSClass,
    names: &Names,
    response: &mut Message,
) -> (ResponseCode, Outcome) {
    let labels: Vec<&[u8]> = name.iter().collect();
    let in_zone = labels
        .last()
        .is_some_and(|l| l.eq_ignore_ascii_case(ZONE.as_bytes()));
    if !in_zone || !matches!(class, DNSClass::IN | DNSClass::ANY) {
        return (ResponseCode::Refused, Outcome::Refused);
    }
    // `antq.` itself exists (it holds the names) and has no address.
    if labels.len() == 1 {
        return (ResponseCode::NoError, Outcome::NoData);
    }
    let found = match labels.as_slice() {
        [label, _] => std::str::from_utf8(label)
            .ok()
            .map(str::to_ascii_lowercase)
            .and_then(|l| names.lookup(&l)),
        _ => None,
    };
    let Some(addresses) = found else {
        return (ResponseCode::NXDomain, Outcome::NxDomain);
    };
    let wanted = |ip: &IpAddr| match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    };
    for ip in addresses.iter().filter(|ip| wanted(ip)) {
        let data = match *ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        response.add_answer(Record::from_rdata(name.clone(), TTL, data));
    }
    if response.answers.is_empty() {
        (ResponseCode::NoError, Outcome::NoData)
    } else {
        (ResponseCode::NoError, Outcome::Answer)
    }
}

/// Encodes `response` with `code`; over the transport's size it goes
/// truncated (TC, the question only) so that the client retries over TCP.
fn encode(
    mut response: Message,
    code: ResponseCode,
    outcome: Outcome,
    transport: Transport,
    client_size: Option<u16>,
) -> Reply {
    response.metadata.response_code = code;
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(client_size.map_or(CLASSIC_UDP_RESPONSE, |s| {
            s.clamp(CLASSIC_UDP_RESPONSE, MAX_UDP_RESPONSE)
        })),
    };
    let bytes = response.to_vec().and_then(|b| {
        if b.len() > limit {
            response.truncate().to_vec()
        } else {
            Ok(b)
        }
    });
    match bytes {
        Ok(bytes) => Reply {
            outcome,
            bytes: Some(bytes),
        },
        Err(error) => {
            tracing::debug!(%error, "DNS response not encoded");
            Reply::dropped(Outcome::EncodeFailed)
        }
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
