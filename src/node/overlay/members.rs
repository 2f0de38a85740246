//! The membership driver: registers our certificate with every bootstrap,
//! sends the directory lookups the [`MemberBook`] decides on, and turns the
//! members it accepts into peers (and removes those it drops).
//!
//! The book is one mutex (`Inner::members`), taken alone: outcomes are
//! computed under it, then acted on (peers added, messages replayed)
//! without it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::links::Link;
use super::{Overlay, SendError};
use crate::identity::PeerId;
use crate::node::members::{Member, MemberBook, MemberCounters, Stashed};
use crate::proto::cert::Certificate;
use crate::proto::{ControlMessage, MemberQuery};

/// How often late lookups are retried and members' certificates re-checked.
const MEMBER_TICK: Duration = Duration::from_secs(1);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Overlay {
    fn book(&self) -> Option<MutexGuard<'_, MemberBook>> {
        self.inner
            .members
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether this overlay has a network (CA) membership.
    pub fn has_membership(&self) -> bool {
        self.inner.members.is_some()
    }

    /// The members found through the directory, with their verified
    /// certificates (the configured peers are not in it).
    pub fn members(&self) -> Vec<Member> {
        self.book()
            .map(|b| b.members().collect())
            .unwrap_or_default()
    }

    /// Changes whenever a member joins or leaves ([`Self::members`]).
    pub fn member_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.members_changed.subscribe()
    }

    /// The membership counters, and the refused answers by reason.
    pub fn member_counters(&self) -> Option<(MemberCounters, Vec<(&'static str, u64)>)> {
        self.book().map(|b| (b.counters(), b.refusals()))
    }

    /// Our own certificate, if we are a member of a network.
    pub fn certificate(&self) -> Option<Certificate> {
        self.book().map(|b| b.certificate().clone())
    }

    fn members_changed(&self) {
        self.inner.members_changed.send_modify(|v| *v += 1);
    }

    /// Registers our certificate with the bootstrap of `link`.
    pub(super) fn register_member(&self, link: &Link) {
        let Some(cert) = self.certificate() else {
            return;
        };
        let sent = link
            .conn
            .control()
            .try_send(ControlMessage::MemberRegister {
                cert: Box::new(cert),
            });
        tracing::debug!(
            ok = sent.is_ok(),
            "certificate registered with the bootstrap"
        );
    }

    fn send_lookup(&self, query: MemberQuery) {
        let Some(link) = self.primary_link() else {
            tracing::debug!(?query, "no bootstrap to ask yet");
            if let Some(mut book) = self.book() {
                book.not_sent(query);
            }
            return;
        };
        let _ = link
            .conn
            .control()
            .try_send(ControlMessage::MemberLookup { query });
    }

    /// Sends a datagram to the member that owns overlay address `dst`,
    /// which no peer owns yet: it waits (bounded) while the member is
    /// looked up, and goes out once it is a peer and connected.
    pub fn send_to_address(&self, dst: IpAddr, data: Bytes) -> Result<(), SendError> {
        let query = {
            let Some(mut book) = self.book() else {
                return Err(SendError::NoMember(dst));
            };
            if !book.in_network(dst) {
                return Err(SendError::NoMember(dst));
            }
            book.send_to(dst, data, Instant::now())
        };
        if let Some(query) = query {
            self.send_lookup(query);
        }
        Ok(())
    }

    /// Looks `query` up in the directory, with nothing to deliver: the
    /// member found becomes a peer. False without a membership, or for an
    /// address outside our networks.
    pub fn look_up(&self, query: MemberQuery) -> bool {
        let due = {
            let Some(mut book) = self.book() else {
                return false;
            };
            if let MemberQuery::Addr(addr) = query {
                if !book.in_network(addr) {
                    return false;
                }
            }
            book.look_up(query, Instant::now())
        };
        if let Some(query) = due {
            self.send_lookup(query);
        }
        true
    }

    /// A message from a key that is no peer of ours came through the
    /// bootstrap at `via`. With a membership it is kept while the key is
    /// looked up; returns false (drop it) without one.
    pub(super) fn message_from_unknown(
        &self,
        peer: [u8; 32],
        via: SocketAddr,
        msg: ControlMessage,
    ) -> bool {
        let Ok(peer) = PeerId::from_bytes(peer) else {
            return false;
        };
        let query = {
            let Some(mut book) = self.book() else {
                return false;
            };
            book.message_from_unknown(peer, via, msg, Instant::now())
        };
        if let Some(query) = query {
            self.send_lookup(query);
        }
        true
    }

    /// A bootstrap answered a lookup with a certificate.
    pub(super) fn on_member(&self, query: MemberQuery, cert: Certificate) {
        let outcome = {
            let Some(mut book) = self.book() else { return };
            book.on_member(query, cert, unix_now())
        };
        let joined = match outcome {
            Ok(joined) => joined,
            Err(error) => {
                tracing::warn!(?query, %error, reason = error.reason(), "directory answer refused");
                return;
            }
        };
        let Some(member) = joined.member else { return };
        let peer = member.peer;
        if self.add_peer(peer, None) {
            tracing::info!(peer = %peer.short(), name = %member.cert.body.name, "member joined");
            self.members_changed();
        }
        let Some(slot) = self.slot(&peer) else { return };
        {
            let mut staged = slot.staged.lock().unwrap_or_else(PoisonError::into_inner);
            for item in joined.staged {
                if staged.len() < super::STAGED_MAX {
                    staged.push_back(item);
                }
            }
        }
        for Stashed { via, msg } in joined.stashed {
            match msg {
                ControlMessage::RelayRequest { .. } => {
                    let ours = self.relay_server(&slot);
                    slot.state().handle_relay_request(via, ours);
                }
                other => slot.state().handle_forwarded(via, other, Instant::now()),
            }
        }
        slot.wake.notify_one();
    }

    /// A bootstrap knows no member for a lookup.
    pub(super) fn on_no_member(&self, query: MemberQuery) {
        if let Some(mut book) = self.book() {
            book.on_no_member(query, Instant::now());
        }
        tracing::debug!(?query, "no such member");
    }

    /// A renewed certificate of ours: kept, and registered again with every
    /// connected bootstrap.
    pub fn set_certificate(&self, cert: Certificate) {
        match self.book() {
            Some(mut book) => book.set_certificate(cert),
            None => return,
        }
        for link in &self.read_links() {
            self.register_member(link);
        }
    }

    /// New trusted CAs and revocations (a reload): members they refuse are
    /// removed at once. Returns the keys removed.
    pub fn set_member_policy(&self, trusted: Vec<PeerId>, revoked: Vec<PeerId>) -> Vec<PeerId> {
        let removed = match self.book() {
            Some(mut book) => book.set_policy(trusted, revoked, unix_now()),
            None => return Vec::new(),
        };
        self.drop_members(&removed, "revoked or no longer trusted");
        removed
    }

    fn drop_members(&self, gone: &[PeerId], why: &str) {
        for peer in gone {
            if self.remove_peer(peer) {
                tracing::info!(peer = %peer.short(), why, "member removed");
            }
        }
        if !gone.is_empty() {
            self.members_changed();
        }
    }

    /// Retries late lookups, forgets dead ones, and removes members whose
    /// certificates expired; every [`MEMBER_TICK`].
    pub(super) async fn tend_members(self) {
        let mut tick = tokio::time::interval(MEMBER_TICK);
        loop {
            tick.tick().await;
            let (retries, expired) = {
                let Some(mut book) = self.book() else { return };
                let now = Instant::now();
                book.expire_lookups(now);
                (book.retries(now), book.prune(unix_now()))
            };
            for query in retries {
                self.send_lookup(query);
            }
            self.drop_members(&expired, "certificate expired");
        }
    }
}
