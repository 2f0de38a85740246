//! Side sockets: the extra UDP sockets of a birthday attempt
//! ([`crate::nat::birthday`]), and the QUIC path through the one that won.
//!
//! [`AntqSocket::open_side_sockets`] binds a [`SideGroup`] of fresh sockets
//! (port 0, so each gets its own NAT mapping). Raw frames (punch probes and
//! acks) go out of any of them ([`SideGroup::try_send_raw`]) and come back
//! on the group's own receiver, tagged with the socket's number; QUIC
//! packets reaching a socket that is not a path are dropped and counted.
//!
//! [`SideGroup::adopt`] keeps one socket as a QUIC path to one remote: the
//! path gets a virtual address in `242.0.0.0/8`; quinn sends to it and the
//! packets leave that socket for the remote, and the remote's packets to
//! that socket reach quinn from the virtual address, as a relay path's do
//! (see the module docs of [`super`]). The group's other sockets close
//! with it. [`AntqSocket::remove_side_path`] closes the path.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use bytes::Bytes;
use quinn::udp::Transmit;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{AntqSocket, RawPacket};
use crate::nat::canonical;
use crate::proto::raw::{classify, PacketClass};

/// First octet of side-path virtual addresses.
pub const SIDE_OCTET: u8 = 242;

/// The most sockets one group may hold.
pub const MAX_SIDE_SOCKETS: u16 = 1024;

/// Queue of raw frames from a group's sockets to its owner.
const SIDE_RAW_QUEUE: usize = 1024;

/// The largest datagram a side socket reads.
const SIDE_READ_MAX: usize = 65_535;

/// Whether `addr` is a side path's virtual address.
pub fn is_side_addr(addr: SocketAddr) -> bool {
    match canonical(addr).ip() {
        IpAddr::V4(v4) => v4.octets()[0] == SIDE_OCTET,
        IpAddr::V6(_) => false,
    }
}

/// A raw frame received on a side socket.
#[derive(Clone, Debug)]
pub struct SideRaw {
    /// The socket's number in its group (1-based).
    pub socket: u16,
    /// Sender and datagram.
    pub packet: RawPacket,
}

/// One side socket: a tokio handle for its reader, a plain one for
/// sends (non-blocking: tokio's would report `WouldBlock` until its
/// reactor saw the socket writable once).
#[derive(Debug)]
struct Side {
    reader: Arc<tokio::net::UdpSocket>,
    sender: std::net::UdpSocket,
}

/// An adopted side socket: a QUIC path.
#[derive(Debug)]
pub(super) struct SidePath {
    socket: std::net::UdpSocket,
    remote: SocketAddr,
    reader: JoinHandle<()>,
}

impl Drop for SidePath {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The side paths of a socket, by virtual address.
pub(super) type SideTable = HashMap<SocketAddr, SidePath>;

/// Sockets opened for one attempt. Dropping the group closes them all but
/// an adopted one.
#[derive(Debug)]
pub struct SideGroup {
    owner: Weak<AntqSocket>,
    sockets: Vec<Side>,
    readers: Vec<JoinHandle<()>>,
    raw_tx: mpsc::Sender<SideRaw>,
    raw_rx: Option<mpsc::Receiver<SideRaw>>,
}

impl Drop for SideGroup {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

impl AntqSocket {
    /// Binds `n` side sockets (at most [`MAX_SIDE_SOCKETS`]) of the family
    /// of `toward`, on port 0 of the unspecified address. Must run inside
    /// a tokio runtime.
    pub fn open_side_sockets(
        self: &Arc<Self>,
        n: u16,
        toward: SocketAddr,
    ) -> io::Result<SideGroup> {
        if n > MAX_SIDE_SOCKETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{n} side sockets asked for, at most {MAX_SIDE_SOCKETS}"),
            ));
        }
        let any: SocketAddr = match canonical(toward) {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let (tx, rx) = mpsc::channel(SIDE_RAW_QUEUE);
        let mut group = SideGroup {
            owner: Arc::downgrade(self),
            sockets: Vec::with_capacity(usize::from(n)),
            readers: Vec::with_capacity(usize::from(n)),
            raw_tx: tx.clone(),
            raw_rx: Some(rx),
        };
        for k in 1..=n {
            let sender = std::net::UdpSocket::bind(any)?;
            sender.set_nonblocking(true)?;
            antq_platform::set_socket_mark(socket2::SockRef::from(&sender), self.mark())
                .map_err(io::Error::other)?;
            let reader = Arc::new(tokio::net::UdpSocket::from_std(sender.try_clone()?)?);
            group.readers.push(tokio::spawn(read_side(
                reader.clone(),
                k,
                None,
                tx.clone(),
                Arc::downgrade(self),
            )));
            group.sockets.push(Side { reader, sender });
        }
        self.stats
            .side_sockets_opened
            .fetch_add(u64::from(n), Ordering::Relaxed);
        Ok(group)
    }

    /// Closes side path `virtual_addr` (its socket with it).
    pub fn remove_side_path(&self, virtual_addr: SocketAddr) {
        self.sides
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&canonical(virtual_addr));
    }

    /// Sends a raw frame on side path `virtual_addr` to its remote (the
    /// attempt that made the path acks the peer's last probes on it).
    pub fn try_send_raw_on_side_path(
        &self,
        virtual_addr: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        let sides = self.sides.lock().unwrap_or_else(PoisonError::into_inner);
        let path = sides
            .get(&canonical(virtual_addr))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such side path"))?;
        path.socket.send_to(data, path.remote)?;
        Ok(())
    }

    /// The remote end of side path `virtual_addr`, if it is one.
    pub fn side_remote(&self, virtual_addr: SocketAddr) -> Option<SocketAddr> {
        self.sides
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&canonical(virtual_addr))
            .map(|p| p.remote)
    }

    /// Sends quinn's transmit to side path `destination` (segment by
    /// segment: a side socket does no segmentation offload). A path that
    /// is gone behaves like a lossy link.
    pub(super) fn send_side(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let sides = self.sides.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(path) = sides.get(&canonical(transmit.destination)) else {
            self.stats.side_unroutable.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for chunk in transmit.contents.chunks(segment) {
            match path.socket.send_to(chunk, path.remote) {
                Ok(_) => {}
                // Like a full socket buffer on the main socket: QUIC
                // recovers the loss.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A QUIC packet read from side path `virtual_addr`: queued for quinn.
    fn ingest_side(&self, virtual_addr: SocketAddr, datagram: &[u8]) {
        if self.queue_pending(self.to_wire(virtual_addr), datagram) {
            self.wake_recv();
        }
    }
}

impl SideGroup {
    /// How many sockets the group has.
    pub fn len(&self) -> u16 {
        u16::try_from(self.sockets.len()).unwrap_or(u16::MAX)
    }

    /// Whether the group has no socket.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The receiver of the raw frames the group's sockets get (once).
    pub fn take_raw_receiver(&mut self) -> Option<mpsc::Receiver<SideRaw>> {
        self.raw_rx.take()
    }

    /// The local address of socket `k` (1-based).
    pub fn local_addr(&self, k: u16) -> io::Result<SocketAddr> {
        self.socket(k)?.sender.local_addr()
    }

    fn socket(&self, k: u16) -> io::Result<&Side> {
        usize::from(k)
            .checked_sub(1)
            .and_then(|i| self.sockets.get(i))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("no side socket {k}"))
            })
    }

    /// Sends a raw frame from socket `k` now (`WouldBlock` drops it), with
    /// IP TTL `ttl` if given.
    pub fn try_send_raw(
        &self,
        k: u16,
        to: SocketAddr,
        data: &[u8],
        ttl: Option<u8>,
    ) -> io::Result<()> {
        let socket = &self.socket(k)?.sender;
        if let Some(ttl) = ttl {
            let r = socket2::SockRef::from(socket);
            let set = match canonical(to) {
                SocketAddr::V4(_) => r.set_ttl(u32::from(ttl)),
                SocketAddr::V6(_) => r.set_unicast_hops_v6(u32::from(ttl)),
            };
            if let Err(error) = set {
                tracing::debug!(%error, "TTL not changed on a side socket");
            }
        }
        socket.send_to(data, to)?;
        Ok(())
    }

    /// Keeps socket `k` as a QUIC path to `remote` and closes the others;
    /// returns the path's virtual address, to dial (or accept) QUIC on.
    pub fn adopt(mut self, k: u16, remote: SocketAddr) -> io::Result<SocketAddr> {
        let owner = self
            .owner
            .upgrade()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the socket is gone"))?;
        self.socket(k)?;
        let Side { reader, sender } = self.sockets.swap_remove(usize::from(k) - 1);
        // The raw reader of that socket stops; a path reader takes over.
        self.readers[usize::from(k) - 1].abort();
        let remote = canonical(remote);
        let n = owner.next_virtual.fetch_add(1, Ordering::Relaxed);
        let [_, b, c, d] = n.to_be_bytes();
        let virtual_addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(SIDE_OCTET, b, c, d)),
            remote.port(),
        );
        let reader = tokio::spawn(read_side(
            reader,
            k,
            Some(PathTo {
                remote,
                virtual_addr,
            }),
            self.raw_tx.clone(),
            Arc::downgrade(&owner),
        ));
        owner
            .sides
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                virtual_addr,
                SidePath {
                    socket: sender,
                    remote,
                    reader,
                },
            );
        self.sockets.clear();
        Ok(virtual_addr)
    }
}

/// Where a side socket's QUIC packets go: nowhere while it is one of a
/// group's, to quinn from the virtual address once adopted as a path.
#[derive(Clone, Copy, Debug)]
struct PathTo {
    remote: SocketAddr,
    virtual_addr: SocketAddr,
}

/// Reads side socket `k`: raw frames to the group's receiver (while its
/// owner holds it: an adopted socket's attempt still acks the peer's last
/// probes); the remote's QUIC packets to quinn once the socket is a path;
/// anything else dropped and counted.
async fn read_side(
    socket: Arc<tokio::net::UdpSocket>,
    k: u16,
    path: Option<PathTo>,
    tx: mpsc::Sender<SideRaw>,
    owner: Weak<AntqSocket>,
) {
    let mut buf = vec![0u8; SIDE_READ_MAX];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Some(owner) = owner.upgrade() else {
            return;
        };
        let data = &buf[..n];
        let from = canonical(from);
        let Some(&first) = data.first() else {
            owner.stats.side_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let delivered = if crate::proto::raw::is_data(first) {
            // Data plane frames of the connection on this path.
            match path {
                Some(p) if p.remote == from => {
                    owner.data_frame(p.virtual_addr, data);
                    owner.flush_data();
                    true
                }
                _ => false,
            }
        } else if classify(first) == PacketClass::Quic {
            match path {
                Some(p) if p.remote == from => {
                    owner.stats.side_in.fetch_add(1, Ordering::Relaxed);
                    owner.ingest_side(p.virtual_addr, data);
                    true
                }
                _ => false,
            }
        } else {
            let raw = SideRaw {
                socket: k,
                packet: RawPacket {
                    from,
                    data: Bytes::copy_from_slice(data),
                },
            };
            tx.try_send(raw).is_ok()
        };
        if !delivered {
            owner.stats.side_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
