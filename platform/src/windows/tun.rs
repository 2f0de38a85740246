//! TUN device: a Wintun adapter created by `tun-rs`, addresses added with
//! `CreateUnicastIpAddressEntry` (which also installs their on-link
//! routes). Wintun needs `wintun.dll`; it is loaded from the directory of
//! the executable only, never from the current directory or `PATH`.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use tun_rs::DeviceBuilder;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    CreateUnicastIpAddressEntry, InitializeUnicastIpAddressEntry, MIB_UNICASTIPADDRESS_ROW,
};
use windows_sys::Win32::Networking::WinSock::IpDadStatePreferred;

use super::route::index_of_alias;
use super::sys::{check, sockaddr_inet};
use crate::plain_tun::Tun;
use crate::{PlatformError, TunConfig};

/// Wintun's limit on adapter names (`MAX_ADAPTER_NAME`, 128 UTF-16 units
/// including the terminating NUL).
const MAX_NAME_UNITS: usize = 127;

const WINTUN_DLL: &str = "wintun.dll";

fn validate_name(name: &str) -> Result<(), PlatformError> {
    let invalid = |reason| {
        Err(PlatformError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return invalid("empty");
    }
    if name.encode_utf16().count() > MAX_NAME_UNITS {
        return invalid("longer than 127 UTF-16 units");
    }
    if name.contains('\0') {
        return invalid("contains NUL");
    }
    Ok(())
}

/// `wintun.dll` next to the running executable.
fn wintun_path() -> Result<PathBuf, PlatformError> {
    let exe = std::env::current_exe().map_err(|source| PlatformError::Io {
        op: "locate the executable",
        source,
    })?;
    let dll = exe.with_file_name(WINTUN_DLL);
    if dll.is_file() {
        Ok(dll)
    } else {
        Err(PlatformError::DriverNotFound {
            driver: WINTUN_DLL,
            hint: format!(
                "download Wintun from https://www.wintun.net and put the wintun.dll of this \
                 machine's architecture at {}",
                dll.display()
            ),
        })
    }
}

fn io_error(op: &'static str, source: io::Error) -> PlatformError {
    if source.kind() == io::ErrorKind::PermissionDenied {
        PlatformError::PermissionDenied { op }
    } else {
        PlatformError::Io { op, source }
    }
}

/// Adds `addr/prefix_len` to adapter `index`, in the preferred DAD state so
/// that it can be bound at once.
fn add_address(index: u32, addr: IpAddr, prefix_len: u8) -> Result<(), PlatformError> {
    let mut row = MIB_UNICASTIPADDRESS_ROW::default();
    // SAFETY: `row` is a valid, writable row.
    unsafe { InitializeUnicastIpAddressEntry(&mut row) };
    row.InterfaceIndex = index;
    row.Address = sockaddr_inet(addr);
    row.OnLinkPrefixLength = prefix_len;
    row.DadState = IpDadStatePreferred;
    // SAFETY: `row` is fully initialized.
    check("add TUN address", unsafe {
        CreateUnicastIpAddressEntry(&row)
    })
}

pub(crate) async fn create_tun(cfg: &TunConfig) -> Result<Tun, PlatformError> {
    crate::tun_config::check(cfg, validate_name)?;
    let op = "create TUN device";
    let dll = wintun_path()?;
    // tun-rs would open an existing adapter of that name, and dropping
    // ours would then remove someone else's: refuse instead.
    if let Some(name) = &cfg.name {
        if index_of_alias(name).is_ok() {
            return Err(PlatformError::AlreadyExists { op });
        }
    }
    let mut builder = DeviceBuilder::new()
        .wintun_file(dll.to_string_lossy().into_owned())
        .mtu_v4(cfg.mtu);
    // The IPv6 interface may be missing where IPv6 is disabled: only
    // touch its MTU when we put IPv6 addresses on the adapter.
    if cfg.addresses.iter().any(|(a, _)| a.is_ipv6()) {
        builder = builder.mtu_v6(cfg.mtu);
    }
    if let Some(name) = &cfg.name {
        builder = builder.name(name.clone());
    }
    let dev = builder.build_async().map_err(|e| io_error(op, e))?;
    // From here on, an early return drops `dev`, which removes the adapter.
    let name = dev.name().map_err(|e| io_error("read TUN name", e))?;
    let index = dev.if_index().map_err(|e| io_error("read TUN index", e))?;
    for &(addr, prefix) in &cfg.addresses {
        add_address(index, addr, prefix)?;
    }
    Ok(Tun::new(dev, name, index, cfg.mtu))
}

// Run on Windows and under Wine (scripts/xcheck.sh); need no privilege.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_names() {
        assert!(validate_name("antq0").is_ok());
        assert!(validate_name("VPN von Zoë").is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_UNITS)).is_ok());
        for bad in ["", "  ", "a\0b", &"x".repeat(MAX_NAME_UNITS + 1)] {
            assert!(
                matches!(validate_name(bad), Err(PlatformError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        // UTF-16 units, not bytes or chars: 64 characters outside the
        // BMP are 128 units.
        assert!(validate_name(&"😀".repeat(64)).is_err());
        assert!(validate_name(&"é".repeat(MAX_NAME_UNITS)).is_ok());
    }

    /// wintun.dll is looked for next to the executable, nowhere else; when
    /// it is missing the error says where to put it.
    #[test]
    fn wintun_dll_next_to_the_executable() {
        let want = std::env::current_exe()
            .unwrap()
            .with_file_name("wintun.dll");
        match wintun_path() {
            Ok(path) => assert_eq!(path, want),
            Err(PlatformError::DriverNotFound { driver, hint }) => {
                assert_eq!(driver, "wintun.dll");
                assert!(hint.ends_with(&want.display().to_string()), "{hint}");
                assert!(hint.contains("https://www.wintun.net"), "{hint}");
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}
