//! Deterministic in-memory network with NAT routers (test-only).
//!
//! Hosts sit either directly on the "internet" (public IP) or behind a NAT
//! with a private LAN. Packets are routed with a configurable one-way
//! latency and loss; the clock only moves when the test advances it. NAT
//! behaviours follow RFC 4787:
//!
//! - `None`: no NAT, public host.
//! - `FullCone`: endpoint-independent mapping and filtering.
//! - `Home`: endpoint-independent mapping (port-preserving, like Linux
//!   MASQUERADE) with address-and-port-dependent filtering, including the
//!   conntrack clash: an unsolicited inbound packet from R to public port P
//!   is remembered, and if the host later sends to R for the first time, the
//!   reply tuple would clash, so that flow gets a fresh random port.
//! - `Symmetric`: address-and-port-dependent mapping with random ports,
//!   skipping a port toward a remote that already sent an unsolicited
//!   packet to it (the tuple is taken, as in Linux conntrack).
//! - `SequentialSymmetric`: like `Symmetric` but ports are allocated
//!   sequentially (`delta` plus a random jitter in `0..=jitter`).
//! - `SymmetricRange`: like `Symmetric`, with ports from a range only.
//! - `UdpBlocked`: drops all UDP.
//!
//! Mappings and filter entries expire after `mapping_timeout` of idleness.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::punch::ProbeOut;

/// NAT behaviour of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NatType {
    None,
    FullCone,
    Home,
    Symmetric,
    SequentialSymmetric {
        delta: u16,
        jitter: u16,
    },
    /// Like `Symmetric`, with ports from `lo..=hi` only (Linux
    /// `MASQUERADE --to-ports lo-hi`).
    SymmetricRange {
        lo: u16,
        hi: u16,
    },
    UdpBlocked,
}

/// What a simulated datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    Punch(ProbeOut),
    BindingRequest,
    BindingResponse(SocketAddr),
    /// A QUIC packet of the connection with this id (overlay scenarios).
    Quic(usize),
}

#[derive(Debug, Clone, Copy)]
struct Packet {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Payload,
}

/// Index of a host.
pub(crate) type HostId = usize;

#[derive(Debug)]
struct Host {
    ip: IpAddr,
    nat: Option<usize>,
    /// Received: (local port, source, payload).
    inbox: VecDeque<(u16, SocketAddr, Payload)>,
}

#[derive(Debug)]
struct Nat {
    kind: NatType,
    public_ip: IpAddr,
    lan: IpAddr,
    /// Endpoint-independent mappings: private socket -> public port.
    eim: HashMap<SocketAddr, (u16, Instant)>,
    /// Dependent mappings: (private socket, destination) -> public port.
    dep: HashMap<(SocketAddr, SocketAddr), (u16, Instant)>,
    /// Permitted inbound (public port, remote) -> private socket.
    flows: HashMap<(u16, SocketAddr), (SocketAddr, Instant)>,
    /// Public ports in use -> owner.
    owner: HashMap<u16, SocketAddr>,
    /// Unsolicited inbound seen: (public port, remote) -> when.
    unsolicited: HashMap<(u16, SocketAddr), Instant>,
    next_port: u16,
    clashes: u32,
}

fn same_lan(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        _ => false,
    }
}

/// The simulated network.
#[derive(Debug)]
pub(crate) struct Sim {
    now: Instant,
    rng: StdRng,
    pub(crate) latency: Duration,
    pub(crate) lan_latency: Duration,
    /// Routers between any two NATs or public hosts, each decrementing the
    /// TTL of packets that cross the internet.
    pub(crate) core_hops: u8,
    pub(crate) loss: f64,
    pub(crate) mapping_timeout: Duration,
    hosts: Vec<Host>,
    nats: Vec<Nat>,
    in_flight: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    /// Packets dropped by loss, filtering or routing.
    pub(crate) dropped: u64,
}

impl Sim {
    pub(crate) fn new(seed: u64, now: Instant) -> Self {
        Sim {
            now,
            rng: StdRng::seed_from_u64(seed),
            latency: Duration::from_millis(20),
            lan_latency: Duration::from_millis(1),
            core_hops: 1,
            loss: 0.0,
            mapping_timeout: Duration::from_secs(30),
            hosts: Vec::new(),
            nats: Vec::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            dropped: 0,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// A host with a public IP.
    pub(crate) fn add_public_host(&mut self, ip: IpAddr) -> HostId {
        self.hosts.push(Host {
            ip,
            nat: None,
            inbox: VecDeque::new(),
        });
        self.hosts.len() - 1
    }

    /// A host at private `ip` behind a new NAT of `kind` with `public_ip`.
    /// `NatType::None` makes `public_ip` the host's own address.
    pub(crate) fn add_natted_host(
        &mut self,
        kind: NatType,
        public_ip: IpAddr,
        ip: IpAddr,
    ) -> HostId {
        if kind == NatType::None {
            return self.add_public_host(public_ip);
        }
        let start = self.rng.gen_range(20000..40000);
        self.nats.push(Nat {
            kind,
            public_ip,
            lan: ip,
            eim: HashMap::new(),
            dep: HashMap::new(),
            flows: HashMap::new(),
            owner: HashMap::new(),
            unsolicited: HashMap::new(),
            next_port: start,
            clashes: 0,
        });
        let nat = Some(self.nats.len() - 1);
        self.hosts.push(Host {
            ip,
            nat,
            inbox: VecDeque::new(),
        });
        self.hosts.len() - 1
    }

    /// The NAT in front of `host` gets a new public address and forgets
    /// every mapping and flow (a renumbered or restarted home router).
    pub(crate) fn renumber(&mut self, host: HostId, public_ip: IpAddr) {
        let n = self.hosts[host].nat.expect("a host behind a NAT");
        let nat = &mut self.nats[n];
        nat.public_ip = public_ip;
        nat.eim.clear();
        nat.dep.clear();
        nat.flows.clear();
        nat.owner.clear();
        nat.unsolicited.clear();
    }

    /// Total conntrack clashes across all NATs.
    pub(crate) fn clashes(&self) -> u32 {
        self.nats.iter().map(|n| n.clashes).sum()
    }

    /// Sends from `host`'s local `port` to `dst`.
    pub(crate) fn send(&mut self, host: HostId, port: u16, dst: SocketAddr, payload: Payload) {
        self.send_with_ttl(host, port, dst, payload, None);
    }

    /// Sends with an IP TTL: the sender's NAT and every core router
    /// decrement it, and a packet is dropped where it would reach 0 (a NAT
    /// drops it before mapping; the core after the sender's NAT mapped it,
    /// before the destination sees it). LAN delivery takes no hop.
    pub(crate) fn send_with_ttl(
        &mut self,
        host: HostId,
        port: u16,
        dst: SocketAddr,
        payload: Payload,
        ttl: Option<u8>,
    ) {
        let src_priv = SocketAddr::new(self.hosts[host].ip, port);
        let ttl = ttl.unwrap_or(64);
        let (src, delay) = match self.hosts[host].nat {
            Some(n) if same_lan(self.nats[n].lan, dst.ip()) => (src_priv, self.lan_latency),
            Some(_) if ttl <= 1 => {
                self.dropped += 1;
                return;
            }
            Some(n) => match self.nat_outbound(n, src_priv, dst) {
                Some(src) if ttl - 1 > self.core_hops => (src, self.latency),
                Some(_) | None => {
                    self.dropped += 1;
                    return;
                }
            },
            None if ttl <= self.core_hops => {
                self.dropped += 1;
                return;
            }
            None => (src_priv, self.latency),
        };
        // Loss happens on the wire, after the NAT saw the packet.
        if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
            self.dropped += 1;
            return;
        }
        self.seq += 1;
        self.in_flight
            .insert((self.now + delay, self.seq), Packet { src, dst, payload });
    }

    /// Next delivery time.
    pub(crate) fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|(t, _)| *t)
    }

    /// Moves the clock to `t`, delivering everything due.
    pub(crate) fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now, "time goes forward");
        while let Some((&(at, seq), _)) = self.in_flight.iter().next() {
            if at > t {
                break;
            }
            let p = self.in_flight.remove(&(at, seq)).expect("present");
            self.now = at;
            self.deliver(p);
        }
        self.now = t;
    }

    /// Next received datagram of `host`: (source, payload).
    pub(crate) fn recv(&mut self, host: HostId) -> Option<(SocketAddr, Payload)> {
        self.recv_at(host).map(|(_, src, payload)| (src, payload))
    }

    /// Like [`Self::recv`], with the local port it came to.
    pub(crate) fn recv_at(&mut self, host: HostId) -> Option<(u16, SocketAddr, Payload)> {
        self.hosts[host].inbox.pop_front()
    }

    fn deliver(&mut self, p: Packet) {
        let now = self.now;
        // LAN or public host.
        if let Some(h) = self.hosts.iter_mut().find(|h| h.ip == p.dst.ip()) {
            let lan_ok = match h.nat {
                None => true,
                Some(n) => same_lan(self.nats[n].lan, p.src.ip()),
            };
            if lan_ok {
                h.inbox.push_back((p.dst.port(), p.src, p.payload));
            } else {
                self.dropped += 1;
            }
            return;
        }
        let Some(n) = self.nats.iter().position(|n| n.public_ip == p.dst.ip()) else {
            self.dropped += 1;
            return;
        };
        match self.nat_inbound(n, p.dst.port(), p.src, now) {
            Some(priv_dst) => {
                if let Some(h) = self.hosts.iter_mut().find(|h| h.ip == priv_dst.ip()) {
                    h.inbox.push_back((priv_dst.port(), p.src, p.payload));
                }
            }
            None => self.dropped += 1,
        }
    }

    fn alloc_random(&mut self, n: usize) -> u16 {
        let (lo, hi) = match self.nats[n].kind {
            NatType::SymmetricRange { lo, hi } => (lo, hi),
            _ => (1024, 65535),
        };
        loop {
            let port = self.rng.gen_range(lo..=hi);
            if !self.nats[n].owner.contains_key(&port) {
                return port;
            }
        }
    }

    /// A random free port whose tuple toward `dst` no live unsolicited
    /// inbound flow holds: Linux's NAT skips a port whose reply tuple is
    /// in its connection table (`nf_nat_used_tuple`), so an early packet
    /// from `dst` to port P keeps P from being handed out toward `dst`.
    fn alloc_random_toward(&mut self, n: usize, dst: SocketAddr) -> u16 {
        let (now, timeout) = (self.now, self.mapping_timeout);
        loop {
            let port = self.alloc_random(n);
            let taken = self.nats[n]
                .unsolicited
                .get(&(port, dst))
                .is_some_and(|t| now.saturating_duration_since(*t) < timeout);
            if !taken {
                return port;
            }
        }
    }

    fn alloc_preserving(&mut self, n: usize, want: u16) -> u16 {
        if !self.nats[n].owner.contains_key(&want) {
            want
        } else {
            self.alloc_random(n)
        }
    }

    fn alloc_sequential(&mut self, n: usize, delta: u16, jitter: u16) -> u16 {
        loop {
            let step = delta
                + if jitter > 0 {
                    self.rng.gen_range(0..=jitter)
                } else {
                    0
                };
            let nat = &mut self.nats[n];
            nat.next_port = nat.next_port.wrapping_add(step).max(1024);
            if !nat.owner.contains_key(&nat.next_port) {
                return nat.next_port;
            }
        }
    }

    fn nat_outbound(&mut self, n: usize, src: SocketAddr, dst: SocketAddr) -> Option<SocketAddr> {
        let now = self.now;
        let timeout = self.mapping_timeout;
        let alive = |t: &Instant| now.saturating_duration_since(*t) < timeout;
        let kind = self.nats[n].kind;
        let port = match kind {
            NatType::UdpBlocked => return None,
            NatType::None => return Some(src),
            NatType::FullCone | NatType::Home => {
                let base = match self.nats[n].eim.get(&src) {
                    Some((p, t)) if alive(t) => *p,
                    _ => {
                        let p = self.alloc_preserving(n, src.port());
                        self.nats[n].owner.insert(p, src);
                        p
                    }
                };
                self.nats[n].eim.insert(src, (base, now));
                let nat = &mut self.nats[n];
                match nat.dep.get(&(src, dst)) {
                    Some((p, t)) if alive(t) => *p,
                    _ => {
                        let established = nat
                            .flows
                            .get(&(base, dst))
                            .is_some_and(|(s, t)| *s == src && alive(t));
                        let clash = kind == NatType::Home
                            && !established
                            && nat.unsolicited.get(&(base, dst)).is_some_and(alive);
                        if clash {
                            let p = self.alloc_random(n);
                            let nat = &mut self.nats[n];
                            nat.owner.insert(p, src);
                            nat.clashes += 1;
                            nat.dep.insert((src, dst), (p, now));
                            p
                        } else {
                            base
                        }
                    }
                }
            }
            NatType::Symmetric
            | NatType::SymmetricRange { .. }
            | NatType::SequentialSymmetric { .. } => match self.nats[n].dep.get(&(src, dst)) {
                Some((p, t)) if alive(t) => *p,
                _ => {
                    let p = match kind {
                        NatType::SequentialSymmetric { delta, jitter } => {
                            self.alloc_sequential(n, delta, jitter)
                        }
                        _ => self.alloc_random_toward(n, dst),
                    };
                    self.nats[n].owner.insert(p, src);
                    p
                }
            },
        };
        let nat = &mut self.nats[n];
        if let Some(e) = nat.dep.get_mut(&(src, dst)) {
            e.1 = now;
        } else if matches!(
            kind,
            NatType::Symmetric
                | NatType::SymmetricRange { .. }
                | NatType::SequentialSymmetric { .. }
        ) {
            nat.dep.insert((src, dst), (port, now));
        }
        nat.flows.insert((port, dst), (src, now));
        Some(SocketAddr::new(nat.public_ip, port))
    }

    fn nat_inbound(
        &mut self,
        n: usize,
        port: u16,
        from: SocketAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        let timeout = self.mapping_timeout;
        let alive = |t: &Instant| now.saturating_duration_since(*t) < timeout;
        let nat = &mut self.nats[n];
        match nat.kind {
            NatType::UdpBlocked | NatType::None => None,
            NatType::FullCone => {
                let owner = *nat.owner.get(&port)?;
                match nat.eim.get(&owner) {
                    Some((p, t)) if *p == port && alive(t) => Some(owner),
                    _ => None,
                }
            }
            NatType::Home
            | NatType::Symmetric
            | NatType::SymmetricRange { .. }
            | NatType::SequentialSymmetric { .. } => match nat.flows.get_mut(&(port, from)) {
                Some((src, t)) if alive(t) => {
                    *t = now;
                    Some(*src)
                }
                _ => {
                    nat.unsolicited.entry((port, from)).or_insert(now);
                    None
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Sends from the NATed host to two servers; returns the mapped sources
    /// and whether an unsolicited packet from a third address got in.
    fn probe(kind: NatType) -> (SocketAddr, SocketAddr, bool) {
        let t0 = Instant::now();
        let mut sim = Sim::new(3, t0);
        let s1 = sim.add_public_host("192.0.2.1".parse().unwrap());
        let s2 = sim.add_public_host("192.0.2.2".parse().unwrap());
        let s3 = sim.add_public_host("192.0.2.3".parse().unwrap());
        let h = sim.add_natted_host(
            kind,
            "203.0.113.1".parse().unwrap(),
            "192.168.1.2".parse().unwrap(),
        );
        sim.send(h, 5000, sa("192.0.2.1:1"), Payload::BindingRequest);
        sim.send(h, 5000, sa("192.0.2.2:1"), Payload::BindingRequest);
        sim.advance_to(t0 + Duration::from_secs(1));
        let m1 = sim.recv(s1).unwrap().0;
        let m2 = sim.recv(s2).unwrap().0;
        sim.send(s3, 1, m1, Payload::BindingRequest);
        sim.advance_to(t0 + Duration::from_secs(2));
        (m1, m2, sim.recv(h).is_some())
    }

    #[test]
    fn nat_behaviours() {
        let (a, b, open) = probe(NatType::FullCone);
        assert!(a == b && a.port() == 5000 && open);
        let (a, b, open) = probe(NatType::Home);
        assert!(a == b && a.port() == 5000 && !open);
        let (a, b, open) = probe(NatType::Symmetric);
        assert!(a != b && !open);
        let (a, b, _) = probe(NatType::SequentialSymmetric {
            delta: 2,
            jitter: 0,
        });
        assert_eq!(b.port(), a.port() + 2);
    }

    #[test]
    fn mappings_expire_and_blocked_drops() {
        let t0 = Instant::now();
        let mut sim = Sim::new(1, t0);
        let s = sim.add_public_host("192.0.2.1".parse().unwrap());
        let h = sim.add_natted_host(
            NatType::Home,
            "203.0.113.1".parse().unwrap(),
            "192.168.1.2".parse().unwrap(),
        );
        let b = sim.add_natted_host(
            NatType::UdpBlocked,
            "203.0.113.2".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        );
        sim.send(h, 5000, sa("192.0.2.1:1"), Payload::BindingRequest);
        sim.send(b, 5000, sa("192.0.2.1:1"), Payload::BindingRequest);
        sim.advance_to(t0 + Duration::from_millis(100));
        let (m, _) = sim.recv(s).unwrap();
        assert!(sim.recv(s).is_none(), "blocked host never gets out");
        // Reply within the timeout gets in, after it does not.
        sim.send(s, 1, m, Payload::BindingResponse(m));
        sim.advance_to(t0 + Duration::from_secs(1));
        assert!(sim.recv(h).is_some());
        let later = sim.now() + sim.mapping_timeout + Duration::from_secs(1);
        sim.advance_to(later);
        sim.send(s, 1, m, Payload::BindingResponse(m));
        sim.advance_to(later + Duration::from_secs(1));
        assert!(sim.recv(h).is_none());
    }
}
