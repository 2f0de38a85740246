//! The tunables of a [`PunchSession`](super::PunchSession) and their
//! checks.

use std::time::Duration;

/// Invalid [`PunchConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PunchConfigError {
    /// `backoff` must be finite and ≥ 1.
    #[error("backoff factor must be finite and >= 1")]
    InvalidBackoff,
    /// `max_rounds` must be ≥ 1.
    #[error("max_rounds must be at least 1")]
    NoRounds,
    /// `round_interval` must be non-zero.
    #[error("round_interval must be non-zero")]
    ZeroInterval,
    /// `probe_size` must be non-zero.
    #[error("probe_size must be non-zero")]
    ZeroProbeSize,
}

/// Tunables of a [`PunchSession`](super::PunchSession).
#[derive(Debug, Clone, PartialEq)]
pub struct PunchConfig {
    /// Delay between the first and second round.
    pub round_interval: Duration,
    /// Each following interval is the previous one times this factor.
    pub backoff: f64,
    /// Maximum number of probe rounds.
    pub max_rounds: u32,
    /// The attempt fails this long after `start_at`.
    pub max_duration: Duration,
    /// Maximum probes sent in one round (triggered probes excluded, they go
    /// only to addresses we heard from, at most one per target per round).
    pub max_probes_per_round: usize,
    /// Maximum remote targets taken from the peer's candidates.
    pub max_targets: usize,
    /// Maximum peer-reflexive targets learned from incoming probes.
    pub max_peer_reflexive: usize,
    /// Expected size of an encoded probe or ack.
    pub probe_size: usize,
    /// Byte budget toward a destination we never heard from.
    pub max_unverified_bytes_per_dst: usize,
    /// The controlled side starts this much after `start_at`.
    pub controlled_stagger: Duration,
    /// After success, keep acking the peer's probes for this long.
    pub linger: Duration,
    /// TTL of the priming probes, which open our NAT's mappings before any
    /// full probe is sent: enough to pass our own NAT(s), too little to
    /// reach the peer's. `None`: no priming, the first round starts at once.
    pub prime_ttl: Option<u8>,
    /// Full probes start this long after the priming probes.
    pub prime_lead: Duration,
    /// Probe loopback candidates (single-host tests). Off by default.
    pub allow_loopback: bool,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            round_interval: Duration::from_millis(100),
            backoff: 1.5,
            max_rounds: 10,
            max_duration: Duration::from_secs(5),
            max_probes_per_round: 16,
            max_targets: 16,
            max_peer_reflexive: 4,
            probe_size: 64,
            max_unverified_bytes_per_dst: 16 * 64,
            controlled_stagger: Duration::from_millis(5),
            linger: Duration::from_secs(2),
            prime_ttl: Some(2),
            prime_lead: Duration::from_millis(30),
            allow_loopback: false,
        }
    }
}

impl PunchConfig {
    /// Checks the configuration for nonsensical values.
    pub fn validate(&self) -> Result<(), PunchConfigError> {
        if !self.backoff.is_finite() || self.backoff < 1.0 {
            return Err(PunchConfigError::InvalidBackoff);
        }
        if self.max_rounds == 0 {
            return Err(PunchConfigError::NoRounds);
        }
        if self.round_interval.is_zero() {
            return Err(PunchConfigError::ZeroInterval);
        }
        if self.probe_size == 0 {
            return Err(PunchConfigError::ZeroProbeSize);
        }
        Ok(())
    }

    /// Offset from the (staggered) start of round `k` (0-based).
    pub fn round_offset(&self, k: u32) -> Duration {
        let mut total = Duration::ZERO;
        let mut interval = self.round_interval;
        for _ in 0..k {
            total += interval;
            interval = interval.mul_f64(self.backoff);
        }
        total
    }
}
