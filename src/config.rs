//! Shared config-file helpers: the error type every config file reports
//! with (file, field, fix), reading and parsing TOML, the private key of a
//! `[interface]` or `[bootstrap]` section, and the loopback-only metrics
//! address.
//!
//! The tunnel's file (`tunnel::config`) and the bootstrap's
//! (`bootstrap::config`) are built from these, so both report problems
//! the same way; this module knows neither.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::identity::{Identity, KeyFilePermissions};

/// A configuration problem, naming the file and field and saying how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}\n  fix: check the path given with -c and that the file is readable")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or missing fields.
    #[error("config {path}: {message}\n  fix: correct the line shown above; the accepted fields are listed in the message and in configs/ of the antq sources")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser said (names the field and line).
        message: String,
    },
    /// A field has a bad value.
    #[error("config {path}: field `{field}`: {problem}\n  fix: {fix}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The field, e.g. `peer[1].allowed_ips`.
        field: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

/// Builds [`ConfigError::Invalid`] for `path`.
pub(crate) fn invalid(
    path: &Path,
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Reads a config file's text.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses TOML `text` (the content of `path`) into `T`, reporting unknown
/// fields and syntax errors with the file name.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Loads the private key from `private_key_file` (relative to the config's
/// directory) or inline `private_key`; exactly one must be set. Returns the
/// identity and an optional warning about file permissions.
pub(crate) fn load_private_key(
    path: &Path,
    section: &str,
    key_file: Option<&Path>,
    inline: Option<&str>,
) -> Result<(Identity, Option<String>), ConfigError> {
    match (key_file, inline) {
        (Some(_), Some(_)) => Err(invalid(
            path,
            format!("{section}.private_key"),
            "both private_key and private_key_file are set",
            "keep only one of them",
        )),
        (None, None) => Err(invalid(
            path,
            format!("{section}.private_key_file"),
            "no private key configured",
            "set private_key_file to a file made by `antq-tun keygen --out FILE`",
        )),
        (None, Some(text)) => Identity::from_base64(text)
            .map(|id| (id, None))
            .map_err(|e| {
                invalid(
                    path,
                    format!("{section}.private_key"),
                    e.to_string(),
                    "use the 44-character base64 key printed by `antq-tun keygen`",
                )
            }),
        (Some(file), None) => {
            let file = match path.parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.to_owned(),
            };
            let (id, perms) = Identity::load(&file).map_err(|e| {
                invalid(
                    path,
                    format!("{section}.private_key_file"),
                    e.to_string(),
                    "point it at a readable file made by `antq-tun keygen --out FILE`",
                )
            })?;
            // Like ssh: a key others may read is a key others can
            // impersonate this host with.
            if let KeyFilePermissions::Readable { mode } = perms {
                return Err(invalid(
                    path,
                    format!("{section}.private_key_file"),
                    format!(
                        "{} may be read or written by others (mode {mode:o})",
                        file.display()
                    ),
                    format!("run `chmod 600 {}`", file.display()),
                ));
            }
            Ok((id, None))
        }
    }
}

/// Parses the address of a metrics listener: IP:PORT on a loopback address
/// (`example` is shown in the fix).
pub(crate) fn parse_metrics(
    path: &Path,
    field: &str,
    text: &str,
    example: &str,
) -> Result<SocketAddr, ConfigError> {
    let fix = format!(
        "use a loopback address, e.g. metrics = \"{example}\" (scrape it from this host, \
         or put a reverse proxy with access control in front), or remove the line"
    );
    let addr = text
        .trim()
        .parse::<SocketAddr>()
        .map_err(|e| invalid(path, field, format!("`{text}` is not IP:PORT: {e}"), &fix))?;
    if !addr.ip().is_loopback() {
        return Err(invalid(
            path,
            field,
            format!("{addr} is not a loopback address; metrics are served on localhost only"),
            fix,
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/antq/x.toml";

    fn text(e: ConfigError) -> String {
        e.to_string()
    }

    #[test]
    fn errors_name_the_file_the_field_and_a_fix() {
        let e = text(invalid(Path::new(PATH), "a.b", "is bad", "make it good"));
        assert_eq!(
            e,
            "config /etc/antq/x.toml: field `a.b`: is bad\n  fix: make it good"
        );
        let e = text(read_text(Path::new("/nonexistent/antq/x.toml")).unwrap_err());
        assert!(
            e.starts_with("cannot read config /nonexistent/antq/x.toml: "),
            "{e}"
        );
        assert!(e.ends_with("\n  fix: check the path given with -c and that the file is readable"));
    }

    #[test]
    fn toml_errors_keep_the_parser_message() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            #[allow(dead_code)]
            a: u8,
        }
        let e = text(parse_toml::<T>(Path::new(PATH), "b = 1\n").unwrap_err());
        assert!(e.starts_with("config /etc/antq/x.toml: "), "{e}");
        assert!(e.contains("unknown field `b`"), "{e}");
        assert!(parse_toml::<T>(Path::new(PATH), "a = 1\n").is_ok());
    }

    #[test]
    fn exactly_one_private_key() {
        let path = Path::new(PATH);
        let key = Identity::generate();
        let inline = key.to_base64().to_string();
        let (id, warning) = load_private_key(path, "s", None, Some(&inline)).unwrap();
        assert_eq!((id.peer_id(), warning), (key.peer_id(), None));
        let both = load_private_key(path, "s", Some(Path::new("k")), Some(&inline));
        assert!(text(both.unwrap_err()).contains("`s.private_key`: both"));
        let none = load_private_key(path, "s", None, None);
        assert!(text(none.unwrap_err()).contains("`s.private_key_file`: no private key"));
        let bad = load_private_key(path, "s", None, Some("bad"));
        assert!(text(bad.unwrap_err()).contains("`s.private_key`"));
    }

    #[test]
    fn metrics_only_on_loopback() {
        let path = Path::new(PATH);
        let ok = parse_metrics(path, "m", " [::1]:9 ", "127.0.0.1:1").unwrap();
        assert_eq!(ok, "[::1]:9".parse().unwrap());
        let e = text(parse_metrics(path, "m", "0.0.0.0:9", "127.0.0.1:1").unwrap_err());
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(e.contains("e.g. metrics = \"127.0.0.1:1\""), "{e}");
        let e = text(parse_metrics(path, "m", "nowhere", "127.0.0.1:1").unwrap_err());
        assert!(e.contains("`nowhere` is not IP:PORT"), "{e}");
    }
}
