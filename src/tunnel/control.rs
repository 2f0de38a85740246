//! The local control socket of a running tunnel: `antq-tun status` and
//! `antq-tun down` talk to the instance through it.
//!
//! One Unix socket per interface name and network namespace,
//! `/run/antq/NAME.NETNS.sock` (NETNS is the namespace's inode number, so
//! instances in different namespaces never collide), in a directory only
//! root can enter. A client sends one line (`status` or `down`) and
//! reads the answer until the server closes the connection.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Directory of the control sockets.
pub const SOCKET_DIR: &str = "/run/antq";

/// This process's network namespace id (the inode of `/proc/self/ns/net`),
/// or 0 where there is no such notion.
fn netns_id() -> u64 {
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

/// The control socket of interface `name` in this network namespace.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.{}.sock", netns_id()))
}

/// A request on the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Print the status as JSON.
    Status,
    /// Stop the tunnel.
    Down,
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    /// Another instance already serves this interface.
    #[error("another antq-tun already runs interface {name} (control socket {path} answers)")]
    InUse {
        /// Interface name.
        name: String,
        /// Socket path.
        path: PathBuf,
    },
    /// No instance runs this interface.
    #[error("no antq-tun runs interface {name} (no control socket at {path})")]
    NotRunning {
        /// Interface name.
        name: String,
        /// Socket path.
        path: PathBuf,
    },
    /// I/O on the socket failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Binds the control socket of `name`, refusing if a live instance answers
/// on it; a stale socket file is replaced.
pub async fn bind(name: &str) -> Result<UnixListener, ControlSocketError> {
    let path = socket_path(name);
    let io = |source| ControlSocketError::Io {
        path: path.clone(),
        source,
    };
    if UnixStream::connect(&path).await.is_ok() {
        return Err(ControlSocketError::InUse {
            name: name.to_owned(),
            path,
        });
    }
    std::fs::create_dir_all(SOCKET_DIR).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(SOCKET_DIR, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(listener)
}

/// Accepts one request; returns it with the stream to answer on.
pub async fn accept(listener: &UnixListener) -> std::io::Result<(Request, UnixStream)> {
    loop {
        let (stream, _) = listener.accept().await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            reader.read_line(&mut line),
        )
        .await;
        let request = match (read, line.trim()) {
            (Ok(Ok(_)), "status") => Request::Status,
            (Ok(Ok(_)), "down") => Request::Down,
            _ => continue,
        };
        return Ok((request, reader.into_inner()));
    }
}

/// Writes an answer and closes the stream.
pub async fn answer(mut stream: UnixStream, text: &str) {
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Client side: sends `request` to the instance running `name` and returns
/// its answer.
pub async fn request(name: &str, request: Request) -> Result<String, ControlSocketError> {
    let path = socket_path(name);
    let mut stream =
        UnixStream::connect(&path)
            .await
            .map_err(|_| ControlSocketError::NotRunning {
                name: name.to_owned(),
                path: path.clone(),
            })?;
    let io = |source| ControlSocketError::Io {
        path: path.clone(),
        source,
    };
    let line = match request {
        Request::Status => "status\n",
        Request::Down => "down\n",
    };
    stream.write_all(line.as_bytes()).await.map_err(io)?;
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut out)
        .await
        .map_err(io)?;
    Ok(out)
}

/// Names of the interfaces of this network namespace whose control sockets
/// exist.
pub fn running_interfaces() -> Vec<String> {
    let suffix = format!(".{}.sock", netns_id());
    let mut names: Vec<String> = std::fs::read_dir(SOCKET_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(&suffix)
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}
