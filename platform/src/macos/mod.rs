//! macOS: `getifaddrs` for interfaces, `SCDynamicStore` for change events,
//! `tun-rs` for utun devices, the routing socket (through `route_manager`,
//! which `tun-rs` already depends on) for routes.
//!
//! Written without a Mac at hand. CI lints it, tests included, for macOS
//! on Linux (`scripts/xcheck.sh`; nothing links or runs there); the
//! OS-independent part (`logic.rs`) is unit-tested on Linux too. The TUN
//! and route tests need root.

use std::io;

use crate::PlatformError;

mod dns;
mod links;
mod logic;
mod route;
mod tun;
mod watch;

pub(crate) use crate::no_host_net::{
    apply_host_net, host_net_state_path, set_socket_mark, HostNet,
};
pub(crate) use crate::plain_tun::{GroTable, Tun, BATCH_HEADROOM, IDEAL_BATCH_SIZE};
pub(crate) use dns::{register_dns, unregister_dns};
pub(crate) use links::interfaces;
pub(crate) use route::{add_route, default_gateway_v4, del_route};
pub(crate) use tun::create_tun;
pub(crate) use watch::{watch_changes, ChangeWatcher};

/// What [`PlatformError::PermissionDenied`] says is missing.
pub(crate) const PRIVILEGE: &str = "root";
/// How to get [`PRIVILEGE`].
pub(crate) const PRIVILEGE_ADVICE: &str = "run it with sudo";

/// Maps an OS error to the typed [`PlatformError`] variants.
fn os_error(op: &'static str, source: io::Error) -> PlatformError {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => PlatformError::PermissionDenied { op },
        Some(libc::EEXIST | libc::EBUSY) => PlatformError::AlreadyExists { op },
        Some(libc::ESRCH | libc::ENXIO | libc::ENOENT | libc::ENODEV) => {
            PlatformError::NotFound { op }
        }
        _ => PlatformError::Io { op, source },
    }
}

/// The index of interface `name`, 0 if there is none.
fn if_index(name: &str) -> u32 {
    match std::ffi::CString::new(name) {
        // SAFETY: `c` is a valid NUL-terminated string.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Root is what configuring interfaces and routes takes on macOS.
pub(crate) fn has_net_admin() -> bool {
    is_root()
}

thread_local! {
    /// The scheduling policy and parameters before
    /// [`raise_thread_priority`], for [`restore_thread_priority`].
    static SAVED_SCHED: std::cell::Cell<Option<(libc::c_int, libc::sched_param)>> =
        const { std::cell::Cell::new(None) };
}

/// Puts the calling thread in `SCHED_FIFO` at the lowest real-time priority,
/// remembering its previous policy.
pub(crate) fn raise_thread_priority() -> bool {
    // SAFETY: pthread_self is always valid for the calling thread; the
    // out-pointers point to initialized locals of the right types.
    unsafe {
        let me = libc::pthread_self();
        let mut policy: libc::c_int = 0;
        let mut old: libc::sched_param = std::mem::zeroed();
        if libc::pthread_getschedparam(me, &mut policy, &mut old) != 0 {
            return false;
        }
        let mut param: libc::sched_param = std::mem::zeroed();
        param.sched_priority = libc::sched_get_priority_min(libc::SCHED_FIFO);
        if libc::pthread_setschedparam(me, libc::SCHED_FIFO, &param) != 0 {
            return false;
        }
        SAVED_SCHED.with(|s| s.set(Some((policy, old))));
        true
    }
}

/// Restores the policy saved by [`raise_thread_priority`].
pub(crate) fn restore_thread_priority() {
    if let Some((policy, param)) = SAVED_SCHED.with(|s| s.take()) {
        // SAFETY: as above; `param` came from pthread_getschedparam.
        unsafe {
            libc::pthread_setschedparam(libc::pthread_self(), policy, &param);
        }
    }
}

// Compiled for macOS by CI on Linux (scripts/xcheck.sh), run only on a Mac.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let e = |n| os_error("x", io::Error::from_raw_os_error(n));
        for n in [libc::EPERM, libc::EACCES] {
            assert!(
                matches!(e(n), PlatformError::PermissionDenied { .. }),
                "{n}"
            );
        }
        for n in [libc::EEXIST, libc::EBUSY] {
            assert!(matches!(e(n), PlatformError::AlreadyExists { .. }), "{n}");
        }
        for n in [libc::ESRCH, libc::ENXIO, libc::ENOENT, libc::ENODEV] {
            assert!(matches!(e(n), PlatformError::NotFound { .. }), "{n}");
        }
        match e(libc::EINVAL) {
            PlatformError::Io { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::EINVAL))
            }
            other => panic!("unexpected {other:?}"),
        }
        // A name with a NUL in it names no interface.
        assert_eq!(if_index("utun\0"), 0);
    }
}
