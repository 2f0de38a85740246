//! Fallback for every OS other than Linux, macOS and Windows.
//!
//! Each operation returns [`PlatformError::Unsupported`]. The device and
//! watcher types are uninhabited: they can never be created, so their
//! methods need no behaviour.

use std::io;
use std::net::IpAddr;

use crate::{ChangeEvent, Interface, InterfaceRef, PlatformError, TunConfig};

// (Unused where this file is only type-checked: the Linux test build.)
#[allow(unused_imports)]
pub(crate) use crate::no_host_net::{
    apply_host_net, host_net_state_path, set_socket_mark, HostNet,
};

/// What [`PlatformError::PermissionDenied`] says is missing.
pub(crate) const PRIVILEGE: &str = "root";
/// How to get [`PRIVILEGE`].
pub(crate) const PRIVILEGE_ADVICE: &str = "antq has no TUN support on this OS";

pub(crate) const BATCH_HEADROOM: usize = 0;
pub(crate) const IDEAL_BATCH_SIZE: usize = 1;

fn unsupported(what: &'static str) -> PlatformError {
    PlatformError::Unsupported { what }
}

pub(crate) async fn interfaces() -> Result<Vec<Interface>, PlatformError> {
    Err(unsupported("interface discovery"))
}

/// No routing table access here.
pub(crate) fn default_gateway_v4() -> Result<Option<std::net::Ipv4Addr>, PlatformError> {
    Err(unsupported("default gateway discovery"))
}

pub(crate) fn register_dns(
    _iface: &str,
    _servers: &[IpAddr],
    _domain: &str,
) -> Result<crate::DnsRegistration, PlatformError> {
    Err(unsupported("DNS registration"))
}

pub(crate) fn unregister_dns(_iface: &str, _domain: &str) -> Result<(), PlatformError> {
    Ok(())
}

pub(crate) fn watch_changes() -> Result<ChangeWatcher, PlatformError> {
    Err(unsupported("network change events"))
}

pub(crate) enum ChangeWatcher {}

impl ChangeWatcher {
    pub(crate) async fn next(&mut self) -> Option<ChangeEvent> {
        match *self {}
    }
}

pub(crate) async fn create_tun(_cfg: &TunConfig) -> Result<Tun, PlatformError> {
    Err(unsupported("TUN devices"))
}

pub(crate) enum Tun {}

impl Tun {
    pub(crate) fn name(&self) -> &str {
        match *self {}
    }
    pub(crate) fn index(&self) -> u32 {
        match *self {}
    }
    pub(crate) fn mtu(&self) -> u16 {
        match *self {}
    }
    pub(crate) fn offload(&self) -> bool {
        match *self {}
    }
    pub(crate) fn udp_offload(&self) -> bool {
        match *self {}
    }
    pub(crate) async fn recv(&self, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }
    pub(crate) async fn send(&self, _pkt: &[u8]) -> io::Result<usize> {
        match *self {}
    }
    pub(crate) fn try_send(&self, _pkt: &[u8]) -> io::Result<usize> {
        match *self {}
    }
    pub(crate) async fn recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        _scratch: &mut [u8],
        _bufs: &mut [B],
        _sizes: &mut [usize],
        _offset: usize,
    ) -> io::Result<usize> {
        match *self {}
    }
    pub(crate) async fn send_batch(
        &self,
        _gro: &mut GroTable,
        _bufs: &mut [Vec<u8>],
        _offset: usize,
    ) -> io::Result<usize> {
        match *self {}
    }
}

#[derive(Default)]
pub(crate) struct GroTable;

pub(crate) async fn add_route(
    _iface: &InterfaceRef,
    _dest: IpAddr,
    _prefix_len: u8,
) -> Result<(), PlatformError> {
    Err(unsupported("route setup"))
}

pub(crate) async fn del_route(
    _iface: &InterfaceRef,
    _dest: IpAddr,
    _prefix_len: u8,
) -> Result<(), PlatformError> {
    Err(unsupported("route setup"))
}

/// Not determined on this OS; reports `false`.
pub(crate) fn is_root() -> bool {
    false
}

/// Not determined on this OS; reports `false`.
pub(crate) fn has_net_admin() -> bool {
    false
}

/// Real-time scheduling is not available here.
pub(crate) fn raise_thread_priority() -> bool {
    false
}

/// Nothing to restore.
pub(crate) fn restore_thread_priority() {}
