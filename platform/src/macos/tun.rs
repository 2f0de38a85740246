//! TUN device: a utun interface created by `tun-rs`, which also sets the
//! MTU and addresses (ioctls; IPv6 without DAD). The on-link route of each
//! address's prefix is added here: utun is point-to-point, and the kernel
//! adds no subnet route for it.

use std::io;
use std::net::IpAddr;

use tun_rs::{AsyncDevice, DeviceBuilder};

use super::logic::validate_utun_name;
use super::route::add_route;
use super::{if_index, os_error};
use crate::{InterfaceRef, PlatformError, TunConfig};

/// No offload on macOS: no headroom needed.
pub(crate) const BATCH_HEADROOM: usize = 0;
/// One packet per system call.
pub(crate) const IDEAL_BATCH_SIZE: usize = 1;

/// No offload, so nothing to coalesce: the table is empty.
#[derive(Default)]
pub(crate) struct GroTable;

pub(crate) struct Tun {
    dev: AsyncDevice,
    name: String,
    index: u32,
    mtu: u16,
}

pub(crate) async fn create_tun(cfg: &TunConfig) -> Result<Tun, PlatformError> {
    crate::tun_config::check(cfg, validate_utun_name)?;
    let op = "create TUN device";
    if let Some(name) = &cfg.name {
        if if_index(name) != 0 {
            return Err(PlatformError::AlreadyExists { op });
        }
    }

    // tun-rs sets one IPv4 address in the builder (more afterwards) and
    // any number of IPv6 ones; routes are ours (`associate_route(false)`).
    let mut v4 = cfg.addresses.iter().filter_map(|&(a, p)| match a {
        IpAddr::V4(a) => Some((a, p)),
        IpAddr::V6(_) => None,
    });
    let mut builder = DeviceBuilder::new().mtu(cfg.mtu).associate_route(false);
    if let Some(name) = &cfg.name {
        builder = builder.name(name.clone());
    }
    if let Some((addr, prefix)) = v4.next() {
        builder = builder.ipv4(addr, prefix, None);
    }
    for &(addr, prefix) in &cfg.addresses {
        if let IpAddr::V6(addr) = addr {
            builder = builder.ipv6(addr, prefix);
        }
    }
    let dev = builder.build_async().map_err(|e| os_error(op, e))?;
    // From here on, an early return drops `dev`, which removes the device.
    for (addr, prefix) in v4 {
        dev.add_address_v4(addr, prefix)
            .map_err(|e| os_error("add TUN address", e))?;
    }
    let name = dev.name().map_err(|e| os_error("read TUN name", e))?;
    let index = dev.if_index().map_err(|e| os_error("read TUN index", e))?;
    for &(addr, prefix) in &cfg.addresses {
        match add_route(&InterfaceRef::Index(index), addr, prefix).await {
            Ok(()) | Err(PlatformError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
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
