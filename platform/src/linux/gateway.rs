//! The IPv4 default gateway, from `/proc/net/route` (the table of the
//! calling thread's network namespace; readable without privilege).

use std::net::Ipv4Addr;

use crate::PlatformError;

/// `RTF_UP` and `RTF_GATEWAY` from `linux/route.h`.
const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// The table is a few lines per route; more than this is not read.
const MAX_LINES: usize = 4096;

pub(crate) fn default_gateway_v4() -> Result<Option<Ipv4Addr>, PlatformError> {
    let text = std::fs::read_to_string("/proc/net/route").map_err(|source| PlatformError::Io {
        op: "read /proc/net/route",
        source,
    })?;
    Ok(parse_route_table(&text))
}

/// The gateway of the up default route (destination and mask 0, `RTF_GATEWAY`)
/// with the lowest metric in a `/proc/net/route` text. Lines that do not
/// parse are skipped.
pub(crate) fn parse_route_table(text: &str) -> Option<Ipv4Addr> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .take(MAX_LINES)
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let (dest, gw, flags, metric, mask) = (
                hex(f.get(1)?)?,
                hex(f.get(2)?)?,
                hex(f.get(3)?)?,
                f.get(6)?.parse::<u32>().ok()?,
                hex(f.get(7)?)?,
            );
            let default = dest == 0 && mask == 0 && gw != 0;
            let up = flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
            // The kernel prints the network-order word as a native u32.
            (default && up).then(|| (metric, Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gw)| gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        let text = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t{}\t00000000\t0001\t0\t0\t0\t{}\t0\t0\t0\n\
             wlan0\t00000000\t{}\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth0\t00000000\t{}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             down0\t00000000\t{}\t0002\t0\t0\t0\t00000000\t0\t0\t0\n\
             junk line\n",
            word([10, 1, 0, 0]),
            word([255, 255, 255, 0]),
            word([192, 168, 1, 1]),
            word([10, 1, 0, 1]),
            word([10, 9, 9, 9]),
        );
        assert_eq!(parse_route_table(&text), Some(Ipv4Addr::new(10, 1, 0, 1)));
    }

    #[test]
    fn no_default_route_is_none() {
        let text = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_route_table(text), None);
        assert_eq!(parse_route_table(""), None);
    }

    #[test]
    fn this_hosts_table_reads() {
        // Whatever the machine has; only that it does not fail.
        assert!(default_gateway_v4().is_ok());
    }
}
