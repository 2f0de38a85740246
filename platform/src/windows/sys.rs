//! Small helpers over windows-sys: error codes, socket addresses, UTF-16.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_ELEVATION_REQUIRED, ERROR_FILE_NOT_FOUND, ERROR_NOT_FOUND,
    ERROR_NO_SUCH_INTERFACE, ERROR_OBJECT_ALREADY_EXISTS, ERROR_SUCCESS,
};
use windows_sys::Win32::Networking::WinSock::{
    AF_INET, AF_INET6, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6, SOCKADDR_INET,
};

use crate::PlatformError;

/// Maps a Win32 error code to the typed [`PlatformError`] variants.
pub(super) fn win_error(op: &'static str, code: u32) -> PlatformError {
    match code {
        ERROR_ACCESS_DENIED | ERROR_ELEVATION_REQUIRED => PlatformError::PermissionDenied { op },
        ERROR_OBJECT_ALREADY_EXISTS => PlatformError::AlreadyExists { op },
        ERROR_NOT_FOUND | ERROR_FILE_NOT_FOUND | ERROR_NO_SUCH_INTERFACE => {
            PlatformError::NotFound { op }
        }
        _ => PlatformError::Netlink {
            op,
            source: io::Error::from_raw_os_error(code as i32),
        },
    }
}

/// `Ok` for `ERROR_SUCCESS`, else the mapped error.
pub(super) fn check(op: &'static str, code: u32) -> Result<(), PlatformError> {
    if code == ERROR_SUCCESS {
        Ok(())
    } else {
        Err(win_error(op, code))
    }
}

/// `ip` as a `SOCKADDR_INET` (port, flow info and scope zero).
pub(super) fn sockaddr_inet(ip: IpAddr) -> SOCKADDR_INET {
    let mut sa = SOCKADDR_INET::default();
    match ip {
        IpAddr::V4(v4) => {
            sa.Ipv4.sin_family = AF_INET;
            sa.Ipv4.sin_addr.S_un.S_addr = u32::from_ne_bytes(v4.octets());
        }
        IpAddr::V6(v6) => {
            sa.Ipv6.sin6_family = AF_INET6;
            sa.Ipv6.sin6_addr.u.Byte = v6.octets();
        }
    }
    sa
}

/// The address in a `SOCKADDR_INET`, if it is IPv4 or IPv6.
pub(super) fn ip_of_inet(sa: &SOCKADDR_INET) -> Option<IpAddr> {
    // SAFETY: every member of the union starts with the family, and the
    // member read below is the one the family names.
    unsafe {
        match sa.si_family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
                sa.Ipv4.sin_addr.S_un.S_addr.to_ne_bytes(),
            ))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(sa.Ipv6.sin6_addr.u.Byte))),
            _ => None,
        }
    }
}

/// The address behind a `SOCKADDR` pointer, if it is IPv4 or IPv6.
///
/// # Safety
///
/// `sa` must be null or point to a socket address whose family field tells
/// its real type (as in `SOCKET_ADDRESS::lpSockaddr`).
pub(super) unsafe fn ip_of_sockaddr(sa: *const SOCKADDR) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the contract; the cast matches the family.
    unsafe {
        match (*sa).sa_family {
            AF_INET => {
                let sin = &*(sa as *const SOCKADDR_IN);
                Some(IpAddr::V4(Ipv4Addr::from(
                    sin.sin_addr.S_un.S_addr.to_ne_bytes(),
                )))
            }
            AF_INET6 => {
                let sin6 = &*(sa as *const SOCKADDR_IN6);
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.u.Byte)))
            }
            _ => None,
        }
    }
}

/// `s` as a NUL-terminated UTF-16 string.
pub(super) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A NUL-terminated UTF-16 string as a `String` (lossy).
///
/// # Safety
///
/// `p` must be null or point to a NUL-terminated UTF-16 string.
pub(super) unsafe fn from_wide(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the string is NUL-terminated, so every read up to the NUL is
    // within it.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
        String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for ip in ["10.1.2.3", "fd00::1:2", "0.0.0.0", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of_inet(&sockaddr_inet(ip)), Some(ip));
            let sa = sockaddr_inet(ip);
            // SAFETY: `sa` is a valid SOCKADDR_INET of the family it names.
            let back = unsafe { ip_of_sockaddr(&sa as *const SOCKADDR_INET as *const SOCKADDR) };
            assert_eq!(back, Some(ip));
        }
        // Network byte order in memory.
        let sa = sockaddr_inet("10.1.2.3".parse().unwrap());
        // SAFETY: an IPv4 address was written.
        assert_eq!(
            unsafe { sa.Ipv4.sin_addr.S_un.S_addr }.to_ne_bytes(),
            [10, 1, 2, 3]
        );
    }

    #[test]
    fn wide_strings() {
        let w = wide("Ethernet 2");
        assert_eq!(w.last(), Some(&0));
        // SAFETY: `w` is NUL-terminated.
        assert_eq!(unsafe { from_wide(w.as_ptr()) }, "Ethernet 2");
        // SAFETY: null is allowed.
        assert_eq!(unsafe { from_wide(std::ptr::null()) }, "");
    }

    #[test]
    fn error_mapping() {
        assert!(matches!(
            win_error("x", ERROR_ACCESS_DENIED),
            PlatformError::PermissionDenied { .. }
        ));
        assert!(matches!(
            win_error("x", ERROR_OBJECT_ALREADY_EXISTS),
            PlatformError::AlreadyExists { .. }
        ));
        assert!(matches!(
            win_error("x", ERROR_NOT_FOUND),
            PlatformError::NotFound { .. }
        ));
        assert!(matches!(
            win_error("x", ERROR_NO_SUCH_INTERFACE),
            PlatformError::NotFound { .. }
        ));
        assert!(check("x", ERROR_SUCCESS).is_ok());
        match win_error("x", 87) {
            PlatformError::Netlink { source, .. } => assert_eq!(source.raw_os_error(), Some(87)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
