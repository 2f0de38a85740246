//! What a tunnel changes on the host beyond its device and the routes
//! into it: packet forwarding for peers (a subnet gateway, an exit node),
//! NAT of what it forwards, and the default route through the device (the
//! host uses an exit node) with the tunnel's own sockets kept out of it.
//!
//! Every change is written to a state file *before* it is made
//! (`/run/antq/NAME.NETNS.hostnet`, see [`state_path`]), so that
//! [`HostNet::restore`] (`antq-tun down`, SIGTERM) and, after a crash or
//! `kill -9`, the next [`apply_host_net`] for the same interface put the
//! host back exactly as it was: sysctls to their old values, policy rules
//! and the nftables table removed. The routes in the tunnel's own table
//! go with the device.
//!
//! Linux only for now: sysctls under `/proc/sys/net`, rtnetlink rules and
//! routes, an nftables table (the `nft` program, package `nftables`).
//! Elsewhere [`apply_host_net`] with anything to do fails with
//! [`PlatformError::Unsupported`].

use std::net::IpAddr;
use std::path::PathBuf;

use crate::{imp, PlatformError, Tun};

/// Default firewall mark of the tunnel's own sockets, and the number of
/// the routing table holding the default route through the device
/// (`0x6171`, "aq").
pub const DEFAULT_MARK: u32 = 0x6171;

/// Priority of the rule that consults the main table for everything but
/// its default route (`lookup main suppress_prefixlength 0`).
pub const RULE_PRIORITY_MAIN: u32 = 32760;
/// Priority of the rule that sends unmarked packets to the tunnel's table
/// (`not fwmark MARK lookup MARK`); right after [`RULE_PRIORITY_MAIN`] and
/// before the main table's own rule (32766).
pub const RULE_PRIORITY_TUNNEL: u32 = 32761;

/// Forwarding for peers: this host is a subnet gateway or an exit node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// The subnets peers may reach through us (a gateway's LANs).
    pub subnets: Vec<(IpAddr, u8)>,
    /// Peers may reach any address (an exit node).
    pub exit: bool,
    /// Rewrite the source of what we forward out of other interfaces to
    /// that interface's address (so the far side needs no route back).
    pub masquerade: bool,
    /// Forward IPv4 (turns `net.ipv4.ip_forward` on).
    pub v4: bool,
    /// Forward IPv6 (turns `net.ipv6.conf.all.forwarding` on; interfaces
    /// taking router advertisements keep taking them: `accept_ra` 1 -> 2).
    pub v6: bool,
}

/// The default route through the device (using an exit node), wg-quick
/// style: the tunnel's own sockets carry `mark` and keep the main table;
/// everything else that the main table would send by its default route
/// goes through table `mark` instead, whose default route is the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Firewall mark of the tunnel's sockets, also the table number.
    pub mark: u32,
    /// Route IPv4.
    pub v4: bool,
    /// Route IPv6.
    pub v6: bool,
}

/// What to change on the host; the default changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetConfig {
    /// Forwarding for peers, if any.
    pub forward: Option<Forwarding>,
    /// The default route through the device, if any.
    pub default_route: Option<DefaultRoute>,
}

impl HostNetConfig {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.forward.is_none() && self.default_route.is_none()
    }
}

/// One change [`apply_host_net`] made, as `antq-tun status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostChange {
    /// A sysctl (path under `/proc/sys`) and the value it had.
    Sysctl { path: String, old: String },
    /// An nftables table (family `inet`) we created.
    NftTable { name: String },
    /// A policy rule: address family (4 or 6) and priority.
    Rule { family: u8, priority: u32 },
}

impl std::fmt::Display for HostChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostChange::Sysctl { path, old } => write!(f, "sysctl {path} (was {old})"),
            HostChange::NftTable { name } => write!(f, "nftables table inet {name}"),
            HostChange::Rule { family, priority } => {
                write!(f, "ip -{family} rule priority {priority}")
            }
        }
    }
}

/// The host changes of a running tunnel. Give it back with
/// [`HostNet::restore`]; if it is dropped instead (or the process dies),
/// the next [`apply_host_net`] for the interface restores the host first.
#[derive(Debug)]
pub struct HostNet {
    pub(crate) inner: imp::HostNet,
}

impl HostNet {
    /// What was changed, in order.
    pub fn changes(&self) -> Vec<HostChange> {
        self.inner.changes()
    }

    /// Puts the host back as it was before [`apply_host_net`] and removes
    /// the state file. Every step is tried; the first error is returned.
    pub async fn restore(self) -> Result<(), PlatformError> {
        self.inner.restore().await
    }
}

/// Makes the changes `cfg` asks for around the device `tun`. First undoes
/// whatever a previous run for the same interface (in this network
/// namespace) left behind after a crash. With an empty `cfg` only that
/// clean-up happens. Needs root / `CAP_NET_ADMIN`.
pub async fn apply_host_net(tun: &Tun, cfg: &HostNetConfig) -> Result<HostNet, PlatformError> {
    imp::apply_host_net(tun.name(), tun.index(), cfg)
        .await
        .map(|inner| HostNet { inner })
}

/// Where the state of interface `name`'s host changes is kept.
pub fn state_path(name: &str) -> PathBuf {
    imp::host_net_state_path(name)
}

/// Puts `mark` on a socket's packets, so that a [`DefaultRoute`] lets
/// them take the main table (Linux `SO_MARK`). `mark == 0` does nothing.
pub fn set_socket_mark(socket: socket2::SockRef<'_>, mark: u32) -> Result<(), PlatformError> {
    if mark == 0 {
        return Ok(());
    }
    imp::set_socket_mark(socket, mark)
}
