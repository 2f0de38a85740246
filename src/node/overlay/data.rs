//! The overlay's data plane driver: datagrams to a peer leave as `DATA`
//! frames beside QUIC when the connection negotiated it
//! ([`crate::node::data`]) and the peer has shown it takes them.
//!
//! - **Sending** ([`SendBatch`]): the frames of one device read are sealed
//!   into one buffer per destination and leave in one GSO send
//!   ([`Overlay::flush`]), from the task that read them.
//! - **Receiving** ([`DataPlane`], the socket's [`DataReceiver`]): frames
//!   are opened on the socket's receiving task; a receive batch's packets
//!   go to the [`super::DatagramSink`] at once when they are few and the
//!   device writer is idle (a ping: no task hop), else through the writer
//!   task (larger device writes).
//! - **Readiness**: each end sends a `HELLO` when its session is
//!   registered, and again every
//!   [`HELLO_INTERVAL`](crate::node::data::HELLO_INTERVAL) while it has
//!   traffic for a peer that has not shown it is ready; a hello is answered
//!   with a `REPLY`. Until the peer has shown it, datagrams go in QUIC.
//! - **Proven addresses**: frames go to the peer's proven address
//!   ([`DataSession::dest`]). Frames from another address, or QUIC moving a
//!   server-side connection to one (before validating it), get a `HELLO`
//!   with a fresh token there; its `REPLY` moves the destination.
//! - **Answers**: a receiver that has sent nothing for
//!   [`ANSWER_AFTER`](crate::node::data::ANSWER_AFTER) answers frames with
//!   a `REPLY`, for the sender's dead-path detection.
//!
//! Bounds: one registered session per installed connection (removed when
//! its reader ends); a receive batch's packets (what one socket read
//! holds) wait for [`DataPlane::flush`], at most [`SINK_BATCH`] per peer,
//! then the device writer's queue ([`WRITER_QUEUE`] batches, beyond:
//! dropped and counted); a hello is answered by one reply of the same size;
//! an unproven address gets one hello per
//! [`HELLO_INTERVAL`](crate::node::data::HELLO_INTERVAL).
//!
//! Lock order: `sessions` is released before `recv` is taken; `recv`
//! before one of a session's locks (opener, sealer, path), one at a time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::peer::PeerSlot;
use super::{Delivery, SINK_BATCH};
use crate::identity::PeerId;
use crate::nat::canonical;
use crate::node::data::{DataError, DataSession};
use crate::node::PeerConnection;
use crate::proto::data::{DataHeader, DataKind, Signal, TAG_LEN};
use crate::socket::{AntqSocket, DataReceiver};
use quinn::AsyncUdpSocket as _;

/// Bytes the receive arena allocates at a time.
const ARENA: usize = 256 << 10;

/// The largest GSO send of data frames (UDP payload bytes).
const GSO_MAX_BYTES: usize = 64_000;

/// Counters of the data plane.
#[derive(Debug, Default)]
pub(super) struct DataStats {
    pub(super) frames_in: AtomicU64,
    pub(super) frames_out: AtomicU64,
    pub(super) hellos_sent: AtomicU64,
    pub(super) replies_sent: AtomicU64,
    /// Frames for no registered session.
    pub(super) unknown_receiver: AtomicU64,
    /// Frames that did not open (forged, damaged, replayed, too old).
    pub(super) refused: AtomicU64,
    /// Frames too short, or payloads of no known kind.
    pub(super) malformed: AtomicU64,
    /// Opened packets the delivery queue had no room for.
    pub(super) delivery_dropped: AtomicU64,
    /// Frames the socket refused (its buffer full).
    pub(super) send_failed: AtomicU64,
    /// Sessions not registered: their index was taken.
    pub(super) index_collisions: AtomicU64,
}

impl DataStats {
    /// `(event, count)` for the metrics.
    pub(super) fn events(&self) -> [(&'static str, u64); 10] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("frames_in", l(&self.frames_in)),
            ("frames_out", l(&self.frames_out)),
            ("hellos_sent", l(&self.hellos_sent)),
            ("replies_sent", l(&self.replies_sent)),
            ("unknown_receiver", l(&self.unknown_receiver)),
            ("refused", l(&self.refused)),
            ("malformed", l(&self.malformed)),
            ("delivery_dropped", l(&self.delivery_dropped)),
            ("send_failed", l(&self.send_failed)),
            ("index_collisions", l(&self.index_collisions)),
        ]
    }
}

/// A registered session: where its peer's packets go and where frames to
/// it are sent.
#[derive(Clone)]
struct Registered {
    session: Arc<DataSession>,
    slot: Arc<PeerSlot>,
    src_ip: Option<IpAddr>,
}

impl Registered {
    /// `conn`'s session, if it has one, for `slot`'s peer.
    fn of(conn: &PeerConnection, slot: &Arc<PeerSlot>) -> Option<Self> {
        Some(Registered {
            session: conn.data()?.clone(),
            slot: slot.clone(),
            src_ip: conn.local_ip(),
        })
    }
}

/// What the receive path gathers during one socket batch.
#[derive(Default)]
struct RecvScratch {
    arena: BytesMut,
    /// Opened packets by peer, in arrival order.
    pending: Vec<(Arc<PeerSlot>, Vec<Bytes>)>,
    /// Sessions that received datagrams in this batch.
    heard: Vec<Registered>,
    reply: Vec<u8>,
}

/// The overlay's registered sessions and receive path.
pub(super) struct DataPlane {
    socket: Arc<AntqSocket>,
    delivery: Delivery,
    /// With a sink: the device writer task's queue.
    writer: Option<mpsc::Sender<(PeerId, Vec<Bytes>)>>,
    /// Batches queued for the writer or being written by it.
    writer_load: Arc<AtomicUsize>,
    sessions: RwLock<HashMap<u32, Registered>>,
    recv: Mutex<RecvScratch>,
    pub(super) stats: DataStats,
}

impl DataPlane {
    /// The data plane of an overlay; with a sink, starts its writer task
    /// (which ends when the data plane is dropped).
    pub(super) fn new(socket: Arc<AntqSocket>, delivery: Delivery) -> Self {
        let writer_load = Arc::new(AtomicUsize::new(0));
        let writer = match &delivery {
            Delivery::Sink(sink) => {
                let (tx, rx) = mpsc::channel(WRITER_QUEUE);
                tokio::spawn(write_to_sink(sink.clone(), rx, writer_load.clone()));
                Some(tx)
            }
            Delivery::Queue(_) => None,
        };
        DataPlane {
            socket,
            delivery,
            writer,
            writer_load,
            sessions: RwLock::default(),
            recv: Mutex::default(),
            stats: DataStats::default(),
        }
    }

    /// Registers `conn`'s session (if it has one) for `slot`'s peer and
    /// says hello.
    pub(super) fn register(&self, conn: &PeerConnection, slot: &Arc<PeerSlot>) {
        let Some(reg) = Registered::of(conn, slot) else {
            return;
        };
        let index = reg.session.local_index();
        {
            let mut sessions = self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if sessions.contains_key(&index) {
                self.stats.index_collisions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("data plane index taken; this connection keeps QUIC datagrams");
                return;
            }
            sessions.insert(index, reg.clone());
        }
        self.hello_if_due(conn);
    }

    /// Removes `conn`'s session (its connection closed).
    pub(super) fn unregister(&self, conn: &PeerConnection) {
        let Some(session) = conn.data() else {
            return;
        };
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if sessions
            .get(&session.local_index())
            .is_some_and(|r| Arc::ptr_eq(&r.session, session))
        {
            sessions.remove(&session.local_index());
        }
    }

    /// Sessions registered now.
    pub(super) fn sessions(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Sends a hello or a reply on `session` to `to`.
    fn send_signal(
        &self,
        session: &DataSession,
        src_ip: Option<IpAddr>,
        signal: Signal,
        to: SocketAddr,
        buf: &mut Vec<u8>,
    ) {
        buf.clear();
        if session.seal_signal(signal, buf).is_err() {
            return;
        }
        let counter = match signal {
            Signal::Hello { .. } => &self.stats.hellos_sent,
            Signal::Reply { .. } => &self.stats.replies_sent,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.socket.send_data(to, src_ip, buf, None) {
            self.stats.send_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, "data plane signal not sent");
        }
    }

    /// Sends a hello on `conn`'s session if one is due (the peer has not
    /// shown it is ready, and the last hello is old).
    pub(super) fn hello_if_due(&self, conn: &PeerConnection) {
        let Some(session) = conn.data().filter(|s| s.hello_due(Instant::now())) else {
            return;
        };
        let hello = Signal::Hello {
            token: rand::random(),
        };
        self.send_signal(
            session,
            conn.local_ip(),
            hello,
            session.dest(),
            &mut Vec::new(),
        );
    }

    /// The peer seems to be at `addr` now: says hello there (at most every
    /// [`HELLO_INTERVAL`](crate::node::data::HELLO_INTERVAL)), and frames
    /// go there once the peer answers it.
    fn probe(
        &self,
        session: &DataSession,
        src_ip: Option<IpAddr>,
        addr: SocketAddr,
        buf: &mut Vec<u8>,
    ) {
        if let Some(token) = session.probe(addr, Instant::now(), rand::random()) {
            tracing::debug!(%addr, "data plane: proving a new address of the peer");
            self.send_signal(session, src_ip, Signal::Hello { token }, addr, buf);
        }
    }

    /// Where frames on `conn` go now, if its session may carry them (the
    /// peer is ready): the peer's proven address. A server-side connection
    /// that QUIC moved to another address (QUIC does so before validating
    /// it) keeps that address until a hello there is answered; QUIC's own
    /// packets go to the new one meanwhile.
    pub(super) fn route<'c>(
        &self,
        conn: &'c PeerConnection,
    ) -> Option<(&'c Arc<DataSession>, SocketAddr)> {
        let session = conn.data().filter(|s| s.peer_ready())?;
        let dest = session.dest();
        if conn.quinn().side() == quinn::Side::Server {
            let remote = canonical(conn.remote_address());
            if remote != dest {
                self.probe(session, conn.local_ip(), remote, &mut Vec::new());
            }
        }
        Some((session, dest))
    }
}

impl DataReceiver for DataPlane {
    fn frame(&self, from: SocketAddr, frame: &[u8]) {
        let Ok((header, sealed)) = DataHeader::decode(frame) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let reg = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&header.receiver)
            .cloned();
        let Some(reg) = reg else {
            self.stats.unknown_receiver.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut scratch = self.recv.lock().unwrap_or_else(PoisonError::into_inner);
        let RecvScratch {
            arena,
            pending,
            heard,
            reply,
        } = &mut *scratch;
        if arena.capacity() < sealed.len() {
            *arena = BytesMut::with_capacity(ARENA.max(sealed.len()));
        }
        arena.extend_from_slice(sealed);
        let mut buf = arena.split();
        match reg.session.open(header, &mut buf[..]) {
            Ok(_) => buf.truncate(sealed.len() - TAG_LEN),
            Err(error) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                if error != DataError::Replayed {
                    tracing::debug!(%error, "data frame refused");
                }
                return;
            }
        }
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        // The peer's frames come from elsewhere (it moved, or its NAT
        // mapped it anew): prove that address before sending there.
        if from != reg.session.dest() {
            self.probe(&reg.session, reg.src_ip, from, reply);
        }
        match header.kind {
            DataKind::Datagram => {
                if !heard
                    .last()
                    .is_some_and(|r| Arc::ptr_eq(&r.session, &reg.session))
                {
                    heard.push(reg.clone());
                }
                match pending.last_mut() {
                    Some((slot, packets)) if Arc::ptr_eq(slot, &reg.slot) => {
                        packets.push(buf.freeze());
                        // At most a sink batch waits: a socket read can
                        // hold hundreds of packets.
                        if packets.len() >= SINK_BATCH {
                            self.deliver(slot, packets);
                        }
                    }
                    _ => pending.push((reg.slot.clone(), vec![buf.freeze()])),
                };
            }
            DataKind::Signal => match Signal::decode(&buf) {
                Ok(Signal::Hello { token }) => {
                    let dest = reg.session.dest();
                    let answer = Signal::Reply { token };
                    self.send_signal(&reg.session, reg.src_ip, answer, dest, reply)
                }
                Ok(Signal::Reply { token }) => {
                    if let Some(addr) = reg.session.on_reply(token) {
                        tracing::info!(peer = %reg.slot.id.short(), %addr, "data plane follows the peer to a new address");
                    }
                }
                Err(_) => {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
    }

    fn flush(&self) {
        let mut scratch = self.recv.lock().unwrap_or_else(PoisonError::into_inner);
        let RecvScratch {
            pending,
            heard,
            reply,
            ..
        } = &mut *scratch;
        for (slot, mut packets) in pending.drain(..) {
            self.deliver(&slot, &mut packets);
        }
        // Answer the senders we have sent nothing for a while, so that
        // their dead-path detection hears from us.
        if !heard.is_empty() {
            let now = Instant::now();
            for reg in heard.drain(..) {
                if reg.session.answer_due(now) {
                    let answer = Signal::Reply { token: [0; 8] };
                    let dest = reg.session.dest();
                    self.send_signal(&reg.session, reg.src_ip, answer, dest, reply);
                }
            }
        }
    }
}

impl DataPlane {
    /// Hands `slot`'s opened packets on (drains `packets`).
    fn deliver(&self, slot: &PeerSlot, packets: &mut Vec<Bytes>) {
        let bytes: usize = packets.iter().map(Bytes::len).sum();
        slot.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        match (&self.delivery, &self.writer) {
            // A few packets with the writer idle (a ping, a request):
            // written at once, without the hop's latency. Nothing is
            // queued or being written, so they cannot overtake anything.
            (Delivery::Sink(sink), Some(_))
                if packets.len() <= INLINE_MAX && self.writer_load.load(Ordering::Acquire) == 0 =>
            {
                sink.deliver(slot.id, packets)
            }
            (Delivery::Sink(_), Some(writer)) => {
                let count = packets.len();
                self.writer_load.fetch_add(1, Ordering::AcqRel);
                if writer.try_send((slot.id, std::mem::take(packets))).is_err() {
                    self.writer_load.fetch_sub(1, Ordering::AcqRel);
                    self.stats
                        .delivery_dropped
                        .fetch_add(count as u64, Ordering::Relaxed);
                }
            }
            (Delivery::Sink(sink), None) => sink.deliver(slot.id, packets),
            (Delivery::Queue(tx), _) => {
                for packet in packets.drain(..) {
                    if tx.try_send((slot.id, packet)).is_err() {
                        self.stats.delivery_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        packets.clear();
    }
}

/// Batches of opened packets waiting for the device writer.
const WRITER_QUEUE: usize = 1024;

/// Receive batches of at most this many packets are written on the
/// receiving task when the writer is idle.
const INLINE_MAX: usize = 4;

/// The device writer: hands opened packets to the sink on a task of its
/// own, so that the socket's receive path (reading, opening) and the
/// device writes (where the kernel runs the inner packets' stack) use
/// both cores. Batches of one peer waiting together are written together.
async fn write_to_sink(
    sink: Arc<dyn super::DatagramSink>,
    mut rx: mpsc::Receiver<(PeerId, Vec<Bytes>)>,
    load: Arc<AtomicUsize>,
) {
    while let Some((mut peer, mut packets)) = rx.recv().await {
        let mut batches = 1;
        while packets.len() < 4 * SINK_BATCH {
            match rx.try_recv() {
                Ok((p, more)) if p == peer => packets.extend(more),
                Ok((p, more)) => {
                    sink.deliver(peer, &mut packets);
                    (peer, packets) = (p, more);
                }
                Err(_) => break,
            }
            batches += 1;
        }
        sink.deliver(peer, &mut packets);
        load.fetch_sub(batches, Ordering::AcqRel);
    }
}

/// Data frames sealed for one destination, waiting to leave together in
/// one GSO send: fill with [`super::Overlay::send_batched`], send with
/// [`super::Overlay::flush`] (dropping it unflushed drops its frames).
#[derive(Default)]
pub struct SendBatch {
    /// Destination and source address of what `buf` holds.
    to: Option<(SocketAddr, Option<IpAddr>)>,
    buf: Vec<u8>,
    /// Size of each frame but the last.
    segment: usize,
    frames: usize,
    /// The last frame was shorter than `segment`: nothing may follow it.
    closed: bool,
    /// The largest datagram of the last connection asked, by its id.
    room: Option<(usize, usize)>,
}

impl SendBatch {
    /// The largest datagram a data frame on `conn` carries: what QUIC
    /// would carry in a datagram on its path (its framing costs more than
    /// ours). Asked of QUIC once per batch and connection.
    pub(super) fn room(&mut self, conn: &PeerConnection) -> usize {
        let id = conn.quinn().stable_id();
        match self.room {
            Some((at, room)) if at == id => room,
            _ => {
                let room = conn.max_datagram_size().unwrap_or(0);
                self.room = Some((id, room));
                room
            }
        }
    }

    /// Makes room for a frame of `len` bytes to `to`: sends what is held
    /// first if the frame cannot join it.
    fn make_room(&mut self, plane: &DataPlane, to: (SocketAddr, Option<IpAddr>), len: usize) {
        let fits = self.to == Some(to)
            && !self.closed
            && len <= self.segment
            && self.frames < plane.socket.max_transmit_segments()
            && self.buf.len() + len <= GSO_MAX_BYTES;
        if !fits {
            self.send(plane);
            self.to = Some(to);
        }
    }

    /// Appends one sealed frame (`sealed` bytes were appended to `buf`).
    fn sealed(&mut self, len: usize) {
        if self.frames == 0 {
            self.segment = len;
        } else if len < self.segment {
            self.closed = true;
        }
        self.frames += 1;
    }

    /// Sends what is held.
    pub(super) fn send(&mut self, plane: &DataPlane) {
        if let (Some((to, src_ip)), true) = (self.to, self.frames > 0) {
            let segment = (self.frames > 1).then_some(self.segment);
            match plane.socket.send_data(to, src_ip, &self.buf, segment) {
                Ok(()) => {
                    plane
                        .stats
                        .frames_out
                        .fetch_add(self.frames as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    plane
                        .stats
                        .send_failed
                        .fetch_add(self.frames as u64, Ordering::Relaxed);
                    tracing::debug!(%error, frames = self.frames, "data frames not sent");
                }
            }
        }
        self.buf.clear();
        self.frames = 0;
        self.closed = false;
        self.to = None;
        self.room = None;
    }

    /// Seals `payload` into the batch for `session` at `to`.
    pub(super) fn push(
        &mut self,
        plane: &DataPlane,
        session: &DataSession,
        to: (SocketAddr, Option<IpAddr>),
        payload: &[u8],
    ) -> Result<(), DataError> {
        let len = payload.len() + DataHeader::OVERHEAD;
        self.make_room(plane, to, len);
        let sealed = session.seal(payload, &mut self.buf)?;
        self.sealed(sealed);
        Ok(())
    }
}
