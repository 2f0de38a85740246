//! The UDP socket shared by QUIC, hole-punch probes and relay paths.
//!
//! [`AntqSocket`] wraps quinn's own socket (so GSO/GRO and ECN keep working)
//! and sits between it and the QUIC endpoint:
//!
//! - **Raw frames.** QUIC packets always have the fixed bit (0x40) set in
//!   their first byte (our endpoints never grease it), so a datagram whose
//!   first byte is `0x00..=0x3f` is one of antq's raw frames. Punch probes and
//!   other raw frames are taken out of the stream quinn sees and handed to
//!   [`AntqSocket::take_raw_receiver`]; probes are sent from the very same
//!   socket (and so the same NAT mapping) as QUIC with [`AntqSocket::send_raw`].
//! - **Relay paths as virtual addresses.** A relay channel granted by a
//!   bootstrap node gets a stable virtual address in `240.0.0.0/4` (reserved,
//!   never routed). QUIC packets quinn sends to that address are wrapped in a
//!   `RELAY_DATA` frame (`0x01`, 4-byte channel id) and sent to the relay
//!   server; `RELAY_DATA` frames arriving from that server on that channel are
//!   unwrapped and handed to quinn as if they came from the virtual address.
//!   The peers' QUIC stays end-to-end: the relay only sees ciphertext.
//! - **Relay forwarding** (bootstrap side). A bootstrap node installs
//!   [`AntqSocket::set_relay_forward`] entries: a `RELAY_DATA` frame from a
//!   peer's validated address on its channel is re-labelled with the other
//!   peer's channel and sent to the other peer's validated address, one frame
//!   out per frame in (no amplification), within a per-direction bandwidth
//!   limit. This happens inside the receive path, without a task hop.
//! - **Sends only to proven addresses** (bootstrap side, [`ProvenAddrs`]):
//!   QUIC moves a server-side connection to the source of the newest packet
//!   before validating it, so one spoofed packet would make quinn send to a
//!   victim. With the guard on, 1-RTT QUIC packets (short header) leave only
//!   toward addresses someone proved: a handshake's validated source, or an
//!   address whose owner answered a challenge ([`proof`]). Packets to any
//!   other address are held while a 17-byte `ADDRESS_CHALLENGE` goes there,
//!   and sent once it is proven, or dropped.
//! - **Stream paths** ([`tcp`]): a TCP stream to a bootstrap, for networks
//!   that drop UDP, is a virtual address in `241.0.0.0/8` (relay paths use
//!   `240.0.0.0/8`); datagrams to it are framed onto the stream
//!   ([`framing`]), frames from it are handed to quinn, relay-unwrapped or
//!   forwarded exactly like UDP datagrams. A listener's streams are limited
//!   per source and in total, and closed unless claimed
//!   ([`AntqSocket::claim_stream`]) soon after they open ([`tcp`]).
//!
//! - **Side paths** ([`side`]): an extra UDP socket that won a birthday
//!   attempt carries QUIC to one remote as a virtual address in
//!   `242.0.0.0/8`.
//! - **Data plane frames** (`DATA`, `data.rs`): sorted out on receipt
//!   (also from inside relay frames and stream paths) and handed to the
//!   node's [`DataReceiver`] on the receiving task; sent through the same
//!   dispatch as QUIC packets ([`AntqSocket::send_data`]).
//!
//! Files: this one holds the socket, its sends and quinn's side of it;
//! `recv.rs` sorts what is received, `relay.rs` holds the relay paths and
//! forwarding entries, `guard.rs` the send guard (its challenges in
//! [`proof`]), `metrics.rs` the socket's Prometheus collector.

mod data;
mod forward;
pub mod framing;
mod guard;
pub(crate) mod metrics;
pub mod proof;
mod recv;
mod relay;
pub mod side;
pub mod tcp;

pub use data::DataReceiver;
pub use forward::{FORWARD_MAX_DELAY, FORWARD_QUEUE_BYTES};
pub use guard::{ProvenAddrs, ProvenGuard, PROVEN_GRACE};
pub use relay::{RelayBudget, RelayLimit, RelayRoute};
pub use side::{is_side_addr, SideGroup, SideRaw};
pub use tcp::{bind_tcp, is_stream_addr, StreamError, StreamLimits, Transport};

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime as _, UdpPoller};
use tokio::sync::mpsc;

use self::recv::PendingPacket;
use self::relay::{Forward, RelayTable};
use crate::nat::{canonical, canonical_ip};

/// Capacity of the queue of raw frames waiting for the NAT driver.
const RAW_QUEUE: usize = 1024;

/// Binds a UDP socket. An unspecified IPv6 address binds dual-stack (IPv4
/// peers then appear as IPv4-mapped addresses, which this module hides).
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    // Large buffers keep bursts from being dropped; the kernel caps them.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Whether `addr` is a virtual address (`240.0.0.0/4` but the broadcast
/// address): a relay path (`240.0.0.0/8`), a stream path (`241.0.0.0/8`)
/// or a side path (`242.0.0.0/8`, [`side`]).
/// Virtual addresses are never punch candidates nor observed addresses.
pub fn is_virtual(addr: SocketAddr) -> bool {
    match canonical(addr).ip() {
        IpAddr::V4(v4) => v4.octets()[0] >= 240 && v4 != Ipv4Addr::BROADCAST,
        IpAddr::V6(_) => false,
    }
}

/// A raw (non-QUIC) datagram received on the shared socket.
#[derive(Clone, Debug)]
pub struct RawPacket {
    /// Sender, canonical form.
    pub from: SocketAddr,
    /// The whole datagram, first byte included.
    pub data: Bytes,
}

/// Counters of the shared socket.
#[derive(Debug, Default, serde::Serialize)]
pub struct SocketStats {
    /// Raw frames dropped because the NAT driver's queue was full or gone.
    pub raw_dropped: AtomicU64,
    /// Relay frames for an unknown server or channel.
    pub relay_unknown: AtomicU64,
    /// Packets to a virtual address with no relay route.
    pub relay_unroutable: AtomicU64,
    /// Relay frames received and unwrapped.
    pub relay_in: AtomicU64,
    /// Relay frames sent.
    pub relay_out: AtomicU64,
    /// Relay frames forwarded (bootstrap side).
    pub forwarded: AtomicU64,
    /// Bytes forwarded (bootstrap side).
    pub forwarded_bytes: AtomicU64,
    /// Relay frames dropped by the bandwidth limit of their direction:
    /// they would have waited more than [`FORWARD_MAX_DELAY`] (bootstrap
    /// side).
    pub forward_limited: AtomicU64,
    /// Relay frames that waited for their pacers before being forwarded
    /// (bootstrap side).
    pub forward_delayed: AtomicU64,
    /// Relay frames dropped because [`FORWARD_QUEUE_BYTES`] were waiting
    /// already (bootstrap side).
    pub forward_queue_full: AtomicU64,
    /// Relay frames dropped by the byte budget of the key that sent them
    /// (bootstrap side, [`RelayBudget`]).
    pub forward_budget_limited: AtomicU64,
    /// Frames received on stream paths.
    pub stream_frames_in: AtomicU64,
    /// Frames queued on stream paths.
    pub stream_frames_out: AtomicU64,
    /// Datagrams for a stream path dropped (write queue full, too large, or
    /// a raw frame other than `RELAY_DATA` received on a stream).
    pub stream_dropped: AtomicU64,
    /// Streams closed for a framing error (bad preface, bad length,
    /// truncated).
    pub stream_errors: AtomicU64,
    /// Incoming TCP streams refused, or closed before they were of use: the
    /// sum of the five `streams_refused_*` counters (see [`tcp`]).
    pub streams_refused: AtomicU64,
    /// Incoming TCP streams refused: over their source's rate of new
    /// streams ([`StreamLimits::per_ip_per_sec`]).
    pub streams_refused_rate: AtomicU64,
    /// Incoming TCP streams refused: their source held
    /// [`StreamLimits::per_ip_max_streams`] already.
    pub streams_refused_source_cap: AtomicU64,
    /// Incoming TCP streams refused: [`StreamLimits::max_streams`] were open
    /// already.
    pub streams_refused_total_cap: AtomicU64,
    /// TCP streams closed for sending no preface within
    /// [`tcp::PREFACE_TIMEOUT`] of the accept, or no first frame within
    /// [`tcp::FIRST_FRAME_TIMEOUT`] of the preface.
    pub streams_refused_handshake_timeout: AtomicU64,
    /// TCP streams closed for not being claimed
    /// ([`AntqSocket::claim_stream`]) within [`StreamLimits::claim_timeout`].
    pub streams_refused_claim_timeout: AtomicU64,
    /// Server-side TCP streams closed at the total cap to make room for a
    /// source holding fewer (its largest holder's newest, unclaimed first).
    pub streams_evicted: AtomicU64,
    /// 1-RTT QUIC packets held because their destination was not a proven
    /// address ([`ProvenAddrs`]); sent if it is proven in time.
    pub unproven_held: AtomicU64,
    /// 1-RTT QUIC packets to an unproven address dropped (no room to hold
    /// them, or their challenge went unanswered).
    pub unproven_dropped: AtomicU64,
    /// `ADDRESS_CHALLENGE` frames sent to unproven addresses.
    pub challenges_sent: AtomicU64,
    /// Held packets sent after their address was proven.
    pub proven_released: AtomicU64,
    /// Side sockets opened (birthday attempts, [`side`]).
    pub side_sockets_opened: AtomicU64,
    /// QUIC packets received on side paths.
    pub side_in: AtomicU64,
    /// Datagrams dropped on side sockets (QUIC on a socket that is no
    /// path, a stranger on a path, a full queue).
    pub side_dropped: AtomicU64,
    /// Packets to a side path that is gone.
    pub side_unroutable: AtomicU64,
    /// Data plane frames received and handed to the node.
    pub data_in: AtomicU64,
    /// Data plane frames sent.
    pub data_out: AtomicU64,
    /// Data plane frames dropped: nobody takes them (a bootstrap, or a
    /// node shutting down).
    pub data_unclaimed: AtomicU64,
}

/// The socket shared by the QUIC endpoint, punch probes and relay paths.
pub struct AntqSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// A second handle on the same socket, for changing its TTL around a
    /// priming send; the lock keeps those changes from interleaving.
    ttl_handle: Mutex<std::net::UdpSocket>,
    ipv6: bool,
    raw_tx: mpsc::Sender<RawPacket>,
    raw_rx: Mutex<Option<mpsc::Receiver<RawPacket>>>,
    relays: RwLock<RelayTable>,
    forwards: RwLock<HashMap<RelayRoute, Forward>>,
    /// Relay frames forwarded at once, gathered for GSO sends.
    forward_batch: Mutex<forward::ForwardBatch>,
    /// Relay frames waiting for their pacers.
    forward_queue: Mutex<forward::DelayedFrames>,
    /// This socket, for the task that sends paced frames.
    me: Weak<Self>,
    next_virtual: AtomicU32,
    pending: Mutex<VecDeque<PendingPacket>>,
    /// The host's addresses, once known: a source address quinn pinned for a
    /// connection (the destination of the packet that opened it) that is no
    /// longer among them is left to the kernel's choice instead.
    local_ips: RwLock<Option<HashSet<IpAddr>>>,
    /// Waker of quinn's receive task, for packets arriving on stream paths.
    recv_waker: Mutex<Option<Waker>>,
    streams: Mutex<tcp::StreamTable>,
    next_stream: AtomicU32,
    /// Memory of the stream paths (growth budget, what was given back).
    stream_memory: tcp::StreamMemory,
    stats: SocketStats,
    proven: ProvenAddrs,
    proofs: Mutex<proof::Proofs>,
    /// Adopted side sockets, by virtual address.
    sides: Mutex<side::SideTable>,
    /// Firewall mark of every socket's packets (0: none); see
    /// [`AntqSocket::set_mark`].
    mark: AtomicU32,
    /// Where `DATA` frames go ([`AntqSocket::set_data_receiver`]).
    data_receiver: std::sync::OnceLock<Weak<dyn DataReceiver>>,
}

impl fmt::Debug for AntqSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AntqSocket")
            .field("local", &self.inner.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl AntqSocket {
    /// Puts firewall mark `mark` on this socket's packets and on those of
    /// every socket it opens later (side sockets, TCP stream paths), so
    /// that a host routing everything through the tunnel sends ours by
    /// the main table ([`antq_platform::set_socket_mark`], Linux only).
    /// 0 does nothing.
    pub fn set_mark(&self, mark: u32) -> io::Result<()> {
        if mark == 0 {
            return Ok(());
        }
        let handle = self
            .ttl_handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        antq_platform::set_socket_mark(socket2::SockRef::from(&*handle), mark)
            .map_err(io::Error::other)?;
        self.mark.store(mark, Ordering::Relaxed);
        Ok(())
    }

    /// The mark of [`AntqSocket::set_mark`] (0: none).
    pub(crate) fn mark(&self) -> u32 {
        self.mark.load(Ordering::Relaxed)
    }

    /// Wraps a bound UDP socket. Must run inside a tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Arc<Self>> {
        let ipv6 = socket.local_addr()?.is_ipv6();
        let ttl_handle = Mutex::new(socket.try_clone()?);
        let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
        let (raw_tx, raw_rx) = mpsc::channel(RAW_QUEUE);
        Ok(Arc::new_cyclic(|me| Self {
            inner,
            ttl_handle,
            ipv6,
            raw_tx,
            raw_rx: Mutex::new(Some(raw_rx)),
            relays: RwLock::new(RelayTable::default()),
            forwards: RwLock::new(HashMap::new()),
            forward_batch: Mutex::default(),
            forward_queue: Mutex::default(),
            me: me.clone(),
            next_virtual: AtomicU32::new(1),
            pending: Mutex::new(VecDeque::new()),
            local_ips: RwLock::new(None),
            recv_waker: Mutex::new(None),
            streams: Mutex::default(),
            next_stream: AtomicU32::new(1),
            stream_memory: tcp::StreamMemory::default(),
            stats: SocketStats::default(),
            proven: ProvenAddrs::default(),
            proofs: Mutex::new(proof::Proofs::new(Instant::now())),
            sides: Mutex::default(),
            mark: AtomicU32::new(0),
            data_receiver: std::sync::OnceLock::new(),
        }))
    }

    /// The receiver of raw frames (punch probes and the like). Can be taken
    /// once; frames arriving while nobody holds it are dropped and counted.
    pub fn take_raw_receiver(&self) -> Option<mpsc::Receiver<RawPacket>> {
        self.raw_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The socket's counters.
    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }

    /// Sends a raw frame from the shared socket now, or fails with
    /// `WouldBlock` when the socket buffer is full (the frame is dropped).
    /// To a stream path, the frame is queued on the stream (dropped if the
    /// queue is full).
    pub fn try_send_raw(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.try_send_raw_segments(to, data, None)
    }

    /// Like [`Self::try_send_raw`], for frames of `segment` bytes each
    /// (the last may be shorter) in one GSO send; to a stream path, one
    /// stream frame each.
    pub(super) fn try_send_raw_segments(
        &self,
        to: SocketAddr,
        data: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        if is_stream_addr(to) {
            let size = segment.unwrap_or(data.len()).max(1);
            self.send_stream(to, data.chunks(size));
            return Ok(());
        }
        self.inner.try_send(&Transmit {
            destination: self.to_wire(to),
            ecn: None,
            contents: data,
            segment_size: segment,
            src_ip: None,
        })
    }

    /// Like [`Self::try_send_raw`], with IP TTL / IPv6 hop limit `ttl` (punch
    /// priming, see [`crate::nat::PunchConfig::prime_ttl`]). The socket's TTL
    /// is lowered for this one send and then restored, so a QUIC packet that
    /// another task sends in those microseconds leaves with it too and is
    /// lost, which QUIC recovers like any loss. Where the TTL cannot be
    /// changed, the frame leaves with the normal TTL. Stream paths ignore
    /// `ttl` (their frames travel inside a TCP connection).
    pub fn try_send_raw_with_ttl(&self, to: SocketAddr, data: &[u8], ttl: u8) -> io::Result<()> {
        if is_stream_addr(to) {
            return self.try_send_raw(to, data);
        }
        let handle = self
            .ttl_handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let socket = socket2::SockRef::from(&*handle);
        let v4 = match to {
            SocketAddr::V4(_) => true,
            SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_some(),
        };
        let ttl = u32::from(ttl);
        let previous = if v4 {
            socket
                .ttl()
                .and_then(|old| socket.set_ttl(ttl).map(|()| old))
        } else {
            socket
                .unicast_hops_v6()
                .and_then(|old| socket.set_unicast_hops_v6(ttl).map(|()| old))
        };
        let sent = self.try_send_raw(to, data);
        match previous {
            Ok(old) if v4 => socket.set_ttl(old)?,
            Ok(old) => socket.set_unicast_hops_v6(old)?,
            Err(error) => tracing::debug!(%error, "TTL not changed for a priming probe"),
        }
        sent
    }

    /// Sends a raw frame from the shared socket, waiting while the socket
    /// is not writable.
    pub async fn send_raw(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        let mut poller = None;
        loop {
            match self.try_send_raw(to, data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let poller =
                        poller.get_or_insert_with(|| self.inner.clone().create_io_poller());
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await?;
                }
                other => return other,
            }
        }
    }

    /// Sets the host's current addresses (after a network change). quinn
    /// sends each server-side connection's packets from the address its
    /// first packet arrived at; once that address is gone from the host such
    /// sends would fail, so they go out with the kernel's choice of source
    /// instead (the other end sees a migration).
    pub fn set_local_ips(&self, ips: impl IntoIterator<Item = IpAddr>) {
        let set = ips.into_iter().map(canonical_ip).collect();
        *self
            .local_ips
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(set);
    }

    /// Whether `ip` is one of the host's addresses (`None`: not known yet,
    /// see [`Self::set_local_ips`]).
    pub fn is_local_ip(&self, ip: IpAddr) -> Option<bool> {
        self.local_ips
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|set| set.contains(&canonical_ip(ip)))
    }

    /// The source address to send from: `src` unless the host no longer has it.
    fn source_ip(&self, src: Option<IpAddr>) -> Option<IpAddr> {
        let ip = src?;
        let known = self
            .local_ips
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match &*known {
            Some(set) if !set.contains(&canonical_ip(ip)) => None,
            _ => Some(ip),
        }
    }

    /// The address form the underlying socket uses (IPv4-mapped on a
    /// dual-stack IPv6 socket).
    fn to_wire(&self, addr: SocketAddr) -> SocketAddr {
        match (self.ipv6, addr) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            (false, SocketAddr::V6(_)) => canonical(addr),
            _ => addr,
        }
    }
}

impl AsyncUdpSocket for AntqSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if is_virtual(transmit.destination) {
            if is_side_addr(transmit.destination) {
                return self.send_side(transmit);
            }
            if is_stream_addr(transmit.destination) {
                let segment = transmit
                    .segment_size
                    .unwrap_or(transmit.contents.len())
                    .max(1);
                self.send_stream(transmit.destination, transmit.contents.chunks(segment));
                return Ok(());
            }
            return match self.relay_route(transmit.destination) {
                Some(route) => self.send_relayed(transmit, route),
                None => {
                    // An unroutable relay path behaves like a lossy link.
                    self.stats.relay_unroutable.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            };
        }
        // A 1-RTT packet (short header: 0x80 clear) to an address nobody
        // proved waits for a proof when the guard is on (see [`ProvenAddrs`]).
        if self.guards_sends()
            && transmit.contents.first().is_some_and(|b| b & 0x80 == 0)
            && !self.proven.holds(transmit.destination)
        {
            self.hold_for_proof(transmit);
            return Ok(());
        }
        let src_ip = self.source_ip(transmit.src_ip);
        if src_ip == transmit.src_ip {
            self.inner.try_send(transmit)
        } else {
            self.inner.try_send(&Transmit {
                src_ip,
                ..*transmit
            })
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        {
            // Register before looking at the pending queue, so a stream
            // packet queued after the look wakes us.
            let mut waker = self
                .recv_waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        loop {
            let n = self.fill_from_pending(bufs, meta);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
            let kept = self.demux(n, bufs, meta);
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_addresses_are_class_e_only() {
        assert!(is_virtual("240.0.0.1:1".parse().unwrap()));
        assert!(is_virtual("[::ffff:240.0.0.1]:1".parse().unwrap()));
        assert!(!is_virtual("239.255.255.255:1".parse().unwrap()));
        assert!(!is_virtual("255.255.255.255:1".parse().unwrap()));
        assert!(!is_virtual("[2001:db8::1]:1".parse().unwrap()));
    }

    #[tokio::test]
    async fn relay_routes_are_stable_and_removable() {
        let socket = AntqSocket::new(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
        let route = RelayRoute {
            server: "127.0.0.1:9000".parse().unwrap(),
            channel: 7,
        };
        let a = socket.add_relay_route(route);
        assert!(is_virtual(a));
        assert_eq!(socket.add_relay_route(route), a);
        assert_eq!(socket.relay_route(a), Some(route));
        let other = socket.add_relay_route(RelayRoute {
            channel: 8,
            ..route
        });
        assert_ne!(other, a);
        socket.remove_relay_route(a);
        assert_eq!(socket.relay_route(a), None);
    }

    #[test]
    fn stream_paths_have_their_own_range() {
        let stream: SocketAddr = "241.0.0.1:9000".parse().unwrap();
        assert!(is_virtual(stream) && is_stream_addr(stream));
        assert!(is_stream_addr("[::ffff:241.0.0.1]:1".parse().unwrap()));
        assert!(!is_stream_addr("240.0.0.1:1".parse().unwrap()));
        assert_eq!(Transport::of(stream), Transport::Tcp);
        assert_eq!(
            Transport::of("198.18.0.10:9000".parse().unwrap()),
            Transport::Udp
        );
    }

    #[tokio::test]
    async fn relay_routes_move_to_another_server_keeping_their_address() {
        let socket = AntqSocket::new(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
        let tcp: SocketAddr = "241.0.0.1:9000".parse().unwrap();
        let udp: SocketAddr = "198.18.0.10:9000".parse().unwrap();
        let v1 = socket.add_relay_route(RelayRoute {
            server: tcp,
            channel: 1,
        });
        let other = socket.add_relay_route(RelayRoute {
            server: "198.18.0.99:9000".parse().unwrap(),
            channel: 2,
        });
        assert_eq!(socket.repoint_relay_routes(tcp, udp), 1);
        let moved = RelayRoute {
            server: udp,
            channel: 1,
        };
        assert_eq!(socket.relay_route(v1), Some(moved));
        assert_eq!(socket.add_relay_route(moved), v1);
        assert_eq!(socket.relay_route(other).map(|r| r.channel), Some(2));
        // Nothing is routed to a stream path that is not open.
        assert!(!socket.has_stream(tcp));
        assert!(socket.try_send_raw(tcp, b"\x01\0\0\0\x01x").is_ok());
        assert_eq!(socket.stats().relay_unroutable.load(Ordering::Relaxed), 1);
    }
}
