//! `up`, `down` and `bootstrap`: the long-running commands.

use std::net::SocketAddr;
use std::path::Path;

use antq::bootstrap::config::BootstrapConfig;
use antq::bootstrap::Bootstrap;
use antq::metrics::http::Render;
use antq::metrics::MetricsServer;
use antq::tunnel::config::TunnelConfig;
use antq::tunnel::device::Tunnel;
use antq::tunnel::ipc::{self, IpcError, Request};
use anyhow::{bail, Context as _};

/// Fails unless we may create devices and routes.
fn require_privileges(what: &str) -> anyhow::Result<()> {
    if !antq_platform::has_net_admin() {
        bail!(
            "{what} needs {} to create the TUN device and routes; {}",
            antq_platform::REQUIRED_PRIVILEGE,
            antq_platform::PRIVILEGE_ADVICE
        );
    }
    Ok(())
}

/// Aborts the metrics server when dropped.
struct MetricsTask(tokio::task::JoinHandle<()>);

impl Drop for MetricsTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds the metrics listener if configured (before anything else is set
/// up, so a busy port fails early).
async fn bind_metrics(addr: Option<SocketAddr>) -> anyhow::Result<Option<MetricsServer>> {
    let Some(addr) = addr else { return Ok(None) };
    let server = MetricsServer::bind(addr)
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
    Ok(Some(server))
}

/// Serves metrics on a bound listener until the task is dropped.
fn serve_metrics(server: Option<MetricsServer>, render: Render) -> Option<MetricsTask> {
    let server = server?;
    if let Ok(local) = server.local_addr() {
        tracing::info!("metrics at http://{local}/metrics");
    }
    Some(MetricsTask(server.spawn(render)))
}

/// `--exit-node KEY` over the file's `exit_node`.
fn with_exit_node(
    mut config: TunnelConfig,
    exit_node: Option<&str>,
) -> anyhow::Result<TunnelConfig> {
    if let Some(text) = exit_node {
        let key = antq::tunnel::config::check_exit_node(
            &config.path,
            "--exit-node",
            text,
            config.identity.peer_id(),
            &config.peers,
            config.network.is_some(),
            config.routing.exit,
        )?;
        config.routing.exit_node = Some(key);
    }
    Ok(config)
}

pub fn up(path: &Path, exit_node: Option<&str>) -> anyhow::Result<()> {
    // Everything that can be checked is checked before the system is touched.
    let config = with_exit_node(TunnelConfig::load(path)?, exit_node)?;
    let exit_node = exit_node.map(str::to_owned);
    require_privileges("antq-tun up")?;
    super::init_logging();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    super::local_runtime()?.block_on(async move {
        let metrics = bind_metrics(config.metrics).await?;
        let mut listener = match ipc::bind(&config.name).await {
            Ok(listener) => Some(listener),
            // Not root but CAP_NET_ADMIN (`setcap cap_net_admin+ep`): root's
            // socket directory is out of reach. The tunnel runs without
            // one; it stops on SIGINT/SIGTERM.
            Err(IpcError::Io { endpoint, source })
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    && !antq_platform::is_root() =>
            {
                tracing::warn!(
                    %endpoint, error = %source,
                    "no control socket (not root): `antq-tun status` and `antq-tun down` \
                     will not reach this tunnel; stop it with SIGINT/SIGTERM"
                );
                None
            }
            Err(error) => return Err(error.into()),
        };
        let name = config.name.clone();
        let config_path = config.path.clone();
        // Installed before the device exists: a SIGHUP from here on
        // reloads instead of ending the process.
        let mut hup = antq_platform::ReloadSignal::new()?;
        let mut tunnel = Tunnel::start(config).await.with_context(|| format!("bringing up {name}"))?;
        tracing::info!(interface = %name, listen = ?tunnel.overlay().local_addr().ok(), public_key = %tunnel.overlay().peer_id(), "tunnel up");
        let _metrics = serve_metrics(metrics, tunnel.metrics());
        antq_platform::notify_ready(&format!("{name} up"));
        let stop = antq_platform::terminated();
        tokio::pin!(stop);
        loop {
            let accepted = async {
                match listener.as_mut() {
                    Some(l) => ipc::accept(l).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = &mut stop => {
                    tracing::info!("{}, shutting down", signal?);
                    break;
                }
                () = hup.recv() => {
                    let _ = apply_reload(&mut tunnel, &config_path, exit_node.as_deref());
                }
                accepted = accepted => {
                    let (request, stream) = accepted?;
                    match request {
                        Request::Status => {
                            let json = serde_json::to_string_pretty(&tunnel.status())?;
                            ipc::answer(stream, &json).await;
                        }
                        Request::Down => {
                            ipc::answer(stream, "ok\n").await;
                            tracing::info!("down requested, shutting down");
                            break;
                        }
                        Request::Reload(path) => {
                            let answer = match apply_reload(&mut tunnel, &path, exit_node.as_deref()) {
                                Ok(report) => format!("ok: {report}\n"),
                                Err(error) => format!("error: {error}\n"),
                            };
                            ipc::answer(stream, &answer).await;
                        }
                        Request::Ping { target, timeout } => {
                            let pinger = tunnel.pinger();
                            tokio::spawn(async move {
                                let answer = pinger.ping(&target, timeout).await;
                                let json = serde_json::to_string(&answer).unwrap_or_default();
                                ipc::answer(stream, &json).await;
                            });
                        }
                    }
                }
            }
        }
        antq_platform::notify_stopping();
        tunnel.shutdown().await;
        // Removes the ipc endpoint: `antq-tun down` waits for that.
        drop(listener);
        tracing::info!(interface = %name, "tunnel down");
        Ok(())
    })
}

/// Re-reads the config at `path` and applies it to the running tunnel
/// (with `up`'s `--exit-node`, if given); the running configuration stays
/// when the new one is refused.
fn apply_reload(
    tunnel: &mut Tunnel,
    path: &Path,
    exit_node: Option<&str>,
) -> Result<String, String> {
    let result = TunnelConfig::load(path)
        .map_err(|e| e.to_string())
        .and_then(|config| with_exit_node(config, exit_node).map_err(|e| e.to_string()))
        .and_then(|config| {
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            tunnel.reload(config).map_err(|e| e.to_string())
        });
    match &result {
        Ok(report) => tracing::info!(%report, path = %path.display(), "configuration reloaded"),
        Err(error) => tracing::warn!(%error, "reload refused; the running configuration stays"),
    }
    result.map(|r| r.to_string())
}

/// `antq-tun reload -c FILE`: checks the file here (the usual errors, exit
/// 1), then has the running tunnel apply it.
pub fn reload(path: &Path) -> anyhow::Result<()> {
    let config = TunnelConfig::load(path)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    super::local_runtime()?.block_on(async {
        let answer = ipc::request(&config.name, Request::Reload(absolute)).await?;
        let answer = answer.trim();
        match answer.strip_prefix("ok: ") {
            Some(report) => {
                outln!("{}: reloaded ({report})", config.name)?;
                Ok(())
            }
            None => anyhow::bail!(
                "{}: {}",
                config.name,
                answer.strip_prefix("error: ").unwrap_or(answer)
            ),
        }
    })
}

pub fn down(path: &Path) -> anyhow::Result<()> {
    let config = TunnelConfig::load(path)?;
    super::local_runtime()?.block_on(async {
        ipc::request(&config.name, Request::Down).await?;
        // Wait until the instance has removed its ipc socket.
        for _ in 0..100 {
            if !ipc::is_running(&config.name) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        outln!("{} is down", config.name)?;
        Ok(())
    })
}

pub fn bootstrap(path: &Path) -> anyhow::Result<()> {
    let config = BootstrapConfig::load(path)?;
    super::init_logging();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    super::runtime()?.block_on(async move {
        let listen = config.settings.listen;
        let metrics = bind_metrics(config.metrics).await?;
        let node = Bootstrap::start(config.settings).with_context(|| format!("starting the bootstrap on {listen}"))?;
        tracing::info!(listen = ?node.local_addr().ok(), tcp_listen = ?node.tcp_local_addr(), public_key = %node.peer_id(), "bootstrap running");
        let _metrics = serve_metrics(metrics, node.metrics());
        // `antq-tun status` asks here. A bootstrap needs no privilege, and
        // without one the ipc directory is out of reach: it then runs
        // without (the metrics carry the same figures).
        let name = antq::bootstrap::status::ipc_name(node.local_addr().unwrap_or(listen));
        let mut listener = match ipc::bind(&name).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "no status endpoint; `antq-tun status` will not see this bootstrap");
                None
            }
        };
        let stop = antq_platform::terminated();
        tokio::pin!(stop);
        loop {
            let accepted = async {
                match listener.as_mut() {
                    Some(l) => ipc::accept(l).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = &mut stop => {
                    tracing::info!("{}, shutting down", signal?);
                    break;
                }
                accepted = accepted => {
                    let (request, stream) = accepted?;
                    match request {
                        Request::Status => {
                            let json = serde_json::to_string_pretty(&node.status())?;
                            ipc::answer(stream, &json).await;
                        }
                        Request::Down => {
                            ipc::answer(stream, "a bootstrap stops on SIGTERM, not `down`\n").await;
                        }
                        Request::Reload(_) => {
                            ipc::answer(stream, "error: a bootstrap does not reload; restart it\n").await;
                        }
                        Request::Ping { .. } => {
                            ipc::answer(stream, "{\"error\": \"a bootstrap has no peers to ping\", \"unknown\": true}").await;
                        }
                    }
                }
            }
        }
        node.close().await;
        drop(listener);
        Ok(())
    })
}
