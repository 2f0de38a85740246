//! The bootstrap node's configuration file (TOML).
//!
//! ```toml
//! [bootstrap]
//! private_key_file = "/etc/antq/bootstrap.key"   # or private_key = "base64"
//! listen = "0.0.0.0:9000"
//! relay = true
//! allowed_keys = ["BASE64PUBKEY", ...]            # optional: serve only these
//! coordination_per_sec = 20                      # optional rate limits
//! relay_bytes_per_sec = 12500000
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Limits;
use crate::identity::{Identity, PeerId};
use crate::tunnel::config::{invalid, load_private_key, parse_toml, read_text, ConfigError};

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
    relay: Option<bool>,
    allowed_keys: Option<Vec<String>>,
    coordination_per_sec: Option<f64>,
    coordination_burst: Option<f64>,
    relay_bytes_per_sec: Option<f64>,
    relay_burst_bytes: Option<f64>,
    connections_per_sec_per_ip: Option<f64>,
}

/// A validated bootstrap configuration.
#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The bootstrap's key pair.
    pub identity: Identity,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Whether to relay traffic between peers.
    pub relay: bool,
    /// If set, only these keys may use the bootstrap (and its relay).
    pub allowed_keys: Option<Vec<PeerId>>,
    /// Rate limits.
    pub limits: Limits,
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
        let defaults = Limits::default();
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
            connections_per_sec_per_ip: positive(
                "connections_per_sec_per_ip",
                s.connections_per_sec_per_ip,
                defaults.connections_per_sec_per_ip,
            )?,
        };
        Ok(Self {
            path: path.to_owned(),
            identity,
            listen,
            relay: s.relay.unwrap_or(true),
            allowed_keys,
            limits,
            warnings: warning.into_iter().collect(),
        })
    }
}
