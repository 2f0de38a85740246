//! Port mapping for the overlay's socket: drives
//! [`PortMapSchedule`](crate::nat::PortMapSchedule) with the requests of
//! [`crate::node::portmap`]. A held mapping's external address is one of
//! our candidates (`CandidateKind::Mapped`) and makes our NAT class
//! `Public` (a mapped port is endpoint-independent and reachable from
//! anyone: a plain punch works from any peer, no birthday probing). When
//! the mapping comes or goes, every peer gets our candidates again.
//! [`Overlay::close`] removes it from the gateway, waiting at most
//! [`REMOVE_WAIT`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use super::Overlay;
use crate::nat::{HeldMapping, PortMapAction, PortMapConfig, PortMapProtocol, PortMapSchedule};
use crate::node::portmap::{self, MappingHandle};

/// How long [`Overlay::close`] waits for the gateway to confirm a removal.
pub const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// The schedule and the handle of what it holds (taken alone, never
/// across an `.await`).
pub(super) struct PortMapState {
    schedule: PortMapSchedule,
    handle: Option<MappingHandle>,
}

impl PortMapState {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            schedule: PortMapSchedule::new(PortMapConfig::default(), now),
            handle: None,
        }
    }
}

/// Counters of port mapping, per protocol (in [`PortMapProtocol::ALL`]
/// order).
#[derive(Debug, Default)]
pub(super) struct PortMapCounters {
    pub attempts: [AtomicU64; 3],
    pub successes: [AtomicU64; 3],
    pub failures: [AtomicU64; 3],
    pub removed: AtomicU64,
    pub remove_failed: AtomicU64,
}

fn index(protocol: PortMapProtocol) -> usize {
    PortMapProtocol::ALL
        .iter()
        .position(|p| *p == protocol)
        .unwrap_or(0)
}

/// The mapping held now, as `status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PortMapStatus {
    /// The protocol that granted it (`pcp`, `nat-pmp`, `upnp`).
    pub protocol: PortMapProtocol,
    /// The external address and port peers can reach us at.
    pub external: SocketAddr,
    /// Seconds until it lapses unless renewed (renewed at half its
    /// lifetime).
    pub expires_in_secs: u64,
    /// When it lapses, seconds since the Unix epoch.
    pub expires_unix: u64,
}

impl Overlay {
    fn lock_portmap(&self) -> Option<std::sync::MutexGuard<'_, PortMapState>> {
        self.inner
            .portmap
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The port mapping held now.
    pub(super) fn held_mapping(&self) -> Option<HeldMapping> {
        self.lock_portmap()?.schedule.mapping(Instant::now())
    }

    /// The port mapping held now, for `status` (`None`: none, or port
    /// mapping is off).
    pub fn port_mapping(&self) -> Option<PortMapStatus> {
        let held = self.held_mapping()?;
        let left = held.expires_at.saturating_duration_since(Instant::now());
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Some(PortMapStatus {
            protocol: held.protocol,
            external: held.external,
            expires_in_secs: left.as_secs(),
            expires_unix: (unix + left).as_secs(),
        })
    }

    /// Our addresses changed: renew (or look for) the mapping at once.
    pub(super) fn portmap_network_changed(&self) {
        if let Some(mut state) = self.lock_portmap() {
            state.schedule.network_changed(Instant::now());
        }
        self.inner.portmap_wake.notify_one();
    }

    /// Runs the port mapping schedule until the overlay closes.
    pub(super) async fn run_portmap(self) {
        let port = match self.local_addr() {
            Ok(a) => a.port(),
            Err(_) => return,
        };
        loop {
            let now = Instant::now();
            let Some((lapsed, action, handle, next)) = self.lock_portmap().map(|mut st| {
                let lapsed = st.schedule.handle_timeout(now);
                if lapsed {
                    st.handle = None;
                }
                let action = st.schedule.poll_action(now);
                (
                    lapsed,
                    action,
                    st.handle.clone(),
                    st.schedule.poll_timeout(),
                )
            }) else {
                return;
            };
            if lapsed {
                tracing::info!("port mapping lapsed");
                self.portmap_news();
            }
            if let Some(PortMapAction::Map {
                protocol,
                lifetime,
                renewal,
            }) = action
            {
                self.portmap_request(
                    port,
                    protocol,
                    lifetime,
                    renewal.then_some(handle).flatten(),
                )
                .await;
                continue;
            }
            let Some(next) = next else { return };
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                () = self.inner.portmap_wake.notified() => {}
            }
        }
    }

    async fn portmap_request(
        &self,
        port: u16,
        protocol: PortMapProtocol,
        lifetime: Duration,
        previous: Option<MappingHandle>,
    ) {
        let c = &self.inner.stats.portmap;
        let i = index(protocol);
        c.attempts[i].fetch_add(1, Ordering::Relaxed);
        let renewal = previous.is_some();
        let result = portmap::map(protocol, port, lifetime, previous.as_ref()).await;
        match &result {
            Ok(m) => {
                c.successes[i].fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%protocol, external = %m.grant.external, lifetime = ?m.grant.lifetime, renewal, "port mapping granted");
            }
            Err(error) => {
                c.failures[i].fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%protocol, %error, renewal, "no port mapping");
            }
        }
        let now = Instant::now();
        let changed = self.lock_portmap().is_some_and(|mut st| {
            let grant = result.as_ref().ok().map(|m| m.grant);
            let changed = st.schedule.on_result(now, protocol, grant);
            match (result, st.schedule.mapping(now)) {
                (Ok(m), Some(_)) => st.handle = Some(m.handle),
                (_, None) => st.handle = None,
                (Err(_), Some(_)) => {}
            }
            changed
        });
        if changed {
            match self.held_mapping() {
                Some(m) => {
                    tracing::info!(protocol = %m.protocol, external = %m.external, "port mapping held")
                }
                None => tracing::info!(%protocol, "port mapping lost"),
            }
            self.portmap_news();
        }
    }

    /// Our candidates and NAT class changed: every peer gets them again.
    fn portmap_news(&self) {
        for slot in self.slots().values() {
            slot.state().announce_soon();
            slot.wake.notify_one();
        }
    }

    /// Stops port mapping and removes a held mapping from the gateway,
    /// waiting at most [`REMOVE_WAIT`].
    pub(super) async fn close_portmap(&self) {
        if let Some(task) = self
            .inner
            .portmap_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        let Some((held, handle)) = self.lock_portmap().map(|mut st| {
            let held = st.schedule.close(Instant::now());
            (held, st.handle.take())
        }) else {
            return;
        };
        let (Some(held), Some(handle)) = (held, handle) else {
            return;
        };
        let c = &self.inner.stats.portmap;
        match tokio::time::timeout(REMOVE_WAIT, portmap::remove(handle)).await {
            Ok(Ok(())) => {
                c.removed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(protocol = %held.protocol, external = %held.external, "port mapping removed");
            }
            Ok(Err(error)) => {
                c.remove_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "port mapping not removed; it lapses on its own");
            }
            Err(_) => {
                c.remove_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(wait = ?REMOVE_WAIT, "the gateway did not confirm the removal of the port mapping; it lapses on its own");
            }
        }
    }

    /// Adds the port mapping metrics to `r`.
    pub(super) fn collect_portmap_metrics(&self, r: &mut crate::metrics::Registry) {
        use crate::metrics::load;
        let c = &self.inner.stats.portmap;
        for (family, help, values) in [
            (
                "antq_portmap_attempts_total",
                "Port mapping requests to the gateway (new and renewals), by protocol.",
                &c.attempts,
            ),
            (
                "antq_portmap_successes_total",
                "Port mapping requests the gateway granted, by protocol.",
                &c.successes,
            ),
            (
                "antq_portmap_failures_total",
                "Port mapping requests refused, unanswered or unusable, by protocol.",
                &c.failures,
            ),
        ] {
            let f = r.counter(family, help);
            for (p, v) in PortMapProtocol::ALL.iter().zip(values) {
                f.int(&[("protocol", p.name())], load(v));
            }
        }
        let f = r.counter(
            "antq_portmap_removals_total",
            "Mappings removed from the gateway at shutdown, by result.",
        );
        f.int(&[("result", "ok")], load(&c.removed));
        f.int(&[("result", "failed")], load(&c.remove_failed));
        let held = self.held_mapping();
        let f = r.gauge(
            "antq_portmap_mapping_held",
            "1 while a port mapping of that protocol is held, else 0.",
        );
        for p in PortMapProtocol::ALL {
            let on = held.is_some_and(|h| h.protocol == p);
            f.int(&[("protocol", p.name())], u64::from(on));
        }
    }
}
