//! Policy routing for the default route through the device (wg-quick's
//! scheme): `lookup main suppress_prefixlength 0` at
//! [`RULE_PRIORITY_MAIN`], `not fwmark MARK lookup MARK` at
//! [`RULE_PRIORITY_TUNNEL`], and table MARK's default route via the device.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteHeader, RouteMessage, RouteScope};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use super::super::{nl_error, with_netlink};
use crate::host_net::{RULE_PRIORITY_MAIN, RULE_PRIORITY_TUNNEL};
use crate::PlatformError;

/// Whether `msg` is one of our two rules (by priority and shape), for
/// `mark`: only those are ever deleted.
fn is_ours(msg: &RuleMessage, mark: Option<u32>) -> Option<u32> {
    let priority = msg.attributes.iter().find_map(|a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    })?;
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    let suppress = msg
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::SuppressPrefixLen(0)));
    let fwmark = msg.attributes.iter().find_map(|a| match a {
        RuleAttribute::FwMark(m) => Some(*m),
        _ => None,
    });
    let inverted = msg.header.flags.contains(RuleFlags::Invert);
    let ours = match priority {
        RULE_PRIORITY_MAIN => table == u32::from(RouteHeader::RT_TABLE_MAIN) && suppress,
        RULE_PRIORITY_TUNNEL => {
            inverted
                && fwmark.is_some()
                && Some(table) == fwmark
                && mark.is_none_or(|m| fwmark == Some(m))
        }
        _ => false,
    };
    ours.then_some(priority)
}

fn version(family: u8) -> IpVersion {
    if family == 6 {
        IpVersion::V6
    } else {
        IpVersion::V4
    }
}

/// Deletes our rules of `family` at `priority` (any mark when `mark` is
/// `None`); returns how many went.
pub(super) async fn delete(
    family: u8,
    priority: Option<u32>,
    mark: Option<u32>,
) -> Result<usize, PlatformError> {
    with_netlink("delete rule", |handle| async move {
        let rules: Vec<RuleMessage> = handle
            .rule()
            .get(version(family))
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error("list rules", e))?;
        let mut n = 0;
        for rule in rules {
            match is_ours(&rule, mark) {
                Some(p) if priority.is_none_or(|want| want == p) => {
                    handle
                        .rule()
                        .del(rule)
                        .execute()
                        .await
                        .map_err(|e| nl_error("delete rule", e))?;
                    n += 1;
                }
                _ => {}
            }
        }
        Ok(n)
    })
    .await
}

async fn add_main(handle: &Handle, family: u8) -> Result<(), rtnetlink::Error> {
    let req = handle
        .rule()
        .add()
        .priority(RULE_PRIORITY_MAIN)
        .table_id(u32::from(RouteHeader::RT_TABLE_MAIN))
        .action(RuleAction::ToTable);
    if family == 6 {
        let mut req = req.v6();
        req.message_mut()
            .attributes
            .push(RuleAttribute::SuppressPrefixLen(0));
        req.execute().await
    } else {
        let mut req = req.v4();
        req.message_mut()
            .attributes
            .push(RuleAttribute::SuppressPrefixLen(0));
        req.execute().await
    }
}

async fn add_tunnel(handle: &Handle, family: u8, mark: u32) -> Result<(), rtnetlink::Error> {
    let req = handle
        .rule()
        .add()
        .priority(RULE_PRIORITY_TUNNEL)
        .table_id(mark)
        .fw_mark(mark)
        .action(RuleAction::ToTable);
    if family == 6 {
        let mut req = req.v6();
        req.message_mut().header.flags = RuleFlags::Invert;
        req.execute().await
    } else {
        let mut req = req.v4();
        req.message_mut().header.flags = RuleFlags::Invert;
        req.execute().await
    }
}

/// Adds one of our two rules.
pub(super) async fn add(family: u8, priority: u32, mark: u32) -> Result<(), PlatformError> {
    with_netlink("add rule", |handle| async move {
        let result = if priority == RULE_PRIORITY_MAIN {
            add_main(&handle, family).await
        } else {
            add_tunnel(&handle, family, mark).await
        };
        result.map_err(|e| nl_error("add rule", e))
    })
    .await
}

/// Table `table`'s default route of `family` via interface `index`.
fn default_route_message(index: u32, family: u8, table: u32) -> RouteMessage {
    let dest = if family == 6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dest, 0)
        .expect("a zero-length prefix fits every family")
        .output_interface(index)
        .table_id(table);
    if family == 4 {
        builder.scope(RouteScope::Link).build()
    } else {
        builder.build()
    }
}

/// Adds the default route through the device to table `table`.
pub(super) async fn add_default_route(
    index: u32,
    family: u8,
    table: u32,
) -> Result<(), PlatformError> {
    with_netlink(
        "add default route to the tunnel's table",
        |handle| async move {
            handle
                .route()
                .add(default_route_message(index, family, table))
                .replace()
                .execute()
                .await
                .map_err(|e| nl_error("add default route to the tunnel's table", e))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::AddressFamily;

    fn rule(priority: u32, table: u32, attrs: Vec<RuleAttribute>, invert: bool) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.table = if table > 255 { 0 } else { table as u8 };
        if invert {
            m.header.flags = RuleFlags::Invert;
        }
        m.attributes.push(RuleAttribute::Priority(priority));
        if table > 255 {
            m.attributes.push(RuleAttribute::Table(table));
        }
        m.attributes.extend(attrs);
        m
    }

    #[test]
    fn only_our_rules_are_ours() {
        let main = rule(32760, 254, vec![RuleAttribute::SuppressPrefixLen(0)], false);
        assert_eq!(is_ours(&main, None), Some(32760));
        let tunnel = rule(32761, 0x6171, vec![RuleAttribute::FwMark(0x6171)], true);
        assert_eq!(is_ours(&tunnel, Some(0x6171)), Some(32761));
        assert_eq!(is_ours(&tunnel, None), Some(32761));
        assert_eq!(is_ours(&tunnel, Some(51820)), None);
        // The same priority with another shape is someone else's.
        assert_eq!(is_ours(&rule(32760, 254, vec![], false), None), None);
        let not_inverted = rule(32761, 0x6171, vec![RuleAttribute::FwMark(0x6171)], false);
        assert_eq!(is_ours(&not_inverted, None), None);
        assert_eq!(is_ours(&rule(32766, 254, vec![], false), None), None);
        let other_table = rule(32761, 100, vec![RuleAttribute::FwMark(0x6171)], true);
        assert_eq!(is_ours(&other_table, None), None);
    }

    #[test]
    fn default_routes_go_to_the_table() {
        use rtnetlink::packet_route::route::RouteAttribute;
        let m = default_route_message(7, 4, 0x6171);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(m.attributes.contains(&RouteAttribute::Table(0x6171)));
        let m = default_route_message(7, 6, 0x6171);
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
    }
}
