//! TUN device: a Wintun adapter created by `tun-rs`, addresses added with
//! `CreateUnicastIpAddressEntry` (which also installs their on-link
//! routes). Wintun needs `wintun.dll`; it is loaded from the directory of
//! the executable only, never from the current directory or `PATH`.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use tun_rs::{AsyncDevice, DeviceBuilder};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    CreateUnicastIpAddressEntry, InitializeUnicastIpAddressEntry, MIB_UNICASTIPADDRESS_ROW,
};
use windows_sys::Win32::Networking::WinSock::IpDadStatePreferred;

use super::route::index_of_alias;
use super::sys::{check, sockaddr_inet};
use crate::{PlatformError, TunConfig};

/// No offload on Windows: no headroom needed.
pub(crate) const BATCH_HEADROOM: usize = 0;
/// One packet per call.
pub(crate) const IDEAL_BATCH_SIZE: usize = 1;

/// No offload, so nothing to coalesce: the table is empty.
#[derive(Default)]
pub(crate) struct GroTable;

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

pub(crate) struct Tun {
    dev: AsyncDevice,
    name: String,
    index: u32,
    mtu: u16,
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
    Ok(Tun {
        dev,
        name,
        index,
        mtu: cfg.mtu,
    })
}

impl Tun {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn mtu(&self) -> u16 {
        self.mtu
    }

    pub(crate) fn offload(&self) -> bool {
        false
    }

    pub(crate) fn udp_offload(&self) -> bool {
        false
    }

    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf).await
    }

    pub(crate) async fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        self.dev.send(pkt).await
    }

    pub(crate) fn try_send(&self, pkt: &[u8]) -> io::Result<usize> {
        self.dev.try_send(pkt)
    }

    /// Without offload: reads one packet into `bufs[0][offset..]`.
    pub(crate) async fn recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        _scratch: &mut [u8],
        bufs: &mut [B],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        let (Some(buf), Some(size)) = (bufs.first_mut(), sizes.first_mut()) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no buffer"));
        };
        let buf = buf.as_mut().get_mut(offset..).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "offset beyond the buffer")
        })?;
        *size = self.dev.recv(buf).await?;
        Ok(1)
    }

    /// Without offload: writes the packets one by one.
    pub(crate) async fn send_batch(
        &self,
        _gro: &mut GroTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        let mut total = 0;
        for buf in bufs.iter() {
            let pkt = buf.get(offset..).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "offset beyond the buffer")
            })?;
            total += self.dev.send(pkt).await?;
        }
        Ok(total)
    }
}
