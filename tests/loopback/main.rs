//! Real-socket tests on loopback, no root needed: nodes, overlays and
//! bootstraps in-process (and one `antq-tun bootstrap`), the relay data
//! plane, the TCP transport and its limits, metrics, and hostile input. One
//! test binary; [`harness`] has its shared setup.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod bootstrap_abuse;
mod data_plane;
mod membership;
mod metrics;
mod node;
mod observe;
mod overlay;
mod relay_socket;
mod security;
mod tcp_limits;
mod tcp_relay;
