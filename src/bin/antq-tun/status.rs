//! `status`: asks each running tunnel and bootstrap over its ipc socket
//! (the local admin channel).

use antq::tunnel::ipc::{self, Request};
use anyhow::bail;

pub fn status(json: bool, only: Option<&str>) -> anyhow::Result<()> {
    let names = match only {
        Some(name) => vec![name.to_owned()],
        None => match ipc::running_interfaces() {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "cannot look for running tunnels in {}: permission denied; \
                 run it as root (sudo antq-tun status)",
                ipc::LOCATION
            ),
            Err(e) => bail!("cannot look for running tunnels in {}: {e}", ipc::LOCATION),
        },
    };
    if names.is_empty() {
        bail!(
            "no antq-tun is running (no control socket in {})",
            ipc::LOCATION
        );
    }
    super::local_runtime()?.block_on(async {
        let mut reports = Vec::new();
        for name in &names {
            // Listing all: an endpoint left by a killed instance is skipped
            // with a note; asking for one: its error is the answer.
            match ipc::request(name, Request::Status).await {
                Ok(text) => reports.push(serde_json::from_str::<serde_json::Value>(&text)?),
                Err(error) if only.is_none() => errln!("{name}: not answering ({error})"),
                Err(error) => return Err(error.into()),
            }
        }
        if reports.is_empty() {
            bail!("no running antq-tun answered");
        }
        if json {
            let out = if only.is_some() {
                reports.remove(0)
            } else {
                serde_json::Value::Array(reports)
            };
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        } else {
            for report in &reports {
                print_text(report)?;
            }
        }
        Ok(())
    })
}

fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// `key value, key value, ...` of a JSON object, leaving out zeros.
fn nonzero(v: &serde_json::Value) -> String {
    let list: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// A bootstrap's status (from `antq::bootstrap::status::BootstrapStatus`).
fn print_bootstrap(r: &serde_json::Value) -> anyhow::Result<()> {
    let s = text;
    outln!("bootstrap: {}", s(&r["bootstrap"]))?;
    outln!(
        "  listening on: {} (udp), {} (tcp); relay {}",
        s(&r["listen"]),
        s(&r["tcp_listen"]),
        if r["relay"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        }
    )?;
    let l = &r["limits"];
    outln!(
        "  peers: {} udp, {} tcp (max {}, {} per IP)",
        r["peers"]["udp"],
        r["peers"]["tcp"],
        l["max_peers"],
        l["max_connections_per_ip"]
    )?;
    outln!(
        "  relays: {} (max {}, {} per key), {} requests waiting for consent",
        r["relays"],
        l["relay_max_total"],
        l["relay_max_per_key"],
        r["relay_requests_waiting"]
    )?;
    outln!(
        "  tcp streams: {} (max {}, {} per IP); addresses being proven: {}",
        r["tcp_streams"],
        l["tcp_max_streams"],
        l["tcp_max_streams_per_ip"],
        r["address_challenges"]
    )?;
    outln!("  totals: {}", nonzero(&r["totals"]))?;
    outln!(
        "  directory: {} members; {}",
        r["members"],
        nonzero(&r["directory"])
    )?;
    if r["observe_listen"].is_null() {
        outln!("  observe socket: off")?;
    } else {
        outln!(
            "  observe socket: {}; requests: {}",
            s(&r["observe_listen"]),
            nonzero(&r["observe"])
        )?;
    }
    outln!("  address moves: {}", nonzero(&r["address_proofs"]))?;
    outln!("  refused: {}", nonzero(&r["refused"]))?;
    Ok(())
}

fn print_text(r: &serde_json::Value) -> anyhow::Result<()> {
    if !r["bootstrap"].is_null() {
        return print_bootstrap(r);
    }
    let s = text;
    outln!("interface: {}", s(&r["interface"]))?;
    outln!("  public key: {}", s(&r["public_key"]))?;
    outln!(
        "  addresses: {}",
        r["addresses"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    )?;
    outln!("  listening on: {}", s(&r["listen"]))?;
    for b in r["bootstraps"].as_array().into_iter().flatten() {
        outln!(
            "  bootstrap {}: observed {}, transport {}",
            s(&b["address"]),
            s(&b["observed"]),
            s(&b["transport"])
        )?;
    }
    if !r["nat_mapping"].is_null() {
        outln!("  NAT mapping: {}", s(&r["nat_mapping"]))?;
    }
    let pm = &r["port_mapping"];
    let m = &pm["mapping"];
    if pm["enabled"] == false {
        outln!("  port mapping: off")?;
    } else if m.is_object() {
        outln!(
            "  port mapping: {} {}, expires in {} s (renewed at half its lifetime)",
            s(&m["protocol"]),
            s(&m["external"]),
            s(&m["expires_in_secs"])
        )?;
    } else if pm.is_object() {
        outln!("  port mapping: none (the gateway granted none yet)")?;
    }
    let rt = &r["routing"];
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    if rt["gateway"] == true {
        outln!(
            "  gateway for {}{}",
            list(&rt["subnets"]),
            if rt["masquerade"] == true {
                ", masquerading"
            } else {
                ""
            }
        )?;
    }
    if rt["exit"] == true {
        outln!(
            "  exit node for peers{}",
            if rt["masquerade"] == true {
                ", masquerading"
            } else {
                ""
            }
        )?;
    }
    if !rt["exit_node"].is_null() {
        outln!(
            "  exit node: {} (everything without a more specific route)",
            s(&rt["exit_node"])
        )?;
    }
    if let Some(changes) = rt["host_changes"].as_array().filter(|a| !a.is_empty()) {
        // The per-interface copies of a forwarding switch are restored
        // too; the text counts them instead of listing each.
        let is_copy = |c: &str| c.contains("/conf/") && c.contains("/forwarding ");
        let all: Vec<String> = changes.iter().map(s).collect();
        let copies = all.iter().filter(|c| is_copy(c)).count();
        let main: Vec<&str> = all
            .iter()
            .filter(|c| !is_copy(c))
            .map(String::as_str)
            .collect();
        outln!(
            "  host changes (restored at down): {}{}",
            main.join(", "),
            if copies > 0 {
                format!(" (+ {copies} per-interface forwarding settings)")
            } else {
                String::new()
            }
        )?;
    }
    if !r["punch_prime_ttl"].is_null() {
        outln!("  punch priming TTL: {}", s(&r["punch_prime_ttl"]))?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days_left = |t: u64| t.saturating_sub(now) / 86_400;
    let n = &r["network"];
    if !n.is_null() {
        let expires = n["certificate_expires"].as_u64().unwrap_or(0);
        outln!(
            "  network: {} as {}, certificate expires in {} days",
            s(&n["name"]),
            s(&n["host_name"]),
            days_left(expires)
        )?;
        if expires.saturating_sub(now) < 30 * 86_400 {
            outln!("  WARNING: our certificate expires within 30 days: sign a new one with `antq-tun ca sign`")?;
        }
        outln!("  members: {}", nonzero(&n["counters"]))?;
        if n["refused"].as_object().is_some_and(|o| !o.is_empty()) {
            outln!("  refused members: {}", nonzero(&n["refused"]))?;
        }
    }
    let fw = &r["firewall"];
    if !fw.is_null() {
        outln!(
            "  firewall: inbound default {}, {} dropped, {} flows tracked",
            s(&fw["default_inbound"]),
            fw["dropped"],
            fw["tracked_flows"]
        )?;
        for (i, rule) in fw["rules"].as_array().into_iter().flatten().enumerate() {
            outln!(
                "    [{i}] {} port {} from {}: {} packets",
                s(&rule["proto"]),
                s(&rule["port"]),
                rule["from"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
                rule["hits"]
            )?;
        }
        // The counters hold passes too (and the rules' hits, printed
        // above): drops and passes without a rule on their own lines.
        let c = &fw["counters"];
        let pick = |keys: &[&str]| {
            serde_json::Value::Object(
                keys.iter()
                    .map(|k| ((*k).to_owned(), c[*k].clone()))
                    .collect(),
            )
        };
        outln!(
            "    drops: {}",
            nonzero(&pick(&["default_denied", "fragments_dropped", "malformed"]))
        )?;
        outln!(
            "    passed without a rule: {}",
            nonzero(&pick(&["tracked", "default_allowed"]))
        )?;
    }
    print_dns(&r["dns"])?;
    for p in r["peers"].as_array().into_iter().flatten() {
        outln!()?;
        outln!("peer: {}", s(&p["public_key"]))?;
        if let Some(name) = p["name"].as_str() {
            outln!("  name: {name}")?;
        }
        match p["certificate_expires"].as_u64() {
            Some(t) => outln!(
                "  from: {} (certificate expires in {} days)",
                s(&p["source"]),
                days_left(t)
            )?,
            None => outln!("  from: {}", s(&p["source"]))?,
        }
        outln!(
            "  allowed ips: {}",
            p["allowed_ips"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )?;
        match p["direct_found_by"].as_str() {
            Some(by) => outln!("  path: {} (found by {by})", s(&p["path"]))?,
            None => outln!("  path: {}", s(&p["path"]))?,
        }
        outln!("  remote: {}", s(&p["remote"]))?;
        if !p["transport"].is_null() {
            outln!("  transport: {}", s(&p["transport"]))?;
        }
        if let Some(rtt) = p["rtt_ms"].as_f64() {
            outln!("  rtt: {rtt:.2} ms")?;
        }
        outln!(
            "  transfer: {} B received, {} B sent",
            p["bytes_in"],
            p["bytes_out"]
        )?;
        match p["last_handshake_unix"].as_u64() {
            Some(t) => {
                outln!("  last handshake: {} s ago", now.saturating_sub(t))?;
            }
            None => outln!("  last handshake: never")?,
        }
    }
    Ok(())
}

/// The names responder's lines (`TunnelStatus::dns`): where it listens,
/// how the system's resolver was told, the names, the query counters.
fn print_dns(d: &serde_json::Value) -> anyhow::Result<()> {
    let s = text;
    if d.is_null() {
        outln!("  names (NAME.antq): off")?;
        return Ok(());
    }
    let listen = d["listen"]
        .as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    outln!(
        "  names (NAME.antq): listening on {}; system resolver: {}",
        if listen.is_empty() {
            "nothing"
        } else {
            listen.as_str()
        },
        s(&d["registration"])
    )?;
    let names: Vec<String> = d["names"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, addrs)| {
            let addrs = addrs
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            format!("{name} ({addrs})")
        })
        .collect();
    // A network of many members: the first few, and how many.
    const SHOWN: usize = 8;
    let more = names.len().saturating_sub(SHOWN);
    outln!(
        "    {} names: {}{}",
        names.len(),
        names
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        if more > 0 {
            format!(", and {more} more (status --json lists all)")
        } else {
            String::new()
        }
    )?;
    outln!("    queries: {}", nonzero(&d["queries"]))?;
    Ok(())
}
