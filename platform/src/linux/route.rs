//! Routes: `RTM_NEWROUTE` / `RTM_DELROUTE` in the main table.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{nl_error, validate_ifname, with_netlink};
use crate::{network_of, InterfaceRef, PlatformError};

/// The route message for `dest/prefix_len` via interface `index`, as
/// `ip route add <dest>/<len> dev <if>` sends it.
pub(super) fn route_message(
    index: u32,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<RouteMessage, PlatformError> {
    let net = network_of(dest, prefix_len)?;
    let builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(net, prefix_len)
        .map_err(|e| PlatformError::InvalidArgument {
            what: e.to_string(),
        })?
        .output_interface(index);
    // IPv4 device routes are link-scoped; IPv6 ones are always universe.
    let builder = if net.is_ipv4() {
        builder.scope(RouteScope::Link)
    } else {
        builder
    };
    Ok(builder.build())
}

async fn resolve(handle: &Handle, iface: &InterfaceRef) -> Result<u32, PlatformError> {
    match iface {
        InterfaceRef::Index(0) => Err(PlatformError::InvalidArgument {
            what: "interface index 0".into(),
        }),
        InterfaceRef::Index(i) => Ok(*i),
        InterfaceRef::Name(name) => {
            validate_ifname(name)?;
            let op = "look up interface";
            handle
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_next()
                .await
                .map_err(|e| nl_error(op, e))?
                .map(|l| l.header.index)
                .ok_or(PlatformError::NotFound { op })
        }
    }
}

pub(crate) async fn add_route(
    iface: &InterfaceRef,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    network_of(dest, prefix_len)?;
    with_netlink("add route", |handle| async move {
        let index = resolve(&handle, iface).await?;
        let msg = route_message(index, dest, prefix_len)?;
        handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| nl_error("add route", e))
    })
    .await
}

pub(crate) async fn del_route(
    iface: &InterfaceRef,
    dest: IpAddr,
    prefix_len: u8,
) -> Result<(), PlatformError> {
    network_of(dest, prefix_len)?;
    with_netlink("delete route", |handle| async move {
        let index = resolve(&handle, iface).await?;
        let mut msg = route_message(index, dest, prefix_len)?;
        // Match any scope, protocol and type, like `ip route del`.
        msg.header.scope = RouteScope::NoWhere;
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.kind = RouteType::Unspec;
        handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(|e| nl_error("delete route", e))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    use rtnetlink::packet_route::AddressFamily;

    #[test]
    fn route_messages() {
        let m = route_message(9, "10.20.30.40".parse().unwrap(), 16).unwrap();
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert_eq!(m.header.destination_prefix_length, 16);
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                "10.20.0.0".parse().unwrap()
            ))));
        assert!(m.attributes.contains(&RouteAttribute::Oif(9)));

        let m = route_message(9, "fd00:1::7".parse().unwrap(), 64).unwrap();
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet6(
                "fd00:1::".parse().unwrap()
            ))));

        assert!(route_message(9, "10.0.0.0".parse().unwrap(), 40).is_err());
    }
}
