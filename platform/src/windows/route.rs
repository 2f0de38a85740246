//! Routes: `CreateIpForwardEntry2` / `DeleteIpForwardEntry2` with an
//! unspecified (on-link) next hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use windows_sys::Win32::NetworkManagement::IpHelper::{
    ConvertInterfaceAliasToLuid, ConvertInterfaceLuidToIndex, CreateIpForwardEntry2,
    DeleteIpForwardEntry2, InitializeIpForwardEntry, MIB_IPFORWARD_ROW2,
};
use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
use windows_sys::Win32::Networking::WinSock::{NlroManual, MIB_IPPROTO_NETMGMT};

use super::sys::{check, sockaddr_inet, wide};
use crate::{network_of, InterfaceRef, PlatformError};

/// The index of the adapter whose alias (friendly name) is `name`.
pub(super) fn index_of_alias(name: &str) -> Result<u32, PlatformError> {
    let op = "look up interface";
    let alias = wide(name);
    let mut luid = NET_LUID_LH::default();
    // SAFETY: `alias` is NUL-terminated; `luid` is a valid out-pointer.
    check(op, unsafe {
        ConvertInterfaceAliasToLuid(alias.as_ptr(), &mut luid)
    })
    .map_err(|_| PlatformError::NotFound { op })?;
    let mut index = 0u32;
    // SAFETY: `luid` was filled in above; `index` is a valid out-pointer.
    check(op, unsafe {
        ConvertInterfaceLuidToIndex(&luid, &mut index)
    })?;
    Ok(index)
}

fn resolve(iface: &InterfaceRef) -> Result<u32, PlatformError> {
    match iface {
        InterfaceRef::Index(0) => Err(PlatformError::InvalidArgument {
            what: "interface index 0".into(),
        }),
        InterfaceRef::Index(i) => Ok(*i),
        InterfaceRef::Name(name) => index_of_alias(name),
    }
}

/// The forward-table row of an on-link route to `net/prefix_len` through
/// adapter `index`.
pub(super) fn route_row(index: u32, net: IpAddr, prefix_len: u8) -> MIB_IPFORWARD_ROW2 {
    let mut row = MIB_IPFORWARD_ROW2::default();
    // SAFETY: `row` is a valid, writable MIB_IPFORWARD_ROW2.
    unsafe { InitializeIpForwardEntry(&mut row) };
    row.InterfaceIndex = index;
    row.DestinationPrefix.Prefix = sockaddr_inet(net);
    row.DestinationPrefix.PrefixLength = prefix_len;
    // On-link: the unspecified address of the destination's family.
    let unspecified = match net {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    row.NextHop = sockaddr_inet(unspecified);
    // InitializeIpForwardEntry leaves 255 here, which the create call
    // refuses when it exceeds the prefix length.
    row.SitePrefixLength = 0;
    row.Metric = 0;
    row.Protocol = MIB_IPPROTO_NETMGMT;
    row.Origin = NlroManual;
    row
}

pub(crate) async fn add_route(
    iface: &InterfaceRef,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    let net = network_of(dest, prefix_len)?;
    let row = route_row(resolve(iface)?, net, prefix_len);
    // SAFETY: `row` is a fully initialized forward-table row.
    check("add route", unsafe { CreateIpForwardEntry2(&row) })
}

pub(crate) async fn del_route(
    iface: &InterfaceRef,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    let net = network_of(dest, prefix_len)?;
    let row = route_row(resolve(iface)?, net, prefix_len);
    // SAFETY: as above; the row names interface, prefix and next hop.
    check("delete route", unsafe { DeleteIpForwardEntry2(&row) })
}
