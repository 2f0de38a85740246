//! `[[peer]] name`: the peer's name on the overlay (`NAME.antq`), checked
//! as a DNS label and unique among the configured peers.

use std::path::Path;

use ipnet::IpNet;

use crate::config::{invalid, ConfigError};
use crate::proto::cert::valid_label;

/// What a peer name must look like, for error messages.
const LABEL_FIX: &str =
    "use 1 to 63 letters, digits and '-', not starting or ending with '-', e.g. name = \"db1\"";

/// Validates `[[peer]] name` (`field` names it in errors): a DNS label,
/// stored lower-case (DNS names are case-insensitive).
pub(super) fn peer_name(path: &Path, field: &str, text: &str) -> Result<String, ConfigError> {
    let name = text.to_ascii_lowercase();
    if !valid_label(&name) {
        return Err(invalid(
            path,
            field,
            format!("`{text}` is not a DNS label"),
            LABEL_FIX,
        ));
    }
    Ok(name)
}

/// Refuses `name` if an earlier peer (in `earlier`, by index) has it.
pub(super) fn check_unique<'a>(
    path: &Path,
    field: &str,
    name: &str,
    earlier: impl Iterator<Item = Option<&'a str>>,
) -> Result<(), ConfigError> {
    match earlier.enumerate().find(|(_, other)| *other == Some(name)) {
        Some((j, _)) => Err(invalid(
            path,
            field,
            format!("`{name}` is also the name of peer[{j}]"),
            "give each peer its own name (names are compared case-insensitively)",
        )),
        None => Ok(()),
    }
}

/// A warning for a named peer without a host address (/32 or /128) in its
/// allowed IPs: its name would answer no address.
pub(super) fn addressless_warning(
    path: &Path,
    index: usize,
    name: &str,
    allowed_ips: &[IpNet],
) -> Option<String> {
    let has_host = allowed_ips
        .iter()
        .any(|n| n.prefix_len() == n.max_prefix_len());
    (!has_host).then(|| {
        format!(
            "{}: peer[{index}] is named `{name}` but has no /32 or /128 in allowed_ips: \
             `{name}.antq` will answer no address",
            path.display()
        )
    })
}
