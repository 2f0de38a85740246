//! `ping`: asks a running tunnel to ping a peer above QUIC, once per
//! interval, and prints a line per answer with the path it took.

use std::time::{Duration, Instant};

use antq::tunnel::ipc::{self, Request, PING_TIMEOUT_MAX};
use antq::tunnel::ping::PingAnswer;
use anyhow::{bail, Context as _};

/// What `antq-tun ping` was asked.
#[derive(Debug, clap::Args)]
pub struct PingArgs {
    /// An overlay address (10.90.0.2), a peer's key, or a peer's name (db1
    /// or db1.antq: `[[peer]] name`, or a network member met already).
    #[arg(value_name = "TARGET")]
    target: String,
    /// Stop after this many pings (default: until interrupted, or with
    /// --until-direct until a direct reply).
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop at the first reply that came over a direct path, and exit 0
    /// then (non-zero if none did).
    #[arg(long)]
    until_direct: bool,
    /// Seconds between pings (at least 0.01).
    #[arg(short, long, value_name = "SECONDS", default_value = "1", value_parser = interval)]
    interval: Duration,
    /// Seconds to wait for each reply (connecting and looking the target
    /// up included).
    #[arg(short = 'W', long, value_name = "SECONDS", default_value = "2", value_parser = timeout)]
    timeout: Duration,
    /// The tunnel to ping from (needed when several run).
    #[arg(short = 'I', long, value_name = "NAME")]
    interface: Option<String>,
}

fn seconds(text: &str, min: f64, max: f64) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("expected seconds from {min} to {max}")),
    }
}

fn interval(text: &str) -> Result<Duration, String> {
    seconds(text, 0.01, 3600.0)
}

fn timeout(text: &str) -> Result<Duration, String> {
    seconds(text, 0.01, PING_TIMEOUT_MAX.as_secs_f64())
}

/// Tallies for the summary line.
#[derive(Default)]
struct Tally {
    sent: u64,
    replies: u64,
    direct: u64,
    rtts: Vec<f64>,
}

/// Runs the command. `Ok(false)`: it ran, but did not get what it was
/// asked for (no reply; no direct reply with `--until-direct`).
pub fn ping(args: &PingArgs) -> anyhow::Result<bool> {
    let name = tunnel_name(args.interface.as_deref())?;
    super::local_runtime()?.block_on(async {
        let stop = antq_platform::terminated();
        tokio::pin!(stop);
        let mut tally = Tally::default();
        let mut next = Instant::now();
        let mut reached_direct = false;
        outln!("PING {} from {name}", args.target)?;
        while args.count.is_none_or(|n| tally.sent < n) {
            tokio::select! {
                _ = &mut stop => break,
                () = tokio::time::sleep_until(next.into()) => {}
            }
            next += args.interval;
            tally.sent += 1;
            let seq = tally.sent;
            let request = Request::Ping {
                target: args.target.clone(),
                timeout: args.timeout,
            };
            let answer = tokio::select! {
                _ = &mut stop => break,
                a = ipc::request(&name, request) => a.with_context(|| format!("asking {name}"))?,
            };
            let answer: PingAnswer = serde_json::from_str(&answer)
                .with_context(|| format!("{name} answered {answer:?}"))?;
            outln!("{}", line(&answer, seq))?;
            if answer.unknown {
                bail!("{}", answer.error.unwrap_or_default());
            }
            if let Some(rtt) = answer.rtt_ms {
                tally.replies += 1;
                tally.rtts.push(rtt);
                if answer.path.as_deref() == Some("direct") {
                    tally.direct += 1;
                    if args.until_direct {
                        reached_direct = true;
                        break;
                    }
                }
            }
            // Never more than one ping in flight; a slow answer delays
            // the next one rather than bunching them.
            next = next.max(Instant::now());
        }
        outln!("{}", summary(&tally))?;
        Ok(if args.until_direct {
            reached_direct
        } else {
            tally.replies > 0
        })
    })
}

/// The running tunnel to ask: the one named, else the only one.
fn tunnel_name(only: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = only {
        return Ok(name.to_owned());
    }
    let names: Vec<String> = match ipc::running_interfaces() {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot look for running tunnels in {}: permission denied; run it as root \
             (sudo antq-tun ping ...)",
            ipc::LOCATION
        ),
        Err(e) => bail!("cannot look for running tunnels in {}: {e}", ipc::LOCATION),
    };
    let tunnels: Vec<String> = names
        .into_iter()
        .filter(|n| !n.starts_with("bootstrap-"))
        .collect();
    match tunnels.as_slice() {
        [] => bail!(
            "no antq-tun tunnel is running (no control socket in {})",
            ipc::LOCATION
        ),
        [one] => Ok(one.clone()),
        several => bail!(
            "several tunnels run ({}): pick one with --interface",
            several.join(", ")
        ),
    }
}

/// One answer's line.
fn line(a: &PingAnswer, seq: u64) -> String {
    let who = match (&a.name, &a.peer) {
        (Some(name), Some(key)) => format!("{name} ({})", short(key)),
        (None, Some(key)) => short(key).to_owned(),
        _ => "?".to_owned(),
    };
    match (&a.rtt_ms, &a.error) {
        (Some(rtt), _) => {
            let path = a.path.as_deref().unwrap_or("?");
            let via = a.via.as_deref().unwrap_or("?");
            let over = match (path, a.transport.as_deref()) {
                ("relay", Some("tcp")) => " over tcp",
                _ => "",
            };
            let hop = if path == "relay" {
                format!("via relay {via}{over}")
            } else {
                format!("via {path} {via}")
            };
            format!("reply from {who}: seq={seq} {hop} time={rtt:.2} ms")
        }
        (None, Some(error)) if a.peer.is_some() => {
            format!("no reply from {who}: seq={seq} {error}")
        }
        (None, error) => format!("seq={seq} {}", error.as_deref().unwrap_or("no answer")),
    }
}

/// The first 8 characters of a key.
fn short(key: &str) -> &str {
    key.get(..8).unwrap_or(key)
}

fn summary(t: &Tally) -> String {
    let lost = t.sent - t.replies;
    let mut s = format!(
        "--- {} sent, {} replies ({} direct), {} lost",
        t.sent, t.replies, t.direct, lost
    );
    if !t.rtts.is_empty() {
        let min = t.rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.rtts.iter().copied().fold(0.0, f64::max);
        let avg = t.rtts.iter().sum::<f64>() / t.rtts.len() as f64;
        s.push_str(&format!(", rtt min/avg/max {min:.2}/{avg:.2}/{max:.2} ms"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(path: &str, transport: &str) -> PingAnswer {
        PingAnswer {
            peer: Some("ABCDEFGHIJKLMNOP".into()),
            name: Some("b".into()),
            path: Some(path.into()),
            via: Some("198.18.0.1:7000".into()),
            transport: Some(transport.into()),
            rtt_ms: Some(1.234),
            ..PingAnswer::default()
        }
    }

    #[test]
    fn lines_name_the_path() {
        assert_eq!(
            line(&reply("relay", "udp"), 1),
            "reply from b (ABCDEFGH): seq=1 via relay 198.18.0.1:7000 time=1.23 ms"
        );
        assert_eq!(
            line(&reply("relay", "tcp"), 2),
            "reply from b (ABCDEFGH): seq=2 via relay 198.18.0.1:7000 over tcp time=1.23 ms"
        );
        assert_eq!(
            line(&reply("direct", "udp"), 3),
            "reply from b (ABCDEFGH): seq=3 via direct 198.18.0.1:7000 time=1.23 ms"
        );
        let lost = PingAnswer {
            peer: Some("ABCDEFGHIJ".into()),
            error: Some("no reply".into()),
            ..PingAnswer::default()
        };
        assert_eq!(line(&lost, 4), "no reply from ABCDEFGH: seq=4 no reply");
        let unknown = PingAnswer {
            error: Some("no peer owns 10.1.1.1".into()),
            unknown: true,
            ..PingAnswer::default()
        };
        assert_eq!(line(&unknown, 1), "seq=1 no peer owns 10.1.1.1");
    }

    #[test]
    fn summary_counts() {
        let t = Tally {
            sent: 3,
            replies: 2,
            direct: 1,
            rtts: vec![1.0, 3.0],
        };
        assert_eq!(
            summary(&t),
            "--- 3 sent, 2 replies (1 direct), 1 lost, rtt min/avg/max 1.00/2.00/3.00 ms"
        );
    }
}
