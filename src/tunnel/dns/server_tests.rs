//! The responder's sockets on loopback (port 0: a free port).

use super::*;
use crate::tunnel::dns::names::LocalNames;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

struct TestZone {
    names: Arc<Names>,
    stats: DnsStats,
    /// Whether loopback may ask (every test source is loopback: a second
    /// loopback address is not a distinct source on every OS).
    allow: bool,
}

impl Zone for TestZone {
    fn names(&self) -> Arc<Names> {
        self.names.clone()
    }
    fn may_ask(&self, source: IpAddr) -> bool {
        self.allow && source.is_loopback()
    }
    fn stats(&self) -> &DnsStats {
        &self.stats
    }
}

async fn start() -> (Arc<TestZone>, Responder) {
    start_allowing(true).await
}

async fn start_allowing(allow: bool) -> (Arc<TestZone>, Responder) {
    let zone = Arc::new(TestZone {
        allow,
        names: Arc::new(Names::build(
            &LocalNames {
                own: None,
                peers: vec![("b".into(), vec!["10.90.0.2".parse().unwrap()])],
            },
            [],
        )),
        stats: DnsStats::default(),
    });
    let responder = Responder::start(zone.clone(), &[IpAddr::from([127, 0, 0, 1])], 0).await;
    assert_eq!(responder.listen.len(), 1);
    (zone, responder)
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

async fn udp_ask(from: &str, to: SocketAddr, bytes: &[u8]) -> Option<Message> {
    let socket = UdpSocket::bind(from).await.unwrap();
    socket.send_to(bytes, to).await.unwrap();
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

#[tokio::test]
async fn udp_answers_survive_garbage_and_count() {
    let (zone, r) = start().await;
    let to = r.listen[0];
    let m = udp_ask("127.0.0.1:0", to, &query("b.antq.")).await.unwrap();
    assert_eq!(m.answers.len(), 1);
    let m = udp_ask("127.0.0.1:0", to, &query("nosuch.antq."))
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    for garbage in [&[1u8, 2, 3][..], &[0xff; 700][..]] {
        assert!(udp_ask("127.0.0.1:0", to, garbage).await.is_none());
    }
    // Twelve zero bytes: a query header asking no question.
    let m = udp_ask("127.0.0.1:0", to, &[0; 12]).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let m = udp_ask("127.0.0.1:0", to, &query("B.antq.")).await.unwrap();
    assert_eq!(m.answers.len(), 1);
    let s = &zone.stats;
    assert_eq!(s.get(Outcome::Answer), 2);
    assert_eq!(s.get(Outcome::NxDomain), 1);
    assert_eq!(s.get(Outcome::Malformed), 1);
    assert_eq!(s.get(Outcome::TooLarge), 1);
    assert_eq!(s.get(Outcome::FormErr), 1);
}

#[tokio::test]
async fn a_foreign_source_gets_nothing() {
    let (zone, r) = start_allowing(false).await;
    assert!(udp_ask("127.0.0.1:0", r.listen[0], &query("b.antq."))
        .await
        .is_none());
    assert_eq!(zone.stats.get(Outcome::ForeignSource), 1);
    // A TCP connection is closed at once.
    let mut tcp = TcpStream::connect(r.listen[0]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(zone.stats.get(Outcome::ForeignSource), 2);
    assert_eq!(zone.stats.get(Outcome::Answer), 0);
}

#[tokio::test]
async fn tcp_answers_length_prefixed_queries_on_one_connection() {
    let (zone, r) = start().await;
    let mut stream = TcpStream::connect(r.listen[0]).await.unwrap();
    for name in ["b.antq.", "example.com."] {
        let q = query(name);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        stream.write_all(&framed).await.unwrap();
        let n = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; n.into()];
        stream.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        match name {
            "b.antq." => assert_eq!(m.answers.len(), 1),
            _ => assert_eq!(m.metadata.response_code, ResponseCode::Refused),
        }
    }
    // A length over the limit closes the connection.
    stream.write_all(&[0xff, 0xff]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    assert_eq!(zone.stats.get(Outcome::Answer), 1);
    assert_eq!(zone.stats.get(Outcome::Refused), 1);
    assert_eq!(zone.stats.get(Outcome::TooLarge), 1);
}

#[tokio::test]
async fn one_source_is_held_to_its_rate() {
    let (zone, r) = start().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query("b.antq.");
    let sent = 5 * SOURCE_RATE as u64;
    let mut buf = [0u8; 1500];
    let mut answered = 0u64;
    // In batches small enough for the sockets' buffers: nothing is lost
    // on the way, every query is answered or counted as limited.
    for _ in 0..sent / 20 {
        for _ in 0..20 {
            socket.send_to(&q, r.listen[0]).await.unwrap();
        }
        while tokio::time::timeout(Duration::from_millis(50), socket.recv(&mut buf))
            .await
            .is_ok()
        {
            answered += 1;
        }
    }
    let limited = zone.stats.get(Outcome::RateLimited);
    // The burst (twice the rate), and what refilled while they were sent.
    assert!(answered >= 2 * SOURCE_RATE as u64, "{answered}");
    assert!(
        limited > 0 && answered + limited == sent,
        "{answered} + {limited}"
    );
}
