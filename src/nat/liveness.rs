//! Dead-path detection from a connection's packet counters (sans-IO).
//!
//! A path is alive while the peer answers what we send. QUIC acknowledges
//! every ack-eliciting packet within its maximum ACK delay, so when we have
//! sent ack-eliciting frames and received *nothing at all* for
//! [`LivenessConfig::stall_after`], the path is dead: the peer moved, a NAT
//! lost its mapping, or the relay stopped forwarding. Silence while we send
//! nothing ack-eliciting (an idle tunnel, or the last ACK of a burst) is not
//! a stall.
//!
//! [`Liveness::observe`] takes the counters and the time: callers sample
//! them periodically (the sampling period adds to the detection time).

use std::time::{Duration, Instant};

/// Tunables of a [`Liveness`] detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Silence after unanswered ack-eliciting sends that marks the path dead.
    pub stall_after: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            stall_after: Duration::from_secs(1),
        }
    }
}

/// Counters sampled from a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounters {
    /// Ack-eliciting frames sent so far (monotonic).
    pub eliciting_sent: u64,
    /// UDP datagrams received so far (monotonic).
    pub datagrams_received: u64,
}

/// What [`Liveness::observe`] concludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathHealth {
    /// Answers arrive, or nothing is waiting for one.
    Alive,
    /// Sends wait for an answer, for less than the stall time so far.
    Waiting {
        /// Since when.
        since: Instant,
    },
    /// Nothing came back for at least the stall time: the path is dead.
    Stalled {
        /// Since when sends went unanswered.
        since: Instant,
    },
}

/// Dead-path detector for one connection.
#[derive(Clone, Debug)]
pub struct Liveness {
    config: LivenessConfig,
    last: Option<PathCounters>,
    /// Ack-eliciting count at the last receive: anything above it waits.
    sent_at_last_receive: u64,
    /// When the first unanswered send was noticed.
    waiting_since: Option<Instant>,
}

impl Liveness {
    /// A detector that has seen nothing yet.
    pub fn new(config: LivenessConfig) -> Self {
        Self {
            config,
            last: None,
            sent_at_last_receive: 0,
            waiting_since: None,
        }
    }

    /// Feeds one sample of the counters taken at `now`.
    pub fn observe(&mut self, now: Instant, counters: PathCounters) -> PathHealth {
        let received = self
            .last
            .is_none_or(|last| counters.datagrams_received != last.datagrams_received);
        self.last = Some(counters);
        if received {
            self.sent_at_last_receive = counters.eliciting_sent;
            self.waiting_since = None;
            return PathHealth::Alive;
        }
        if counters.eliciting_sent <= self.sent_at_last_receive {
            self.waiting_since = None;
            return PathHealth::Alive;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now.duration_since(since) >= self.config.stall_after {
            PathHealth::Stalled { since }
        } else {
            PathHealth::Waiting { since }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(sent: u64, received: u64) -> PathCounters {
        PathCounters {
            eliciting_sent: sent,
            datagrams_received: received,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn answered_sends_keep_the_path_alive() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default());
        for i in 0..20u64 {
            assert_eq!(
                l.observe(t0 + ms(250 * i), counters(10 * i, 10 * i)),
                PathHealth::Alive
            );
        }
    }

    #[test]
    fn idle_silence_is_not_a_stall() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default());
        l.observe(t0, counters(5, 7));
        // Only our last ACK went out after the peer's final packet: no
        // eliciting send, nothing owed.
        for i in 1..40u64 {
            assert_eq!(
                l.observe(t0 + ms(250 * i), counters(5, 7)),
                PathHealth::Alive
            );
        }
    }

    #[test]
    fn unanswered_sends_stall_after_the_configured_time() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig {
            stall_after: ms(1000),
        });
        l.observe(t0, counters(10, 10));
        assert_eq!(
            l.observe(t0 + ms(100), counters(11, 10)),
            PathHealth::Waiting {
                since: t0 + ms(100)
            }
        );
        assert_eq!(
            l.observe(t0 + ms(900), counters(30, 10)),
            PathHealth::Waiting {
                since: t0 + ms(100)
            }
        );
        assert_eq!(
            l.observe(t0 + ms(1100), counters(40, 10)),
            PathHealth::Stalled {
                since: t0 + ms(100)
            }
        );
    }

    #[test]
    fn any_receive_ends_the_wait() {
        let t0 = Instant::now();
        let mut l = Liveness::new(LivenessConfig::default());
        l.observe(t0, counters(1, 1));
        l.observe(t0 + ms(500), counters(3, 1));
        assert_eq!(l.observe(t0 + ms(900), counters(4, 2)), PathHealth::Alive);
        // A new wait starts from the next unanswered send, not the old one.
        assert_eq!(
            l.observe(t0 + ms(1200), counters(5, 2)),
            PathHealth::Waiting {
                since: t0 + ms(1200)
            }
        );
    }
}
