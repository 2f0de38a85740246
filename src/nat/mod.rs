//! Sans-IO NAT traversal state machines.
//!
//! Everything here is deterministic and free of I/O: time comes in as
//! `now: Instant` arguments, outputs are pulled with `poll_*` methods, and the
//! driver (see the `node` module) owns sockets, timers and encoding.
//!
//! - [`addr`]: the canonical form of addresses and the private-address
//!   predicate, shared by every layer above.
//! - [`candidate`]: candidates, priorities (RFC 8445), host addresses from
//!   the platform's interface list, the filtered [`CandidateSet`] and
//!   candidate-pair check lists.
//! - [`prediction`]: NAT mapping inference from bootstrap observations
//!   (RFC 4787) and port prediction for symmetric NATs.
//! - [`punch`]: one coordinated hole-punch attempt ([`PunchSession`]).
//! - [`birthday`]: birthday probing between an endpoint-independent NAT
//!   and a symmetric one ([`BirthdaySession`]).
//! - [`priming`]: the TTL of its priming probes, from the routers on our
//!   way out ([`prime_ttl_for`]).
//! - [`portmap`]: when to ask the gateway for a port mapping (PCP,
//!   NAT-PMP, UPnP IGD), renew and remove it ([`PortMapSchedule`]).
//! - [`liveness`]: dead-path detection from a connection's counters
//!   ([`Liveness`]).
//!
//! A typical flow: gather host candidates and bootstrap observations into a
//! [`CandidateSet`] (adding [`predict_ports`] results when
//! [`infer_mapping`] reports a dependent mapping), exchange candidates via a
//! bootstrap, which answers with PUNCH_ME_NOW carrying a common start time;
//! both peers run a [`PunchSession`]; a validated direct path becomes a QUIC
//! connection next to the relayed one.  Which of the two carries traffic
//! (direct while it is [`Liveness`]-healthy, else the relay) is decided by the
//! overlay in `node`, which owns both connections.

pub mod addr;
pub mod birthday;
pub mod candidate;
pub mod liveness;
pub mod portmap;
pub mod prediction;
pub mod priming;
pub mod punch;

#[cfg(test)]
mod dual_stack_tests;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod sim_tests;

pub use addr::{canonical, canonical_ip, is_private_ip};
pub use birthday::{
    birthday_fits, birthday_target, BirthdayConfig, BirthdayConfigError, BirthdayEvent,
    BirthdayParams, BirthdaySession, BirthdaySide, BirthdayStats, BirthdayTransmit,
};
pub use candidate::{
    check_list, host_addresses, interface_addresses, pair_priority, Candidate, CandidateKind,
    CandidatePair, CandidateSet, CandidateSetConfig, HostAddr, InterfaceInfo, Role,
};
pub use liveness::{Liveness, LivenessConfig, PathCounters, PathHealth};
pub use portmap::{
    HeldMapping, PortMapAction, PortMapConfig, PortMapGrant, PortMapProtocol, PortMapSchedule,
};
pub use prediction::{
    infer_mapping, predict_ports, MappingBehaviour, Observation, PortAllocation, PredictedPort,
    PredictionConfig,
};
pub use priming::{
    prime_ttl_for, prime_ttl_from_trace, DEFAULT_PRIME_TTL, MAX_PRIME_TTL, TRACE_HOPS,
};
pub use punch::{
    ProbeKind, ProbeOut, PunchConfig, PunchConfigError, PunchEvent, PunchFailure, PunchParams,
    PunchSession, PunchStats, Transmit,
};
