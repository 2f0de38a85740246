//! Candidates: transport addresses at which a peer may be reachable.
//!
//! Follows RFC 8445 (ICE) where it makes sense for a single-socket overlay:
//!
//! - Every candidate has a *kind* (host, server-reflexive, mapped,
//!   peer-reflexive, predicted, relay) and a 32-bit priority computed as in RFC 8445
//!   §5.1.2.1: `2^24·type_pref + 2^8·local_pref + (256 − component)` with a
//!   single component (1). `Predicted` is an antq extension for ports guessed
//!   behind a symmetric NAT (see [`super::prediction`]); `Mapped` one for
//!   a port the gateway mapped for us (see [`super::portmap`]), ranked
//!   between peer- and server-reflexive.
//! - The local preference slightly favours IPv6 over IPv4 (RFC 8421 spirit)
//!   and orders multiple interfaces by the order they were given.
//! - [`host_addresses`] takes the host's addresses from the interface list
//!   of [`antq_platform::interfaces`]: every address, IPv4 and IPv6, of the
//!   interfaces that are up and not loopback.
//! - [`CandidateSet`] filters host addresses (loopback, unspecified,
//!   multicast, link-local, deprecated IPv6, and the node's own tunnel
//!   addresses never become candidates), deduplicates, canonicalises
//!   IPv4-mapped IPv6 addresses to IPv4 and caps the number of candidates,
//!   keeping the highest priorities.
//! - [`check_list`] forms candidate pairs and sorts them by the RFC 8445
//!   §6.1.2.3 pair priority.

use std::net::{IpAddr, SocketAddr};

use antq_platform::Interface;

use super::addr::{canonical, canonical_ip, is_link_local_v6};

/// The single ICE component we use (RFC 8445 component ID 1).
pub const COMPONENT: u32 = 1;

/// The kind of a candidate, which determines its type preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address bound on a local interface.
    Host,
    /// Our address as observed by a bootstrap server (STUN-like).
    ServerReflexive,
    /// A port the gateway mapped for us (PCP, NAT-PMP, UPnP IGD): reachable
    /// from anyone, like a server-reflexive address with
    /// endpoint-independent filtering (antq extension).
    Mapped,
    /// An address learned from an incoming probe at runtime.
    PeerReflexive,
    /// A port predicted behind a symmetric NAT (antq extension).
    Predicted,
    /// An address on a relay.
    Relay,
}

impl CandidateKind {
    /// RFC 8445 §5.1.2.2 type preference (0..=126).
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::Mapped => 105,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Predicted => 90,
            CandidateKind::Relay => 0,
        }
    }
}

/// Computes the RFC 8445 §5.1.2.1 candidate priority.
pub fn candidate_priority(kind: CandidateKind, local_pref: u16) -> u32 {
    (kind.type_preference() << 24) + (u32::from(local_pref) << 8) + (256 - COMPONENT)
}

/// Local preference for an address: slightly favours IPv6 and orders
/// interfaces by `rank` (0 = most preferred).
pub fn local_preference(ip: IpAddr, rank: u16) -> u16 {
    let family_bonus: u16 = if ip.is_ipv6() { 256 } else { 0 };
    let rank_penalty = rank.min(126).saturating_mul(512);
    (65535 - 256 - rank_penalty) + family_bonus
}

/// A transport address at which a node may be reachable.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The transport address (canonical form).
    pub addr: SocketAddr,
    /// What kind of candidate this is.
    pub kind: CandidateKind,
    /// RFC 8445 priority.
    pub priority: u32,
    /// The local address the candidate is derived from (srflx, prflx,
    /// predicted), if known.
    pub base: Option<SocketAddr>,
    /// Confidence in `[0, 1]` for predicted candidates, `None` otherwise.
    pub confidence: Option<f32>,
}

impl Candidate {
    /// A candidate of `kind` at `addr` with the given local preference.
    pub fn new(addr: SocketAddr, kind: CandidateKind, local_pref: u16) -> Self {
        Candidate {
            addr: canonical(addr),
            kind,
            priority: candidate_priority(kind, local_pref),
            base: None,
            confidence: None,
        }
    }

    /// A host candidate.
    pub fn host(addr: SocketAddr) -> Self {
        Self::new(addr, CandidateKind::Host, local_preference(addr.ip(), 0))
    }

    /// A server-reflexive candidate observed for local `base`.
    pub fn server_reflexive(addr: SocketAddr, base: SocketAddr) -> Self {
        let mut c = Self::new(
            addr,
            CandidateKind::ServerReflexive,
            local_preference(addr.ip(), 0),
        );
        c.base = Some(canonical(base));
        c
    }

    /// A candidate the gateway mapped for local `base`.
    pub fn mapped(addr: SocketAddr, base: SocketAddr) -> Self {
        let mut c = Self::new(addr, CandidateKind::Mapped, local_preference(addr.ip(), 0));
        c.base = Some(canonical(base));
        c
    }

    /// A peer-reflexive candidate (learned from a received probe).
    pub fn peer_reflexive(addr: SocketAddr, base: Option<SocketAddr>) -> Self {
        let mut c = Self::new(
            addr,
            CandidateKind::PeerReflexive,
            local_preference(addr.ip(), 0),
        );
        c.base = base.map(canonical);
        c
    }

    /// A predicted candidate; its local preference scales with `confidence`.
    pub fn predicted(addr: SocketAddr, base: Option<SocketAddr>, confidence: f32) -> Self {
        let confidence = if confidence.is_finite() {
            confidence.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let local_pref = (confidence * 65535.0) as u16;
        let mut c = Self::new(addr, CandidateKind::Predicted, local_pref);
        c.base = base.map(canonical);
        c.confidence = Some(confidence);
        c
    }

    /// A relay candidate.
    pub fn relay(addr: SocketAddr) -> Self {
        Self::new(addr, CandidateKind::Relay, local_preference(addr.ip(), 0))
    }
}

/// Whether an IP can never be a useful candidate: loopback, unspecified,
/// multicast, IPv4 link-local (169.254/16), IPv6 link-local (fe80::/10),
/// broadcast.
pub fn is_unusable_ip(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || is_link_local_v6(&v6)
        }
    }
}

/// A host address, with or without a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAddr {
    /// A full socket address.
    Socket(SocketAddr),
    /// An IP; the port given to [`CandidateSet::add_host_addrs`] is used.
    Ip(IpAddr),
}

impl From<SocketAddr> for HostAddr {
    fn from(a: SocketAddr) -> Self {
        HostAddr::Socket(a)
    }
}

impl From<IpAddr> for HostAddr {
    fn from(a: IpAddr) -> Self {
        HostAddr::Ip(a)
    }
}

/// Information about the interface an address was found on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Interface name; interfaces are ranked in order of first appearance.
    pub name: String,
    /// IPv6 "deprecated" address flag: such addresses are skipped.
    pub deprecated: bool,
}

impl InterfaceInfo {
    /// An interface with the given name and no flags.
    pub fn named(name: impl Into<String>) -> Self {
        InterfaceInfo {
            name: name.into(),
            deprecated: false,
        }
    }
}

/// The addresses of one interface, each with the interface's name and the
/// address's deprecated flag, in the order the OS lists them.
pub fn interface_addresses(
    iface: &Interface,
) -> impl Iterator<Item = (IpAddr, InterfaceInfo)> + '_ {
    iface.addresses.iter().map(move |a| {
        (
            a.addr,
            InterfaceInfo {
                name: iface.name.clone(),
                deprecated: a.deprecated,
            },
        )
    })
}

/// The host addresses to gather candidates from: both families, of every
/// interface that is up and not loopback, in interface order (which ranks
/// interfaces, see [`CandidateSet::add_host_addrs`]).
pub fn host_addresses(interfaces: &[Interface]) -> Vec<(IpAddr, InterfaceInfo)> {
    interfaces
        .iter()
        .filter(|i| i.flags.up && !i.flags.loopback)
        .flat_map(interface_addresses)
        .collect()
}

/// Limits for a [`CandidateSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateSetConfig {
    /// Maximum number of candidates of each kind.
    pub max_per_kind: usize,
    /// Maximum number of candidates overall.
    pub max_total: usize,
    /// Accept loopback addresses (peers that all live on one host, as in
    /// single-machine tests). Off by default.
    pub allow_loopback: bool,
}

impl Default for CandidateSetConfig {
    fn default() -> Self {
        CandidateSetConfig {
            max_per_kind: 8,
            max_total: 16,
            allow_loopback: false,
        }
    }
}

/// Builder and container for a node's own candidates.
#[derive(Debug, Clone, Default)]
pub struct CandidateSet {
    config: CandidateSetConfig,
    excluded: Vec<IpAddr>,
    interfaces: Vec<String>,
    candidates: Vec<Candidate>,
}

impl CandidateSet {
    /// An empty set with the given limits.
    pub fn new(config: CandidateSetConfig) -> Self {
        CandidateSet {
            config,
            ..Default::default()
        }
    }

    /// Addresses that must never become candidates (e.g. the node's own
    /// tunnel addresses). Also removes already-present matching candidates.
    pub fn exclude_ips(&mut self, ips: impl IntoIterator<Item = IpAddr>) -> &mut Self {
        for ip in ips.into_iter().map(canonical_ip) {
            if !self.excluded.contains(&ip) {
                self.excluded.push(ip);
            }
        }
        let excluded = &self.excluded;
        self.candidates
            .retain(|c| !excluded.contains(&c.addr.ip()) || c.kind == CandidateKind::Relay);
        self
    }

    fn acceptable(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let loopback_ok = self.config.allow_loopback && ip.is_loopback();
        (loopback_ok || !is_unusable_ip(ip)) && !self.excluded.contains(&ip)
    }

    /// Adds host addresses; `port` is used for entries given as a bare IP.
    /// Returns the number of candidates actually added.
    pub fn add_host_addrs<A: Into<HostAddr>>(
        &mut self,
        port: u16,
        addrs: impl IntoIterator<Item = (A, InterfaceInfo)>,
    ) -> usize {
        let mut added = 0;
        for (addr, iface) in addrs {
            let addr = match addr.into() {
                HostAddr::Socket(a) => canonical(a),
                HostAddr::Ip(ip) => SocketAddr::new(canonical_ip(ip), port),
            };
            if addr.port() == 0 || !self.acceptable(addr.ip()) {
                continue;
            }
            if iface.deprecated && addr.is_ipv6() {
                continue;
            }
            let rank = match self.interfaces.iter().position(|n| *n == iface.name) {
                Some(r) => r,
                None => {
                    self.interfaces.push(iface.name.clone());
                    self.interfaces.len() - 1
                }
            };
            let rank = u16::try_from(rank).unwrap_or(u16::MAX);
            let c = Candidate::new(addr, CandidateKind::Host, local_preference(addr.ip(), rank));
            if self.insert(c) {
                added += 1;
            }
        }
        added
    }

    /// Adds a server-reflexive candidate (a bootstrap's observation of `base`).
    pub fn add_server_reflexive(&mut self, mapped: SocketAddr, base: SocketAddr) -> bool {
        if !self.acceptable(mapped.ip()) {
            return false;
        }
        self.insert(Candidate::server_reflexive(mapped, base))
    }

    /// Adds the address the gateway mapped for `base` (port mapping).
    pub fn add_mapped(&mut self, mapped: SocketAddr, base: SocketAddr) -> bool {
        if !self.acceptable(mapped.ip()) {
            return false;
        }
        self.insert(Candidate::mapped(mapped, base))
    }

    /// Adds a peer-reflexive candidate learned at runtime.
    pub fn add_peer_reflexive(&mut self, addr: SocketAddr, base: Option<SocketAddr>) -> bool {
        if !self.acceptable(addr.ip()) {
            return false;
        }
        self.insert(Candidate::peer_reflexive(addr, base))
    }

    /// Adds a predicted candidate.
    pub fn add_predicted(
        &mut self,
        addr: SocketAddr,
        base: Option<SocketAddr>,
        confidence: f32,
    ) -> bool {
        if !self.acceptable(addr.ip()) {
            return false;
        }
        self.insert(Candidate::predicted(addr, base, confidence))
    }

    /// Adds a relay candidate (not subject to the exclusion list).
    pub fn add_relay(&mut self, addr: SocketAddr) -> bool {
        self.insert(Candidate::relay(addr))
    }

    /// Inserts a candidate: dedupes by address (keeping the higher priority)
    /// and enforces the caps. Returns whether `c` is in the set afterwards.
    pub fn insert(&mut self, c: Candidate) -> bool {
        let mut c = c;
        c.addr = canonical(c.addr);
        if let Some(existing) = self.candidates.iter_mut().find(|e| e.addr == c.addr) {
            if existing.priority >= c.priority {
                return false;
            }
            *existing = c.clone();
        } else {
            self.candidates.push(c.clone());
        }
        self.enforce_caps();
        self.candidates.contains(&c)
    }

    fn enforce_caps(&mut self) {
        // Highest priority first; stable so equal priorities keep insertion order.
        self.candidates
            .sort_by_key(|c| std::cmp::Reverse(c.priority));
        let mut per_kind: Vec<(CandidateKind, usize)> = Vec::new();
        let max_per_kind = self.config.max_per_kind;
        let max_total = self.config.max_total;
        let mut total = 0;
        self.candidates.retain(|c| {
            let slot = match per_kind.iter_mut().find(|(k, _)| *k == c.kind) {
                Some(slot) => slot,
                None => {
                    per_kind.push((c.kind, 0));
                    per_kind.last_mut().expect("just pushed")
                }
            };
            if slot.1 >= max_per_kind || total >= max_total {
                return false;
            }
            slot.1 += 1;
            total += 1;
            true
        });
    }

    /// The candidates, highest priority first.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Consumes the set, returning the candidates highest priority first.
    pub fn into_vec(self) -> Vec<Candidate> {
        self.candidates
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}

/// ICE agent role: the controlling side is the initiator of a punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Initiator; nominates.
    Controlling,
    /// Responder.
    Controlled,
}

/// RFC 8445 §6.1.2.3 pair priority:
/// `2^32·min(G,D) + 2·max(G,D) + (G > D ? 1 : 0)` where G is the controlling
/// agent's candidate priority and D the controlled agent's.
pub fn pair_priority(role: Role, local_priority: u32, remote_priority: u32) -> u64 {
    let (g, d) = match role {
        Role::Controlling => (u64::from(local_priority), u64::from(remote_priority)),
        Role::Controlled => (u64::from(remote_priority), u64::from(local_priority)),
    };
    (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
}

/// A local/remote candidate pair.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidatePair {
    /// Our candidate (srflx/prflx/predicted replaced by their base when known).
    pub local: Candidate,
    /// The peer's candidate.
    pub remote: Candidate,
    /// RFC 8445 pair priority.
    pub priority: u64,
}

/// Forms the check list: pairs of same-family candidates (relay candidates
/// excluded; reflexive local candidates replaced by their base, RFC 8445
/// §6.1.2.4), redundant pairs pruned, sorted by descending pair priority.
pub fn check_list(local: &[Candidate], remote: &[Candidate], role: Role) -> Vec<CandidatePair> {
    let mut pairs: Vec<CandidatePair> = Vec::new();
    for l in local.iter().filter(|c| c.kind != CandidateKind::Relay) {
        let base_addr = l.base.unwrap_or(l.addr);
        for r in remote.iter().filter(|c| c.kind != CandidateKind::Relay) {
            if base_addr.is_ipv4() != r.addr.is_ipv4() {
                continue;
            }
            let priority = pair_priority(role, l.priority, r.priority);
            let mut local = l.clone();
            local.addr = base_addr;
            match pairs
                .iter_mut()
                .find(|p| p.local.addr == base_addr && p.remote.addr == r.addr)
            {
                Some(p) if p.priority >= priority => {}
                Some(p) => {
                    p.local = local;
                    p.remote = r.clone();
                    p.priority = priority;
                }
                None => pairs.push(CandidatePair {
                    local,
                    remote: r.clone(),
                    priority,
                }),
            }
        }
    }
    pairs.sort_by_key(|p| std::cmp::Reverse(p.priority));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV6};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn priority_formula() {
        let p = candidate_priority(CandidateKind::Host, 65535);
        assert_eq!(p, (126 << 24) + (65535 << 8) + 255);
        assert!(
            candidate_priority(CandidateKind::Host, 0)
                > candidate_priority(CandidateKind::PeerReflexive, 65535)
        );
        assert!(
            candidate_priority(CandidateKind::PeerReflexive, 0)
                > candidate_priority(CandidateKind::ServerReflexive, 65535)
        );
        assert!(
            candidate_priority(CandidateKind::ServerReflexive, 0)
                > candidate_priority(CandidateKind::Predicted, 65535)
        );
        assert!(
            candidate_priority(CandidateKind::PeerReflexive, 0)
                > candidate_priority(CandidateKind::Mapped, 65535)
        );
        assert!(
            candidate_priority(CandidateKind::Mapped, 0)
                > candidate_priority(CandidateKind::ServerReflexive, 65535)
        );
        assert!(
            candidate_priority(CandidateKind::Predicted, 0)
                > candidate_priority(CandidateKind::Relay, 65535)
        );
    }

    #[test]
    fn ipv6_slightly_preferred_and_interfaces_ordered() {
        let mut set = CandidateSet::new(CandidateSetConfig::default());
        let n = set.add_host_addrs(
            4000,
            vec![
                (
                    HostAddr::Ip("192.168.1.2".parse().unwrap()),
                    InterfaceInfo::named("eth0"),
                ),
                (
                    HostAddr::Ip("2001:db8::2".parse().unwrap()),
                    InterfaceInfo::named("eth0"),
                ),
                (
                    HostAddr::Ip("10.0.0.2".parse().unwrap()),
                    InterfaceInfo::named("wlan0"),
                ),
            ],
        );
        assert_eq!(n, 3);
        let addrs: Vec<_> = set.candidates().iter().map(|c| c.addr).collect();
        assert_eq!(
            addrs,
            vec![
                sa("[2001:db8::2]:4000"),
                sa("192.168.1.2:4000"),
                sa("10.0.0.2:4000")
            ]
        );
    }

    #[test]
    fn host_filtering() {
        let mut set = CandidateSet::new(CandidateSetConfig::default());
        set.exclude_ips(["10.99.0.1".parse().unwrap()]);
        let deprecated = InterfaceInfo {
            name: "eth0".into(),
            deprecated: true,
        };
        let eth = InterfaceInfo::named("eth0");
        let list: Vec<(SocketAddr, InterfaceInfo)> = vec![
            (sa("127.0.0.1:1"), eth.clone()),
            (sa("0.0.0.0:1"), eth.clone()),
            (sa("224.0.0.1:1"), eth.clone()),
            (sa("169.254.3.4:1"), eth.clone()),
            (sa("[fe80::1]:1"), eth.clone()),
            (sa("[::1]:1"), eth.clone()),
            (sa("[ff02::1]:1"), eth.clone()),
            (sa("[2001:db8::5]:1"), deprecated),
            (sa("10.99.0.1:1"), InterfaceInfo::named("antq0")),
            (sa("[::ffff:10.99.0.1]:1"), InterfaceInfo::named("antq0")),
            (sa("192.168.0.3:1"), eth.clone()),
            (sa("[::ffff:192.168.0.3]:1"), eth.clone()),
        ];
        assert_eq!(set.add_host_addrs(1, list), 1);
        assert_eq!(set.candidates()[0].addr, sa("192.168.0.3:1"));
        // Excluding later also removes.
        set.exclude_ips(["192.168.0.3".parse().unwrap()]);
        assert!(set.is_empty());
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let v6 = SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped(),
            9,
            0,
            0,
        ));
        assert_eq!(canonical(v6), sa("1.2.3.4:9"));
        let c = Candidate::server_reflexive(v6, v6);
        assert_eq!(c.addr, sa("1.2.3.4:9"));
        assert_eq!(c.base, Some(sa("1.2.3.4:9")));
    }

    #[test]
    fn caps_keep_highest_priority() {
        let mut set = CandidateSet::new(CandidateSetConfig {
            max_per_kind: 2,
            max_total: 3,
            allow_loopback: false,
        });
        let base = sa("192.168.0.2:5");
        for i in 0..5u16 {
            set.add_predicted(
                sa(&format!("1.1.1.1:{}", 100 + i)),
                Some(base),
                0.1 * f32::from(i),
            );
        }
        assert_eq!(set.len(), 2);
        assert_eq!(set.candidates()[0].addr.port(), 104);
        assert_eq!(set.candidates()[1].addr.port(), 103);
        set.add_server_reflexive(sa("1.1.1.1:5"), base);
        set.add_host_addrs(0, [(base, InterfaceInfo::named("eth0"))]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.candidates()[0].kind, CandidateKind::Host);
        assert_eq!(set.candidates()[1].kind, CandidateKind::ServerReflexive);
        assert_eq!(set.candidates()[2].addr.port(), 104);
    }

    #[test]
    fn dedupe_keeps_higher_priority() {
        let mut set = CandidateSet::default();
        let a = sa("5.5.5.5:5");
        assert!(set.add_server_reflexive(a, a));
        assert!(!set.add_predicted(a, None, 1.0));
        assert!(set.add_host_addrs(0, [(a, InterfaceInfo::named("eth0"))]) == 1);
        assert_eq!(set.len(), 1);
        assert_eq!(set.candidates()[0].kind, CandidateKind::Host);
    }

    #[test]
    fn pair_priority_symmetric_between_roles() {
        let a = 1000;
        let b = 2000;
        // Both agents compute the same priority for the same pair.
        assert_eq!(
            pair_priority(Role::Controlling, a, b),
            pair_priority(Role::Controlled, b, a)
        );
        assert_eq!(
            pair_priority(Role::Controlling, a, b),
            (1000u64 << 32) + 4000
        );
        assert_eq!(
            pair_priority(Role::Controlling, b, a),
            (1000u64 << 32) + 4001
        );
    }

    #[test]
    fn check_list_sorted_and_family_matched() {
        let base = sa("192.168.0.2:5");
        let local = vec![
            Candidate::host(base),
            Candidate::server_reflexive(sa("8.8.8.8:7"), base),
            Candidate::host(sa("[2001:db8::1]:5")),
            Candidate::relay(sa("9.9.9.9:1")),
        ];
        let remote = vec![
            Candidate::server_reflexive(sa("7.7.7.7:7"), sa("10.0.0.1:1")),
            Candidate::host(sa("10.0.0.1:1")),
            Candidate::relay(sa("9.9.9.9:2")),
        ];
        let list = check_list(&local, &remote, Role::Controlling);
        // srflx local pruned into its base; v6 has no partner; relays skipped.
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].remote.addr, sa("10.0.0.1:1"));
        assert_eq!(list[1].remote.addr, sa("7.7.7.7:7"));
        assert!(list.iter().all(|p| p.local.addr == base));
        assert!(list[0].priority > list[1].priority);
    }
}
