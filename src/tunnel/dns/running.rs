//! The responder of a running tunnel: its sockets on the tunnel addresses,
//! its registration with the system's resolver (at `up`, undone at
//! `down`), and what it answers from (the datapath's names table).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use super::answer::ZONE;
use super::server::{Responder, Zone};
use super::{DnsReport, DnsStats, Names};
use crate::tunnel::config::TunnelConfig;
use crate::tunnel::device::Shared;

/// The DNS port.
const PORT: u16 = 53;

impl Zone for Shared {
    fn names(&self) -> Arc<Names> {
        self.names.load_full()
    }

    /// This host (loopback, our addresses), the tunnel's networks and
    /// every address a peer owns (its queries come over the tunnel).
    fn may_ask(&self, source: IpAddr) -> bool {
        source.is_loopback()
            || self.own.iter().any(|n| n.trunc().contains(&source))
            || self.routes.load().lookup(source).is_some()
    }

    fn stats(&self) -> &DnsStats {
        &self.dns_stats
    }
}

/// The running responder.
pub(in crate::tunnel) struct Running {
    responder: Responder,
    /// The interface it is registered for.
    iface: String,
    /// How the system's resolver was told, or why not.
    registration: String,
    /// Whether there is something to undo at `down`.
    registered: bool,
}

impl Running {
    /// Binds port 53 on the tunnel addresses and registers the ones bound
    /// for `~antq` with the system's resolver. Nothing here fails the
    /// tunnel: what does not work is logged.
    pub(in crate::tunnel) async fn start(shared: &Arc<Shared>, config: &TunnelConfig) -> Self {
        let addresses: Vec<IpAddr> = config.addresses.iter().map(IpNet::addr).collect();
        let responder = Responder::start(shared.clone(), &addresses, PORT).await;
        let iface = shared.tun.name().to_owned();
        let servers: Vec<IpAddr> = responder.listen.iter().map(SocketAddr::ip).collect();
        if servers.is_empty() {
            return Self {
                responder,
                iface,
                registration: "none: the responder could not listen on any tunnel address"
                    .to_owned(),
                registered: false,
            };
        }
        tracing::info!(listen = ?responder.listen, names = shared.names.load().len(), "names responder up: NAME.{ZONE}");
        let (registration, registered) = register(iface.clone(), servers).await;
        Self {
            responder,
            iface,
            registration,
            registered,
        }
    }

    /// The responder's part of the status.
    pub(in crate::tunnel) fn report(&self, shared: &Shared) -> DnsReport {
        DnsReport {
            listen: self.responder.listen.clone(),
            registration: self.registration.clone(),
            names: (*shared.names.load_full()).clone(),
            queries: shared.dns_stats.snapshot(),
        }
    }

    /// Undoes the registration and closes the sockets.
    pub(in crate::tunnel) async fn stop(self) {
        if self.registered {
            let iface = self.iface.clone();
            let undone =
                tokio::task::spawn_blocking(move || antq_platform::unregister_dns(&iface, ZONE))
                    .await;
            match undone {
                Ok(Ok(())) => {
                    tracing::info!(interface = %self.iface, "names: resolver registration removed")
                }
                Ok(Err(error)) => {
                    tracing::warn!(interface = %self.iface, %error, "names: resolver registration not removed")
                }
                Err(error) => tracing::warn!(%error, "names: unregistering did not finish"),
            }
        }
    }
}

/// Registers `servers` for `~antq` on `iface`: the status line, and
/// whether something was registered.
async fn register(iface: String, servers: Vec<IpAddr>) -> (String, bool) {
    use antq_platform::{DnsRegistration, PlatformError};
    let done =
        tokio::task::spawn_blocking(move || antq_platform::register_dns(&iface, &servers, ZONE))
            .await;
    match done {
        Ok(Ok(DnsRegistration::Registered { how })) => {
            tracing::info!(through = how, "names: the system resolves *.{ZONE} here");
            (how.to_owned(), true)
        }
        Ok(Ok(DnsRegistration::NotAvailable { why })) => {
            tracing::info!(
                "names: not registered with the system's resolver ({why}); ask the responder directly"
            );
            (format!("not available: {why}"), false)
        }
        Ok(Err(PlatformError::Unsupported { what })) => {
            tracing::info!("names: {what} is not supported on this OS; ask the responder directly");
            (format!("not supported on this OS: {what}"), false)
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "names: registering with the system's resolver failed");
            (format!("failed: {error}"), false)
        }
        Err(error) => {
            tracing::warn!(%error, "names: registering did not finish");
            (format!("failed: {error}"), false)
        }
    }
}
