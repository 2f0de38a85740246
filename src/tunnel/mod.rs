//! The VPN tunnel: reads IP packets from the TUN device, routes them by
//! destination to the peer that owns the address (AllowedIPs, longest-prefix
//! match) and sends them as QUIC datagrams; checks the source of packets
//! arriving from peers against that peer's allowed IPs.
//!
//! - [`config`]: the config file and its validation.
//! - [`routing`]: the AllowedIPs prefix trie.
//! - [`packet`]: IP address parsing and ICMP "packet too big".
//! - [`device`]: the running tunnel (TUN pump).
//! - `tun_io`: reading and writing the device, batched with Linux offload.
//! - [`ipc`]: the local admin channel for `status`, `down`, `reload` and
//!   `ping`.
//! - [`ping`]: `antq-tun ping`: targets resolved to peers, pinged above QUIC.
//! - [`dns`]: names on the overlay: the `NAME.antq` responder.

pub mod config;
pub mod device;
pub mod dns;
pub mod firewall;
pub mod ipc;
mod members;
pub mod packet;
pub mod ping;
pub mod reload;
pub mod routing;
mod tun_io;
