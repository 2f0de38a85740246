//! Keeping paths up when the network changes under them.
//!
//! - **Local changes** (an address or route added or removed, a link going
//!   up or down, from [`antq_platform::watch_changes`]): the socket learns
//!   the host's addresses again (so no packet goes out from a vanished
//!   source), every connection switches to a fresh connection ID and pings
//!   ([`Node::network_changed`](crate::node::Node::network_changed)), so
//!   bootstraps and server-side peers follow us to the new address, and
//!   peers without a direct path get our new candidates, and the
//!   bootstraps' observe sockets are asked again (our NAT's mapping).
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

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::Overlay;
use crate::nat::{
    canonical, prime_ttl_from_trace, Liveness, LivenessConfig, PathHealth, TRACE_HOPS,
};
use crate::node::PeerConnection;

/// Changes arriving within this window are handled together.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// How long the traceroute for the priming TTL waits for answers.
const TRACE_WAIT: Duration = Duration::from_millis(300);
/// Pokes after a stall are at least this far apart.
const POKE_INTERVAL: Duration = Duration::from_millis(300);

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
            // Our NAT's mapping may be another one now.
            for link in self.read_links() {
                self.observe_again(&link);
            }
            self.portmap_network_changed();
            for slot in self.slots().values() {
                slot.state().announce_soon();
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
            .boot_views()
            .iter()
            .map(|(b, _, _)| canonical(b.addr).ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        else {
            return;
        };
        let mark = self.inner.config.transport.socket_mark;
        let traced = tokio::task::spawn_blocking(move || {
            antq_platform::trace_hops(target, TRACE_HOPS, TRACE_WAIT, mark)
                .map(|hops| prime_ttl_from_trace(&hops))
        })
        .await;
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
    pub(super) fn poke(&self) {
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
}
