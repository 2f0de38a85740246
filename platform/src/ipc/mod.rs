//! The local admin channel (ipc) of a running tunnel: how `antq-tun status`
//! and `antq-tun down` reach the `antq-tun up` that runs an interface.
//!
//! This module is only the transport, one endpoint per interface name; the
//! request/answer protocol is the caller's.
//!
//! - Unix: a Unix socket `LOCATION/NAME.NETNS.sock`, with NETNS the inode
//!   of the process's network namespace (Linux; 0 elsewhere), so instances
//!   in different namespaces never collide. The directory (`/run/antq`,
//!   macOS `/var/run/antq`) is mode 0700 and the socket 0600: only root
//!   gets in.
//! - Windows: a named pipe `\\.\pipe\antq-NAME` with the default security
//!   descriptor (full control for LocalSystem, Administrators and the
//!   creator, read-only for everyone else, so a process that is not
//!   elevated cannot send requests); remote clients are rejected.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[cfg(unix)]
#[path = "unix.rs"]
mod imp;
#[cfg(target_os = "linux")]
pub(crate) use imp::netns_id;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(not(any(unix, windows)))]
#[path = "unsupported.rs"]
mod imp;

// Type-check the fallback on every OS too.
#[cfg(test)]
#[path = "unsupported.rs"]
#[allow(dead_code)]
mod unsupported_check;

/// Where the endpoints live: the socket directory on Unix, the named-pipe
/// namespace `\\.\pipe\` on Windows.
pub const LOCATION: &str = imp::LOCATION;

/// Errors of the admin channel. (The messages say "control socket": that
/// is what an operator looks for.)
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// Another instance already serves this interface.
    #[error("another antq-tun already runs interface {name} (control socket {endpoint} answers)")]
    InUse {
        /// Interface name.
        name: String,
        /// Socket path or pipe name.
        endpoint: String,
    },
    /// No instance runs this interface.
    #[error("no antq-tun runs interface {name} (no control socket at {endpoint})")]
    NotRunning {
        /// Interface name.
        name: String,
        /// Socket path or pipe name.
        endpoint: String,
    },
    /// I/O on the endpoint failed.
    #[error("control socket {endpoint}: {source}")]
    Io {
        /// Socket path or pipe name.
        endpoint: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The endpoint (socket path or pipe name) of interface `name`, for
/// messages.
pub fn endpoint(name: &str) -> String {
    imp::endpoint(name)
}

/// Whether the endpoint of interface `name` exists, i.e. an instance runs
/// it (or, on Unix, died without removing its socket).
pub fn is_running(name: &str) -> bool {
    imp::is_running(name)
}

/// Fails with `PermissionDenied` when the endpoints exist but this user may
/// not list them (on Unix the socket directory is root's, mode 0700): an
/// empty [`running`] then means "cannot tell", not "none".
pub fn check_listable() -> io::Result<()> {
    imp::check_listable()
}

/// Names of the interfaces whose endpoints exist (in this network
/// namespace), sorted.
pub fn running() -> Vec<String> {
    let mut names = imp::running();
    names.sort();
    names
}

/// The server side: accepts connections on the endpoint of one interface.
/// Dropping it removes the endpoint.
pub struct IpcListener {
    inner: imp::Listener,
}

impl IpcListener {
    /// Creates the endpoint of interface `name`, refusing with
    /// [`IpcError::InUse`] if a live instance serves it; a stale Unix
    /// socket file is replaced. Must be called inside a Tokio runtime.
    pub async fn bind(name: &str) -> Result<IpcListener, IpcError> {
        imp::bind(name).await.map(|inner| IpcListener { inner })
    }

    /// Waits for the next client. Cancel-safe: a dropped call loses no
    /// connection that was not yet returned.
    pub async fn accept(&mut self) -> io::Result<IpcStream> {
        self.inner.accept().await.map(|inner| IpcStream { inner })
    }

    /// The endpoint's socket path or pipe name.
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }
}

impl std::fmt::Debug for IpcListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcListener")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

/// Client side: connects to the instance running interface `name`
/// ([`IpcError::NotRunning`] if there is none). Must be called inside a
/// Tokio runtime.
pub async fn connect(name: &str) -> Result<IpcStream, IpcError> {
    imp::connect(name).await.map(|inner| IpcStream { inner })
}

/// One connection of the admin channel, either side. Closing the write
/// side (`AsyncWriteExt::shutdown`) or dropping it ends the peer's reads.
pub struct IpcStream {
    inner: imp::Stream,
}

impl std::fmt::Debug for IpcStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcStream").finish_non_exhaustive()
    }
}

impl AsyncRead for IpcStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for IpcStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn fallback_reports_unsupported() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(matches!(
                unsupported_check::bind("x").await,
                Err(IpcError::Io { .. })
            ));
            assert!(matches!(
                unsupported_check::connect("x").await,
                Err(IpcError::NotRunning { .. })
            ));
        });
        assert!(unsupported_check::running().is_empty());
    }

    /// Round trip through a socket in a temporary directory (the real
    /// directory needs root).
    #[test]
    fn unix_socket_round_trip() {
        let dir = std::env::temp_dir().join(format!("antq-ipc-{}", std::process::id()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut listener = imp::bind_in(&dir, "t0").await.unwrap();
            assert!(imp::running_in(&dir).contains(&"t0".to_string()));
            let server = async {
                let mut s = IpcStream {
                    inner: listener.accept().await.unwrap(),
                };
                let mut line = [0u8; 5];
                s.read_exact(&mut line).await.unwrap();
                assert_eq!(&line, b"ping\n");
                s.write_all(b"pong").await.unwrap();
                s.shutdown().await.unwrap();
            };
            let client = async {
                let mut c = IpcStream {
                    inner: imp::connect_in(&dir, "t0").await.unwrap(),
                };
                c.write_all(b"ping\n").await.unwrap();
                let mut out = String::new();
                c.read_to_string(&mut out).await.unwrap();
                out
            };
            let ((), out) = tokio::join!(server, client);
            assert_eq!(out, "pong");
            // A live instance answers: a second bind is refused.
            assert!(matches!(
                imp::bind_in(&dir, "t0").await,
                Err(IpcError::InUse { .. })
            ));
            drop(listener);
            assert!(!imp::running_in(&dir).contains(&"t0".to_string()));
            assert!(matches!(
                imp::connect_in(&dir, "t0").await,
                Err(IpcError::NotRunning { .. })
            ));
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
