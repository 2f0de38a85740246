//! antq: a peer-to-peer QUIC overlay network.
//!
//! QUIC endpoints (quinn) authenticated by Ed25519 raw public keys
//! (RFC 7250), NAT traversal (candidates, bootstrap-coordinated hole punching,
//! relay fallback, migration) and a VPN-style tunnel built on top.
//!
//! Module map:
//! - [`identity`]: Ed25519 keys, [`identity::PeerId`], key files.
//! - [`config`]: shared config-file helpers (errors naming file, field and
//!   fix; TOML; private keys; the metrics address).
//! - [`tls`]: rustls raw-public-key configs and verifiers.
//! - [`proto`]: control messages and their codecs.
//! - [`nat`]: sans-IO NAT traversal state machines.
//! - [`socket`]: the UDP socket shared by QUIC, punch probes and relay paths,
//!   and the TCP stream paths for networks that drop UDP.
//! - [`node`]: the high-level peer-to-peer API.
//! - [`bootstrap`]: the bootstrap / coordinator / relay node.
//! - [`tunnel`]: TUN pump and AllowedIPs routing.
//! - [`ratelimit`]: token buckets used by the socket layer and bootstrap.
//! - [`metrics`]: Prometheus text exposition and its loopback HTTP server (a
//!   utility below the others: each module collects its own counters).
//!
//! Layers, each importing only those below it: the `antq-platform` crate;
//! `identity`, `proto`, `ratelimit`, `metrics`; `tls`, `config`; `nat`;
//! `socket`; `node`; `bootstrap` and `tunnel`; the `antq-tun` binary.
#![warn(missing_docs)]

pub mod bootstrap;
pub mod cert;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod nat;
pub mod node;
pub mod proto;
pub mod ratelimit;
pub mod socket;
pub mod tls;
pub mod tunnel;

/// Polls `future` once without a waker; `None` if it is not ready. For work
/// that is either done at once or not wanted now (a datagram that has
/// already arrived, a TUN write).
pub(crate) fn now_or_never<F: std::future::Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
