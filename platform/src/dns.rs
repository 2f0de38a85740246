//! Telling the system's resolver about a tunnel's DNS responder, for one
//! domain only (split DNS): names under `domain` go to `servers`, every
//! other name to the system's usual servers.
//!
//! | OS | how | undone by |
//! | --- | --- | --- |
//! | Linux | systemd-resolved: `resolvectl dns IFACE ADDR...`, `resolvectl domain IFACE ~DOMAIN`, `resolvectl default-route IFACE false` | [`unregister_dns`] (`resolvectl revert IFACE`), or the device going away (a crash) |
//! | macOS | the file `/etc/resolver/DOMAIN` (`nameserver` lines), the OS's per-domain resolver configuration | [`unregister_dns`] (only a file naming this interface is removed); a crash leaves it, the next `up` rewrites it |
//! | Windows | not yet: [`PlatformError::Unsupported`] | |
//!
//! Linux without systemd-resolved (or with it, but this process in a
//! network namespace of its own, whose interfaces resolved does not see)
//! gets [`DnsRegistration::NotAvailable`]: not an error, the responder
//! still answers whoever asks it directly.

use std::net::IpAddr;

use crate::{imp, PlatformError};

/// What [`register_dns`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsRegistration {
    /// The system's resolver sends the domain's queries to the servers.
    Registered {
        /// Through what, e.g. "systemd-resolved".
        how: &'static str,
    },
    /// This system has no per-domain resolver configuration antq can use.
    NotAvailable {
        /// Why, for a log line.
        why: String,
    },
}

/// Sends queries for `domain` (a single label, e.g. `antq`) to `servers`
/// on interface `iface` (its name). Blocking: it may run a program
/// (`resolvectl`) for up to a few seconds; call it off the async runtime
/// (e.g. `tokio::task::spawn_blocking`).
pub fn register_dns(
    iface: &str,
    servers: &[IpAddr],
    domain: &str,
) -> Result<DnsRegistration, PlatformError> {
    check_domain(domain)?;
    if servers.is_empty() {
        return Err(PlatformError::InvalidArgument {
            what: "no DNS server address".to_owned(),
        });
    }
    imp::register_dns(iface, servers, domain)
}

/// Undoes [`register_dns`] for `iface` and `domain`. Blocking, like it.
pub fn unregister_dns(iface: &str, domain: &str) -> Result<(), PlatformError> {
    check_domain(domain)?;
    imp::unregister_dns(iface, domain)
}

/// A domain must be one DNS label: it becomes a file name on macOS.
fn check_domain(domain: &str) -> Result<(), PlatformError> {
    let ok = !domain.is_empty()
        && domain.len() <= 63
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PlatformError::InvalidArgument {
            what: format!("DNS domain {domain:?} (one label of letters, digits and '-')"),
        })
    }
}

/// The first line of a macOS resolver file written for `iface`: how
/// `unregister_dns` knows the file is this tunnel's.
#[cfg_attr(not(any(test, target_os = "macos")), allow(dead_code))]
pub(crate) fn resolver_file_marker(iface: &str) -> String {
    format!("# antq-tun {iface}: written at `up`, removed at `down`")
}

/// The text of a macOS `/etc/resolver/DOMAIN` file (resolver(5)).
#[cfg_attr(not(any(test, target_os = "macos")), allow(dead_code))]
pub(crate) fn resolver_file(iface: &str, servers: &[IpAddr]) -> String {
    let mut text = resolver_file_marker(iface);
    text.push('\n');
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    text
}

/// The `resolvectl` commands that register `servers` for `domain` on
/// `iface`.
#[cfg_attr(not(any(test, target_os = "linux")), allow(dead_code))]
pub(crate) fn resolvectl_commands(
    iface: &str,
    servers: &[IpAddr],
    domain: &str,
) -> Vec<Vec<String>> {
    let mut dns = vec!["dns".to_owned(), iface.to_owned()];
    dns.extend(servers.iter().map(ToString::to_string));
    vec![
        dns,
        vec!["domain".to_owned(), iface.to_owned(), format!("~{domain}")],
        // Only the domain: never the default for other names (ours are
        // refused there).
        vec![
            "default-route".to_owned(),
            iface.to_owned(),
            "false".to_owned(),
        ],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_single_labels() {
        assert!(check_domain("antq").is_ok());
        for bad in ["", "a.b", "../etc", "a/b", "a b"] {
            assert!(
                matches!(
                    check_domain(bad),
                    Err(PlatformError::InvalidArgument { .. })
                ),
                "{bad}"
            );
        }
        assert!(register_dns("antq0", &[], "antq").is_err());
    }

    #[test]
    fn resolver_file_has_the_marker_and_one_nameserver_a_line() {
        let servers: Vec<IpAddr> = vec!["10.90.0.1".parse().unwrap(), "fd90::1".parse().unwrap()];
        let text = resolver_file("utun7", &servers);
        assert_eq!(
            text,
            format!(
                "{}\nnameserver 10.90.0.1\nnameserver fd90::1\n",
                resolver_file_marker("utun7")
            )
        );
        assert!(text.starts_with("# antq-tun utun7:"));
    }

    #[test]
    fn resolvectl_sets_servers_routing_domain_and_no_default_route() {
        let servers: Vec<IpAddr> = vec!["10.90.0.1".parse().unwrap(), "fd90::1".parse().unwrap()];
        assert_eq!(
            resolvectl_commands("antq0", &servers, "antq"),
            [
                vec!["dns", "antq0", "10.90.0.1", "fd90::1"],
                vec!["domain", "antq0", "~antq"],
                vec!["default-route", "antq0", "false"],
            ]
        );
    }
}
