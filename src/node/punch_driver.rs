//! Runs one [`PunchSession`] on the shared socket: encodes its probes and
//! acks as raw frames, feeds it the authenticated probes that arrive, and
//! reports the outcome.
//!
//! The first transmits are special. Behind two Linux NATs with
//! port-restricted filtering, whichever peer's first probe reaches the other
//! NAT before that NAT has a mapping toward it leaves a half-open conntrack
//! entry there, and the other peer's own outgoing packet then gets a new
//! port (the conntrack port clash). The session therefore starts with
//! low-TTL priming probes that open our NAT's mappings without reaching the
//! peer's NAT (see [`crate::nat::PunchConfig::prime_ttl`]); full probes
//! follow `prime_lead` later. Where the TTL does reach the peer's NAT (a
//! peer one hop away, a public host), the two sides' first packets must
//! still leave within the one-way latency of each other, which can be tens
//! of microseconds. So the first batch is computed ahead of time (the
//! session is sans-IO: it can be told the time of the batch before it
//! comes) and sent from a dedicated thread that sleeps until just before the
//! agreed instant and then spins.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::nat::{PunchEvent, PunchSession};
use crate::proto::raw::Probe;
use crate::socket::AntqSocket;

/// How long before a deadline the precise sender stops sleeping and spins
/// (OS sleeps and tokio timers wake up late by up to about a millisecond).
const SPIN: Duration = Duration::from_millis(10);

/// Whether a first round is spinning right now. Only one may (at real-time
/// priority, a spinning thread owns its core): when many punches start
/// together (a node with many peers, or a restart of a big mesh), the
/// others only sleep until their instant, up to a millisecond late.
static SPINNING: AtomicBool = AtomicBool::new(false);

/// The right to spin, released on drop.
struct SpinSlot;

impl SpinSlot {
    fn take() -> Option<Self> {
        SPINNING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinSlot)
    }
}

impl Drop for SpinSlot {
    fn drop(&mut self) {
        SPINNING.store(false, Ordering::Release);
    }
}

/// A received probe or ack for a session, already matched by token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeIn {
    pub from: SocketAddr,
    pub probe: Probe,
}

/// Encodes every transmit the session has queued.
fn drain(session: &mut PunchSession, token: [u8; 16]) -> Vec<Outgoing> {
    let mut out = Vec::new();
    while let Some(t) = session.poll_transmit() {
        let probe = Probe {
            kind: t.probe.kind,
            token,
            round: t.probe.round,
            seq: t.probe.seq,
        };
        let mut buf = Vec::with_capacity(t.size_hint.max(Probe::LEN));
        probe.encode(t.size_hint, &mut buf);
        out.push(Outgoing {
            dst: t.dst,
            bytes: buf,
            ttl: t.ttl,
        });
    }
    out
}

/// An encoded probe or ack.
struct Outgoing {
    dst: SocketAddr,
    bytes: Vec<u8>,
    /// IP TTL for a priming probe.
    ttl: Option<u8>,
}

/// Sends `packets` back to back; no logging in between.
fn send_all(socket: &AntqSocket, packets: &[Outgoing]) -> usize {
    packets
        .iter()
        .filter(|p| {
            match p.ttl {
                Some(ttl) => socket.try_send_raw_with_ttl(p.dst, &p.bytes, ttl),
                None => socket.try_send_raw(p.dst, &p.bytes),
            }
            .is_ok()
        })
        .count()
}

/// Sleeps, then spins (if no other first round does), until `at`, then
/// sends `packets`. Returns how many were sent and how late the first one
/// left.
fn send_at(socket: &AntqSocket, at: Instant, packets: &[Outgoing]) -> (usize, Duration) {
    let Some(_slot) = SpinSlot::take() else {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let late = Instant::now().saturating_duration_since(at);
        return (send_all(socket, packets), late);
    };
    if let Some(early) = at.checked_sub(SPIN) {
        let now = Instant::now();
        if early > now {
            std::thread::sleep(early - now);
        }
    }
    let mut now = Instant::now();
    while now < at {
        std::hint::spin_loop();
        now = Instant::now();
    }
    let sent = send_all(socket, packets);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    tracing::trace!(wall_us = wall.as_micros() as u64, "first round left");
    (sent, now - at)
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
    // The first round, precisely on time.
    if let Some(first) = session.poll_timeout().filter(|t| *t > Instant::now()) {
        session.handle_timeout(first);
        let packets = drain(&mut session, token);
        let sender = socket.clone();
        let precise =
            move || antq_platform::with_realtime_priority(|| send_at(&sender, first, &packets));
        match tokio::task::spawn_blocking(precise).await {
            Ok(((sent, late), realtime)) => {
                tracing::trace!(sent, ?late, realtime, "first round sent")
            }

            Err(error) => tracing::warn!(%error, "first-round sender failed"),
        }
    }
    loop {
        let packets = drain(&mut session, token);
        if !packets.is_empty() {
            let sent = send_all(&socket, &packets);
            tracing::trace!(count = packets.len(), sent, "probes sent");
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
                    let Probe { kind, round, seq, .. } = p.probe;
                    session.handle_probe(p.from, kind, round, seq, Instant::now());
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
