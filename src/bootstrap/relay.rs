//! Relays between two peers: requests held until both keys asked for each
//! other, allocations within the per-key and total caps (the largest holder
//! making room at the total cap), the socket's forwarding entries of both
//! directions, and their move when a peer proves a new address.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rand::RngCore as _;

use super::registry::{Allocation, Moved, Registry, RelayOutcome};
use super::session::Session;
use super::Bootstrap;
use crate::identity::PeerId;
use crate::proto::{ControlMessage, UnavailableReason};
use crate::socket::{RelayLimit, RelayRoute};

impl Bootstrap {
    /// A relay request from `from` for `target`: held until `target`
    /// asks too (consent of both keys), then the allocation is made and
    /// both are granted their channel.
    pub(super) fn relay(&self, from: PeerId, target: PeerId) -> Result<(), UnavailableReason> {
        if !self.settings.relay {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(UnavailableReason::RelayDisabled);
        }
        let now = Instant::now();
        let mut rng = rand::rngs::OsRng;
        let channels = [rng.next_u32(), rng.next_u32()];
        let mut reg = self.lock();
        if !reg.answers_waiting(from, target, now) {
            reg.admit(from, now).map_err(|r| self.refuse(r))?;
            self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = reg.relay_request(from, target, now, channels);
        // Room made at the total cap: that allocation is gone for its pair.
        while let Some(gone) = reg.poll_evicted() {
            self.stats.relays_evicted.fetch_add(1, Ordering::Relaxed);
            self.close_allocation(&reg, &gone);
        }
        let alloc = match outcome {
            Err(refusal) => return Err(self.refuse(refusal)),
            Ok(RelayOutcome::StillWaiting) => return Ok(()),
            Ok(RelayOutcome::Waiting) => {
                // Tell the target we asked: if it wants the relay too, it
                // asks now rather than at its next retry.
                self.stats
                    .relay_requests_held
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(target) = reg.handle(&target) {
                    let _ = target
                        .conn
                        .control()
                        .try_send(ControlMessage::RelayRequest {
                            peer: *from.as_bytes(),
                        });
                }
                return Ok(());
            }
            Ok(RelayOutcome::Created(alloc)) => {
                self.install(&reg, &alloc);
                self.stats.relays_granted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(a = %alloc.a.short(), b = %alloc.b.short(), "relay allocated");
                alloc
            }
            Ok(RelayOutcome::Exists(alloc)) => alloc,
        };
        for (to, other, channel) in [
            (alloc.a, alloc.b, alloc.channel_a),
            (alloc.b, alloc.a, alloc.channel_b),
        ] {
            if let Some(session) = reg.handle(&to) {
                let _ = session.conn.control().try_send(ControlMessage::RelayGrant {
                    peer: *other.as_bytes(),
                    channel,
                });
            }
        }
        Ok(())
    }

    /// Installs both directions of `alloc`, each within its sender's
    /// budget.
    fn install(&self, reg: &Registry<Session>, alloc: &Allocation) {
        let limit = RelayLimit {
            bytes_per_sec: self.settings.limits.relay_bytes_per_sec,
            burst_bytes: self.settings.limits.relay_burst_bytes,
        };
        let (Some(sa), Some(sb)) = (reg.handle(&alloc.a), reg.handle(&alloc.b)) else {
            return;
        };
        let a = RelayRoute {
            server: alloc.addr_a,
            channel: alloc.channel_a,
        };
        let b = RelayRoute {
            server: alloc.addr_b,
            channel: alloc.channel_b,
        };
        let socket = self.node.socket();
        socket.set_relay_forward(a, b, limit, sa.budget.clone());
        socket.set_relay_forward(b, a, limit, sb.budget.clone());
    }

    fn uninstall(&self, alloc: &Allocation) {
        let socket = self.node.socket();
        socket.remove_relay_forward(RelayRoute {
            server: alloc.addr_a,
            channel: alloc.channel_a,
        });
        socket.remove_relay_forward(RelayRoute {
            server: alloc.addr_b,
            channel: alloc.channel_b,
        });
    }

    /// Removes an allocation's forwarding and tells the ends still
    /// connected (`RELAY_CLOSE` with each one's channel).
    pub(super) fn close_allocation(&self, reg: &Registry<Session>, alloc: &Allocation) {
        self.uninstall(alloc);
        for (end, channel) in [(alloc.a, alloc.channel_a), (alloc.b, alloc.channel_b)] {
            if let Some(session) = reg.handle(&end) {
                let _ = session
                    .conn
                    .control()
                    .try_send(ControlMessage::RelayClose { channel });
            }
        }
    }

    /// A peer proved a new address: its relay forwarding moves there.
    pub(super) fn apply_move(&self, moved: &Moved) {
        let reg = self.lock();
        for (before, after) in &moved.relays {
            self.uninstall(before);
            self.install(&reg, after);
        }
    }
}
