//! Bootstrap links: one task per configured bootstrap keeps a connection
//! up (UDP, or TCP when UDP does not get through, moving back to UDP when it
//! works again) and serves the bootstrap's messages: our observed address,
//! its observe socket (see `observe`), relay grants, requests and closes,
//! and what peers forward to us.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng as _;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::observe::ObserveState;
use super::stats::LinkStats;
use super::{network, Overlay};
use crate::identity::PeerId;
use crate::nat::canonical;
use crate::node::link_state::Reconnect;
use crate::node::peer_state::MAINTAIN_INTERVAL;
use crate::node::BootstrapAddr;
use crate::node::PeerConnection;
use crate::proto::{ControlMessage, UnavailableReason};
use crate::socket::{is_virtual, AntqSocket, RelayRoute, Transport};

/// How long UDP to a bootstrap may take before TCP is tried in parallel.
const TCP_FALLBACK_DELAY: Duration = Duration::from_secs(1);
/// While a bootstrap is reached over TCP, UDP is retried this often (plus up
/// to 30 % jitter).
const UDP_RETRY: Duration = Duration::from_secs(30);
/// One configured bootstrap: its link while connected, the task keeping it
/// up, and its counters.
pub(super) struct BootSlot {
    pub(super) server: BootstrapAddr,
    pub(super) link: Option<Link>,
    pub(super) counters: Arc<LinkStats>,
    task: Option<tokio::task::AbortHandle>,
}

impl BootSlot {
    pub(super) fn new(server: BootstrapAddr) -> Self {
        Self {
            server,
            link: None,
            counters: Arc::default(),
            task: None,
        }
    }
}

/// One connected bootstrap.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) conn: PeerConnection,
    /// The address the connection runs to: the bootstrap's UDP address, or
    /// a stream path's virtual address on TCP. Relay routes through this
    /// bootstrap use it as their server.
    pub(super) addr: SocketAddr,
    pub(super) transport: Transport,
    pub(super) observed: Arc<Mutex<Option<SocketAddr>>>,
    /// The bootstrap's observe socket and its answer (a second observation).
    pub(super) observe: Arc<Mutex<ObserveState>>,
}

impl Link {
    pub(super) fn new(conn: PeerConnection) -> Self {
        let addr = canonical(conn.remote_address());
        Self {
            conn,
            addr,
            transport: Transport::of(addr),
            observed: Arc::default(),
            observe: Arc::default(),
        }
    }
}

/// Closes a stream path when dropped, unless [`StreamGuard::keep`] was called.
struct StreamGuard {
    socket: Arc<AntqSocket>,
    addr: Option<SocketAddr>,
}

impl StreamGuard {
    fn keep(mut self) {
        self.addr = None;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(addr) = self.addr {
            self.socket.close_stream(addr);
        }
    }
}

/// Closes a stream path a little later, so that the CONNECTION_CLOSE of the
/// connection over it still goes out.
fn close_stream_later(socket: Arc<AntqSocket>, addr: SocketAddr) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        socket.close_stream(addr);
    });
}

impl Overlay {
    /// Starts the task that keeps the link to `server` up.
    pub(super) fn spawn_link(&self, server: BootstrapAddr) {
        let this = self.clone();
        let task = tokio::spawn(async move { this.bootstrap_link(server).await });
        let mut boots = self
            .inner
            .boots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match boots.iter_mut().find(|b| b.server == server) {
            Some(slot) => slot.task = Some(task.abort_handle()),
            None => task.abort(),
        }
    }

    /// The link to `server` is up (`Some`) or gone (`None`). Returns false
    /// when `server` is no longer configured (a reload removed it).
    fn set_link(&self, server: BootstrapAddr, link: Option<Link>) -> bool {
        let mut boots = self
            .inner
            .boots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match boots.iter_mut().find(|b| b.server == server) {
            Some(slot) => {
                slot.link = link;
                true
            }
            None => false,
        }
    }

    fn link_counters(&self, server: BootstrapAddr) -> Arc<LinkStats> {
        self.inner
            .boots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|b| b.server == server)
            .map(|b| b.counters.clone())
            .unwrap_or_default()
    }

    /// Replaces the list of bootstraps (a reload): links to bootstraps no
    /// longer listed close (their relay channels go with them; peers ask the
    /// others), new ones are connected, the rest are untouched. The order of
    /// `servers` is the new order of preference.
    pub fn set_bootstraps(&self, servers: &[BootstrapAddr]) {
        let (gone, added) = {
            let mut boots = self
                .inner
                .boots
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut old: Vec<BootSlot> = std::mem::take(&mut *boots);
            for server in servers {
                match old.iter().position(|b| b.server == *server) {
                    Some(i) => boots.push(old.remove(i)),
                    None => boots.push(BootSlot::new(*server)),
                }
            }
            let added: Vec<BootstrapAddr> = boots
                .iter()
                .filter(|b| b.task.is_none())
                .map(|b| b.server)
                .collect();
            (old, added)
        };
        for slot in gone {
            if let Some(task) = slot.task {
                task.abort();
            }
            if let Some(link) = slot.link {
                tracing::info!(addr = %slot.server.addr, "bootstrap removed; closing its link");
                link.conn.close("bootstrap removed");
                let via = link.addr;
                self.retire_relays_where(|r| r.server == via);
                if link.transport == Transport::Tcp {
                    close_stream_later(self.inner.node.socket().clone(), link.addr);
                }
            }
        }
        for server in added {
            tracing::info!(addr = %server.addr, "bootstrap added");
            self.spawn_link(server);
        }
        for slot in self.slots().values() {
            slot.wake.notify_one();
        }
    }

    /// Keeps the link to `server` up, reconnecting with backoff and jitter.
    /// Connects over UDP, or over TCP when UDP does not get through (see
    /// [`Self::connect_bootstrap`]); while on TCP, UDP is retried every
    /// [`UDP_RETRY`] and the link moves back to it when it works.
    pub(super) async fn bootstrap_link(self, server: BootstrapAddr) {
        let span = tracing::info_span!("bootstrap", addr = %server.addr);
        let mut schedule = Reconnect::new();
        loop {
            let attempt = self.connect_bootstrap(server).instrument(span.clone());
            let result = match schedule.attempt_timeout(Instant::now()) {
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {limit:?}"))),
                None => attempt.await,
            };
            let counters = self.link_counters(server);
            match result {
                Ok(conn) => {
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    if schedule.was_up() {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    schedule.on_connected();
                    let mut link = Link::new(conn);
                    loop {
                        if !self.set_link(server, Some(link.clone())) {
                            link.conn.close("bootstrap removed");
                            return;
                        }
                        tracing::info!(parent: &span, transport = %link.transport, "bootstrap connected");
                        self.register_member(&link);
                        for slot in self.slots().values() {
                            slot.wake.notify_one();
                        }
                        let upgraded = match link.transport {
                            Transport::Udp => {
                                self.serve_link(&link, &counters)
                                    .instrument(span.clone())
                                    .await;
                                None
                            }
                            Transport::Tcp => {
                                tokio::select! {
                                    () = self.serve_link(&link, &counters).instrument(span.clone()) => None,
                                    () = self.watch_stream(&link) => None,
                                    conn = self.retry_udp(server).instrument(span.clone()) => Some(conn),
                                }
                            }
                        };
                        let Some(conn) = upgraded else { break };
                        // Back on UDP: relay routes through the stream move
                        // to the UDP address under the same virtual
                        // addresses, so relayed connections carry on (the
                        // bootstrap moves its forwarding when it sees the new
                        // connection).
                        let socket = self.inner.node.socket();
                        let moved = socket.repoint_relay_routes(link.addr, canonical(server.addr));
                        tracing::info!(parent: &span, relay_routes = moved, "bootstrap reachable over UDP again; leaving TCP");
                        link.conn.close("moved to UDP");
                        close_stream_later(socket.clone(), link.addr);
                        link = Link::new(conn);
                    }
                    self.set_link(server, None);
                    if link.transport == Transport::Tcp {
                        self.inner.node.socket().close_stream(link.addr);
                    }
                    counters.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(parent: &span, "bootstrap connection lost");
                    // Its relay channels went with it (over UDP or the TCP
                    // stream): drop them now rather than at their idle
                    // timeout; peers ask the next bootstrap (or this one,
                    // once back) for new ones.
                    let via = link.addr;
                    self.retire_relays_where(|r| r.server == via);
                    for slot in self.slots().values() {
                        slot.wake.notify_one();
                    }
                    schedule.on_lost(Instant::now());
                }
                Err(error) => {
                    counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(parent: &span, %error, "bootstrap connect failed");
                }
            }
            let jitter = rand::thread_rng().gen_range(0.0..1.0);
            tokio::time::sleep(schedule.next_wait(Instant::now(), jitter)).await;
        }
    }

    /// Connects to a bootstrap, happy-eyeballs style: UDP first; if it has
    /// not connected after [`TCP_FALLBACK_DELAY`] (or failed), a TCP stream
    /// path is tried in parallel; the first to connect wins.
    async fn connect_bootstrap(&self, server: BootstrapAddr) -> Result<PeerConnection, String> {
        let node = &self.inner.node;
        let (failed_tx, failed_rx) = oneshot::channel::<()>();
        let udp = async move {
            let result = node.connect(server.peer, &[server.addr]).await;
            if result.is_err() {
                let _ = failed_tx.send(());
            }
            result
        };
        let tcp = async move {
            let _ = tokio::time::timeout(TCP_FALLBACK_DELAY, failed_rx).await;
            tracing::debug!("trying the bootstrap over TCP");
            let socket = node.socket();
            let timeout = self.inner.config.transport.connect_timeout;
            let addr = socket
                .connect_stream(server.addr, timeout)
                .await
                .map_err(|e| e.to_string())?;
            // Closes the stream unless the connection over it wins.
            let guard = StreamGuard {
                socket: socket.clone(),
                addr: Some(addr),
            };
            let conn = node
                .connect(server.peer, &[addr])
                .await
                .map_err(|e| e.to_string())?;
            guard.keep();
            Ok::<_, String>(conn)
        };
        tokio::pin!(udp, tcp);
        let (mut udp_error, mut tcp_error) = (None, None);
        loop {
            tokio::select! {
                result = &mut udp, if udp_error.is_none() => match result {
                    Ok(conn) => return Ok(conn),
                    Err(e) => udp_error = Some(e.to_string()),
                },
                result = &mut tcp, if tcp_error.is_none() => match result {
                    Ok(conn) => return Ok(conn),
                    Err(e) => tcp_error = Some(e),
                },
            }
            if let (Some(u), Some(t)) = (&udp_error, &tcp_error) {
                return Err(format!("over UDP: {u}; over TCP: {t}"));
            }
        }
    }

    /// While the link is on TCP: tries UDP every [`UDP_RETRY`] (with jitter)
    /// and returns the first connection that completes.
    async fn retry_udp(&self, server: BootstrapAddr) -> PeerConnection {
        loop {
            let jitter = rand::thread_rng().gen_range(0.0..0.3);
            tokio::time::sleep(UDP_RETRY.mul_f64(1.0 + jitter)).await;
            match self.inner.node.connect(server.peer, &[server.addr]).await {
                Ok(conn) => return conn,
                Err(error) => tracing::debug!(%error, "bootstrap still unreachable over UDP"),
            }
        }
    }

    /// Returns when the link's TCP stream has closed (the QUIC connection
    /// over it would otherwise only notice at its idle timeout).
    async fn watch_stream(&self, link: &Link) {
        let socket = self.inner.node.socket();
        while socket.has_stream(link.addr) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::info!("TCP stream to the bootstrap closed");
        link.conn.close("TCP stream closed");
    }

    async fn serve_link(&self, link: &Link, counters: &LinkStats) {
        let mut monitor = network::LinkMonitor::new();
        let mut tick = tokio::time::interval(MAINTAIN_INTERVAL);
        loop {
            let msg = tokio::select! {
                msg = link.conn.control().recv() => match msg {
                    Some(msg) => msg,
                    None => return,
                },
                _ = tick.tick() => {
                    if monitor.stalled(&link.conn) {
                        counters.stalled.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("bootstrap link stalled");
                        link.conn.close("stalled");
                        return;
                    }
                    continue;
                }
            };
            match msg {
                ControlMessage::ObservedAddress { addr, .. } if is_virtual(addr) => {
                    tracing::debug!(%addr, "virtual observed address ignored");
                }
                ControlMessage::ObservedAddress { addr, .. } => {
                    let addr = canonical(addr);
                    let previous = link
                        .observed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .replace(addr);
                    tracing::info!(%addr, "observed address");
                    // A new public address (our NAT renumbered or remapped
                    // us): peers without a direct path need it now.
                    let moved = previous.is_some_and(|p| p != addr);
                    if moved {
                        // Our mapping toward the observe socket may have
                        // changed too.
                        self.observe_again(link);
                    }
                    for slot in self.slots().values() {
                        if moved {
                            slot.state().announce_soon();
                        }
                        slot.wake.notify_one();
                    }
                }
                ControlMessage::ObserveAt { port } => self.on_observe_at(link, port),
                ControlMessage::RelayGrant { peer, channel } => {
                    let Some(slot) = self.slot_of(peer) else {
                        continue;
                    };
                    let route = RelayRoute {
                        server: link.addr,
                        channel,
                    };
                    let virtual_addr = self.inner.node.socket().add_relay_route(route);
                    tracing::info!(peer = %slot.id.short(), channel, "relay granted");
                    slot.state().on_relay_granted(virtual_addr);
                    slot.wake.notify_one();
                }
                ControlMessage::RelayRequest { peer } => {
                    // A peer asked this bootstrap for a relay with us; it
                    // gets one only once we ask too (see
                    // `PeerState::handle_relay_request`).
                    let Some(slot) = self.slot_of(peer) else {
                        let msg = ControlMessage::RelayRequest { peer };
                        if !self.message_from_unknown(peer, link.addr, msg) {
                            tracing::debug!("relay request from an unconfigured peer ignored");
                        }
                        continue;
                    };
                    let ours = self.relay_server(&slot);
                    tracing::debug!(peer = %slot.id.short(), "peer asked for a relay");
                    slot.state().handle_relay_request(link.addr, ours);
                    slot.wake.notify_one();
                }
                ControlMessage::RelayClose { channel } => {
                    let route = RelayRoute {
                        server: link.addr,
                        channel,
                    };
                    self.retire_relays_where(|r| r == route);
                }
                ControlMessage::Forward { peer, inner } => {
                    let Some(slot) = self.slot_of(peer) else {
                        if !self.message_from_unknown(peer, link.addr, *inner) {
                            tracing::debug!("forwarded message from an unconfigured peer dropped");
                        }
                        continue;
                    };
                    tracing::trace!(peer = %slot.id.short(), msg = ?inner, "forwarded");
                    slot.state()
                        .handle_forwarded(link.addr, *inner, Instant::now());
                    slot.wake.notify_one();
                }
                ControlMessage::Member { query, cert } => self.on_member(query, *cert),
                ControlMessage::NoMember { query } => self.on_no_member(query),
                ControlMessage::PeerUnavailable { peer, reason } => {
                    if reason != UnavailableReason::NotConnected {
                        tracing::debug!(?reason, peer = ?PeerId::from_bytes(peer).ok(), "bootstrap refused a request");
                    }
                }
                other => tracing::debug!(?other, "unexpected message from bootstrap"),
            }
        }
    }
}
