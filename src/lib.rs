//! antq: a peer-to-peer QUIC overlay network.
//!
//! QUIC endpoints (quinn) authenticated by Ed25519 raw public keys
//! (RFC 7250), NAT traversal (candidates, bootstrap-coordinated hole punching,
//! relay fallback, migration) and a VPN-style tunnel built on top.
//!
//! Module map:
//! - [`identity`]: Ed25519 keys, [`identity::PeerId`], key files.
//! - [`tls`]: rustls raw-public-key configs and verifiers.
//! - [`proto`]: control messages and their codecs.
//! - [`nat`]: sans-IO NAT traversal state machines.
//! - [`socket`]: the UDP socket shared by QUIC, punch probes and relay paths,
//!   and the TCP stream paths for networks that drop UDP.
//! - [`node`]: the high-level peer-to-peer API.
//! - [`bootstrap`]: the bootstrap / coordinator / relay node.
//! - [`tunnel`]: TUN pump and AllowedIPs routing.
//! - [`ratelimit`]: token buckets used by the socket layer and bootstrap.
//! - [`metrics`]: Prometheus text exposition and its loopback HTTP server.
#![warn(missing_docs)]

pub mod bootstrap;
pub mod identity;
pub mod metrics;
pub mod nat;
pub mod node;
pub mod proto;
pub mod ratelimit;
pub mod socket;
pub mod tls;
pub mod tunnel;
