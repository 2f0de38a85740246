//! `/etc/resolver/DOMAIN`: macOS's per-domain resolver files (resolver(5);
//! see [`crate::register_dns`]).

use std::net::IpAddr;
use std::path::PathBuf;

use crate::dns::{resolver_file, resolver_file_marker};
use crate::{DnsRegistration, PlatformError};

const RESOLVER_DIR: &str = "/etc/resolver";

fn path(domain: &str) -> PathBuf {
    PathBuf::from(RESOLVER_DIR).join(domain)
}

pub(crate) fn register_dns(
    iface: &str,
    servers: &[IpAddr],
    domain: &str,
) -> Result<DnsRegistration, PlatformError> {
    let op = "writing /etc/resolver";
    std::fs::create_dir_all(RESOLVER_DIR).map_err(|e| super::os_error(op, e))?;
    // Written beside and renamed: a reader never sees half a file.
    let tmp = path(&format!(".{domain}.antq-tun"));
    std::fs::write(&tmp, resolver_file(iface, servers)).map_err(|e| super::os_error(op, e))?;
    std::fs::rename(&tmp, path(domain)).map_err(|e| super::os_error(op, e))?;
    Ok(DnsRegistration::Registered {
        how: "/etc/resolver",
    })
}

pub(crate) fn unregister_dns(iface: &str, domain: &str) -> Result<(), PlatformError> {
    let file = path(domain);
    match std::fs::read_to_string(&file) {
        // Only our own: another tunnel may have written it since.
        Ok(text) if text.lines().next() == Some(resolver_file_marker(iface).as_str()) => {
            std::fs::remove_file(&file)
                .map_err(|e| super::os_error("removing /etc/resolver file", e))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(super::os_error("reading /etc/resolver file", e)),
    }
}
