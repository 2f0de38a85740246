//! `netcheck`: our mapped address as each bootstrap sees it, from one
//! socket (on its main port and, when it has one, on its observe port), and
//! the NAT mapping behaviour that follows; which port mapping protocols the
//! default gateway answers (a short test mapping of the same socket's port
//! by each, removed at once).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use antq::identity::Identity;
use antq::nat::{infer_mapping, prime_ttl_from_trace, Observation, TRACE_HOPS};
use antq::node::{BootstrapAddr, Node, NodeConfig};
use antq::proto::raw::{parse_raw, ObserveRequest, RawFrame};
use antq::proto::ControlMessage;
use antq::socket::RawPacket;
use antq::tls::{AcceptPolicy, Allowlist};
use antq::tunnel::config::TunnelConfig;
use anyhow::{bail, Context as _};
use rand::Rng as _;
use tokio::sync::mpsc;

/// How long to wait for `OBSERVE_AT` after `OBSERVED_ADDRESS`.
const OBSERVE_AT_WAIT: Duration = Duration::from_secs(1);
/// Observe requests sent, and how long to wait for an answer to each.
const OBSERVE_TRIES: u32 = 4;
const OBSERVE_WAIT: Duration = Duration::from_millis(500);

/// What one bootstrap saw of us.
struct Seen {
    /// On its main port.
    mapped: SocketAddr,
    /// On its observe port: `(observe address, mapped)`, or why not.
    observe: Result<(SocketAddr, SocketAddr), String>,
}

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
        let mut raw = node.socket().take_raw_receiver().context("no raw frame receiver")?;
        let mut observations = Vec::new();
        let mut rows = Vec::new();
        for b in &bootstraps {
            let observed = observe(&node, b, &mut raw).await;
            if let Ok(seen) = &observed {
                observations.push(Observation { server: b.addr, base, mapped: seen.mapped });
                if let Ok((server, mapped)) = seen.observe {
                    observations.push(Observation { server, base, mapped });
                }
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
                    antq_platform::trace_hops(target, TRACE_HOPS, Duration::from_secs(1), 0)
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
                    Ok(Seen { mapped, observe: Ok((at, m)) }) => serde_json::json!({"bootstrap": b.addr, "observed": mapped, "observe_port": {"address": at, "observed": m}}),
                    Ok(Seen { mapped, observe: Err(e) }) => serde_json::json!({"bootstrap": b.addr, "observed": mapped, "observe_port": {"error": e}}),
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
            outln!("{}", serde_json::to_string_pretty(&serde_json::json!({"local": base, "bootstraps": list, "mapping": format!("{mapping:?}"), "nat_mapping": mapping.label(), "trace": trace_json, "port_mapping": pm}))?)?;
        } else {
            outln!("local socket: {base}")?;
            for (b, o) in &rows {
                match o {
                    Ok(seen) => {
                        outln!("bootstrap {}: sees us as {}", b.addr, seen.mapped)?;
                        match &seen.observe {
                            Ok((at, m)) => outln!("  its observe port {at}: sees us as {m}")?,
                            Err(e) => outln!("  its observe port: {e}")?,
                        }
                    }
                    Err(e) => outln!("bootstrap {}: unreachable ({e:#})", b.addr)?,
                }
            }
            outln!("NAT mapping: {mapping:?}")?;
            if observations.len() < 2 {
                outln!("(one observation cannot tell endpoint-independent from symmetric mapping; give a second bootstrap, or one with an observe port)")?;
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

async fn observe(
    node: &Node,
    b: &BootstrapAddr,
    raw: &mut mpsc::Receiver<RawPacket>,
) -> anyhow::Result<Seen> {
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
    let Some(mapped) = observed else {
        conn.close("netcheck done");
        bail!("the bootstrap sent no OBSERVED_ADDRESS");
    };
    // It says where its observe socket is right after.
    let wait = async {
        while let Some(msg) = conn.control().recv().await {
            if let ControlMessage::ObserveAt { port } = msg {
                return Some(port);
            }
        }
        None
    };
    let port = tokio::time::timeout(OBSERVE_AT_WAIT, wait)
        .await
        .ok()
        .flatten();
    let observe = match port {
        Some(port) if port != 0 => {
            let at = SocketAddr::new(antq::nat::canonical(b.addr).ip(), port);
            ask_observe(node, at, raw).await.map(|m| (at, m))
        }
        _ => Err("none (the bootstrap did not tell one)".to_owned()),
    };
    conn.close("netcheck done");
    Ok(Seen { mapped, observe })
}

/// Sends `OBSERVE_REQUEST`s to `at` until one is answered from there with
/// its token.
async fn ask_observe(
    node: &Node,
    at: SocketAddr,
    raw: &mut mpsc::Receiver<RawPacket>,
) -> Result<SocketAddr, String> {
    let mut tokens = Vec::new();
    for _ in 0..OBSERVE_TRIES {
        let token: [u8; 16] = rand::rngs::OsRng.gen();
        tokens.push(token);
        let _ = node
            .socket()
            .try_send_raw(at, &ObserveRequest { token }.to_bytes());
        let answer = async {
            while let Some(packet) = raw.recv().await {
                if packet.from != at {
                    continue;
                }
                if let Ok(RawFrame::ObserveReply(reply)) = parse_raw(&packet.data) {
                    if tokens.contains(&reply.token) {
                        return Some(antq::nat::canonical(reply.observed));
                    }
                }
            }
            None
        };
        if let Ok(Some(mapped)) = tokio::time::timeout(OBSERVE_WAIT, answer).await {
            return Ok(mapped);
        }
    }
    Err(format!(
        "{at}: no answer to {OBSERVE_TRIES} requests (UDP to that port blocked?)"
    ))
}
