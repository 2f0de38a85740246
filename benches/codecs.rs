//! Micro-benchmarks of the decoders and encoders on the hot paths: control
//! messages (bootstrap coordination), raw frames (relay data, punch probes),
//! IP packet addresses (every tunnel packet) and the AllowedIPs lookup
//! (every tunnel packet, both directions).
//!
//! `cargo bench --bench codecs` prints criterion's figures; `cargo test` and
//! nextest run each once as a smoke test.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use antq::proto::raw::{classify, encode_relay_header, parse_relay, Probe, ProbeKind, RelayHeader};
use antq::proto::{decode_frame, ControlMessage};
use antq::tunnel::packet::addresses;
use antq::tunnel::routing::AllowedIps;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn control(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    let add = ControlMessage::Forward {
        peer: [7; 32],
        inner: Box::new(ControlMessage::AddAddress {
            sequence: 12,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20)), 40000),
        }),
    };
    let punch = ControlMessage::Forward {
        peer: [9; 32],
        inner: Box::new(ControlMessage::PunchMeNow {
            round: 77,
            paired_with_sequence: 0,
            addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9000),
            delay_ms: 60,
            token: [3; 16],
            start_at_unix_micros: 1_795_850_000_000_000,
        }),
    };
    for (name, msg) in [
        ("forward_add_address", &add),
        ("forward_punch_me_now", &punch),
    ] {
        let mut wire = Vec::new();
        msg.encode(&mut wire).unwrap();
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("encode/{name}"), |b| {
            let mut out = Vec::with_capacity(128);
            b.iter(|| {
                out.clear();
                black_box(msg).encode(&mut out).unwrap();
            })
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_frame(black_box(&wire)).unwrap())
        });
    }
    g.finish();
}

fn raw(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw");
    let mut relay = [0u8; RelayHeader::LEN];
    encode_relay_header(0xdead_beef, &mut relay);
    let mut datagram = relay.to_vec();
    datagram.extend_from_slice(&[0x40; 1300]);
    g.throughput(Throughput::Bytes(datagram.len() as u64));
    g.bench_function("classify_and_parse_relay_1305B", |b| {
        b.iter(|| {
            black_box(classify(black_box(datagram[0])));
            parse_relay(black_box(&datagram)).unwrap()
        })
    });
    let probe = Probe {
        kind: ProbeKind::Probe,
        token: [5; 16],
        round: 3,
        seq: 9,
    };
    let mut wire = Vec::new();
    probe.encode(100, &mut wire);
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode_probe", |b| {
        b.iter(|| Probe::decode(black_box(&wire)).unwrap())
    });
    g.finish();
}

/// An IPv4 packet of `len` bytes from `src` to `dst` (header only matters).
fn ipv4(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

fn tunnel(c: &mut Criterion) {
    let mut g = c.benchmark_group("tunnel");
    let packet = ipv4([10, 90, 0, 1], [10, 90, 3, 7], 1280);
    g.bench_function("packet_addresses_ipv4", |b| {
        b.iter(|| addresses(black_box(&packet)).unwrap())
    });
    // A mesh of 1000 peers, each with a /32 and a /24 behind it, plus IPv6.
    let mut table = AllowedIps::new();
    for i in 0..1000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        table.insert(format!("10.90.{hi}.{lo}/32").parse().unwrap(), i);
        table.insert(format!("10.{}.{}.0/24", 100 + hi, lo).parse().unwrap(), i);
        table.insert(format!("fd90::{i:x}/128").parse().unwrap(), i);
    }
    let hit = IpAddr::V4(Ipv4Addr::new(10, 101, 200, 9));
    let hit6: IpAddr = "fd90::3e7".parse().unwrap();
    let miss = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for (name, addr) in [
        ("lookup_hit_v4", hit),
        ("lookup_hit_v6", hit6),
        ("lookup_miss", miss),
    ] {
        g.bench_function(format!("allowed_ips_3000/{name}"), |b| {
            b.iter(|| table.lookup(black_box(addr)).copied())
        });
    }
    g.finish();
}

criterion_group!(benches, control, raw, tunnel);
criterion_main!(benches);
