//! The member directory (sans-IO): connected members' certificates, found
//! by key or overlay address, served only within the same network (CA).
//!
//! A member registers its certificate on its connection
//! (`MEMBER_REGISTER`). The bootstrap checks what it can without trusting
//! any CA of its own: the certificate is for the key of the connection that
//! sent it, its signature verifies with the CA key it names, and it is
//! valid now. The members who trust that CA verify it again when they get
//! it: the bootstrap is not trusted with membership, it only saves them
//! from listing each other.
//!
//! Bounds: one certificate per connected key (at most
//! [`crate::proto::cert::MAX_CERT_LEN`] bytes each, so the directory is
//! bounded by the bootstrap's `max_peers`); lookups cost a coordination
//! token of the asker (the registry's rate limit); an address lookup is a
//! hash lookup, then a scan of the routes of that network's members that
//! have routes (at most 32 each).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cert::{check_presenter, verify, CertError};
use crate::identity::PeerId;
use crate::proto::cert::Certificate;
use crate::proto::MemberQuery;

/// A network's CA key, naming the network in the directory.
type CaKey = [u8; 32];

/// The members of one network.
#[derive(Debug, Default)]
struct Network {
    /// Overlay address (a certificate's `addresses`) to member.
    by_addr: HashMap<IpAddr, PeerId>,
    /// Members whose certificates have routes.
    routed: Vec<PeerId>,
}

/// Why a lookup found nothing to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupRefusal {
    /// The asker registered no certificate: it is no member of anything.
    #[error("the asker is not a registered member")]
    NotMember,
    /// No member of the asker's network matches (or its certificate
    /// expired since it registered).
    #[error("no such member")]
    NotFound,
}

/// Connected members' certificates.
#[derive(Debug, Default)]
pub struct Directory {
    members: HashMap<PeerId, Arc<Certificate>>,
    networks: HashMap<CaKey, Network>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many members are registered.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no member is registered.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The certificate `peer` registered, if any.
    pub fn certificate_of(&self, peer: &PeerId) -> Option<&Arc<Certificate>> {
        self.members.get(peer)
    }

    /// `peer` (the key of the connection that sent it) registers `cert` at
    /// `now` (Unix seconds). Replaces its previous registration. An address
    /// another member of the same network holds moves to this one (the
    /// newest registration wins: a host re-keyed under the same address).
    pub fn register(&mut self, peer: PeerId, cert: Certificate, now: u64) -> Result<(), CertError> {
        check_presenter(&cert, &peer)?;
        let ca = PeerId::from_bytes(cert.body.ca)
            .map_err(|_| CertError::UnknownCa("(not a public key)".into()))?;
        verify(&cert, &[ca], &[], now)?;
        self.remove(&peer);
        let network = self.networks.entry(cert.body.ca).or_default();
        for a in &cert.body.addresses {
            network.by_addr.insert(a.addr(), peer);
        }
        if !cert.body.routes.is_empty() {
            network.routed.push(peer);
        }
        self.members.insert(peer, Arc::new(cert));
        Ok(())
    }

    /// `peer` left (or registered again): its certificate goes.
    pub fn remove(&mut self, peer: &PeerId) {
        let Some(cert) = self.members.remove(peer) else {
            return;
        };
        let ca = cert.body.ca;
        if let Some(network) = self.networks.get_mut(&ca) {
            for a in &cert.body.addresses {
                if network.by_addr.get(&a.addr()) == Some(peer) {
                    network.by_addr.remove(&a.addr());
                }
            }
            network.routed.retain(|p| p != peer);
            if network.by_addr.is_empty() && network.routed.is_empty() {
                self.networks.remove(&ca);
            }
        }
    }

    /// What `asker` gets for `query` at `now` (Unix seconds): the
    /// certificate of a member of its own network, valid now. An address
    /// matches a member's address exactly, else the longest of the routes.
    pub fn lookup(
        &self,
        asker: &PeerId,
        query: MemberQuery,
        now: u64,
    ) -> Result<Arc<Certificate>, LookupRefusal> {
        let own = self.members.get(asker).ok_or(LookupRefusal::NotMember)?;
        let ca = own.body.ca;
        let found = match query {
            MemberQuery::Key(key) => PeerId::from_bytes(key)
                .ok()
                .and_then(|k| self.members.get(&k))
                .filter(|c| c.body.ca == ca),
            MemberQuery::Addr(addr) => self.networks.get(&ca).and_then(|network| {
                let member = network.by_addr.get(&addr).or_else(|| {
                    network
                        .routed
                        .iter()
                        .filter_map(|p| {
                            let cert = self.members.get(p)?;
                            let len = cert
                                .body
                                .routes
                                .iter()
                                .filter(|r| r.contains(&addr))
                                .map(ipnet::IpNet::prefix_len)
                                .max()?;
                            Some((len, p))
                        })
                        .max_by_key(|(len, _)| *len)
                        .map(|(_, p)| p)
                })?;
                self.members.get(member)
            }),
        };
        found
            .filter(|c| c.body.valid_at(now))
            .cloned()
            .ok_or(LookupRefusal::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::CaKey as Ca;
    use crate::identity::Identity;
    use crate::proto::cert::CertBody;

    const NOW: u64 = 1_800_000_000;

    fn ca(seed: u8) -> Ca {
        Ca::from_parts("lab", Identity::from_secret_bytes(&[seed; 32])).unwrap()
    }

    fn member(ca: &Ca, seed: u8, addr: &str, routes: &[&str]) -> (PeerId, Certificate) {
        let id = Identity::from_secret_bytes(&[seed; 32]).peer_id();
        let cert = ca
            .sign(CertBody {
                network: String::new(),
                ca: [0; 32],
                host: *id.as_bytes(),
                name: format!("h{seed}"),
                not_before: NOW - 10,
                not_after: NOW + 100,
                addresses: vec![addr.parse().unwrap()],
                groups: vec![],
                routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
            })
            .unwrap();
        (id, cert)
    }

    fn ip(s: &str) -> MemberQuery {
        MemberQuery::Addr(s.parse().unwrap())
    }

    #[test]
    fn members_find_each_other_by_key_address_and_route() {
        let net = ca(1);
        let mut d = Directory::new();
        let (a, ca_) = member(&net, 10, "10.90.0.1/24", &[]);
        let (b, cb) = member(
            &net,
            11,
            "10.90.0.2/24",
            &["192.168.50.0/24", "192.168.0.0/16"],
        );
        let (c, cc) = member(&net, 12, "10.90.0.3/24", &["192.168.50.128/25"]);
        d.register(a, ca_, NOW).unwrap();
        d.register(b, cb.clone(), NOW).unwrap();
        d.register(c, cc.clone(), NOW).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            *d.lookup(&a, MemberQuery::Key(*b.as_bytes()), NOW).unwrap(),
            cb
        );
        assert_eq!(*d.lookup(&a, ip("10.90.0.2"), NOW).unwrap(), cb);
        // The longest route wins.
        assert_eq!(*d.lookup(&a, ip("192.168.50.7"), NOW).unwrap(), cb);
        assert_eq!(*d.lookup(&a, ip("192.168.50.200"), NOW).unwrap(), cc);
        assert_eq!(*d.lookup(&a, ip("192.168.9.1"), NOW).unwrap(), cb);
        assert_eq!(
            d.lookup(&a, ip("10.90.0.9"), NOW),
            Err(LookupRefusal::NotFound)
        );
    }

    #[test]
    fn networks_are_apart_and_strangers_get_nothing() {
        let (n1, n2) = (ca(1), ca(2));
        let mut d = Directory::new();
        let (a, ca_) = member(&n1, 10, "10.90.0.1/24", &[]);
        let (x, cx) = member(&n2, 20, "10.90.0.2/24", &[]);
        d.register(a, ca_, NOW).unwrap();
        d.register(x, cx, NOW).unwrap();
        assert_eq!(
            d.lookup(&a, ip("10.90.0.2"), NOW),
            Err(LookupRefusal::NotFound)
        );
        assert_eq!(
            d.lookup(&a, MemberQuery::Key(*x.as_bytes()), NOW),
            Err(LookupRefusal::NotFound)
        );
        let stranger = Identity::from_secret_bytes(&[30; 32]).peer_id();
        assert_eq!(
            d.lookup(&stranger, ip("10.90.0.1"), NOW),
            Err(LookupRefusal::NotMember)
        );
    }

    #[test]
    fn registrations_are_checked() {
        let net = ca(1);
        let mut d = Directory::new();
        let (a, cert) = member(&net, 10, "10.90.0.1/24", &[]);
        let (b, _) = member(&net, 11, "10.90.0.2/24", &[]);
        // Someone else's certificate.
        assert_eq!(
            d.register(b, cert.clone(), NOW).unwrap_err().reason(),
            "key_mismatch"
        );
        // Expired, not yet valid.
        assert_eq!(
            d.register(a, cert.clone(), NOW + 100).unwrap_err().reason(),
            "expired"
        );
        assert_eq!(
            d.register(a, cert.clone(), NOW - 11).unwrap_err().reason(),
            "not_yet_valid"
        );
        // Changed after signing.
        let mut forged = cert.clone();
        forged.body.routes = vec!["0.0.0.0/0".parse().unwrap()];
        assert_eq!(
            d.register(a, forged, NOW).unwrap_err().reason(),
            "bad_signature"
        );
        assert!(d.is_empty());
        d.register(a, cert, NOW).unwrap();
        // Expired since it registered: not served.
        assert_eq!(
            d.lookup(&a, ip("10.90.0.1"), NOW + 100),
            Err(LookupRefusal::NotFound)
        );
    }

    #[test]
    fn leaving_and_re_registering_clean_up() {
        let net = ca(1);
        let mut d = Directory::new();
        let (a, ca1) = member(&net, 10, "10.90.0.1/24", &["10.1.0.0/16"]);
        let (b, cb) = member(&net, 11, "10.90.0.2/24", &[]);
        d.register(a, ca1, NOW).unwrap();
        d.register(b, cb, NOW).unwrap();
        // a registers again with another address: the old one is free.
        let (_, ca2) = member(&net, 10, "10.90.0.7/24", &[]);
        d.register(a, ca2, NOW).unwrap();
        assert_eq!(
            d.lookup(&b, ip("10.90.0.1"), NOW),
            Err(LookupRefusal::NotFound)
        );
        assert_eq!(
            d.lookup(&b, ip("10.1.2.3"), NOW),
            Err(LookupRefusal::NotFound)
        );
        assert!(d.lookup(&b, ip("10.90.0.7"), NOW).is_ok());
        // A re-keyed host takes over the address; the old key's leaving
        // does not take it away.
        let (c, cc) = member(&net, 12, "10.90.0.7/24", &[]);
        d.register(c, cc, NOW).unwrap();
        d.remove(&a);
        assert_eq!(
            d.lookup(&b, ip("10.90.0.7"), NOW).unwrap().body.host,
            *c.as_bytes()
        );
        d.remove(&b);
        d.remove(&c);
        assert!(d.is_empty() && d.networks.is_empty());
    }
}
