//! The `[network]` section: membership of a network through a CA.
//!
//! ```toml
//! [network]
//! ca = ["CAPUBKEY"]                         # trusted CA keys (two while rotating)
//! certificate_file = "/etc/antq/host.cert"  # this host's, from `antq-tun ca sign`
//! revoked = ["HOSTPUBKEY"]                  # optional
//! ```
//!
//! Checked here, before anything is touched: every key parses, the
//! certificate is this host's, signed by a trusted CA, valid now, and its
//! addresses are the interface's (`interface.address` may then be left out:
//! it is taken from the certificate).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::Deserialize;

use crate::cert::{self, CertError};
use crate::config::{invalid, ConfigError};
use crate::identity::PeerId;
use crate::proto::cert::Certificate;

/// A certificate expiring sooner than this gets a warning.
pub const EXPIRY_WARNING_SECS: u64 = 30 * 86_400;

/// Most members one host holds at once (beyond its `[[peer]]`s).
pub const DEFAULT_MAX_MEMBERS: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkSection {
    #[serde(default)]
    ca: Vec<String>,
    certificate_file: Option<PathBuf>,
    #[serde(default)]
    revoked: Vec<String>,
}

/// A validated `[network]` section.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Trusted CA keys.
    pub ca: Vec<PeerId>,
    /// This host's certificate.
    pub certificate: Certificate,
    /// Where it was read from.
    pub certificate_file: PathBuf,
    /// Revoked host keys.
    pub revoked: Vec<PeerId>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn keys(
    path: &Path,
    field: &str,
    items: &[String],
    what: &str,
) -> Result<Vec<PeerId>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k.parse::<PeerId>().map_err(|e| {
                invalid(
                    path,
                    format!("{field}[{i}]"),
                    format!("`{k}`: {e}"),
                    format!("use the 44-character {what}"),
                )
            })
        })
        .collect()
}

impl NetworkSection {
    /// Validates the section of `path` for the host with key `own` and
    /// interface `addresses` (empty: taken from the certificate). Returns
    /// the config, the addresses to use and warnings.
    pub(super) fn validate(
        self,
        path: &Path,
        own: PeerId,
        addresses: &[IpNet],
    ) -> Result<(NetworkConfig, Vec<IpNet>, Vec<String>), ConfigError> {
        let ca = keys(
            path,
            "network.ca",
            &self.ca,
            "CA public key printed by `antq-tun ca init`",
        )?;
        if ca.is_empty() {
            return Err(invalid(
                path,
                "network.ca",
                "no trusted CA",
                "add the key printed by `antq-tun ca init`, e.g. ca = [\"<44-char key>\"]",
            ));
        }
        let revoked = keys(path, "network.revoked", &self.revoked, "host public key")?;
        let field = "network.certificate_file";
        let file = self.certificate_file.ok_or_else(|| {
            invalid(
                path,
                field,
                "no certificate",
                "sign one with `antq-tun ca sign --ca ca.key --pubkey <this host's key> --name NAME --address ADDR/LEN --out host.cert` and point certificate_file at it",
            )
        })?;
        let file = match path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        };
        let certificate = cert::load_certificate(&file).map_err(|e| {
            invalid(
                path,
                field,
                e.to_string(),
                "point it at a file written by `antq-tun ca sign`",
            )
        })?;
        let body = &certificate.body;
        cert::check_presenter(&certificate, &own).map_err(|_| {
            invalid(
                path,
                field,
                format!("{} is not this host's certificate", file.display()),
                format!(
                    "sign one for this host's key {own} (`antq-tun ca sign --pubkey {own} ...`)"
                ),
            )
        })?;
        let now = unix_now();
        if let Err(e) = cert::verify(&certificate, &ca, &[], now) {
            let fix = match &e {
                CertError::UnknownCa(key) => {
                    format!("add its CA key to network.ca (\"{key}\") or sign it with a trusted CA")
                }
                CertError::Expired(_) | CertError::NotYetValid(_) => {
                    "sign a new certificate with `antq-tun ca sign` (see --valid-for)".to_owned()
                }
                _ => "sign it again with `antq-tun ca sign`".to_owned(),
            };
            return Err(invalid(
                path,
                field,
                format!("{}: {e}", file.display()),
                fix,
            ));
        }
        if revoked.contains(&own) {
            return Err(invalid(
                path,
                "network.revoked",
                "this host's own key is revoked",
                "remove it from revoked, or give this host a new key and certificate",
            ));
        }
        let certified = &body.addresses;
        let addresses = if addresses.is_empty() {
            certified.clone()
        } else {
            let mut a = addresses.to_vec();
            let mut c = certified.clone();
            a.sort();
            c.sort();
            if a != c {
                let list = |v: &[IpNet]| {
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(invalid(
                    path,
                    "interface.address",
                    format!(
                        "[{}] is not what the certificate {} certifies: [{}]",
                        list(addresses),
                        file.display(),
                        list(certified)
                    ),
                    "use the certified addresses (or leave interface.address out to take them from the certificate)",
                ));
            }
            addresses.to_vec()
        };
        let mut warnings = Vec::new();
        let left = body.not_after.saturating_sub(now);
        if left < EXPIRY_WARNING_SECS {
            warnings.push(format!(
                "the certificate {} expires in {} days: sign a new one with `antq-tun ca sign`",
                file.display(),
                left / 86_400
            ));
        }
        Ok((
            NetworkConfig {
                ca,
                certificate,
                certificate_file: file,
                revoked,
            },
            addresses,
            warnings,
        ))
    }
}
