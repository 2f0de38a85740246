//! Keeping paths up when the network changes under them.
//!
//! - **Local changes** (an address or route added or removed, a link going
//!   up or down, from [`antq_platform::watch_changes`]): the socket learns
//!   the host's addresses again (so no packet goes out from a vanished
//!   source), every connection switches to a fresh connection ID and pings
//!   ([`Node::network_changed`](crate::node::Node::network_changed)), so
//!   bootstraps and server-side peers follow us to the new address, and
//!   peers without a direct path get our new candidates.
//! - **Dead paths** (a NAT lost its mapping, the peer moved, a relay or a
//!   bootstrap went away): every connection's counters are sampled
//!   ([`Liveness`]); a direct path that stalls is dropped, so traffic takes
//!   the relay at once, and both sides exchange candidates again for a new
//!   punch; a stalled relay connection is dropped and a new channel asked
//!   for; a stalled bootstrap link is reconnected and the relay channels
//!   through it retired.
//! - **Our NAT layers**: at start and after every change, a traceroute
//!   toward the bootstrap counts the private routers on our way out, which
//!   sets the TTL of punch priming probes ([`crate::nat::priming`]).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::{Overlay, PeerSlot};
use crate::nat::{canonical, prime_ttl_for, Liveness, LivenessConfig, PathHealth, TRACE_HOPS};
use crate::node::PeerConnection;
use crate::socket::RelayRoute;

/// Changes arriving within this window are handled together.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// How long the traceroute for the priming TTL waits for answers.
const TRACE_WAIT: Duration = Duration::from_millis(300);
/// Pokes after a stall are at least this far apart.
const POKE_INTERVAL: Duration = Duration::from_millis(300);

/// Liveness of one connection, tied to that connection.
#[derive(Debug)]
struct Watched {
    id: usize,
    liveness: Liveness,
}

/// Liveness of a peer's direct and relay connections.
#[derive(Debug, Default)]
pub(super) struct PathMonitors {
    direct: Option<Watched>,
    relay: Option<Watched>,
}

/// Samples `conn` into `watched` (starting afresh for a new connection) and
/// tells whether it stalled.
fn stalled(watched: &mut Option<Watched>, conn: &PeerConnection, now: Instant) -> bool {
    let id = conn.quinn().stable_id();
    let w = match watched {
        Some(w) if w.id == id => w,
        _ => watched.insert(Watched {
            id,
            liveness: Liveness::new(LivenessConfig::default()),
        }),
    };
    matches!(
        w.liveness.observe(now, conn.path_counters()),
        PathHealth::Stalled { .. }
    )
}

/// Dead-path detection for a bootstrap link.
#[derive(Debug)]
pub(super) struct LinkMonitor(Liveness);

impl LinkMonitor {
    pub(super) fn new() -> Self {
        Self(Liveness::new(LivenessConfig::default()))
    }

    /// Whether the link stalled.
    pub(super) fn stalled(&mut self, conn: &PeerConnection) -> bool {
        matches!(
            self.0.observe(Instant::now(), conn.path_counters()),
            PathHealth::Stalled { .. }
        )
    }
}

/// The punch priming TTL for the path toward `target` (see
/// [`crate::nat::priming`]) and the routers it was derived from (hop 1
/// first, `None` for a silent hop, up to the destination). Traces with
/// [`antq_platform::trace_hops`]: blocks for up to `wait`.
pub fn trace_prime_ttl(
    target: IpAddr,
    wait: Duration,
) -> Result<(u8, Vec<Option<IpAddr>>), antq_platform::PlatformError> {
    let hops = antq_platform::trace_hops(target, TRACE_HOPS, wait)?;
    let routers: Vec<_> = hops
        .iter()
        .take_while(|h| **h != antq_platform::Hop::Destination)
        .map(|h| match h {
            antq_platform::Hop::Router(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    Ok((prime_ttl_for(&routers), routers))
}

impl Overlay {
    /// Follows the host's network changes until the subscription ends.
    pub(super) async fn watch_network(self) {
        // Subscribed first: no change during the trace is missed.
        let watcher = antq_platform::watch_changes();
        self.learn_prime_ttl().await;
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(%error, "cannot watch network changes; paths recover only when they stall");
                return;
            }
        };
        self.refresh_local_ips().await;
        while let Some(first) = watcher.next().await {
            let mut events = vec![first];
            let window = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    event = watcher.next() => match event {
                        Some(e) => events.push(e),
                        None => break,
                    },
                    () = &mut window => break,
                }
            }
            self.inner
                .stats
                .network_changes
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(events = events.len(), "network changed");
            tracing::debug!(?events, "network change events");
            self.refresh_local_ips().await;
            self.inner.node.network_changed();
            for slot in self.inner.peers.values() {
                slot.announce_now.store(true, Ordering::Relaxed);
                slot.wake.notify_one();
            }
            self.learn_prime_ttl().await;
        }
        tracing::warn!("network change subscription ended");
    }

    /// Traces the routers toward the first IPv4 bootstrap and sets the punch
    /// priming TTL from them ([`prime_ttl_for`]). IPv4 only: that is where
    /// NATs are. Keeps the previous value when the trace is impossible.
    async fn learn_prime_ttl(&self) {
        self.run_prime_trace().await;
        self.inner.prime_traced.send_replace(true);
    }

    async fn run_prime_trace(&self) {
        if self.inner.config.punch.prime_ttl.is_none() {
            return;
        }
        let Some(target) = self
            .inner
            .config
            .bootstraps
            .iter()
            .map(|b| canonical(b.addr).ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        else {
            return;
        };
        let traced = tokio::task::spawn_blocking(move || trace_prime_ttl(target, TRACE_WAIT)).await;
        let (ttl, routers) = match traced {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::debug!(%error, "no traceroute; punch priming keeps its TTL");
                return;
            }
            Err(_) => return,
        };
        let old = self.inner.prime_ttl.swap(ttl, Ordering::Relaxed);
        if old != ttl {
            tracing::info!(ttl, ?routers, %target, "punch priming TTL from the routers toward the bootstrap");
        }
    }

    /// Tells the socket which addresses the host has now.
    async fn refresh_local_ips(&self) {
        match antq_platform::interfaces().await {
            Ok(ifaces) => self.inner.node.socket().set_local_ips(
                ifaces
                    .iter()
                    .flat_map(|i| i.addresses.iter().map(|a| a.addr)),
            ),
            Err(error) => tracing::debug!(%error, "cannot list interfaces"),
        }
    }

    /// Makes every connection ping at once (see
    /// [`Node::network_changed`](crate::node::Node::network_changed)), at
    /// most once per [`POKE_INTERVAL`]: a stalled path may mean our address
    /// changed behind a NAT, which the bootstrap learns from our next packet.
    fn poke(&self) {
        let now = Instant::now();
        {
            let mut last = self
                .inner
                .last_poke
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < POKE_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        self.inner.node.network_changed();
    }

    /// Samples the peer's connections and drops the ones that stalled.
    pub(super) fn check_paths(&self, slot: &PeerSlot, monitors: &mut PathMonitors, now: Instant) {
        let (direct, relay) = {
            let paths = slot.read();
            (paths.direct.clone(), paths.relay.clone())
        };
        match direct.filter(super::alive) {
            Some(conn) if stalled(&mut monitors.direct, &conn, now) => {
                self.drop_direct(slot, &conn, super::stats::STALLED);
            }
            Some(_) => {}
            None => monitors.direct = None,
        }
        match relay.filter(super::alive) {
            Some(conn) if stalled(&mut monitors.relay, &conn, now) => {
                self.drop_relay(slot, &conn);
            }
            Some(_) => {}
            None => monitors.relay = None,
        }
    }

    /// Drops the peer's direct connection `conn` (traffic moves to the relay)
    /// and starts over with candidates: the old ones may be what changed.
    pub(super) fn drop_direct(&self, slot: &PeerSlot, conn: &PeerConnection, why: &'static str) {
        let removed = {
            let mut paths = slot.write();
            let current = paths
                .direct
                .as_ref()
                .is_some_and(|c| c.quinn().stable_id() == conn.quinn().stable_id());
            if current {
                paths.direct_since = None;
                paths.direct.take()
            } else {
                None
            }
        };
        let Some(conn) = removed else { return };
        self.inner.stats.direct_dropped(why);
        tracing::info!(peer = %slot.id.short(), remote = %canonical(conn.remote_address()), reason = why, "direct path dropped; traffic moves to the relay");
        conn.close(why);
        *slot
            .direct_lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        // The punch that made this path may still be lingering (answering
        // late probes): it must not hold off the new one, which the peer
        // asks for within a second.
        *slot.punching.lock().unwrap_or_else(PoisonError::into_inner) = None;
        slot.candidates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        slot.announce_now.store(true, Ordering::Relaxed);
        slot.wake.notify_one();
        self.poke();
    }

    /// Drops a stalled relay connection and its channel; a new channel is
    /// asked for on the next maintenance round.
    fn drop_relay(&self, slot: &PeerSlot, conn: &PeerConnection) {
        self.inner
            .stats
            .relay_stalled
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %slot.id.short(), "relay path stalled; asking for a new channel");
        self.poke();
        let route = slot
            .relay_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = route.and_then(|v| self.inner.node.socket().relay_route(v)) {
            *self
                .inner
                .suspect
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((server.server, Instant::now()));
        }
        match route {
            Some(v) if v == canonical(conn.remote_address()) => self.retire_relay(slot, v),
            _ => {
                let mut paths = slot.write();
                if paths
                    .relay
                    .as_ref()
                    .is_some_and(|c| c.quinn().stable_id() == conn.quinn().stable_id())
                {
                    paths.relay = None;
                }
                drop(paths);
                conn.close("relay path stalled");
                slot.wake.notify_one();
            }
        }
    }

    /// Retires every peer's relay channel whose route `matches`.
    pub(super) fn retire_relays_where(&self, matches: impl Fn(RelayRoute) -> bool) {
        let socket = self.inner.node.socket();
        for slot in self.inner.peers.values() {
            let retired = {
                let mut r = slot
                    .relay_route
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if r.and_then(|v| socket.relay_route(v)).is_some_and(&matches) {
                    r.take()
                } else {
                    None
                }
            };
            if let Some(v) = retired {
                self.retire_relay(slot, v);
            }
        }
    }

    /// What to send so that `slot`'s peer has exactly our current
    /// candidates: withdrawals of vanished addresses, then every current one
    /// (an address keeps its sequence number across announcements).
    pub(super) fn announcement(
        &self,
        slot: &PeerSlot,
        current: &[SocketAddr],
    ) -> (Vec<u64>, Vec<(u64, SocketAddr)>) {
        let mut announced = slot
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let keep: HashSet<_> = current.iter().collect();
        let mut withdrawn = Vec::new();
        announced.retain(|addr, sequence| {
            let kept = keep.contains(addr);
            if !kept {
                withdrawn.push(*sequence);
            }
            kept
        });
        let added = current
            .iter()
            .map(|addr| {
                let sequence = *announced
                    .entry(*addr)
                    .or_insert_with(|| self.inner.announce_seq.fetch_add(1, Ordering::Relaxed));
                (sequence, *addr)
            })
            .collect();
        (withdrawn, added)
    }
}
