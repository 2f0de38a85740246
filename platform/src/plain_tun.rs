//! A TUN device without offload over `tun-rs` (macOS utun, Windows
//! Wintun): one packet per system call, and the batch calls of the
//! OS-neutral API take one packet at a time. Each OS's `tun` module creates
//! the device and hands it over with [`Tun::new`].

use std::io;

use tun_rs::AsyncDevice;

/// No offload: no headroom needed.
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

impl Tun {
    /// Wraps a device that is fully set up (addresses, routes).
    pub(crate) fn new(dev: AsyncDevice, name: String, index: u32, mtu: u16) -> Self {
        Tun {
            dev,
            name,
            index,
            mtu,
        }
    }

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
