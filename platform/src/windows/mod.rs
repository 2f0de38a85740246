//! Windows: IP Helper for interfaces (`GetAdaptersAddresses`), change
//! events (`Notify*Change*` callbacks) and routes (`CreateIpForwardEntry2`);
//! `tun-rs` with Wintun for the TUN device, its addresses over IP Helper.
//!
//! Written without a Windows machine at hand. CI lints it for Windows and
//! runs its tests (`tests.rs`, `ipc/windows.rs`) and the unprivileged
//! contract tests under Wine (`scripts/xcheck.sh`); the TUN and route tests
//! need an elevated process and `wintun.dll` and are ignored there. The IP
//! Helper parts are also type-checked and unit-tested on Linux (`check.rs`).

mod gateway;
mod links;
mod process;
mod route;
mod sys;
mod tun;
mod watch;

pub(crate) use crate::no_host_net::{
    apply_host_net, host_net_state_path, set_socket_mark, HostNet,
};
pub(crate) use crate::plain_tun::{GroTable, Tun, BATCH_HEADROOM, IDEAL_BATCH_SIZE};
pub(crate) use gateway::default_gateway_v4;
pub(crate) use links::interfaces;
pub(crate) use process::{has_net_admin, is_root, raise_thread_priority, restore_thread_priority};
pub(crate) use route::{add_route, del_route};
pub(crate) use tun::create_tun;
pub(crate) use watch::{watch_changes, ChangeWatcher};

/// Not yet on Windows (NRPT rules would do it): the responder still
/// answers whoever asks it directly.
pub(crate) fn register_dns(
    _iface: &str,
    _servers: &[std::net::IpAddr],
    _domain: &str,
) -> Result<crate::DnsRegistration, crate::PlatformError> {
    Err(crate::PlatformError::Unsupported {
        what: "DNS registration",
    })
}

/// Nothing was registered ([`register_dns`]).
pub(crate) fn unregister_dns(_iface: &str, _domain: &str) -> Result<(), crate::PlatformError> {
    Ok(())
}

/// What [`crate::PlatformError::PermissionDenied`] says is missing.
pub(crate) const PRIVILEGE: &str = "an elevated (Administrator) process";
/// How to get [`PRIVILEGE`].
pub(crate) const PRIVILEGE_ADVICE: &str =
    "run it from a terminal opened with \"Run as administrator\"";

#[cfg(test)]
mod tests;
