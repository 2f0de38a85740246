//! The receive side of the shared socket: what quinn gets to see.
//!
//! Every datagram read from the socket (or a stream path) is sorted by its
//! first byte: QUIC packets go to quinn; `RELAY_DATA` frames of our relay
//! paths are unwrapped and handed to quinn as coming from the path's
//! virtual address, those of a forwarding entry are forwarded; other raw
//! frames (punch probes) go to [`AntqSocket::take_raw_receiver`]. Batches
//! that mix kinds are split through a pending queue.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use bytes::Bytes;
use quinn::udp::RecvMeta;

use super::{AntqSocket, RawPacket, RelayRoute};
use crate::nat::canonical;
use crate::proto::raw::{self, classify, parse_relay, PacketClass, RelayHeader};

/// Capacity of the queue of unwrapped packets waiting for quinn.
const PENDING_QUEUE: usize = 4096;

/// A packet unwrapped or split out of a batch, waiting to be handed to quinn:
/// source, local destination IP, contents.
pub(super) type PendingPacket = (SocketAddr, Option<IpAddr>, Vec<u8>);

impl AntqSocket {
    /// Sorts one received segment: `Some((source, payload offset))` if quinn
    /// should see it, `None` if it was consumed here.
    pub(super) fn classify(&self, from: SocketAddr, segment: &[u8]) -> Option<(SocketAddr, usize)> {
        let first = *segment.first()?;
        if classify(first) == PacketClass::Quic {
            return Some((from, 0));
        }
        if raw::is_data(first) {
            self.data_frame(from, segment);
            return None;
        }
        if first == raw::RELAY_DATA {
            let Ok((channel, _)) = parse_relay(segment) else {
                self.stats.relay_unknown.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            let route = RelayRoute {
                server: canonical(from),
                channel,
            };
            let virtual_addr = self.relay_virtual_addr(&route);
            return match virtual_addr {
                Some(addr) => {
                    self.stats.relay_in.fetch_add(1, Ordering::Relaxed);
                    let inner = &segment[RelayHeader::LEN..];
                    if inner.first().is_some_and(|b| raw::is_data(*b)) {
                        self.data_frame(addr, inner);
                        return None;
                    }
                    Some((self.to_wire(addr), RelayHeader::LEN))
                }
                None if self.forward(route, segment) => None,
                None => {
                    self.stats.relay_unknown.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, "relay frame for an unknown channel dropped");
                    None
                }
            };
        }
        let packet = RawPacket {
            from: canonical(from),
            data: Bytes::copy_from_slice(segment),
        };
        if self.raw_tx.try_send(packet).is_err() {
            self.stats.raw_dropped.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    /// A datagram read from stream path `addr`: queued for quinn (QUIC, or an
    /// unwrapped relay packet) or forwarded. Returns whether something was
    /// queued for quinn (then call [`Self::wake_recv`]).
    pub(super) fn ingest_stream(&self, addr: SocketAddr, datagram: &[u8]) -> bool {
        self.stats.stream_frames_in.fetch_add(1, Ordering::Relaxed);
        let Some(&first) = datagram.first() else {
            return false;
        };
        // No hole punching over TCP: only QUIC, relay and data frames are
        // taken.
        if classify(first) == PacketClass::Raw && first != raw::RELAY_DATA && !raw::is_data(first) {
            self.stats.stream_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some((from, offset)) = self.classify(self.to_wire(addr), datagram) else {
            // Consumed here: maybe forwarded, or data.
            self.flush_forwards();
            self.flush_data();
            return false;
        };
        self.queue_pending(from, datagram.get(offset..).unwrap_or_default())
    }

    /// Queues a packet for quinn as coming from `from` (wire form); false
    /// when the queue is full (the packet is dropped, as on a full socket
    /// buffer). Call [`Self::wake_recv`] after queueing.
    pub(super) fn queue_pending(&self, from: SocketAddr, packet: &[u8]) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= PENDING_QUEUE {
            return false;
        }
        pending.push_back((from, None, packet.to_vec()));
        true
    }

    /// Wakes quinn's receive task after packets were queued from a stream.
    pub(super) fn wake_recv(&self) {
        let waker = self
            .recv_waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Rewrites the `n` received buffers in place so that quinn sees only
    /// QUIC packets; returns how many entries remain. Batches that mix QUIC
    /// and other datagrams (or relay frames) are split into the pending queue.
    pub(super) fn demux(
        &self,
        n: usize,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> usize {
        let mut kept = 0;
        let mut sorted_here = false;
        for i in 0..n {
            let m = meta[i];
            let data = &bufs[i][..m.len];
            let stride = m.stride.max(1);
            let all_quic = data
                .chunks(stride)
                .all(|s| s.first().is_some_and(|b| classify(*b) == PacketClass::Quic));
            if all_quic {
                if kept != i {
                    let (head, tail) = bufs.split_at_mut(i);
                    head[kept][..m.len].copy_from_slice(&tail[0][..m.len]);
                    meta[kept] = m;
                }
                kept += 1;
                continue;
            }
            sorted_here = true;
            // Locked only for what quinn gets: a batch of data frames
            // (the bulk of a tunnel's traffic) does not take it.
            let mut pending = None;
            for segment in data.chunks(stride) {
                if let Some((from, offset)) = self.classify(m.addr, segment) {
                    let pending = pending.get_or_insert_with(|| {
                        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
                    });
                    if pending.len() < PENDING_QUEUE {
                        pending.push_back((from, m.dst_ip, segment[offset..].to_vec()));
                    }
                }
            }
        }
        // Relay frames forwarded at once leave together (GSO), data frames
        // are handed on together; a batch of QUIC only did neither.
        if sorted_here {
            self.flush_forwards();
            self.flush_data();
        }
        kept
    }

    /// Moves pending packets into the receive buffers.
    pub(super) fn fill_from_pending(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Some((from, dst_ip, data)) = pending.pop_front() else {
                break;
            };
            if data.len() > bufs[n].len() {
                continue;
            }
            bufs[n][..data.len()].copy_from_slice(&data);
            let mut m = meta[n];
            m.addr = from;
            m.len = data.len();
            m.stride = data.len();
            m.ecn = None;
            m.dst_ip = dst_ip;
            meta[n] = m;
            n += 1;
        }
        n
    }
}
