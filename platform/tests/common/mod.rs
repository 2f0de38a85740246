//! Helpers shared by the platform's integration tests: the root check of
//! the privileged tests, hand-made IPv4/UDP packets to write to and
//! recognise on a TUN device.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::{IpAddr, SocketAddr};

/// Fails `test` unless it runs as root. The tests that call it are
/// `#[ignore = "needs root ..."]`: `sudo scripts/test.sh` runs them, a
/// user's run counts them as skipped, and a user who asks for them anyway
/// (`--ignored`) sees them fail here instead of passing untested.
pub fn require_root(test: &str) {
    assert!(
        antq_platform::is_root(),
        "{test} needs root (network namespace, TUN device): run it with \
         `sudo scripts/test.sh` or `sudo cargo test -p antq-platform -- --ignored`"
    );
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet (UDP checksum 0 = none, allowed for IPv4).
pub fn udp4_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only")
    };
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64; // TTL
    p[9] = 17; // UDP
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    let csum = ipv4_checksum(&p[..20]);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Whether `p` is an IPv4/UDP packet to `dst` carrying `payload`.
pub fn is_udp4_to(p: &[u8], dst: SocketAddr, payload: &[u8]) -> bool {
    let IpAddr::V4(d) = dst.ip() else {
        return false;
    };
    p.len() >= 28
        && p[0] >> 4 == 4
        && p[9] == 17
        && p[16..20] == d.octets()
        && p[22..24] == dst.port().to_be_bytes()
        && p.ends_with(payload)
}
