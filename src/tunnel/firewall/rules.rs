//! Inbound rules: what they match, and how they are read from the
//! `[firewall]` section (with the file, field and fix of every mistake).

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use super::flow::{Flow, ICMP, ICMPV6, TCP, UDP};
use crate::config::{invalid, ConfigError};
use crate::identity::PeerId;

/// The protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    /// Any protocol.
    Any,
}

/// Who a rule lets in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Anyone.
    Any,
    /// Members whose certificate names this group.
    Group(String),
    /// The peer with this key.
    Peer(PeerId),
    /// Packets whose (inner) source address is in this network.
    Cidr(IpNet),
}

/// One inbound rule: packets of `proto` to a port in `ports` from one of
/// `from` pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The protocol.
    pub proto: Proto,
    /// First and last destination port (`0..=65535` for any; ignored for
    /// ICMP).
    pub ports: (u16, u16),
    /// Who may send.
    pub from: Vec<Source>,
}

/// The sender of an inbound packet: its key and its certificate's groups.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    /// The peer's key.
    pub peer: PeerId,
    /// Its groups (empty without a certificate).
    pub groups: &'a [String],
}

impl Rule {
    /// Whether `flow`, sent by `sender`, matches.
    pub fn matches(&self, flow: &Flow, sender: &Sender<'_>) -> bool {
        let proto = match self.proto {
            Proto::Any => true,
            Proto::Tcp => flow.proto == TCP,
            Proto::Udp => flow.proto == UDP,
            Proto::Icmp => flow.proto == ICMP || flow.proto == ICMPV6,
        };
        let port = match flow.proto {
            TCP | UDP => (self.ports.0..=self.ports.1).contains(&flow.dport),
            _ => self.ports == (0, u16::MAX),
        };
        proto
            && port
            && self.from.iter().any(|s| match s {
                Source::Any => true,
                Source::Group(g) => sender.groups.iter().any(|h| h == g),
                Source::Peer(p) => *p == sender.peer,
                Source::Cidr(net) => net.contains(&flow.src),
            })
    }
}

/// The `[firewall]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FirewallSection {
    default_inbound: Option<String>,
    #[serde(default)]
    inbound: Vec<RuleSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSection {
    proto: String,
    port: Option<String>,
    #[serde(default)]
    from: Vec<String>,
}

/// A validated `[firewall]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Whether packets no rule matches pass (`default_inbound = "allow"`).
    pub default_allow: bool,
    /// The inbound rules, in order.
    pub inbound: Vec<Rule>,
}

impl Default for FirewallConfig {
    /// No `[firewall]` section: everything passes, as before firewalls.
    fn default() -> Self {
        Self {
            default_allow: true,
            inbound: Vec::new(),
        }
    }
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    if text == "any" {
        return Some((0, u16::MAX));
    }
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo <= hi).then_some((lo, hi))
}

impl FirewallSection {
    /// Validates the section of `path`. `peers` are the keys a `peer:`
    /// source may name (`None`: any key, with a network CA); `network`
    /// says whether groups can match anything (else a warning).
    pub(crate) fn validate(
        self,
        path: &Path,
        peers: Option<&[PeerId]>,
        network: bool,
    ) -> Result<(FirewallConfig, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let default_allow = match self.default_inbound.as_deref() {
            // A [firewall] section is there to restrict: deny unless said.
            None | Some("deny") => false,
            Some("allow") => true,
            Some(other) => return Err(invalid(
                path,
                "firewall.default_inbound",
                format!("`{other}` is neither \"allow\" nor \"deny\""),
                "write default_inbound = \"deny\" (only what a rule allows passes) or \"allow\"",
            )),
        };
        let mut inbound = Vec::with_capacity(self.inbound.len());
        for (i, rule) in self.inbound.into_iter().enumerate() {
            let field = |name: &str| format!("firewall.inbound[{i}].{name}");
            let proto = match rule.proto.as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "icmp" => Proto::Icmp,
                "any" => Proto::Any,
                other => {
                    return Err(invalid(
                        path,
                        field("proto"),
                        format!("unknown protocol `{other}`"),
                        "use tcp, udp, icmp or any",
                    ))
                }
            };
            let port_text = rule.port.as_deref().unwrap_or("any");
            let ports = port_range(port_text).ok_or_else(|| {
                invalid(
                    path,
                    field("port"),
                    format!("`{port_text}` is not a port or a range of ports (0-65535)"),
                    "write a port (\"22\"), a range (\"8000-8100\") or \"any\"",
                )
            })?;
            if matches!(proto, Proto::Icmp) && ports != (0, u16::MAX) {
                return Err(invalid(
                    path,
                    field("port"),
                    "ICMP has no ports",
                    "leave port out (or \"any\") for proto = \"icmp\"",
                ));
            }
            if rule.from.is_empty() {
                return Err(invalid(
                    path,
                    field("from"),
                    "no source: the rule would match nothing",
                    "list who may send, e.g. from = [\"group:admins\"] or [\"any\"]",
                ));
            }
            let mut from = Vec::with_capacity(rule.from.len());
            for (j, text) in rule.from.iter().enumerate() {
                let f = format!("firewall.inbound[{i}].from[{j}]");
                let source = if text == "any" {
                    Source::Any
                } else if let Some(g) = text.strip_prefix("group:") {
                    if !crate::proto::cert::valid_group(g) {
                        return Err(invalid(
                            path,
                            f,
                            format!("`{g}` is not a group name"),
                            "use 1 to 32 of a-z, 0-9, '-', '_', '.'",
                        ));
                    }
                    if !network {
                        warnings.push(format!(
                            "{}: {f} names group `{g}`, which matches nothing without a [network] (groups come from certificates)",
                            path.display()
                        ));
                    }
                    Source::Group(g.to_owned())
                } else if let Some(k) = text.strip_prefix("peer:") {
                    let key = k.parse::<PeerId>().map_err(|e| {
                        invalid(
                            path,
                            &f,
                            format!("`{k}`: {e}"),
                            "use a peer's 44-character key",
                        )
                    })?;
                    if peers.is_some_and(|known| !known.contains(&key)) {
                        return Err(invalid(
                            path,
                            f,
                            format!("{key} is not one of the [[peer]] keys"),
                            "add that peer, or name a configured one",
                        ));
                    }
                    Source::Peer(key)
                } else if let Some(c) = text.strip_prefix("cidr:") {
                    let net = c.parse::<IpNet>().map_err(|_| {
                        invalid(
                            path,
                            &f,
                            format!("`{c}` is not a network"),
                            "write it as cidr:10.90.0.0/28 or cidr:fd90::/64",
                        )
                    })?;
                    Source::Cidr(net)
                } else {
                    return Err(invalid(
                        path,
                        f,
                        format!("`{text}` is not a source"),
                        "write any, group:NAME, peer:KEY or cidr:NET",
                    ));
                };
                from.push(source);
            }
            inbound.push(Rule { proto, ports, from });
        }
        Ok((
            FirewallConfig {
                default_allow,
                inbound,
            },
            warnings,
        ))
    }
}
