//! Port mapping I/O: asks the gateway for a UDP mapping by PCP, NAT-PMP or
//! UPnP IGD, renews and removes it. What to ask and when is
//! [`crate::nat::PortMapSchedule`]'s decision; the overlay drives it
//! (`overlay::portmap`), `antq-tun netcheck` asks each protocol once
//! ([`probe_all`]).
//!
//! # Crates
//!
//! - **`crab_nat`** (0.8, MIT) for PCP and NAT-PMP: both protocols, tokio
//!   only, small (bytes, num_enum, rand, thiserror, tokio), maintained
//!   (releases through 2025), exposes each protocol separately (so the
//!   schedule picks the order and the timeouts) and keeps the PCP nonce a
//!   renewal and a deletion need. `natpmp` (0.5) has no PCP and pulls
//!   `netdev`; iroh's `portmapper` runs its own probing/renewal service
//!   (decisions we keep sans-IO) and brings iroh-metrics, netwatch and
//!   igd-next with hyper.
//! - **`igd-next`** (0.18, MIT) for UPnP IGD: the maintained fork of
//!   `igd`; since 0.17 it checks that the device description and control
//!   URLs point at the device that answered the SSDP search (a LAN host
//!   cannot steer our HTTP requests elsewhere) and bounds response sizes.
//!   Its blocking client (attohttpc) runs on tokio's blocking pool: the
//!   `aio_tokio` client would add hyper with HTTP/2.
//!
//! # Untrusted input
//!
//! The router is a host on our LAN, and anyone on it can answer first. A
//! grant is used only if its external address is a usable public one (not
//! unspecified, loopback, multicast, link-local or private: a private one
//! means another NAT above the router), its lifetime is bounded by the
//! schedule, and every request has a deadline; a bad answer is an error
//! (logged at debug, counted), never a panic.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::{natpmp, pcp, InternetProtocol, PortMapping, PortMappingOptions, TimeoutConfig};

use crate::nat::{is_private_ip, PortMapGrant, PortMapProtocol};

/// PCP and NAT-PMP: 250 ms for the first answer, doubled on each of 2
/// retries (1.75 s in all when the gateway says nothing).
const UDP_TIMEOUTS: TimeoutConfig = TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 2,
    max_retry_timeout: Some(Duration::from_secs(1)),
};

/// UPnP: how long the SSDP search waits for the gateway's answer.
const SSDP_WAIT: Duration = Duration::from_secs(2);

/// UPnP: the deadline of one whole request (search, description, SOAP).
pub const UPNP_DEADLINE: Duration = Duration::from_secs(6);

/// The description UPnP mappings carry (seen in the router's list).
const UPNP_DESCRIPTION: &str = "antq";

/// PCP / NAT-PMP server port (RFC 6887, RFC 6886).
const GATEWAY_PORT: u16 = 5351;

/// Why a mapping could not be had (or removed).
#[derive(Debug, thiserror::Error)]
pub enum PortMapError {
    /// No IPv4 default route through a gateway.
    #[error("no IPv4 default gateway")]
    NoGateway,
    /// The routing table could not be read.
    #[error("default gateway: {0}")]
    Gateway(#[from] antq_platform::PlatformError),
    /// Our port is 0 (not bound).
    #[error("no local port to map")]
    NoPort,
    /// The gateway refused, gave a malformed answer, or none.
    #[error("{protocol}: {message}")]
    Refused {
        /// The protocol asked.
        protocol: PortMapProtocol,
        /// What went wrong.
        message: String,
    },
    /// No answer within the deadline.
    #[error("{0}: no answer in time")]
    Timeout(PortMapProtocol),
    /// The grant's external address cannot be used by peers.
    #[error("{protocol}: unusable external address {external}")]
    Unusable {
        /// The protocol asked.
        protocol: PortMapProtocol,
        /// What the gateway said.
        external: IpAddr,
    },
}

fn refused(protocol: PortMapProtocol, e: impl std::fmt::Display) -> PortMapError {
    PortMapError::Refused {
        protocol,
        message: e.to_string(),
    }
}

/// What a removal or renewal needs of a held mapping.
#[derive(Clone, Debug)]
pub enum MappingHandle {
    /// PCP or NAT-PMP (the PCP nonce inside).
    Udp(PortMapping),
    /// UPnP IGD: the device and the external port.
    Upnp {
        /// The gateway device found by SSDP.
        gateway: Box<igd_next::Gateway>,
        /// The external port mapped.
        external_port: u16,
        /// Our LAN address the mapping points at.
        local: SocketAddr,
    },
}

/// A granted mapping.
#[derive(Clone, Debug)]
pub struct Mapped {
    /// Address and lifetime, for the schedule.
    pub grant: PortMapGrant,
    /// For renewal and removal.
    pub handle: MappingHandle,
}

/// The IPv4 default gateway and our address toward it.
fn gateway() -> Result<(Ipv4Addr, Ipv4Addr), PortMapError> {
    let gw = antq_platform::default_gateway_v4()?.ok_or(PortMapError::NoGateway)?;
    Ok((gw, local_ip_toward(IpAddr::V4(gw))?))
}

/// Our IPv4 address on the way to `to` (a connected UDP socket; sends
/// nothing).
fn local_ip_toward(to: IpAddr) -> Result<Ipv4Addr, PortMapError> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((to, GATEWAY_PORT)).map(|()| s))
        .and_then(|s| s.local_addr());
    match socket {
        Ok(SocketAddr::V4(a)) => Ok(*a.ip()),
        Ok(_) => Err(PortMapError::NoGateway),
        Err(e) => Err(PortMapError::Gateway(antq_platform::PlatformError::Io {
            op: "find our address toward the gateway",
            source: e,
        })),
    }
}

/// Checks the external address of a grant (see the module docs).
fn usable(protocol: PortMapProtocol, ip: IpAddr) -> Result<IpAddr, PortMapError> {
    if crate::nat::candidate::is_unusable_ip(ip) || is_private_ip(ip) {
        return Err(PortMapError::Unusable {
            protocol,
            external: ip,
        });
    }
    Ok(ip)
}

/// Asks for (`previous`: renews) a UDP mapping of `internal_port` by
/// `protocol`, for `lifetime`. Bounded in time (about 2 s for PCP and
/// NAT-PMP, [`UPNP_DEADLINE`] for UPnP).
pub async fn map(
    protocol: PortMapProtocol,
    internal_port: u16,
    lifetime: Duration,
    previous: Option<&MappingHandle>,
) -> Result<Mapped, PortMapError> {
    let port = NonZeroU16::new(internal_port).ok_or(PortMapError::NoPort)?;
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX).max(1);
    match protocol {
        PortMapProtocol::Pcp | PortMapProtocol::NatPmp => {
            map_udp(protocol, port, secs, previous).await
        }
        PortMapProtocol::Upnp => {
            let previous = match previous {
                Some(MappingHandle::Upnp {
                    gateway,
                    external_port,
                    local,
                }) => Some((gateway.clone(), *external_port, *local)),
                _ => None,
            };
            let work = tokio::task::spawn_blocking(move || map_upnp(port, secs, previous));
            match tokio::time::timeout(UPNP_DEADLINE, work).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(refused(protocol, join)),
                Err(_) => Err(PortMapError::Timeout(protocol)),
            }
        }
    }
}

async fn map_udp(
    protocol: PortMapProtocol,
    port: NonZeroU16,
    secs: u32,
    previous: Option<&MappingHandle>,
) -> Result<Mapped, PortMapError> {
    let (gw, client) = gateway()?;
    let options = PortMappingOptions {
        external_port: Some(port),
        lifetime_seconds: Some(secs),
        timeout_config: Some(UDP_TIMEOUTS),
    };
    let result = match previous {
        // A renewal keeps the PCP nonce (the gateway checks it).
        Some(MappingHandle::Udp(m)) => {
            let mut m = m.clone();
            m.renew()
                .await
                .map(|()| m)
                .map_err(|e| refused(protocol, e))
        }
        _ if protocol == PortMapProtocol::Pcp => pcp::port_mapping(
            pcp::BaseMapRequest::new(gw.into(), client.into(), InternetProtocol::Udp, port),
            None,
            None,
            options,
        )
        .await
        .map_err(|e| match e {
            pcp::Failure::Timeout => PortMapError::Timeout(protocol),
            e => refused(protocol, e),
        }),
        _ => natpmp::port_mapping(gw.into(), InternetProtocol::Udp, port, options)
            .await
            .map_err(|e| match e {
                natpmp::Failure::Timeout => PortMapError::Timeout(protocol),
                e => refused(protocol, e),
            }),
    };
    let mapping = result?;
    let external_ip = match mapping.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => external_ip,
        crab_nat::PortMappingType::NatPmp => IpAddr::V4(
            natpmp::external_address(gw.into(), Some(UDP_TIMEOUTS))
                .await
                .map_err(|e| refused(protocol, e))?,
        ),
    };
    let external_ip = usable(protocol, crate::nat::canonical_ip(external_ip))?;
    Ok(Mapped {
        grant: PortMapGrant {
            external: SocketAddr::new(external_ip, mapping.external_port().get()),
            lifetime: Duration::from_secs(u64::from(mapping.lifetime())),
        },
        handle: MappingHandle::Udp(mapping),
    })
}

/// UPnP IGD (blocking): SSDP search (or the device of `previous`), the
/// external address, then `AddPortMapping` of the same port, or any port
/// when that one is taken.
fn map_upnp(
    port: NonZeroU16,
    secs: u32,
    previous: Option<(Box<igd_next::Gateway>, u16, SocketAddr)>,
) -> Result<Mapped, PortMapError> {
    let protocol = PortMapProtocol::Upnp;
    let (gateway, external_port, local) = match previous {
        Some(p) => p,
        None => {
            let known = antq_platform::default_gateway_v4().ok().flatten();
            let bind = known
                .and_then(|gw| local_ip_toward(IpAddr::V4(gw)).ok())
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            let mut options = igd_next::SearchOptions::default();
            options.bind_addr = SocketAddr::new(IpAddr::V4(bind), 0);
            options.timeout = Some(SSDP_WAIT);
            options.single_search_timeout = Some(SSDP_WAIT);
            let gateway = igd_next::search_gateway(options).map_err(|e| match e {
                igd_next::SearchError::NoResponseWithinTimeout => PortMapError::Timeout(protocol),
                e => refused(protocol, e),
            })?;
            let local_ip = local_ip_toward(gateway.addr.ip())?;
            let local = SocketAddr::new(IpAddr::V4(local_ip), port.get());
            (Box::new(gateway), port.get(), local)
        }
    };
    let external_ip = gateway
        .get_external_ip()
        .map_err(|e| refused(protocol, e))?;
    let external_ip = usable(protocol, crate::nat::canonical_ip(external_ip))?;
    let udp = igd_next::PortMappingProtocol::UDP;
    let external_port = match gateway.add_port(udp, external_port, local, secs, UPNP_DESCRIPTION) {
        Ok(()) => external_port,
        Err(igd_next::AddPortError::PortInUse) => gateway
            .add_any_port(udp, local, secs, UPNP_DESCRIPTION)
            .map_err(|e| refused(protocol, e))?,
        Err(e) => return Err(refused(protocol, e)),
    };
    Ok(Mapped {
        grant: PortMapGrant {
            external: SocketAddr::new(external_ip, external_port),
            // UPnP grants what was asked (or fails).
            lifetime: Duration::from_secs(u64::from(secs)),
        },
        handle: MappingHandle::Upnp {
            gateway,
            external_port,
            local,
        },
    })
}

/// Removes a mapping from the gateway. The caller bounds the wait.
pub async fn remove(handle: MappingHandle) -> Result<(), PortMapError> {
    match handle {
        MappingHandle::Udp(m) => {
            let protocol = match m.mapping_type() {
                crab_nat::PortMappingType::NatPmp => PortMapProtocol::NatPmp,
                crab_nat::PortMappingType::Pcp { .. } => PortMapProtocol::Pcp,
            };
            m.try_drop().await.map_err(|(e, _)| refused(protocol, e))
        }
        MappingHandle::Upnp {
            gateway,
            external_port,
            ..
        } => {
            let protocol = PortMapProtocol::Upnp;
            tokio::task::spawn_blocking(move || {
                gateway.remove_port(igd_next::PortMappingProtocol::UDP, external_port)
            })
            .await
            .map_err(|e| refused(protocol, e))?
            .map_err(|e| refused(protocol, e))
        }
    }
}

/// What one protocol answered ([`probe_all`]).
#[derive(Debug)]
pub struct ProbeResult {
    /// The protocol.
    pub protocol: PortMapProtocol,
    /// The external address granted, or why not.
    pub result: Result<SocketAddr, PortMapError>,
    /// Whether the test mapping was removed again.
    pub removed: bool,
}

/// Asks each protocol for a short mapping of `internal_port` and removes it
/// at once (`antq-tun netcheck`): which protocols the gateway answers.
pub async fn probe_all(internal_port: u16) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    for protocol in PortMapProtocol::ALL {
        let result = map(protocol, internal_port, Duration::from_secs(120), None).await;
        let (result, removed) = match result {
            Ok(m) => {
                let removed = tokio::time::timeout(UPNP_DEADLINE, remove(m.handle)).await;
                (Ok(m.grant.external), matches!(removed, Ok(Ok(()))))
            }
            Err(e) => (Err(e), false),
        };
        out.push(ProbeResult {
            protocol,
            result,
            removed,
        });
    }
    out
}
