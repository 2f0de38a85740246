//! Path choice for one peer: relay first, direct when validated (sans-IO).
//!
//! Policy:
//! - The relay is used as soon as it is available so the first packet goes
//!   out quickly; a direct punch is requested in parallel
//!   ([`PathEvent::PunchRequested`] on creation).
//! - When a direct path is validated it becomes active *before* anything is
//!   torn down (make-before-break); the relay is kept as a backup.
//! - When the active direct path is silent for longer than
//!   `silence_timeout` (checked in [`PathSelector::handle_timeout`]) or the
//!   driver reports it silent ([`PathSelector::handle_path_silent`]), it is
//!   marked failed, traffic moves back to the relay (or another direct
//!   backup) and a re-punch is requested.
//! - Failed punches are retried with exponential backoff
//!   (`repunch_initial` doubling up to `repunch_max`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::candidate::canonical_addr;

/// A way to reach the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// Directly, at this address.
    Direct(SocketAddr),
    /// Through the relay.
    Relay,
}

/// Lifecycle state of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// A punch toward it is running.
    Validating,
    /// Carries traffic.
    Active,
    /// Usable, kept as fallback.
    Backup,
    /// Not usable.
    Failed,
}

/// What the selector knows about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// Which path.
    pub kind: PathKind,
    /// Its state.
    pub state: PathState,
    /// Latest RTT sample.
    pub rtt: Option<Duration>,
    /// When we last received on it.
    pub last_seen: Option<Instant>,
}

/// Output events of a [`PathSelector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEvent {
    /// Traffic must now use `to` (`None`: no usable path).
    ActivePathChanged {
        /// Previous active path.
        from: Option<PathKind>,
        /// New active path.
        to: Option<PathKind>,
    },
    /// A path failed.
    PathFailed {
        /// Which one.
        path: PathKind,
    },
    /// Start a (new) punch attempt toward the peer.
    PunchRequested {
        /// 0 for the initial attempt, then increasing.
        attempt: u32,
    },
}

/// Tunables of a [`PathSelector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    /// An active direct path silent this long is considered broken.
    pub silence_timeout: Duration,
    /// First re-punch delay after a failure.
    pub repunch_initial: Duration,
    /// Maximum re-punch delay.
    pub repunch_max: Duration,
    /// Maximum direct paths remembered.
    pub max_direct_paths: usize,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            silence_timeout: Duration::from_secs(10),
            repunch_initial: Duration::from_secs(2),
            repunch_max: Duration::from_secs(120),
            max_direct_paths: 4,
        }
    }
}

/// Tracks the relay and direct paths to one peer and picks the active one.
#[derive(Debug)]
pub struct PathSelector {
    config: PathConfig,
    paths: Vec<PathInfo>,
    active: Option<PathKind>,
    events: VecDeque<PathEvent>,
    punch_attempt: u32,
    repunch_at: Option<Instant>,
    repunch_delay: Duration,
}

impl PathSelector {
    /// A selector with no paths; requests the initial punch.
    pub fn new(config: PathConfig) -> Self {
        let repunch_delay = config.repunch_initial;
        let mut events = VecDeque::new();
        events.push_back(PathEvent::PunchRequested { attempt: 0 });
        PathSelector {
            config,
            paths: Vec::new(),
            active: None,
            events,
            punch_attempt: 1,
            repunch_at: None,
            repunch_delay,
        }
    }

    fn normalize(kind: PathKind) -> PathKind {
        match kind {
            PathKind::Direct(a) => PathKind::Direct(canonical_addr(a)),
            PathKind::Relay => PathKind::Relay,
        }
    }

    fn get_mut(&mut self, kind: PathKind) -> Option<&mut PathInfo> {
        self.paths.iter_mut().find(|p| p.kind == kind)
    }

    fn upsert(&mut self, kind: PathKind, state: PathState) -> &mut PathInfo {
        if let Some(i) = self.paths.iter().position(|p| p.kind == kind) {
            self.paths[i].state = state;
            return &mut self.paths[i];
        }
        if matches!(kind, PathKind::Direct(_)) {
            let directs = self
                .paths
                .iter()
                .filter(|p| matches!(p.kind, PathKind::Direct(_)))
                .count();
            if directs >= self.config.max_direct_paths {
                // Forget the oldest failed direct path, else the oldest backup.
                if let Some(i) = self
                    .paths
                    .iter()
                    .position(|p| {
                        matches!(p.kind, PathKind::Direct(_)) && p.state == PathState::Failed
                    })
                    .or_else(|| {
                        self.paths.iter().position(|p| {
                            matches!(p.kind, PathKind::Direct(_)) && p.state != PathState::Active
                        })
                    })
                {
                    self.paths.remove(i);
                }
            }
        }
        self.paths.push(PathInfo {
            kind,
            state,
            rtt: None,
            last_seen: None,
        });
        self.paths.last_mut().expect("just pushed")
    }

    fn set_active(&mut self, to: Option<PathKind>) {
        if self.active == to {
            return;
        }
        let from = self.active;
        if let Some(prev) = from {
            if let Some(p) = self.get_mut(prev) {
                if p.state == PathState::Active {
                    p.state = PathState::Backup;
                }
            }
        }
        if let Some(next) = to {
            if let Some(p) = self.get_mut(next) {
                p.state = PathState::Active;
            }
        }
        self.active = to;
        self.events
            .push_back(PathEvent::ActivePathChanged { from, to });
    }

    /// Best fallback: a backup direct path (lowest RTT), else the relay.
    fn best_backup(&self) -> Option<PathKind> {
        self.paths
            .iter()
            .filter(|p| matches!(p.kind, PathKind::Direct(_)) && p.state == PathState::Backup)
            .min_by_key(|p| p.rtt.unwrap_or(Duration::MAX))
            .or_else(|| {
                self.paths
                    .iter()
                    .find(|p| p.kind == PathKind::Relay && p.state == PathState::Backup)
            })
            .map(|p| p.kind)
    }

    /// The relay became usable; it carries traffic unless a direct path does.
    pub fn handle_relay_available(&mut self, now: Instant) {
        let p = self.upsert(PathKind::Relay, PathState::Backup);
        p.last_seen = Some(now);
        if self.active.is_none() {
            self.set_active(Some(PathKind::Relay));
        }
    }

    /// The relay is gone.
    pub fn handle_relay_lost(&mut self, _now: Instant) {
        self.fail(PathKind::Relay);
    }

    /// A punch toward `addr` started.
    pub fn handle_direct_validating(&mut self, addr: SocketAddr, _now: Instant) {
        let kind = Self::normalize(PathKind::Direct(addr));
        if self.active != Some(kind) {
            self.upsert(kind, PathState::Validating);
        }
    }

    /// A punch validated `addr`: switch to it (make-before-break; the relay
    /// stays as a backup).
    pub fn handle_direct_validated(&mut self, addr: SocketAddr, rtt: Duration, now: Instant) {
        let kind = Self::normalize(PathKind::Direct(addr));
        let p = self.upsert(kind, PathState::Backup);
        p.rtt = Some(rtt);
        p.last_seen = Some(now);
        self.repunch_at = None;
        self.repunch_delay = self.config.repunch_initial;
        self.set_active(Some(kind));
    }

    /// A punch attempt failed: pending direct paths fail and a re-punch is
    /// scheduled with backoff.
    pub fn handle_punch_failed(&mut self, now: Instant) {
        for p in &mut self.paths {
            if p.state == PathState::Validating {
                p.state = PathState::Failed;
            }
        }
        if !matches!(self.active, Some(PathKind::Direct(_))) {
            self.schedule_repunch(now);
        }
    }

    /// Something was received on `path` (keeps it alive).
    pub fn handle_rx(&mut self, path: PathKind, now: Instant) {
        let path = Self::normalize(path);
        if let Some(p) = self.get_mut(path) {
            if p.state != PathState::Failed {
                p.last_seen = Some(now);
            }
        }
    }

    /// A new RTT sample for `path`.
    pub fn handle_rtt(&mut self, path: PathKind, rtt: Duration) {
        if let Some(p) = self.get_mut(Self::normalize(path)) {
            p.rtt = Some(rtt);
        }
    }

    /// The driver found `path` silent (e.g. QUIC path validation timed out).
    pub fn handle_path_silent(&mut self, path: PathKind, now: Instant) {
        let path = Self::normalize(path);
        let was_direct_active = self.active == Some(path) && matches!(path, PathKind::Direct(_));
        self.fail(path);
        if was_direct_active {
            // Re-punch right away; later failures back off.
            let _ = now;
            self.request_repunch();
        }
    }

    fn fail(&mut self, path: PathKind) {
        let Some(p) = self.get_mut(path) else {
            return;
        };
        if p.state == PathState::Failed {
            return;
        }
        p.state = PathState::Failed;
        self.events.push_back(PathEvent::PathFailed { path });
        if self.active == Some(path) {
            self.active = None;
            let next = self.best_backup();
            self.events.push_back(PathEvent::ActivePathChanged {
                from: Some(path),
                to: None,
            });
            if next.is_some() {
                // Collapse into a single change event.
                self.events.pop_back();
                self.active = Some(path);
                self.set_active(next);
            }
        }
    }

    fn schedule_repunch(&mut self, now: Instant) {
        if self.repunch_at.is_none() {
            self.repunch_at = Some(now + self.repunch_delay);
            self.repunch_delay = (self.repunch_delay * 2).min(self.config.repunch_max);
        }
    }

    fn request_repunch(&mut self) {
        self.events.push_back(PathEvent::PunchRequested {
            attempt: self.punch_attempt,
        });
        self.punch_attempt += 1;
    }

    /// Advances timers: silence detection and re-punch scheduling.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(PathKind::Direct(addr)) = self.active {
            let silent_since = self
                .paths
                .iter()
                .find(|p| p.kind == PathKind::Direct(addr))
                .and_then(|p| p.last_seen);
            if let Some(seen) = silent_since {
                if now >= seen + self.config.silence_timeout {
                    self.handle_path_silent(PathKind::Direct(addr), now);
                }
            }
        }
        if let Some(at) = self.repunch_at {
            if now >= at {
                self.repunch_at = None;
                self.request_repunch();
            }
        }
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<PathEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let silence = match self.active {
            Some(PathKind::Direct(addr)) => self
                .paths
                .iter()
                .find(|p| p.kind == PathKind::Direct(addr))
                .and_then(|p| p.last_seen)
                .map(|s| s + self.config.silence_timeout),
            _ => None,
        };
        match (silence, self.repunch_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The path traffic should use now.
    pub fn active(&self) -> Option<PathKind> {
        self.active
    }

    /// All known paths.
    pub fn paths(&self) -> &[PathInfo] {
        &self.paths
    }

    /// State of one path.
    pub fn state(&self, path: PathKind) -> Option<PathState> {
        let path = Self::normalize(path);
        self.paths.iter().find(|p| p.kind == path).map(|p| p.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut PathSelector) -> Vec<PathEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn relay_first_then_direct_make_before_break() {
        let t0 = Instant::now();
        let d: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let mut s = PathSelector::new(PathConfig::default());
        s.handle_relay_available(t0);
        s.handle_direct_validating(d, t0);
        assert_eq!(
            drain(&mut s),
            vec![
                PathEvent::PunchRequested { attempt: 0 },
                PathEvent::ActivePathChanged {
                    from: None,
                    to: Some(PathKind::Relay)
                }
            ]
        );
        assert_eq!(s.state(PathKind::Direct(d)), Some(PathState::Validating));
        s.handle_direct_validated(d, Duration::from_millis(30), t0 + Duration::from_millis(50));
        assert_eq!(s.active(), Some(PathKind::Direct(d)));
        assert_eq!(s.state(PathKind::Relay), Some(PathState::Backup));
        assert_eq!(
            drain(&mut s),
            vec![PathEvent::ActivePathChanged {
                from: Some(PathKind::Relay),
                to: Some(PathKind::Direct(d))
            }]
        );
    }

    #[test]
    fn silent_direct_falls_back_to_relay_and_repunches() {
        let t0 = Instant::now();
        let cfg = PathConfig::default();
        let d: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let mut s = PathSelector::new(cfg.clone());
        s.handle_relay_available(t0);
        s.handle_direct_validated(d, Duration::from_millis(30), t0);
        drain(&mut s);
        let t1 = t0 + Duration::from_secs(3);
        s.handle_rx(PathKind::Direct(d), t1);
        assert_eq!(s.poll_timeout(), Some(t1 + cfg.silence_timeout));
        s.handle_timeout(t1 + cfg.silence_timeout - Duration::from_millis(1));
        assert_eq!(s.active(), Some(PathKind::Direct(d)));
        let t2 = t1 + cfg.silence_timeout;
        s.handle_timeout(t2);
        assert_eq!(s.active(), Some(PathKind::Relay));
        assert_eq!(
            drain(&mut s),
            vec![
                PathEvent::PathFailed {
                    path: PathKind::Direct(d)
                },
                PathEvent::ActivePathChanged {
                    from: Some(PathKind::Direct(d)),
                    to: Some(PathKind::Relay)
                },
                PathEvent::PunchRequested { attempt: 1 },
            ]
        );
        // A later failed punch re-punches with backoff.
        s.handle_punch_failed(t2);
        let first = s.poll_timeout().unwrap();
        assert_eq!(first, t2 + cfg.repunch_initial);
        s.handle_timeout(first);
        assert_eq!(
            drain(&mut s),
            vec![PathEvent::PunchRequested { attempt: 2 }]
        );
        s.handle_punch_failed(first);
        assert_eq!(s.poll_timeout(), Some(first + cfg.repunch_initial * 2));
    }

    #[test]
    fn relay_loss_without_direct_leaves_no_path() {
        let t0 = Instant::now();
        let mut s = PathSelector::new(PathConfig::default());
        s.handle_relay_available(t0);
        drain(&mut s);
        s.handle_relay_lost(t0);
        assert_eq!(s.active(), None);
        assert_eq!(
            drain(&mut s),
            vec![
                PathEvent::PathFailed {
                    path: PathKind::Relay
                },
                PathEvent::ActivePathChanged {
                    from: Some(PathKind::Relay),
                    to: None
                }
            ]
        );
        // A relay coming back is used again.
        s.handle_relay_available(t0);
        assert_eq!(s.active(), Some(PathKind::Relay));
    }
}
