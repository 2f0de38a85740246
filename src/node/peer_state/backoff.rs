//! Exponential backoff between attempts (sans-IO: time is passed in).

use std::time::{Duration, Instant};

/// Exponential backoff between attempts: the first attempt at once, then
/// `initial` doubling up to ten times `initial` (at least 30 s).
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Option<Instant>,
    initial: Duration,
    delay: Duration,
}

impl Backoff {
    /// A backoff starting at 500 ms.
    pub fn new() -> Self {
        Self::starting_at(Duration::from_millis(500))
    }

    /// A backoff whose first wait is `initial`.
    pub fn starting_at(initial: Duration) -> Self {
        Self {
            next: None,
            initial,
            delay: initial,
        }
    }

    fn max(&self) -> Duration {
        (self.initial * 10).max(Duration::from_secs(30))
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// Records an attempt at `now`: the next one waits, twice as long as
    /// the last wait (up to the maximum).
    pub fn arm(&mut self, now: Instant) {
        self.next = Some(now + self.delay);
        self.delay = (self.delay * 2).min(self.max());
    }

    /// Back to the first attempt at once.
    pub fn reset(&mut self) {
        *self = Self::starting_at(self.initial);
    }

    /// Holds the next attempt back until at least `t`.
    pub fn not_before(&mut self, t: Instant) {
        self.next = Some(self.next.map_or(t, |next| next.max(t)));
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}
