//! Forwarding and the exit node, in `[interface]`:
//!
//! ```toml
//! [interface]
//! gateway = true                    # forward peers' packets to our subnets
//! subnets = ["192.168.50.0/24"]     # the LANs we serve (a certificate's routes count too)
//! masquerade = true                 # peers' packets leave with our LAN address
//! exit = true                       # forward peers' packets anywhere (an exit node)
//! exit_node = "BASE64PEERKEY"       # send everything without a more specific route there
//! fwmark = 0x6171                   # mark of our own sockets and the exit table's number
//! ```
//!
//! A subnet gateway must also be given the subnets by its peers (in their
//! `[[peer]] allowed_ips` for it, or in its certificate's routes): that is
//! what makes them send those addresses to it.

use std::path::Path;

use ipnet::IpNet;

use super::{parse_nets, PeerConfig};
use crate::config::{invalid, ConfigError};
use crate::identity::PeerId;

/// The `[interface]` fields of this module, as read.
#[derive(Debug, Default)]
pub(super) struct RoutingFields {
    pub(super) gateway: Option<bool>,
    pub(super) subnets: Vec<String>,
    pub(super) masquerade: Option<bool>,
    pub(super) exit: Option<bool>,
    pub(super) exit_node: Option<String>,
    pub(super) fwmark: Option<u32>,
}

/// Forwarding and exit node settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Forward peers' packets to [`RoutingConfig::subnets`]
    /// (`gateway = true`).
    pub gateway: bool,
    /// The subnets a gateway serves: `subnets` and our certificate's
    /// routes.
    pub subnets: Vec<IpNet>,
    /// Forward peers' packets to any address (`exit = true`).
    pub exit: bool,
    /// Masquerade what we forward out of other interfaces (default: on for
    /// an exit node, off for a gateway).
    pub masquerade: bool,
    /// The peer that gets everything without a more specific route.
    pub exit_node: Option<PeerId>,
    /// Mark of our own sockets' packets, and the number of the routing
    /// table with the default route through the device, when
    /// [`RoutingConfig::exit_node`] is set.
    pub fwmark: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            gateway: false,
            subnets: Vec::new(),
            exit: false,
            masquerade: false,
            exit_node: None,
            fwmark: antq_platform::DEFAULT_MARK,
        }
    }
}

impl RoutingConfig {
    /// Whether we forward peers' packets at all.
    pub fn forwards(&self) -> bool {
        self.gateway || self.exit
    }
}

/// Checks `exit_node` (from the file, or `antq-tun up --exit-node`, which
/// errors name as `field`): a key, not ours, and a configured peer unless
/// members come from a network.
pub fn check_exit_node(
    path: &Path,
    field: &str,
    text: &str,
    own: PeerId,
    peers: &[PeerConfig],
    network: bool,
    exit: bool,
) -> Result<PeerId, ConfigError> {
    let key = text.parse::<PeerId>().map_err(|e| {
        invalid(
            path,
            field,
            format!("`{text}`: {e}"),
            "use the exit node's 44-character key printed by `antq-tun pubkey`",
        )
    })?;
    if key == own {
        return Err(invalid(
            path,
            field,
            "this is our own key",
            "put the key of the peer that has `exit = true` here",
        ));
    }
    if exit {
        return Err(invalid(
            path,
            field,
            "`exit = true` too: a host is an exit node or uses one",
            "remove one of `exit` and `exit_node`",
        ));
    }
    if !network && !peers.iter().any(|p| p.public_key == key) {
        return Err(invalid(
            path,
            field,
            format!("{key} is not a [[peer]]"),
            "add a [[peer]] section with that key (its allowed_ips: its tunnel addresses)",
        ));
    }
    Ok(key)
}

/// Validates the fields; `cert_routes` are our certificate's routes.
pub(super) fn validate(
    path: &Path,
    fields: RoutingFields,
    own: PeerId,
    peers: &[PeerConfig],
    network: bool,
    cert_routes: &[IpNet],
) -> Result<RoutingConfig, ConfigError> {
    let gateway = fields.gateway.unwrap_or(false);
    let exit = fields.exit.unwrap_or(false);
    let mut subnets = parse_nets(path, "interface.subnets", &fields.subnets, false)?;
    if !subnets.is_empty() && !gateway {
        return Err(invalid(
            path,
            "interface.subnets",
            "subnets are served only by a gateway",
            "add `gateway = true` to [interface], or remove `subnets`",
        ));
    }
    if let Some(net) = subnets.iter().find(|n| n.prefix_len() == 0) {
        return Err(invalid(
            path,
            "interface.subnets",
            format!("{net} is every address"),
            "to forward everything, use `exit = true` instead",
        ));
    }
    for net in cert_routes {
        if !subnets.contains(net) {
            subnets.push(*net);
        }
    }
    if gateway && subnets.is_empty() {
        return Err(invalid(
            path,
            "interface.subnets",
            "`gateway = true` but no subnet to serve",
            "list the LANs peers may reach through this host, e.g. subnets = [\"192.168.50.0/24\"]",
        ));
    }
    let masquerade = fields.masquerade.unwrap_or(exit);
    if masquerade && !gateway && !exit {
        return Err(invalid(
            path,
            "interface.masquerade",
            "nothing is forwarded to masquerade",
            "add `gateway = true` (with subnets) or `exit = true`, or remove `masquerade`",
        ));
    }
    let fwmark = fields.fwmark.unwrap_or(antq_platform::DEFAULT_MARK);
    if fwmark == 0 {
        return Err(invalid(
            path,
            "interface.fwmark",
            "0 is no mark",
            format!(
                "leave it out (default {:#x}) or pick another number",
                antq_platform::DEFAULT_MARK
            ),
        ));
    }
    if let Some((i, p)) = peers.iter().enumerate().find_map(|(i, p)| {
        p.allowed_ips
            .iter()
            .find(|n| n.prefix_len() == 0)
            .map(|n| (i, n))
    }) {
        return Err(invalid(
            path,
            format!("peer[{i}].allowed_ips"),
            format!("{p} would send everything to that peer without policy routing"),
            "put `exit_node = \"<that peer's key>\"` in [interface] instead",
        ));
    }
    let exit_node = fields
        .exit_node
        .as_deref()
        .map(|text| check_exit_node(path, "interface.exit_node", text, own, peers, network, exit))
        .transpose()?;
    Ok(RoutingConfig {
        gateway,
        subnets,
        exit,
        masquerade,
        exit_node,
        fwmark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn peer(key: PeerId, nets: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: key,
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
            endpoint: None,
            name: None,
        }
    }

    fn check(fields: RoutingFields, peers: &[PeerConfig]) -> Result<RoutingConfig, String> {
        let own = Identity::generate().peer_id();
        validate(Path::new("p.toml"), fields, own, peers, false, &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn gateway_needs_subnets_and_subnets_need_a_gateway() {
        let e = check(
            RoutingFields {
                gateway: Some(true),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("p.toml") && e.contains("interface.subnets"),
            "{e}"
        );
        let e = check(
            RoutingFields {
                subnets: vec!["192.168.50.0/24".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.contains("gateway = true"), "{e}");
        let ok = check(
            RoutingFields {
                gateway: Some(true),
                subnets: vec!["192.168.50.0/24".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert!(ok.gateway && !ok.masquerade && ok.forwards());
        let e = check(
            RoutingFields {
                gateway: Some(true),
                subnets: vec!["192.168.50.1/24".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.contains("host bits"), "{e}");
    }

    #[test]
    fn exit_masquerades_by_default_and_masquerade_needs_forwarding() {
        let ok = check(
            RoutingFields {
                exit: Some(true),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert!(ok.exit && ok.masquerade && ok.subnets.is_empty());
        let e = check(
            RoutingFields {
                masquerade: Some(true),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.contains("interface.masquerade"), "{e}");
        let e = check(
            RoutingFields {
                fwmark: Some(0),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.contains("interface.fwmark"), "{e}");
    }

    #[test]
    fn exit_node_must_be_a_peer_and_not_a_default_route_peer() {
        let c = Identity::generate().peer_id();
        let peers = [peer(c, &["10.90.0.3/32"])];
        let ok = check(
            RoutingFields {
                exit_node: Some(c.to_string()),
                ..Default::default()
            },
            &peers,
        )
        .unwrap();
        assert_eq!(ok.exit_node, Some(c));
        let stranger = Identity::generate().peer_id().to_string();
        let e = check(
            RoutingFields {
                exit_node: Some(stranger),
                ..Default::default()
            },
            &peers,
        )
        .unwrap_err();
        assert!(e.contains("not a [[peer]]"), "{e}");
        let e = check(
            RoutingFields {
                exit_node: Some("nope".into()),
                ..Default::default()
            },
            &peers,
        )
        .unwrap_err();
        assert!(e.contains("interface.exit_node"), "{e}");
        let e = check(
            RoutingFields {
                exit_node: Some(c.to_string()),
                exit: Some(true),
                ..Default::default()
            },
            &peers,
        )
        .unwrap_err();
        assert!(e.contains("exit node or uses one"), "{e}");
        let e = check(RoutingFields::default(), &[peer(c, &["0.0.0.0/0"])]).unwrap_err();
        assert!(
            e.contains("peer[0].allowed_ips") && e.contains("exit_node"),
            "{e}"
        );
    }
}
