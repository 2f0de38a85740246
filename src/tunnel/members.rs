//! The tunnel's side of network membership: members found through the
//! directory own their certified addresses and routes in the datapath's
//! AllowedIPs (for sending to them and for checking what they send), and
//! their routes outside our own networks get kernel routes into the device.

use std::collections::BTreeSet;
use std::sync::Arc;

use ipnet::IpNet;

use super::device::Shared;
use super::routing::AllowedIps;
use crate::node::overlay::Overlay;

/// Rebuilds the datapath's routes whenever members join or leave, and keeps
/// the kernel routes of members' routes in step; until the overlay stops.
pub(super) async fn follow_members(shared: Arc<Shared>, overlay: Overlay, own: Vec<IpNet>) {
    let mut changes = overlay.member_changes();
    let mut installed: BTreeSet<IpNet> = BTreeSet::new();
    loop {
        let mut routes = AllowedIps::new();
        let mut wanted = BTreeSet::new();
        for member in overlay.members() {
            for net in member.cert.body.allowed_ips() {
                routes.insert(net, member.peer);
                let ours = own.iter().any(|o| o.trunc().contains(&net));
                if !ours {
                    wanted.insert(net.trunc());
                }
            }
        }
        // Configured peers keep what they were given.
        for (net, peer) in &shared.static_routes {
            routes.insert(*net, *peer);
        }
        shared.routes.store(Arc::new(routes));
        for net in wanted.difference(&installed).copied().collect::<Vec<_>>() {
            if net.prefix_len() == 0 {
                tracing::warn!(%net, "a member's default route is not installed (exit nodes need policy routing)");
                continue;
            }
            match antq_platform::add_route(&shared.tun, net.addr(), net.prefix_len()).await {
                Ok(()) | Err(antq_platform::PlatformError::AlreadyExists { .. }) => {
                    installed.insert(net);
                }
                Err(error) => tracing::warn!(%net, %error, "member route not installed"),
            }
        }
        for net in installed.difference(&wanted).copied().collect::<Vec<_>>() {
            if let Err(error) =
                antq_platform::del_route(&shared.tun, net.addr(), net.prefix_len()).await
            {
                tracing::debug!(%net, %error, "member route not removed");
            }
            installed.remove(&net);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
