//! Checks of a [`TunConfig`] that are the same on every OS; the name rules
//! are the OS module's.

use crate::{network_of, PlatformError, TunConfig};

/// Smallest MTU IPv4 allows (RFC 791).
const MIN_MTU_V4: u16 = 68;
/// Smallest MTU IPv6 allows (RFC 8200).
const MIN_MTU_V6: u16 = 1280;

/// Checks `cfg` before anything is created: the name (with
/// `validate_name`), the MTU against the address families, and that every
/// address is a unicast address with a valid prefix length.
pub(crate) fn check(
    cfg: &TunConfig,
    validate_name: impl Fn(&str) -> Result<(), PlatformError>,
) -> Result<(), PlatformError> {
    if let Some(name) = &cfg.name {
        validate_name(name)?;
    }
    let has_v6 = cfg.addresses.iter().any(|(a, _)| a.is_ipv6());
    let min = if has_v6 { MIN_MTU_V6 } else { MIN_MTU_V4 };
    if cfg.mtu < min {
        return Err(PlatformError::InvalidArgument {
            what: format!("TUN MTU {} below {min}", cfg.mtu),
        });
    }
    for &(addr, prefix) in &cfg.addresses {
        network_of(addr, prefix)?;
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(PlatformError::InvalidArgument {
                what: format!("TUN address {addr} is not a unicast address"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn cfg(mtu: u16, addrs: &[(&str, u8)]) -> TunConfig {
        TunConfig {
            name: Some("antq0".into()),
            mtu,
            addresses: addrs
                .iter()
                .map(|(a, p)| (a.parse::<IpAddr>().unwrap(), *p))
                .collect(),
            offload: false,
        }
    }

    fn any_name(_: &str) -> Result<(), PlatformError> {
        Ok(())
    }

    #[test]
    fn config_checks() {
        let ok = |c: &TunConfig| check(c, any_name).is_ok();
        assert!(ok(&cfg(1280, &[("10.0.0.1", 24), ("fd00::1", 64)])));
        assert!(ok(&cfg(576, &[("10.0.0.1", 24)])));
        assert!(!ok(&cfg(1279, &[("fd00::1", 64)])));
        assert!(!ok(&cfg(67, &[])));
        assert!(!ok(&cfg(1400, &[("10.0.0.1", 33)])));
        assert!(!ok(&cfg(1400, &[("0.0.0.0", 8)])));
        assert!(!ok(&cfg(1400, &[("ff02::1", 64)])));
        let refuse = |name: &str| {
            Err(PlatformError::InvalidName {
                name: name.to_owned(),
                reason: "test",
            })
        };
        assert!(matches!(
            check(&cfg(1400, &[]), refuse),
            Err(PlatformError::InvalidName { .. })
        ));
    }
}
