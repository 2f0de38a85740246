//! Just enough IP parsing for the tunnel: the addresses of a packet, and the
//! ICMP / ICMPv6 "packet too big" answer for packets that do not fit the
//! current datagram size.
//!
//! Parsing never panics on malformed input: anything too short or of an
//! unknown version yields `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Source and destination of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
}

/// Reads the addresses of an IPv4 or IPv6 packet.
pub fn addresses(packet: &[u8]) -> Option<Addresses> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(Addresses {
                src: IpAddr::V4(Ipv4Addr::from(src)),
                dst: IpAddr::V4(Ipv4Addr::from(dst)),
            })
        }
        6 if packet.len() >= 40 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(Addresses {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
            })
        }
        _ => None,
    }
}

/// RFC 1071 checksum over `chunks`, as if they were concatenated (each chunk
/// but the last must have even length).
fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut words = chunk.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMP error types that must never trigger another ICMP error.
fn is_icmpv4_error(packet: &[u8]) -> bool {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    packet.get(9) == Some(&1) && matches!(packet.get(ihl), Some(3 | 4 | 5 | 11 | 12))
}

fn is_icmpv6_error(packet: &[u8]) -> bool {
    packet.get(6) == Some(&58) && packet.get(40).is_some_and(|t| *t < 128)
}

/// Builds the "packet too big" answer to `original` (which did not fit),
/// sent from `from` (our tunnel address of the same family) to the
/// original's source, advertising `mtu`. Returns `None` when no answer is
/// due: malformed input, an ICMP error, a family mismatch, or an IPv4
/// fragment other than the first.
pub fn packet_too_big(original: &[u8], from: IpAddr, mtu: u16) -> Option<Vec<u8>> {
    let addrs = addresses(original)?;
    match (addrs.src, from) {
        (IpAddr::V4(dst), IpAddr::V4(src)) => {
            let frag_offset = u16::from_be_bytes([*original.get(6)?, *original.get(7)?]) & 0x1fff;
            if frag_offset != 0 || is_icmpv4_error(original) || dst.is_unspecified() {
                return None;
            }
            // RFC 1812: quote as much as fits in 576 bytes.
            let quote = &original[..original.len().min(576 - 28)];
            let total = 20 + 8 + quote.len();
            let mut p = Vec::with_capacity(total);
            p.extend_from_slice(&[0x45, 0xc0]);
            p.extend_from_slice(&(total as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&dst.octets());
            let ip_sum = checksum(&[&p[..20]]);
            p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
            p.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
            p.extend_from_slice(&mtu.to_be_bytes());
            p.extend_from_slice(quote);
            let icmp_sum = checksum(&[&p[20..]]);
            p[22..24].copy_from_slice(&icmp_sum.to_be_bytes());
            Some(p)
        }
        (IpAddr::V6(dst), IpAddr::V6(src)) => {
            if is_icmpv6_error(original) || dst.is_unspecified() || dst.is_multicast() {
                return None;
            }
            // RFC 4443: the whole answer must not exceed the IPv6 minimum MTU.
            let quote = &original[..original.len().min(1280 - 48)];
            let payload_len = 8 + quote.len();
            let mut p = Vec::with_capacity(40 + payload_len);
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(payload_len as u16).to_be_bytes());
            p.extend_from_slice(&[58, 64]);
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&dst.octets());
            p.extend_from_slice(&[2, 0, 0, 0]);
            p.extend_from_slice(&u32::from(mtu).to_be_bytes());
            p.extend_from_slice(quote);
            let pseudo_len = (payload_len as u32).to_be_bytes();
            let sum = checksum(&[
                &src.octets(),
                &dst.octets(),
                &pseudo_len,
                &[0, 0, 0, 58],
                &p[40..],
            ]);
            p[42..44].copy_from_slice(&sum.to_be_bytes());
            Some(p)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 90, 0, 1]);
        p[16..20].copy_from_slice(&[10, 90, 0, 2]);
        p
    }

    fn ipv6_udp(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd90::1".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd90::2".parse::<Ipv6Addr>().unwrap().octets());
        p
    }

    mod props {
        use super::super::*;
        use super::{ipv4_udp, ipv6_udp};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn addresses_round_trip(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), src6 in any::<[u8; 16]>(), dst6 in any::<[u8; 16]>(), extra in 0usize..100) {
                let mut p = ipv4_udp(20 + extra);
                p[12..16].copy_from_slice(&src);
                p[16..20].copy_from_slice(&dst);
                prop_assert_eq!(addresses(&p), Some(Addresses { src: IpAddr::from(src), dst: IpAddr::from(dst) }));
                let mut p = ipv6_udp(40 + extra);
                p[8..24].copy_from_slice(&src6);
                p[24..40].copy_from_slice(&dst6);
                prop_assert_eq!(addresses(&p), Some(Addresses { src: IpAddr::from(src6), dst: IpAddr::from(dst6) }));
            }

            #[test]
            fn answers_go_back_to_the_source_and_are_never_answered(packet in proptest::collection::vec(any::<u8>(), 0..1600), v6 in any::<bool>(), mtu in any::<u16>()) {
                let from: IpAddr = if v6 { "fd90::fe".parse().unwrap() } else { "10.90.0.254".parse().unwrap() };
                if let Some(answer) = packet_too_big(&packet, from, mtu) {
                    let original = addresses(&packet).unwrap();
                    prop_assert_eq!(addresses(&answer), Some(Addresses { src: from, dst: original.src }));
                    let limit = if v6 { 1280 } else { 576 };
                    prop_assert!(answer.len() <= limit);
                    prop_assert_eq!(packet_too_big(&answer, from, mtu), None);
                }
            }
        }
    }

    #[test]
    fn reads_addresses_and_rejects_garbage() {
        let a = addresses(&ipv4_udp(40)).unwrap();
        assert_eq!(a.src, "10.90.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(a.dst, "10.90.0.2".parse::<IpAddr>().unwrap());
        let b = addresses(&ipv6_udp(60)).unwrap();
        assert_eq!(b.dst, "fd90::2".parse::<IpAddr>().unwrap());
        for bad in [&[][..], &[0x45; 19][..], &[0x60; 39][..], &[0x15; 60][..]] {
            assert_eq!(addresses(bad), None);
        }
    }

    #[test]
    fn ipv4_frag_needed_is_well_formed() {
        let orig = ipv4_udp(1400);
        let icmp = packet_too_big(&orig, "10.90.0.254".parse().unwrap(), 1280).unwrap();
        assert_eq!(icmp.len(), 576);
        assert_eq!(checksum(&[&icmp[..20]]), 0, "IP header checksum");
        assert_eq!(checksum(&[&icmp[20..]]), 0, "ICMP checksum");
        assert_eq!(&icmp[20..22], &[3, 4]);
        assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1280);
        assert_eq!(&icmp[16..20], &[10, 90, 0, 1], "sent back to the source");
        assert_eq!(&icmp[28..48], &orig[..20], "quotes the original header");
        // Never answer an ICMP error.
        assert_eq!(
            packet_too_big(&icmp, "10.90.0.254".parse().unwrap(), 1280),
            None
        );
    }

    #[test]
    fn ipv6_packet_too_big_is_well_formed() {
        let orig = ipv6_udp(1500);
        let src: Ipv6Addr = "fd90::fe".parse().unwrap();
        let icmp = packet_too_big(&orig, IpAddr::V6(src), 1280).unwrap();
        assert_eq!(icmp.len(), 1280);
        let dst: Ipv6Addr = "fd90::1".parse().unwrap();
        let len = ((icmp.len() - 40) as u32).to_be_bytes();
        assert_eq!(
            checksum(&[
                &src.octets(),
                &dst.octets(),
                &len,
                &[0, 0, 0, 58],
                &icmp[40..]
            ]),
            0
        );
        assert_eq!(icmp[40], 2);
        assert_eq!(u32::from_be_bytes(icmp[44..48].try_into().unwrap()), 1280);
        assert_eq!(packet_too_big(&icmp, IpAddr::V6(src), 1280), None);
        // Wrong family for the answer's source: nothing.
        assert_eq!(
            packet_too_big(&orig, "10.0.0.1".parse().unwrap(), 1280),
            None
        );
    }
}
