//! TUN device: created by `tun-rs`, configured over rtnetlink.

use std::io;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::address::{AddressFlags, AddressHeaderFlags};
use rtnetlink::LinkUnspec;
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::{nl_error, validate_ifname, with_netlink};
use crate::{PlatformError, TunConfig};

pub(crate) const BATCH_HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;
pub(crate) const IDEAL_BATCH_SIZE: usize = tun_rs::IDEAL_BATCH_SIZE;

pub(crate) type GroTable = tun_rs::GROTable;

pub(crate) struct Tun {
    dev: AsyncDevice,
    name: String,
    index: u32,
    mtu: u16,
}

pub(crate) async fn create_tun(cfg: &TunConfig) -> Result<Tun, PlatformError> {
    crate::tun_config::check(cfg, validate_ifname)?;
    let op = "create TUN device";

    // Opening an existing (persistent) TUN by name would attach to it, and
    // dropping ours would then not remove it: refuse instead.
    if let Some(name) = cfg.name.clone() {
        let exists = with_netlink(op, |handle| async move {
            match handle
                .link()
                .get()
                .match_name(name)
                .execute()
                .try_next()
                .await
            {
                Ok(found) => Ok(found.is_some()),
                Err(e) => match nl_error(op, e) {
                    PlatformError::NotFound { .. } => Ok(false),
                    other => Err(other),
                },
            }
        })
        .await?;
        if exists {
            return Err(PlatformError::AlreadyExists { op });
        }
    }

    let mut builder = DeviceBuilder::new()
        .mtu(cfg.mtu)
        .offload(cfg.offload)
        // Brought up over netlink once the addresses are on.
        .inherit_enable_state();
    if let Some(name) = &cfg.name {
        builder = builder.name(name.clone());
    }
    let dev = builder.build_async().map_err(|e| io_error(op, e))?;
    let name = dev.name().map_err(|e| io_error("read TUN name", e))?;
    let index = dev.if_index().map_err(|e| io_error("read TUN index", e))?;

    // From here on, an early return drops `dev`, which removes the device.
    let addresses = cfg.addresses.clone();
    with_netlink("configure TUN device", |handle| async move {
        for (addr, prefix) in addresses {
            let mut req = handle.address().add(index, addr, prefix);
            if addr.is_ipv6() {
                // No duplicate address detection: usable at once.
                let msg = req.message_mut();
                msg.header.flags |= AddressHeaderFlags::Nodad;
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute()
                .await
                .map_err(|e| nl_error("add TUN address", e))?;
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| nl_error("bring TUN up", e))
    })
    .await?;

    Ok(Tun {
        dev,
        name,
        index,
        mtu: cfg.mtu,
    })
}

fn io_error(op: &'static str, source: io::Error) -> PlatformError {
    if source.kind() == io::ErrorKind::PermissionDenied {
        PlatformError::PermissionDenied { op }
    } else {
        PlatformError::Io { op, source }
    }
}

fn offload_on() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "TUN offload is on: use recv_batch/send_batch",
    )
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
        self.dev.tcp_gso()
    }

    pub(crate) fn udp_offload(&self) -> bool {
        self.dev.udp_gso()
    }

    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offload() {
            return Err(offload_on());
        }
        self.dev.recv(buf).await
    }

    pub(crate) async fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        if self.offload() {
            return Err(offload_on());
        }
        self.dev.send(pkt).await
    }

    pub(crate) fn try_send(&self, pkt: &[u8]) -> io::Result<usize> {
        if self.offload() {
            return Err(offload_on());
        }
        self.dev.try_send(pkt)
    }

    pub(crate) async fn recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        scratch: &mut [u8],
        bufs: &mut [B],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.dev.recv_multiple(scratch, bufs, sizes, offset).await
    }

    pub(crate) async fn send_batch(
        &self,
        gro: &mut GroTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        if self.offload() && offset < BATCH_HEADROOM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "send_batch offset smaller than BATCH_HEADROOM",
            ));
        }
        self.dev.send_multiple(gro, bufs, offset).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_name_rules() {
        let cfg = |name: &str| TunConfig {
            name: Some(name.into()),
            ..TunConfig::default()
        };
        assert!(crate::tun_config::check(&cfg("antq0"), validate_ifname).is_ok());
        assert!(matches!(
            crate::tun_config::check(&cfg("much-too-long-name"), validate_ifname),
            Err(PlatformError::InvalidName { .. })
        ));
    }
}
