//! Keeping the datapath's routes in step: the configured peers' allowed
//! IPs (which a reload may change) and the network members' certified
//! addresses and routes (members come and go), in the AllowedIPs table the
//! datapath reads and in the kernel's routes into the device; and the
//! names table (`NAME.antq`) from the same members and the config.

use std::collections::BTreeSet;
use std::sync::Arc;

use ipnet::IpNet;

use super::device::Shared;
use super::dns::Names;
use super::routing::AllowedIps;
use crate::node::overlay::Overlay;

/// Rebuilds the routes whenever members join or leave or a reload changes
/// the configured peers (`Shared::routes_changed`), until the overlay
/// stops. `installed` are the kernel routes in place at the start.
pub(super) async fn follow_routes(
    shared: Arc<Shared>,
    overlay: Overlay,
    own: Vec<IpNet>,
    mut installed: BTreeSet<IpNet>,
) {
    let mut changes = overlay.member_changes();
    loop {
        let mut routes = AllowedIps::new();
        let mut wanted = BTreeSet::new();
        let mut groups = std::collections::HashMap::new();
        let members = overlay.members();
        for member in &members {
            groups.insert(member.peer, member.cert.body.groups.clone());
            for net in member.cert.body.allowed_ips() {
                routes.insert(net, member.peer);
                if !own.iter().any(|o| o.trunc().contains(&net)) {
                    wanted.insert(net.trunc());
                }
            }
        }
        // Configured peers keep what they were given.
        for (net, peer) in shared.static_routes.load().iter() {
            routes.insert(*net, *peer);
            wanted.insert(net.trunc());
        }
        shared.routes.store(Arc::new(routes));
        shared.groups.store(Arc::new(groups));
        shared.names.store(Arc::new(Names::build(
            &shared.local_names.load(),
            members.iter().map(|m| &m.cert.body),
        )));
        for net in wanted.difference(&installed).copied().collect::<Vec<_>>() {
            if net.prefix_len() == 0 {
                // The exit node's default route lives in a table of its own
                // (antq_platform::apply_host_net); a member's certificate
                // route to everywhere is not followed without `exit_node`.
                tracing::debug!(%net, "a default route is not installed in the main table");
                continue;
            }
            match antq_platform::add_route(&shared.tun, net.addr(), net.prefix_len()).await {
                Ok(()) | Err(antq_platform::PlatformError::AlreadyExists { .. }) => {
                    installed.insert(net);
                }
                Err(error) => tracing::warn!(%net, %error, "route not installed"),
            }
        }
        for net in installed.difference(&wanted).copied().collect::<Vec<_>>() {
            if let Err(error) =
                antq_platform::del_route(&shared.tun, net.addr(), net.prefix_len()).await
            {
                tracing::debug!(%net, %error, "route not removed");
            }
            installed.remove(&net);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = shared.routes_changed.notified() => {}
        }
    }
}
