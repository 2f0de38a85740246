//! Network membership on loopback: hosts with only a CA (no peer lists)
//! find each other through the bootstrap's directory, verify what it says,
//! and refuse what they must.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use antq::cert::CaKey;
use antq::identity::{Identity, PeerId};
use antq::node::members::MembershipConfig;
use antq::node::overlay::{Overlay, OverlayConfig};
use antq::proto::cert::{CertBody, Certificate};
use antq::tunnel::config::BootstrapAddr;
use bytes::Bytes;

use crate::harness::{bootstrap, init_tracing, overlay_config, wait_for};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn certify(ca: &CaKey, id: &Identity, addr: &str, valid: std::ops::Range<u64>) -> Certificate {
    ca.sign(CertBody {
        network: String::new(),
        ca: [0; 32],
        host: *id.peer_id().as_bytes(),
        name: format!(
            "h{}",
            addr.split('.').nth(3).unwrap().split('/').next().unwrap()
        ),
        not_before: valid.start,
        not_after: valid.end,
        addresses: vec![addr.parse().unwrap()],
        groups: vec![],
        routes: vec![],
    })
    .unwrap()
}

fn membership(cert: Certificate, trusted: &[PeerId]) -> Option<MembershipConfig> {
    Some(MembershipConfig {
        certificate: cert,
        trusted: trusted.to_vec(),
        revoked: vec![],
        max_members: 16,
    })
}

fn member(
    id: &Identity,
    cert: Certificate,
    trusted: &[PeerId],
    boot: &antq::bootstrap::Bootstrap,
) -> Overlay {
    let boot = BootstrapAddr {
        peer: boot.peer_id(),
        addr: boot.local_addr().unwrap(),
    };
    Overlay::start(OverlayConfig {
        membership: membership(cert, trusted),
        ..overlay_config(id, vec![], boot)
    })
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Sends to `dst` (by overlay address) until `to` receives it; returns how
/// long it took.
async fn reach(from: &Overlay, dst: &str, to: &Overlay, within: Duration) -> Duration {
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < within,
            "{dst} not reached within {within:?}"
        );
        let _ = from.send_to_address(ip(dst), Bytes::from_static(b"hello"));
        if let Ok(Some((peer, data))) =
            tokio::time::timeout(Duration::from_millis(100), to.recv()).await
        {
            assert_eq!(peer, from.peer_id());
            assert_eq!(&data[..], b"hello");
            return start.elapsed();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_find_each_other_by_address_and_key() {
    init_tracing();
    let boot = bootstrap();
    let net = CaKey::generate("lab").unwrap();
    let now = unix_now();
    let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
    let hosts: Vec<Overlay> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let cert = certify(
                &net,
                id,
                &format!("10.90.0.{}/24", i + 1),
                now - 60..now + 3600,
            );
            member(id, cert, &[net.public()], &boot)
        })
        .collect();
    // a reaches b by b's overlay address; b learns a (by key) on the way.
    let took = reach(&hosts[0], "10.90.0.2", &hosts[1], Duration::from_secs(10)).await;
    eprintln!("a reached b by address in {took:?}");
    // b answers a by key: it is a member of b's now.
    wait_for("b knows a", Duration::from_secs(5), || {
        hosts[1]
            .members()
            .iter()
            .any(|m| m.peer == ids[0].peer_id())
    })
    .await;
    hosts[1]
        .send(&ids[0].peer_id(), Bytes::from_static(b"back"))
        .unwrap();
    let (peer, data) = tokio::time::timeout(Duration::from_secs(5), hosts[0].recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((peer, &data[..]), (ids[1].peer_id(), &b"back"[..]));
    // c reaches a; an address nobody holds is not found.
    reach(&hosts[2], "10.90.0.1", &hosts[0], Duration::from_secs(10)).await;
    hosts[0]
        .send_to_address(ip("10.90.0.77"), Bytes::from_static(b"x"))
        .unwrap();
    wait_for("not found counted", Duration::from_secs(5), || {
        hosts[0].member_counters().unwrap().0.not_found >= 1
    })
    .await;
    // Outside the network: refused at once.
    assert!(hosts[0]
        .send_to_address(ip("10.91.0.1"), Bytes::new())
        .is_err());
    assert_eq!(boot.status().members, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_expired_and_revoked_members_are_refused() {
    init_tracing();
    let boot = bootstrap();
    let net = CaKey::generate("lab").unwrap();
    let other = CaKey::generate("lab").unwrap();
    let now = unix_now();
    let (a, b, c, d) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    let ha = member(
        &a,
        certify(&net, &a, "10.90.0.1/24", now - 60..now + 3600),
        &[net.public()],
        &boot,
    );
    // b: same addresses' network, another CA (it trusts both, so it can ask).
    let _hb = member(
        &b,
        certify(&other, &b, "10.90.0.2/24", now - 60..now + 3600),
        &[other.public(), net.public()],
        &boot,
    );
    // c: expires in 3 s.
    let hc = member(
        &c,
        certify(&net, &c, "10.90.0.3/24", now - 60..now + 3),
        &[net.public()],
        &boot,
    );
    // d: valid; revoked later.
    let hd = member(
        &d,
        certify(&net, &d, "10.90.0.4/24", now - 60..now + 3600),
        &[net.public()],
        &boot,
    );
    wait_for("all registered", Duration::from_secs(5), || {
        boot.status().members == 4
    })
    .await;

    // b's certificate is from another CA: the bootstrap does not even give
    // it to a (other network), so a finds no member.
    ha.send_to_address(ip("10.90.0.2"), Bytes::new()).unwrap();
    wait_for("b not found", Duration::from_secs(5), || {
        ha.member_counters().unwrap().0.not_found >= 1
    })
    .await;
    // c and d are reached.
    reach(&ha, "10.90.0.3", &hc, Duration::from_secs(10)).await;
    reach(&ha, "10.90.0.4", &hd, Duration::from_secs(10)).await;
    assert_eq!(ha.members().len(), 2);
    // c's certificate expires: a drops it within a tick.
    wait_for("c expired", Duration::from_secs(8), || {
        ha.send(&c.peer_id(), Bytes::new()).is_err()
    })
    .await;
    assert!(!ha.members().iter().any(|m| m.peer == c.peer_id()));
    // d is revoked: gone at once, its connection closed.
    let removed = ha.set_member_policy(vec![net.public()], vec![d.peer_id()]);
    assert_eq!(removed, vec![d.peer_id()]);
    assert!(ha.send(&d.peer_id(), Bytes::new()).is_err());
    wait_for(
        "d's side sees the connection close",
        Duration::from_secs(3),
        || {
            hd.status().iter().all(|s| {
                s.public_key != a.peer_id().to_string()
                    || s.path == antq::node::overlay::PathKind::None
            })
        },
    )
    .await;
    // And a no longer accepts anything from d.
    ha.send_to_address(ip("10.90.0.4"), Bytes::new()).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ha.members().iter().any(|m| m.peer == d.peer_id()));
    let (_, refusals) = ha.member_counters().unwrap();
    assert!(
        refusals.iter().any(|(r, n)| *r == "revoked" && *n >= 1),
        "{refusals:?}"
    );
}

/// A bootstrap that lies: it answers every lookup with a certificate it
/// forged (fields changed after signing, then one signed by another key
/// naming our CA) or with a real member's certificate for an address that
/// member does not hold. Nothing it says makes a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_directory_makes_no_member() {
    use antq::proto::{ControlMessage, MemberQuery};
    init_tracing();
    let net = CaKey::generate("lab").unwrap();
    let liar_ca = CaKey::generate("lab").unwrap();
    let now = unix_now();
    let boot_id = Identity::generate();
    let liar = crate::harness::raw_node(&boot_id);
    let boot_addr = liar.local_addr().unwrap();
    let (a, b) = (Identity::generate(), Identity::generate());
    let real_b = certify(&net, &b, "10.90.0.2/24", now - 60..now + 3600);
    let mut forged = real_b.clone();
    forged.body.addresses = vec!["10.90.0.3/24".parse().unwrap()];
    let mut foreign = certify(&liar_ca, &b, "10.90.0.4/24", now - 60..now + 3600);
    foreign.body.ca = *net.public().as_bytes();
    let answers = std::collections::HashMap::from([
        ("10.90.0.3", forged),
        ("10.90.0.4", foreign),
        ("10.90.0.5", real_b),
    ]);
    tokio::spawn(async move {
        while let Some(conn) = liar.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                while let Some(msg) = conn.control().recv().await {
                    if let ControlMessage::MemberLookup { query } = msg {
                        let MemberQuery::Addr(addr) = query else {
                            continue;
                        };
                        if let Some(cert) = answers.get(addr.to_string().as_str()) {
                            let _ = conn.control().try_send(ControlMessage::Member {
                                query,
                                cert: Box::new(cert.clone()),
                            });
                        }
                    }
                }
            });
        }
    });
    let liar_addr = BootstrapAddr {
        peer: boot_id.peer_id(),
        addr: boot_addr,
    };
    let ha = Overlay::start(OverlayConfig {
        membership: membership(
            certify(&net, &a, "10.90.0.1/24", now - 60..now + 3600),
            &[net.public()],
        ),
        ..overlay_config(&a, vec![], liar_addr)
    })
    .unwrap();
    for addr in ["10.90.0.3", "10.90.0.4", "10.90.0.5"] {
        ha.send_to_address(ip(addr), Bytes::from_static(b"x"))
            .unwrap();
    }
    wait_for("three answers refused", Duration::from_secs(5), || {
        ha.member_counters().unwrap().0.refused >= 3
    })
    .await;
    let (counters, refusals) = ha.member_counters().unwrap();
    eprintln!("{counters:?} {refusals:?}");
    assert_eq!(counters.joined, 0);
    assert!(ha.members().is_empty());
    assert!(ha.status().is_empty(), "no peer was added");
    assert_eq!(refusals, [("bad_signature", 2), ("wrong_answer", 1)]);
}
