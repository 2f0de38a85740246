//! `status`: asks each running tunnel over its control socket.

use antq::tunnel::control::{self, Request};
use anyhow::bail;

pub fn status(json: bool, only: Option<&str>) -> anyhow::Result<()> {
    let names = match only {
        Some(name) => vec![name.to_owned()],
        None => match control::running_interfaces() {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "cannot look for running tunnels in {}: permission denied; \
                 run it as root (sudo antq-tun status)",
                control::LOCATION
            ),
            Err(e) => bail!("cannot look for running tunnels in {}: {e}", control::LOCATION),
        },
    };
    if names.is_empty() {
        bail!(
            "no antq-tun is running (no control socket in {})",
            control::LOCATION
        );
    }
    super::local_runtime()?.block_on(async {
        let mut reports = Vec::new();
        for name in &names {
            let text = control::request(name, Request::Status).await?;
            reports.push(serde_json::from_str::<serde_json::Value>(&text)?);
        }
        if json {
            let out = if only.is_some() {
                reports.remove(0)
            } else {
                serde_json::Value::Array(reports)
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            for report in &reports {
                print_text(report);
            }
        }
        Ok(())
    })
}

fn print_text(r: &serde_json::Value) {
    let s = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    println!("interface: {}", s(&r["interface"]));
    println!("  public key: {}", s(&r["public_key"]));
    println!(
        "  addresses: {}",
        r["addresses"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    println!("  listening on: {}", s(&r["listen"]));
    for b in r["bootstraps"].as_array().into_iter().flatten() {
        println!(
            "  bootstrap {}: observed {}, transport {}",
            s(&b["address"]),
            s(&b["observed"]),
            s(&b["transport"])
        );
    }
    if !r["punch_prime_ttl"].is_null() {
        println!("  punch priming TTL: {}", s(&r["punch_prime_ttl"]));
    }
    for p in r["peers"].as_array().into_iter().flatten() {
        println!();
        println!("peer: {}", s(&p["public_key"]));
        println!(
            "  allowed ips: {}",
            p["allowed_ips"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
        println!("  path: {}", s(&p["path"]));
        println!("  remote: {}", s(&p["remote"]));
        if !p["transport"].is_null() {
            println!("  transport: {}", s(&p["transport"]));
        }
        if let Some(rtt) = p["rtt_ms"].as_f64() {
            println!("  rtt: {rtt:.2} ms");
        }
        println!(
            "  transfer: {} B received, {} B sent",
            p["bytes_in"], p["bytes_out"]
        );
        match p["last_handshake_unix"].as_u64() {
            Some(t) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(t);
                println!("  last handshake: {} s ago", now.saturating_sub(t));
            }
            None => println!("  last handshake: never"),
        }
    }
}
