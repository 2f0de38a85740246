//! The IPv4 default gateway: `GetIpForwardTable2`, the default route
//! (0.0.0.0/0 with a next hop) of the lowest metric.

use std::net::{IpAddr, Ipv4Addr};

use windows_sys::Win32::NetworkManagement::IpHelper::{
    FreeMibTable, GetIpForwardTable2, MIB_IPFORWARD_TABLE2,
};
use windows_sys::Win32::Networking::WinSock::AF_INET;

use super::sys::{check, ip_of_inet};
use crate::PlatformError;

/// Rows looked at, at most (a routing table has tens).
const MAX_ROWS: usize = 65_536;

pub(crate) fn default_gateway_v4() -> Result<Option<Ipv4Addr>, PlatformError> {
    let op = "read the IPv4 route table";
    let mut table: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
    // SAFETY: `table` is a valid out-pointer; on success it points to a
    // table the call allocated, freed below with FreeMibTable.
    check(op, unsafe { GetIpForwardTable2(AF_INET, &mut table) })?;
    if table.is_null() {
        return Ok(None);
    }
    // SAFETY: on success `table` points to a MIB_IPFORWARD_TABLE2 whose
    // `Table` holds `NumEntries` rows (a variable-length array).
    let found = unsafe {
        let count = ((*table).NumEntries as usize).min(MAX_ROWS);
        let rows = std::slice::from_raw_parts((*table).Table.as_ptr(), count);
        pick_default_v4(rows.iter().map(|r| {
            (
                ip_of_inet(&r.DestinationPrefix.Prefix),
                r.DestinationPrefix.PrefixLength,
                ip_of_inet(&r.NextHop),
                r.Metric,
            )
        }))
    };
    // SAFETY: `table` came from GetIpForwardTable2 and is freed once.
    unsafe { FreeMibTable(table as *const core::ffi::c_void) };
    Ok(found)
}

/// The next hop of the IPv4 default route of the lowest metric among rows
/// `(destination, prefix length, next hop, metric)`; on-link routes (next
/// hop 0.0.0.0) do not count.
pub(super) fn pick_default_v4(
    rows: impl IntoIterator<Item = (Option<IpAddr>, u8, Option<IpAddr>, u32)>,
) -> Option<Ipv4Addr> {
    rows.into_iter()
        .filter_map(|(dest, prefix, hop, metric)| match (dest, hop) {
            (Some(IpAddr::V4(d)), Some(IpAddr::V4(gw)))
                if d.is_unspecified() && prefix == 0 && !gw.is_unspecified() =>
            {
                Some((metric, gw))
            }
            _ => None,
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gw)| gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_of_the_lowest_metric_wins() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let rows = [
            (ip("10.0.0.0"), 8, ip("10.0.0.1"), 1),
            (ip("0.0.0.0"), 0, ip("0.0.0.0"), 1),
            (ip("0.0.0.0"), 0, ip("192.168.2.1"), 50),
            (ip("0.0.0.0"), 0, ip("192.168.1.1"), 25),
            (None, 0, ip("1.1.1.1"), 0),
        ];
        assert_eq!(pick_default_v4(rows), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(pick_default_v4(rows[..2].to_vec()), None);
    }
}
