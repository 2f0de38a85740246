use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::flow::{ICMP, TCP, UDP};
use super::*;
use crate::identity::{Identity, PeerId};

const A: [u8; 4] = [10, 90, 0, 1];
const B: [u8; 4] = [10, 90, 0, 2];
const C: [u8; 4] = [10, 90, 0, 3];

/// An IPv4 packet: protocol, source, destination, fragment field, payload.
fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], frag: u16, id: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    let len = (20 + l4.len()) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 0x50;
    h[13] = flags;
    h
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h
}

fn icmp(kind: u8, code: u8, ident: u16, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![kind, code, 0, 0, 0, 0, 0, 0];
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h.extend_from_slice(rest);
    h
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

struct World {
    fw: Firewall,
    b: PeerId,
    c: PeerId,
    now: Instant,
}

impl World {
    fn new(config: FirewallConfig) -> Self {
        Self {
            fw: Firewall::new(config),
            b: Identity::from_secret_bytes(&[2; 32]).peer_id(),
            c: Identity::from_secret_bytes(&[3; 32]).peer_id(),
            now: Instant::now(),
        }
    }

    fn from(&mut self, peer: PeerId, groups: &[String], packet: &[u8]) -> Verdict {
        self.fw.inbound(packet, &Sender { peer, groups }, self.now)
    }
}

/// a's rules: tcp/22 from b only; icmp from group ops; default deny.
fn ssh_from_b() -> World {
    let b = Identity::from_secret_bytes(&[2; 32]).peer_id();
    World::new(FirewallConfig {
        default_allow: false,
        inbound: vec![
            Rule {
                proto: Proto::Tcp,
                ports: (22, 22),
                from: vec![Source::Peer(b)],
            },
            Rule {
                proto: Proto::Icmp,
                ports: (0, u16::MAX),
                from: vec![Source::Group("ops".into())],
            },
        ],
    })
}

#[test]
fn rules_let_in_what_they_name_and_nothing_else() {
    let mut w = ssh_from_b();
    let (b, c) = (w.b, w.c);
    assert_eq!(
        w.from(b, &[], &v4(TCP, B, A, 0, 1, &tcp(40000, 22, SYN))),
        Verdict::Rule(0)
    );
    assert_eq!(
        w.from(c, &[], &v4(TCP, C, A, 0, 1, &tcp(40000, 22, SYN))),
        Verdict::DefaultDeny
    );
    assert_eq!(
        w.from(b, &[], &v4(TCP, B, A, 0, 1, &tcp(40000, 8080, SYN))),
        Verdict::DefaultDeny
    );
    assert_eq!(
        w.from(b, &[], &v4(UDP, B, A, 0, 1, &udp(40000, 22))),
        Verdict::DefaultDeny
    );
    let ops = ["ops".to_owned()];
    assert_eq!(
        w.from(c, &ops, &v4(ICMP, C, A, 0, 1, &icmp(8, 0, 7, &[]))),
        Verdict::Rule(1)
    );
    assert_eq!(
        w.from(c, &[], &v4(ICMP, C, A, 0, 1, &icmp(8, 0, 7, &[]))),
        Verdict::DefaultDeny
    );
    let c = w.fw.counters();
    assert_eq!(c.rule_hits, [1, 1]);
    assert_eq!(c.default_denied, 4);
    assert_eq!(c.dropped(), 4);
}

#[test]
fn replies_to_our_own_flows_pass_without_a_rule() {
    let mut w = ssh_from_b();
    let c = w.c;
    // TCP a -> c:80, and c's reply.
    w.fw.outbound(&v4(TCP, A, C, 0, 1, &tcp(50000, 80, SYN)), w.now);
    assert_eq!(
        w.from(c, &[], &v4(TCP, C, A, 0, 1, &tcp(80, 50000, SYN | ACK))),
        Verdict::Tracked
    );
    // Another port of c is not a reply.
    assert_eq!(
        w.from(c, &[], &v4(TCP, C, A, 0, 1, &tcp(81, 50000, SYN | ACK))),
        Verdict::DefaultDeny
    );
    // UDP DNS-like.
    w.fw.outbound(&v4(UDP, A, C, 0, 1, &udp(53000, 53)), w.now);
    assert_eq!(
        w.from(c, &[], &v4(UDP, C, A, 0, 1, &udp(53, 53000))),
        Verdict::Tracked
    );
    // Ping out, echo reply back (same identifier only).
    w.fw.outbound(&v4(ICMP, A, C, 0, 1, &icmp(8, 0, 99, &[])), w.now);
    assert_eq!(
        w.from(c, &[], &v4(ICMP, C, A, 0, 1, &icmp(0, 0, 99, &[]))),
        Verdict::Tracked
    );
    assert_eq!(
        w.from(c, &[], &v4(ICMP, C, A, 0, 1, &icmp(0, 0, 98, &[]))),
        Verdict::DefaultDeny
    );
    // A UDP flow is forgotten once idle.
    w.now += conntrack::UDP_IDLE + Duration::from_secs(1);
    assert_eq!(
        w.from(c, &[], &v4(UDP, C, A, 0, 1, &udp(53, 53000))),
        Verdict::DefaultDeny
    );
}

#[test]
fn icmp_errors_about_our_flows_pass_and_others_do_not() {
    let mut w = ssh_from_b();
    let c = w.c;
    let ours = v4(TCP, A, C, 0x4000, 1, &tcp(50000, 443, SYN));
    w.fw.outbound(&ours, w.now);
    // "Fragmentation needed" from c quoting our packet (header + 8 bytes).
    let quote = &ours[..28];
    let err = v4(ICMP, C, A, 0, 1, &icmp(3, 4, 0, quote));
    assert_eq!(w.from(c, &[], &err), Verdict::Tracked);
    // Quoting a flow we never started.
    let other = v4(TCP, A, C, 0x4000, 1, &tcp(50001, 443, SYN));
    let err = v4(ICMP, C, A, 0, 1, &icmp(3, 4, 0, &other[..28]));
    assert_eq!(w.from(c, &[], &err), Verdict::DefaultDeny);
}

#[test]
fn fragments_follow_their_first_and_orphans_are_dropped() {
    let mut w = ssh_from_b();
    let (b, c) = (w.b, w.c);
    // b -> a:22 in two fragments (MF set on the first, offset on the second).
    let first = v4(TCP, B, A, 0x2000, 77, &tcp(40000, 22, SYN));
    let later = v4(TCP, B, A, 3, 77, &[0u8; 24]);
    assert_eq!(w.from(b, &[], &first), Verdict::Rule(0));
    assert_eq!(w.from(b, &[], &later), Verdict::Tracked);
    // c's first fragment is denied: its later ones too.
    let first = v4(TCP, C, A, 0x2000, 78, &tcp(40000, 22, SYN));
    let later = v4(TCP, C, A, 3, 78, &[0u8; 24]);
    assert_eq!(w.from(c, &[], &first), Verdict::DefaultDeny);
    assert_eq!(w.from(c, &[], &later), Verdict::Fragment);
    // A later fragment with no first.
    assert_eq!(
        w.from(c, &[], &v4(UDP, C, A, 5, 79, &[0u8; 16])),
        Verdict::Fragment
    );
    assert_eq!(w.fw.counters().fragments_dropped, 2);
}

#[test]
fn firewall_metrics_count_drops_by_reason_and_passes_by_rule() {
    let mut w = ssh_from_b();
    let (b, c) = (w.b, w.c);
    let ops = ["ops".to_owned()];
    // Rule 0 lets in two packets, rule 1 one.
    w.from(b, &[], &v4(TCP, B, A, 0, 1, &tcp(40000, 22, SYN)));
    w.from(b, &[], &v4(TCP, B, A, 0, 2, &tcp(40001, 22, SYN)));
    w.from(c, &ops, &v4(ICMP, C, A, 0, 1, &icmp(8, 0, 7, &[])));
    // Three denied, one orphan fragment, one unreadable packet.
    for port in [23, 80, 443] {
        w.from(c, &[], &v4(TCP, C, A, 0, 1, &tcp(40000, port, SYN)));
    }
    w.from(c, &[], &v4(UDP, C, A, 5, 79, &[0u8; 16]));
    w.from(c, &[], &[0x45, 0, 0]);
    // Two flows of ours; one reply on them.
    w.fw.outbound(&v4(UDP, A, C, 0, 1, &udp(53000, 53)), w.now);
    w.fw.outbound(&v4(TCP, A, C, 0, 1, &tcp(50000, 80, SYN)), w.now);
    w.from(c, &[], &v4(UDP, C, A, 0, 1, &udp(53, 53000)));

    let mut r = crate::metrics::Registry::new();
    w.fw.report().collect(&mut r);
    let text = r.render();
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        samples,
        [
            "antq_tun_firewall_dropped_total{reason=\"default_deny\"} 3",
            "antq_tun_firewall_dropped_total{reason=\"fragment\"} 1",
            "antq_tun_firewall_dropped_total{reason=\"malformed\"} 1",
            "antq_tun_firewall_passed_total{reason=\"tracked\"} 1",
            "antq_tun_firewall_passed_total{reason=\"default_allow\"} 0",
            "antq_tun_firewall_rule_packets_total{rule=\"0\",proto=\"tcp\",port=\"22\"} 2",
            "antq_tun_firewall_rule_packets_total{rule=\"1\",proto=\"icmp\",port=\"any\"} 1",
            "antq_tun_firewall_flows 2",
            "antq_tun_firewall_flows_limit 65536",
            "antq_tun_firewall_flows_refused_total 0",
        ],
        "{text}"
    );
    for (name, kind) in [
        ("antq_tun_firewall_dropped_total", "counter"),
        ("antq_tun_firewall_passed_total", "counter"),
        ("antq_tun_firewall_rule_packets_total", "counter"),
        ("antq_tun_firewall_flows", "gauge"),
        ("antq_tun_firewall_flows_limit", "gauge"),
        ("antq_tun_firewall_flows_refused_total", "counter"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{text}");
    }

    // A reload with one rule: one rule series, counted from 0 again.
    w.fw.set_config(FirewallConfig {
        default_allow: false,
        inbound: vec![Rule {
            proto: Proto::Udp,
            ports: (8000, 8100),
            from: vec![Source::Any],
        }],
    });
    w.from(c, &[], &v4(UDP, C, A, 0, 1, &udp(40000, 8050)));
    let mut r = crate::metrics::Registry::new();
    w.fw.report().collect(&mut r);
    let text = r.render();
    let rules: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("antq_tun_firewall_rule_packets_total"))
        .collect();
    assert_eq!(
        rules,
        ["antq_tun_firewall_rule_packets_total{rule=\"0\",proto=\"udp\",port=\"8000-8100\"} 1"]
    );
    assert!(text.contains("antq_tun_firewall_dropped_total{reason=\"default_deny\"} 3\n"));
}

fn v6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(rest.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(rest);
    p
}

#[test]
fn ipv6_with_extension_and_fragment_headers() {
    let mut w = ssh_from_b();
    let b = w.b;
    let (sb, sa): (Ipv6Addr, Ipv6Addr) = ("fd90::2".parse().unwrap(), "fd90::1".parse().unwrap());
    // Hop-by-hop options (8 bytes), then TCP to port 22.
    let mut rest = vec![TCP, 0, 0, 0, 0, 0, 0, 0];
    rest.extend_from_slice(&tcp(40000, 22, SYN));
    assert_eq!(w.from(b, &[], &v6(0, sb, sa, &rest)), Verdict::Rule(0));
    // Fragment header: first fragment (offset 0, M=1), then a later one.
    let mut first = vec![TCP, 0, 0x00, 0x01, 0, 0, 0, 9];
    first.extend_from_slice(&tcp(40000, 22, SYN));
    assert_eq!(w.from(b, &[], &v6(44, sb, sa, &first)), Verdict::Rule(0));
    let later = [TCP, 0, 0x00, 0x18, 0, 0, 0, 9, 1, 2, 3, 4];
    assert_eq!(w.from(b, &[], &v6(44, sb, sa, &later)), Verdict::Tracked);
    let orphan = [TCP, 0, 0x00, 0x18, 0, 0, 0, 10, 1, 2, 3, 4];
    assert_eq!(w.from(b, &[], &v6(44, sb, sa, &orphan)), Verdict::Fragment);
}

#[test]
fn cidr_sources_and_default_allow() {
    let mut w = World::new(FirewallConfig {
        default_allow: true,
        inbound: vec![],
    });
    let c = w.c;
    assert_eq!(
        w.from(c, &[], &v4(UDP, C, A, 0, 1, &udp(1, 2))),
        Verdict::DefaultAllow
    );
    let rule = Rule {
        proto: Proto::Any,
        ports: (0, u16::MAX),
        from: vec![Source::Cidr("10.90.0.0/30".parse().unwrap())],
    };
    let flow = parse(&v4(UDP, C, A, 0, 1, &udp(1, 2))).unwrap();
    let other = parse(&v4(UDP, [10, 90, 0, 9], A, 0, 1, &udp(1, 2))).unwrap();
    let s = Sender {
        peer: c,
        groups: &[],
    };
    assert!(rule.matches(&flow, &s));
    assert!(!rule.matches(&other, &s));
    let _ = Ipv4Addr::LOCALHOST;
}

proptest! {
    #[test]
    fn any_bytes_are_judged_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut w = ssh_from_b();
        let b = w.b;
        w.fw.outbound(&bytes, w.now);
        let _ = w.from(b, &[], &bytes);
    }
}

fn load(firewall: &str) -> Result<crate::tunnel::config::TunnelConfig, String> {
    let own = Identity::from_secret_bytes(&[1; 32]);
    let b = Identity::from_secret_bytes(&[2; 32]).peer_id();
    let text = format!(
        "[interface]\nprivate_key = \"{}\"\naddress = [\"10.90.0.1/24\"]\n\n[[peer]]\npublic_key = \"{b}\"\nallowed_ips = [\"10.90.0.2/32\"]\n\n{firewall}",
        own.to_base64().as_str()
    );
    crate::tunnel::config::TunnelConfig::from_toml(
        std::path::Path::new("/etc/antq/peer.toml"),
        &text,
    )
    .map_err(|e| e.to_string())
}

#[test]
fn firewall_config_reads_rules_and_refuses_bad_ones_by_field() {
    let b = Identity::from_secret_bytes(&[2; 32]).peer_id();
    let c = load(&format!(
        "[firewall]\ndefault_inbound = \"deny\"\n[[firewall.inbound]]\nproto = \"tcp\"\nport = \"22\"\nfrom = [\"peer:{b}\", \"cidr:10.90.0.0/28\"]\n[[firewall.inbound]]\nproto = \"udp\"\nport = \"8000-8100\"\nfrom = [\"any\"]\n"
    ))
    .unwrap();
    assert!(!c.firewall.default_allow);
    assert_eq!(c.firewall.inbound.len(), 2);
    assert_eq!(c.firewall.inbound[1].ports, (8000, 8100));
    assert!(c.warnings.is_empty());
    // No section: everything passes, as before.
    assert!(load("").unwrap().firewall.default_allow);
    // A group without a network: accepted, with a warning.
    let c = load("[firewall]\n[[firewall.inbound]]\nproto = \"icmp\"\nfrom = [\"group:ops\"]\n")
        .unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("group `ops`")),
        "{:?}",
        c.warnings
    );
    let other = Identity::from_secret_bytes(&[9; 32]).peer_id();
    for (rule, field, fix) in [
        (
            "proto = \"sctp\"\nfrom = [\"any\"]",
            "firewall.inbound[0].proto",
            "tcp, udp, icmp or any",
        ),
        (
            "proto = \"tcp\"\nport = \"70000\"\nfrom = [\"any\"]",
            "firewall.inbound[0].port",
            "range",
        ),
        (
            "proto = \"tcp\"\nport = \"90-80\"\nfrom = [\"any\"]",
            "firewall.inbound[0].port",
            "range",
        ),
        (
            "proto = \"tcp\"\nfrom = [\"cidr:10.90.0.300/28\"]",
            "firewall.inbound[0].from[0]",
            "cidr:",
        ),
        (
            "proto = \"tcp\"\nfrom = [\"peer:nope\"]",
            "firewall.inbound[0].from[0]",
            "44-character",
        ),
        (
            &format!("proto = \"tcp\"\nfrom = [\"peer:{other}\"]"),
            "firewall.inbound[0].from[0]",
            "configured",
        ),
        (
            "proto = \"tcp\"\nfrom = [\"everyone\"]",
            "firewall.inbound[0].from[0]",
            "group:NAME",
        ),
        (
            "proto = \"tcp\"\nfrom = []",
            "firewall.inbound[0].from",
            "any",
        ),
        (
            "proto = \"icmp\"\nport = \"7\"\nfrom = [\"any\"]",
            "firewall.inbound[0].port",
            "leave port out",
        ),
    ] {
        let e = load(&format!("[firewall]\n[[firewall.inbound]]\n{rule}\n")).unwrap_err();
        assert!(
            e.contains("peer.toml") && e.contains(field) && e.contains(fix),
            "{rule}: {e}"
        );
    }
    let e = load("[firewall]\ndefault_inbound = \"drop\"\n").unwrap_err();
    assert!(e.contains("firewall.default_inbound"), "{e}");
}

/// A bulk flow's packets skip the table for a second at a time, and get
/// the same verdicts: replies pass, a FIN still shortens the flow's life,
/// and a flow idle past its timeout is gone.
#[test]
fn the_last_flow_each_way_skips_the_table_with_the_same_verdicts() {
    const FIN: u8 = 0x01;
    let mut w = ssh_from_b();
    let c = w.c;
    w.fw.outbound(&v4(TCP, A, C, 0x4000, 1, &tcp(50000, 443, SYN)), w.now);
    let reply = v4(TCP, C, A, 0x4000, 1, &tcp(443, 50000, ACK));
    for _ in 0..5 {
        w.fw.outbound(&v4(TCP, A, C, 0x4000, 1, &tcp(50000, 443, ACK)), w.now);
        assert_eq!(w.from(c, &[], &reply), Verdict::Tracked);
        w.now += Duration::from_millis(300);
    }
    // Established: still there a minute after the last packet.
    w.now += Duration::from_secs(60);
    assert_eq!(w.from(c, &[], &reply), Verdict::Tracked);
    // A FIN from us goes to the table even right after a cached packet:
    // 10 s later the flow is gone.
    w.fw.outbound(&v4(TCP, A, C, 0x4000, 1, &tcp(50000, 443, ACK)), w.now);
    assert_eq!(w.from(c, &[], &reply), Verdict::Tracked);
    w.fw.outbound(
        &v4(TCP, A, C, 0x4000, 1, &tcp(50000, 443, ACK | FIN)),
        w.now,
    );
    w.now += conntrack::TCP_CLOSING + Duration::from_secs(1);
    assert_eq!(w.from(c, &[], &reply), Verdict::DefaultDeny);
    // Another flow's reply is judged on its own, cache or not.
    let other = v4(TCP, C, A, 0x4000, 1, &tcp(443, 50001, ACK));
    assert_eq!(w.from(c, &[], &other), Verdict::DefaultDeny);
}
