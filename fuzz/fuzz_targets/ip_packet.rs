//! Fuzzes the tunnel's IP parsing: `addresses` over arbitrary packets, and
//! the ICMP / ICMPv6 "packet too big" answer built from them.
//!
//! An answer must go from our address back to the original's source, fit
//! 576 bytes (IPv4) or 1280 bytes (IPv6), carry valid checksums, advertise
//! the MTU, and never itself be answered (no ICMP error about an ICMP
//! error).
#![no_main]

use std::net::IpAddr;

use antq::tunnel::packet::{addresses, packet_too_big, Addresses};
use libfuzzer_sys::fuzz_target;

fn checksum(chunks: &[&[u8]]) -> u16 {
    let data: Vec<u8> = chunks.concat();
    let mut sum: u32 = 0;
    for w in data.chunks(2) {
        let word = u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fuzz_target!(|data: &[u8]| {
    let parsed = addresses(data);
    // The MTU comes from the input's last two bytes so the fuzzer can vary it.
    let mtu = match data {
        [.., a, b] => u16::from_be_bytes([*a, *b]),
        _ => 1280,
    };
    let v4: IpAddr = "10.90.0.254".parse().unwrap();
    let v6: IpAddr = "fd90::fe".parse().unwrap();
    for from in [v4, v6] {
        let Some(answer) = packet_too_big(data, from, mtu) else {
            continue;
        };
        let original = parsed.expect("an answer to a packet without addresses");
        assert_eq!(original.src.is_ipv4(), from.is_ipv4());
        assert_eq!(
            addresses(&answer),
            Some(Addresses {
                src: from,
                dst: original.src
            })
        );
        match (from, original.src) {
            (IpAddr::V4(_), _) => {
                assert!(answer.len() <= 576 && answer.len() >= 28);
                assert_eq!(
                    usize::from(u16::from_be_bytes([answer[2], answer[3]])),
                    answer.len()
                );
                assert_eq!(checksum(&[&answer[..20]]), 0);
                assert_eq!(checksum(&[&answer[20..]]), 0);
                assert_eq!(&answer[20..22], &[3, 4]);
                assert_eq!(u16::from_be_bytes([answer[26], answer[27]]), mtu);
                assert_eq!(&answer[28..], &data[..answer.len() - 28]);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                assert!(answer.len() <= 1280 && answer.len() >= 48);
                let payload = answer.len() - 40;
                assert_eq!(
                    usize::from(u16::from_be_bytes([answer[4], answer[5]])),
                    payload
                );
                let len = (payload as u32).to_be_bytes();
                assert_eq!(
                    checksum(&[
                        &s.octets(),
                        &d.octets(),
                        &len,
                        &[0, 0, 0, 58],
                        &answer[40..]
                    ]),
                    0
                );
                assert_eq!(answer[40], 2);
                assert_eq!(
                    u32::from_be_bytes(answer[44..48].try_into().unwrap()),
                    u32::from(mtu)
                );
                assert_eq!(&answer[48..], &data[..answer.len() - 48]);
            }
            _ => unreachable!(),
        }
        assert_eq!(
            packet_too_big(&answer, from, mtu),
            None,
            "answered an ICMP error"
        );
    }
});
