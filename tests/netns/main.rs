//! The root-only end-to-end tests, in network namespaces: antq meshes in the
//! NAT lab (`scripts/lab.sh`, `scripts/mesh.sh`) with real TUN devices,
//! NATs, ping, iperf3 and HTTP through the tunnel, address changes, crashes
//! and attacks on the bootstrap. One test binary; its harness is the
//! private modules [`mesh`] (the lab and its hosts), [`traffic`] (HTTP
//! transfers, ping streams) and [`attack`] (hostile clients, spoofing).
//!
//! Every test is `#[ignore = "needs root"]` and starts with [`root_alone`].
//! `sudo scripts/test.sh` runs them (the release `antq-tun`, one test at a
//! time); one module or test: `sudo scripts/test.sh migration::`.
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;

mod attack;
mod birthday;
mod mesh;
mod traffic;

mod bootstrap_attack;
mod firewall;
mod lifecycle;
mod matrix;
mod membership;
mod migration;
mod mtu;
mod names;
mod observe;
mod ping;
mod portmap;
mod routes;
mod spoof;
mod tcp_relay;
mod tunnel;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The start of every test here: fails unless root (see
/// [`common::require_root`]), then waits until no other test of this
/// process runs. The tests build whole labs and measure timing, so they run
/// one at a time: nextest runs each in a process of its own, serially (the
/// `netns` test group in `.config/nextest.toml`); `cargo test` runs them on
/// threads of one process, where this lock (held until the returned guard
/// is dropped) serialises them.
pub fn root_alone() -> MutexGuard<'static, ()> {
    common::require_root();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    // A test that panicked poisoned it; the next one may still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}
