//! The connection table (sans-IO): flows this host started, so that their
//! replies pass the inbound rules. Timeouts follow the kernel's conntrack
//! in spirit (short until a reply or while closing, long once established),
//! and the table is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::flow::{Flow, FlowKey, ICMP, ICMPV6, TCP, UDP};

/// Most flows tracked at once.
pub const MAX_FLOWS: usize = 65_536;
/// A TCP flow before the peer answered, or while closing (FIN/RST seen).
pub const TCP_TRANSIENT: Duration = Duration::from_secs(120);
/// An established TCP flow, idle.
pub const TCP_ESTABLISHED: Duration = Duration::from_secs(2 * 3600);
/// A TCP flow after FIN or RST.
pub const TCP_CLOSING: Duration = Duration::from_secs(10);
/// A UDP flow, idle (kernel: 30 s unreplied, 120 s once both ways).
pub const UDP_IDLE: Duration = Duration::from_secs(120);
/// An ICMP echo or any other protocol's flow, idle.
pub const OTHER_IDLE: Duration = Duration::from_secs(30);

/// How long the last flow seen each way skips the table: a bulk
/// transfer's packets then cost a key comparison, not a hash and a write.
/// Far below every timeout, so a flow refreshed this late is still live.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Entry {
    expires: Instant,
    replied: bool,
}

/// Flows started from this host, keyed as they went out.
#[derive(Debug, Default)]
pub struct Conntrack {
    flows: HashMap<FlowKey, Entry>,
    /// The last flow refreshed by an outbound packet, and when.
    last_out: Option<(FlowKey, Instant)>,
    /// The last flow a reply refreshed (keyed as it went out), and when.
    last_reply: Option<(FlowKey, Instant)>,
    /// Flows not tracked because the table was full of live ones.
    pub refused: u64,
}

impl Conntrack {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flows tracked now (live or not yet swept).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    fn idle_for(flow: &Flow, replied: bool) -> Duration {
        match flow.proto {
            TCP if flow.tcp_flags & 0x05 != 0 => TCP_CLOSING,
            TCP if replied => TCP_ESTABLISHED,
            TCP => TCP_TRANSIENT,
            UDP => UDP_IDLE,
            ICMP | ICMPV6 => OTHER_IDLE,
            _ => OTHER_IDLE,
        }
    }

    /// A packet this host sends: starts or refreshes its flow. ICMP errors
    /// and echo replies start nothing.
    pub fn outbound(&mut self, flow: &Flow, now: Instant) {
        if flow.is_icmp_error() || flow.is_echo_reply() {
            return;
        }
        let key = flow.key();
        if Self::fresh(self.last_out, &key, flow, now) {
            return;
        }
        self.last_out = Some((key, now));
        if let Some(e) = self.flows.get_mut(&key) {
            e.expires = now + Self::idle_for(flow, e.replied);
            return;
        }
        if self.flows.len() >= MAX_FLOWS {
            self.sweep(now);
            if self.flows.len() >= MAX_FLOWS {
                self.refused += 1;
                return;
            }
        }
        self.flows.insert(
            key,
            Entry {
                expires: now + Self::idle_for(flow, false),
                replied: false,
            },
        );
    }

    /// A packet from a peer: whether it is a reply on a flow this host
    /// started (then the flow is refreshed).
    pub fn is_reply(&mut self, flow: &Flow, now: Instant) -> bool {
        let key = flow.reversed();
        if Self::fresh(self.last_reply, &key, flow, now) {
            return true;
        }
        let Some(e) = self.flows.get_mut(&key) else {
            return false;
        };
        if e.expires <= now {
            self.flows.remove(&key);
            self.forget_cached();
            return false;
        }
        e.replied = true;
        e.expires = now + Self::idle_for(flow, true);
        self.last_reply = Some((key, now));
        true
    }

    /// Whether `key` is the cached flow, refreshed less than
    /// [`REFRESH_EVERY`] ago, and `flow` changes nothing (a TCP FIN or RST
    /// shortens the timeout: it goes to the table).
    fn fresh(cached: Option<(FlowKey, Instant)>, key: &FlowKey, flow: &Flow, now: Instant) -> bool {
        let closing = flow.proto == TCP && flow.tcp_flags & 0x05 != 0;
        !closing
            && cached.is_some_and(|(k, at)| {
                k == *key && now.saturating_duration_since(at) < REFRESH_EVERY
            })
    }

    /// Drops expired flows (the table is full).
    fn sweep(&mut self, now: Instant) {
        self.flows.retain(|_, e| e.expires > now);
        self.forget_cached();
    }

    fn forget_cached(&mut self) {
        self.last_out = None;
        self.last_reply = None;
    }

    /// Whether the packet an ICMP error quotes (which went from us) belongs
    /// to a live flow of ours.
    pub fn knows(&self, quoted: &Flow, now: Instant) -> bool {
        self.flows
            .get(&quoted.key())
            .is_some_and(|e| e.expires > now)
    }
}
