//! Birthday probing with a peer ([`crate::nat::birthday`]): the leader's
//! BIRTHDAY_ME_NOW, both sides' sessions (run by `birthday_driver`), and the
//! side path the hard side keeps for the direct connection. Whether to
//! probe at all, and the sides, is [`PeerState`]'s decision
//! ([`PeerState::birthday_side`]).
//!
//! [`PeerState`]: crate::node::peer_state::PeerState
//! [`PeerState::birthday_side`]: crate::node::peer_state::PeerState::birthday_side

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng as _, RngCore as _};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::links::Link;
use super::punch::clock_pair;
use super::stats::{Method, Outcome};
use super::{alive, Overlay, PeerSlot};
use crate::nat::{
    birthday_target, BirthdayConfig, BirthdayParams, BirthdaySession, BirthdaySide,
    DEFAULT_PRIME_TTL,
};
use crate::node::birthday_driver::{self, BirthdayPath};
use crate::proto::{ControlMessage, NatClass};
use crate::socket::is_virtual;

/// How long a side path waits for its direct connection before it is
/// closed; once one runs on it, the path lives as long as it does.
const SIDE_PATH_UNUSED: Duration = Duration::from_secs(15);

/// How long after a birthday validated an address its handshakes skip the
/// Retry (as for a punch).
const BIRTHDAY_TRUST: Duration = Duration::from_secs(10);

/// What a birthday attempt needs to know of both sides.
#[derive(Clone, Copy, Debug)]
pub(super) struct BirthdayStart {
    pub we_easy: bool,
    pub round: u32,
    pub token: [u8; 16],
    pub start_at: Instant,
    pub easy: SocketAddr,
    pub hard: IpAddr,
}

impl Overlay {
    /// Our NAT class from the bootstraps' views: no NAT when a bootstrap
    /// sees one of our own addresses or while the gateway maps our port
    /// (`overlay::portmap`: reachable from anyone), else the mapping
    /// behaviour.
    pub(super) fn nat_class(&self) -> NatClass {
        if self.held_mapping().is_some() {
            return NatClass::Public;
        }
        let socket = self.inner.node.socket();
        let public = self
            .observed_addresses()
            .into_iter()
            .filter_map(|(_, o)| o)
            .any(|o| socket.is_local_ip(o.ip()) == Some(true));
        if public {
            return NatClass::Public;
        }
        match self.nat_mapping() {
            crate::nat::MappingBehaviour::EndpointIndependent => NatClass::EndpointIndependent,
            crate::nat::MappingBehaviour::Unknown => NatClass::Unknown,
            _ => NatClass::Dependent,
        }
    }

    /// Our public address as the first bootstrap that sees us does.
    fn public_address(&self) -> Option<SocketAddr> {
        self.observed_addresses().into_iter().find_map(|(_, o)| o)
    }

    /// Leader side: starts birthday probing with the peer through `link`.
    pub(super) fn initiate_birthday(&self, link: &Link, slot: &Arc<PeerSlot>, we_easy: bool) {
        let Some(ours) = self.public_address() else {
            return;
        };
        let theirs = slot
            .state()
            .punch_candidates(None)
            .into_iter()
            .map(|c| c.addr)
            .find(|a| birthday_target(a.ip()) && !is_virtual(*a) && a.is_ipv4() == ours.is_ipv4());
        if !birthday_target(ours.ip()) {
            return;
        }
        let Some(theirs) = theirs else {
            tracing::debug!(peer = %slot.id.short(), "no public candidate of the peer: no birthday");
            return;
        };
        let (easy, hard) = if we_easy {
            (ours, theirs.ip())
        } else {
            (theirs, ours.ip())
        };
        let mut token = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let round = rand::rngs::OsRng.gen::<u32>() >> 1;
        let rtt = link.conn.rtt();
        let delay = Duration::from_millis(60) + rtt * 2;
        let (now, now_unix) = clock_pair();
        let lead = rtt + delay;
        let msg = ControlMessage::Forward {
            peer: *slot.id.as_bytes(),
            inner: Box::new(ControlMessage::BirthdayMeNow {
                round,
                token,
                delay_ms: delay.as_millis() as u64,
                start_at_unix_micros: now_unix + lead.as_micros() as u64,
                sender_easy: we_easy,
                easy,
                hard,
            }),
        };
        if link.conn.control().try_send(msg).is_err() {
            return;
        }
        self.start_birthday(
            slot,
            BirthdayStart {
                we_easy,
                round,
                token,
                start_at: now + lead,
                easy,
                hard,
            },
        );
    }

    /// Runs one birthday attempt with `slot`'s peer; on success the direct
    /// path is dialed as after a punch (the leader at once).
    pub(super) fn start_birthday(&self, slot: &Arc<PeerSlot>, b: BirthdayStart) {
        let config = BirthdayConfig::default();
        let side = if b.we_easy {
            BirthdaySide::Easy {
                hard_ip: b.hard,
                near: slot
                    .state()
                    .punch_candidates(None)
                    .iter()
                    .find(|c| c.addr.ip() == b.hard)
                    .map(|c| c.addr.port()),
            }
        } else {
            BirthdaySide::Hard { easy: b.easy }
        };
        let span = tracing::info_span!("birthday", peer = %slot.id.short(), round = b.round);
        tracing::info!(parent: &span, easy = b.we_easy, peer_easy = %b.easy, peer_hard = %b.hard, "birthday probing starts");
        let busy_until = b.start_at + config.max_duration + config.linger;
        let classes = {
            let mut state = slot.state();
            state.on_birthday_started(b.start_at);
            state.nat_classes()
        };
        self.inner
            .stats
            .birthdays
            .started
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .stats
            .attempts_by_class
            .note(Method::Birthday, classes, Outcome::Started);
        let (tx, rx) = mpsc::channel(256);
        self.lock_punches().insert(b.token, tx);
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(
            async move {
                this.prime_ttl_traced(b.start_at).await;
                let params = BirthdayParams {
                    side,
                    round: b.round,
                    start_at: b.start_at,
                    prime_ttl: this.prime_ttl().unwrap_or(DEFAULT_PRIME_TTL),
                    seed: rand::rngs::OsRng.gen(),
                };
                let session = match BirthdaySession::new(params, config) {
                    Ok(s) => s,
                    Err(error) => return tracing::warn!(%error, "invalid birthday configuration"),
                };
                let socket = this.inner.node.socket().clone();
                let group = match session.extra_sockets() {
                    0 => None,
                    n => match socket.open_side_sockets(n, b.easy) {
                        Ok(g) => Some(g),
                        Err(error) => return tracing::warn!(%error, "side sockets not opened"),
                    },
                };
                let stats =
                    birthday_driver::run(session, b.token, socket, group, rx, outcome_tx).await;
                this.inner.stats.birthdays.probes(&stats);
                tracing::info!(?stats, "birthday attempt over");
            }
            .instrument(span.clone()),
        );
        let this = self.clone();
        let slot = slot.clone();
        tokio::spawn(
            async move {
                let tally = |outcome| {
                    this.inner
                        .stats
                        .attempts_by_class
                        .note(Method::Birthday, classes, outcome)
                };
                match outcome_rx.await {
                    Ok(Some(path)) => {
                        tally(Outcome::Succeeded);
                        this.birthday_won(&slot, path).await;
                    }
                    Ok(None) => {
                        tally(Outcome::Failed);
                        this.inner
                            .stats
                            .birthdays
                            .failed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!("birthday probing failed");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep_until(busy_until.into()).await;
                this.lock_punches().remove(&b.token);
            }
            .instrument(span),
        );
    }

    /// A birthday validated `path`: dial it as a punched path, and on the
    /// hard side close the side path once no connection uses it.
    async fn birthday_won(&self, slot: &Arc<PeerSlot>, path: BirthdayPath) {
        self.inner
            .stats
            .birthdays
            .succeeded
            .fetch_add(1, Ordering::Relaxed);
        *slot
            .validated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((path.remote, Method::Birthday));
        tracing::info!(remote = %path.remote, side_path = path.side, "direct path validated by birthday probing");
        self.inner
            .node
            .trust_punched_address(path.remote, Instant::now() + BIRTHDAY_TRUST);
        slot.state().on_punch_validated(path.remote, Instant::now());
        slot.wake.notify_one();
        if !path.side {
            return;
        }
        let socket = self.inner.node.socket().clone();
        let on_path = |slot: &PeerSlot| {
            slot.read()
                .direct
                .as_ref()
                .filter(|c| alive(c) && crate::nat::canonical(c.remote_address()) == path.remote)
                .cloned()
        };
        let until = Instant::now() + SIDE_PATH_UNUSED;
        let conn = loop {
            if let Some(conn) = on_path(slot) {
                break Some(conn);
            }
            if Instant::now() >= until {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some(conn) = conn {
            conn.closed().await;
        }
        tracing::debug!(path = %path.remote, "side path closed");
        socket.remove_side_path(path.remote);
    }
}
