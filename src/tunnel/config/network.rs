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

#[cfg(test)]
mod tests {
    use crate::cert::CaKey;
    use crate::identity::Identity;
    use crate::proto::cert::CertBody;
    use crate::tunnel::config::TunnelConfig;

    struct Net {
        dir: tempfile::TempDir,
        host: Identity,
        ca: CaKey,
    }

    fn now() -> u64 {
        super::unix_now()
    }

    impl Net {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let host = Identity::generate();
            host.save_new(&dir.path().join("host.key")).unwrap();
            let ca = CaKey::generate("lab").unwrap();
            let n = Self { dir, host, ca };
            n.certify(
                "host.cert",
                n.host.peer_id(),
                &n.ca,
                now() - 60..now() + 365 * 86_400,
            );
            n
        }

        fn certify(
            &self,
            file: &str,
            key: crate::identity::PeerId,
            ca: &CaKey,
            valid: std::ops::Range<u64>,
        ) {
            let cert = ca
                .sign(CertBody {
                    network: String::new(),
                    ca: [0; 32],
                    host: *key.as_bytes(),
                    name: "db1".into(),
                    not_before: valid.start,
                    not_after: valid.end,
                    addresses: vec![
                        "10.90.0.5/24".parse().unwrap(),
                        "fd90::5/64".parse().unwrap(),
                    ],
                    groups: vec![],
                    routes: vec![],
                })
                .unwrap();
            let path = self.dir.path().join(file);
            let _ = std::fs::remove_file(&path);
            crate::cert::save_certificate(&cert, &path).unwrap();
        }

        fn config(&self, address: &str, network: &str) -> String {
            format!(
                "[interface]\nprivate_key_file = \"host.key\"\n{address}\nbootstrap = [\"{}@198.51.100.1:9000\"]\n\n[network]\nca = [\"{}\"]\ncertificate_file = \"host.cert\"\n{network}\n",
                Identity::generate().peer_id(),
                self.ca.public()
            )
        }

        fn load(&self, text: &str) -> Result<TunnelConfig, crate::config::ConfigError> {
            let path = self.dir.path().join("peer.toml");
            std::fs::write(&path, text).unwrap();
            TunnelConfig::load(&path)
        }
    }

    #[test]
    fn a_network_config_needs_no_peers_and_may_omit_the_address() {
        let n = Net::new();
        let c = n.load(&n.config("", "")).unwrap();
        assert!(c.peers.is_empty());
        let net = c.network.unwrap();
        assert_eq!(net.ca, [n.ca.public()]);
        let addrs: Vec<String> = c.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["10.90.0.5/24", "fd90::5/64"]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // The same addresses, given in another order: fine.
        let c = n
            .load(&n.config("address = [\"fd90::5/64\", \"10.90.0.5/24\"]", ""))
            .unwrap();
        assert_eq!(c.addresses.len(), 2);
    }

    #[test]
    fn bad_network_configs_name_file_field_and_fix() {
        let n = Net::new();
        let other_ca = CaKey::generate("lab").unwrap();
        let err = |text: String| n.load(&text).unwrap_err().to_string();
        // An address the certificate does not certify.
        let e = err(n.config("address = [\"10.90.0.6/24\"]", ""));
        assert!(
            e.contains("peer.toml")
                && e.contains("`interface.address`")
                && e.contains("10.90.0.5/24"),
            "{e}"
        );
        // No CA; a bad CA key; a bad revoked key.
        let e = err(n
            .config("", "")
            .replace(&format!("ca = [\"{}\"]", n.ca.public()), "ca = []"));
        assert!(e.contains("`network.ca`") && e.contains("ca init"), "{e}");
        let e = err(n.config("", "").replace(&n.ca.public().to_string(), "nope"));
        assert!(e.contains("`network.ca[0]`"), "{e}");
        let e = err(n.config("", "revoked = [\"x\"]"));
        assert!(e.contains("`network.revoked[0]`"), "{e}");
        // Our own key revoked.
        let e = err(n.config("", &format!("revoked = [\"{}\"]", n.host.peer_id())));
        assert!(e.contains("`network.revoked`"), "{e}");
        // Signed by a CA we do not trust: the fix names the key to add.
        n.certify(
            "host.cert",
            n.host.peer_id(),
            &other_ca,
            now() - 60..now() + 86_400 * 90,
        );
        let e = err(n.config("", ""));
        assert!(
            e.contains("`network.certificate_file`") && e.contains(&other_ca.public().to_string()),
            "{e}"
        );
        // Someone else's certificate.
        n.certify(
            "host.cert",
            Identity::generate().peer_id(),
            &n.ca,
            now() - 60..now() + 86_400 * 90,
        );
        let e = err(n.config("", ""));
        assert!(
            e.contains("not this host's certificate") && e.contains(&n.host.peer_id().to_string()),
            "{e}"
        );
        // Expired.
        n.certify(
            "host.cert",
            n.host.peer_id(),
            &n.ca,
            now() - 100..now() - 10,
        );
        let e = err(n.config("", ""));
        assert!(e.contains("expired") && e.contains("--valid-for"), "{e}");
        // Missing file; no bootstrap.
        let e = err(n.config("", "").replace("host.cert", "missing.cert"));
        assert!(
            e.contains("`network.certificate_file`") && e.contains("missing.cert"),
            "{e}"
        );
        n.certify(
            "host.cert",
            n.host.peer_id(),
            &n.ca,
            now() - 60..now() + 86_400 * 90,
        );
        let text = n.config("", "");
        let no_boot: String = text
            .lines()
            .filter(|l| !l.starts_with("bootstrap"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = err(no_boot);
        assert!(
            e.contains("`interface.bootstrap`") && e.contains("directory"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_about_to_expire_is_a_warning() {
        let n = Net::new();
        n.certify(
            "host.cert",
            n.host.peer_id(),
            &n.ca,
            now() - 60..now() + 10 * 86_400,
        );
        let c = n.load(&n.config("", "")).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("expires in 9 days") || w.contains("expires in 10 days")),
            "{:?}",
            c.warnings
        );
    }
}
