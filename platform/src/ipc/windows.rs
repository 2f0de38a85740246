//! Windows: one named pipe per interface, `\\.\pipe\antq-NAME`.
//!
//! The server keeps one listening instance; when a client connects, that
//! instance is handed out and a new one takes its place. Pipe names are
//! machine-wide (there are no network namespaces to tell apart).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};
use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_PIPE_BUSY};

use super::IpcError;

pub(super) const LOCATION: &str = r"\\.\pipe\";

/// Prefix of our pipe names inside [`LOCATION`].
const PREFIX: &str = "antq-";

/// How long a client waits while every pipe instance is busy.
const BUSY_WAIT: Duration = Duration::from_secs(2);

fn pipe_name(name: &str) -> String {
    format!("{LOCATION}{PREFIX}{name}")
}

pub(super) fn endpoint(name: &str) -> String {
    pipe_name(name)
}

pub(super) fn is_running(name: &str) -> bool {
    running().iter().any(|n| n == name)
}

/// Lists `\\.\pipe\` (a directory listing does not connect to the pipes).
/// Listing needs no privilege here.
pub(super) fn check_listable() -> std::io::Result<()> {
    Ok(())
}

pub(super) fn running() -> Vec<String> {
    std::fs::read_dir(LOCATION)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(PREFIX)
                .map(str::to_owned)
        })
        .collect()
}

pub(super) struct Listener {
    endpoint: String,
    /// The instance waiting for the next client.
    server: NamedPipeServer,
}

pub(super) async fn bind(name: &str) -> Result<Listener, IpcError> {
    let endpoint = pipe_name(name);
    // `first_pipe_instance` fails with ERROR_ACCESS_DENIED when a pipe of
    // this name exists, i.e. another instance (or another program) has it.
    match ServerOptions::new()
        .first_pipe_instance(true)
        .reject_remote_clients(true)
        .create(&endpoint)
    {
        Ok(server) => Ok(Listener { endpoint, server }),
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => Err(IpcError::InUse {
            name: name.to_owned(),
            endpoint,
        }),
        Err(source) => Err(IpcError::Io { endpoint, source }),
    }
}

impl Listener {
    pub(super) async fn accept(&mut self) -> io::Result<Stream> {
        // Cancel-safe: until `connect` returns, nothing has changed.
        self.server.connect().await?;
        let next = ServerOptions::new()
            .reject_remote_clients(true)
            .create(&self.endpoint)?;
        Ok(Stream::Server(std::mem::replace(&mut self.server, next)))
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

pub(super) async fn connect(name: &str) -> Result<Stream, IpcError> {
    let endpoint = pipe_name(name);
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        match ClientOptions::new().open(&endpoint) {
            Ok(client) => return Ok(Stream::Client(client)),
            Err(e)
                if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IpcError::NotRunning {
                    name: name.to_owned(),
                    endpoint,
                })
            }
            Err(source) => return Err(IpcError::Io { endpoint, source }),
        }
    }
}

/// A connected pipe instance, server or client end.
pub(super) enum Stream {
    Server(NamedPipeServer),
    Client(NamedPipeClient),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Client(c) => Pin::new(c).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Client(c) => Pin::new(c).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_flush(cx),
            Stream::Client(c) => Pin::new(c).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Server(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Client(c) => Pin::new(c).poll_shutdown(cx),
        }
    }
}
