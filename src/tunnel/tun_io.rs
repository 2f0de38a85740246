//! Reading and writing the TUN device, one packet per system call or, with
//! Linux offload on, in batches: a read returns a GSO super-packet (up to
//! 64 KiB of one TCP flow) split into packets, and a write coalesces the
//! packets of one flow back into a super-packet (GRO), so the kernel's
//! stack handles one large packet instead of dozens.

use std::io;
use std::sync::{Mutex, PoisonError};

use antq_platform::{GroTable, Tun, BATCH_HEADROOM, IDEAL_BATCH_SIZE};
use bytes::{Bytes, BytesMut};

/// Capacity of a write buffer: headroom twice (as the coalescing checks)
/// and the largest super-packet.
const GRO_BUF: usize = 2 * BATCH_HEADROOM + 65535;

/// Packet buffers and flow table of batched writes.
struct WriteBatch {
    gro: GroTable,
    bufs: Vec<Vec<u8>>,
}

/// Writes packets to the device without waiting; shared by the tasks that
/// receive from peers.
pub(super) struct TunWriter {
    /// With offload: the batch state (one writer at a time).
    batch: Option<Mutex<WriteBatch>>,
}

impl TunWriter {
    /// A writer for `tun`, batching if its offload is on.
    pub(super) fn new(tun: &Tun) -> Self {
        TunWriter {
            batch: tun.offload().then(|| {
                Mutex::new(WriteBatch {
                    gro: GroTable::new(),
                    bufs: Vec::new(),
                })
            }),
        }
    }

    /// Writes `packets` in order; returns how many were written (the rest
    /// was refused by the device, `Err` carries the first error).
    pub(super) fn write<'a>(
        &self,
        tun: &Tun,
        packets: impl IntoIterator<Item = &'a [u8]>,
    ) -> (usize, io::Result<()>) {
        let Some(batch) = &self.batch else {
            let mut written = 0;
            for packet in packets {
                if let Err(error) = tun.try_send(packet) {
                    return (written, Err(error));
                }
                written += 1;
            }
            return (written, Ok(()));
        };
        let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
        let WriteBatch { gro, bufs } = &mut *batch;
        let mut n = 0;
        for packet in packets {
            if n == bufs.len() {
                // Coalescing appends a flow's packets to its first one's
                // buffer in place, and only where the capacity is there
                // already (else every packet is written alone): room for
                // a whole super-packet. Pages are touched only as used.
                bufs.push(Vec::with_capacity(GRO_BUF));
            }
            let buf = &mut bufs[n];
            buf.clear();
            buf.resize(BATCH_HEADROOM, 0);
            buf.extend_from_slice(packet);
            n += 1;
        }
        if n == 0 {
            return (0, Ok(()));
        }
        // Device writes never wait: a TUN write hands the packet to the
        // kernel's stack. Unconstrained: this runs inside other tasks'
        // polls (the socket's receive path), whose tokio budget may be
        // spent, and a spent budget would make the write look blocked.
        let write = tokio::task::unconstrained(tun.send_batch(gro, &mut bufs[..n], BATCH_HEADROOM));
        match crate::now_or_never(write) {
            Some(Ok(_)) => (n, Ok(())),
            Some(Err(error)) => (0, Err(error)),
            None => (0, Err(io::ErrorKind::WouldBlock.into())),
        }
    }
}

/// Reads packets from the device, a batch per system call with offload.
pub(super) struct TunReader {
    /// The raw read (virtio header and super-packet); offload only.
    scratch: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    /// Where packets are handed out from: one allocation serves many
    /// packets (a batch's worth and more), not one per packet.
    arena: BytesMut,
}

/// Bytes the arena allocates at a time.
const ARENA: usize = 256 << 10;

impl TunReader {
    /// A reader for `tun`, whose packets are at most `mtu` bytes.
    pub(super) fn new(tun: &Tun, mtu: u16) -> Self {
        let (scratch, count) = if tun.offload() {
            (vec![0; BATCH_HEADROOM + 65535], IDEAL_BATCH_SIZE)
        } else {
            (Vec::new(), 1)
        };
        // Room for the largest packet the device may hand over without
        // offload (its MTU) and for every segment of a super-packet.
        let size = usize::from(mtu).max(1500) + BATCH_HEADROOM;
        TunReader {
            scratch,
            bufs: vec![vec![0; size]; count],
            sizes: vec![0; count],
            arena: BytesMut::new(),
        }
    }

    /// Waits for the next packets and returns them, each its own
    /// [`Bytes`] (cut from a shared allocation: no allocation per packet).
    pub(super) async fn read(&mut self, tun: &Tun) -> io::Result<impl Iterator<Item = Bytes> + '_> {
        let count = if tun.offload() {
            tun.recv_batch(&mut self.scratch, &mut self.bufs, &mut self.sizes, 0)
                .await?
        } else {
            self.sizes[0] = tun.recv(&mut self.bufs[0]).await?;
            1
        };
        let total: usize = self.sizes[..count].iter().sum();
        if self.arena.capacity() < total {
            self.arena = BytesMut::with_capacity(ARENA.max(total));
        }
        let arena = &mut self.arena;
        Ok(self
            .bufs
            .iter()
            .zip(&self.sizes)
            .take(count)
            .map(move |(buf, size)| {
                arena.extend_from_slice(&buf[..*size]);
                arena.split().freeze()
            }))
    }
}
