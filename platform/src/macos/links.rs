//! Interface discovery: `getifaddrs`.
//!
//! Each interface has one `AF_LINK` entry (whose `ifa_data` is the
//! `struct if_data` with MTU and link type) and one entry per address.
//! IPv6 address flags come from `SIOCGIFAFLAG_IN6`; Wi-Fi is told apart
//! from Ethernet (both are `IFT_ETHER`) by SystemConfiguration.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use system_configuration::network_configuration::{get_interfaces, SCNetworkInterfaceType};

use super::logic::{classify, prefix_len, without_embedded_scope};
use super::{if_index, os_error};
use crate::{Interface, InterfaceAddress, InterfaceFlags, PlatformError};

pub(crate) async fn interfaces() -> Result<Vec<Interface>, PlatformError> {
    list()
}

/// The interfaces, sorted by index (synchronous; used by the watcher's
/// thread too).
pub(super) fn list() -> Result<Vec<Interface>, PlatformError> {
    let ifaddrs = IfAddrs::new().map_err(|e| os_error("list interfaces (getifaddrs)", e))?;
    let wifi = wifi_names();
    // Best effort: without the socket, IPv6 flags are reported clear.
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0) };
    // SAFETY: `fd` is a descriptor we own when non-negative.
    let v6_socket = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });

    let mut by_name: BTreeMap<String, (Interface, Option<u8>)> = BTreeMap::new();
    for ifa in ifaddrs.iter() {
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: getifaddrs gives NUL-terminated names.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let (iface, link_type) = by_name.entry(name.clone()).or_insert_with(|| {
            let f = ifa.ifa_flags as libc::c_int;
            let flags = InterfaceFlags {
                up: f & libc::IFF_UP != 0,
                running: f & libc::IFF_RUNNING != 0,
                loopback: f & libc::IFF_LOOPBACK != 0,
                point_to_point: f & libc::IFF_POINTOPOINT != 0,
                multicast: f & libc::IFF_MULTICAST != 0,
            };
            let interface = Interface {
                index: if_index(&name),
                name: name.clone(),
                flags,
                mtu: None,
                kind: crate::InterfaceKind::Other,
                addresses: Vec::new(),
            };
            (interface, None)
        });
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: non-null `ifa_addr` points to a sockaddr of at least the
        // common header.
        let family = libc::c_int::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_LINK if !ifa.ifa_data.is_null() => {
                // SAFETY: for AF_LINK entries `ifa_data` is a `struct if_data`
                // (read unaligned: getifaddrs packs its buffer).
                let data =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_data as *const libc::if_data) };
                iface.mtu = Some(data.ifi_mtu);
                *link_type = Some(data.ifi_type);
            }
            libc::AF_INET => {
                // SAFETY: AF_INET entries carry a sockaddr_in.
                let sin =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr as *const libc::sockaddr_in) };
                let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                iface.addresses.push(InterfaceAddress {
                    addr: IpAddr::V4(addr),
                    // SAFETY: a non-null netmask is a sockaddr of `sa_len` bytes.
                    prefix_len: unsafe { mask_prefix(ifa.ifa_netmask, 4, 4) }.unwrap_or(32),
                    deprecated: false,
                    temporary: false,
                    tentative: false,
                });
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 entries carry a sockaddr_in6.
                let sin6 =
                    unsafe { std::ptr::read_unaligned(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let flags = v6_socket
                    .as_ref()
                    .and_then(|s| address_flags(s.as_raw_fd(), &name, &sin6))
                    .unwrap_or(0);
                let addr = without_embedded_scope(Ipv6Addr::from(sin6.sin6_addr.s6_addr));
                iface.addresses.push(InterfaceAddress {
                    addr: IpAddr::V6(addr),
                    // SAFETY: as for IPv4.
                    prefix_len: unsafe { mask_prefix(ifa.ifa_netmask, 8, 16) }.unwrap_or(128),
                    deprecated: flags & libc::IN6_IFF_DEPRECATED != 0,
                    temporary: flags & libc::IN6_IFF_TEMPORARY != 0,
                    tentative: flags & libc::IN6_IFF_TENTATIVE != 0,
                });
            }
            _ => {}
        }
    }

    let mut out: Vec<Interface> = by_name
        .into_values()
        .filter(|(i, _)| i.index != 0)
        .map(|(mut i, link_type)| {
            i.kind = classify(link_type, &i.name, i.flags.loopback, wifi.contains(&i.name));
            i
        })
        .collect();
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// The prefix length of the netmask sockaddr `mask`, whose address starts
/// at byte `offset` and is `len` bytes long; `None` if there is no mask.
///
/// # Safety
///
/// `mask` must be null or point to a sockaddr of `sa_len` readable bytes.
unsafe fn mask_prefix(mask: *const libc::sockaddr, offset: usize, len: usize) -> Option<u8> {
    if mask.is_null() {
        return None;
    }
    // BSD netmasks may be cut short after the last non-zero byte.
    // SAFETY: per the contract, `sa_len` bytes are readable.
    let sa_len = usize::from(unsafe { (*mask).sa_len });
    let end = sa_len.min(offset + len);
    if end <= offset {
        return Some(0);
    }
    // SAFETY: bytes `offset..end` lie within the `sa_len` readable bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts((mask as *const u8).add(offset), end - offset) };
    Some(prefix_len(bytes))
}

/// The `IN6_IFF_*` flags of one IPv6 address (`SIOCGIFAFLAG_IN6`).
fn address_flags(fd: libc::c_int, name: &str, addr: &libc::sockaddr_in6) -> Option<libc::c_int> {
    // SAFETY: in6_ifreq is plain data; all-zero is a valid value.
    let mut req: libc::in6_ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_addr = *addr;
    // SAFETY: `req` is a valid in6_ifreq for this ioctl, which reads the
    // name and address and writes the flags into the union.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFAFLAG_IN6, &mut req as *mut libc::in6_ifreq) };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success the kernel filled in `ifru_flags6`.
    Some(unsafe { req.ifr_ifru.ifru_flags6 })
}

/// BSD names of the interfaces SystemConfiguration calls IEEE 802.11.
fn wifi_names() -> HashSet<String> {
    get_interfaces()
        .iter()
        .filter(|i| matches!(i.interface_type(), Some(SCNetworkInterfaceType::IEEE80211)))
        .filter_map(|i| i.bsd_name().map(|n| n.to_string()))
        .collect()
}

/// The list from `getifaddrs`, freed on drop.
struct IfAddrs(*mut libc::ifaddrs);

impl IfAddrs {
    fn new() -> io::Result<IfAddrs> {
        let mut head = std::ptr::null_mut();
        // SAFETY: getifaddrs writes a list head we free in Drop.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IfAddrs(head))
    }

    fn iter(&self) -> impl Iterator<Item = &libc::ifaddrs> {
        // SAFETY: the list stays valid while `self` lives; each node's
        // `ifa_next` is null or the next node.
        std::iter::successors(unsafe { self.0.as_ref() }, |ifa| unsafe {
            ifa.ifa_next.as_ref()
        })
    }
}

impl Drop for IfAddrs {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the head came from getifaddrs and is freed once.
            unsafe { libc::freeifaddrs(self.0) };
        }
    }
}

// Compiled for macOS by CI on Linux (scripts/xcheck.sh), run only on a Mac.
#[cfg(test)]
mod tests {
    use super::*;

    /// A sockaddr made of `bytes` (`sa_len`, family, then the rest).
    fn sockaddr(bytes: &[u8]) -> libc::sockaddr_storage {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        assert!(bytes.len() <= std::mem::size_of_val(&ss));
        // SAFETY: `bytes` fits in `ss`, checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                bytes.len(),
            );
        }
        ss
    }

    fn prefix(ss: &libc::sockaddr_storage, offset: usize, len: usize) -> Option<u8> {
        // SAFETY: `ss` holds `sa_len` (at most its size) readable bytes.
        unsafe { mask_prefix((ss as *const libc::sockaddr_storage).cast(), offset, len) }
    }

    /// Netmasks as getifaddrs gives them: BSD cuts a netmask short after
    /// its last non-zero byte (`sa_len` says how many bytes there are).
    #[test]
    fn netmask_prefixes() {
        let v4 = libc::AF_INET as u8;
        let v6 = libc::AF_INET6 as u8;
        let full = sockaddr(&[16, v4, 0, 0, 255, 255, 255, 0]);
        assert_eq!(prefix(&full, 4, 4), Some(24));
        let short = sockaddr(&[6, v4, 0, 0, 255, 255]);
        assert_eq!(prefix(&short, 4, 4), Some(16));
        // Nothing past the header: the all-zero mask.
        assert_eq!(prefix(&sockaddr(&[0, 0]), 4, 4), Some(0));
        let mut v6_64 = vec![16, v6, 0, 0, 0, 0, 0, 0];
        v6_64.extend([0xff; 8]);
        assert_eq!(prefix(&sockaddr(&v6_64), 8, 16), Some(64));
        let mut v6_128 = vec![28, v6, 0, 0, 0, 0, 0, 0];
        v6_128.extend([0xff; 16]);
        assert_eq!(prefix(&sockaddr(&v6_128), 8, 16), Some(128));
        // SAFETY: null is allowed.
        assert_eq!(unsafe { mask_prefix(std::ptr::null(), 4, 4) }, None);
    }
}
