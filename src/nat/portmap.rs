//! Port mapping: when to ask the gateway for a UDP mapping of our port, by
//! which protocol, when to renew it, when to give up for a while, and what
//! to remove at the end ([`PortMapSchedule`]).
//!
//! The protocols are tried one after the other, in RFC order: **PCP**
//! (RFC 6887), then **NAT-PMP** (RFC 6886), then **UPnP IGD**. PCP and
//! NAT-PMP share the gateway's UDP port 5351 (a PCP server answers a
//! NAT-PMP request with "unsupported version" and the other way round), so
//! asking both at once could leave two mappings of one port on one router;
//! UPnP goes last because it needs SSDP multicast and HTTP. One after the
//! other costs time only with a gateway that answers none of the first
//! (about 2 s per protocol, in the background): the mapped address goes out
//! to the peers as a new candidate whenever it arrives, so nothing waits
//! for it.
//!
//! - The first protocol that grants a mapping holds it. The lifetime asked
//!   is [`PortMapConfig::lifetime`] (2 h); a longer grant is treated as
//!   that long, a grant shorter than [`PortMapConfig::min_lifetime`] as a
//!   failure (a gateway must not make us spin).
//! - Renewal (same protocol) at half the lifetime; a failed renewal is
//!   retried after [`PortMapConfig::renew_retry`] (at most half the time
//!   left), and the mapping counts as held until it expires.
//! - When every protocol failed, the round starts again after a backoff
//!   ([`PortMapConfig::retry_initial`], doubling up to
//!   [`PortMapConfig::retry_max`]).
//! - A network change renews a held mapping at once (a failure then starts
//!   a fresh round) and restarts a failed round without backoff.
//! - [`PortMapSchedule::close`] hands out the removal of a held mapping;
//!   nothing is asked after it.
//!
//! One request is out at a time: [`PortMapSchedule::poll_action`] hands
//! out nothing until its result came in ([`PortMapSchedule::on_result`]).
//! Time is passed in; the unit tests run it on a clock they move.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A port mapping protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortMapProtocol {
    /// Port Control Protocol (RFC 6887).
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886).
    #[serde(rename = "nat-pmp")]
    NatPmp,
    /// UPnP Internet Gateway Device (WANIPConnection `AddPortMapping`).
    Upnp,
}

impl PortMapProtocol {
    /// Every protocol, in the order they are tried.
    pub const ALL: [PortMapProtocol; 3] = [Self::Pcp, Self::NatPmp, Self::Upnp];

    /// The protocol's name as shown to users and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pcp => "pcp",
            Self::NatPmp => "nat-pmp",
            Self::Upnp => "upnp",
        }
    }
}

impl std::fmt::Display for PortMapProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pcp => "PCP",
            Self::NatPmp => "NAT-PMP",
            Self::Upnp => "UPnP IGD",
        })
    }
}

/// Timing of [`PortMapSchedule`].
#[derive(Clone, Debug)]
pub struct PortMapConfig {
    /// The lifetime asked for; longer grants count as this long.
    pub lifetime: Duration,
    /// Grants shorter than this count as failures.
    pub min_lifetime: Duration,
    /// A failed renewal is tried again after this (at most half the
    /// mapping's remaining time).
    pub renew_retry: Duration,
    /// Wait after the first round in which every protocol failed.
    pub retry_initial: Duration,
    /// The longest wait between rounds.
    pub retry_max: Duration,
}

impl Default for PortMapConfig {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(2 * 3600),
            min_lifetime: Duration::from_secs(30),
            renew_retry: Duration::from_secs(30),
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(30 * 60),
        }
    }
}

/// What the gateway granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapGrant {
    /// The external address and port (the gateway's WAN side).
    pub external: SocketAddr,
    /// The lifetime granted.
    pub lifetime: Duration,
}

/// A mapping held now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldMapping {
    /// The protocol that granted it.
    pub protocol: PortMapProtocol,
    /// The external address and port.
    pub external: SocketAddr,
    /// When it lapses unless renewed.
    pub expires_at: Instant,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMapAction {
    /// Ask for (or renew) the mapping of our port by `protocol` for
    /// `lifetime`; report with [`PortMapSchedule::on_result`].
    Map {
        /// The protocol to use.
        protocol: PortMapProtocol,
        /// The lifetime to ask for.
        lifetime: Duration,
        /// A renewal of the held mapping (same protocol).
        renewal: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Trying protocol `ALL[next]` when `at` comes.
    Round { next: usize, at: Instant },
    /// A mapping is held.
    Held {
        mapping: HeldMapping,
        renew_at: Instant,
        /// Failed renewals in a row.
        failures: u32,
        /// A renewal asked after a network change: its failure means the
        /// gateway is gone, and a fresh round starts.
        recheck: bool,
    },
    /// Closed: nothing more.
    Closed,
}

/// The port mapping schedule (see the module docs).
#[derive(Debug)]
pub struct PortMapSchedule {
    config: PortMapConfig,
    state: State,
    /// The request out now, if any.
    pending: Option<PortMapAction>,
    /// Rounds in a row in which every protocol failed.
    failed_rounds: u32,
    /// The network changed while a request was out: acted on when its
    /// result comes.
    change_pending: bool,
}

impl PortMapSchedule {
    /// A schedule whose first request (PCP) is due at `now`.
    pub fn new(config: PortMapConfig, now: Instant) -> Self {
        Self {
            config,
            state: State::Round { next: 0, at: now },
            pending: None,
            failed_rounds: 0,
            change_pending: false,
        }
    }

    /// The mapping held at `now`, if any.
    pub fn mapping(&self, now: Instant) -> Option<HeldMapping> {
        match self.state {
            State::Held { mapping, .. } if mapping.expires_at > now => Some(mapping),
            _ => None,
        }
    }

    /// The next request to make, if one is due at `now` and none is out.
    pub fn poll_action(&mut self, now: Instant) -> Option<PortMapAction> {
        if self.pending.is_some() {
            return None;
        }
        let action = match self.state {
            State::Round { next, at } if at <= now => PortMapAction::Map {
                protocol: *PortMapProtocol::ALL.get(next)?,
                lifetime: self.config.lifetime,
                renewal: false,
            },
            State::Held {
                mapping, renew_at, ..
            } if renew_at <= now && mapping.expires_at > now => PortMapAction::Map {
                protocol: mapping.protocol,
                lifetime: self.config.lifetime,
                renewal: true,
            },
            _ => return None,
        };
        self.pending = Some(action);
        Some(action)
    }

    /// When [`Self::handle_timeout`] or [`Self::poll_action`] next has
    /// something to do (`None`: waiting for a result, or closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            _ if self.pending.is_some() => match self.state {
                // A renewal out when the mapping lapses: the lapse is news.
                State::Held { mapping, .. } => Some(mapping.expires_at),
                _ => None,
            },
            State::Round { at, .. } => Some(at),
            State::Held {
                mapping, renew_at, ..
            } => Some(renew_at.min(mapping.expires_at)),
        }
    }

    /// Lets time pass: a held mapping that lapsed is dropped and a new
    /// round starts. Returns whether the held mapping changed.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.state {
            State::Held { mapping, .. } if mapping.expires_at <= now => {
                self.state = State::Round { next: 0, at: now };
                true
            }
            _ => false,
        }
    }

    /// The result of the request [`Self::poll_action`] handed out for
    /// `protocol` (`None`: failed, or no answer). Returns whether the held
    /// mapping changed (gained, lost, or a new external address). A result
    /// nobody asked for is ignored.
    pub fn on_result(
        &mut self,
        now: Instant,
        protocol: PortMapProtocol,
        result: Option<PortMapGrant>,
    ) -> bool {
        let Some(PortMapAction::Map {
            protocol: asked,
            renewal,
            ..
        }) = self.pending
        else {
            return false;
        };
        if asked != protocol {
            return false;
        }
        self.pending = None;
        let key = |m: Option<HeldMapping>| m.map(|m| (m.protocol, m.external));
        let before = key(self.mapping(now));
        let grant = result.filter(|g| g.lifetime >= self.config.min_lifetime);
        match (grant, self.state) {
            (_, State::Closed) => return false,
            (Some(grant), _) => {
                let lifetime = grant.lifetime.min(self.config.lifetime);
                self.failed_rounds = 0;
                self.state = State::Held {
                    mapping: HeldMapping {
                        protocol,
                        external: grant.external,
                        expires_at: now + lifetime,
                    },
                    renew_at: now + lifetime / 2,
                    failures: 0,
                    recheck: false,
                };
            }
            (
                None,
                State::Held {
                    mapping,
                    failures,
                    recheck,
                    ..
                },
            ) if renewal => {
                let left = mapping.expires_at.saturating_duration_since(now);
                if left.is_zero() || recheck {
                    self.state = State::Round { next: 0, at: now };
                } else {
                    let wait = self
                        .config
                        .renew_retry
                        .saturating_mul(1 << failures.min(5))
                        .min(left / 2);
                    self.state = State::Held {
                        mapping,
                        renew_at: now + wait,
                        failures: failures + 1,
                        recheck: false,
                    };
                }
            }
            (None, State::Round { next, .. }) => {
                if next + 1 < PortMapProtocol::ALL.len() {
                    self.state = State::Round {
                        next: next + 1,
                        at: now,
                    };
                } else {
                    let wait = self
                        .config
                        .retry_initial
                        .saturating_mul(1 << self.failed_rounds.min(16))
                        .min(self.config.retry_max);
                    self.failed_rounds = self.failed_rounds.saturating_add(1);
                    self.state = State::Round {
                        next: 0,
                        at: now + wait,
                    };
                }
            }
            // A failed non-renewal while held cannot happen (requests
            // while held are renewals); keep what is held.
            (None, State::Held { .. }) => {}
        }
        if std::mem::take(&mut self.change_pending) {
            self.network_changed(now);
        }
        before != key(self.mapping(now))
    }

    /// The network changed (addresses, routes, maybe the gateway): a held
    /// mapping is renewed at once (its failure starts a fresh round), a
    /// failed round starts again now with its backoff reset.
    pub fn network_changed(&mut self, now: Instant) {
        self.failed_rounds = 0;
        if self.pending.is_some() {
            self.change_pending = true;
            return;
        }
        match &mut self.state {
            State::Held {
                renew_at, recheck, ..
            } => {
                *renew_at = now;
                *recheck = true;
            }
            State::Round { next, at } => {
                *next = 0;
                *at = now;
            }
            State::Closed => {}
        }
    }

    /// Stops: returns the mapping to remove (by its protocol), if one is
    /// held at `now`. Nothing is asked afterwards.
    pub fn close(&mut self, now: Instant) -> Option<HeldMapping> {
        let held = self.mapping(now);
        self.state = State::Closed;
        self.pending = None;
        self.change_pending = false;
        held
    }
}

#[cfg(test)]
mod tests;
