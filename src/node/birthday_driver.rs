//! Runs one [`BirthdaySession`]: encodes its probes as raw frames and sends
//! them from the shared socket (socket 0) or the side sockets it asked for
//! ([`SideGroup`]), feeds it the authenticated probes that arrive on either,
//! adopts the winning side socket as a QUIC path, and reports the outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::punch_driver::ProbeIn;
use crate::nat::{BirthdayEvent, BirthdaySession, BirthdayStats, BirthdayTransmit};
use crate::proto::raw::{parse_raw, Probe, RawFrame};
use crate::socket::{AntqSocket, SideGroup, SideRaw};

/// A validated birthday path, as QUIC should dial or accept it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BirthdayPath {
    /// The peer's address; a side path's virtual address on the hard side.
    pub remote: SocketAddr,
    /// Whether `remote` is a side path (ours to remove when unused).
    pub side: bool,
}

fn encode(t: &BirthdayTransmit, token: [u8; 16]) -> Vec<u8> {
    let probe = Probe {
        kind: t.probe.kind,
        token,
        round: t.probe.round,
        seq: t.probe.seq,
    };
    let mut buf = Vec::with_capacity(Probe::LEN);
    probe.encode(Probe::LEN, &mut buf);
    buf
}

/// The side sockets of an attempt: all of them, or the adopted one.
enum Sides {
    None,
    Group(SideGroup),
    Adopted {
        socket: u16,
        remote: SocketAddr,
        path: SocketAddr,
    },
}

/// Sends what the session queued. Returns how many left.
fn flush(
    session: &mut BirthdaySession,
    token: [u8; 16],
    socket: &AntqSocket,
    sides: &Sides,
) -> usize {
    let mut sent = 0;
    while let Some(t) = session.poll_transmit() {
        let bytes = encode(&t, token);
        let ok = match (t.socket, sides) {
            (0, _) => match t.ttl {
                Some(ttl) => socket.try_send_raw_with_ttl(t.dst, &bytes, ttl),
                None => socket.try_send_raw(t.dst, &bytes),
            },
            (k, Sides::Group(group)) => group.try_send_raw(k, t.dst, &bytes, t.ttl),
            (
                k,
                Sides::Adopted {
                    socket: kept,
                    remote,
                    path,
                },
            ) if k == *kept && t.dst == *remote => socket.try_send_raw_on_side_path(*path, &bytes),
            (k, _) => {
                tracing::debug!(socket = k, "probe for a closed side socket dropped");
                continue;
            }
        };
        if ok.is_ok() {
            sent += 1;
        }
    }
    sent
}

/// Drives `session` until it is done; sends the first outcome on
/// `outcome` (the path, or `None`). On the hard side, `group` holds the
/// session's side sockets: the winner is adopted, the rest closed.
pub(crate) async fn run(
    mut session: BirthdaySession,
    token: [u8; 16],
    socket: Arc<AntqSocket>,
    group: Option<SideGroup>,
    mut probes: mpsc::Receiver<ProbeIn>,
    outcome: oneshot::Sender<Option<BirthdayPath>>,
) -> BirthdayStats {
    let mut outcome = Some(outcome);
    let mut sides = group.map_or(Sides::None, Sides::Group);
    let mut side_rx = match &mut sides {
        Sides::Group(g) => g.take_raw_receiver(),
        _ => None,
    };
    loop {
        flush(&mut session, token, &socket, &sides);
        while let Some(event) = session.poll_event() {
            let path = match event {
                BirthdayEvent::PathValidated {
                    socket: 0, remote, ..
                } => Some(BirthdayPath {
                    remote,
                    side: false,
                }),
                BirthdayEvent::PathValidated {
                    socket: k, remote, ..
                } => match std::mem::replace(&mut sides, Sides::None) {
                    Sides::Group(g) => match g.adopt(k, remote) {
                        Ok(path) => {
                            tracing::debug!(socket = k, %remote, %path, "side socket adopted");
                            sides = Sides::Adopted {
                                socket: k,
                                remote,
                                path,
                            };
                            Some(BirthdayPath {
                                remote: path,
                                side: true,
                            })
                        }
                        Err(error) => {
                            tracing::warn!(%error, "side socket not adopted");
                            None
                        }
                    },
                    other => {
                        sides = other;
                        None
                    }
                },
                BirthdayEvent::Failed => None,
            };
            if let Some(tx) = outcome.take() {
                let _ = tx.send(path);
            }
        }
        if session.is_done() {
            return session.stats();
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            received = probes.recv() => match received {
                Some(p) => {
                    let Probe { kind, round, seq, .. } = p.probe;
                    session.handle_probe(0, p.from, kind, round, seq, Instant::now());
                }
                None => return session.stats(),
            },
            Some(raw) = recv_side(&mut side_rx) => {
                side_probe(&mut session, token, raw);
            }
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
        }
    }
}

/// A frame from a side socket: to the session if it is a probe or ack of
/// this attempt (its token).
fn side_probe(session: &mut BirthdaySession, token: [u8; 16], raw: SideRaw) {
    match parse_raw(&raw.packet.data) {
        Ok(RawFrame::Probe(p)) if p.token == token => {
            session.handle_probe(
                raw.socket,
                raw.packet.from,
                p.kind,
                p.round,
                p.seq,
                Instant::now(),
            );
        }
        _ => {
            tracing::debug!(from = %raw.packet.from, socket = raw.socket, "side frame of no use dropped")
        }
    }
}

async fn recv_side(rx: &mut Option<mpsc::Receiver<SideRaw>>) -> Option<SideRaw> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
