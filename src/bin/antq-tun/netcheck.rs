//! `netcheck`: our mapped address as each bootstrap sees it, from one
//! socket, and the NAT mapping behaviour that follows; which port mapping
//! protocols the default gateway answers (a short test mapping of the same
//! socket's port by each, removed at once).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use antq::identity::Identity;
use antq::nat::{infer_mapping, prime_ttl_from_trace, Observation, TRACE_HOPS};
use antq::node::{BootstrapAddr, Node, NodeConfig};
use antq::proto::ControlMessage;
use antq::tls::{AcceptPolicy, Allowlist};
use antq::tunnel::config::TunnelConfig;
use anyhow::{bail, Context as _};

pub fn netcheck(config: Option<&Path>, extra: &[String], json: bool) -> anyhow::Result<()> {
    let (identity, mut bootstraps) = match config {
        Some(path) => {
            let c = TunnelConfig::load(path)?;
            (c.identity, c.bootstrap)
        }
        None => (Identity::generate(), Vec::new()),
    };
    for (i, text) in extra.iter().enumerate() {
        let (key, addr) = text
            .split_once('@')
            .with_context(|| format!("--bootstrap #{}: `{text}` is not KEY@IP:PORT", i + 1))?;
        bootstraps.push(BootstrapAddr {
            peer: key
                .parse()
                .with_context(|| format!("--bootstrap #{}: bad key", i + 1))?,
            addr: addr
                .parse()
                .with_context(|| format!("--bootstrap #{}: bad address", i + 1))?,
        });
    }
    if bootstraps.is_empty() {
        bail!("no bootstrap to ask: give -c FILE with [interface] bootstrap, or --bootstrap KEY@IP:PORT");
    }
    super::local_runtime()?.block_on(async move {
        let bind = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
        let node = Node::bind(NodeConfig::new(identity, bind, AcceptPolicy::Allowlist(Allowlist::default())))
            .or_else(|_| Node::bind(NodeConfig::new(Identity::generate(), "0.0.0.0:0".parse()?, AcceptPolicy::Allowlist(Allowlist::default()))).map_err(anyhow::Error::from))?;
        let base = node.local_addr()?;
        let mut observations = Vec::new();
        let mut rows = Vec::new();
        for b in &bootstraps {
            let observed = observe(&node, b).await;
            if let Ok(mapped) = &observed {
                observations.push(Observation { server: b.addr, base, mapped: *mapped });
            }

            rows.push((b, observed));
        }
        let mapping = infer_mapping(&observations);
        // Our NAT layers: the routers toward the first IPv4 bootstrap.
        let trace_target = bootstraps
            .iter()
            .map(|b| antq::nat::canonical(b.addr).ip())
            .find(IpAddr::is_ipv4);
        let trace = match trace_target {
            Some(target) => Some((
                target,
                tokio::task::spawn_blocking(move || {
                    antq_platform::trace_hops(target, TRACE_HOPS, Duration::from_secs(1))
                        .map(|hops| prime_ttl_from_trace(&hops))
                })
                .await?,
            )),
            None => None,
        };
        let gateway = antq_platform::default_gateway_v4();
        let portmap = antq::node::portmap::probe_all(base.port()).await;
        let hop_text = |h: &Option<IpAddr>| h.map_or_else(|| "*".to_owned(), |ip| ip.to_string());
        if json {
            let list: Vec<_> = rows
                .iter()
                .map(|(b, o)| match o {
                    Ok(m) => serde_json::json!({"bootstrap": b.addr, "observed": m}),
                    Err(e) => serde_json::json!({"bootstrap": b.addr, "error": format!("{e:#}")}),
                })
                .collect();
            let trace_json = match &trace {
                Some((target, Ok((ttl, routers)))) => serde_json::json!({
                    "target": target,
                    "routers": routers.iter().map(hop_text).collect::<Vec<_>>(),
                    "punch_prime_ttl": ttl,
                }),
                Some((target, Err(e))) => serde_json::json!({"target": target, "error": e.to_string()}),
                None => serde_json::Value::Null,
            };
            let mut pm = serde_json::Map::new();
            pm.insert("gateway".into(), match &gateway {
                Ok(g) => serde_json::json!(g),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            });
            for p in &portmap {
                pm.insert(p.protocol.name().into(), match &p.result {
                    Ok(external) => serde_json::json!({"answered": true, "external": external, "removed": p.removed}),
                    Err(e) => serde_json::json!({"answered": false, "error": e.to_string()}),
                });
            }
            outln!("{}", serde_json::to_string_pretty(&serde_json::json!({"local": base, "bootstraps": list, "mapping": format!("{mapping:?}"), "trace": trace_json, "port_mapping": pm}))?)?;
        } else {
            outln!("local socket: {base}")?;
            for (b, o) in &rows {
                match o {
                    Ok(m) => outln!("bootstrap {}: sees us as {m}", b.addr)?,
                    Err(e) => outln!("bootstrap {}: unreachable ({e:#})", b.addr)?,
                }
            }
            outln!("NAT mapping: {mapping:?}")?;
            if observations.len() < 2 {
                outln!("(one bootstrap cannot tell endpoint-independent from symmetric mapping; give two)")?;
            }
            match &trace {
                Some((target, Ok((ttl, routers)))) => {
                    let list: Vec<_> = routers.iter().map(hop_text).collect();
                    outln!("routers toward {target}: {}", list.join(" "))?;
                    outln!("punch priming TTL: {ttl} (one more than the leading private routers: our NATs)")?;
                }
                Some((target, Err(e))) => outln!("routers toward {target}: cannot trace ({e})")?,
                None => outln!("routers: no IPv4 bootstrap to trace toward")?,
            }
            match &gateway {
                Ok(Some(g)) => outln!("port mapping, gateway {g}:")?,
                Ok(None) => outln!("port mapping (no IPv4 default gateway):")?,
                Err(e) => outln!("port mapping (default gateway unknown: {e}):")?,
            }
            for p in &portmap {
                match &p.result {
                    Ok(external) => outln!(
                        "  {}: yes, mapped {external}{}",
                        p.protocol,
                        if p.removed { "" } else { " (removal not confirmed)" }
                    )?,
                    Err(e) => outln!("  {}: no ({e})", p.protocol)?,
                }
            }
        }
        node.close().await;
        Ok(())
    })
}

async fn observe(node: &Node, b: &BootstrapAddr) -> anyhow::Result<SocketAddr> {
    let conn = node.connect(b.peer, &[b.addr]).await?;
    let wait = async {
        while let Some(msg) = conn.control().recv().await {
            if let ControlMessage::ObservedAddress { addr, .. } = msg {
                return Some(antq::nat::canonical(addr));
            }
        }
        None
    };
    let observed = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .ok()
        .flatten();
    conn.close("netcheck done");
    observed.context("the bootstrap sent no OBSERVED_ADDRESS")
}
