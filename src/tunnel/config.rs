//! The tunnel's configuration file (TOML) and its validation.
//!
//! ```toml
//! [interface]
//! name = "antq0"                            # optional
//! private_key_file = "/etc/antq/host.key"   # or private_key = "base64"
//! address = ["10.90.0.1/24", "fd90::1/64"]
//! listen_port = 9000                        # optional, 0 = any
//! mtu = 1280                                # optional
//! bootstrap = ["BASE64PUBKEY@203.0.113.10:9000"]
//! metrics = "127.0.0.1:9900"                # optional: Prometheus, loopback only
//! port_mapping = true                       # optional (default): PCP/NAT-PMP/UPnP
//! gateway = true                            # optional: forward to `subnets` (see `routing`)
//! subnets = ["192.168.50.0/24"]
//! exit_node = "BASE64PUBKEY"                # optional: everything else through that peer
//! dns = true                                # optional (default): answer NAME.antq
//!
//! [[peer]]
//! public_key = "BASE64PUBKEY"
//! name = "db1"                              # optional: db1.antq
//! allowed_ips = ["10.90.0.2/32", "fd90::2/128"]
//! endpoint = "198.51.100.7:9000"            # optional known address
//! ```
//!
//! Every problem is reported with the file, the field and how to fix it,
//! before anything on the system is touched.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{invalid, load_private_key, parse_metrics, parse_toml, read_text};
use crate::identity::{Identity, PeerId};

/// The errors of this file (shared with the bootstrap's config file).
pub use crate::config::ConfigError;
/// The `bootstrap` entries, as the node takes them.
pub use crate::node::BootstrapAddr;

/// Smallest TUN MTU: IPv6 requires every link to carry 1280-byte packets.
pub const MIN_MTU_IPV6: u16 = 1280;
/// Smallest TUN MTU for an IPv4-only tunnel (RFC 791's 576).
pub const MIN_MTU_IPV4: u16 = 576;
/// Largest TUN MTU we accept: a datagram must fit one UDP packet on a
/// 9000-byte jumbo frame path with room for headers.
pub const MAX_MTU: u16 = 8800;
/// Default TUN MTU: a 1280-byte IPv6 packet always fits a QUIC datagram.
pub const DEFAULT_MTU: u16 = 1280;
/// Default interface name.
pub const DEFAULT_NAME: &str = "antq0";

mod names;
mod network;
mod routing;

pub use network::{NetworkConfig, DEFAULT_MAX_MEMBERS, EXPIRY_WARNING_SECS};
pub use routing::{check_exit_node, RoutingConfig};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interface: InterfaceSection,
    network: Option<network::NetworkSection>,
    firewall: Option<crate::tunnel::firewall::rules::FirewallSection>,
    #[serde(default, rename = "peer")]
    peers: Vec<PeerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterfaceSection {
    name: Option<String>,
    private_key_file: Option<PathBuf>,
    private_key: Option<String>,
    #[serde(default)]
    address: Vec<String>,
    listen_port: Option<u16>,
    mtu: Option<u16>,
    #[serde(default)]
    bootstrap: Vec<String>,
    metrics: Option<String>,
    port_mapping: Option<bool>,
    gateway: Option<bool>,
    #[serde(default)]
    subnets: Vec<String>,
    masquerade: Option<bool>,
    exit: Option<bool>,
    exit_node: Option<String>,
    fwmark: Option<u32>,
    dns: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    public_key: String,
    name: Option<String>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    endpoint: Option<String>,
}

/// One configured peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's key.
    pub public_key: PeerId,
    /// The peer's name (`NAME.antq`): a DNS label, lower-case, unique among
    /// the peers.
    pub name: Option<String>,
    /// Tunnel addresses the peer owns (routing) and may send from.
    pub allowed_ips: Vec<IpNet>,
    /// A known UDP address of the peer, if any.
    pub endpoint: Option<SocketAddr>,
}

/// A validated tunnel configuration.
#[derive(Clone, Debug)]
pub struct TunnelConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Interface name.
    pub name: String,
    /// Our key pair.
    pub identity: Identity,
    /// Addresses of the interface, with prefix length.
    pub addresses: Vec<IpNet>,
    /// UDP port to listen on (0 = any).
    pub listen_port: u16,
    /// TUN MTU.
    pub mtu: u16,
    /// Bootstrap nodes.
    pub bootstrap: Vec<BootstrapAddr>,
    /// Peers.
    pub peers: Vec<PeerConfig>,
    /// Membership of a network (CA), if configured: members need no
    /// `[[peer]]` section.
    pub network: Option<NetworkConfig>,
    /// The inbound firewall (everything passes without a `[firewall]`).
    pub firewall: crate::tunnel::firewall::FirewallConfig,
    /// Whether the file has a `[firewall]` section (without one, packets
    /// are not even looked at).
    pub firewall_section: bool,
    /// Address of the Prometheus metrics listener (localhost only), if on.
    pub metrics: Option<SocketAddr>,
    /// Ask the gateway to map our UDP port (PCP, NAT-PMP, UPnP IGD);
    /// `[interface] port_mapping`, default on.
    pub port_mapping: bool,
    /// Forwarding for peers (gateway, exit node) and our exit node.
    pub routing: RoutingConfig,
    /// Answer `NAME.antq` on the tunnel addresses (port 53) and register
    /// the responder with the system's resolver; `[interface] dns`,
    /// default on.
    pub dns: bool,
    /// Warnings to show the operator (e.g. a world-readable key file).
    pub warnings: Vec<String>,
}

/// Parses `KEY@ADDR:PORT`.
pub(crate) fn parse_bootstrap(
    path: &Path,
    field: &str,
    text: &str,
) -> Result<BootstrapAddr, ConfigError> {
    let fix = "write it as PUBLICKEY@IP:PORT, e.g. \"<44-char key>@203.0.113.10:9000\"";
    let (key, addr) = text
        .split_once('@')
        .ok_or_else(|| invalid(path, field, format!("`{text}` has no `@`"), fix))?;
    let peer = key
        .parse::<PeerId>()
        .map_err(|e| invalid(path, field, format!("bad key `{key}`: {e}"), fix))?;
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|e| invalid(path, field, format!("bad address `{addr}`: {e}"), fix))?;
    Ok(BootstrapAddr { peer, addr })
}

fn parse_nets(
    path: &Path,
    field: &str,
    items: &[String],
    host_bits: bool,
) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .map(|text| {
            let net = text.parse::<IpNet>().map_err(|_| {
                invalid(
                    path,
                    field,
                    format!("`{text}` is not an address with a prefix length"),
                    "write it in CIDR form, e.g. \"10.90.0.2/32\" or \"fd90::2/128\"",
                )
            })?;
            if !host_bits && net.trunc() != net {
                return Err(invalid(
                    path,
                    field,
                    format!("`{text}` has host bits set"),
                    format!("write the network address, \"{}\"", net.trunc()),
                ));
            }
            Ok(net)
        })
        .collect()
}

impl TunnelConfig {
    /// Reads and validates a tunnel config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml(path, &read_text(path)?)
    }

    /// Validates config `text` as if it had been read from `path`: errors
    /// name `path`, and a relative `private_key_file` is looked up next to
    /// it. [`TunnelConfig::load`] is this after reading the file; the fuzz
    /// target `tunnel_config` drives it directly.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: File = parse_toml(path, text)?;
        let iface = file.interface;
        let mut warnings = Vec::new();
        let (identity, warning) = load_private_key(
            path,
            "interface",
            iface.private_key_file.as_deref(),
            iface.private_key.as_deref(),
        )?;
        warnings.extend(warning);

        let name = iface.name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
        if name.is_empty()
            || name.len() > 15
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                path,
                "interface.name",
                format!("`{name}` is not a valid interface name"),
                "use 1 to 15 letters, digits, '-', '_' or '.'",
            ));
        }

        let addresses = parse_nets(path, "interface.address", &iface.address, true)?;
        let (network, addresses) = match file.network {
            Some(section) => {
                let (network, addresses, warning) =
                    section.validate(path, identity.peer_id(), &addresses)?;
                warnings.extend(warning);
                (Some(network), addresses)
            }
            None => (None, addresses),
        };
        if addresses.is_empty() {
            return Err(invalid(
                path,
                "interface.address",
                "no tunnel address",
                "add at least one, e.g. address = [\"10.90.0.1/24\"]",
            ));
        }

        let has_v6 = addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
        let mtu = iface.mtu.unwrap_or(DEFAULT_MTU);
        let min = if has_v6 { MIN_MTU_IPV6 } else { MIN_MTU_IPV4 };
        if !(min..=MAX_MTU).contains(&mtu) {
            return Err(invalid(
                path,
                "interface.mtu",
                format!("{mtu} is outside {min}..={MAX_MTU}"),
                format!("use a value in {min}..={MAX_MTU} (default {DEFAULT_MTU})"),
            ));
        }

        let bootstrap = iface
            .bootstrap
            .iter()
            .enumerate()
            .map(|(i, b)| parse_bootstrap(path, &format!("interface.bootstrap[{i}]"), b))
            .collect::<Result<Vec<_>, _>>()?;
        if network.is_some() && bootstrap.is_empty() {
            return Err(invalid(
                path,
                "interface.bootstrap",
                "a [network] needs a bootstrap: members find each other through its directory",
                "add one, e.g. bootstrap = [\"<44-char key>@203.0.113.10:9000\"]",
            ));
        }

        let metrics = iface
            .metrics
            .as_deref()
            .map(|m| parse_metrics(path, "interface.metrics", m, "127.0.0.1:9900"))
            .transpose()?;

        let own = identity.peer_id();
        let mut peers: Vec<PeerConfig> = Vec::with_capacity(file.peers.len());
        for (i, peer) in file.peers.iter().enumerate() {
            let field = |name: &str| format!("peer[{i}].{name}");
            let public_key = peer.public_key.parse::<PeerId>().map_err(|e| {
                invalid(
                    path,
                    field("public_key"),
                    format!("`{}`: {e}", peer.public_key),
                    "use the peer's 44-character key printed by `antq-tun pubkey`",
                )
            })?;
            if public_key == own {
                return Err(invalid(
                    path,
                    field("public_key"),
                    "this is our own public key",
                    "remove this [[peer]] section or put the other host's key here",
                ));
            }
            if let Some(j) = peers.iter().position(|p| p.public_key == public_key) {
                return Err(invalid(
                    path,
                    field("public_key"),
                    format!("the same key as peer[{j}]"),
                    "merge the two [[peer]] sections",
                ));
            }
            let allowed_ips = parse_nets(path, &field("allowed_ips"), &peer.allowed_ips, false)?;
            let name = match &peer.name {
                Some(text) => {
                    let name = names::peer_name(path, &field("name"), text)?;
                    names::check_unique(
                        path,
                        &field("name"),
                        &name,
                        peers.iter().map(|p| p.name.as_deref()),
                    )?;
                    warnings.extend(names::addressless_warning(path, i, &name, &allowed_ips));
                    Some(name)
                }
                None => None,
            };
            for net in &allowed_ips {
                for (j, other) in peers.iter().enumerate() {
                    if let Some(o) = other
                        .allowed_ips
                        .iter()
                        .find(|o| o.contains(net) || net.contains(*o))
                    {
                        return Err(invalid(
                            path,
                            field("allowed_ips"),
                            format!("{net} overlaps {o} of peer[{j}]"),
                            "give each address range to exactly one peer",
                        ));
                    }
                }
            }
            let endpoint = peer
                .endpoint
                .as_deref()
                .map(|e| {
                    e.parse::<SocketAddr>().map_err(|err| {
                        invalid(
                            path,
                            field("endpoint"),
                            format!("`{e}`: {err}"),
                            "write it as IP:PORT, e.g. \"198.51.100.7:9000\" or \"[2001:db8::7]:9000\"",
                        )
                    })
                })
                .transpose()?;
            peers.push(PeerConfig {
                public_key,
                name,
                allowed_ips,
                endpoint,
            });
        }

        let cert_routes = network
            .as_ref()
            .map(|n| n.certificate.body.routes.clone())
            .unwrap_or_default();
        let routing = routing::validate(
            path,
            routing::RoutingFields {
                gateway: iface.gateway,
                subnets: iface.subnets,
                masquerade: iface.masquerade,
                exit: iface.exit,
                exit_node: iface.exit_node,
                fwmark: iface.fwmark,
            },
            own,
            &peers,
            network.is_some(),
            &cert_routes,
        )?;

        let firewall_section = file.firewall.is_some();
        let firewall = match file.firewall {
            Some(section) => {
                let keys: Vec<PeerId> = peers.iter().map(|p| p.public_key).collect();
                let known = network.is_none().then_some(keys.as_slice());
                let (firewall, warning) = section.validate(path, known, network.is_some())?;
                warnings.extend(warning);
                firewall
            }
            None => crate::tunnel::firewall::FirewallConfig::default(),
        };

        Ok(Self {
            path: path.to_owned(),
            name,
            identity,
            addresses,
            listen_port: iface.listen_port.unwrap_or(0),
            mtu,
            bootstrap,
            peers,
            network,
            firewall,
            firewall_section,
            metrics,
            port_mapping: iface.port_mapping.unwrap_or(true),
            routing,
            dns: iface.dns.unwrap_or(true),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        own: Identity,
        peer: PeerId,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let own = Identity::generate();
            own.save_new(&dir.path().join("host.key")).unwrap();
            Self {
                dir,
                own,
                peer: Identity::generate().peer_id(),
            }
        }

        fn load(&self, text: &str) -> Result<TunnelConfig, ConfigError> {
            let path = self.dir.path().join("peer.toml");
            std::fs::write(
                &path,
                // The placeholders hold `<`, which no base64 key does: a key
                // put in for one can never be taken for the other.
                text.replace("<PEER>", &self.peer.to_string())
                    .replace("<OWN>", &self.own.peer_id().to_string()),
            )
            .unwrap();
            TunnelConfig::load(&path)
        }

        fn error(&self, text: &str) -> String {
            self.load(text).unwrap_err().to_string()
        }
    }

    const GOOD: &str = r#"
[interface]
private_key_file = "host.key"
address = ["10.90.0.1/24", "fd90::1/64"]
listen_port = 9000
bootstrap = ["<PEER>@198.51.100.1:9000"]

[[peer]]
public_key = "<PEER>"
allowed_ips = ["10.90.0.2/32", "fd90::2/128"]
endpoint = "198.51.100.7:9000"
"#;

    #[test]
    fn good_config_loads() {
        let f = Fixture::new();
        let c = f.load(GOOD).unwrap();
        assert_eq!(c.name, "antq0");
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.identity.peer_id(), f.own.peer_id());
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].public_key, f.peer);
        assert_eq!(c.bootstrap[0].addr, "198.51.100.1:9000".parse().unwrap());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn port_mapping_is_on_unless_turned_off() {
        let f = Fixture::new();
        assert!(f.load(GOOD).unwrap().port_mapping);
        let off = GOOD.replace("listen_port", "port_mapping = false\nlisten_port");
        assert!(!f.load(&off).unwrap().port_mapping);
        let bad = GOOD.replace("listen_port", "port_mapping = \"no\"\nlisten_port");
        let e = f.error(&bad);
        assert!(e.contains("peer.toml") && e.contains("port_mapping"), "{e}");
    }

    #[test]
    fn unknown_field_is_named() {
        let f = Fixture::new();
        let e = f.error(&GOOD.replace("listen_port", "listen_prot"));
        assert!(e.contains("peer.toml") && e.contains("listen_prot"), "{e}");
    }

    #[test]
    fn bad_values_name_file_field_and_fix() {
        let f = Fixture::new();
        let cases = [
            (
                GOOD.replace("host.key", "missing.key"),
                "interface.private_key_file",
            ),
            (
                GOOD.replace("private_key_file = \"host.key\"", "private_key = \"bad\""),
                "interface.private_key",
            ),
            (
                GOOD.replace("10.90.0.2/32", "10.90.0.300/32"),
                "peer[0].allowed_ips",
            ),
            (
                GOOD.replace("public_key = \"<PEER>\"", "public_key = \"<OWN>\""),
                "peer[0].public_key",
            ),
            (
                GOOD.replace("mtu", "x")
                    .replace("listen_port = 9000", "mtu = 1000"),
                "interface.mtu",
            ),
            (
                GOOD.replace("@198.51.100.1:9000", "198.51.100.1:9000"),
                "interface.bootstrap[0]",
            ),
        ];
        for (text, field) in cases {
            let e = f.error(&text);
            assert!(
                e.contains("peer.toml") && e.contains(field) && e.contains("fix:"),
                "{field}: {e}"
            );
        }
    }

    #[test]
    fn metrics_only_on_loopback() {
        let f = Fixture::new();
        assert_eq!(f.load(GOOD).unwrap().metrics, None);
        let with =
            |m: &str| GOOD.replace("listen_port", &format!("metrics = \"{m}\"\nlisten_port"));
        let c = f.load(&with("127.0.0.1:9900")).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9900".parse().unwrap()));
        for bad in ["0.0.0.0:9900", "198.51.100.1:9900", "[::]:9900"] {
            let e = f.error(&with(bad));
            assert!(
                e.contains("peer.toml")
                    && e.contains("`interface.metrics`")
                    && e.contains("not a loopback address")
                    && e.contains("fix: use a loopback address, e.g. metrics = \"127.0.0.1:9900\""),
                "{e}"
            );
        }
        let e = f.error(&with("127.0.0.1"));
        assert!(
            e.contains("`interface.metrics`") && e.contains("is not IP:PORT"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_allowed_ips_between_peers_are_refused() {
        let f = Fixture::new();
        let other = Identity::generate().peer_id();
        let text = format!(
            "{GOOD}\n[[peer]]\npublic_key = \"{other}\"\nallowed_ips = [\"10.90.0.0/24\"]\n"
        );
        let e = f.error(&text);
        assert!(
            e.contains("peer[1].allowed_ips") && e.contains("overlaps 10.90.0.2/32"),
            "{e}"
        );
    }

    #[test]
    fn peer_names_are_dns_labels_stored_lower_case() {
        let f = Fixture::new();
        let c = f.load(GOOD).unwrap();
        assert_eq!(c.peers[0].name, None);
        assert!(c.dns, "the responder is on by default");
        let named = GOOD.replace("endpoint =", "name = \"DB-1\"\nendpoint =");
        let c = f.load(&named).unwrap();
        assert_eq!(c.peers[0].name.as_deref(), Some("db-1"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for bad in ["", "-db", "db-", "db.1", "db_1", "dé", &"a".repeat(64)] {
            let text = GOOD.replace("endpoint =", &format!("name = \"{bad}\"\nendpoint ="));
            let e = f.error(&text);
            assert!(
                e.contains("peer.toml") && e.contains("peer[0].name") && e.contains("fix:"),
                "{bad:?}: {e}"
            );
        }
        let longest = "a".repeat(63);
        let text = GOOD.replace("endpoint =", &format!("name = \"{longest}\"\nendpoint ="));
        assert_eq!(f.load(&text).unwrap().peers[0].name, Some(longest));
        let off = GOOD.replace("listen_port", "dns = false\nlisten_port");
        assert!(!f.load(&off).unwrap().dns);
    }

    #[test]
    fn a_duplicate_peer_name_names_both_peers() {
        let f = Fixture::new();
        let other = Identity::generate().peer_id();
        let named = GOOD.replace("endpoint =", "name = \"db1\"\nendpoint =");
        let text = format!(
            "{named}\n[[peer]]\npublic_key = \"{other}\"\nname = \"DB1\"\nallowed_ips = [\"10.90.0.3/32\"]\n"
        );
        let e = f.error(&text);
        assert!(
            e.contains("peer[1].name") && e.contains("peer[0]") && e.contains("`db1`"),
            "{e}"
        );
        let text = text.replace("\"DB1\"", "\"db2\"");
        let c = f.load(&text).unwrap();
        assert_eq!(c.peers[1].name.as_deref(), Some("db2"));
    }

    #[test]
    fn a_named_peer_without_a_host_address_is_warned_about() {
        let f = Fixture::new();
        let text = GOOD
            .replace("endpoint =", "name = \"lan\"\nendpoint =")
            .replace(
                "[\"10.90.0.2/32\", \"fd90::2/128\"]",
                "[\"192.168.7.0/24\"]",
            );
        let c = f.load(&text).unwrap();
        assert!(
            c.warnings.len() == 1 && c.warnings[0].contains("`lan.antq` will answer no address"),
            "{:?}",
            c.warnings
        );
    }

    /// An absolute `private_key_file` is used as given (on Windows a drive
    /// path with backslashes, written as a TOML literal string); a relative
    /// one is looked up next to the config file (GOOD's "host.key"), not
    /// in the working directory.
    #[test]
    fn absolute_key_file_paths_are_used_as_given() {
        let f = Fixture::new();
        let elsewhere = tempfile::tempdir().unwrap();
        let key = elsewhere.path().join("elsewhere.key");
        let id = Identity::generate();
        id.save_new(&key).unwrap();
        assert!(key.is_absolute(), "{}", key.display());
        let text = GOOD.replace(
            "private_key_file = \"host.key\"",
            &format!("private_key_file = '{}'", key.display()),
        );
        assert_eq!(f.load(&text).unwrap().identity.peer_id(), id.peer_id());
        assert_ne!(std::env::current_dir().unwrap(), f.dir.path());
        assert_eq!(f.load(GOOD).unwrap().identity.peer_id(), f.own.peer_id());
    }

    /// Unix only: Windows files have ACLs, not mode bits.
    #[cfg(unix)]
    #[test]
    fn a_key_others_may_read_is_refused() {
        let f = Fixture::new();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            use std::os::unix::fs::PermissionsExt;
            let key = f.dir.path().join("host.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = f.error(GOOD);
            assert!(e.contains("`interface.private_key_file`"), "{e}");
            assert!(e.contains(&format!("mode {mode:o}")), "{e}");
            assert!(e.contains("fix: run `chmod 600"), "{e}");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(f.load(GOOD).is_ok());
        }
    }
}
