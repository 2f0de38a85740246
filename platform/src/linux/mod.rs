//! Linux: rtnetlink for interfaces, addresses, routes and change events;
//! `tun-rs` for the TUN device.

use std::future::Future;
use std::io;

use futures_util::future::{select, Either};
use nix::errno::Errno;
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::Handle;

use crate::PlatformError;

mod dns;
mod gateway;
mod hops;
mod host_net;
mod links;
mod route;
mod tun;
mod watch;

pub(crate) use dns::{register_dns, unregister_dns};
pub(crate) use gateway::default_gateway_v4;
pub(crate) use hops::trace_hops;
pub(crate) use host_net::{apply_host_net, host_net_state_path, set_socket_mark, HostNet};
pub(crate) use links::interfaces;
pub(crate) use route::{add_route, del_route};
pub(crate) use tun::{create_tun, GroTable, Tun, BATCH_HEADROOM, IDEAL_BATCH_SIZE};
pub(crate) use watch::{watch_changes, ChangeWatcher};

/// What [`PlatformError::PermissionDenied`] says is missing.
pub(crate) const PRIVILEGE: &str = "root or CAP_NET_ADMIN";
/// How to get [`PRIVILEGE`].
pub(crate) const PRIVILEGE_ADVICE: &str = "run it with sudo";

/// Linux `IFNAMSIZ`, including the terminating NUL.
const IFNAMSIZ: usize = 16;

/// `CAP_NET_ADMIN` from `linux/capability.h`.
const CAP_NET_ADMIN: u32 = 12;

/// Runs `f` with a fresh rtnetlink connection, driving the connection in the
/// same task (no spawn) until `f` finishes. The socket closes afterwards.
async fn with_netlink<T, F, Fut>(op: &'static str, f: F) -> Result<T, PlatformError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, PlatformError>>,
{
    let (conn, handle, _unsolicited) =
        rtnetlink::new_connection().map_err(|source| PlatformError::Netlink { op, source })?;
    let work = std::pin::pin!(f(handle));
    let conn = std::pin::pin!(conn);
    match select(work, conn).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(PlatformError::Netlink {
            op,
            source: io::Error::new(io::ErrorKind::BrokenPipe, "netlink connection closed early"),
        }),
    }
}

/// Maps an rtnetlink error to the typed [`PlatformError`] variants.
fn nl_error(op: &'static str, err: rtnetlink::Error) -> PlatformError {
    match err {
        rtnetlink::Error::NetlinkError(msg) => errno_error(op, &msg),
        other => PlatformError::Netlink {
            op,
            source: io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        },
    }
}

fn errno_error(op: &'static str, msg: &ErrorMessage) -> PlatformError {
    let errno = msg.raw_code().abs();
    match Errno::from_raw(errno) {
        Errno::EPERM => PlatformError::PermissionDenied { op },
        Errno::EEXIST => PlatformError::AlreadyExists { op },
        Errno::ESRCH | Errno::ENODEV | Errno::ENOENT => PlatformError::NotFound { op },
        _ => PlatformError::Netlink {
            op,
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
fn validate_ifname(name: &str) -> Result<(), PlatformError> {
    let invalid = |reason| {
        Err(PlatformError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() >= IFNAMSIZ {
        return invalid("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return invalid("reserved name");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return invalid("contains '/', ':', NUL or whitespace");
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `CAP_NET_ADMIN` in the effective set, from `/proc/self/status`; falls
/// back to the euid check when that cannot be read.
pub(crate) fn has_net_admin() -> bool {
    match std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff(&s))
    {
        Some(caps) => caps & (1u64 << CAP_NET_ADMIN) != 0,
        None => is_root(),
    }
}

/// Parses the `CapEff:` line of `/proc/<pid>/status`.
fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Puts the calling thread in `SCHED_FIFO` at priority 1.
pub(crate) fn raise_thread_priority() -> bool {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler with pid 0 changes only the calling thread;
    // `param` is a valid, initialized sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// Puts the calling thread back in `SCHED_OTHER`.
pub(crate) fn restore_thread_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as above; SCHED_OTHER requires priority 0.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroI32;

    #[test]
    fn ifname_validation() {
        assert!(validate_ifname("tun0").is_ok());
        assert!(validate_ifname("antq-0123456789").is_ok()); // 15 bytes
        for bad in [
            "",
            "antq-01234567890",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\0",
        ] {
            assert!(
                matches!(validate_ifname(bad), Err(PlatformError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn cap_eff_parsing() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(cap_eff("CapEff:\t0000000000001000\n"), Some(1 << 12));
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn errno_mapping() {
        let msg = |code: i32| {
            let mut m = ErrorMessage::default();
            m.code = NonZeroI32::new(code);
            m
        };
        assert!(matches!(
            errno_error("x", &msg(-1)),
            PlatformError::PermissionDenied { op: "x" }
        ));
        assert!(matches!(
            errno_error("x", &msg(-17)),
            PlatformError::AlreadyExists { .. }
        ));
        assert!(matches!(
            errno_error("x", &msg(-3)),
            PlatformError::NotFound { .. }
        ));
        match errno_error("x", &msg(-22)) {
            PlatformError::Netlink { source, .. } => assert_eq!(source.raw_os_error(), Some(22)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
