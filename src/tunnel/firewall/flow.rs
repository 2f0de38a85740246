//! What the firewall needs to know of an IP packet, read without allocating
//! and without trusting anything: protocol, addresses, ports (TCP/UDP),
//! ICMP type, TCP flags, the fragment it is, and for an ICMP error the flow
//! of the packet it quotes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the firewall tells apart.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// ICMP (IPv4).
pub const ICMP: u8 = 1;
/// ICMPv6.
pub const ICMPV6: u8 = 58;

/// Where a packet stands among the fragments of its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// A whole datagram.
    Whole,
    /// The first fragment: its transport header (ports) is here.
    First {
        /// The datagram's identification.
        id: u32,
    },
    /// A later fragment: no transport header.
    Later {
        /// The datagram's identification.
        id: u32,
    },
}

/// The 5-tuple (and what else matters) of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// IP protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (TCP, UDP), ICMP echo identifier, else 0.
    pub sport: u16,
    /// Destination port (TCP, UDP), ICMP echo identifier, else 0.
    pub dport: u16,
    /// ICMP / ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags (SYN 0x02, RST 0x04, FIN 0x01, ACK 0x10).
    pub tcp_flags: u8,
    /// Which fragment this is.
    pub fragment: Fragment,
}

impl Flow {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            a: self.dst,
            b: self.src,
            ap: self.dport,
            bp: self.sport,
        }
    }

    /// The flow's key as this packet goes.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            a: self.src,
            b: self.dst,
            ap: self.sport,
            bp: self.dport,
        }
    }

    /// Whether this is an ICMP error (destination unreachable, packet too
    /// big, time exceeded, parameter problem), which quotes another packet.
    pub fn is_icmp_error(&self) -> bool {
        match (self.proto, self.icmp) {
            (ICMP, Some((t, _))) => matches!(t, 3 | 11 | 12),
            (ICMPV6, Some((t, _))) => matches!(t, 1..=4),
            _ => false,
        }
    }

    /// Whether this is an ICMP echo request (which starts a flow).
    pub fn is_echo_request(&self) -> bool {
        matches!(
            (self.proto, self.icmp),
            (ICMP, Some((8, _))) | (ICMPV6, Some((128, _)))
        )
    }

    /// Whether this is an ICMP echo reply.
    pub fn is_echo_reply(&self) -> bool {
        matches!(
            (self.proto, self.icmp),
            (ICMP, Some((0, _))) | (ICMPV6, Some((129, _)))
        )
    }
}

/// A flow's identity in the connection table: the packet's direction as
/// `a` → `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol.
    pub proto: u8,
    /// Source.
    pub a: IpAddr,
    /// Destination.
    pub b: IpAddr,
    /// Source port / echo id.
    pub ap: u16,
    /// Destination port / echo id.
    pub bp: u16,
}

/// Most IPv6 extension headers followed before giving up.
const MAX_EXTENSIONS: usize = 8;

/// Reads a packet; `None` when it is not a well-formed IPv4 or IPv6
/// packet as far as the firewall looks.
pub fn parse(packet: &[u8]) -> Option<Flow> {
    match packet.first()? >> 4 {
        4 => parse_v4(packet),
        6 => parse_v6(packet),
        _ => None,
    }
}

fn parse_v4(p: &[u8]) -> Option<Flow> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let proto = p[9];
    let src = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&p[12..16]).ok()?));
    let dst = IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&p[16..20]).ok()?));
    let id = u32::from(u16::from_be_bytes([p[4], p[5]]));
    let frag = u16::from_be_bytes([p[6], p[7]]);
    let more = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    let fragment = match (offset, more) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    };
    transport(proto, src, dst, fragment, &p[ihl..])
}

fn parse_v6(p: &[u8]) -> Option<Flow> {
    if p.len() < 40 {
        return None;
    }
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?));
    let mut next = p[6];
    let mut at = 40;
    let mut fragment = Fragment::Whole;
    for _ in 0..MAX_EXTENSIONS {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet
            // units, not counting the first 8.
            0 | 43 | 60 => {
                let h = p.get(at..at + 2)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            // Fragment header: 8 bytes.
            44 => {
                let h = p.get(at..at + 8)?;
                next = h[0];
                let off = u16::from_be_bytes([h[2], h[3]]);
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                fragment = match (off >> 3, off & 1 != 0) {
                    (0, false) => Fragment::Whole,
                    (0, true) => Fragment::First { id },
                    _ => Fragment::Later { id },
                };
                at += 8;
            }
            _ => return transport(next, src, dst, fragment, p.get(at..)?),
        }
    }
    None
}

fn transport(proto: u8, src: IpAddr, dst: IpAddr, fragment: Fragment, l4: &[u8]) -> Option<Flow> {
    let mut flow = Flow {
        proto,
        src,
        dst,
        sport: 0,
        dport: 0,
        icmp: None,
        tcp_flags: 0,
        fragment,
    };
    if matches!(fragment, Fragment::Later { .. }) {
        return Some(flow);
    }
    match proto {
        TCP => {
            let h = l4.get(..14)?;
            flow.sport = u16::from_be_bytes([h[0], h[1]]);
            flow.dport = u16::from_be_bytes([h[2], h[3]]);
            flow.tcp_flags = h[13];
        }
        UDP => {
            let h = l4.get(..4)?;
            flow.sport = u16::from_be_bytes([h[0], h[1]]);
            flow.dport = u16::from_be_bytes([h[2], h[3]]);
        }
        ICMP | ICMPV6 => {
            let h = l4.get(..8)?;
            flow.icmp = Some((h[0], h[1]));
            if flow.is_echo_request() || flow.is_echo_reply() {
                // The echo identifier plays both ports.
                let ident = u16::from_be_bytes([h[4], h[5]]);
                flow.sport = ident;
                flow.dport = ident;
            }
        }
        _ => {}
    }
    Some(flow)
}

/// The flow of the packet an ICMP error quotes (after its 8-byte ICMP
/// header), as that packet went: from us to the one reporting the error.
pub fn quoted(packet: &[u8], outer: &Flow) -> Option<Flow> {
    let ihl = match outer.src {
        IpAddr::V4(_) => usize::from(packet.first()? & 0x0f) * 4,
        IpAddr::V6(_) => 40,
    };
    let inner = packet.get(ihl + 8..)?;
    // Quoted packets are cut short: only the first 8 bytes of the
    // transport header are promised, enough for ports.
    let mut flow = match inner.first()? >> 4 {
        4 => {
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            if ihl < 20 || inner.len() < ihl + 4 {
                return None;
            }
            let mut f = parse_v4(&pad(inner, ihl + 14)?)?;
            f.tcp_flags = 0;
            f
        }
        6 => {
            let mut f = parse_v6(&pad(inner, 40 + 14)?)?;
            f.tcp_flags = 0;
            f
        }
        _ => return None,
    };
    flow.icmp = flow
        .icmp
        .filter(|_| flow.proto == ICMP || flow.proto == ICMPV6);
    Some(flow)
}

/// `bytes` padded with zeros to at least `len` (a quoted packet's TCP
/// header may be cut at 8 bytes), on the stack.
fn pad(bytes: &[u8], len: usize) -> Option<PadBuf> {
    let mut buf = PadBuf([0; 128], bytes.len().max(len).min(128));
    let n = bytes.len().min(128);
    buf.0[..n].copy_from_slice(&bytes[..n]);
    Some(buf)
}

/// A small stack buffer ([`pad`]).
struct PadBuf([u8; 128], usize);

impl std::ops::Deref for PadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}
