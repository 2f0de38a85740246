//! Unix: one Unix socket per interface and network namespace.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::IpcError;

/// The socket directory. macOS has no `/run` (its system volume is
/// read-only); `/var/run` is the place there.
#[cfg(target_os = "macos")]
pub(super) const LOCATION: &str = "/var/run/antq";
/// The socket directory.
#[cfg(not(target_os = "macos"))]
pub(super) const LOCATION: &str = "/run/antq";

pub(super) type Stream = UnixStream;

/// This process's network namespace id (the inode of `/proc/self/ns/net`),
/// or 0 where there is no such notion.
pub(crate) fn netns_id() -> u64 {
    std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|p| {
            let text = p.to_string_lossy().into_owned();
            text.trim_start_matches("net:[")
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.{}.sock", netns_id()))
}

pub(super) fn endpoint(name: &str) -> String {
    path_in(Path::new(LOCATION), name).display().to_string()
}

pub(super) fn is_running(name: &str) -> bool {
    path_in(Path::new(LOCATION), name).exists()
}

pub(super) fn running() -> Vec<String> {
    running_in(Path::new(LOCATION))
}

/// Fails if the socket directory exists but may not be listed by us (it is
/// mode 0700, owned by root).
pub(super) fn check_listable() -> io::Result<()> {
    match std::fs::read_dir(LOCATION) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(e),
        _ => Ok(()),
    }
}

/// Names with a socket of this namespace in `dir`.
pub(super) fn running_in(dir: &Path) -> Vec<String> {
    let suffix = format!(".{}.sock", netns_id());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(&suffix)
                .map(str::to_owned)
        })
        .collect()
}

pub(super) struct Listener {
    listener: UnixListener,
    path: PathBuf,
    endpoint: String,
}

pub(super) async fn bind(name: &str) -> Result<Listener, IpcError> {
    bind_in(Path::new(LOCATION), name).await
}

/// Binds the socket of `name` in `dir` (created with mode 0700).
pub(super) async fn bind_in(dir: &Path, name: &str) -> Result<Listener, IpcError> {
    let path = path_in(dir, name);
    let endpoint = path.display().to_string();
    let io = |source| IpcError::Io {
        endpoint: endpoint.clone(),
        source,
    };
    if UnixStream::connect(&path).await.is_ok() {
        return Err(IpcError::InUse {
            name: name.to_owned(),
            endpoint,
        });
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(Listener {
        listener,
        path,
        endpoint,
    })
}

impl Listener {
    pub(super) async fn accept(&mut self) -> io::Result<Stream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(super) async fn connect(name: &str) -> Result<Stream, IpcError> {
    connect_in(Path::new(LOCATION), name).await
}

/// Connects to the socket of `name` in `dir`.
pub(super) async fn connect_in(dir: &Path, name: &str) -> Result<Stream, IpcError> {
    let path = path_in(dir, name);
    UnixStream::connect(&path)
        .await
        .map_err(|_| IpcError::NotRunning {
            name: name.to_owned(),
            endpoint: path.display().to_string(),
        })
}
