//! The bootstrap node's configuration file (TOML).
//!
//! ```toml
//! [bootstrap]
//! private_key_file = "/etc/antq/bootstrap.key"   # or private_key = "base64"
//! listen = "0.0.0.0:9000"
//! tcp_listen = "0.0.0.0:9000"   # optional; default: the `listen` address and
//!                               # port; "off" = no TCP (hosts behind networks
//!                               # that drop UDP cannot then connect)
//! observe_port = 9001    # optional; default: the `listen` port + 1 (another
//!                        # free port if that one is taken); "off" =
//!                        # none (peers with this bootstrap alone then cannot
//!                        # tell their NAT's mapping behaviour)
//! relay = true
//! allowed_keys = ["BASE64PUBKEY", ...]            # optional: serve only these
//! metrics = "127.0.0.1:9901"                     # optional: Prometheus, loopback only
//!
//! # Optional limits (defaults shown; docs/security.md explains each).
//! # "Per IP" means per IPv4 address or per IPv6 /64.
//! coordination_per_sec = 20          # FORWARD + RELAY_REQUEST per key
//! coordination_burst = 60
//! relay_bytes_per_sec = 25000000     # per direction of a relayed pair
//! relay_burst_bytes = 2000000
//! relay_key_bytes_per_sec = 25000000 # per sending key, over all its relays
//! relay_key_burst_bytes = 4000000
//! relay_max_per_key = 1024           # relays a key is in (and requests waiting)
//! relay_max_total = 16384            # relays in total (and requests waiting)
//! connections_per_sec_per_ip = 20    # new QUIC handshakes / TCP streams
//! max_connections_per_ip = 32
//! max_peers = 4096
//! max_pending_handshakes = 256
//! tcp_max_streams = 4096
//! tcp_max_streams_per_ip = 16
//! observe_per_sec_per_ip = 5         # OBSERVE_REQUESTs answered per source
//! observe_per_sec = 2000             # and in total
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BootstrapSettings, Limits, ObserveListen, TcpListen};
use crate::config::{invalid, load_private_key, parse_metrics, parse_toml, read_text, ConfigError};
use crate::identity::PeerId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bootstrap: Section,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    private_key_file: Option<PathBuf>,
    private_key: Option<String>,
    listen: Option<String>,
    tcp_listen: Option<String>,
    observe_port: Option<PortOrOff>,
    relay: Option<bool>,
    allowed_keys: Option<Vec<String>>,
    coordination_per_sec: Option<f64>,
    coordination_burst: Option<f64>,
    relay_bytes_per_sec: Option<f64>,
    relay_burst_bytes: Option<f64>,
    relay_key_bytes_per_sec: Option<f64>,
    relay_key_burst_bytes: Option<f64>,
    relay_max_per_key: Option<i64>,
    relay_max_total: Option<i64>,
    connections_per_sec_per_ip: Option<f64>,
    max_connections_per_ip: Option<i64>,
    max_peers: Option<i64>,
    max_pending_handshakes: Option<i64>,
    tcp_max_streams: Option<i64>,
    tcp_max_streams_per_ip: Option<i64>,
    observe_per_sec_per_ip: Option<f64>,
    observe_per_sec: Option<f64>,
    metrics: Option<String>,
}

/// A port number, or a word (`"off"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortOrOff {
    Port(i64),
    Word(String),
}

/// A validated bootstrap configuration: what [`Bootstrap::start`] takes,
/// and what the file says about running it (metrics, warnings).
///
/// [`Bootstrap::start`]: super::Bootstrap::start
#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Key, addresses, relaying, allowed keys and limits.
    pub settings: BootstrapSettings,
    /// Address of the Prometheus metrics listener (loopback only), if on.
    pub metrics: Option<SocketAddr>,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
}

impl BootstrapConfig {
    /// Reads and validates a bootstrap config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml(path, &read_text(path)?)
    }

    /// Validates config `text` as if it had been read from `path` (errors
    /// name it; a relative `private_key_file` is looked up next to it).
    /// [`BootstrapConfig::load`] is this after reading the file; the fuzz
    /// target `bootstrap_config` drives it directly.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: File = parse_toml(path, text)?;
        let defaults = Limits::default();
        let s = file.bootstrap;
        let (identity, warning) = load_private_key(
            path,
            "bootstrap",
            s.private_key_file.as_deref(),
            s.private_key.as_deref(),
        )?;
        let listen_text = s.listen.unwrap_or_else(|| "[::]:9000".to_owned());
        let listen = listen_text.parse::<SocketAddr>().map_err(|e| {
            invalid(
                path,
                "bootstrap.listen",
                format!("`{listen_text}`: {e}"),
                "write it as IP:PORT, e.g. \"0.0.0.0:9000\" or \"[::]:9000\"",
            )
        })?;
        let tcp_listen = match s.tcp_listen.as_deref().map(str::trim) {
            None => TcpListen::SameAsUdp,
            Some("off") => TcpListen::Off,
            Some(text) => TcpListen::At(text.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    path,
                    "bootstrap.tcp_listen",
                    format!("`{text}`: {e}"),
                    "write it as IP:PORT, e.g. \"0.0.0.0:9000\", or \"off\" for no TCP \
                     listener; leave it out to use the `listen` address",
                )
            })?),
        };
        let observe_fix = "write a free UDP port other than the listen port, e.g. observe_port = \
                           9001, or \"off\" for none; leave it out for the listen port + 1";
        let observe = match s.observe_port {
            None if listen.port() == u16::MAX => {
                return Err(invalid(
                    path,
                    "bootstrap.observe_port",
                    "the default (listen port + 1) does not exist for listen port 65535",
                    observe_fix,
                ))
            }
            None => ObserveListen::NextPort,
            Some(PortOrOff::Word(w)) if w.trim() == "off" => ObserveListen::Off,
            Some(PortOrOff::Word(w)) => {
                return Err(invalid(
                    path,
                    "bootstrap.observe_port",
                    format!("`{w}` is neither a port nor \"off\""),
                    observe_fix,
                ))
            }
            Some(PortOrOff::Port(n)) => match u16::try_from(n) {
                Ok(port) if port != 0 && (port != listen.port() || listen.port() == 0) => {
                    ObserveListen::Port(port)
                }
                _ => {
                    return Err(invalid(
                        path,
                        "bootstrap.observe_port",
                        format!(
                            "{n} is not a UDP port (1-65535) other than the listen port {}",
                            listen.port()
                        ),
                        observe_fix,
                    ))
                }
            },
        };
        let allowed_keys = s
            .allowed_keys
            .map(|keys| {
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| {
                        k.parse::<PeerId>().map_err(|e| {
                            invalid(
                                path,
                                format!("bootstrap.allowed_keys[{i}]"),
                                format!("`{k}`: {e}"),
                                "use 44-character keys printed by `antq-tun pubkey`",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let positive =
            |field: &str, value: Option<f64>, default: f64| -> Result<f64, ConfigError> {
                match value {
                    None => Ok(default),
                    Some(v) if v.is_finite() && v > 0.0 => Ok(v),
                    Some(v) => Err(invalid(
                        path,
                        format!("bootstrap.{field}"),
                        format!("{v} is not a positive number"),
                        format!("use a positive number (default {default})"),
                    )),
                }
            };
        let count =
            |field: &str, value: Option<i64>, default: usize| -> Result<usize, ConfigError> {
                match value {
                    None => Ok(default),
                    Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
                    Some(n) => Err(invalid(
                        path,
                        format!("bootstrap.{field}"),
                        format!("{n} is not a positive number"),
                        format!("use a positive whole number (default {default})"),
                    )),
                }
            };
        let limits = Limits {
            coordination_per_sec: positive(
                "coordination_per_sec",
                s.coordination_per_sec,
                defaults.coordination_per_sec,
            )?,
            coordination_burst: positive(
                "coordination_burst",
                s.coordination_burst,
                defaults.coordination_burst,
            )?,
            relay_bytes_per_sec: positive(
                "relay_bytes_per_sec",
                s.relay_bytes_per_sec,
                defaults.relay_bytes_per_sec,
            )?,
            relay_burst_bytes: positive(
                "relay_burst_bytes",
                s.relay_burst_bytes,
                defaults.relay_burst_bytes,
            )?,
            relay_key_bytes_per_sec: positive(
                "relay_key_bytes_per_sec",
                s.relay_key_bytes_per_sec,
                defaults.relay_key_bytes_per_sec,
            )?,
            relay_key_burst_bytes: positive(
                "relay_key_burst_bytes",
                s.relay_key_burst_bytes,
                defaults.relay_key_burst_bytes,
            )?,
            relay_max_per_key: count(
                "relay_max_per_key",
                s.relay_max_per_key,
                defaults.relay_max_per_key,
            )?,
            relay_max_total: count(
                "relay_max_total",
                s.relay_max_total,
                defaults.relay_max_total,
            )?,
            connections_per_sec_per_ip: positive(
                "connections_per_sec_per_ip",
                s.connections_per_sec_per_ip,
                defaults.connections_per_sec_per_ip,
            )?,
            max_connections_per_ip: count(
                "max_connections_per_ip",
                s.max_connections_per_ip,
                defaults.max_connections_per_ip,
            )?,
            max_peers: count("max_peers", s.max_peers, defaults.max_peers)?,
            max_pending_handshakes: count(
                "max_pending_handshakes",
                s.max_pending_handshakes,
                defaults.max_pending_handshakes,
            )?,
            tcp_max_streams: count(
                "tcp_max_streams",
                s.tcp_max_streams,
                defaults.tcp_max_streams,
            )?,
            tcp_max_streams_per_ip: count(
                "tcp_max_streams_per_ip",
                s.tcp_max_streams_per_ip,
                defaults.tcp_max_streams_per_ip,
            )?,
            observe_per_sec_per_ip: positive(
                "observe_per_sec_per_ip",
                s.observe_per_sec_per_ip,
                defaults.observe_per_sec_per_ip,
            )?,
            observe_per_sec: positive(
                "observe_per_sec",
                s.observe_per_sec,
                defaults.observe_per_sec,
            )?,
        };
        let metrics = s
            .metrics
            .as_deref()
            .map(|m| parse_metrics(path, "bootstrap.metrics", m, "127.0.0.1:9901"))
            .transpose()?;
        Ok(Self {
            path: path.to_owned(),
            settings: BootstrapSettings {
                identity,
                listen,
                tcp_listen,
                observe,
                relay: s.relay.unwrap_or(true),
                allowed_keys,
                limits,
            },
            metrics,
            warnings: warning.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn load(extra: &str) -> Result<BootstrapConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let key = Identity::generate().to_base64().to_string();
        let path = dir.path().join("boot.toml");
        std::fs::write(
            &path,
            format!("[bootstrap]\nprivate_key = \"{key}\"\nlisten = \"127.0.0.1:9000\"\n{extra}"),
        )
        .unwrap();
        BootstrapConfig::load(&path)
    }

    #[test]
    fn tcp_listen_defaults_to_the_udp_address() {
        let c = load("").unwrap();
        assert_eq!(c.settings.tcp_listen, TcpListen::SameAsUdp);
        assert_eq!(
            c.settings.limits.tcp_max_streams,
            Limits::default().tcp_max_streams
        );
    }

    #[test]
    fn tcp_listen_can_be_moved_or_turned_off() {
        let c = load("tcp_listen = \"0.0.0.0:443\"\ntcp_max_streams = 10\n").unwrap();
        assert_eq!(
            c.settings.tcp_listen,
            TcpListen::At("0.0.0.0:443".parse().unwrap())
        );
        assert_eq!(c.settings.limits.tcp_max_streams, 10);
        assert_eq!(
            load("tcp_listen = \"off\"\n").unwrap().settings.tcp_listen,
            TcpListen::Off
        );
    }

    #[test]
    fn bad_tcp_fields_name_file_field_and_fix() {
        let e = load("tcp_listen = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("boot.toml"), "{e}");
        assert!(e.contains("`bootstrap.tcp_listen`"), "{e}");
        assert!(e.contains("\"off\""), "{e}");
        let e = load("tcp_max_streams = 0\n").unwrap_err().to_string();
        assert!(e.contains("`bootstrap.tcp_max_streams`"), "{e}");
        assert!(e.contains("positive whole number"), "{e}");
        let e = load("tcp_listen = false\n").unwrap_err().to_string();
        assert!(e.contains("tcp_listen"), "{e}");
    }

    #[test]
    fn observe_port_defaults_to_the_next_port_and_can_be_set_or_turned_off() {
        let c = load("").unwrap();
        assert_eq!(c.settings.observe, ObserveListen::NextPort);
        assert_eq!(
            c.settings.observe.bind_addr(c.settings.listen),
            Some("127.0.0.1:9001".parse().unwrap())
        );
        let c = load("observe_port = 3478\nobserve_per_sec_per_ip = 2\n").unwrap();
        assert_eq!(c.settings.observe, ObserveListen::Port(3478));
        assert_eq!(c.settings.limits.observe_per_sec_per_ip, 2.0);
        assert_eq!(
            load("observe_port = \"off\"\n").unwrap().settings.observe,
            ObserveListen::Off
        );
    }

    #[test]
    fn bad_observe_port_names_file_field_and_fix() {
        for bad in ["0", "9000", "70000", "-1", "\"sometimes\"", "true"] {
            let e = load(&format!("observe_port = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("boot.toml"), "{bad}: {e}");
            assert!(e.contains("observe_port"), "{bad}: {e}");
            if bad != "true" {
                assert!(e.contains("fix:") && e.contains("\"off\""), "{bad}: {e}");
            }
        }
        let e = load("observe_per_sec = 0\n").unwrap_err().to_string();
        assert!(e.contains("`bootstrap.observe_per_sec`"), "{e}");
    }

    #[test]
    fn limits_default_and_can_be_set() {
        assert_eq!(load("").unwrap().settings.limits, Limits::default());
        let c = load(
            "max_peers = 100\nmax_connections_per_ip = 4\nrelay_max_per_key = 8\n\
             relay_max_total = 50\nrelay_key_bytes_per_sec = 1000\n\
             tcp_max_streams_per_ip = 2\nmax_pending_handshakes = 10\n",
        )
        .unwrap();
        let l = c.settings.limits;
        assert_eq!(
            (
                l.max_peers,
                l.max_connections_per_ip,
                l.relay_max_per_key,
                l.relay_max_total
            ),
            (100, 4, 8, 50)
        );
        assert_eq!(
            (l.tcp_max_streams_per_ip, l.max_pending_handshakes),
            (2, 10)
        );
        assert_eq!(l.relay_key_bytes_per_sec, 1000.0);
        for (field, bad) in [
            ("max_peers", "0"),
            ("max_connections_per_ip", "-1"),
            ("relay_max_total", "0"),
            ("relay_key_bytes_per_sec", "-5.0"),
        ] {
            let e = load(&format!("{field} = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("boot.toml"), "{e}");
            assert!(e.contains(&format!("`bootstrap.{field}`")), "{e}");
            assert!(e.contains("fix:") && e.contains("default"), "{e}");
        }
    }

    #[test]
    fn metrics_only_on_loopback() {
        assert_eq!(load("").unwrap().metrics, None);
        let c = load("metrics = \"127.0.0.1:9901\"\n").unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9901".parse().unwrap()));
        let c = load("metrics = \"[::1]:9901\"\n").unwrap();
        assert_eq!(c.metrics, Some("[::1]:9901".parse().unwrap()));
        for bad in ["0.0.0.0:9901", "203.0.113.10:9901", "[::]:9901"] {
            let e = load(&format!("metrics = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("boot.toml"), "{e}");
            assert!(e.contains("`bootstrap.metrics`"), "{e}");
            assert!(e.contains("not a loopback address"), "{e}");
            assert!(
                e.contains("fix: use a loopback address, e.g. metrics = \"127.0.0.1:9901\""),
                "{e}"
            );
        }
        let e = load("metrics = \"localhost\"\n").unwrap_err().to_string();
        assert!(
            e.contains("`bootstrap.metrics`") && e.contains("fix:"),
            "{e}"
        );
    }
}
