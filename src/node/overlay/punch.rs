//! Candidates and hole punching: what we announce to a peer, and the punch
//! sessions (the leader's PUNCH_ME_NOW and both sides' [`PunchSession`]s, run
//! by `punch_driver`); what to punch and when is [`PeerState`]'s decision.
//!
//! [`PeerState`]: crate::node::peer_state::PeerState

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng as _, RngCore as _};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::links::Link;
use super::stats::{Method, Outcome};
use super::{Overlay, PeerSlot};
use crate::nat::{
    host_addresses, predict_ports, Candidate, CandidateKind, CandidateSet, CandidateSetConfig,
    Observation, PredictionConfig, PunchEvent, PunchParams, PunchSession, Role,
};
use crate::node::punch_driver::{self, ProbeIn};
use crate::proto::raw::Probe;
use crate::proto::ControlMessage;

/// A punch waits for the priming TTL's traceroute until this long before
/// it starts, then goes on with what is known (the driver needs a few ms to
/// set up its sending thread).
const PRIME_TRACE_MARGIN: Duration = Duration::from_millis(20);

/// How long after a punch validated an address its handshakes skip the
/// Retry: enough for the dial that follows (the other side waits 0.5 s, then
/// the handshake itself).
const PUNCHED_TRUST: Duration = Duration::from_secs(10);

impl Overlay {
    /// A punch probe or ACK: to the punch session with its token.
    pub(super) fn probe_in(&self, from: SocketAddr, probe: Probe) {
        let sender = self.lock_punches().get(&probe.token).cloned();
        match sender {
            Some(tx) => {
                let _ = tx.try_send(ProbeIn { from, probe });
            }
            None => tracing::debug!(%from, "probe with an unknown token dropped"),
        }
    }

    pub(super) fn lock_punches(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 16], mpsc::Sender<ProbeIn>>> {
        self.inner
            .punches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Our candidates: host addresses, the port mapping the gateway granted
    /// and what the bootstraps observed.
    async fn local_candidates(&self) -> Vec<Candidate> {
        let port = self.local_addr().map(|a| a.port()).unwrap_or(0);
        let loopback_only = self.inner.config.loopback_only;
        let mut set = CandidateSet::new(CandidateSetConfig {
            allow_loopback: loopback_only,
            ..CandidateSetConfig::default()
        });
        set.exclude_ips(self.inner.config.exclude_ips.iter().copied());
        let interfaces = if loopback_only {
            Ok(Vec::new())
        } else {
            antq_platform::interfaces().await
        };
        match interfaces {
            Ok(ifaces) => {
                set.add_host_addrs(port, host_addresses(&ifaces));
            }
            Err(error) => tracing::debug!(%error, "cannot list interfaces"),
        }
        let base = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port);
        if let Some(mapped) = self.held_mapping() {
            set.add_mapped(mapped.external, base);
        }
        let mut observations = Vec::new();
        for (server, observed) in self.observed_addresses() {
            if let Some(mapped) = observed {
                set.add_server_reflexive(mapped, base);
                observations.push(Observation {
                    server: server.addr,
                    base,
                    mapped,
                });
            }
        }
        // Behind a symmetric NAT that allocates ports in a pattern (seen
        // across several bootstraps), the next ports are candidates too.
        for p in predict_ports(&observations, &PredictionConfig::default()) {
            set.add_predicted(p.addr, Some(base), p.confidence);
        }
        set.into_vec()
    }

    /// Sends our candidates to `slot`'s peer through the bootstrap link at
    /// `via`, withdrawing the ones we no longer have
    /// ([`PeerState::announcement`]). Only done while there is no direct
    /// path: the peer reads an announcement as "my direct path is gone".
    ///
    /// [`PeerState::announcement`]: crate::node::peer_state::PeerState::announcement
    pub(super) async fn announce(&self, via: SocketAddr, slot: &PeerSlot) {
        let candidates = self.local_candidates().await;
        tracing::debug!(peer = %slot.id.short(), ?candidates, "announcing candidates");
        let addrs: Vec<_> = candidates.iter().map(|c| c.addr).collect();
        let messages = slot.state().announcement(&addrs, Instant::now());
        let Some(link) = self.link_at(via) else {
            return;
        };
        for inner in messages {
            let msg = ControlMessage::Forward {
                peer: *slot.id.as_bytes(),
                inner: Box::new(inner),
            };
            if link.conn.control().try_send(msg).is_err() {
                return;
            }
        }
    }

    /// Leader side: starts a coordinated punch round with the peer.
    ///
    /// The round and the 16-byte token come from `OsRng` (the operating
    /// system's CSPRNG, `getrandom`): the token authenticates the session's
    /// probes and acks, so someone who sees neither bootstrap connection
    /// cannot guess it and forge a validating ack. (`rand::thread_rng`, used
    /// elsewhere only for backoff jitter, would also do: in rand 0.8 it is
    /// ChaCha12 reseeded from the OS, a CSPRNG.)
    pub(super) fn initiate_punch(&self, link: &Link, slot: &Arc<PeerSlot>) {
        let mut token = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut token);
        let round = rand::rngs::OsRng.gen::<u32>() >> 1;
        let rtt = link.conn.rtt();
        // Long enough for both sides to set up the session and its sending
        // thread before the instant (a few ms even in debug builds).
        let delay = Duration::from_millis(60) + rtt * 2;
        let Some(addr) = self.observed_addresses().into_iter().find_map(|(_, o)| o) else {
            return;
        };
        // The peer gets the message about one bootstrap round trip later
        // (half our RTT there, half its own, assumed alike); with clocks that
        // agree, both sides start at the same wall-clock instant instead.
        let (now, now_unix) = clock_pair();
        let lead = rtt + delay;
        let start_at = now + lead;
        let start_unix = now_unix + lead.as_micros() as u64;
        let msg = ControlMessage::Forward {
            peer: *slot.id.as_bytes(),
            inner: Box::new(ControlMessage::PunchMeNow {
                round,
                paired_with_sequence: 0,
                addr,
                delay_ms: delay.as_millis() as u64,
                token,
                start_at_unix_micros: start_unix,
            }),
        };
        if link.conn.control().try_send(msg).is_err() {
            return;
        }
        self.start_punch(slot, Role::Controlling, round, token, start_at, None);
    }

    pub(super) fn start_punch(
        &self,
        slot: &Arc<PeerSlot>,
        role: Role,
        round: u32,
        token: [u8; 16],
        start_at: Instant,
        also: Option<SocketAddr>,
    ) {
        let remote = slot.state().punch_candidates(also);
        if remote.is_empty() {
            return;
        }
        let local = self
            .observed_addresses()
            .into_iter()
            .filter_map(|(_, o)| o)
            .map(|a| Candidate::new(a, CandidateKind::ServerReflexive, 65535))
            .collect();
        let span = tracing::info_span!("punch", peer = %slot.id.short(), round);
        tracing::info!(parent: &span, ?role, candidates = remote.len(), "hole punching starts");
        let config = self.inner.config.punch.clone();
        let busy_until = start_at + config.max_duration + config.linger;
        let classes = {
            let mut state = slot.state();
            state.on_punch_started(start_at);
            state.nat_classes()
        };
        self.inner
            .stats
            .punches_started
            .fetch_add(1, Ordering::Relaxed);
        let tally = |outcome| {
            self.inner
                .stats
                .attempts_by_class
                .note(Method::Punch, classes, outcome)
        };
        tally(Outcome::Started);
        let (tx, rx) = mpsc::channel(256);
        self.lock_punches().insert(token, tx);
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(
            async move {
                // The priming TTL comes from a traceroute started with the
                // overlay; the first punch may come before it is done.
                this.prime_ttl_traced(start_at.checked_sub(PRIME_TRACE_MARGIN).unwrap_or(start_at))
                    .await;
                let mut config = config;
                config.prime_ttl = this.prime_ttl();
                let params = PunchParams {
                    role,
                    round,
                    local,
                    remote,
                    start_at,
                };
                match PunchSession::new(params, config) {
                    Ok(session) => {
                        let socket = this.inner.node.socket().clone();
                        punch_driver::run(session, token, socket, rx, outcome_tx).await;
                    }
                    Err(error) => tracing::warn!(%error, "invalid punch configuration"),
                }
            }
            .instrument(span.clone()),
        );
        let this = self.clone();
        let slot = slot.clone();
        tokio::spawn(
            async move {
                match outcome_rx.await {
                    Ok(PunchEvent::PathValidated { remote, rtt }) => {
                        this.inner
                            .stats
                            .punches_succeeded
                            .fetch_add(1, Ordering::Relaxed);
                        this.inner.stats.attempts_by_class.note(
                            Method::Punch,
                            classes,
                            Outcome::Succeeded,
                        );
                        *slot
                            .validated
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) =
                            Some((remote, Method::Punch));
                        tracing::info!(%remote, ?rtt, "direct path validated");
                        // Whichever side dials, the other needs no Retry.
                        this.inner
                            .node
                            .trust_punched_address(remote, Instant::now() + PUNCHED_TRUST);
                        // The leader dials at once; the other side only if
                        // no direct connection shows up.
                        slot.state().on_punch_validated(remote, Instant::now());
                        slot.wake.notify_one();
                    }
                    Ok(PunchEvent::Failed { reason }) => {
                        this.inner
                            .stats
                            .punches_failed
                            .fetch_add(1, Ordering::Relaxed);
                        this.inner.stats.attempts_by_class.note(
                            Method::Punch,
                            classes,
                            Outcome::Failed,
                        );
                        tracing::info!(%reason, "hole punching failed");
                    }
                    Err(_) => {}
                }
                // Leave the token registered through the linger period.
                tokio::time::sleep_until(busy_until.into()).await;
                this.lock_punches().remove(&token);
            }
            .instrument(span),
        );
    }
}

fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The monotonic clock and the wall clock (µs since the epoch) read at the
/// same moment, give or take a few microseconds: both peers turn the agreed
/// wall-clock start into their own monotonic instant, and a read that was
/// interrupted in between would shift it.
pub(super) fn clock_pair() -> (Instant, u64) {
    let mut best: Option<(Duration, Instant, u64)> = None;
    for _ in 0..5 {
        let before = Instant::now();
        let wall = unix_micros(SystemTime::now());
        let after = Instant::now();
        let spread = after - before;
        if best.as_ref().is_none_or(|(s, _, _)| spread < *s) {
            best = Some((spread, before + spread / 2, wall));
        }
        if spread < Duration::from_micros(5) {
            break;
        }
    }
    let (_, instant, wall) = best.unwrap_or_else(|| {
        (
            Duration::ZERO,
            Instant::now(),
            unix_micros(SystemTime::now()),
        )
    });
    (instant, wall)
}

/// When to start a punch the peer asked for: at its wall-clock start time if
/// that lies in the window the relative delay allows (so the clocks agree
/// within about one bootstrap round trip), else `delay_ms` from now.
pub(super) fn punch_start(delay_ms: u64, start_at_unix_micros: u64, rtt: Duration) -> Instant {
    let (now, now_unix) = clock_pair();
    let delay = Duration::from_millis(delay_ms.min(5_000));
    let by_delay = now + delay;
    if start_at_unix_micros == 0 {
        return by_delay;
    }

    let until = Duration::from_micros(start_at_unix_micros.saturating_sub(now_unix));
    let slack = rtt * 2 + Duration::from_millis(10);
    if start_at_unix_micros >= now_unix && until <= delay + slack {
        now + until
    } else {
        by_delay
    }
}
