//! Relay paths and relay forwarding on the shared socket.
//!
//! - A relay channel granted by a bootstrap gets a stable virtual address
//!   in `240.0.0.0/8` ([`AntqSocket::add_relay_route`]); QUIC packets to it
//!   leave wrapped in `RELAY_DATA` frames to the relay server, frames from
//!   the server on that channel come back from the virtual address.
//! - A bootstrap installs forwarding entries
//!   ([`AntqSocket::set_relay_forward`]): a frame from one peer's proven
//!   address on its channel goes to the other peer, re-labelled, within the
//!   direction's bandwidth limit and the sender's [`RelayBudget`], paced
//!   ([`super::forward`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use quinn::udp::Transmit;

use super::forward::relay_pacer;
use super::{is_stream_addr, AntqSocket};
use crate::nat::canonical;
use crate::proto::raw::RelayHeader;
use crate::ratelimit::Pacer;

/// Where packets for one relay path go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RelayRoute {
    /// The relay server's address (canonical form).
    pub server: SocketAddr,
    /// The channel id the server granted.
    pub channel: u32,
}

/// One direction of a relay allocation on a bootstrap node.
#[derive(Debug)]
pub(super) struct Forward {
    pub(super) to: RelayRoute,
    pub(super) pacer: Mutex<Pacer>,
    pub(super) budget: Arc<RelayBudget>,
}

/// The relay byte budget of one sender (bootstrap side): shared by every
/// relay direction a key sends on, so that many allocations do not multiply
/// what one key may make the bootstrap send.
#[derive(Debug)]
pub struct RelayBudget(Mutex<Pacer>);

impl RelayBudget {
    /// A budget of `limit`, full.
    pub fn new(limit: RelayLimit) -> Self {
        Self(Mutex::new(relay_pacer(
            limit.bytes_per_sec,
            limit.burst_bytes,
            Instant::now(),
        )))
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
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

/// The relay paths: virtual address <-> route, both ways.
#[derive(Debug, Default)]
pub(super) struct RelayTable {
    by_virtual: HashMap<SocketAddr, RelayRoute>,
    by_route: HashMap<RelayRoute, SocketAddr>,
}

impl AntqSocket {
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
    /// answered a challenge ([`crate::proto::ControlMessage::AddressProof`]); never a
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
            pacer: Mutex::new(relay_pacer(
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

    /// The virtual address of a relay path, if registered.
    pub(super) fn relay_virtual_addr(&self, route: &RelayRoute) -> Option<SocketAddr> {
        self.relays
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_route
            .get(route)
            .copied()
    }

    /// Sends QUIC's datagram(s) to a relay path: each segment wrapped in a
    /// `RELAY_DATA` frame of the route's channel, to its server (over UDP
    /// or its stream path).
    pub(super) fn send_relayed(
        &self,
        transmit: &Transmit<'_>,
        route: RelayRoute,
    ) -> io::Result<()> {
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let count = transmit.contents.len().div_ceil(segment);
        let header = RelayHeader {
            channel: route.channel,
        }
        .to_bytes();
        let mut buf = Vec::with_capacity(transmit.contents.len() + count * RelayHeader::LEN);
        for chunk in transmit.contents.chunks(segment) {
            buf.extend_from_slice(&header);
            buf.extend_from_slice(chunk);
        }
        if is_stream_addr(route.server) {
            self.send_stream(route.server, buf.chunks(segment + RelayHeader::LEN));
        } else {
            self.inner.try_send(&Transmit {
                destination: self.to_wire(route.server),
                ecn: transmit.ecn,
                contents: &buf,
                segment_size: transmit.segment_size.map(|s| s + RelayHeader::LEN),
                src_ip: self.source_ip(transmit.src_ip),
            })?;
        }
        self.stats
            .relay_out
            .fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }
}
