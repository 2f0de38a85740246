//! Change events from rtnetlink multicast groups.

use std::pin::Pin;

use futures_channel::mpsc::UnboundedReceiver;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::proto::Connection;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use rtnetlink::{Handle, MulticastGroup};

use super::links::local_address;
use crate::{ChangeEvent, PlatformError};

/// Kernel receive buffer for notifications; bursts (e.g. a VPN bringing up
/// many routes) overflow the default quickly.
const RCVBUF: usize = 1 << 20;

pub(crate) struct ChangeWatcher {
    conn: Pin<Box<Connection<RouteNetlinkMessage>>>,
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    /// Keeps the connection's request side open, which keeps it running.
    _handle: Handle,
    closed: bool,
}

pub(crate) fn watch_changes() -> Result<ChangeWatcher, PlatformError> {
    let op = "subscribe to network changes";
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(PlatformError::Io {
            op,
            source: std::io::Error::other("must be called inside a Tokio runtime"),
        });
    }
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let (mut conn, handle, messages) = rtnetlink::new_multicast_connection(&groups)
        .map_err(|source| PlatformError::Netlink { op, source })?;
    // Best effort: a smaller buffer only means earlier overruns, which are
    // reported as `LinkChanged { index: 0 }`.
    let _ = conn.socket_mut().socket_mut().set_rx_buf_sz(RCVBUF);
    Ok(ChangeWatcher {
        conn: Box::pin(conn),
        messages,
        _handle: handle,
        closed: false,
    })
}

impl ChangeWatcher {
    pub(crate) async fn next(&mut self) -> Option<ChangeEvent> {
        while !self.closed {
            let msg = match select(self.conn.as_mut(), self.messages.next()).await {
                Either::Right((Some((msg, _)), _)) => msg,
                Either::Right((None, _)) | Either::Left(((), _)) => {
                    self.closed = true;
                    return None;
                }
            };
            if let Some(event) = event_of(msg) {
                return Some(event);
            }
        }
        None
    }
}

/// Turns one notification into an event; `None` for those of no interest.
pub(super) fn event_of(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<ChangeEvent> {
    match msg.payload {
        NetlinkPayload::InnerMessage(inner) => match inner {
            RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
                Some(ChangeEvent::LinkChanged {
                    index: l.header.index,
                })
            }
            RouteNetlinkMessage::NewAddress(a) => {
                local_address(&a).map(|addr| ChangeEvent::AddressAdded {
                    index: a.header.index,
                    addr,
                })
            }
            RouteNetlinkMessage::DelAddress(a) => {
                local_address(&a).map(|addr| ChangeEvent::AddressRemoved {
                    index: a.header.index,
                    addr,
                })
            }
            RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_) => {
                Some(ChangeEvent::RouteChanged)
            }
            _ => None,
        },
        // Notifications were lost: tell the caller to re-read everything.
        NetlinkPayload::Overrun(_) => Some(ChangeEvent::LinkChanged { index: 0 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
    use rtnetlink::packet_route::link::LinkMessage;
    use rtnetlink::packet_route::route::RouteMessage;
    use rtnetlink::packet_route::AddressFamily;

    fn nl(m: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::from(m)
    }

    #[test]
    fn events_from_notifications() {
        let mut link = LinkMessage::default();
        link.header.index = 4;
        assert_eq!(
            event_of(nl(RouteNetlinkMessage::DelLink(link))),
            Some(ChangeEvent::LinkChanged { index: 4 })
        );

        let mut a = AddressMessage::default();
        a.header.family = AddressFamily::Inet6;
        a.header.index = 5;
        a.attributes
            .push(AddressAttribute::Address("fd00::1".parse().unwrap()));
        assert_eq!(
            event_of(nl(RouteNetlinkMessage::NewAddress(a.clone()))),
            Some(ChangeEvent::AddressAdded {
                index: 5,
                addr: "fd00::1".parse().unwrap()
            })
        );
        assert_eq!(
            event_of(nl(RouteNetlinkMessage::DelAddress(a))),
            Some(ChangeEvent::AddressRemoved {
                index: 5,
                addr: "fd00::1".parse().unwrap()
            })
        );
        assert_eq!(
            event_of(nl(RouteNetlinkMessage::NewRoute(RouteMessage::default()))),
            Some(ChangeEvent::RouteChanged)
        );
        let overrun = NetlinkMessage::new(Default::default(), NetlinkPayload::Overrun(Vec::new()));
        assert_eq!(
            event_of(overrun),
            Some(ChangeEvent::LinkChanged { index: 0 })
        );
    }
}
