//! Decisions about bootstrap links, sans-IO: when a lost link is tried
//! again ([`Reconnect`]) and which connected bootstrap new relay channels
//! are asked of ([`RelayChoice`]).
//!
//! The overlay's link tasks (`overlay/links.rs`) do the connecting and pass
//! in the time and the jitter; nothing here reads a clock or draws a random
//! number, so the schedules are tested on a clock the test moves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The first wait between connect attempts, and the wait after a link was
/// up.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between attempts to a bootstrap that has been away for
/// a while.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// For this long after losing a bootstrap link, reconnect attempts are
/// short and frequent (a restarting bootstrap is back within seconds)...
pub const FAST_RECONNECT_WINDOW: Duration = Duration::from_secs(60);
/// ...each attempt gets this long (quinn retransmits its Initial within it)...
pub const FAST_RECONNECT_ATTEMPT: Duration = Duration::from_secs(2);
/// ...and they are at most this far apart (plus jitter).
pub const FAST_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// Jitter added to each wait: up to this fraction of it.
pub const RECONNECT_JITTER: f64 = 0.5;
/// How long a bootstrap whose relay path stalled is passed over for new
/// relay channels: longer than its link takes to be found dead.
pub const SUSPECT_FOR: Duration = Duration::from_secs(3);

/// The reconnect schedule of one bootstrap link: exponential backoff from
/// [`FIRST_DELAY`], capped at [`FAST_RECONNECT_MAX_DELAY`] for
/// [`FAST_RECONNECT_WINDOW`] after the link was lost (with attempts cut off
/// after [`FAST_RECONNECT_ATTEMPT`]) and at [`MAX_DELAY`] otherwise.
#[derive(Clone, Debug)]
pub struct Reconnect {
    delay: Duration,
    lost_at: Option<Instant>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self::new()
    }
}

impl Reconnect {
    /// A link never connected yet.
    pub fn new() -> Self {
        Self {
            delay: FIRST_DELAY,
            lost_at: None,
        }
    }

    fn recent(&self, now: Instant) -> bool {
        self.lost_at
            .is_some_and(|t| now.saturating_duration_since(t) < FAST_RECONNECT_WINDOW)
    }

    /// How long the attempt starting at `now` may take: bounded shortly
    /// after a loss, unbounded (the connect timeout applies) otherwise.
    pub fn attempt_timeout(&self, now: Instant) -> Option<Duration> {
        self.recent(now).then_some(FAST_RECONNECT_ATTEMPT)
    }

    /// Whether the link was up before (a connection now is a reconnect).
    pub fn was_up(&self) -> bool {
        self.lost_at.is_some()
    }

    /// The link connected: the next loss starts from the first delay.
    pub fn on_connected(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// The link was lost at `now`.
    pub fn on_lost(&mut self, now: Instant) {
        self.lost_at = Some(now);
    }

    /// The wait before the next attempt, after one ended at `now`:
    /// the current delay plus `jitter` (in `0.0..1.0`) times
    /// [`RECONNECT_JITTER`] of it. The delay after that doubles, up to the
    /// cap that applies when that attempt starts.
    pub fn next_wait(&mut self, now: Instant, jitter: f64) -> Duration {
        let wait = self
            .delay
            .mul_f64(1.0 + jitter.clamp(0.0, 1.0) * RECONNECT_JITTER);
        let max = if self.recent(now + wait) {
            FAST_RECONNECT_MAX_DELAY
        } else {
            MAX_DELAY
        };
        self.delay = (self.delay * 2).min(max);
        wait
    }
}

/// Which connected bootstrap new relay channels are asked of: the first
/// one (in configuration order) that is not suspect; a bootstrap whose relay
/// path just stalled is passed over for [`SUSPECT_FOR`], since the
/// bootstrap itself may be what died (its link notices a little later).
#[derive(Clone, Debug, Default)]
pub struct RelayChoice {
    suspect: Option<(SocketAddr, Instant)>,
}

impl RelayChoice {
    /// A relay path through the bootstrap at `server` stalled at `now`.
    pub fn suspect(&mut self, server: SocketAddr, now: Instant) {
        self.suspect = Some((server, now));
    }

    /// The bootstrap to use among the connected ones (`links`, addresses
    /// in configuration order) at `now`: the first not suspect, else the
    /// first.
    pub fn choose(&self, links: &[SocketAddr], now: Instant) -> Option<SocketAddr> {
        let suspect = self
            .suspect
            .filter(|(_, since)| now.saturating_duration_since(*since) < SUSPECT_FOR)
            .map(|(addr, _)| addr);
        links
            .iter()
            .find(|a| Some(**a) != suspect)
            .or(links.first())
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(r: &mut Reconnect, now: &mut Instant, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let w = r.next_wait(*now, 0.0);
                *now += w;
                w
            })
            .collect()
    }

    #[test]
    fn first_connect_backs_off_to_thirty_seconds() {
        let mut now = Instant::now();
        let mut r = Reconnect::new();
        assert_eq!(r.attempt_timeout(now), None);
        assert!(!r.was_up());
        let w = waits(&mut r, &mut now, 10);
        assert_eq!(w[0], FIRST_DELAY);
        assert_eq!(w[1], FIRST_DELAY * 2);
        assert_eq!(w[7], MAX_DELAY);
        assert_eq!(w[9], MAX_DELAY);
    }

    #[test]
    fn a_lost_link_is_retried_every_second_for_a_minute_then_less() {
        let mut now = Instant::now();
        let mut r = Reconnect::new();
        waits(&mut r, &mut now, 6);
        r.on_connected();
        now += Duration::from_secs(600);
        r.on_lost(now);
        assert!(r.was_up());
        assert_eq!(r.attempt_timeout(now), Some(FAST_RECONNECT_ATTEMPT));
        let lost = now;
        let w = waits(&mut r, &mut now, 4);
        assert_eq!(
            w,
            [
                FIRST_DELAY,
                FIRST_DELAY * 2,
                FAST_RECONNECT_MAX_DELAY,
                FAST_RECONNECT_MAX_DELAY
            ]
        );
        // Attempts of up to 2 s, one a second: still fast near the end of
        // the window...
        while now + FAST_RECONNECT_ATTEMPT < lost + FAST_RECONNECT_WINDOW {
            now += FAST_RECONNECT_ATTEMPT;
            assert_eq!(r.next_wait(now, 0.0), FAST_RECONNECT_MAX_DELAY);
            now += FAST_RECONNECT_MAX_DELAY;
        }
        // ...and growing again once it is over; attempts are unbounded.
        now = lost + FAST_RECONNECT_WINDOW;
        assert_eq!(r.attempt_timeout(now), None);
        let w = waits(&mut r, &mut now, 6);
        assert_eq!(w[0], FAST_RECONNECT_MAX_DELAY);
        assert_eq!(w[5], MAX_DELAY);
    }

    #[test]
    fn jitter_adds_up_to_half_and_is_clamped() {
        let now = Instant::now();
        let mut r = Reconnect::new();
        assert_eq!(r.next_wait(now, 0.999_999).as_millis(), 374);
        let mut r = Reconnect::new();
        assert_eq!(r.next_wait(now, 7.0), FIRST_DELAY.mul_f64(1.5));
        let mut r = Reconnect::new();
        assert_eq!(r.next_wait(now, -1.0), FIRST_DELAY);
    }

    #[test]
    fn a_suspect_bootstrap_is_passed_over_for_three_seconds() {
        let a: SocketAddr = "192.0.2.1:7000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:7000".parse().unwrap();
        let now = Instant::now();
        let mut c = RelayChoice::default();
        assert_eq!(c.choose(&[], now), None);
        assert_eq!(c.choose(&[a, b], now), Some(a));
        c.suspect(a, now);
        assert_eq!(c.choose(&[a, b], now + Duration::from_secs(2)), Some(b));
        // The only one left is used even while suspect.
        assert_eq!(c.choose(&[a], now + Duration::from_secs(2)), Some(a));
        assert_eq!(c.choose(&[a, b], now + SUSPECT_FOR), Some(a));
        // A newer suspect replaces the older.
        c.suspect(b, now + SUSPECT_FOR);
        assert_eq!(c.choose(&[a, b], now + SUSPECT_FOR), Some(a));
    }
}
