//! Limits on what others can make us do or hold: token buckets (new
//! connections, coordination requests, relay bandwidth), token buckets by
//! key in bounded memory ([`KeyedBuckets`]), and caps on things held at once
//! by key and in total ([`Concurrency`]). Sans-IO: time is passed in.
//!
//! Limits by source address key on [`source_prefix`]: an IPv4 address, or an
//! IPv6 /64 (a host can use any of the 2^64 addresses of its /64, so a
//! per-address IPv6 limit is no limit).
//!
//! This small module sits beside the architecture's list because the socket
//! layer (relay bandwidth, TCP streams), the node (handshakes) and the
//! bootstrap (requests, relays) all use it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The key that per-source limits use for `ip`: an IPv4 address (also when
/// written IPv4-mapped), or the /64 network of an IPv6 address.
pub fn source_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

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

    /// Whether the bucket would be full at `now`: then it is no different
    /// from a new one, and forgetting it loses nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// When a token was last asked for.
    pub fn last_used(&self) -> Instant {
        self.last
    }
}

/// A pacer: a token bucket that delays what is above its rate instead of
/// refusing it (the generic cell rate algorithm). `burst` bytes pass at
/// once; beyond that, sends are spaced at `rate`, each at most `max_delay`
/// late; what would be later is refused. A relay that drops everything
/// above its rate makes TCP inside the tunnel thrash (20,000 retransmits
/// in 8 s at 25 MB/s); one that queues up to `max_delay` lets a flow
/// settle at the rate.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate: f64,
    burst: Duration,
    max_delay: Duration,
    /// When the bucket will be full again (the theoretical arrival time of
    /// the next byte): nothing owed before it.
    tat: Instant,
}

impl Pacer {
    /// A full pacer of `rate` bytes per second (positive), `burst` bytes,
    /// delaying sends by at most `max_delay`.
    pub fn new(rate: f64, burst: f64, max_delay: Duration, now: Instant) -> Self {
        Self {
            rate,
            burst: secs(burst / rate),
            max_delay,
            tat: now,
        }
    }

    /// When `cost` bytes may leave (`now` or later), or `None` when that
    /// would be more than `max_delay` from `now`. Takes nothing: see
    /// [`Pacer::take`].
    pub fn departure(&self, cost: f64, now: Instant) -> Option<Instant> {
        let end = self.tat.max(now) + secs(cost / self.rate);
        let departure = end.checked_sub(self.burst).map_or(now, |t| t.max(now));
        (departure <= now + self.max_delay).then_some(departure)
    }

    /// Takes `cost` bytes (after [`Pacer::departure`] allowed them).
    pub fn take(&mut self, cost: f64, now: Instant) {
        self.tat = self.tat.max(now) + secs(cost / self.rate);
    }
}

/// Seconds as a duration; non-finite or negative counts as zero, huge as
/// a day.
fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(86_400.0))
    } else {
        Duration::ZERO
    }
}

/// Token buckets by key (a source prefix, a peer key) in bounded memory.
///
/// At most `capacity` keys are tracked. A new key at capacity first makes
/// room by forgetting every bucket that has refilled (see
/// [`TokenBucket::is_full`]: nothing is lost); if none has, the least
/// recently used eighth is forgotten (those keys start again with a full
/// burst, which is the most an attacker with more keys than `capacity` can
/// win). The map is never reset as a whole.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<K, TokenBucket>,
    evicted: u64,
}

impl<K: Hash + Eq + Copy> KeyedBuckets<K> {
    /// Buckets of `rate` per second and `burst`, for at most `capacity` keys
    /// (at least 1).
    pub fn new(rate: f64, burst: f64, capacity: usize) -> Self {
        Self {
            rate,
            burst,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
            evicted: 0,
        }
    }

    /// Takes `cost` tokens from `key`'s bucket if it has them.
    pub fn try_take(&mut self, key: K, cost: f64, now: Instant) -> bool {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.capacity {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .try_take(cost, now)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Buckets forgotten while still partly drained (the LRU step).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn make_room(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(now));
        if self.buckets.len() < self.capacity {
            return;
        }
        let mut ages: Vec<Instant> = self.buckets.values().map(TokenBucket::last_used).collect();
        let cut = (ages.len() / 8).max(1);
        let (_, oldest_kept, _) = ages.select_nth_unstable(cut - 1);
        let oldest_kept = *oldest_kept;
        let before = self.buckets.len();
        self.buckets.retain(|_, b| b.last_used() > oldest_kept);
        self.evicted += (before - self.buckets.len()) as u64;
    }
}

/// Why [`Concurrency::acquire`] said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConcurrencyError {
    /// The key holds its maximum already.
    #[error("too many at once from this source")]
    PerKey,
    /// Everyone together holds the maximum already.
    #[error("too many at once in total")]
    Total,
}

/// Caps on things held at once (connections, streams), per key and in
/// total. [`Concurrency::acquire`] hands out a [`Permit`] that gives its
/// place back when dropped. Only keys holding a permit are stored, so the
/// map never has more than `max_total` entries.
#[derive(Clone, Debug)]
pub struct Concurrency<K: Hash + Eq> {
    inner: Arc<Mutex<ConcurrencyState<K>>>,
}

#[derive(Debug)]
struct ConcurrencyState<K> {
    per_key: usize,
    max_total: usize,
    total: usize,
    held: HashMap<K, usize>,
}

impl<K: Hash + Eq + Copy> Concurrency<K> {
    /// At most `per_key` permits per key and `max_total` in all.
    pub fn new(per_key: usize, max_total: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ConcurrencyState {
                per_key,
                max_total,
                total: 0,
                held: HashMap::new(),
            })),
        }
    }

    /// A permit for `key`, if neither cap is reached.
    pub fn acquire(&self, key: K) -> Result<Permit<K>, ConcurrencyError> {
        let mut state = self.lock();
        if state.total >= state.max_total {
            return Err(ConcurrencyError::Total);
        }
        let per_key = state.per_key;
        let held = state.held.entry(key).or_insert(0);
        if *held >= per_key {
            if *held == 0 {
                state.held.remove(&key);
            }
            return Err(ConcurrencyError::PerKey);
        }
        *held += 1;
        state.total += 1;
        Ok(Permit {
            owner: self.clone(),
            key,
        })
    }

    /// Like [`Self::acquire`], but at the total cap a key may still get a
    /// permit when another key holds at least two more than it then does:
    /// that key is returned, and the caller should end one of its holdings
    /// (whose permit then comes back). So a few keys holding many places
    /// cannot lock out keys holding few; the total may exceed its cap by
    /// the holdings still being ended.
    pub fn acquire_fair(&self, key: K) -> Result<(Permit<K>, Option<K>), ConcurrencyError> {
        let mut state = self.lock();
        let mine = state.held.get(&key).copied().unwrap_or(0);
        if mine >= state.per_key {
            return Err(ConcurrencyError::PerKey);
        }
        let victim = if state.total >= state.max_total {
            let largest = state
                .held
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(k, n)| (*k, *n));
            match largest {
                Some((k, n)) if n >= mine + 2 => Some(k),
                _ => return Err(ConcurrencyError::Total),
            }
        } else {
            None
        };
        *state.held.entry(key).or_insert(0) += 1;
        state.total += 1;
        Ok((
            Permit {
                owner: self.clone(),
                key,
            },
            victim,
        ))
    }

    /// Permits held in total.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    /// Permits `key` holds.
    pub fn held_by(&self, key: &K) -> usize {
        self.lock().held.get(key).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConcurrencyState<K>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, key: &K) {
        let mut state = self.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(held) = state.held.get_mut(key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.held.remove(key);
            }
        }
    }
}

/// One place held in a [`Concurrency`]; given back on drop.
#[derive(Debug)]
pub struct Permit<K: Hash + Eq + Copy> {
    owner: Concurrency<K>,
    key: K,
}

impl<K: Hash + Eq + Copy> Permit<K> {
    /// The key this permit counts against.
    pub fn key(&self) -> K {
        self.key
    }
}

impl<K: Hash + Eq + Copy> Drop for Permit<K> {
    fn drop(&mut self) {
        self.owner.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pacer_passes_its_burst_then_spaces_and_refuses_beyond_the_delay() {
        let t0 = Instant::now();
        // 1,000 bytes/s, burst 3,000 bytes, at most 2 s late.
        let mut p = Pacer::new(1000.0, 3000.0, Duration::from_secs(2), t0);
        for _ in 0..3 {
            assert_eq!(p.departure(1000.0, t0), Some(t0));
            p.take(1000.0, t0);
        }
        // Over the burst: one second apart.
        for late in 1..=2 {
            assert_eq!(
                p.departure(1000.0, t0),
                Some(t0 + Duration::from_secs(late))
            );
            p.take(1000.0, t0);
        }
        // A third would leave 3 s late: refused, nothing taken.
        assert_eq!(p.departure(1000.0, t0), None);
        assert_eq!(p.departure(1000.0, t0), None);
        // Time refills it at the rate.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(p.departure(1000.0, t1), Some(t1));
        let t2 = t0 + Duration::from_secs(100);
        assert_eq!(p.departure(1000.0, t2), Some(t2));
    }

    #[test]
    fn a_paced_stream_averages_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000.0, 10_000.0, Duration::from_millis(25), t0);
        let mut last = t0;
        let mut sent = 0.0;
        for _ in 0..1000 {
            let at = p.departure(1000.0, last).expect("within the delay");
            p.take(1000.0, at);
            sent += 1000.0;
            last = at;
        }
        // 1 MB in one second, less the burst that went at once.
        let took = last.duration_since(t0).as_secs_f64();
        assert!(
            (took - (sent - 10_000.0) / 1_000_000.0).abs() < 0.002,
            "{took}"
        );
    }
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

    #[test]
    fn ipv6_keys_on_the_64_and_ipv4_on_the_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_prefix(a), source_prefix(b));
        assert_ne!(source_prefix(a), source_prefix(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_prefix(v4), v4);
        assert_eq!(source_prefix(mapped), v4);
        assert_ne!(source_prefix("192.0.2.8".parse().unwrap()), v4);
    }

    #[test]
    fn keyed_buckets_stay_bounded_without_a_reset() {
        let t0 = Instant::now();
        let mut b = KeyedBuckets::new(1.0, 2.0, 8);
        // Key 0 drains its bucket, then 100 other keys come and go.
        assert!(b.try_take(0u32, 2.0, t0));
        assert!(!b.try_take(0, 1.0, t0));
        for k in 1..100u32 {
            let t = t0 + Duration::from_millis(u64::from(k));
            assert!(b.try_take(k, 0.5, t));
            assert!(b.len() <= 8);
        }
        // Partly drained buckets were evicted oldest first, and key 0 was
        // the oldest; it is back with a full burst (that is the bound).
        assert!(b.evicted() > 0);
        // Buckets that refilled are forgotten first, with nothing lost.
        let mut c = KeyedBuckets::new(10.0, 1.0, 2);
        assert!(c.try_take(1u8, 1.0, t0));
        assert!(c.try_take(2u8, 1.0, t0));
        let later = t0 + Duration::from_secs(1);
        assert!(c.try_take(3u8, 1.0, later));
        assert_eq!(c.evicted(), 0);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn keyed_buckets_keep_a_drained_key_limited_while_others_are_idle() {
        let t0 = Instant::now();
        let mut b = KeyedBuckets::new(1.0, 3.0, 4);
        for k in 1..4u8 {
            assert!(b.try_take(k, 1.0, t0));
        }
        assert!((0..3).all(|_| b.try_take(9u8, 1.0, t0)));
        // Many new keys later, the three refilled ones make room and key 9
        // (drained, recent) stays limited.
        let t1 = t0 + Duration::from_secs(2);
        assert!(b.try_take(20u8, 1.0, t1));
        assert!(b.try_take(9u8, 1.0, t1));
        assert!(b.try_take(9u8, 1.0, t1));
        assert!(!b.try_take(9u8, 1.0, t1));
    }

    #[test]
    fn at_the_total_cap_the_largest_holder_makes_room() {
        let c = Concurrency::new(10, 4);
        let held: Vec<_> = (0..3).map(|_| c.acquire_fair('a').unwrap()).collect();
        let (_b, victim) = c.acquire_fair('b').unwrap();
        assert_eq!(victim, None);
        // Full: 'c' holds 0, 'a' holds 3 >= 0 + 2: 'a' must give one up.
        let (_c, victim) = c.acquire_fair('c').unwrap();
        assert_eq!(victim, Some('a'));
        assert_eq!(c.total(), 5, "over the cap until 'a' gives one back");
        // 'a' again gets nothing: nobody holds two more than it would.
        assert_eq!(c.acquire_fair('a').unwrap_err(), ConcurrencyError::Total);
        drop(held);
        assert_eq!(c.total(), 2);
        // Balanced holders lock each other out no more than acquire does.
        let d = Concurrency::new(10, 2);
        let _x = d.acquire_fair('x').unwrap();
        let _y = d.acquire_fair('y').unwrap();
        assert_eq!(d.acquire_fair('z').unwrap_err(), ConcurrencyError::Total);
    }

    #[test]
    fn concurrency_caps_per_key_and_in_total_and_gives_back_on_drop() {
        let c = Concurrency::new(2, 3);
        let a1 = c.acquire('a').unwrap();
        let _a2 = c.acquire('a').unwrap();
        assert_eq!(c.acquire('a').unwrap_err(), ConcurrencyError::PerKey);
        let _b1 = c.acquire('b').unwrap();
        assert_eq!(c.acquire('c').unwrap_err(), ConcurrencyError::Total);
        assert_eq!(c.total(), 3);
        drop(a1);
        assert_eq!(c.held_by(&'a'), 1);
        let _c1 = c.acquire('c').unwrap();
        assert_eq!(c.acquire('d').unwrap_err(), ConcurrencyError::Total);
        assert_eq!(c.held_by(&'d'), 0);
    }
}
