//! An authenticated connection to one peer ([`PeerConnection`]): its
//! datagrams, streams, control channel and counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::control::ControlChannel;
use super::data::{DataKeys, DataSession, EXPORTER_LABEL, EXPORTER_LEN};
use crate::identity::PeerId;
use crate::socket;

/// An authenticated connection to one peer.
#[derive(Clone, Debug)]
pub struct PeerConnection {
    pub(super) conn: quinn::Connection,
    pub(super) peer: PeerId,
    pub(super) origin: SocketAddr,
    pub(super) control: Arc<ControlChannel>,
    /// The data plane, when both ends negotiated it (and it is on here).
    pub(super) data: Option<Arc<DataSession>>,
    /// The local address the connection was made at (server side, where
    /// the host has several): data frames leave from it.
    pub(super) local_ip: Option<std::net::IpAddr>,
}

/// The data plane session of `conn` if it is `enabled` here and its
/// handshake negotiated it ([`crate::tls::ALPN_DATA`]), keyed from its TLS
/// exporter.
pub(super) fn data_session(
    conn: &quinn::Connection,
    origin: SocketAddr,
    enabled: bool,
) -> Option<Arc<DataSession>> {
    if !enabled || !crate::tls::negotiated_data_plane(conn) {
        return None;
    }
    let mut material = [0; EXPORTER_LEN];
    conn.export_keying_material(&mut material, EXPORTER_LABEL, b"")
        .ok()?;
    let client = conn.side() == quinn::Side::Client;
    let keys = DataKeys::from_exporter(&material, client);
    Some(Arc::new(DataSession::new(keys, origin)))
}

impl PeerConnection {
    /// The peer's authenticated key.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The peer's current UDP address, as QUIC sees it. QUIC moves a
    /// connection to the source of the newest packet *before* it has
    /// validated that address, so this may be a spoofed one for a moment:
    /// never send anything on the peer's behalf there (see
    /// [`Self::origin`] and the bootstrap's address proofs).
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The address the connection was made with (canonical form): the one
    /// we dialed, or the source of an accepted handshake, which the QUIC
    /// Retry (or the TCP connection of a stream path) validated.
    pub fn origin(&self) -> SocketAddr {
        self.origin
    }

    /// Current round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// The largest datagram that can be sent now, if the peer accepts datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.conn.max_datagram_size()
    }

    /// Sends an unreliable datagram.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), quinn::SendDatagramError> {
        self.conn.send_datagram(data)
    }

    /// Receives the next datagram.
    pub async fn recv_datagram(&self) -> Result<Bytes, quinn::ConnectionError> {
        self.conn.read_datagram().await
    }

    /// A datagram that has already arrived, without waiting: `None` when
    /// there is none yet.
    pub fn try_recv_datagram(&self) -> Option<Result<Bytes, quinn::ConnectionError>> {
        crate::now_or_never(self.conn.read_datagram())
    }

    /// Opens a bidirectional stream.
    pub async fn open_bi(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
        self.conn.open_bi().await
    }

    /// Accepts a bidirectional stream opened by the peer.
    pub async fn accept_bi(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
        self.conn.accept_bi().await
    }

    /// Resolves when the connection closes, with the reason.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.conn.closed().await
    }

    /// Closes the connection.
    pub fn close(&self, reason: &str) {
        self.conn.close(0u32.into(), reason.as_bytes());
    }

    /// Transport statistics.
    pub fn stats(&self) -> quinn::ConnectionStats {
        self.conn.stats()
    }

    /// The counters dead-path detection needs ([`crate::nat::Liveness`]):
    /// QUIC's, plus the data plane's frames (a receiver answers frames it
    /// gets when it has sent nothing for a while, so they are answered as
    /// QUIC's packets are).
    pub fn path_counters(&self) -> crate::nat::PathCounters {
        let stats = self.conn.stats();
        let f = &stats.frame_tx;
        let (frames_sent, frames_received) = self
            .data
            .as_ref()
            .map_or((0, 0), |d| (d.sent(), d.received()));
        crate::nat::PathCounters {
            eliciting_sent: f.datagram
                + f.stream
                + f.ping
                + f.crypto
                + f.max_data
                + f.max_stream_data
                + f.new_connection_id
                + f.retire_connection_id
                + f.path_challenge
                + f.path_response
                + frames_sent,
            datagrams_received: stats.udp_rx.datagrams + frames_received,
        }
    }

    /// The connection's control channel.
    pub fn control(&self) -> &ControlChannel {
        &self.control
    }

    /// Whether this connection runs over a relay (a virtual address that
    /// is not a side path: a side path is direct, from another socket).
    pub fn is_relayed(&self) -> bool {
        let remote = self.conn.remote_address();
        socket::is_virtual(remote) && !socket::is_side_addr(remote)
    }

    /// Our address the connection was reached at, when known.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        self.local_ip
    }

    /// The connection's data plane, if both ends use it.
    pub fn data(&self) -> Option<&Arc<DataSession>> {
        self.data.as_ref()
    }

    /// The underlying quinn connection.
    pub fn quinn(&self) -> &quinn::Connection {
        &self.conn
    }
}
