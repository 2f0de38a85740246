//! Token buckets for rate limits (new connections, coordination requests,
//! relay bandwidth). Sans-IO: time is passed in.
//!
//! This small module sits beside the architecture's list because both the
//! socket layer (relay bandwidth) and the bootstrap node (requests) use it.

use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `cost` tokens if available; returns whether it did.
    pub fn try_take(&mut self, cost: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert!((0..5).all(|_| b.try_take(1.0, t0)));
        assert!(!b.try_take(1.0, t0));
        assert!(b.try_take(1.0, t0 + Duration::from_millis(100)));
        assert!(!b.try_take(1.0, t0 + Duration::from_millis(100)));
        // A long pause refills only to the burst size.
        let later = t0 + Duration::from_secs(60);
        assert!((0..5).all(|_| b.try_take(1.0, later)));
        assert!(!b.try_take(1.0, later));
    }
}
