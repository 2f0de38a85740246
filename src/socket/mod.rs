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

pub mod framing;
pub(crate) mod metrics;
pub mod proof;
pub mod tcp;

pub use tcp::{bind_tcp, is_stream_addr, StreamError, StreamLimits, Transport};

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime as _, UdpPoller};
use tokio::sync::mpsc;

use crate::nat::{canonical, canonical_ip};
use crate::proto::raw::{
    self, classify, encode_relay_header, parse_relay, PacketClass, RelayHeader,
};
use crate::ratelimit::TokenBucket;

/// Capacity of the queue of raw frames waiting for the NAT driver.
const RAW_QUEUE: usize = 1024;
/// Capacity of the queue of unwrapped packets waiting for quinn.
const PENDING_QUEUE: usize = 4096;

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
/// address): a relay path (`240.0.0.0/8`) or a stream path (`241.0.0.0/8`).
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

/// Where packets for one relay path go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RelayRoute {
    /// The relay server's address (canonical form).
    pub server: SocketAddr,
    /// The channel id the server granted.
    pub channel: u32,
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
    /// Relay frames dropped by the bandwidth limit of their direction
    /// (bootstrap side).
    pub forward_limited: AtomicU64,
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
}

/// Addresses QUIC may send 1-RTT packets to, when the guard is on
/// ([`AntqSocket::guard_sends`]): each is held by [`ProvenGuard`]s, and
/// allowed while one is alive and for [`PROVEN_GRACE`] after the last one
/// went (a closing connection's last packets leave after its owner let go).
#[derive(Debug, Default)]
pub struct ProvenAddrs {
    on: std::sync::atomic::AtomicBool,
    held: RwLock<HashMap<SocketAddr, Holders>>,
}

/// How long an address stays allowed after its last guard went.
pub const PROVEN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The guards of one address, and when the last one went.
#[derive(Debug, Default, Clone, Copy)]
struct Holders {
    count: u32,
    released: Option<Instant>,
}

impl Holders {
    fn allowed(&self, now: Instant) -> bool {
        self.count > 0
            || self
                .released
                .is_some_and(|t| now.saturating_duration_since(t) < PROVEN_GRACE)
    }
}

impl ProvenAddrs {
    fn holds(&self, addr: SocketAddr) -> bool {
        self.held
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&canonical(addr))
            .is_some_and(|h| h.allowed(Instant::now()))
    }
}

/// Keeps one address in [`ProvenAddrs`] while alive.
#[derive(Debug)]
pub struct ProvenGuard {
    socket: Arc<AntqSocket>,
    addr: SocketAddr,
}

impl ProvenGuard {
    /// The address held.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ProvenGuard {
    fn drop(&mut self) {
        let mut held = self
            .socket
            .proven
            .held
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.get_mut(&self.addr) {
            h.count = h.count.saturating_sub(1);
            if h.count == 0 {
                h.released = Some(Instant::now());
            }
        }
    }
}

/// One direction of a relay allocation on a bootstrap node.
#[derive(Debug)]
struct Forward {
    to: RelayRoute,
    limit: Mutex<TokenBucket>,
    budget: Arc<RelayBudget>,
}

/// The relay byte budget of one sender (bootstrap side): shared by every
/// relay direction a key sends on, so that many allocations do not multiply
/// what one key may make the bootstrap send.
#[derive(Debug)]
pub struct RelayBudget(Mutex<TokenBucket>);

impl RelayBudget {
    /// A budget of `limit`, full.
    pub fn new(limit: RelayLimit) -> Self {
        Self(Mutex::new(TokenBucket::new(
            limit.bytes_per_sec,
            limit.burst_bytes,
            Instant::now(),
        )))
    }

    fn try_take(&self, bytes: usize, now: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(bytes as f64, now)
    }
}

/// Bandwidth limit of one relay direction.
#[derive(Clone, Copy, Debug)]
pub struct RelayLimit {
    /// Sustained bytes per second.
    pub bytes_per_sec: f64,
    /// Burst size in bytes.
    pub burst_bytes: f64,
}

/// A packet unwrapped or split out of a batch, waiting to be handed to quinn:
/// source, local destination IP, contents.
type PendingPacket = (SocketAddr, Option<IpAddr>, Vec<u8>);

#[derive(Debug, Default)]
struct RelayTable {
    by_virtual: HashMap<SocketAddr, RelayRoute>,
    by_route: HashMap<RelayRoute, SocketAddr>,
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
}

impl fmt::Debug for AntqSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AntqSocket")
            .field("local", &self.inner.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl AntqSocket {
    /// Wraps a bound UDP socket. Must run inside a tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Arc<Self>> {
        let ipv6 = socket.local_addr()?.is_ipv6();
        let ttl_handle = Mutex::new(socket.try_clone()?);
        let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
        let (raw_tx, raw_rx) = mpsc::channel(RAW_QUEUE);
        Ok(Arc::new(Self {
            inner,
            ttl_handle,
            ipv6,
            raw_tx,
            raw_rx: Mutex::new(Some(raw_rx)),
            relays: RwLock::new(RelayTable::default()),
            forwards: RwLock::new(HashMap::new()),
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

    /// Turns on the guard: from now on 1-RTT QUIC packets go only to
    /// addresses held by a [`ProvenGuard`] ([`Self::prove`]). Relay and
    /// stream paths (virtual addresses) and raw frames are not affected, nor
    /// are handshake packets (long header; an unvalidated client gets only a
    /// Retry, which is smaller than what it sent).
    pub fn guard_sends(&self) {
        self.proven.on.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::guard_sends`] is on.
    pub fn guards_sends(&self) -> bool {
        self.proven.on.load(Ordering::Relaxed)
    }

    /// Holds `addr` as proven (a handshake's validated source, or an
    /// address whose owner answered a challenge) until the guard is
    /// dropped. QUIC packets held for it leave now.
    pub fn prove(self: &Arc<Self>, addr: SocketAddr) -> ProvenGuard {
        let addr = canonical(addr);
        {
            let mut held = self
                .proven
                .held
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            held.retain(|_, h| h.allowed(now));
            held.entry(addr).or_default().count += 1;
        }
        let released = self.lock_proofs().release(addr);
        for packet in released {
            let sent = self.inner.try_send(&Transmit {
                destination: self.to_wire(addr),
                ecn: None,
                contents: &packet.contents,
                segment_size: packet.segment_size,
                src_ip: self.source_ip(packet.src_ip),
            });
            if sent.is_ok() {
                self.stats.proven_released.fetch_add(1, Ordering::Relaxed);
            }
        }
        ProvenGuard {
            socket: self.clone(),
            addr,
        }
    }

    /// The address an `ADDRESS_CHALLENGE` with `token` went to, while its
    /// challenge is under way. A peer that sends the token back on its
    /// authenticated connection has shown that it receives there: prove the
    /// address for it ([`Self::prove`]).
    pub fn challenged_address(&self, token: &[u8; 16]) -> Option<SocketAddr> {
        self.lock_proofs().address_of(token)
    }

    /// Challenges under way (addresses with held packets).
    pub fn challenges_pending(&self) -> usize {
        self.lock_proofs().len()
    }

    /// Forgets challenges that ran out, with their held packets.
    pub fn expire_challenges(&self) {
        self.lock_proofs().expire(Instant::now());
    }

    fn lock_proofs(&self) -> std::sync::MutexGuard<'_, proof::Proofs> {
        self.proofs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds a QUIC send to an unproven address and challenges the address
    /// (see [`proof`]).
    fn hold_for_proof(&self, transmit: &Transmit<'_>) {
        let to = canonical(transmit.destination);
        let packet = proof::HeldPacket {
            contents: transmit.contents.to_vec(),
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        };
        let held = self
            .lock_proofs()
            .hold(to, packet, Instant::now(), rand::random());
        match held {
            proof::HoldOutcome::Challenge(token) => {
                self.stats.unproven_held.fetch_add(1, Ordering::Relaxed);
                let frame = raw::AddressChallenge { token }.to_bytes();
                if self.try_send_raw(to, &frame).is_ok() {
                    self.stats.challenges_sent.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%to, "QUIC moved a connection to an unproven address; challenged");
            }
            proof::HoldOutcome::Waiting => {
                self.stats.unproven_held.fetch_add(1, Ordering::Relaxed);
            }
            proof::HoldOutcome::Dropped => {
                self.stats.unproven_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a raw frame from the shared socket now, or fails with
    /// `WouldBlock` when the socket buffer is full (the frame is dropped).
    /// To a stream path, the frame is queued on the stream (dropped if the
    /// queue is full).
    pub fn try_send_raw(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        if is_stream_addr(to) {
            self.send_stream(to, std::iter::once(data));
            return Ok(());
        }
        self.inner.try_send(&Transmit {
            destination: self.to_wire(to),
            ecn: None,
            contents: data,
            segment_size: None,
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

    /// Registers a relay path and returns its virtual address; the same route
    /// always gets the same address.
    pub fn add_relay_route(&self, route: RelayRoute) -> SocketAddr {
        let route = RelayRoute {
            server: canonical(route.server),
            channel: route.channel,
        };
        let mut table = self.relays.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(addr) = table.by_route.get(&route) {
            return *addr;
        }
        let n = self.next_virtual.fetch_add(1, Ordering::Relaxed);
        let [_, b, c, d] = n.to_be_bytes();
        // 240.b.c.d:(port from the channel, never 0)
        let port = u16::try_from(route.channel % 65535 + 1).unwrap_or(1);
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(240, b, c, d)), port);
        table.by_virtual.insert(addr, route);
        table.by_route.insert(route, addr);
        addr
    }

    /// Removes a relay path.
    pub fn remove_relay_route(&self, virtual_addr: SocketAddr) {
        let mut table = self.relays.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = table.by_virtual.remove(&canonical(virtual_addr)) {
            table.by_route.remove(&route);
        }
    }

    /// Moves every relay route whose server is `from` to server `to`,
    /// keeping their virtual addresses (so connections over them carry on),
    /// e.g. when the bootstrap link moves from TCP back to UDP. Returns how
    /// many routes moved.
    pub fn repoint_relay_routes(&self, from: SocketAddr, to: SocketAddr) -> usize {
        let (from, to) = (canonical(from), canonical(to));
        let mut table = self.relays.write().unwrap_or_else(PoisonError::into_inner);
        let moved: Vec<(SocketAddr, RelayRoute)> = table
            .by_virtual
            .iter()
            .filter(|(_, r)| r.server == from)
            .map(|(v, r)| (*v, *r))
            .collect();
        for (virtual_addr, old) in &moved {
            let new = RelayRoute {
                server: to,
                channel: old.channel,
            };
            table.by_route.remove(old);
            table.by_route.insert(new, *virtual_addr);
            table.by_virtual.insert(*virtual_addr, new);
        }
        moved.len()
    }

    /// The relay route behind a virtual address.
    pub fn relay_route(&self, virtual_addr: SocketAddr) -> Option<RelayRoute> {
        self.relays
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_virtual
            .get(&canonical(virtual_addr))
            .copied()
    }

    /// Bootstrap side: forwards relay frames arriving from `from.server` on
    /// `from.channel` to `to.server`, re-labelled with `to.channel`, within
    /// `limit` for this direction and the sender's `budget`. Both addresses
    /// must be proven: the peers' handshake addresses, or addresses that
    /// answered a challenge ([`crate::proto::raw::AddressProof`]); never a
    /// connection's current `remote_address()`, which a spoofed packet can
    /// move.
    pub fn set_relay_forward(
        &self,
        from: RelayRoute,
        to: RelayRoute,
        limit: RelayLimit,
        budget: Arc<RelayBudget>,
    ) {
        let from = RelayRoute {
            server: canonical(from.server),
            channel: from.channel,
        };
        let forward = Forward {
            to: RelayRoute {
                server: canonical(to.server),
                channel: to.channel,
            },
            limit: Mutex::new(TokenBucket::new(
                limit.bytes_per_sec,
                limit.burst_bytes,
                Instant::now(),
            )),
            budget,
        };
        self.forwards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(from, forward);
    }

    /// Gives back the memory of relay and forwarding tables much larger than
    /// what they hold (after a flood).
    pub fn shrink_tables(&self) {
        let mut forwards = self
            .forwards
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if forwards.capacity() > 64 && forwards.len() * 4 < forwards.capacity() {
            forwards.shrink_to_fit();
        }
        drop(forwards);
        let mut relays = self.relays.write().unwrap_or_else(PoisonError::into_inner);
        if relays.by_route.capacity() > 64 && relays.by_route.len() * 4 < relays.by_route.capacity()
        {
            relays.by_route.shrink_to_fit();
            relays.by_virtual.shrink_to_fit();
        }
    }

    /// Bootstrap side: stops forwarding frames from `from`.
    pub fn remove_relay_forward(&self, from: RelayRoute) {
        let from = RelayRoute {
            server: canonical(from.server),
            channel: from.channel,
        };
        self.forwards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&from);
    }

    /// Forwards one relay frame if a forwarding entry matches; returns
    /// whether one did.
    fn forward(&self, from: RelayRoute, segment: &[u8]) -> bool {
        let forwards = self.forwards.read().unwrap_or_else(PoisonError::into_inner);
        let Some(forward) = forwards.get(&from) else {
            return false;
        };
        let now = Instant::now();
        let allowed = forward
            .limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(segment.len() as f64, now);
        if !allowed {
            self.stats.forward_limited.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !forward.budget.try_take(segment.len(), now) {
            self.stats
                .forward_budget_limited
                .fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let mut frame = segment.to_vec();
        if let Some(header) = frame.first_chunk_mut::<{ RelayHeader::LEN }>() {
            encode_relay_header(forward.to.channel, header);
        }
        // Best effort, like any router: a full socket buffer drops the frame.
        if self.try_send_raw(forward.to.server, &frame).is_ok() {
            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            self.stats
                .forwarded_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
        true
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

    fn send_relayed(&self, transmit: &Transmit<'_>, route: RelayRoute) -> io::Result<()> {
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let count = transmit.contents.len().div_ceil(segment);
        let header = RelayHeader {
            channel: route.channel,
        }
        .to_bytes();
        if is_stream_addr(route.server) {
            let frames = transmit.contents.chunks(segment).map(|chunk| {
                let mut frame = Vec::with_capacity(RelayHeader::LEN + chunk.len());
                frame.extend_from_slice(&header);
                frame.extend_from_slice(chunk);
                frame
            });
            let frames: Vec<Vec<u8>> = frames.collect();
            self.send_stream(route.server, frames.iter().map(Vec::as_slice));
            self.stats
                .relay_out
                .fetch_add(count as u64, Ordering::Relaxed);
            return Ok(());
        }
        let mut buf = Vec::with_capacity(transmit.contents.len() + count * RelayHeader::LEN);
        for chunk in transmit.contents.chunks(segment) {
            buf.extend_from_slice(&header);
            buf.extend_from_slice(chunk);
        }
        self.inner.try_send(&Transmit {
            destination: self.to_wire(route.server),
            ecn: transmit.ecn,
            contents: &buf,
            segment_size: transmit.segment_size.map(|s| s + RelayHeader::LEN),
            src_ip: self.source_ip(transmit.src_ip),
        })?;
        self.stats
            .relay_out
            .fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Sorts one received segment: `Some((source, payload offset))` if quinn
    /// should see it, `None` if it was consumed here.
    fn classify(&self, from: SocketAddr, segment: &[u8]) -> Option<(SocketAddr, usize)> {
        let first = *segment.first()?;
        if classify(first) == PacketClass::Quic {
            return Some((from, 0));
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
            let virtual_addr = self
                .relays
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .by_route
                .get(&route)
                .copied();
            return match virtual_addr {
                Some(addr) => {
                    self.stats.relay_in.fetch_add(1, Ordering::Relaxed);
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
    fn ingest_stream(&self, addr: SocketAddr, datagram: &[u8]) -> bool {
        self.stats.stream_frames_in.fetch_add(1, Ordering::Relaxed);
        let Some(&first) = datagram.first() else {
            return false;
        };
        // No hole punching over TCP: only QUIC and relay frames are taken.
        if classify(first) == PacketClass::Raw && first != raw::RELAY_DATA {
            self.stats.stream_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some((from, offset)) = self.classify(self.to_wire(addr), datagram) else {
            return false;
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= PENDING_QUEUE {
            return false;
        }
        pending.push_back((
            from,
            None,
            datagram.get(offset..).unwrap_or_default().to_vec(),
        ));
        true
    }

    /// Wakes quinn's receive task after packets were queued from a stream.
    fn wake_recv(&self) {
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
    fn demux(&self, n: usize, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut kept = 0;
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
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for segment in data.chunks(stride) {
                if let Some((from, offset)) = self.classify(m.addr, segment) {
                    if pending.len() < PENDING_QUEUE {
                        pending.push_back((from, m.dst_ip, segment[offset..].to_vec()));
                    }
                }
            }
        }
        kept
    }

    /// Moves pending packets into the receive buffers.
    fn fill_from_pending(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
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

impl AsyncUdpSocket for AntqSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if is_virtual(transmit.destination) {
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
        if self.proven.on.load(Ordering::Relaxed)
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
