//! The per-peer driver: one [`PeerState`] per peer, fed by the overlay's
//! tasks, and one maintenance task per peer that runs its periodic pass and
//! carries out its [`PeerAction`]s (dials, relay requests, announcements,
//! punches, dropping paths). The connections themselves live in [`Paths`],
//! the datapath's view, which only this driver changes.
//!
//! Locks of a peer ([`PeerSlot`]): `state` (the decisions) and `paths` (the
//! connections) are never held together; `staged` is taken alone. Tasks
//! that feed `state` wake the maintenance task (`wake`), which alone drains
//! the actions, so they run in the order they were decided.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;

use super::punch::punch_start;
use super::{Delivery, Overlay, PathKind, SINK_BATCH, STAGED_MAX_AGE};
use crate::identity::PeerId;
use crate::nat::canonical;
use crate::nat::Role;
use crate::node::peer_state::{
    Admission, ConnId, LinkView, PathSample, PeerAction, PeerFacts, PeerState, Tick,
    MAINTAIN_INTERVAL,
};
use crate::node::PeerConnection;
use crate::proto::ControlMessage;
use crate::socket::RelayRoute;

/// A duplicate connection is closed after this grace period.
const DUPLICATE_GRACE: Duration = Duration::from_secs(2);

/// A peer's connections as the datapath sees them.
#[derive(Default)]
pub(super) struct Paths {
    pub(super) direct: Option<PeerConnection>,
    pub(super) relay: Option<PeerConnection>,
}

impl Paths {
    /// The path traffic takes: direct while it is alive, else the relay.
    pub(super) fn active(&self) -> (PathKind, Option<&PeerConnection>) {
        match (
            self.direct.as_ref().filter(|c| alive(c)),
            self.relay.as_ref().filter(|c| alive(c)),
        ) {
            (Some(d), _) => (PathKind::Direct, Some(d)),
            (None, Some(r)) => (PathKind::Relay, Some(r)),
            (None, None) => (PathKind::None, None),
        }
    }
}

/// One configured peer.
pub(super) struct PeerSlot {
    pub(super) id: PeerId,
    /// What we decide for the peer (see the module doc for lock order).
    state: Mutex<PeerState>,
    paths: RwLock<Paths>,
    /// The maintenance task sleeps for `IDLE_MAINTAIN_INTERVAL`: the next
    /// send wakes it.
    pub(super) idle: AtomicBool,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    /// Datagrams sent while there was no path, with when they were sent:
    /// they go out when the first connection comes up.
    pub(super) staged: Mutex<VecDeque<(Instant, Bytes)>>,
    pub(super) last_handshake: Mutex<Option<SystemTime>>,
    /// The last direct path a punch or birthday attempt validated, and how.
    pub(super) validated: Mutex<Option<(SocketAddr, super::stats::Method)>>,
    pub(super) wake: Notify,
    /// Set when the peer was removed: its maintenance task closes its
    /// connections and ends.
    removed: AtomicBool,
}

impl PeerSlot {
    pub(super) fn new(id: PeerId, facts: PeerFacts) -> Self {
        Self {
            id,
            state: Mutex::new(PeerState::new(facts)),
            paths: RwLock::default(),
            idle: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            staged: Mutex::default(),
            last_handshake: Mutex::default(),
            validated: Mutex::default(),
            wake: Notify::new(),
            removed: AtomicBool::new(false),
        }
    }

    /// Marks the peer removed and wakes its maintenance task, which tears
    /// it down.
    pub(super) fn remove(&self) {
        self.removed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The peer's decisions. Never held across an await or with `paths`.
    pub(super) fn state(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, Paths> {
        self.paths.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Paths> {
        self.paths.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the direct (or relayed) connection `conn` out of the paths.
    fn take(&self, relayed: bool, conn: ConnId) -> Option<PeerConnection> {
        let mut paths = self.write();
        let place = if relayed {
            &mut paths.relay
        } else {
            &mut paths.direct
        };
        place.take_if(|c| id(c) == conn)
    }
}

pub(super) fn alive(conn: &PeerConnection) -> bool {
    conn.quinn().close_reason().is_none()
}

fn id(conn: &PeerConnection) -> ConnId {
    conn.quinn().stable_id()
}

fn sample(conn: Option<&PeerConnection>) -> Option<PathSample> {
    conn.map(|c| PathSample {
        conn: id(c),
        open: alive(c),
        counters: c.path_counters(),
    })
}

impl Overlay {
    /// Keeps a peer's paths up: runs its [`PeerState`]'s periodic pass and
    /// carries out what it decides, until the overlay stops.
    pub(super) async fn maintain(self, slot: Arc<PeerSlot>) {
        loop {
            if slot.removed.load(Ordering::SeqCst) {
                self.tear_down(&slot);
                return;
            }
            let now = Instant::now();
            let tick = {
                let paths = slot.read();
                Tick {
                    direct: sample(paths.direct.as_ref()),
                    relay: sample(paths.relay.as_ref()),
                    link: self.primary_link().map(|l| LinkView {
                        addr: l.addr,
                        observed: l
                            .observed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .is_some(),
                    }),
                }
            };
            let nat = self.nat_class();
            {
                let mut state = slot.state();
                state.set_own_nat(nat);
                state.handle_timeout(now, tick);
            }
            loop {
                let action = slot.state().poll_action();
                let Some(action) = action else { break };
                self.execute(&slot, action).await;
            }
            // Both paths up and nothing sent or received since the last
            // pass: sleep longer. The flag goes up before the counters are
            // read (SeqCst on both sides), so a send either shows in them
            // or sees the flag and wakes us.
            let steady = slot.state().steady();
            slot.idle.store(steady, Ordering::SeqCst);
            let traffic = (
                slot.bytes_in.load(Ordering::SeqCst),
                slot.bytes_out.load(Ordering::SeqCst),
            );
            let next = slot
                .state()
                .poll_timeout_after(traffic)
                .unwrap_or(now + MAINTAIN_INTERVAL);
            tokio::select! {
                () = slot.wake.notified() => {}
                () = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// A removed peer: its connections close, its relay channel goes, what
    /// waited for it is dropped.
    fn tear_down(&self, slot: &PeerSlot) {
        let (direct, relay) = {
            let mut paths = slot.write();
            (paths.direct.take(), paths.relay.take())
        };
        for conn in direct.into_iter().chain(relay) {
            conn.close("peer removed");
        }
        // The route goes a little later, so that the CONNECTION_CLOSE of the
        // relayed connection still reaches the peer through it.
        let route = slot.state().relay_route();
        if let Some(route) = route {
            let socket = self.inner.node.socket().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                socket.remove_relay_route(route);
            });
        }
        slot.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        tracing::debug!("peer torn down");
    }

    /// Carries out one of `slot`'s actions.
    async fn execute(&self, slot: &Arc<PeerSlot>, action: PeerAction) {
        match action {
            PeerAction::Dial { addr, relayed } => self.dial(slot, addr, relayed),
            PeerAction::RequestRelay { via } => {
                if let Some(link) = self.link_at(via) {
                    let _ = link.conn.control().try_send(ControlMessage::RelayRequest {
                        peer: *slot.id.as_bytes(),
                    });
                }
            }
            PeerAction::Announce { via } => self.announce(via, slot).await,
            PeerAction::InitiatePunch { via, birthday } => {
                if let Some(link) = self.link_at(via) {
                    // The plain punch runs beside a birthday attempt: it
                    // reaches an easy side whose NAT also filters
                    // endpoint-independently (full cone) in a round trip.
                    self.initiate_punch(&link, slot);
                    if let Some(we_easy) = birthday {
                        self.initiate_birthday(&link, slot, we_easy);
                    }
                }
            }
            PeerAction::JoinBirthday {
                via,
                round,
                token,
                delay_ms,
                start_at_unix_micros,
                easy,
                hard,
                we_easy,
            } => {
                let start_at = self.requested_start(via, delay_ms, start_at_unix_micros);
                self.start_birthday(
                    slot,
                    super::birthday::BirthdayStart {
                        we_easy,
                        round,
                        token,
                        start_at,
                        easy,
                        hard,
                    },
                );
            }
            PeerAction::JoinPunch {
                via,
                round,
                token,
                delay_ms,
                start_at_unix_micros,
                also,
            } => {
                let start_at = self.requested_start(via, delay_ms, start_at_unix_micros);
                let in_ms = start_at
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    * 1e3;
                tracing::debug!(round, in_ms, "punch requested");
                self.start_punch(slot, Role::Controlled, round, token, start_at, also);
            }
            PeerAction::DropDirect { conn, why } => {
                let Some(conn) = slot.take(false, conn) else {
                    return;
                };
                self.inner.stats.direct_dropped(why);
                tracing::info!(remote = %canonical(conn.remote_address()), reason = why, "direct path dropped; traffic moves to the relay");
                conn.close(why);
                self.poke();
            }
            PeerAction::RelayStalled { conn, route } => {
                self.inner
                    .stats
                    .relay_stalled
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!("relay path stalled; asking for a new channel");
                self.poke();
                let socket = self.inner.node.socket();
                if let Some(route) = route {
                    // The bootstrap itself may be what died (its link
                    // notices a second later): new channels are asked for
                    // elsewhere for a while.
                    if let Some(r) = socket.relay_route(route) {
                        self.suspect(r.server);
                    }
                    socket.remove_relay_route(route);
                }
                if let Some(conn) = slot.take(true, conn) {
                    let on_route = route == Some(canonical(conn.remote_address()));
                    if on_route {
                        self.inner
                            .stats
                            .relay_retired
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    conn.close(if on_route {
                        "relay channel closed"
                    } else {
                        "relay path stalled"
                    });
                }
            }
            PeerAction::RetireRelay { route, conn } => {
                self.inner.node.socket().remove_relay_route(route);
                if let Some(conn) = conn.and_then(|c| slot.take(true, c)) {
                    self.inner
                        .stats
                        .relay_retired
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!("relay channel closed; dropping its connection");
                    conn.close("relay channel closed");
                }
            }
        }
    }

    /// Dials the peer at `addr` (its known endpoint, a punched address, or
    /// with `relayed` a relay path's virtual address).
    fn dial(&self, slot: &Arc<PeerSlot>, addr: SocketAddr, relayed: bool) {
        self.note_attempt(relayed);
        let this = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            let result = this.inner.node.connect(slot.id, &[addr]).await;
            slot.state().on_dial_done(addr);
            match result {
                Ok(conn) => this.install(conn),
                Err(error) => {
                    tracing::debug!(peer = %slot.id.short(), %addr, relayed, %error, "dial failed");
                    slot.wake.notify_one();
                }
            }
        });
    }

    /// Puts a new connection into its peer's paths, unless it is a
    /// duplicate ([`PeerState::on_connection`]).
    pub(super) fn install(&self, conn: PeerConnection) {
        let Some(slot) = self.slot(&conn.peer_id()) else {
            conn.close("not a configured peer");
            return;
        };
        let relayed = conn.is_relayed();
        let we_dialed = conn.quinn().side() == quinn::Side::Client;
        let admission = slot.state().on_connection(
            id(&conn),
            conn.remote_address(),
            relayed,
            we_dialed,
            Instant::now(),
        );
        let Admission::Install {
            first_connect,
            first_direct,
            ..
        } = admission
        else {
            close_later(conn, "duplicate connection");
            return;
        };
        let replaced = {
            let mut paths = slot.write();
            let place = if relayed {
                &mut paths.relay
            } else {
                &mut paths.direct
            };
            place.replace(conn.clone())
        };
        if let Some(old) = replaced.filter(|old| id(old) != id(&conn) && alive(old)) {
            close_later(old, "duplicate connection");
        }
        self.note_connection(relayed);
        if let Some(elapsed) = first_connect {
            self.inner.stats.first(false, elapsed);
        }
        if let Some(elapsed) = first_direct {
            self.inner.stats.first(true, elapsed);
        }
        *slot
            .last_handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(SystemTime::now());
        tracing::info!(peer = %slot.id.short(), path = if relayed { "relay" } else { "direct" }, remote = %canonical(conn.remote_address()), "connected");
        let staged =
            std::mem::take(&mut *slot.staged.lock().unwrap_or_else(PoisonError::into_inner));
        for (at, data) in staged {
            if at.elapsed() <= STAGED_MAX_AGE {
                let len = data.len() as u64;
                if conn.send_datagram(data).is_ok() {
                    slot.bytes_out.fetch_add(len, Ordering::Relaxed);
                }
            }
        }
        self.inner.data.register(&conn, &slot);
        self.spawn_pong(slot.id, conn.clone());
        self.spawn_reader(slot.clone(), conn);
        slot.wake.notify_one();
    }

    /// When a punch or birthday attempt the peer asked for through the
    /// link at `via` starts (see [`punch_start`]).
    fn requested_start(
        &self,
        via: SocketAddr,
        delay_ms: u64,
        start_at_unix_micros: u64,
    ) -> Instant {
        let rtt = self.link_at(via).map_or(Duration::ZERO, |l| l.conn.rtt());
        punch_start(delay_ms, start_at_unix_micros, rtt)
    }

    /// Reads the connection's datagrams until it closes, then tells the
    /// peer's state.
    fn spawn_reader(&self, slot: Arc<PeerSlot>, conn: PeerConnection) {
        let delivery = self.inner.delivery.clone();
        let plane = self.inner.data.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(SINK_BATCH);
            loop {
                match conn.recv_datagram().await {
                    Ok(data) => {
                        batch.push(data);
                        if let Delivery::Sink(_) = delivery {
                            while batch.len() < SINK_BATCH {
                                match conn.try_recv_datagram() {
                                    Some(Ok(data)) => batch.push(data),
                                    // A closed connection shows at the next read.
                                    Some(Err(_)) | None => break,
                                }
                            }
                        }
                        let bytes: usize = batch.iter().map(Bytes::len).sum();
                        slot.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
                        match &delivery {
                            Delivery::Sink(sink) => sink.deliver(slot.id, &mut batch),
                            Delivery::Queue(tx) => {
                                for data in batch.drain(..) {
                                    if tx.send((slot.id, data)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        batch.clear();
                    }
                    Err(error) => {
                        plane.unregister(&conn);
                        tracing::info!(peer = %slot.id.short(), relayed = conn.is_relayed(), %error, "connection closed");
                        slot.state().on_closed(id(&conn));
                        slot.wake.notify_one();
                        return;
                    }
                }
            }
        });
    }

    /// The bootstrap (its link address) carrying our live relay with
    /// `slot`, if we have one.
    pub(super) fn relay_server(&self, slot: &PeerSlot) -> Option<SocketAddr> {
        let remote = {
            let paths = slot.read();
            let conn = paths.relay.as_ref().filter(|c| alive(c))?;
            canonical(conn.remote_address())
        };
        Some(self.inner.node.socket().relay_route(remote)?.server)
    }

    /// Retires every peer's relay channel whose route `matches` (the
    /// bootstrap closed it, or its link was lost).
    pub(super) fn retire_relays_where(&self, matches: impl Fn(RelayRoute) -> bool) {
        let socket = self.inner.node.socket();
        for slot in self.slots().values() {
            let route = slot.state().relay_route();
            let Some(route) = route.filter(|v| socket.relay_route(*v).is_some_and(&matches)) else {
                continue;
            };
            if slot.state().retire_route(route) {
                slot.wake.notify_one();
            }
        }
    }
}

/// Closes a duplicate connection after a grace period, so packets already
/// sent on it are not lost.
fn close_later(conn: PeerConnection, reason: &'static str) {
    tokio::spawn(async move {
        tokio::time::sleep(DUPLICATE_GRACE).await;
        conn.close(reason);
    });
}
