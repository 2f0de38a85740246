//! Prometheus metrics on loopback (no root needed): a bootstrap run by the
//! `antq-tun bootstrap` binary with `metrics` on, two overlays in-process
//! that connect (relay, then direct) and exchange datagrams, and two
//! misconfigured overlays (an unlisted key, a wrong key). `/metrics` of each
//! is fetched over TCP, checked to be valid exposition text line by line,
//! and its values asserted on.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{bin, free_tcp_port, free_udp_port, ChildGuard};
use crate::harness::{overlay_via, wait_for};
use antq::identity::Identity;
use antq::node::overlay::{Overlay, PathKind};
use antq::tunnel::config::BootstrapAddr;
use bytes::Bytes;

/// One sample: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `{k="v",...}` with the format's escapes; returns the labels and
/// the rest of the line.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find("=\"").ok_or("no =\"")?;
        let key = &rest[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (i, '"') => break eq + 2 + i + 1,
                (_, c) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses and checks exposition text: HELP and TYPE once per family,
/// before its samples; every sample's family has a TYPE; values parse;
/// histogram buckets are cumulative and end in `+Inf` = `_count`.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(
                helps.insert(name.into(), help.into()).is_none(),
                "HELP twice, {}",
                at()
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without a type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{}",
                at()
            );
            assert!(helps.contains_key(name), "TYPE before HELP, {}", at());
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice, {}",
                at()
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected {}",
            at()
        );
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{}", at()));
        let name = &line[..name_end];
        assert!(
            name.starts_with("antq_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name, {}",
            at()
        );
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).unwrap_or_else(|e| panic!("{e}, {}", at()))
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value_text = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{}", at()));
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value, {}", at())),
        };
        let family = match types.get(name) {
            Some(kind) => {
                assert_ne!(kind, "histogram", "bare histogram sample, {}", at());
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter without _total, {}", at());
                    assert!(value >= 0.0, "negative counter, {}", at());
                }
                name
            }
            None => {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or_else(|| panic!("sample without TYPE, {}", at()));
                assert_eq!(
                    types.get(base).map(String::as_str),
                    Some("histogram"),
                    "sample without TYPE, {}",
                    at()
                );
                base
            }
        };
        assert!(!family.is_empty());
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&types, &samples);
    samples
}

fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) {
    for (name, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .collect();
        assert!(!buckets.is_empty(), "{name} has no buckets");
        let mut last = -1.0;
        let mut last_le = f64::NEG_INFINITY;
        for b in &buckets {
            let le = b.labels["le"].as_str();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            assert!(le > last_le, "{name}: buckets out of order");
            assert!(b.value >= last, "{name}: buckets not cumulative");
            last = b.value;
            last_le = le;
        }
        assert_eq!(last_le, f64::INFINITY, "{name}: no +Inf bucket");
        let count = samples
            .iter()
            .find(|s| s.name == format!("{name}_count"))
            .expect("no _count");
        assert_eq!(count.value, last, "{name}: +Inf bucket != _count");
        assert!(samples.iter().any(|s| s.name == format!("{name}_sum")));
    }
}

/// Sum of the samples of `name` whose labels include `with`.
fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// A raw HTTP exchange: the status line and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    tokio::task::block_in_place(|| http_blocking(addr, request))
}

fn http_blocking(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    parse(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_bootstrap_and_peers() {
    let dir = tempfile::tempdir().unwrap();
    let boot_id = Identity::generate();
    let boot_addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let boot_metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let config = dir.path().join("bootstrap.toml");
    std::fs::write(
        &config,
        format!(
            "[bootstrap]\nprivate_key = \"{}\"\nlisten = \"{boot_addr}\"\ntcp_listen = \"off\"\n\
             metrics = \"{boot_metrics}\"\n",
            boot_id.to_base64().as_str()
        ),
    )
    .unwrap();
    let _boot = ChildGuard(Some(
        Command::new(bin())
            .args(["bootstrap", "-c"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    wait_for("bootstrap metrics", Duration::from_secs(10), || {
        TcpStream::connect(boot_metrics).is_ok()
    })
    .await;
    let boot = BootstrapAddr {
        peer: boot_id.peer_id(),
        addr: boot_addr,
    };

    let (ka, kb) = (Identity::generate(), Identity::generate());
    let a = overlay_via(&ka, vec![(kb.peer_id(), None)], boot);
    let b = overlay_via(&kb, vec![(ka.peer_id(), None)], boot);
    let served = |o: &Overlay| {
        let o = o.clone();
        async move {
            antq::metrics::serve(
                "127.0.0.1:0".parse().unwrap(),
                Arc::new(move || o.metrics_text()),
            )
            .await
            .unwrap()
        }
    };
    let (a_metrics, _a_task) = served(&a).await;
    let (b_metrics, _b_task) = served(&b).await;
    // An unlisted key dialing a's address, and a peer expecting another key
    // there.
    let a_addr = a.local_addr().unwrap();
    let unlisted = overlay_via(
        &Identity::generate(),
        vec![(ka.peer_id(), Some(a_addr))],
        boot,
    );
    let wrong = overlay_via(
        &Identity::generate(),
        vec![(Identity::generate().peer_id(), Some(a_addr))],
        boot,
    );
    let (u_metrics, _u_task) = served(&unlisted).await;
    let (w_metrics, _w_task) = served(&wrong).await;

    // Traffic both ways, then wait for the relay connection (both paths
    // come up on loopback; the relay is the one asked for first).
    let (short_a, short_b) = (ka.peer_id().short(), kb.peer_id().short());
    wait_for("a path", Duration::from_secs(5), || {
        a.status()[0].path != PathKind::None
    })
    .await;
    a.send(&kb.peer_id(), Bytes::from_static(b"ping")).unwrap();
    for i in 0..50 {
        let payload = Bytes::from(format!("datagram {i}"));
        a.send(&kb.peer_id(), payload.clone()).unwrap();
        loop {
            let (from, got) = tokio::time::timeout(Duration::from_secs(2), b.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, ka.peer_id());
            if got == payload {
                break;
            }
            assert_eq!(got, Bytes::from_static(b"ping"));
        }
        let _ = b.send(&ka.peer_id(), payload);
    }
    wait_for("relay and direct", Duration::from_secs(15), || {
        let s = scrape(a_metrics);
        value(&s, "antq_connections_total", &[("path", "relay")]) >= 1.0
            && value(
                &s,
                "antq_peer_path",
                &[("peer", &short_b), ("path", "direct")],
            ) == 1.0
    })
    .await;
    wait_for("refusals", Duration::from_secs(15), || {
        value(&scrape(a_metrics), "antq_keys_refused_total", &[]) >= 1.0
            && value(
                &scrape(w_metrics),
                "antq_connect_errors_total",
                &[("error", "wrong_key")],
            ) >= 1.0
    })
    .await;

    if std::env::var_os("ANTQ_SHOW_METRICS").is_some() {
        eprintln!("{}", http(a_metrics, b"GET /metrics HTTP/1.0\r\n\r\n").1);
        eprintln!("{}", http(boot_metrics, b"GET /metrics HTTP/1.0\r\n\r\n").1);
    }
    let s = scrape(a_metrics);
    let peer_b = [("peer", short_b.as_str())];
    assert!(value(&s, "antq_connections_total", &[("path", "direct")]) >= 1.0);
    // One bootstrap with an observe socket tells the NAT kind (none on
    // loopback: endpoint-independent), once its answer is in: connections
    // counted before that are `unknown`.
    assert_eq!(
        value(&s, "antq_connections_total", &[("nat", "unknown")])
            + value(
                &s,
                "antq_connections_total",
                &[("nat", "endpoint_independent")]
            ),
        value(&s, "antq_connections_total", &[]),
        "no other NAT kind on loopback"
    );
    assert_eq!(
        value(&s, "antq_nat_mapping", &[("kind", "endpoint_independent")]),
        1.0
    );
    assert!(value(&s, "antq_peer_sent_bytes_total", &peer_b) > 0.0);
    assert!(value(&s, "antq_peer_received_bytes_total", &peer_b) > 0.0);
    assert!(value(&s, "antq_peer_rtt_seconds", &peer_b) > 0.0);
    assert_eq!(value(&s, "antq_peer_path", &peer_b), 1.0, "one-hot");
    assert_eq!(
        value(&s, "antq_peer_first_connection_seconds_count", &[]),
        1.0
    );
    assert_eq!(value(&s, "antq_peer_first_direct_seconds_count", &[]), 1.0);
    let boot_label = boot_addr.to_string();
    assert_eq!(
        value(
            &s,
            "antq_bootstrap_up",
            &[("bootstrap", &boot_label), ("transport", "udp")]
        ),
        1.0
    );
    assert_eq!(value(&s, "antq_bootstrap_connects_total", &[]), 1.0);
    assert_eq!(value(&s, "antq_bootstrap_lost_total", &[]), 0.0);
    let sb = scrape(b_metrics);
    assert!(value(&sb, "antq_peer_received_bytes_total", &[("peer", &short_a)]) > 0.0);
    let punches = |r: &str| {
        value(&s, "antq_punches_total", &[("result", r)])
            + value(&sb, "antq_punches_total", &[("result", r)])
    };
    assert!(punches("started") >= 1.0 && punches("succeeded") >= 1.0);
    assert!(
        value(&s, "antq_connection_attempts_total", &[])
            + value(&sb, "antq_connection_attempts_total", &[])
            >= 2.0
    );
    assert_eq!(
        value(&s, "antq_direct_paths_dropped_total", &[]),
        0.0,
        "nothing stalled"
    );
    let su = scrape(u_metrics);
    assert!(value(&su, "antq_connect_errors_total", &[("error", "refused")]) >= 1.0);
    assert_eq!(value(&su, "antq_connections_total", &[]), 0.0);

    let sboot = scrape(boot_metrics);
    assert_eq!(
        value(&sboot, "antq_bootstrap_peers", &[("transport", "udp")]),
        4.0
    );
    assert!(value(&sboot, "antq_bootstrap_relay_allocations_total", &[]) >= 1.0);
    assert!(value(&sboot, "antq_bootstrap_relay_allocations", &[]) >= 1.0);
    assert!(value(&sboot, "antq_relay_forwarded_frames_total", &[]) > 0.0);
    assert!(value(&sboot, "antq_relay_forwarded_bytes_total", &[]) > 0.0);
    assert!(value(&sboot, "antq_bootstrap_coordination_forwarded_total", &[]) >= 1.0);
    assert_eq!(value(&sboot, "antq_bootstrap_rate_limited_total", &[]), 0.0);
    assert!(value(&sboot, "antq_handshakes_accepted_total", &[]) >= 4.0);

    // Anything but GET /metrics is refused, and the server carries on.
    assert_eq!(
        http(a_metrics, b"GET / HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http(boot_metrics, b"DELETE /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http(boot_metrics, b"\xff\xfe\r\n\r\n").0,
        "HTTP/1.1 400 Bad Request"
    );
    scrape(boot_metrics);
}

#[test]
fn the_parser_catches_bad_exposition() {
    let ok = "# HELP antq_a_total A.\n# TYPE antq_a_total counter\nantq_a_total{x=\"a\\\"b\"} 1\n";
    assert_eq!(parse(ok)[0].labels["x"], "a\"b");
    for bad in [
        "antq_a_total 1\n",
        "# HELP antq_a_total A.\n# TYPE antq_a_total counter\nantq_a_total{x=\"a} 1\n",
        "# HELP antq_h H.\n# TYPE antq_h histogram\nantq_h_bucket{le=\"1\"} 2\nantq_h_bucket{le=\"+Inf\"} 1\nantq_h_count 1\nantq_h_sum 0\n",
    ] {
        let caught = std::panic::catch_unwind(|| parse(bad)).is_err();
        assert!(caught, "{bad:?}");
    }
}
