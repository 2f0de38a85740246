//! Reloading a running tunnel's configuration: what changed is applied,
//! what did not keeps running untouched (its connections stay up).
//!
//! Applied live: `[[peer]]` sections added, removed or changed (allowed
//! IPs, name: the names table is rebuilt; a changed endpoint reconnects
//! that peer), `interface.bootstrap`
//! (links to removed bootstraps close, new ones connect, the others stay),
//! and `[network]`: trusted CAs, revocations (members they refuse are
//! dropped at once) and a renewed certificate of ours. Anything else
//! (interface name, key, addresses, port, MTU, metrics, forwarding and the
//! exit node, `dns` on or off, adding or removing `[network]`) needs the
//! tunnel brought down and up: the reload is refused, naming the field, and
//! the running configuration stays.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{PeerConfig, TunnelConfig};
use super::device::{static_routes, Tunnel};
use crate::identity::PeerId;

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A field that cannot change while the tunnel runs.
    #[error(
        "{field} changed in {path}: that needs `antq-tun down` and `up` (nothing was changed)"
    )]
    NeedsRestart {
        /// The config file.
        path: String,
        /// The field.
        field: &'static str,
    },
}

/// What a reload changed.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    /// Peers added.
    pub added: usize,
    /// Peers removed.
    pub removed: usize,
    /// Peers whose allowed IPs, name or endpoint changed.
    pub changed: usize,
    /// Network members dropped (revoked, or their CA no longer trusted).
    pub members_dropped: usize,
    /// Whether our certificate was replaced.
    pub certificate_renewed: bool,
    /// Whether the list of bootstraps changed.
    pub bootstraps_changed: bool,
    /// Whether the firewall rules changed.
    pub firewall_changed: bool,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} peers added, {} removed, {} changed; {} members dropped{}",
            self.added,
            self.removed,
            self.changed,
            self.members_dropped,
            if self.certificate_renewed {
                "; certificate renewed"
            } else {
                ""
            },
        )?;
        if self.bootstraps_changed {
            write!(f, "; bootstraps changed")?;
        }
        if self.firewall_changed {
            write!(f, "; firewall rules changed")?;
        }
        Ok(())
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The first field of `new` that differs from `old` and cannot change live.
fn fixed_change(old: &TunnelConfig, new: &TunnelConfig) -> Option<&'static str> {
    if old.name != new.name {
        return Some("interface.name");
    }
    if old.identity.peer_id() != new.identity.peer_id() {
        return Some("interface.private_key");
    }
    if sorted(&old.addresses) != sorted(&new.addresses) {
        return Some("interface.address");
    }
    if old.listen_port != new.listen_port {
        return Some("interface.listen_port");
    }
    if old.mtu != new.mtu {
        return Some("interface.mtu");
    }
    if old.port_mapping != new.port_mapping {
        return Some("interface.port_mapping");
    }
    if old.metrics != new.metrics {
        return Some("interface.metrics");
    }
    let (o, n) = (&old.routing, &new.routing);
    for (changed, field) in [
        (o.gateway != n.gateway, "interface.gateway"),
        (o.subnets != n.subnets, "interface.subnets"),
        (o.masquerade != n.masquerade, "interface.masquerade"),
        (o.exit != n.exit, "interface.exit"),
        (o.exit_node != n.exit_node, "interface.exit_node"),
        (o.fwmark != n.fwmark, "interface.fwmark"),
    ] {
        if changed {
            return Some(field);
        }
    }
    if old.dns != new.dns {
        return Some("interface.dns");
    }
    let boot = |c: &TunnelConfig| {
        c.bootstrap
            .iter()
            .map(|b| (b.peer, b.addr))
            .collect::<Vec<_>>()
    };
    if boot(old) != boot(new) {
        return Some("interface.bootstrap");
    }
    if old.network.is_some() != new.network.is_some() {
        return Some("network");
    }
    if old.firewall_section != new.firewall_section {
        return Some("firewall");
    }
    None
}

impl Tunnel {
    /// Applies `new` (validated already) to the running tunnel; see the
    /// module documentation for what can change.
    pub fn reload(&mut self, new: TunnelConfig) -> Result<ReloadReport, ReloadError> {
        if let Some(field) = fixed_change(&self.config, &new) {
            return Err(ReloadError::NeedsRestart {
                path: new.path.display().to_string(),
                field,
            });
        }
        let overlay = self.datapath.overlay.clone();
        let mut report = ReloadReport::default();
        let old: HashMap<PeerId, &PeerConfig> = self
            .config
            .peers
            .iter()
            .map(|p| (p.public_key, p))
            .collect();
        let next: HashMap<PeerId, &PeerConfig> =
            new.peers.iter().map(|p| (p.public_key, p)).collect();
        for key in old.keys().filter(|k| !next.contains_key(k)) {
            overlay.remove_peer(key);
            report.removed += 1;
        }
        for (key, peer) in &next {
            match old.get(key) {
                None => {
                    // A member found through the directory may be listed
                    // now: the configured peer takes its place.
                    overlay.remove_peer(key);
                    overlay.add_peer(*key, peer.endpoint);
                    report.added += 1;
                }
                Some(before) if before.endpoint != peer.endpoint => {
                    overlay.remove_peer(key);
                    overlay.add_peer(*key, peer.endpoint);
                    report.changed += 1;
                }
                Some(before)
                    if sorted(&before.allowed_ips) != sorted(&peer.allowed_ips)
                        || before.name != peer.name =>
                {
                    report.changed += 1;
                }
                Some(_) => {}
            }
        }
        if let (Some(before), Some(after)) = (&self.config.network, &new.network) {
            if before.ca != after.ca || before.revoked != after.revoked {
                report.members_dropped = overlay
                    .set_member_policy(after.ca.clone(), after.revoked.clone())
                    .len();
            }
            if before.certificate != after.certificate {
                overlay.set_certificate(after.certificate.clone());
                report.certificate_renewed = true;
            }
        }
        let boot = |c: &TunnelConfig| {
            c.bootstrap
                .iter()
                .map(|b| (b.peer, b.addr))
                .collect::<Vec<_>>()
        };
        if boot(&self.config) != boot(&new) {
            overlay.set_bootstraps(&new.bootstrap);
            report.bootstraps_changed = true;
        }
        let shared = &self.datapath.shared;
        if let Some(fw) = &shared.firewall {
            if self.config.firewall != new.firewall {
                fw.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .set_config(new.firewall.clone());
                report.firewall_changed = true;
            }
        }
        shared.static_routes.store(Arc::new(static_routes(&new)));
        // Rebuilt with the routes: the peers' names, ours from a renewed
        // certificate.
        shared
            .local_names
            .store(Arc::new(super::dns::LocalNames::from_config(&new)));
        shared.routes_changed.notify_one();
        self.config = new;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use std::path::Path;

    fn config(own: &Identity, peer: PeerId, iface: &str, peer_lines: &str) -> TunnelConfig {
        let text = format!(
            "[interface]\nprivate_key = \"{}\"\naddress = [\"10.90.0.1/24\"]\n{iface}\n\
             [[peer]]\npublic_key = \"{peer}\"\nallowed_ips = [\"10.90.0.2/32\"]\n{peer_lines}\n",
            own.to_base64().as_str()
        );
        TunnelConfig::from_toml(Path::new("/nonexistent/peer.toml"), &text).unwrap()
    }

    #[test]
    fn dns_on_or_off_needs_a_restart_and_a_name_does_not() {
        let (own, peer) = (Identity::generate(), Identity::generate().peer_id());
        let base = config(&own, peer, "", "");
        let off = config(&own, peer, "dns = false", "");
        assert_eq!(fixed_change(&base, &off), Some("interface.dns"));
        let named = config(&own, peer, "", "name = \"db1\"");
        assert_eq!(fixed_change(&base, &named), None);
        assert_ne!(base.peers[0].name, named.peers[0].name);
    }
}
