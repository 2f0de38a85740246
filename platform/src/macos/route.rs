//! Routes: `RTM_ADD` / `RTM_DELETE` on a routing socket, through
//! `route_manager`. A route through an interface carries the interface as
//! a link-level (`sockaddr_dl`) gateway, like `route add -net ... -interface`.

use std::net::{IpAddr, Ipv4Addr};

use route_manager::{Route, RouteManager};

use super::logic::pick_default_v4;
use super::{if_index, os_error};
use crate::{network_of, InterfaceRef, PlatformError};

/// The index of `iface`; `NotFound` for names that do not exist.
fn resolve(iface: &InterfaceRef) -> Result<u32, PlatformError> {
    match iface {
        InterfaceRef::Index(0) => Err(PlatformError::InvalidArgument {
            what: "interface index 0".into(),
        }),
        InterfaceRef::Index(i) => Ok(*i),
        InterfaceRef::Name(name) => match if_index(name) {
            0 => Err(PlatformError::NotFound {
                op: "look up interface",
            }),
            i => Ok(i),
        },
    }
}

fn route(iface: &InterfaceRef, dest: IpAddr, prefix_len: u8) -> Result<Route, PlatformError> {
    let net = network_of(dest, prefix_len)?;
    let index = resolve(iface)?;
    Ok(Route::new(net, prefix_len).with_if_index(index))
}

pub(crate) async fn add_route(
    iface: &InterfaceRef,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    let op = "add route";
    let route = route(iface, dest, prefix_len)?;
    RouteManager::new()
        .and_then(|mut m| m.add(&route))
        .map_err(|e| os_error(op, e))
}

/// Deletes the route to `dest/prefix_len`. The routing socket matches
/// destination and mask; the interface is only checked to exist.
pub(crate) async fn del_route(
    iface: &InterfaceRef,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    let op = "delete route";
    let route = route(iface, dest, prefix_len)?;
    RouteManager::new()
        .and_then(|mut m| m.delete(&route))
        .map_err(|e| os_error(op, e))
}

/// The IPv4 default gateway, from the routing table (`NET_RT_DUMP`
/// through `route_manager`).
pub(crate) fn default_gateway_v4() -> Result<Option<Ipv4Addr>, PlatformError> {
    let routes = RouteManager::new()
        .and_then(|mut m| m.list())
        .map_err(|e| os_error("list routes", e))?;
    Ok(pick_default_v4(
        routes
            .iter()
            .map(|r| (r.destination(), r.prefix(), r.gateway())),
    ))
}

// Compiled for macOS by CI on Linux (scripts/xcheck.sh), run only on a Mac.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_index_carry_the_network_and_the_interface() {
        let r = route(&InterfaceRef::Index(5), "10.1.2.3".parse().unwrap(), 16).unwrap();
        assert_eq!(r.destination(), "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!((r.prefix(), r.if_index()), (16, Some(5)));
        let r = route(
            &InterfaceRef::Index(9),
            "fd00:1:2:3::7".parse().unwrap(),
            48,
        )
        .unwrap();
        assert_eq!(r.destination(), "fd00:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!((r.prefix(), r.if_index()), (48, Some(9)));
        for (iface, len) in [(InterfaceRef::Index(0), 8), (InterfaceRef::Index(1), 33)] {
            assert!(matches!(
                route(&iface, "10.0.0.0".parse().unwrap(), len),
                Err(PlatformError::InvalidArgument { .. })
            ));
        }
    }
}
