//! Fallback for OSes that are neither Unix nor Windows: there is no
//! admin channel (ipc). The listener and stream types are uninhabited.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::IpcError;

pub(super) const LOCATION: &str = "(no control channel on this OS)";

pub(super) fn endpoint(name: &str) -> String {
    format!("{LOCATION} {name}")
}

pub(super) fn is_running(_name: &str) -> bool {
    false
}

/// Listing needs no privilege here.
pub(super) fn check_listable() -> std::io::Result<()> {
    Ok(())
}

pub(super) fn running() -> Vec<String> {
    Vec::new()
}

pub(super) enum Listener {}

pub(super) async fn bind(name: &str) -> Result<Listener, IpcError> {
    Err(IpcError::Io {
        endpoint: endpoint(name),
        source: io::ErrorKind::Unsupported.into(),
    })
}

impl Listener {
    pub(super) async fn accept(&mut self) -> io::Result<Stream> {
        match *self {}
    }

    pub(super) fn endpoint(&self) -> &str {
        match *self {}
    }
}

pub(super) async fn connect(name: &str) -> Result<Stream, IpcError> {
    Err(IpcError::NotRunning {
        name: name.to_owned(),
        endpoint: endpoint(name),
    })
}

pub(super) enum Stream {}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match *self {}
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match *self {}
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}
