//! Linux side of [`crate::host_net`]: sysctls under `/proc/sys/net`, the
//! policy rules and table of [`rules`], the nftables table of [`nft`], and
//! the state file that lets a later run undo them.

use std::path::{Path, PathBuf};

use crate::host_net::{HostChange, HostNetConfig, RULE_PRIORITY_MAIN, RULE_PRIORITY_TUNNEL};
use crate::PlatformError;

mod nft;
mod rules;
mod state;

use state::{parse_state, render_state, safe_sysctl};

/// The host changes of one interface; see [`crate::HostNet`].
#[derive(Debug)]
pub(crate) struct HostNet {
    path: PathBuf,
    changes: Vec<HostChange>,
}

pub(crate) fn host_net_state_path(name: &str) -> PathBuf {
    Path::new(crate::ipc::LOCATION).join(format!("{name}.{}.hostnet", crate::ipc::netns_id()))
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> PlatformError {
    move |source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => PlatformError::PermissionDenied { op },
        _ => PlatformError::Io { op, source },
    }
}

fn sysctl_file(path: &str) -> PathBuf {
    Path::new("/proc/sys").join(path)
}

fn read_sysctl(path: &str) -> Result<String, PlatformError> {
    std::fs::read_to_string(sysctl_file(path))
        .map(|s| s.trim().to_owned())
        .map_err(io("read sysctl"))
}

fn write_sysctl(path: &str, value: &str) -> Result<(), PlatformError> {
    std::fs::write(sysctl_file(path), format!("{value}\n")).map_err(io("write sysctl"))
}

/// The interfaces listed under `/proc/sys/net/<family>/conf`, without
/// `all` and `default`.
fn conf_interfaces(family: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/sys/net/{family}/conf"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "all" && n != "default")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Records changes before making them: the state file always holds at
/// least what is on the host.
struct Recorder {
    path: PathBuf,
    changes: Vec<HostChange>,
}

impl Recorder {
    fn note(&mut self, change: HostChange) -> Result<(), PlatformError> {
        self.changes.push(change);
        write_state(&self.path, &self.changes)
    }

    /// Sets sysctl `path` to `value`, noting the old value first; and,
    /// first of all, the old values of `also` (sysctls that writing `path`
    /// changes too: per-interface copies of a global switch), so that
    /// undoing in reverse order restores each of them.
    fn sysctl(&mut self, path: &str, value: &str, also: &[String]) -> Result<bool, PlatformError> {
        let old = read_sysctl(path)?;
        if old == value {
            return Ok(false);
        }
        for p in also {
            if let Ok(v) = read_sysctl(p) {
                self.note(HostChange::Sysctl {
                    path: p.clone(),
                    old: v,
                })?;
            }
        }
        self.note(HostChange::Sysctl {
            path: path.to_owned(),
            old,
        })?;
        write_sysctl(path, value)?;
        Ok(true)
    }
}

fn write_state(path: &Path, changes: &[HostChange]) -> Result<(), PlatformError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create state directory"))?;
    }
    let tmp = path.with_extension("hostnet.new");
    std::fs::write(&tmp, render_state(changes)).map_err(io("write host state"))?;
    std::fs::rename(&tmp, path).map_err(io("write host state"))
}

/// Undoes `changes` in reverse order; every step is tried.
async fn undo(changes: &[HostChange]) -> Result<(), PlatformError> {
    let mut first = None;
    for change in changes.iter().rev() {
        let result = match change {
            HostChange::Sysctl { path, old } if safe_sysctl(path) => {
                match write_sysctl(path, old) {
                    // An interface that is gone took its setting along.
                    Err(PlatformError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            }
            HostChange::Sysctl { .. } => Ok(()),
            HostChange::NftTable { name } => nft::remove(name),
            HostChange::Rule { family, priority } => rules::delete(*family, Some(*priority), None)
                .await
                .map(drop),
        };
        if let Err(e) = result {
            tracing::warn!(%change, error = %e, "not restored");
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Undoes what a previous run left (its state file at `path`).
async fn restore_stale(path: &Path) -> Result<(), PlatformError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let changes = parse_state(&text);
        tracing::info!(state = %path.display(), changes = changes.len(), "restoring what a previous run changed on the host");
        undo(&changes).await?;
        std::fs::remove_file(path).map_err(io("remove host state"))?;
    }
    Ok(())
}

pub(crate) async fn apply_host_net(
    name: &str,
    index: u32,
    cfg: &HostNetConfig,
) -> Result<HostNet, PlatformError> {
    let path = host_net_state_path(name);
    restore_stale(&path).await?;
    let mut rec = Recorder {
        path: path.clone(),
        changes: Vec::new(),
    };
    match apply(&mut rec, name, index, cfg).await {
        Ok(()) => {
            if rec.changes.is_empty() {
                let _ = std::fs::remove_file(&path);
            }
            Ok(HostNet {
                path,
                changes: rec.changes,
            })
        }
        Err(e) => {
            // Half done is undone: the host stays as it was.
            let _ = undo(&rec.changes).await;
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

async fn apply(
    rec: &mut Recorder,
    name: &str,
    index: u32,
    cfg: &HostNetConfig,
) -> Result<(), PlatformError> {
    let mut turned_on = nft::TurnedOn::default();
    if let Some(fw) = &cfg.forward {
        if fw.v4 {
            let per_if: Vec<String> = ["default".to_owned()]
                .into_iter()
                .chain(conf_interfaces("ipv4"))
                .map(|i| format!("net/ipv4/conf/{i}/forwarding"))
                .collect();
            turned_on.v4 = rec.sysctl("net/ipv4/ip_forward", "1", &per_if)?;
        }
        if fw.v6 && read_sysctl("net/ipv6/conf/all/forwarding")? != "1" {
            // A forwarding interface ignores router advertisements unless
            // accept_ra is 2: keep the host's IPv6 default routes.
            for i in conf_interfaces("ipv6") {
                let ra = format!("net/ipv6/conf/{i}/accept_ra");
                if read_sysctl(&ra).ok().as_deref() == Some("1") {
                    rec.sysctl(&ra, "2", &[])?;
                }
            }
            let per_if: Vec<String> = ["default".to_owned()]
                .into_iter()
                .chain(conf_interfaces("ipv6"))
                .map(|i| format!("net/ipv6/conf/{i}/forwarding"))
                .collect();
            turned_on.v6 = rec.sysctl("net/ipv6/conf/all/forwarding", "1", &per_if)?;
        }
    }
    if let Some(route) = &cfg.default_route {
        if route.v4 {
            rec.sysctl("net/ipv4/conf/all/src_valid_mark", "1", &[])?;
        }
    }
    if !cfg.is_empty() {
        let text = nft::ruleset(
            name,
            cfg.forward.as_ref(),
            turned_on,
            cfg.default_route.as_ref(),
        );
        rec.note(HostChange::NftTable {
            name: nft::table_name(name),
        })?;
        nft::install(name, &text)?;
    }
    if let Some(route) = &cfg.default_route {
        let families = [(4u8, route.v4), (6u8, route.v6)];
        for (family, _) in families.iter().filter(|(_, on)| *on) {
            rules::add_default_route(index, *family, route.mark).await?;
        }
        for (family, _) in families.iter().filter(|(_, on)| *on) {
            // A rule of ours at these priorities that no state file named
            // (the file was lost) goes first.
            rules::delete(*family, None, None).await?;
            for priority in [RULE_PRIORITY_MAIN, RULE_PRIORITY_TUNNEL] {
                rec.note(HostChange::Rule {
                    family: *family,
                    priority,
                })?;
                rules::add(*family, priority, route.mark).await?;
            }
        }
    }
    Ok(())
}

impl HostNet {
    pub(crate) fn changes(&self) -> Vec<HostChange> {
        self.changes.clone()
    }

    pub(crate) async fn restore(self) -> Result<(), PlatformError> {
        let result = undo(&self.changes).await;
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound && result.is_ok() => {
                Err(io("remove host state")(e))
            }
            _ => result,
        }
    }
}

pub(crate) fn set_socket_mark(
    socket: socket2::SockRef<'_>,
    mark: u32,
) -> Result<(), PlatformError> {
    socket.set_mark(mark).map_err(io("set socket mark"))
}
