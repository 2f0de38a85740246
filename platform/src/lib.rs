//! OS-specific parts of antq: network interface discovery, change events,
//! TUN device and route setup, the local admin channel (ipc) of a running
//! tunnel and termination signals. Every `#[cfg(target_os)]` (and
//! `#[cfg(unix)]` / `#[cfg(windows)]`) of the project lives in this crate,
//! so the portable core in `antq` never needs one.
//!
//! The types in this file are OS-neutral; each supported OS provides an
//! `imp` module with the same items, chosen at compile time:
//!
//! | OS | interfaces | change events | TUN | routes |
//! | --- | --- | --- | --- | --- |
//! | Linux | rtnetlink dumps | rtnetlink multicast groups | `tun-rs` (`/dev/net/tun`), configured over rtnetlink | rtnetlink |
//! | macOS | `getifaddrs` (+ `SIOCGIFAFLAG_IN6`, SystemConfiguration for Wi-Fi) | `SCDynamicStore` notifications on a run-loop thread | `tun-rs` (utun) | routing socket (`route_manager`) |
//! | Windows | IP Helper `GetAdaptersAddresses` | `NotifyIpInterfaceChange`, `NotifyUnicastIpAddressChange`, `NotifyRouteChange2` | `tun-rs` (Wintun), addresses over IP Helper | `CreateIpForwardEntry2` |
//!
//! [`default_gateway_v4`] (the router port mapping asks) reads
//! `/proc/net/route` on Linux, the routing-table dump on macOS and
//! `GetIpForwardTable2` on Windows.
//!
//! [`apply_host_net`] (forwarding for peers, NAT, the default route
//! through the device with the tunnel's own sockets marked by
//! [`set_socket_mark`]) is Linux only: sysctls, rtnetlink rules, an
//! nftables table; see [`HostNet`] for how the host is put back.
//! [`register_dns`] points the system's resolver at a tunnel's DNS
//! responder for one domain: systemd-resolved (`resolvectl`) on Linux,
//! `/etc/resolver/DOMAIN` on macOS, not yet on Windows.
//!
//! On every other OS the functions return [`PlatformError::Unsupported`].
//! The macOS and Windows modules are linted for their targets on Linux by
//! `scripts/xcheck.sh` (CI), which also runs the Windows tests under Wine;
//! nothing of the macOS module runs there.
//!
//! [`ipc`] (Unix socket / named pipe) and [`terminated`] (SIGTERM and
//! SIGINT / Ctrl-C, Ctrl-Break and console close) are selected by
//! `cfg(unix)` / `cfg(windows)`. [`release_free_memory`] hands the heap
//! memory the allocator holds free back to the OS (glibc: `malloc_trim`).
//!
//! # Runtime
//!
//! The async functions and [`watch_changes`] must be called from inside a
//! Tokio runtime with I/O enabled: the netlink sockets and the TUN device
//! register with Tokio's reactor when they are created. They do not spawn
//! Tokio tasks; every netlink connection is driven by the future that uses
//! it. (The macOS watcher runs its own OS thread; the Windows one is fed by
//! IP Helper's callback threads.)

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

#[cfg(target_os = "linux")]
#[path = "linux/mod.rs"]
mod imp;

#[cfg(target_os = "macos")]
#[path = "macos/mod.rs"]
mod imp;

#[cfg(target_os = "windows")]
#[path = "windows/mod.rs"]
mod imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
#[path = "unsupported/mod.rs"]
mod imp;

#[cfg(any(target_os = "macos", target_os = "windows"))]
mod plain_tun;

mod dns;
mod host_net;
pub mod ipc;
mod memory;
#[cfg(any(not(target_os = "linux"), test))]
#[allow(dead_code)]
mod no_host_net;
mod signal;
mod tun_config;

pub use dns::{register_dns, unregister_dns, DnsRegistration};
pub use host_net::{
    apply_host_net, set_socket_mark, state_path as host_net_state_path, DefaultRoute, Forwarding,
    HostChange, HostNet, HostNetConfig, DEFAULT_MARK, RULE_PRIORITY_MAIN, RULE_PRIORITY_TUNNEL,
};
pub use memory::{release_free_memory, rss_kib};
pub use signal::{notify_ready, notify_stopping, terminated, ReloadSignal};

// Type-check and test the fallback on every OS, so it cannot rot unnoticed.
#[cfg(test)]
#[path = "unsupported/mod.rs"]
#[allow(dead_code)]
mod unsupported_check;

// The OS-independent logic of the macOS module (interface kinds, change
// diffs, SCDynamicStore keys), compiled and unit-tested on Linux as well.
#[cfg(all(test, target_os = "linux"))]
#[path = "macos/logic.rs"]
#[allow(dead_code)]
mod macos_logic_check;

// The IP Helper parts of the Windows module (interfaces, routes, change
// callbacks): windows-sys is plain declarations, so they type-check and
// their pure helpers run on Linux. The TUN part needs tun-rs's Windows API
// and is not included.
#[cfg(all(test, target_os = "linux"))]
#[path = "windows/check.rs"]
#[allow(dead_code)]
mod windows_check;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// A netlink (or other OS routing API) request failed. `op` names what
    /// was being done; `source` carries the OS error (`raw_os_error()` gives
    /// the errno where there is one).
    #[error("{op}: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Another I/O error, e.g. from the TUN character device.
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The OS refused: the process lacks root / `CAP_NET_ADMIN` (Linux),
    /// root (macOS) or an elevated Administrator token (Windows).
    #[error("{op}: permission denied (needs {})", imp::PRIVILEGE)]
    PermissionDenied { op: &'static str },
    /// The object to create exists already (e.g. the same route).
    #[error("{op}: already exists")]
    AlreadyExists { op: &'static str },
    /// The object to act on does not exist (no such route or interface).
    #[error("{op}: not found")]
    NotFound { op: &'static str },
    /// An interface name the OS cannot use (empty, too long, bad characters).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// An argument out of range, e.g. a prefix length over 32 for IPv4.
    #[error("invalid argument: {what}")]
    InvalidArgument { what: String },
    /// This OS (or this build) does not support the operation.
    #[error("unsupported on this platform: {what}")]
    Unsupported { what: &'static str },
    /// A driver or library the operation needs is not installed, e.g.
    /// `wintun.dll` on Windows. `hint` says where to get it.
    #[error("{driver} not found: {hint}")]
    DriverNotFound { driver: &'static str, hint: String },
    /// A program the operation runs (e.g. `resolvectl`) failed.
    #[error("{command}: {detail}")]
    Command { command: String, detail: String },
}

/// Flags of a network interface (the `IFF_*` flags that matter to antq).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct InterfaceFlags {
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operationally up, i.e. has carrier (`IFF_RUNNING`).
    pub running: bool,
    /// The loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// Point-to-point link (`IFF_POINTOPOINT`), e.g. PPP.
    pub point_to_point: bool,
    /// Supports multicast (`IFF_MULTICAST`).
    pub multicast: bool,
}

/// What sort of link an interface is, as far as the OS tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterfaceKind {
    /// Wired Ethernet (or anything else with an Ethernet link layer that is
    /// not known to be virtual or wireless).
    Ethernet,
    /// Wi-Fi.
    Wireless,
    /// The loopback interface.
    Loopback,
    /// A layer-3 tunnel: TUN devices, WireGuard, GRE, IPIP, SIT, ...
    Tunnel,
    /// A purely virtual layer-2 device: veth, bridge, bond, VLAN, dummy,
    /// TAP, macvlan, ...
    Virtual,
    /// Anything else (PPP, InfiniBand, CAN, ...).
    Other,
}

/// One address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceAddress {
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length of the on-link subnet.
    pub prefix_len: u8,
    /// IPv6: the preferred lifetime ran out (`IFA_F_DEPRECATED`); usable for
    /// existing connections, should not be picked for new ones.
    pub deprecated: bool,
    /// IPv6: a privacy (temporary) address (`IFA_F_TEMPORARY`).
    pub temporary: bool,
    /// IPv6: duplicate address detection has not finished
    /// (`IFA_F_TENTATIVE`); the address cannot be bound yet.
    pub tentative: bool,
}

/// A network interface with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// OS interface index (never 0).
    pub index: u32,
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Link flags.
    pub flags: InterfaceFlags,
    /// MTU, if the OS reports one.
    pub mtu: Option<u32>,
    /// Link kind.
    pub kind: InterfaceKind,
    /// Addresses, IPv4 and IPv6, in the order the OS lists them.
    pub addresses: Vec<InterfaceAddress>,
}

/// A change of the network configuration, as reported by [`ChangeWatcher`].
///
/// Events are not debounced and may repeat (e.g. an IPv6 address is
/// re-announced as added when it leaves the tentative state); debouncing is
/// the caller's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeEvent {
    /// A link appeared, disappeared or changed state (up/down, carrier, MTU,
    /// name, ...).
    ///
    /// `index: 0` (never a real interface index) means that the OS dropped
    /// notifications because they were not read fast enough: the caller
    /// should re-read everything it caches.
    LinkChanged { index: u32 },
    /// An address was added to an interface, or its flags changed.
    AddressAdded { index: u32, addr: IpAddr },
    /// An address was removed from an interface.
    AddressRemoved { index: u32, addr: IpAddr },
    /// An IPv4 or IPv6 route was added or removed (any table).
    RouteChanged,
}

/// Lists the network interfaces and their addresses.
///
/// Linux: one `RTM_GETLINK` and one `RTM_GETADDR` dump over rtnetlink, in the
/// network namespace of the calling thread. [`InterfaceKind::Wireless`] is
/// detected through `/sys/class/net/<name>/wireless`, which shows the
/// namespace that mounted `/sys`.
///
/// macOS: `getifaddrs` (flags, MTU and link type from the `AF_LINK` entry's
/// `if_data`), IPv6 address flags from `SIOCGIFAFLAG_IN6`, Wi-Fi told apart
/// from Ethernet by SystemConfiguration. Windows: `GetAdaptersAddresses`;
/// the name is the adapter's friendly name (`Ethernet`, `Wi-Fi`), `up` and
/// `running` both mean operational status up.
pub async fn interfaces() -> Result<Vec<Interface>, PlatformError> {
    imp::interfaces().await
}

/// Subscribes to link, address and route changes.
///
/// Linux: an rtnetlink socket bound to the groups `RTMGRP_LINK`,
/// `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`, `RTMGRP_IPV4_ROUTE` and
/// `RTMGRP_IPV6_ROUTE`. Must be called inside a Tokio runtime. Nothing runs
/// in the background: notifications queue in the socket between calls to
/// [`ChangeWatcher::next`] (if the queue overflows, a
/// `LinkChanged { index: 0 }` is reported).
///
/// macOS: an `SCDynamicStore` session watching
/// `State:/Network/Interface[/<name>/(IPv4|IPv6|Link)]` and
/// `State:/Network/Global/(IPv4|IPv6)`, on a thread of its own running a
/// CFRunLoop; each notification is turned into events by comparing
/// `getifaddrs` before and after. Route changes are reported only when the
/// primary (global) IPv4/IPv6 service changes. The thread ends within half
/// a second of the watcher being dropped.
///
/// Windows: `NotifyIpInterfaceChange`, `NotifyUnicastIpAddressChange` and
/// `NotifyRouteChange2` callbacks (on IP Helper's threads) feed a channel;
/// dropping the watcher cancels them (`CancelMibChangeNotify2`).
pub fn watch_changes() -> Result<ChangeWatcher, PlatformError> {
    imp::watch_changes().map(|inner| ChangeWatcher { inner })
}

/// A stream of [`ChangeEvent`]s; see [`watch_changes`]. Dropping it closes
/// the subscription.
pub struct ChangeWatcher {
    inner: imp::ChangeWatcher,
}

impl ChangeWatcher {
    /// Waits for the next event. `None` means the subscription ended (the
    /// socket failed); a new watcher is needed then.
    pub async fn next(&mut self) -> Option<ChangeEvent> {
        self.inner.next().await
    }
}

impl fmt::Debug for ChangeWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeWatcher").finish_non_exhaustive()
    }
}

/// How to create a TUN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name; `None` lets the OS choose (`tun0`, `tun1`, ...).
    pub name: Option<String>,
    /// Link MTU.
    pub mtu: u16,
    /// Addresses to put on the device, IPv4 and/or IPv6, with prefix length.
    /// Each one also gives the on-link route of its prefix.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Linux: enable the virtio-net header with TCP (and, from Linux 6.2, UDP)
    /// segmentation offload. Then the device hands over and takes GSO
    /// super-packets, and only [`Tun::recv_batch`] / [`Tun::send_batch`] may
    /// be used. Ignored where unsupported (macOS, Windows: no offload;
    /// [`Tun::offload`] tells what was granted).
    pub offload: bool,
}

impl Default for TunConfig {
    fn default() -> Self {
        TunConfig {
            name: None,
            mtu: 1280,
            addresses: Vec::new(),
            offload: false,
        }
    }
}

/// Bytes a buffer must keep free in front of each packet for
/// [`Tun::send_batch`] and [`Tun::recv_batch`] (the virtio-net header when
/// offload is on; harmless when it is off).
pub const BATCH_HEADROOM: usize = imp::BATCH_HEADROOM;

/// A good number of packet buffers for one batch call.
pub const IDEAL_BATCH_SIZE: usize = imp::IDEAL_BATCH_SIZE;

/// Creates a TUN device, sets its MTU and addresses and brings it up.
///
/// Linux: IPv6 addresses are added with `IFA_F_NODAD`, so they are usable at
/// once. Needs root or `CAP_NET_ADMIN` ([`PlatformError::PermissionDenied`]
/// otherwise). Must be called inside a Tokio runtime.
///
/// macOS: a utun device; a name must be `utun<N>` (`None` takes the next
/// free one). Addresses are set by `tun-rs` over ioctls (IPv6 without DAD)
/// and the on-link route of each prefix is added through the routing socket.
/// Needs root.
///
/// Windows: a Wintun adapter, which needs `wintun.dll` next to the
/// executable ([`PlatformError::DriverNotFound`] otherwise); addresses are
/// added with `CreateUnicastIpAddressEntry` in the preferred DAD state
/// (usable at once), which also installs their on-link routes. Needs an
/// elevated (Administrator) process.
pub async fn create_tun(cfg: &TunConfig) -> Result<Tun, PlatformError> {
    imp::create_tun(cfg).await.map(|inner| Tun { inner })
}

/// A TUN device carrying raw IP packets (no link-layer header). Dropping it
/// removes the device and the routes through it.
pub struct Tun {
    inner: imp::Tun,
}

impl Tun {
    /// The interface name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The interface index, for [`add_route`] and the like.
    pub fn index(&self) -> u32 {
        self.inner.index()
    }

    /// The MTU the device was created with.
    pub fn mtu(&self) -> u16 {
        self.inner.mtu()
    }

    /// Whether offload (virtio-net header, GSO/GRO) is active. Only then do
    /// batches carry more than one packet per system call.
    pub fn offload(&self) -> bool {
        self.inner.offload()
    }

    /// Whether UDP segmentation offload is active too (Linux 6.2+).
    pub fn udp_offload(&self) -> bool {
        self.inner.udp_offload()
    }

    /// Reads one IP packet into `buf`, returning its length.
    ///
    /// With offload on this fails with [`io::ErrorKind::Unsupported`]: use
    /// [`Tun::recv_batch`].
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.recv(buf).await
    }

    /// Writes one IP packet, returning the bytes written.
    ///
    /// With offload on this fails with [`io::ErrorKind::Unsupported`]: use
    /// [`Tun::send_batch`].
    pub async fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        self.inner.send(pkt).await
    }

    /// Writes one IP packet now, or fails with
    /// [`io::ErrorKind::WouldBlock`] when the device cannot take it (the
    /// packet is not written). Same offload rule as [`Tun::send`].
    pub fn try_send(&self, pkt: &[u8]) -> io::Result<usize> {
        self.inner.try_send(pkt)
    }

    /// Reads one or more IP packets with one system call.
    ///
    /// `scratch` receives the raw read (virtio header plus possibly a GSO
    /// super-packet); give it `BATCH_HEADROOM + 65535` bytes. The packets are
    /// split into `bufs[i][offset..offset + sizes[i]]`; returns how many.
    /// `bufs.len()` must equal `sizes.len()`, and with offload there should
    /// be at least `65535 / mtu` of them. Without offload this reads exactly
    /// one packet into `bufs[0]`.
    pub async fn recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        scratch: &mut [u8],
        bufs: &mut [B],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.inner.recv_batch(scratch, bufs, sizes, offset).await
    }

    /// Writes a batch of IP packets, each at `bufs[i][offset..]`, coalescing
    /// TCP/UDP flows into GSO super-packets when offload is on. `offset`
    /// must be at least [`BATCH_HEADROOM`]; the buffers may be modified.
    /// `gro` is scratch state, reuse it across calls. Returns bytes written.
    pub async fn send_batch(
        &self,
        gro: &mut GroTable,
        bufs: &mut [Vec<u8>],
        offset: usize,
    ) -> io::Result<usize> {
        self.inner.send_batch(&mut gro.inner, bufs, offset).await
    }
}

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name())
            .field("index", &self.index())
            .field("mtu", &self.mtu())
            .field("offload", &self.offload())
            .finish()
    }
}

/// Reusable scratch state for [`Tun::send_batch`] (the flow table used to
/// coalesce packets into GSO super-packets). Not shared between threads.
pub struct GroTable {
    inner: imp::GroTable,
}

impl GroTable {
    /// A new, empty table.
    pub fn new() -> Self {
        // (A unit struct on macOS and Windows, a real table on Linux.)
        GroTable {
            inner: Default::default(),
        }
    }
}

impl Default for GroTable {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GroTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroTable").finish_non_exhaustive()
    }
}

/// Names an interface for [`add_route`] / [`del_route`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InterfaceRef {
    /// By index.
    Index(u32),
    /// By name.
    Name(String),
}

impl From<u32> for InterfaceRef {
    fn from(index: u32) -> Self {
        InterfaceRef::Index(index)
    }
}

impl From<&str> for InterfaceRef {
    fn from(name: &str) -> Self {
        InterfaceRef::Name(name.to_owned())
    }
}

impl From<String> for InterfaceRef {
    fn from(name: String) -> Self {
        InterfaceRef::Name(name)
    }
}

impl From<&Tun> for InterfaceRef {
    fn from(tun: &Tun) -> Self {
        InterfaceRef::Index(tun.index())
    }
}

/// Adds a directly connected route `dest/prefix_len` through `iface` in the
/// main table (IPv4 or IPv6, by the family of `dest`). Host bits of `dest`
/// are cleared. Fails with [`PlatformError::AlreadyExists`] if the same
/// route is there already, [`PlatformError::NotFound`] if the interface
/// does not exist.
///
/// macOS: `RTM_ADD` on a routing socket with the interface as link-level
/// gateway (`route add -net ... -interface ...`). Windows:
/// `CreateIpForwardEntry2` with an unspecified (on-link) next hop; a name
/// is the adapter's alias (friendly name).
pub async fn add_route(
    iface: impl Into<InterfaceRef>,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    imp::add_route(&iface.into(), dest, prefix_len).await
}

/// Removes a route added by [`add_route`]. Fails with
/// [`PlatformError::NotFound`] if there is no such route.
pub async fn del_route(
    iface: impl Into<InterfaceRef>,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    imp::del_route(&iface.into(), dest, prefix_len).await
}

/// The privilege that creating TUN devices and routes needs, for messages:
/// `root or CAP_NET_ADMIN` (Linux), `root` (macOS), `an elevated
/// (Administrator) process` (Windows).
pub const REQUIRED_PRIVILEGE: &str = imp::PRIVILEGE;

/// How a user gets [`REQUIRED_PRIVILEGE`], for messages: `run it with sudo`
/// on Unix, a terminal opened with "Run as administrator" on Windows.
pub const PRIVILEGE_ADVICE: &str = imp::PRIVILEGE_ADVICE;

/// Whether the effective user is root (Windows: whether the process token
/// is elevated).
pub fn is_root() -> bool {
    imp::is_root()
}

/// Runs `f` on the calling thread at real-time scheduling priority, where
/// the OS and our privileges allow (Linux: `SCHED_FIFO` priority 1, which
/// needs root or `CAP_SYS_NICE`; macOS: `SCHED_FIFO` through pthreads;
/// Windows: `THREAD_PRIORITY_TIME_CRITICAL`), so that ordinary threads cannot preempt
/// it; then restores normal scheduling. Returns `f`'s result and whether the
/// priority was raised. For short, timing-critical work only (hole-punch
/// probes that must leave at an agreed microsecond).
pub fn with_realtime_priority<T>(f: impl FnOnce() -> T) -> (T, bool) {
    let raised = imp::raise_thread_priority();
    let out = f();
    if raised {
        imp::restore_thread_priority();
    }
    (out, raised)
}

/// One hop of [`trace_hops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A router answered "time exceeded" from this address.
    Router(IpAddr),
    /// Nothing came back in time (or an answer without an address).
    Silent,
    /// The destination answered (port unreachable): the path ends here.
    Destination,
}

/// The routers on the way to `dst`, traceroute-style: UDP probes with TTL
/// (hop limit) 1 to `max_ttl`, all sent at once, and the ICMP errors that
/// come back within `wait`. Entry `i` is hop `i + 1`; the list ends at the
/// destination when it answered. Blocks until the destination answers, at
/// most for `wait`; needs no
/// privilege. `mark` (0: none) goes on the probes as with
/// [`set_socket_mark`], so that they take the same route as the tunnel's
/// own packets. Linux only for now (`IP_RECVERR`); elsewhere
/// [`PlatformError::Unsupported`].
pub fn trace_hops(
    dst: IpAddr,
    max_ttl: u8,
    wait: Duration,
    mark: u32,
) -> Result<Vec<Hop>, PlatformError> {
    #[cfg(target_os = "linux")]
    return imp::trace_hops(dst, max_ttl, wait, mark);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dst, max_ttl, wait, mark);
        Err(PlatformError::Unsupported {
            what: "hop tracing",
        })
    }
}

/// The IPv4 default gateway: the next hop of the default route with the
/// lowest metric (`None` when there is no default route through a
/// gateway). The router that port mapping (PCP, NAT-PMP) asks. Linux:
/// `/proc/net/route` of the caller's network namespace; macOS: the routing
/// table dump (`route_manager`); Windows: `GetIpForwardTable2`. Blocking
/// but quick (one table read); needs no privilege.
pub fn default_gateway_v4() -> Result<Option<std::net::Ipv4Addr>, PlatformError> {
    imp::default_gateway_v4()
}

/// Whether the process may configure the network: root, or (Linux)
/// `CAP_NET_ADMIN` in the effective capability set; Windows: an elevated
/// token.
pub fn has_net_admin() -> bool {
    imp::has_net_admin()
}

/// Clears the host bits of `addr` beyond `prefix_len`, checking the length
/// against the address family.
fn network_of(addr: IpAddr, prefix_len: u8) -> Result<IpAddr, PlatformError> {
    match addr {
        IpAddr::V4(a) if prefix_len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len));
            Ok(IpAddr::V4((u32::from(a) & mask.unwrap_or(0)).into()))
        }
        IpAddr::V6(a) if prefix_len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len));
            Ok(IpAddr::V6((u128::from(a) & mask.unwrap_or(0)).into()))
        }
        _ => Err(PlatformError::InvalidArgument {
            what: format!("prefix length /{prefix_len} for {addr}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_of_masks_host_bits() {
        let n = |a: &str, p| network_of(a.parse().unwrap(), p).unwrap();
        assert_eq!(n("10.1.2.3", 16), "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(n("10.1.2.3", 32), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(n("10.1.2.3", 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(
            n("fd00:1:2:3::9", 48),
            "fd00:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(n("fd00::9", 0), "::".parse::<IpAddr>().unwrap());
        assert_eq!(n("fd00::9", 128), "fd00::9".parse::<IpAddr>().unwrap());
        assert!(network_of("10.0.0.0".parse().unwrap(), 33).is_err());
        assert!(network_of("::".parse().unwrap(), 129).is_err());
    }

    #[test]
    fn interface_ref_conversions() {
        assert_eq!(InterfaceRef::from(3), InterfaceRef::Index(3));
        assert_eq!(
            InterfaceRef::from("tun0"),
            InterfaceRef::Name("tun0".into())
        );
    }

    #[test]
    fn fallback_reports_unsupported() {
        use unsupported_check as u;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(
                u::interfaces().await,
                Err(PlatformError::Unsupported { .. })
            ));
            assert!(matches!(
                u::create_tun(&TunConfig::default()).await,
                Err(PlatformError::Unsupported { .. })
            ));
            assert!(matches!(
                u::add_route(&InterfaceRef::Index(1), "10.0.0.0".parse().unwrap(), 8).await,
                Err(PlatformError::Unsupported { .. })
            ));
            assert!(matches!(
                u::del_route(&InterfaceRef::Index(1), "10.0.0.0".parse().unwrap(), 8).await,
                Err(PlatformError::Unsupported { .. })
            ));
        });
        assert!(matches!(
            u::watch_changes(),
            Err(PlatformError::Unsupported { .. })
        ));
        assert!(!u::has_net_admin());
    }
}
