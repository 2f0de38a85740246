//! Runs one [`PunchSession`] on the shared socket: encodes its probes and
//! acks as raw frames, feeds it the authenticated probes that arrive, and
//! reports the outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::nat::{self, PunchEvent, PunchSession};
use crate::proto::raw::{Probe, ProbeKind};
use crate::socket::AntqSocket;

/// A received probe or ack for a session, already matched by token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeIn {
    pub from: SocketAddr,
    pub probe: Probe,
}

/// Drives `session` until it is closed. Sends the first outcome on `outcome`.
pub(crate) async fn run(
    mut session: PunchSession,
    token: [u8; 16],
    socket: Arc<AntqSocket>,
    mut probes: mpsc::Receiver<ProbeIn>,
    outcome: oneshot::Sender<PunchEvent>,
) {
    let mut outcome = Some(outcome);
    let mut buf = Vec::with_capacity(256);
    loop {
        while let Some(t) = session.poll_transmit() {
            let probe = Probe {
                kind: match t.probe.kind {
                    nat::ProbeKind::Probe => ProbeKind::Probe,
                    nat::ProbeKind::Ack => ProbeKind::Ack,
                },
                token,
                round: t.probe.round,
                seq: t.probe.seq,
            };
            buf.clear();
            probe.encode(t.size_hint, &mut buf);
            if let Err(error) = socket.try_send_raw(t.dst, &buf) {
                tracing::debug!(dst = %t.dst, %error, "probe not sent");
            }
        }
        while let Some(event) = session.poll_event() {
            tracing::debug!(?event, "punch outcome");
            if let Some(tx) = outcome.take() {
                let _ = tx.send(event);
            }
        }
        if session.is_closed() {
            return;
        }
        let deadline = session.poll_timeout();
        tokio::select! {
            received = probes.recv() => match received {
                Some(p) => {
                    let kind = match p.probe.kind {
                        ProbeKind::Probe => nat::ProbeKind::Probe,
                        ProbeKind::Ack => nat::ProbeKind::Ack,
                    };
                    session.handle_probe(p.from, kind, p.probe.round, p.probe.seq, Instant::now());
                }
                None => return,
            },
            () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
