//! NAT mapping with one bootstrap (#18): the bootstrap's observe socket
//! answers `OBSERVE_REQUEST`s, within its limits; an overlay with one
//! bootstrap learns its mapping from it (endpoint-independent on loopback),
//! stays `Unknown` without it, and ignores replies it did not ask for.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use antq::bootstrap::{Bootstrap, BootstrapSettings, Limits, ObserveListen, TcpListen};
use antq::identity::Identity;
use antq::nat::MappingBehaviour;
use antq::proto::raw::{ObserveReply, ObserveRequest};

use crate::harness::{bootstrap, init_tracing, loopback, overlay, wait_for};

fn boot_with(observe: ObserveListen, limits: Limits) -> Bootstrap {
    Bootstrap::start(BootstrapSettings {
        identity: Identity::generate(),
        listen: loopback(),
        tcp_listen: TcpListen::Off,
        observe,
        relay: true,
        allowed_keys: None,
        limits,
    })
    .unwrap()
}

/// The value of `name{labels}` in a metrics text.
fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn observe_counter(boot: &Bootstrap, name: &str) -> u64 {
    boot.observe_stats()
        .unwrap()
        .events()
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bootstrap_tells_an_endpoint_independent_mapping() {
    init_tracing();
    let boot = bootstrap();
    let observe_at = boot.observe_local_addr().expect("observe socket on");
    assert_ne!(observe_at.port(), boot.local_addr().unwrap().port());
    assert_eq!(boot.status().observe_listen, Some(observe_at));
    let a = overlay(&Identity::generate(), &[], &boot);
    assert_eq!(a.nat_mapping(), MappingBehaviour::Unknown);
    let started = Instant::now();
    let took = wait_for(
        "nat_mapping EndpointIndependent",
        Duration::from_secs(5),
        || a.nat_mapping() == MappingBehaviour::EndpointIndependent,
    )
    .await;
    eprintln!(
        "one bootstrap: EndpointIndependent after {:.0} ms (from overlay start {:.0} ms)",
        took.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert!(observe_counter(&boot, "answered") >= 1);
    assert_eq!(observe_counter(&boot, "malformed"), 0);
    let text = a.metrics_text();
    assert_eq!(
        metric(&text, "antq_nat_mapping{kind=\"endpoint_independent\"}"),
        Some(1),
        "{text}"
    );
    assert!(metric(&text, "antq_nat_observe_total{event=\"learned\"}") >= Some(1));
    let boot_text = {
        let mut r = antq::metrics::Registry::new();
        boot.collect_metrics(&mut r);
        r.render()
    };
    assert!(
        metric(
            &boot_text,
            "antq_bootstrap_observe_requests_total{result=\"answered\"}"
        ) >= Some(1),
        "{boot_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_observe_socket_one_bootstrap_stays_unknown() {
    init_tracing();
    let boot = boot_with(ObserveListen::Off, Limits::default());
    assert_eq!(boot.observe_local_addr(), None);
    assert!(boot.status().observe.is_empty());
    let a = overlay(&Identity::generate(), &[], &boot);
    wait_for("observed address", Duration::from_secs(5), || {
        a.observed_addresses()[0].1.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.nat_mapping(), MappingBehaviour::Unknown);
    let text = a.metrics_text();
    assert_eq!(
        metric(&text, "antq_nat_observe_total{event=\"sent\"}"),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_nobody_asked_for_are_dropped() {
    init_tracing();
    let boot = bootstrap();
    let a = overlay(&Identity::generate(), &[], &boot);
    wait_for(
        "nat_mapping EndpointIndependent",
        Duration::from_secs(5),
        || a.nat_mapping() == MappingBehaviour::EndpointIndependent,
    )
    .await;
    // Someone else (not the observe socket) claims we are elsewhere; and a
    // reply "from" nowhere in particular with a random token.
    let liar = UdpSocket::bind(loopback()).unwrap();
    let to = a.local_addr().unwrap();
    for i in 0..5u8 {
        let mut reply = Vec::new();
        ObserveReply {
            token: [i; 16],
            observed: "203.0.113.9:4444".parse().unwrap(),
        }
        .encode(&mut reply);
        liar.send_to(&reply, to).unwrap();
    }
    wait_for("5 unmatched replies", Duration::from_secs(3), || {
        metric(
            &a.metrics_text(),
            "antq_nat_observe_total{event=\"unmatched\"}",
        ) == Some(5)
    })
    .await;
    assert_eq!(a.nat_mapping(), MappingBehaviour::EndpointIndependent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_socket_answers_within_its_limits_and_never_amplifies() {
    init_tracing();
    let boot = boot_with(
        ObserveListen::NextPort,
        Limits {
            observe_per_sec_per_ip: 2.0,
            ..Limits::default()
        },
    );
    let at = boot.observe_local_addr().unwrap();
    let client = UdpSocket::bind(loopback()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let me = client.local_addr().unwrap();
    let recv = |client: &UdpSocket| -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        let (n, from) = client.recv_from(&mut buf).ok()?;
        Some((buf[..n].to_vec(), from))
    };
    // A valid request: the token and our address, from the observe socket.
    let request = ObserveRequest { token: [7; 16] }.to_bytes();
    client.send_to(&request, at).unwrap();
    let (reply, from) = recv(&client).expect("an answer");
    assert_eq!(from, at);
    assert!(reply.len() <= request.len());
    assert_eq!(
        ObserveReply::decode(&reply),
        Ok(ObserveReply {
            token: [7; 16],
            observed: me
        })
    );
    // Too short to answer without amplification, or anything else: nothing.
    for bad in [&request[..35], &[0x02; 64][..], &[0xc3; 1200][..], &[][..]] {
        client.send_to(bad, at).unwrap();
    }
    assert!(recv(&client).is_none(), "malformed input answered");
    // The burst (3 x 2/s, one taken above), then nothing more this second.
    for _ in 0..20 {
        client.send_to(&request, at).unwrap();
    }
    let mut answers = 0;
    while let Some((reply, _)) = recv(&client) {
        assert!(reply.len() <= request.len());
        answers += 1;
    }
    eprintln!("20 requests in a burst: {answers} answered");
    assert!((5..=6).contains(&answers), "{answers} answered");
    assert_eq!(observe_counter(&boot, "malformed"), 4);
    assert!(observe_counter(&boot, "rate_limited") >= 14);
    assert_eq!(observe_counter(&boot, "answered"), 1 + answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_default_port_falls_back_a_configured_one_fails() {
    init_tracing();
    let start = |listen: SocketAddr, observe: ObserveListen| {
        Bootstrap::start(BootstrapSettings {
            identity: Identity::generate(),
            listen,
            tcp_listen: TcpListen::Off,
            observe,
            relay: true,
            allowed_keys: None,
            limits: Limits::default(),
        })
    };
    // Port + 1 held by someone else; the listen port itself free. Tests
    // run in parallel: another one may take the free port between our
    // check and our bind, so a taken listen port means another try.
    let mut found = None;
    for _ in 0..20 {
        let blocker = UdpSocket::bind(loopback()).unwrap();
        let taken = blocker.local_addr().unwrap();
        let Some(port) = taken.port().checked_sub(1) else {
            continue;
        };
        let listen = SocketAddr::new(taken.ip(), port);
        if UdpSocket::bind(listen).is_err() {
            continue;
        }
        let err = match start(listen, ObserveListen::Port(taken.port())) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a taken observe_port was accepted"),
        };
        if !err.contains("observe socket") {
            continue; // the listen port went to someone else meanwhile
        }
        assert!(err.contains("observe_port"), "{err}");
        if let Ok(boot) = start(listen, ObserveListen::NextPort) {
            found = Some((blocker, listen, boot));
            break;
        }
    }
    let (blocker, listen, boot) = found.expect("a free port below a taken one");
    let taken = blocker.local_addr().unwrap();
    let observe = boot.observe_local_addr().unwrap();
    assert_ne!(observe, taken);
    assert_ne!(observe.port(), listen.port());
    // Peers learn the port from OBSERVE_AT, so the mapping still works.
    let a = overlay(&Identity::generate(), &[], &boot);
    wait_for(
        "nat_mapping EndpointIndependent",
        Duration::from_secs(5),
        || a.nat_mapping() == MappingBehaviour::EndpointIndependent,
    )
    .await;
}
