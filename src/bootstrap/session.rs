//! One connected peer, as the bootstrap serves it: its registration, its
//! control messages (candidates, coordination forwarded to another peer,
//! relay requests, address proofs), the moves of its connection that are
//! followed once proven, and the cleanup when it leaves.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::registry::{Moved, Refusal};
use super::Bootstrap;
use crate::identity::PeerId;
use crate::nat::canonical;
use crate::node::PeerConnection;
use crate::proto::cert::Certificate;
use crate::proto::{ControlMessage, MemberQuery, UnavailableReason};
use crate::socket::{is_stream_addr, is_virtual, ProvenGuard, RelayBudget, RelayLimit, Transport};

/// Now in Unix seconds (certificate validity).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How often a session checks whether QUIC moved the peer's connection.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(250);

/// A connected peer, as the driver holds it.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) conn: PeerConnection,
    /// The relay byte budget of this key as a sender.
    pub(super) budget: Arc<RelayBudget>,
    /// Keeps the address the peer proved by a challenge open to QUIC (its
    /// handshake address is held by the node while the connection lives).
    pub(super) proven: Arc<Mutex<Option<ProvenGuard>>>,
}

impl Bootstrap {
    /// Serves one connected peer until its connection closes: registers
    /// it, answers its control messages, follows its proven address
    /// changes, and cleans up after it.
    pub(super) async fn serve(self, conn: PeerConnection) {
        let peer = conn.peer_id();
        let origin = conn.origin();
        let session = Session {
            conn: conn.clone(),
            budget: Arc::new(RelayBudget::new(RelayLimit {
                bytes_per_sec: self.settings.limits.relay_key_bytes_per_sec,
                burst_bytes: self.settings.limits.relay_key_burst_bytes,
            })),
            proven: Arc::default(),
        };
        let (previous, moved) = self.lock().connect(peer, session, origin, Instant::now());
        match previous {
            Some(old) => old.conn.close("replaced by a new connection"),
            None => {
                self.stats.peers.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The peer reconnected from elsewhere, maybe over another transport
        // (TCP back to UDP): its relays follow it to the new address.
        if let Some(moved) = moved {
            self.apply_move(&moved);
        }
        if is_stream_addr(origin) {
            // Authenticated: the stream may stay (and its buffers grow).
            self.node.socket().claim_stream(origin);
        }
        let transport = Transport::of(origin);
        tracing::info!(%origin, %transport, "peer connected");
        if let Some(tcp_peer) = self.node.socket().stream_peer(origin) {
            tracing::info!(%tcp_peer, "peer is on TCP: relay only, no observed address");
        }
        self.send_observed(&conn, origin);
        self.send_observe_at(&conn, origin);

        let mut tick = tokio::time::interval(OBSERVE_INTERVAL);
        let mut ignored: Option<SocketAddr> = None;
        loop {
            tokio::select! {
                msg = conn.control().recv() => match msg {
                    Some(msg) => self.handle(peer, &conn, msg),
                    None => break,
                },
                _ = tick.tick() => {
                    self.check_address(peer, &conn, &mut ignored);
                    if is_stream_addr(origin) && !self.node.socket().has_stream(origin) {
                        conn.close("TCP stream closed");
                        break;
                    }
                }
                _ = conn.closed() => break,
            }
        }
        self.disconnected(peer, &conn);
        if is_stream_addr(origin) {
            self.node.socket().close_stream(origin);
        }
    }

    /// QUIC may have moved the connection (a NAT rebinding, or a spoofed
    /// packet). The move is followed once the peer proved the new address:
    /// the socket holds QUIC's packets to it and challenges it
    /// ([`crate::socket::proof`]), the peer answers with `ADDRESS_PROOF`
    /// ([`Self::address_proof`]).
    fn check_address(&self, peer: PeerId, conn: &PeerConnection, ignored: &mut Option<SocketAddr>) {
        let now_at = canonical(conn.remote_address());
        if is_virtual(now_at) {
            if self.address_of(&peer) != Some(now_at) && *ignored != Some(now_at) {
                *ignored = Some(now_at);
                self.stats
                    .migrations_ignored
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%now_at, "move to a virtual address not followed");
            }
            return;
        }
        let moved = self.lock().follow(peer, now_at);
        if let Some(moved) = moved {
            self.followed(&moved, conn);
        }
    }

    /// The peer sent back the token of an `ADDRESS_CHALLENGE`: it receives
    /// at the address the token went to.
    fn address_proof(&self, peer: PeerId, conn: &PeerConnection, token: [u8; 16]) {
        let socket = self.node.socket();
        let Some(addr) = socket.challenged_address(&token) else {
            self.stats.proofs_unmatched.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("address proof that answers no challenge dropped");
            return;
        };
        self.stats.proofs_accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%addr, "peer proved an address");
        // QUIC's held packets to it leave now (its own path validation
        // completes), and the address stays open while the peer is on it.
        let guard = socket.prove(addr);
        let moved = {
            let mut reg = self.lock();
            reg.proved(peer, addr);
            if let Some(session) = reg.handle(&peer) {
                *session
                    .proven
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(guard);
            }
            if canonical(conn.remote_address()) == addr {
                reg.follow(peer, addr)
            } else {
                None
            }
        };
        if let Some(moved) = moved {
            self.followed(&moved, conn);
        }
    }

    /// The peer's proven address changed: relays follow, and it is told.
    fn followed(&self, moved: &Moved, conn: &PeerConnection) {
        self.stats
            .migrations_followed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(from = %moved.from, to = %moved.to, "peer address changed (proven)");
        self.apply_move(moved);
        self.send_observed(conn, moved.to);
    }

    /// Tells the peer its observed address, unless it is a virtual one (a
    /// TCP stream path), which means nothing to anyone else.
    fn send_observed(&self, conn: &PeerConnection, addr: SocketAddr) {
        if is_virtual(addr) {
            return;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let _ = conn
            .control()
            .try_send(ControlMessage::ObservedAddress { sequence, addr });
    }

    /// Tells a peer on UDP where the observe socket is (`OBSERVE_AT`), so
    /// that it can ask it for a second observation of its address.
    fn send_observe_at(&self, conn: &PeerConnection, addr: SocketAddr) {
        let Some(port) = self.observe_local_addr().map(|a| a.port()) else {
            return;
        };
        if is_virtual(addr) {
            return;
        }
        let _ = conn.control().try_send(ControlMessage::ObserveAt { port });
    }

    fn handle(&self, peer: PeerId, conn: &PeerConnection, msg: ControlMessage) {
        match msg {
            ControlMessage::AddAddress { sequence, addr } if is_virtual(addr) => {
                tracing::debug!(sequence, %addr, "virtual address refused as a candidate");
            }
            ControlMessage::AddAddress { sequence, addr } => {
                self.lock().add_candidate(peer, sequence, addr);
            }
            ControlMessage::RemoveAddress { sequence } => {
                self.lock().remove_candidate(peer, sequence);
            }
            ControlMessage::AddressProof { token } => self.address_proof(peer, conn, token),
            ControlMessage::MemberRegister { cert } => self.register_member(peer, *cert),
            ControlMessage::MemberLookup { query } => self.lookup_member(peer, conn, query),
            ControlMessage::Forward {
                peer: target,
                inner,
            } => {
                let target = PeerId::from_bytes(target).ok();
                let reply = match target {
                    Some(target) => self.forward(peer, target, *inner),
                    None => {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        Err(UnavailableReason::NotConnected)
                    }
                };
                if let (Err(reason), Some(target)) = (reply, target) {
                    let _ = conn.control().try_send(ControlMessage::PeerUnavailable {
                        peer: *target.as_bytes(),
                        reason,
                    });
                }
            }
            ControlMessage::RelayRequest { peer: target } => {
                let Ok(target) = PeerId::from_bytes(target) else {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if let Err(reason) = self.relay(peer, target) {
                    let _ = conn.control().try_send(ControlMessage::PeerUnavailable {
                        peer: *target.as_bytes(),
                        reason,
                    });
                }
            }
            other => {
                tracing::debug!(?other, "ignoring a message a bootstrap does not handle");
            }
        }
    }

    /// The peer gives us its certificate for the directory.
    fn register_member(&self, peer: PeerId, cert: Certificate) {
        let name = cert.body.name.clone();
        match self.lock().register_member(peer, cert, unix_now()) {
            Ok(()) => {
                self.stats
                    .members_registered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%name, "member registered");
            }
            Err(error) => {
                self.stats.members_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, reason = error.reason(), "member certificate refused");
            }
        }
    }

    /// The peer asks for another member of its network. Costs a
    /// coordination token.
    fn lookup_member(&self, peer: PeerId, conn: &PeerConnection, query: MemberQuery) {
        let answer = {
            let mut reg = self.lock();
            if let Err(refusal) = reg.admit(peer, Instant::now()) {
                drop(reg);
                self.refuse(refusal);
                return;
            }
            reg.directory().lookup(&peer, query, unix_now())
        };
        let msg = match answer {
            Ok(cert) => {
                self.stats.lookups_found.fetch_add(1, Ordering::Relaxed);
                ControlMessage::Member {
                    query,
                    cert: Box::new((*cert).clone()),
                }
            }
            Err(refusal) => {
                self.stats.lookups_not_found.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?query, %refusal, "member lookup");
                ControlMessage::NoMember { query }
            }
        };
        if conn.control().try_send(msg).is_err() {
            self.stats.target_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn forward(
        &self,
        from: PeerId,
        target: PeerId,
        inner: ControlMessage,
    ) -> Result<(), UnavailableReason> {
        let allowed = match &inner {
            // A virtual address is no punch candidate.
            ControlMessage::AddAddress { addr, .. }
            | ControlMessage::PunchMeNow { addr, .. }
            | ControlMessage::BirthdayMeNow { easy: addr, .. } => !is_virtual(*addr),
            ControlMessage::RemoveAddress { .. } | ControlMessage::NatMapping { .. } => true,
            _ => false,
        };
        if !allowed {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(UnavailableReason::NotAllowed);
        }
        let mut reg = self.lock();
        reg.admit(from, Instant::now())
            .map_err(|r| self.refuse(r))?;
        self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        let Some(target) = reg.handle(&target) else {
            return Err(self.refuse(Refusal::NotConnected));
        };
        let msg = ControlMessage::Forward {
            peer: *from.as_bytes(),
            inner: Box::new(inner),
        };
        target.conn.control().try_send(msg).map_err(|_| {
            self.stats.target_queue_full.fetch_add(1, Ordering::Relaxed);
            UnavailableReason::RateLimited
        })?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn disconnected(&self, peer: PeerId, conn: &PeerConnection) {
        let id = conn.quinn().stable_id();
        let mut reg = self.lock();
        let Some(left) = reg.disconnect(peer, |s| s.conn.quinn().stable_id() == id) else {
            return;
        };
        self.stats.peers.fetch_sub(1, Ordering::Relaxed);
        self.gone_since_trim.fetch_add(1, Ordering::Relaxed);
        for alloc in &left.relays {
            self.close_allocation(&reg, alloc);
        }
        tracing::info!("peer disconnected");
    }
}
