//! systemd-resolved, through `resolvectl` (see [`crate::register_dns`]).

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dns::resolvectl_commands;
use crate::{DnsRegistration, PlatformError};

/// resolved's Varlink socket: there while it runs.
const RESOLVED_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve";

/// How long one `resolvectl` may take (it waits on D-Bus).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why resolved cannot take our interface, if it cannot.
fn unavailable() -> Option<String> {
    if !Path::new(RESOLVED_SOCKET).exists() {
        return Some(format!(
            "systemd-resolved is not running (no {RESOLVED_SOCKET})"
        ));
    }
    // resolved serves the interfaces of the system's network namespace:
    // an interface index from another one would name a different device.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    match (ns("self"), ns("1")) {
        (Some(ours), Some(init)) if ours != init => Some(
            "this process runs in a network namespace of its own; systemd-resolved serves the system's"
                .to_owned(),
        ),
        _ => None,
    }
}

pub(crate) fn register_dns(
    iface: &str,
    servers: &[IpAddr],
    domain: &str,
) -> Result<DnsRegistration, PlatformError> {
    if let Some(why) = unavailable() {
        return Ok(DnsRegistration::NotAvailable { why });
    }
    for args in resolvectl_commands(iface, servers, domain) {
        match resolvectl(&args) {
            Ok(()) => {}
            Err(Missing) => {
                return Ok(DnsRegistration::NotAvailable {
                    why: "systemd-resolved runs but `resolvectl` is not installed".to_owned(),
                })
            }
            Err(Failed(e)) => {
                // Leave nothing half set.
                let _ = resolvectl(&["revert".to_owned(), iface.to_owned()]);
                return Err(e);
            }
        }
    }
    Ok(DnsRegistration::Registered {
        how: "systemd-resolved",
    })
}

pub(crate) fn unregister_dns(iface: &str, _domain: &str) -> Result<(), PlatformError> {
    if unavailable().is_some() {
        return Ok(());
    }
    match resolvectl(&["revert".to_owned(), iface.to_owned()]) {
        Ok(()) | Err(Missing) => Ok(()),
        Err(Failed(e)) => Err(e),
    }
}

/// Why a `resolvectl` run did not work.
enum RunError {
    /// The program is not there.
    Missing,
    /// It failed, timed out, or could not be run.
    Failed(PlatformError),
}
use RunError::{Failed, Missing};

fn resolvectl(args: &[String]) -> Result<(), RunError> {
    let op = "running resolvectl";
    let io = |source| Failed(PlatformError::Io { op, source });
    let mut child = match Command::new("resolvectl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Missing),
        Err(e) => return Err(io(e)),
    };
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(io)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failed(PlatformError::Command {
                    command: format!("resolvectl {}", args.join(" ")),
                    detail: format!("no answer in {} s", TIMEOUT.as_secs()),
                }));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        // Bounded: resolvectl's message is one line.
        let _ = pipe.by_ref().take(4096).read_to_string(&mut stderr);
    }
    Err(Failed(PlatformError::Command {
        command: format!("resolvectl {}", args.join(" ")),
        detail: format!("{status}: {}", stderr.trim()),
    }))
}
