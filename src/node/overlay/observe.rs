//! Our NAT's mapping behaviour with a single bootstrap: a bootstrap that
//! has an observe socket says so on its link (`OBSERVE_AT { port }`); we
//! send it `OBSERVE_REQUEST`s from our main socket and keep its answer
//! (`OBSERVE_REPLY`: the address it saw) as a second observation of that
//! bootstrap, with the observe socket as the server. Together with the
//! link's `OBSERVED_ADDRESS` that is two destinations of one IP: the same
//! mapping for both (endpoint-independent, as far as one IP can tell) or
//! not (symmetric), which [`Overlay::nat_mapping`] reports.
//!
//! [`ObserveState`] decides (sans-IO): which request goes out, how many,
//! which reply is accepted (from the observe address, with the token of a
//! request of this run). The driver sends up to [`ATTEMPTS`] requests,
//! [`RETRY`] apart, until one is answered; a run starts when the bootstrap
//! tells us its observe port, and again when our observed address changes
//! or the network does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng as _;

use super::links::Link;
use super::peer::alive;
use super::Overlay;
use crate::nat::{canonical, infer_mapping, MappingBehaviour, Observation};
use crate::proto::raw::{ObserveReply, ObserveRequest};
use crate::socket::is_virtual;

/// Requests sent per run at most.
pub(super) const ATTEMPTS: usize = 4;
/// How long to wait for an answer after each request before the next.
pub(super) const RETRY: [Duration; ATTEMPTS] = [
    Duration::from_millis(300),
    Duration::from_millis(600),
    Duration::from_millis(1200),
    Duration::from_millis(2400),
];

/// What a received `OBSERVE_REPLY` was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyOutcome {
    /// The answer of this run: our mapping toward the observe socket.
    Learned(SocketAddr),
    /// Another answer of this run, after the first (a retried request).
    Duplicate,
    /// Not from the observe address, or a token of no request of this run:
    /// dropped.
    Unmatched,
}

/// One bootstrap link's observe socket and what it told us (sans-IO).
#[derive(Debug, Default)]
pub(super) struct ObserveState {
    /// The observe socket (canonical), once the bootstrap told us.
    target: Option<SocketAddr>,
    /// The current run; requests of older runs are stale.
    run: u64,
    /// Tokens of this run's requests (at most [`ATTEMPTS`]).
    tokens: Vec<[u8; 16]>,
    /// This run's answer.
    mapped: Option<SocketAddr>,
}

impl ObserveState {
    /// The bootstrap's observe socket is at `target`: returns the run to
    /// drive, or `None` when that is already known (nothing to do).
    pub(super) fn set_target(&mut self, target: SocketAddr) -> Option<u64> {
        let target = canonical(target);
        if self.target == Some(target) {
            return None;
        }
        self.target = Some(target);
        Some(self.restart())
    }

    /// Forgets the answer and starts a new run (our address changed):
    /// returns it, or `None` without an observe socket.
    pub(super) fn reset(&mut self) -> Option<u64> {
        self.target?;
        Some(self.restart())
    }

    fn restart(&mut self) -> u64 {
        self.run += 1;
        self.tokens.clear();
        self.mapped = None;
        self.run
    }

    /// The next request of `run`, carrying `token`, and where to send it;
    /// `None` when the run is over: answered, superseded by a newer run, or
    /// out of attempts.
    pub(super) fn next_request(
        &mut self,
        run: u64,
        token: [u8; 16],
    ) -> Option<(SocketAddr, ObserveRequest)> {
        let target = self.target?;
        if run != self.run || self.mapped.is_some() || self.tokens.len() >= ATTEMPTS {
            return None;
        }
        self.tokens.push(token);
        Some((target, ObserveRequest { token }))
    }

    /// Whether `run` has its answer or was superseded.
    pub(super) fn finished(&self, run: u64) -> bool {
        run != self.run || self.mapped.is_some()
    }

    /// A reply from `from`: accepted only from the observe address and with
    /// the token of a request of this run.
    pub(super) fn on_reply(&mut self, from: SocketAddr, reply: &ObserveReply) -> ReplyOutcome {
        if self.target != Some(canonical(from)) || !self.tokens.contains(&reply.token) {
            return ReplyOutcome::Unmatched;
        }
        if self.mapped.is_some() {
            return ReplyOutcome::Duplicate;
        }
        let mapped = canonical(reply.observed);
        self.mapped = Some(mapped);
        ReplyOutcome::Learned(mapped)
    }

    /// `(observe socket, our address as it saw it)`, once answered.
    pub(super) fn observation(&self) -> Option<(SocketAddr, SocketAddr)> {
        Some((self.target?, self.mapped?))
    }
}

/// Counters of our observe requests.
#[derive(Debug, Default)]
pub(super) struct ObserveCounters {
    sent: AtomicU64,
    learned: AtomicU64,
    unanswered: AtomicU64,
    unmatched: AtomicU64,
}

impl ObserveCounters {
    /// The counters by name (metrics).
    pub(super) fn events(&self) -> [(&'static str, u64); 4] {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("sent", load(&self.sent)),
            ("learned", load(&self.learned)),
            ("unanswered", load(&self.unanswered)),
            ("unmatched", load(&self.unmatched)),
        ]
    }
}

fn lock(state: &Mutex<ObserveState>) -> std::sync::MutexGuard<'_, ObserveState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Overlay {
    /// Our NAT's mapping behaviour, from what the bootstraps saw of our
    /// socket: their `OBSERVED_ADDRESS`es and their observe sockets'
    /// answers ([`crate::nat::infer_mapping`]). With one bootstrap that has
    /// an observe socket: [`MappingBehaviour::EndpointIndependent`] when
    /// both of its ports saw the same address (a NAT mapping per destination
    /// IP only looks the same from one IP), [`MappingBehaviour::Symmetric`]
    /// when they did not; [`MappingBehaviour::Unknown`] until two
    /// observations are in (or when no bootstrap is connected over UDP).
    pub fn nat_mapping(&self) -> MappingBehaviour {
        infer_mapping(&self.observations())
    }

    /// Every observation of our socket: per connected bootstrap its
    /// `OBSERVED_ADDRESS` and, once answered, its observe socket's.
    pub(super) fn observations(&self) -> Vec<Observation> {
        let port = self.local_addr().map(|a| a.port()).unwrap_or(0);
        let base = SocketAddr::new(std::net::IpAddr::from([0, 0, 0, 0]), port);
        let mut out = Vec::new();
        for (b, link, _) in self.boot_views() {
            let Some(link) = link else { continue };
            if let Some(mapped) = *link.observed.lock().unwrap_or_else(PoisonError::into_inner) {
                out.push(Observation {
                    server: b.addr,
                    base,
                    mapped,
                });
            }
            let observed = lock(&link.observe).observation();
            if let Some((server, mapped)) = observed {
                out.push(Observation {
                    server,
                    base,
                    mapped,
                });
            }
        }
        out
    }

    /// The bootstrap of `link` said its observe socket listens on `port`.
    pub(super) fn on_observe_at(&self, link: &Link, port: u16) {
        if port == 0 || is_virtual(link.addr) {
            tracing::debug!(port, "OBSERVE_AT ignored");
            return;
        }
        let target = SocketAddr::new(canonical(link.addr).ip(), port);
        let run = lock(&link.observe).set_target(target);
        if let Some(run) = run {
            tracing::debug!(%target, "bootstrap observe socket");
            self.spawn_observe(link.clone(), run);
        }
    }

    /// Asks `link`'s observe socket again (our address changed).
    pub(super) fn observe_again(&self, link: &Link) {
        let run = lock(&link.observe).reset();
        if let Some(run) = run {
            self.spawn_observe(link.clone(), run);
        }
    }

    /// Sends the requests of `run`, [`RETRY`] apart, until it is answered,
    /// superseded, out of attempts, or the link is gone.
    fn spawn_observe(&self, link: Link, run: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            let counters = &this.inner.stats.observe;
            for wait in RETRY {
                if !alive(&link.conn) {
                    return;
                }
                let token: [u8; 16] = rand::rngs::OsRng.gen();
                let Some((target, request)) = lock(&link.observe).next_request(run, token) else {
                    return;
                };
                let sent = this
                    .inner
                    .node
                    .socket()
                    .try_send_raw(target, &request.to_bytes());
                if sent.is_ok() {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(wait).await;
                if lock(&link.observe).finished(run) {
                    return;
                }
            }
            counters.unanswered.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("bootstrap observe socket did not answer");
        });
    }

    /// An `OBSERVE_REPLY` from `from` (the raw-frame task): kept if it
    /// answers a request of ours to that address, else dropped and counted.
    pub(super) fn observe_reply(&self, from: SocketAddr, reply: ObserveReply) {
        let counters = &self.inner.stats.observe;
        if is_virtual(reply.observed) {
            counters.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let states: Vec<Arc<Mutex<ObserveState>>> = self
            .read_links()
            .into_iter()
            .map(|l| l.observe.clone())
            .collect();
        for state in states {
            match lock(&state).on_reply(from, &reply) {
                ReplyOutcome::Learned(mapped) => {
                    counters.learned.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%from, %mapped, "observed address at the observe port");
                    return;
                }
                ReplyOutcome::Duplicate => return,
                ReplyOutcome::Unmatched => {}
            }
        }
        counters.unmatched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, "unmatched observe reply dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn reply(token: u8, observed: &str) -> ObserveReply {
        ObserveReply {
            token: [token; 16],
            observed: at(observed),
        }
    }

    #[test]
    fn accepts_only_a_token_of_this_run_from_the_observe_address() {
        let mut s = ObserveState::default();
        assert_eq!(s.next_request(1, [1; 16]), None, "no target yet");
        assert_eq!(s.reset(), None);
        let run = s.set_target(at("[::ffff:198.51.100.1]:9001")).unwrap();
        assert_eq!(s.set_target(at("198.51.100.1:9001")), None, "same target");
        let (to, req) = s.next_request(run, [1; 16]).unwrap();
        assert_eq!(to, at("198.51.100.1:9001"));
        assert_eq!(req.token, [1; 16]);
        // Wrong source (the main port, another IP), wrong token: dropped.
        for (from, r) in [
            ("198.51.100.1:9000", reply(1, "203.0.113.5:4000")),
            ("198.51.100.2:9001", reply(1, "203.0.113.5:4000")),
            ("198.51.100.1:9001", reply(2, "203.0.113.5:4000")),
        ] {
            assert_eq!(s.on_reply(at(from), &r), ReplyOutcome::Unmatched);
        }
        assert_eq!(s.observation(), None);
        assert!(!s.finished(run));
        assert_eq!(
            s.on_reply(
                at("198.51.100.1:9001"),
                &reply(1, "[::ffff:203.0.113.5]:4000")
            ),
            ReplyOutcome::Learned(at("203.0.113.5:4000"))
        );
        assert_eq!(
            s.observation(),
            Some((at("198.51.100.1:9001"), at("203.0.113.5:4000")))
        );
        assert!(s.finished(run));
        assert_eq!(s.next_request(run, [3; 16]), None, "answered");
        assert_eq!(
            s.on_reply(at("198.51.100.1:9001"), &reply(1, "203.0.113.5:4001")),
            ReplyOutcome::Duplicate
        );
        assert_eq!(s.observation().unwrap().1, at("203.0.113.5:4000"));
    }

    #[test]
    fn a_late_reply_to_an_earlier_attempt_counts() {
        let mut s = ObserveState::default();
        let run = s.set_target(at("198.51.100.1:9001")).unwrap();
        s.next_request(run, [1; 16]).unwrap();
        s.next_request(run, [2; 16]).unwrap();
        assert_eq!(
            s.on_reply(at("198.51.100.1:9001"), &reply(1, "203.0.113.5:4000")),
            ReplyOutcome::Learned(at("203.0.113.5:4000"))
        );
    }

    #[test]
    fn attempts_are_bounded() {
        let mut s = ObserveState::default();
        let run = s.set_target(at("198.51.100.1:9001")).unwrap();
        let sent = (0..10u8)
            .filter_map(|i| s.next_request(run, [i; 16]))
            .count();
        assert_eq!(sent, ATTEMPTS);
        assert_eq!(RETRY.len(), ATTEMPTS);
    }

    #[test]
    fn a_new_run_forgets_the_answer_and_old_tokens() {
        let mut s = ObserveState::default();
        let first = s.set_target(at("198.51.100.1:9001")).unwrap();
        s.next_request(first, [1; 16]).unwrap();
        s.on_reply(at("198.51.100.1:9001"), &reply(1, "203.0.113.5:4000"));
        let second = s.reset().unwrap();
        assert_ne!(first, second);
        assert!(s.finished(first), "the old run is superseded");
        assert_eq!(s.next_request(first, [5; 16]), None);
        assert_eq!(s.observation(), None);
        // A reply to the old run's request is no longer accepted.
        assert_eq!(
            s.on_reply(at("198.51.100.1:9001"), &reply(1, "203.0.113.5:4000")),
            ReplyOutcome::Unmatched
        );
        s.next_request(second, [2; 16]).unwrap();
        assert_eq!(
            s.on_reply(at("198.51.100.1:9001"), &reply(2, "203.0.113.5:5000")),
            ReplyOutcome::Learned(at("203.0.113.5:5000"))
        );
        // Another port: a new target, a new run.
        let third = s.set_target(at("198.51.100.1:3478")).unwrap();
        assert!(third > second);
        assert_eq!(s.observation(), None);
    }

    #[test]
    fn two_observations_of_one_bootstrap_tell_the_mapping() {
        let obs = |main: &str, observe: &str| {
            let base = at("0.0.0.0:5000");
            [
                Observation {
                    server: at("198.51.100.1:9000"),
                    base,
                    mapped: at(main),
                },
                Observation {
                    server: at("198.51.100.1:9001"),
                    base,
                    mapped: at(observe),
                },
            ]
        };
        assert_eq!(
            infer_mapping(&obs("203.0.113.5:5000", "203.0.113.5:5000")),
            MappingBehaviour::EndpointIndependent
        );
        assert!(matches!(
            infer_mapping(&obs("203.0.113.5:5000", "203.0.113.5:41234")),
            MappingBehaviour::Symmetric { .. }
        ));
        assert_eq!(
            infer_mapping(&obs("203.0.113.5:5000", "203.0.113.5:5000")[..1]),
            MappingBehaviour::Unknown
        );
    }
}
