//! The VPN tunnel: reads IP packets from the TUN device, routes them by
//! destination to the peer that owns the address (AllowedIPs, longest-prefix
//! match) and sends them as QUIC datagrams; checks the source of packets
//! arriving from peers against that peer's allowed IPs.

pub mod config;
pub mod packet;
pub mod routing;
