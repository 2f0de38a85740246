//! What goes into a [`PeerState`](super::PeerState) and what comes out:
//! the periodic pass's [`Tick`], the decision on a new connection
//! ([`Admission`]) and the [`PeerAction`]s the driver carries out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::nat::PathCounters;

/// A connection, as the driver names it (quinn's `stable_id`).
pub type ConnId = usize;

/// A connection's liveness counters at one moment, for [`Tick`].
#[derive(Clone, Copy, Debug)]
pub struct PathSample {
    /// The connection sampled.
    pub conn: ConnId,
    /// Whether it is still open.
    pub open: bool,
    /// Its counters ([`Liveness`]).
    pub counters: PathCounters,
}

/// The bootstrap link requests go through, as a [`Tick`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkView {
    /// The link's address (the bootstrap's UDP address, or a TCP stream
    /// path's virtual address): requests name it in [`PeerAction`]s.
    pub addr: SocketAddr,
    /// Whether the bootstrap has told us our server-reflexive address:
    /// candidates go out only then, since behind NAT it is the one that
    /// matters.
    pub observed: bool,
}

/// What the periodic pass needs from the driver.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// The direct connection's counters, if there is one.
    pub direct: Option<PathSample>,
    /// The relayed connection's counters, if there is one.
    pub relay: Option<PathSample>,
    /// The bootstrap link to use (the first connected one that is not
    /// suspect), if any.
    pub link: Option<LinkView>,
}

/// The decision on a new connection ([`PeerState::on_connection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The connection becomes the path; `replaces` was the path before
    /// (the driver closes it after a grace period if still open).
    Install {
        /// The connection it replaces.
        replaces: Option<ConnId>,
        /// Set on the peer's first connection: time since the start.
        first_connect: Option<Duration>,
        /// Set on the peer's first direct connection: time since the start.
        first_direct: Option<Duration>,
    },
    /// A live connection of the same kind exists and wins the tie-break:
    /// the new one is closed after a grace period.
    Duplicate,
}

/// What the driver must do for the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Dial the peer at `addr` (its endpoint, a punched address, or with
    /// `relayed` a relay channel's virtual address); report the end with
    /// [`PeerState::on_dial_done`].
    Dial {
        /// Where.
        addr: SocketAddr,
        /// Whether `addr` is a relay channel.
        relayed: bool,
    },
    /// Ask the bootstrap at `via` for a relay channel with the peer.
    RequestRelay {
        /// The link's address.
        via: SocketAddr,
    },
    /// Gather our candidates and hand them to [`PeerState::announcement`],
    /// then send what it returns to the peer through `via`.
    Announce {
        /// The link's address.
        via: SocketAddr,
    },
    /// Leader: start a coordinated punch through `via` (pick a round and a
    /// token, send PUNCH_ME_NOW, start the session, then
    /// [`PeerState::on_punch_started`]).
    InitiatePunch {
        /// The link's address.
        via: SocketAddr,
        /// Birthday probing too ([`crate::nat::birthday`]), with our side:
        /// `Some(true)` easy, `Some(false)` hard (send BIRTHDAY_ME_NOW as
        /// well as PUNCH_ME_NOW, and run both sessions).
        birthday: Option<bool>,
    },
    /// The peer asked us to punch: start the session.
    JoinPunch {
        /// The link the request came through (its RTT times the start).
        via: SocketAddr,
        /// The punch round.
        round: u32,
        /// The session's token.
        token: [u8; 16],
        /// Relative start.
        delay_ms: u64,
        /// Absolute start (µs since the epoch), 0 if none.
        start_at_unix_micros: u64,
        /// The leader's current public address, if not a candidate already.
        also: Option<SocketAddr>,
    },
    /// The peer asked for birthday probing (our side is the one
    /// `BIRTHDAY_ME_NOW` did not name for the sender): start the session.
    JoinBirthday {
        /// The link the request came through.
        via: SocketAddr,
        /// The round.
        round: u32,
        /// The session's token.
        token: [u8; 16],
        /// Relative start.
        delay_ms: u64,
        /// Absolute start (µs since the epoch), 0 if none.
        start_at_unix_micros: u64,
        /// The easy side's public address.
        easy: SocketAddr,
        /// The hard side's public IP.
        hard: std::net::IpAddr,
        /// Whether we are the easy side.
        we_easy: bool,
    },
    /// Drop the direct connection (traffic moves to the relay): close it
    /// with `why`, count it, and make every connection ping (our address
    /// may have changed behind a NAT).
    DropDirect {
        /// The connection.
        conn: ConnId,
        /// Why ([`STALLED`], [`PEER_LOST`]).
        why: &'static str,
    },
    /// The relayed connection stalled: close it; its channel (if any) is
    /// retired and its bootstrap passed over for a while.
    RelayStalled {
        /// The connection.
        conn: ConnId,
        /// Its channel's virtual address, if it ran on the current one.
        route: Option<SocketAddr>,
    },
    /// A relay channel is gone: remove its route from the socket, and close
    /// `conn`, the connection that ran over it, if any.
    RetireRelay {
        /// The channel's virtual address.
        route: SocketAddr,
        /// The connection on it.
        conn: Option<ConnId>,
    },
}

/// Fixed facts about the peer.
#[derive(Clone, Copy, Debug)]
pub struct PeerFacts {
    /// Whether we lead coordination (our key is the smaller one).
    pub leads: bool,
    /// The peer's configured endpoint, if any.
    pub endpoint: Option<SocketAddr>,
    /// When the overlay started.
    pub started: Instant,
    /// How long a punch session runs at most, linger included.
    pub punch_busy: Duration,
}
