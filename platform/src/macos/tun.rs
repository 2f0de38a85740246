//! TUN device: a utun interface created by `tun-rs`, which also sets the
//! MTU and addresses (ioctls; IPv6 without DAD). The on-link route of each
//! address's prefix is added here: utun is point-to-point, and the kernel
//! adds no subnet route for it.

use std::net::IpAddr;

use tun_rs::DeviceBuilder;

use super::logic::validate_utun_name;
use super::route::add_route;
use super::{if_index, os_error};
use crate::plain_tun::Tun;
use crate::{InterfaceRef, PlatformError, TunConfig};

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
    Ok(Tun::new(dev, name, index, cfg.mtu))
}
