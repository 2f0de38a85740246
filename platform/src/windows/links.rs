//! Interface discovery: `GetAdaptersAddresses`.

use std::net::IpAddr;

use windows_sys::Win32::Foundation::{ERROR_BUFFER_OVERFLOW, ERROR_NO_DATA, ERROR_SUCCESS};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetAdaptersAddresses, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_DNS_SERVER, GAA_FLAG_SKIP_MULTICAST,
    IF_TYPE_ETHERNET_CSMACD, IF_TYPE_IEEE80211, IF_TYPE_PPP, IF_TYPE_PROP_VIRTUAL,
    IF_TYPE_SOFTWARE_LOOPBACK, IF_TYPE_TUNNEL, IP_ADAPTER_ADDRESSES_LH, IP_ADAPTER_NO_MULTICAST,
    IP_ADAPTER_UNICAST_ADDRESS_LH,
};
use windows_sys::Win32::NetworkManagement::Ndis::IfOperStatusUp;
use windows_sys::Win32::Networking::WinSock::{
    IpDadStateDeprecated, IpDadStateTentative, IpSuffixOriginRandom, AF_UNSPEC,
};

use super::sys::{from_wide, ip_of_sockaddr, win_error};
use crate::{Interface, InterfaceAddress, InterfaceFlags, InterfaceKind, PlatformError};

/// First guess for the buffer; Microsoft recommends 15 KB.
const INITIAL_BUFFER: u32 = 16 * 1024;

pub(crate) async fn interfaces() -> Result<Vec<Interface>, PlatformError> {
    list()
}

/// The adapters with their unicast addresses, sorted by index.
pub(super) fn list() -> Result<Vec<Interface>, PlatformError> {
    let op = "list interfaces (GetAdaptersAddresses)";
    let flags = GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST | GAA_FLAG_SKIP_DNS_SERVER;
    let mut size = INITIAL_BUFFER;
    // u64 elements: the list must be 8-byte aligned.
    let mut buf: Vec<u64>;
    let mut attempts = 0;
    loop {
        buf = vec![0; (size as usize).div_ceil(8)];
        // SAFETY: `buf` has `size` writable, aligned bytes; `size` is
        // updated to the needed size on ERROR_BUFFER_OVERFLOW.
        let rc = unsafe {
            GetAdaptersAddresses(
                u32::from(AF_UNSPEC),
                flags,
                std::ptr::null(),
                buf.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>(),
                &mut size,
            )
        };
        match rc {
            ERROR_SUCCESS => break,
            ERROR_NO_DATA => return Ok(Vec::new()),
            // Adapters may appear between the calls: retry a few times.
            ERROR_BUFFER_OVERFLOW if attempts < 4 => attempts += 1,
            other => return Err(win_error(op, other)),
        }
    }

    let mut out = Vec::new();
    let mut next = buf.as_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
    while !next.is_null() {
        // SAFETY: the list lives in `buf`; each `Next` is null or the next
        // entry of it.
        let adapter = unsafe { &*next };
        next = adapter.Next;
        // SAFETY: reading the union member the API fills in.
        let v4_index = unsafe { adapter.Anonymous1.Anonymous.IfIndex };
        let index = if v4_index != 0 {
            v4_index
        } else {
            adapter.Ipv6IfIndex
        };
        if index == 0 {
            continue;
        }
        // SAFETY: reading the union member the API fills in.
        let adapter_flags = unsafe { adapter.Anonymous2.Flags };
        let up = adapter.OperStatus == IfOperStatusUp;
        let kind = classify(adapter.IfType);
        out.push(Interface {
            index,
            // SAFETY: FriendlyName is a NUL-terminated UTF-16 string in `buf`.
            name: unsafe { from_wide(adapter.FriendlyName) },
            flags: InterfaceFlags {
                up,
                running: up,
                loopback: kind == InterfaceKind::Loopback,
                point_to_point: matches!(
                    adapter.IfType,
                    IF_TYPE_PPP | IF_TYPE_TUNNEL | IF_TYPE_PROP_VIRTUAL
                ),
                multicast: adapter_flags & IP_ADAPTER_NO_MULTICAST == 0,
            },
            // The loopback pseudo-interface reports u32::MAX.
            mtu: (adapter.Mtu != u32::MAX).then_some(adapter.Mtu),
            kind,
            // SAFETY: the unicast list lives in `buf` as well.
            addresses: unsafe { unicast_addresses(adapter.FirstUnicastAddress) },
        });
    }
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// The addresses of an adapter's unicast list.
///
/// # Safety
///
/// `first` must be null or the head of a valid `IP_ADAPTER_UNICAST_ADDRESS`
/// list.
unsafe fn unicast_addresses(first: *const IP_ADAPTER_UNICAST_ADDRESS_LH) -> Vec<InterfaceAddress> {
    let mut out = Vec::new();
    let mut next = first;
    while !next.is_null() {
        // SAFETY: per the contract.
        let a = unsafe { &*next };
        next = a.Next;
        // SAFETY: `lpSockaddr` points to an address of the family it names.
        let Some(addr) = (unsafe { ip_of_sockaddr(a.Address.lpSockaddr) }) else {
            continue;
        };
        out.push(InterfaceAddress {
            addr,
            prefix_len: a.OnLinkPrefixLength,
            deprecated: a.DadState == IpDadStateDeprecated,
            temporary: matches!(addr, IpAddr::V6(_)) && a.SuffixOrigin == IpSuffixOriginRandom,
            tentative: a.DadState == IpDadStateTentative,
        });
    }
    out
}

/// The kind of an adapter from its `IfType` (IANA ifType). Wintun and
/// most VPN adapters report `IF_TYPE_PROP_VIRTUAL`.
pub(super) fn classify(if_type: u32) -> InterfaceKind {
    match if_type {
        IF_TYPE_SOFTWARE_LOOPBACK => InterfaceKind::Loopback,
        IF_TYPE_IEEE80211 => InterfaceKind::Wireless,
        IF_TYPE_ETHERNET_CSMACD => InterfaceKind::Ethernet,
        IF_TYPE_TUNNEL | IF_TYPE_PROP_VIRTUAL => InterfaceKind::Tunnel,
        _ => InterfaceKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(classify(24), InterfaceKind::Loopback);
        assert_eq!(classify(71), InterfaceKind::Wireless);
        assert_eq!(classify(6), InterfaceKind::Ethernet);
        assert_eq!(classify(53), InterfaceKind::Tunnel);
        assert_eq!(classify(131), InterfaceKind::Tunnel);
        assert_eq!(classify(23), InterfaceKind::Other);
    }
}
