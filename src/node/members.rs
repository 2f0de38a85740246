//! Network membership, sans-IO: which hosts are members (their
//! certificates verified against the CAs we trust), which lookups to send
//! to the bootstraps' directory, and what waits for their answers.
//!
//! A host with a `[network]` needs no list of peers: it finds a member
//! when it first needs it, by overlay address (a packet to an address of
//! the network that no peer owns) or by key (a member contacted us through
//! a bootstrap), asks a bootstrap (`MEMBER_LOOKUP`), verifies the answer
//! itself (the bootstrap is not trusted), and adds the member as a peer.
//! [`MemberBook`] makes those decisions; the overlay sends and receives
//! (`overlay/members.rs`). Time comes in as `now` (monotonic, for the
//! bounds) and `unix` (seconds, for certificate validity).
//!
//! Bounds: at most [`MAX_PENDING`] lookups under way, [`LOOKUPS_PER_SEC`]
//! sent a second; per lookup at most [`STAGED_PER_LOOKUP`] datagrams wait;
//! messages from keys being looked up: [`STASH_PER_KEY`] each, for
//! [`MAX_PENDING`] keys; a query answered "no member" is not asked again
//! for [`NOT_FOUND_FOR`]; members at most `max_members`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::IpNet;

use crate::cert::{check_presenter, verify, CertError};
use crate::identity::PeerId;
use crate::proto::cert::Certificate;
use crate::proto::{ControlMessage, MemberQuery};
use crate::ratelimit::TokenBucket;

/// Most lookups under way at once.
pub const MAX_PENDING: usize = 64;
/// Lookups sent a second at most (burst of twice that).
pub const LOOKUPS_PER_SEC: f64 = 5.0;
/// A lookup unanswered for this long may be sent again.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// A query answered "no member" (or refused) is not asked again for this
/// long: short, as a host that just started registers within a second.
pub const NOT_FOUND_FOR: Duration = Duration::from_secs(1);
/// Datagrams waiting for one lookup at most.
pub const STAGED_PER_LOOKUP: usize = 32;
/// Messages from one key being looked up, kept to replay once it is a
/// member.
pub const STASH_PER_KEY: usize = 8;

/// What this host's membership is based on.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// This host's certificate.
    pub certificate: Certificate,
    /// The CA keys whose certificates make a member (more than one while a
    /// CA is rotated).
    pub trusted: Vec<PeerId>,
    /// Host keys refused even with a valid certificate.
    pub revoked: Vec<PeerId>,
    /// The most members held at once (beyond the configured peers).
    pub max_members: usize,
}

/// A member the book accepted.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its key.
    pub peer: PeerId,
    /// Its certificate (verified).
    pub cert: Arc<Certificate>,
}

/// A message from a key not (yet) known, kept while it is looked up.
#[derive(Clone, Debug)]
pub struct Stashed {
    /// The bootstrap link it came on.
    pub via: std::net::SocketAddr,
    /// The message.
    pub msg: ControlMessage,
}

/// What an answer did.
#[derive(Debug, Default)]
pub struct Joined {
    /// The new member, if the answer made one.
    pub member: Option<Member>,
    /// Datagrams that waited for the lookup (send them to the member).
    pub staged: Vec<(Instant, Bytes)>,
    /// Messages the member sent before we knew it (handle them now).
    pub stashed: Vec<Stashed>,
}

#[derive(Debug)]
struct Pending {
    sent: Instant,
    staged: Vec<(Instant, Bytes)>,
    stashed: Vec<Stashed>,
}

/// Counters of the book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemberCounters {
    /// Lookups sent.
    pub lookups: u64,
    /// Members accepted.
    pub joined: u64,
    /// Answers refused, by reason: see [`MemberBook::refusals`].
    pub refused: u64,
    /// Lookups answered "no member".
    pub not_found: u64,
    /// Members removed (expired, revoked, CA no longer trusted).
    pub removed: u64,
    /// Datagrams or messages dropped because a bound was reached.
    pub dropped: u64,
}

/// The membership decisions of one host.
#[derive(Debug)]
pub struct MemberBook {
    config: MembershipConfig,
    own: PeerId,
    /// Our networks: the prefixes of our own certified addresses.
    networks: Vec<IpNet>,
    members: HashMap<PeerId, Arc<Certificate>>,
    pending: HashMap<MemberQuery, Pending>,
    not_found: HashMap<MemberQuery, Instant>,
    rate: TokenBucket,
    counters: MemberCounters,
    refusals: HashMap<&'static str, u64>,
}

impl MemberBook {
    /// A book for `config` of the host with key `own`, at `now`.
    pub fn new(config: MembershipConfig, own: PeerId, now: Instant) -> Self {
        let networks = config
            .certificate
            .body
            .addresses
            .iter()
            .map(IpNet::trunc)
            .collect();
        Self {
            config,
            own,
            networks,
            members: HashMap::new(),
            pending: HashMap::new(),
            not_found: HashMap::new(),
            rate: TokenBucket::new(LOOKUPS_PER_SEC, 2.0 * LOOKUPS_PER_SEC, now),
            counters: MemberCounters::default(),
            refusals: HashMap::new(),
        }
    }

    /// Our own certificate (registered with every bootstrap).
    pub fn certificate(&self) -> &Certificate {
        &self.config.certificate
    }

    /// Whether `addr` is in one of our networks (so a member may own it).
    pub fn in_network(&self, addr: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(&addr))
    }

    /// The members now.
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        self.members.iter().map(|(peer, cert)| Member {
            peer: *peer,
            cert: cert.clone(),
        })
    }

    /// The certificate of member `peer`.
    pub fn member(&self, peer: &PeerId) -> Option<&Arc<Certificate>> {
        self.members.get(peer)
    }

    /// The counters.
    pub fn counters(&self) -> MemberCounters {
        self.counters
    }

    /// Answers refused, by reason ([`CertError::reason`]).
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self.refusals.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_unstable();
        v
    }

    fn refuse(&mut self, error: &CertError) {
        self.counters.refused += 1;
        *self.refusals.entry(error.reason()).or_default() += 1;
    }

    /// Whether `query` should be sent now; if so it is recorded as under
    /// way (the caller sends it). Also false while it is under way, after a
    /// recent "no member", or at a bound.
    fn start(&mut self, query: MemberQuery, now: Instant) -> bool {
        if let Some(p) = self.pending.get_mut(&query) {
            if now.saturating_duration_since(p.sent) < LOOKUP_TIMEOUT {
                return false;
            }
            if !self.rate.try_take(1.0, now) {
                return false;
            }
            p.sent = now;
            self.counters.lookups += 1;
            return true;
        }
        if self
            .not_found
            .get(&query)
            .is_some_and(|t| now.saturating_duration_since(*t) < NOT_FOUND_FOR)
        {
            return false;
        }
        self.not_found
            .retain(|_, t| now.saturating_duration_since(*t) < NOT_FOUND_FOR);
        if self.pending.len() >= MAX_PENDING || !self.rate.try_take(1.0, now) {
            return false;
        }
        self.pending.insert(
            query,
            Pending {
                sent: now,
                staged: Vec::new(),
                stashed: Vec::new(),
            },
        );
        self.counters.lookups += 1;
        true
    }

    /// A datagram for overlay address `dst`, which no peer owns. Returns
    /// the lookup to send, if one is due. The datagram waits for the answer
    /// (bounded) unless `dst` is outside our networks or recently unknown.
    pub fn send_to(&mut self, dst: IpAddr, data: Bytes, now: Instant) -> Option<MemberQuery> {
        if !self.in_network(dst) {
            self.counters.dropped += 1;
            return None;
        }
        let query = MemberQuery::Addr(dst);
        let due = self.start(query, now);
        match self.pending.get_mut(&query) {
            Some(p) if p.staged.len() < STAGED_PER_LOOKUP => p.staged.push((now, data)),
            _ => self.counters.dropped += 1,
        }
        due.then_some(query)
    }

    /// Asks who is behind `query` with nothing to deliver (`antq-tun ping`
    /// to a member not met yet). Returns the lookup to send, if one is due;
    /// `None` also for an address outside our networks.
    pub fn look_up(&mut self, query: MemberQuery, now: Instant) -> Option<MemberQuery> {
        if let MemberQuery::Addr(addr) = query {
            if !self.in_network(addr) {
                return None;
            }
        }
        self.start(query, now).then_some(query)
    }

    /// A message from `peer`, not a peer of ours, came through the
    /// bootstrap at `via`. Returns the lookup to send, if one is due; the
    /// message is kept (bounded) to be handled once `peer` is a member.
    pub fn message_from_unknown(
        &mut self,
        peer: PeerId,
        via: std::net::SocketAddr,
        msg: ControlMessage,
        now: Instant,
    ) -> Option<MemberQuery> {
        if self.config.revoked.contains(&peer) {
            self.counters.dropped += 1;
            return None;
        }
        let query = MemberQuery::Key(*peer.as_bytes());
        let due = self.start(query, now);
        match self.pending.get_mut(&query) {
            Some(p) if p.stashed.len() < STASH_PER_KEY => p.stashed.push(Stashed { via, msg }),
            _ => self.counters.dropped += 1,
        }
        due.then_some(query)
    }

    /// A bootstrap answered `query` with `cert`, at `unix`. The certificate
    /// is verified (trusted CA, signature, time, not revoked, and for a key
    /// lookup the key asked for; for an address lookup one that covers the
    /// address). A member new to us is accepted up to `max_members`.
    pub fn on_member(
        &mut self,
        query: MemberQuery,
        cert: Certificate,
        unix: u64,
    ) -> Result<Joined, CertError> {
        let Some(pending) = self.pending.remove(&query) else {
            // Not asked (or answered already): ignored.
            return Ok(Joined::default());
        };
        let checked = self.check(&query, &cert, unix);
        if let Err(e) = checked {
            self.refuse(&e);
            return Err(e);
        }
        let peer = PeerId::from_bytes(cert.body.host).map_err(CertError::Key)?;
        if peer == self.own {
            return Ok(Joined::default());
        }
        let mut joined = Joined {
            member: None,
            staged: pending.staged,
            stashed: pending.stashed,
        };
        if !self.members.contains_key(&peer) && self.members.len() >= self.config.max_members {
            self.counters.dropped += 1;
            return Ok(Joined::default());
        }
        let cert = Arc::new(cert);
        if self.members.insert(peer, cert.clone()).is_none() {
            self.counters.joined += 1;
        }
        // Whatever else waited for the same member comes along.
        let other = match query {
            MemberQuery::Key(_) => None,
            MemberQuery::Addr(_) => Some(MemberQuery::Key(cert.body.host)),
        };
        if let Some(p) = other.and_then(|q| self.pending.remove(&q)) {
            joined.stashed.extend(p.stashed);
        }
        joined.member = Some(Member { peer, cert });
        Ok(joined)
    }

    fn check(&self, query: &MemberQuery, cert: &Certificate, unix: u64) -> Result<(), CertError> {
        verify(cert, &self.config.trusted, &self.config.revoked, unix)?;
        match query {
            MemberQuery::Key(key) => {
                let asked = PeerId::from_bytes(*key).map_err(CertError::Key)?;
                check_presenter(cert, &asked)
            }
            MemberQuery::Addr(addr) => {
                let covers = cert.body.allowed_ips().iter().any(|n| n.contains(addr));
                if covers {
                    Ok(())
                } else {
                    Err(CertError::WrongAnswer(format!(
                        "the certificate does not cover {addr}, the address asked for"
                    )))
                }
            }
        }
    }

    /// `query` could not be sent (no bootstrap connected): it is due again
    /// at the next [`Self::retries`].
    pub fn not_sent(&mut self, query: MemberQuery) {
        if let Some(p) = self.pending.get_mut(&query) {
            p.sent = p.sent.checked_sub(LOOKUP_TIMEOUT).unwrap_or(p.sent);
        }
    }

    /// A bootstrap knows no member for `query`: what waited for it is
    /// dropped, and it is not asked again for [`NOT_FOUND_FOR`].
    pub fn on_no_member(&mut self, query: MemberQuery, now: Instant) {
        if let Some(p) = self.pending.remove(&query) {
            self.counters.not_found += 1;
            self.counters.dropped += (p.staged.len() + p.stashed.len()) as u64;
            self.not_found.insert(query, now);
        }
    }

    /// Lookups unanswered for [`LOOKUP_TIMEOUT`] that have nothing waiting
    /// are forgotten (their datagrams are stale by then anyway).
    pub fn expire_lookups(&mut self, now: Instant) {
        let before = self.pending.len();
        let mut dropped = 0;
        self.pending.retain(|_, p| {
            let keep = now.saturating_duration_since(p.sent) < 2 * LOOKUP_TIMEOUT;
            if !keep {
                dropped += p.staged.len() + p.stashed.len();
            }
            keep
        });
        if self.pending.len() != before {
            self.counters.dropped += dropped as u64;
        }
    }

    /// The lookups under way whose answer is late: send them again (each is
    /// re-sent at most every [`LOOKUP_TIMEOUT`], within the rate).
    pub fn retries(&mut self, now: Instant) -> Vec<MemberQuery> {
        let late: Vec<MemberQuery> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= LOOKUP_TIMEOUT)
            .map(|(q, _)| *q)
            .collect();
        late.into_iter().filter(|q| self.start(*q, now)).collect()
    }

    /// Members no longer valid at `unix` (expired) or under the current
    /// trust and revocations: removed from the book and returned.
    pub fn prune(&mut self, unix: u64) -> Vec<PeerId> {
        let (trusted, revoked) = (&self.config.trusted, &self.config.revoked);
        let gone: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, c)| verify(c, trusted, revoked, unix).is_err())
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.members.remove(p);
        }
        self.counters.removed += gone.len() as u64;
        gone
    }

    /// A new certificate of ours (renewed; same key): our networks follow
    /// its addresses.
    pub fn set_certificate(&mut self, certificate: Certificate) {
        self.networks = certificate
            .body
            .addresses
            .iter()
            .map(IpNet::trunc)
            .collect();
        self.config.certificate = certificate;
    }

    /// New trusted CAs and revocations (a reload): returns the members they
    /// remove.
    pub fn set_policy(
        &mut self,
        trusted: Vec<PeerId>,
        revoked: Vec<PeerId>,
        unix: u64,
    ) -> Vec<PeerId> {
        self.config.trusted = trusted;
        self.config.revoked = revoked;
        self.prune(unix)
    }
}

#[cfg(test)]
mod tests;
