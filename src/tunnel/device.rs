//! The running tunnel: a TUN device whose packets travel to the peer that
//! owns the destination, in data plane frames (or QUIC datagrams, see
//! [`crate::node::data`]).
//!
//! - TUN → peer: the destination's longest-prefix match over all peers'
//!   allowed IPs picks the peer; a packet larger than the path's current
//!   datagram size is answered with ICMP / ICMPv6 "packet too big" carrying
//!   the usable MTU, so the sender's path-MTU discovery adapts.
//! - peer → TUN: a packet is written only if its source address belongs to
//!   the sending peer (longest match of the source is that peer); others are
//!   dropped and counted, as WireGuard does.
//!
//! Dropping the [`Tunnel`] removes the TUN device and with it its routes.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ipnet::IpNet;

use arc_swap::ArcSwap;

use super::config::{TunnelConfig, DEFAULT_MAX_MEMBERS};
use super::dns::{DnsStats, LocalNames, Names};
use super::firewall::{Firewall, Sender};
use super::packet::{self, packet_too_big};
use super::routing::AllowedIps;
use super::tun_io::{TunReader, TunWriter};
use crate::identity::PeerId;
use crate::nat::PunchConfig;
use crate::node::members::MembershipConfig;
use crate::node::overlay::{
    DatagramSink, Overlay, OverlayConfig, PeerStatus, SendBatch, SendError,
};
use crate::node::{NodeError, TransportSettings};
use crate::socket::Transport;

/// Errors from starting the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The TUN device or its routes could not be set up.
    #[error("{what}: {source}")]
    Platform {
        /// What we were doing.
        what: String,
        /// The platform error.
        source: antq_platform::PlatformError,
    },
    /// The QUIC node could not start.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Counters of the datapath.
#[derive(Debug, Default, serde::Serialize)]
pub struct TunnelStats {
    /// Packets read from the TUN device.
    pub tun_packets_in: AtomicU64,
    /// Packets written to the TUN device.
    pub tun_packets_out: AtomicU64,
    /// Packets dropped: no peer owns the destination.
    pub drop_no_route: AtomicU64,
    /// Packets dropped: the peer has no path yet and enough packets wait
    /// for one already.
    pub drop_no_path: AtomicU64,
    /// Packets answered with "packet too big".
    pub drop_too_big: AtomicU64,
    /// Packets from a peer whose source is outside its allowed IPs.
    pub drop_bad_source: AtomicU64,
    /// Packets that are not valid IP.
    pub drop_malformed: AtomicU64,
    /// Packets QUIC refused to send (datagram too large for the path, the
    /// connection closed).
    pub drop_send_failed: AtomicU64,
    /// Packets from peers that could not be written to the TUN device.
    pub drop_tun_write: AtomicU64,
}

impl TunnelStats {
    /// Adds the datapath counters to `r`.
    pub fn collect(&self, r: &mut crate::metrics::Registry) {
        use crate::metrics::load;
        let f = r.counter(
            "antq_tun_packets_total",
            "Packets read from (in) and written to (out) the TUN device.",
        );
        f.int(&[("direction", "in")], load(&self.tun_packets_in));
        f.int(&[("direction", "out")], load(&self.tun_packets_out));
        let f = r.counter(
            "antq_tun_dropped_total",
            "Packets the datapath dropped, by reason: no_route (no peer owns the \
             destination), no_path (the peer is not connected), too_big (answered \
             with ICMP packet too big), bad_source (source outside the peer's \
             allowed IPs), malformed, send_failed (QUIC refused the datagram), \
             tun_write (the TUN device refused it).",
        );
        for (reason, c) in [
            ("no_route", &self.drop_no_route),
            ("no_path", &self.drop_no_path),
            ("too_big", &self.drop_too_big),
            ("bad_source", &self.drop_bad_source),
            ("malformed", &self.drop_malformed),
            ("send_failed", &self.drop_send_failed),
            ("tun_write", &self.drop_tun_write),
        ] {
            f.int(&[("reason", reason)], load(c));
        }
    }
}

/// Status of the whole tunnel, as `antq-tun status --json` prints it.
#[derive(Debug, serde::Serialize)]
pub struct TunnelStatus {
    /// Interface name.
    pub interface: String,
    /// Interface addresses.
    pub addresses: Vec<String>,
    /// Our public key.
    pub public_key: String,
    /// The UDP address we listen on.
    pub listen: Option<SocketAddr>,
    /// Per peer.
    pub peers: Vec<PeerReport>,
    /// Our network membership, if any.
    pub network: Option<NetworkReport>,
    /// The inbound firewall, with a `[firewall]` section.
    pub firewall: Option<super::firewall::FirewallReport>,
    /// The names responder (`NAME.antq`), unless `[interface] dns = false`.
    pub dns: Option<super::dns::DnsReport>,
    /// Our addresses as the bootstraps see them.
    pub bootstraps: Vec<BootstrapReport>,
    /// Our NAT's mapping behaviour (`endpoint_independent`,
    /// `address_dependent`, `symmetric`, `unknown`), from the bootstraps'
    /// observations (`Overlay::nat_mapping`).
    pub nat_mapping: &'static str,
    /// Port mapping on the gateway.
    pub port_mapping: PortMapReport,
    /// Forwarding for peers and our exit node.
    pub routing: RoutingReport,
    /// TTL of hole-punch priming probes (learned from the routers toward
    /// the bootstrap); `None` when priming is off.
    pub punch_prime_ttl: Option<u8>,
    /// Datapath counters.
    pub stats: serde_json::Value,
    /// Counters of the shared socket (relay and TCP stream paths).
    pub socket: serde_json::Value,
}

/// One peer in [`TunnelStatus`].
#[derive(Debug, serde::Serialize)]
pub struct PeerReport {
    /// The peer's name (`[[peer]] name`, or from its certificate), if it
    /// has one: `NAME.antq` (unless another claim to it won, see
    /// [`super::dns::names`]).
    pub name: Option<String>,
    /// Where we know it from: `config` (a `[[peer]]`), `network` (its
    /// certificate, found through the directory).
    pub source: &'static str,
    /// When its certificate expires (Unix seconds), for a network member.
    pub certificate_expires: Option<u64>,
    /// The peer's allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Connection state.
    #[serde(flatten)]
    pub status: PeerStatus,
}

/// Our network membership in [`TunnelStatus`].
#[derive(Debug, serde::Serialize)]
pub struct NetworkReport {
    /// The network's name.
    pub name: String,
    /// Our name in it.
    pub host_name: String,
    /// Trusted CA keys.
    pub ca: Vec<String>,
    /// When our certificate expires (Unix seconds).
    pub certificate_expires: u64,
    /// Lookups, members joined and removed, refusals.
    pub counters: crate::node::members::MemberCounters,
    /// Directory answers refused, by reason.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
}

/// Forwarding and the exit node in [`TunnelStatus`].
#[derive(Debug, serde::Serialize)]
pub struct RoutingReport {
    /// We forward peers' packets to `subnets` (`gateway = true`).
    pub gateway: bool,
    /// The subnets we serve as a gateway.
    pub subnets: Vec<String>,
    /// We forward peers' packets anywhere (`exit = true`).
    pub exit: bool,
    /// We masquerade what we forward.
    pub masquerade: bool,
    /// The peer everything else goes to, if any.
    pub exit_node: Option<String>,
    /// What was changed on the host (sysctls with their old values,
    /// policy rules, the nftables table), all restored at `down`.
    pub host_changes: Vec<String>,
}

/// Port mapping in [`TunnelStatus`].
#[derive(Debug, serde::Serialize)]
pub struct PortMapReport {
    /// `[interface] port_mapping` (default on).
    pub enabled: bool,
    /// The mapping held now: protocol, external address, expiry.
    pub mapping: Option<crate::node::overlay::PortMapStatus>,
}

/// One bootstrap in [`TunnelStatus`].
#[derive(Debug, serde::Serialize)]
pub struct BootstrapReport {
    /// The bootstrap's address.
    pub address: SocketAddr,
    /// Our address as it sees it, when connected (none over TCP).
    pub observed: Option<SocketAddr>,
    /// How we reach it: `udp`, `tcp` (UDP blocked), none when not connected.
    pub transport: Option<Transport>,
}

/// What both directions of the datapath share. Packets from peers are
/// written to the device on the overlay's reader tasks ([`DatagramSink`]).
pub(super) struct Shared {
    pub(super) tun: antq_platform::Tun,
    writer: TunWriter,
    /// Who owns which addresses: the configured peers' allowed IPs and the
    /// network members' certified addresses and routes (rebuilt when
    /// members change; a lock-free load per packet).
    pub(super) routes: ArcSwap<AllowedIps<PeerId>>,
    /// The configured peers' part of `routes` (a reload changes it, then
    /// wakes `routes_changed`).
    pub(super) static_routes: ArcSwap<Vec<(IpNet, PeerId)>>,
    /// Wakes the task that rebuilds `routes` ([`super::members`]).
    pub(super) routes_changed: tokio::sync::Notify,
    pub(super) stats: TunnelStats,
    /// The inbound firewall, with a `[firewall]` section (taken alone, for
    /// one packet or one batch at a time).
    pub(super) firewall: Option<std::sync::Mutex<Firewall>>,
    /// Each network member's groups (from its certificate), for the
    /// firewall's `group:` rules; rebuilt with `routes`.
    pub(super) groups: ArcSwap<std::collections::HashMap<PeerId, Vec<String>>>,
    /// Our tunnel addresses (sources of ICMP answers).
    pub(super) own: Vec<IpNet>,
    /// The names the config gives (ours, the `[[peer]]`s'; a reload
    /// changes them, then wakes `routes_changed`).
    pub(super) local_names: ArcSwap<LocalNames>,
    /// What `NAME.antq` answers: `local_names` and the members'
    /// certificates, rebuilt with `routes`.
    pub(super) names: ArcSwap<Names>,
    /// The names responder's counters.
    pub(super) dns_stats: DnsStats,
}

/// The device side and the overlay.
pub(super) struct Datapath {
    pub(super) shared: Arc<Shared>,
    pub(super) overlay: Overlay,
}

/// A running tunnel.
pub struct Tunnel {
    pub(super) config: TunnelConfig,
    pub(super) datapath: Arc<Datapath>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What we changed on the host (forwarding, exit node), restored by
    /// [`Tunnel::shutdown`] (or, after a crash, by the next start).
    host_net: Option<antq_platform::HostNet>,
    /// The names responder, with `[interface] dns` (default).
    dns: Option<super::dns::Running>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("interface", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// QUIC's initial packet size for a tunnel MTU: a full TUN packet plus
/// QUIC's short header, datagram frame and AEAD tag (about 40 bytes), never
/// below QUIC's 1200-byte minimum.
pub fn initial_mtu_for(tun_mtu: u16) -> u16 {
    tun_mtu.saturating_add(48).max(1200)
}

impl Tunnel {
    /// Creates the TUN device, its routes and the overlay, and starts the
    /// datapath. Must run inside a tokio runtime, with network privileges.
    /// A current-thread runtime is the fast one (see `antq-tun`'s
    /// `local_runtime`): on a multi-threaded one every packet crosses
    /// threads between the device reader and QUIC's connection driver.
    pub async fn start(config: TunnelConfig) -> Result<Self, TunnelError> {
        let platform = |what: String| move |source| TunnelError::Platform { what, source };
        let tun_config = antq_platform::TunConfig {
            name: Some(config.name.clone()),
            mtu: config.mtu,
            addresses: config
                .addresses
                .iter()
                .map(|n| (n.addr(), n.prefix_len()))
                .collect(),
            // Batched device I/O (GSO/GRO) where the OS has it: measured
            // 1.2-1.3x the TCP throughput of one packet per system call
            // (scripts/bench.sh, see the README's performance notes).
            offload: true,
        };
        let tun = antq_platform::create_tun(&tun_config)
            .await
            .map_err(platform(format!("creating TUN device {}", config.name)))?;
        for peer in &config.peers {
            for net in &peer.allowed_ips {
                match antq_platform::add_route(&tun, net.addr(), net.prefix_len()).await {
                    Ok(()) | Err(antq_platform::PlatformError::AlreadyExists { .. }) => {}
                    Err(e) => {
                        return Err(platform(format!("adding route {net} via {}", config.name))(
                            e,
                        ))
                    }
                }
            }
        }

        let mut routes = AllowedIps::new();
        for (net, peer) in static_routes(&config) {
            routes.insert(net, peer);
        }
        // Forwarding and the exit node; before the overlay's sockets
        // exist, which carry the mark from their first packet.
        let host_net = antq_platform::apply_host_net(&tun, &host_net_config(&config))
            .await
            .map_err(platform(format!(
                "setting up forwarding and routing for {}",
                config.name
            )))?;
        for change in host_net.changes() {
            tracing::info!(%change, "host changed (restored at down)");
        }
        let transport = TransportSettings {
            initial_mtu: initial_mtu_for(config.mtu),
            socket_mark: if config.routing.exit_node.is_some() {
                config.routing.fwmark
            } else {
                0
            },
            ..TransportSettings::default()
        };
        let overlay_config = |bind| OverlayConfig {
            identity: config.identity.clone(),
            bind,
            peers: config
                .peers
                .iter()
                .map(|p| (p.public_key, p.endpoint))
                .collect(),
            bootstraps: config.bootstrap.clone(),
            exclude_ips: config.addresses.iter().map(IpNet::addr).collect(),
            transport: transport.clone(),
            // Both sides start at the same wall-clock instant (see
            // PUNCH_ME_NOW's start time): no stagger.
            punch: PunchConfig {
                controlled_stagger: std::time::Duration::ZERO,
                ..PunchConfig::default()
            },
            loopback_only: false,
            port_mapping: config.port_mapping,
            membership: config.network.as_ref().map(|n| MembershipConfig {
                certificate: n.certificate.clone(),
                trusted: n.ca.clone(),
                revoked: n.revoked.clone(),
                max_members: DEFAULT_MAX_MEMBERS,
            }),
        };
        let dual = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), config.listen_port);
        let shared = Arc::new(Shared {
            writer: TunWriter::new(&tun),
            tun,
            routes: ArcSwap::from_pointee(routes.clone()),
            static_routes: ArcSwap::from_pointee(static_routes(&config)),
            routes_changed: tokio::sync::Notify::new(),
            firewall: config
                .firewall_section
                .then(|| std::sync::Mutex::new(Firewall::new(config.firewall.clone()))),
            groups: ArcSwap::default(),
            stats: TunnelStats::default(),
            own: config.addresses.clone(),
            names: ArcSwap::from_pointee(Names::build(&LocalNames::from_config(&config), [])),
            local_names: ArcSwap::from_pointee(LocalNames::from_config(&config)),
            dns_stats: DnsStats::default(),
        });
        let start = |bind| Overlay::start_with_sink(overlay_config(bind), shared.clone());
        let started = match start(dual) {
            // Hosts without IPv6 bind IPv4 only.
            Err(NodeError::Bind { .. }) => start(SocketAddr::new(
                IpAddr::from([0, 0, 0, 0]),
                config.listen_port,
            )),
            other => other,
        };
        let overlay = match started {
            Ok(o) => o,
            Err(e) => {
                restore_host(host_net).await;
                return Err(e.into());
            }
        };

        let datapath = Arc::new(Datapath { shared, overlay });
        let installed = config
            .peers
            .iter()
            .flat_map(|p| p.allowed_ips.iter().map(IpNet::trunc))
            .collect();
        let tasks = vec![
            tokio::spawn(tun_to_peers(datapath.clone())),
            tokio::spawn(super::members::follow_routes(
                datapath.shared.clone(),
                datapath.overlay.clone(),
                config.addresses.clone(),
                installed,
            )),
        ];
        let dns = if config.dns {
            Some(super::dns::Running::start(&datapath.shared, &config).await)
        } else {
            None
        };
        let tunnel = Self {
            config,
            tasks,
            datapath,
            host_net: Some(host_net),
            dns,
        };
        Ok(tunnel)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The overlay carrying the tunnel.
    pub fn overlay(&self) -> &Overlay {
        &self.datapath.overlay
    }

    /// The current status.
    pub fn status(&self) -> TunnelStatus {
        let overlay = &self.datapath.overlay;
        let members = overlay.members();
        let peers = overlay
            .status()
            .into_iter()
            .map(|status| {
                let configured = self
                    .config
                    .peers
                    .iter()
                    .find(|p| p.public_key.to_string() == status.public_key);
                let member = members
                    .iter()
                    .find(|m| m.peer.to_string() == status.public_key);
                let nets = |v: &[IpNet]| v.iter().map(ToString::to_string).collect();
                match (configured, member) {
                    (Some(p), member) => PeerReport {
                        name: p
                            .name
                            .clone()
                            .or_else(|| member.map(|m| m.cert.body.name.clone())),
                        source: "config",
                        certificate_expires: None,
                        allowed_ips: nets(&p.allowed_ips),
                        status,
                    },
                    (None, Some(m)) => PeerReport {
                        name: Some(m.cert.body.name.clone()),
                        source: "network",
                        certificate_expires: Some(m.cert.body.not_after),
                        allowed_ips: nets(&m.cert.body.allowed_ips()),
                        status,
                    },
                    (None, None) => PeerReport {
                        name: None,
                        source: "leaving",
                        certificate_expires: None,
                        allowed_ips: Vec::new(),
                        status,
                    },
                }
            })
            .collect();
        TunnelStatus {
            interface: self.config.name.clone(),
            addresses: self
                .config
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            public_key: self.config.identity.peer_id().to_string(),
            listen: self.datapath.overlay.local_addr().ok(),
            routing: RoutingReport {
                gateway: self.config.routing.gateway,
                subnets: (self.config.routing.subnets.iter())
                    .map(ToString::to_string)
                    .collect(),
                exit: self.config.routing.exit,
                masquerade: self.config.routing.masquerade,
                exit_node: self.config.routing.exit_node.map(|k| k.to_string()),
                host_changes: self.host_changes(),
            },
            peers,
            network: self.config.network.as_ref().map(|n| {
                let (counters, refused) = overlay.member_counters().unwrap_or_default();
                NetworkReport {
                    name: n.certificate.body.network.clone(),
                    host_name: n.certificate.body.name.clone(),
                    ca: n.ca.iter().map(ToString::to_string).collect(),
                    certificate_expires: n.certificate.body.not_after,
                    counters,
                    refused: refused.into_iter().collect(),
                }
            }),
            dns: self
                .dns
                .as_ref()
                .map(|dns| dns.report(&self.datapath.shared)),
            bootstraps: self
                .datapath
                .overlay
                .observed_addresses()
                .into_iter()
                .zip(self.datapath.overlay.bootstrap_transports())
                .map(|((b, observed), (_, transport))| BootstrapReport {
                    address: b.addr,
                    observed,
                    transport,
                })
                .collect(),
            firewall: self.datapath.shared.firewall.as_ref().map(|fw| {
                fw.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .report()
            }),
            nat_mapping: self.datapath.overlay.nat_mapping().label(),
            port_mapping: PortMapReport {
                enabled: self.config.port_mapping,
                mapping: overlay.port_mapping(),
            },
            punch_prime_ttl: self.datapath.overlay.prime_ttl(),
            stats: serde_json::to_value(&self.datapath.shared.stats).unwrap_or_default(),
            socket: serde_json::to_value(self.datapath.overlay.node().socket().stats())
                .unwrap_or_default(),
        }
    }

    /// A renderer of the tunnel's metrics (datapath, firewall with a
    /// `[firewall]` section, overlay, node, socket) for
    /// [`crate::metrics::serve`].
    pub fn metrics(&self) -> crate::metrics::http::Render {
        let datapath = self.datapath.clone();
        Arc::new(move || {
            let mut r = crate::metrics::Registry::new();
            datapath.shared.stats.collect(&mut r);
            datapath.shared.dns_stats.collect(&mut r);
            if let Some(fw) = &datapath.shared.firewall {
                // The report is taken under the lock, rendered after it.
                let report = fw
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .report();
                report.collect(&mut r);
            }
            datapath.overlay.collect_metrics(&mut r);
            r.render()
        })
    }

    /// Stops the names responder, closes the peers' connections and puts
    /// back what was changed on the host; the device goes when `self` is
    /// dropped.
    pub async fn shutdown(mut self) {
        if let Some(dns) = self.dns.take() {
            dns.stop().await;
        }
        self.datapath.overlay.close().await;
        if let Some(host_net) = self.host_net.take() {
            restore_host(host_net).await;
        }
    }

    /// What the tunnel changed on the host, for status.
    pub fn host_changes(&self) -> Vec<String> {
        self.host_net
            .iter()
            .flat_map(|h| h.changes())
            .map(|c| c.to_string())
            .collect()
    }
}

async fn restore_host(host_net: antq_platform::HostNet) {
    match host_net.restore().await {
        Ok(()) => tracing::debug!("host restored"),
        Err(error) => tracing::warn!(%error, "the host was not fully restored"),
    }
}

/// What [`antq_platform::apply_host_net`] is to do for `config`.
fn host_net_config(config: &TunnelConfig) -> antq_platform::HostNetConfig {
    let r = &config.routing;
    let has = |v4: bool| config.addresses.iter().any(|a| a.addr().is_ipv4() == v4);
    let serves = |v4: bool| r.subnets.iter().any(|s| s.addr().is_ipv4() == v4);
    antq_platform::HostNetConfig {
        forward: r.forwards().then(|| antq_platform::Forwarding {
            subnets: r
                .subnets
                .iter()
                .map(|n| (n.addr(), n.prefix_len()))
                .collect(),
            exit: r.exit,
            masquerade: r.masquerade,
            v4: serves(true) || (r.exit && has(true)),
            v6: serves(false) || (r.exit && has(false)),
        }),
        default_route: r.exit_node.map(|_| antq_platform::DefaultRoute {
            mark: r.fwmark,
            v4: has(true),
            v6: has(false),
        }),
    }
}

/// The configured peers' allowed IPs, by owner, and the default routes of
/// the exit node.
pub(super) fn static_routes(config: &TunnelConfig) -> Vec<(IpNet, PeerId)> {
    let exit = config.routing.exit_node.into_iter().flat_map(|peer| {
        [
            (IpNet::V4(Default::default()), peer),
            (IpNet::V6(Default::default()), peer),
        ]
    });
    config
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().map(|n| (*n, p.public_key)))
        .chain(exit)
        .collect()
}

/// Our tunnel address of `ip`'s family, the source of ICMP answers.
fn own_address(addresses: &[IpNet], family_of: IpAddr) -> Option<IpAddr> {
    addresses
        .iter()
        .map(IpNet::addr)
        .find(|a| a.is_ipv4() == family_of.is_ipv4())
}

async fn tun_to_peers(dp: Arc<Datapath>) {
    let mut reader = TunReader::new(&dp.shared.tun, dp.shared.tun.mtu());
    let mut batch = SendBatch::default();
    loop {
        match reader.read(&dp.shared.tun).await {
            Ok(packets) => {
                for packet in packets {
                    dp.forward(&mut batch, packet);
                }
                // A read's packets to one peer leave together.
                dp.overlay.flush(&mut batch);
            }
            Err(error) => {
                tracing::warn!(%error, "reading the TUN device failed; datapath stopped");
                return;
            }
        }
    }
}

impl Datapath {
    /// Sends one packet read from the device to the peer that owns its
    /// destination (through `batch`), or answers it with "packet too big".
    fn forward(&self, batch: &mut SendBatch, packet: Bytes) {
        let Shared {
            routes, stats, own, ..
        } = &*self.shared;
        let overlay = &self.overlay;
        stats.tun_packets_in.fetch_add(1, Ordering::Relaxed);
        let Some(addrs) = packet::addresses(&packet) else {
            stats.drop_malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let routes = routes.load();
        let peer = match routes.lookup_with_len(addrs.dst) {
            // The exit node's default route: an address of our network (a
            // member we do not know yet) is handled as unrouted below,
            // never sent to the exit node. Our networks are the prefixes
            // of our addresses (the certificate's): no lock, no copy.
            Some((_, 0))
                if overlay.has_membership()
                    && own.iter().any(|n| n.trunc().contains(&addrs.dst)) =>
            {
                None
            }
            found => found.map(|(peer, _)| peer),
        };
        let Some(peer) = peer else {
            // Maybe a member of our network we do not know yet: it is
            // looked up, and the packet waits for it.
            if overlay.send_to_address(addrs.dst, packet).is_err() {
                stats.drop_no_route.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        if let Some(fw) = &self.shared.firewall {
            fw.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .outbound(&packet, std::time::Instant::now());
        }
        // QUIC checks the size (one lock of the connection per packet);
        // only a packet it refuses asks for the path's size.
        match overlay.send_batched(batch, peer, packet.clone()) {
            Ok(()) => {}
            Err(SendError::Datagram {
                source: quinn::SendDatagramError::TooLarge,
                ..
            }) => {
                stats.drop_too_big.fetch_add(1, Ordering::Relaxed);
                let answer = overlay.max_datagram_size(peer).and_then(|max| {
                    let mtu = u16::try_from(max).unwrap_or(u16::MAX);
                    packet_too_big(&packet, own_address(own, addrs.src)?, mtu)
                });
                if let Some(answer) = answer {
                    self.shared.write([answer.as_slice()]);
                }
            }
            Err(SendError::NoPath(_)) => {
                stats.drop_no_path.fetch_add(1, Ordering::Relaxed);
            }
            // A route to a member we do not hold now (our exit node, from
            // `exit_node`): look it up; the packets after it get through.
            Err(SendError::UnknownPeer(peer)) if overlay.has_membership() => {
                stats.drop_no_path.fetch_add(1, Ordering::Relaxed);
                overlay.look_up(crate::proto::MemberQuery::Key(*peer.as_bytes()));
            }
            Err(error) => {
                stats.drop_send_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "datagram not sent");
            }
        }
    }
}

impl Shared {
    /// Writes packets to the device, counting what was written and dropped.
    fn write<'a>(&self, packets: impl IntoIterator<Item = &'a [u8], IntoIter: ExactSizeIterator>) {
        let packets = packets.into_iter();
        let total = packets.len();
        let (written, result) = self.writer.write(&self.tun, packets);
        self.stats
            .tun_packets_out
            .fetch_add(written as u64, Ordering::Relaxed);
        if let Err(error) = result {
            self.stats
                .drop_tun_write
                .fetch_add((total - written) as u64, Ordering::Relaxed);
            tracing::debug!(%error, "writing to the TUN device failed");
        }
    }
}

/// Whether a packet `peer` sent may be written to the TUN device: it must be
/// IP and its source's longest match in `routes` must be `peer` itself (no
/// peer can send as another or from outside its allowed IPs). Refused
/// packets are counted in `drop_malformed` / `drop_bad_source`.
fn admit_inbound(
    routes: &AllowedIps<PeerId>,
    stats: &TunnelStats,
    peer: PeerId,
    packet: &[u8],
) -> bool {
    let Some(addrs) = packet::addresses(packet) else {
        stats.drop_malformed.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let allowed = routes.allows_source(&peer, addrs.src);
    if !allowed {
        stats.drop_bad_source.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %peer.short(), src = %addrs.src, "packet with a source outside the peer's allowed IPs dropped");
    }
    allowed
}

impl DatagramSink for Shared {
    fn deliver(&self, peer: PeerId, datagrams: &mut Vec<Bytes>) {
        let routes = self.routes.load();
        datagrams.retain(|p| admit_inbound(&routes, &self.stats, peer, p));
        if let Some(fw) = &self.firewall {
            let groups = self.groups.load();
            let sender = Sender {
                peer,
                groups: groups.get(&peer).map_or(&[][..], Vec::as_slice),
            };
            let now = std::time::Instant::now();
            let mut fw = fw.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            datagrams.retain(|p| fw.inbound(p, &sender, now).passes());
        }
        self.write(datagrams.iter().map(|p| &p[..]));
        datagrams.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    fn ipv6(src: &str, dst: &str) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&8u16.to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        p
    }

    #[test]
    fn spoofed_inner_sources_are_dropped_and_counted() {
        let (a, b, stranger) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        let mut routes = AllowedIps::new();
        for (net, owner) in [
            ("10.90.0.2/32", a),
            ("fd90::2/128", a),
            ("10.90.0.3/32", b),
            ("192.168.50.0/24", b),
            // A more specific range inside b's belongs to a.
            ("192.168.50.128/25", a),
        ] {
            routes.insert(net.parse().unwrap(), owner);
        }
        let stats = TunnelStats::default();
        let me = [10, 90, 0, 1];
        let cases: [(PeerId, Vec<u8>, bool); 10] = [
            (a, ipv4([10, 90, 0, 2], me), true),
            (a, ipv6("fd90::2", "fd90::1"), true),
            (b, ipv4([10, 90, 0, 3], me), true),
            (b, ipv4([192, 168, 50, 7], me), true),
            (a, ipv4([192, 168, 50, 200], me), true),
            // a sending as b, b as a (longest match), anyone from outside
            // every range, a key that is not a peer at all.
            (a, ipv4([10, 90, 0, 3], me), false),
            (b, ipv4([192, 168, 50, 200], me), false),
            (a, ipv4([10, 90, 0, 77], me), false),
            (b, ipv6("fd90::2", "fd90::1"), false),
            (stranger, ipv4([10, 90, 0, 2], me), false),
        ];
        for (i, (peer, packet, expected)) in cases.iter().enumerate() {
            assert_eq!(
                admit_inbound(&routes, &stats, *peer, packet),
                *expected,
                "case {i}"
            );
        }
        assert_eq!(stats.drop_bad_source.load(Ordering::Relaxed), 5);
        assert!(!admit_inbound(&routes, &stats, a, &[0x45; 10]));
        assert_eq!(stats.drop_malformed.load(Ordering::Relaxed), 1);
    }
}
