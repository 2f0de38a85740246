//! Waiting for the request to terminate a foreground process.

use std::io;

/// Resolves when the process is asked to terminate, with the name of what
/// asked.
///
/// Unix: `SIGTERM` or `SIGINT`. Windows: Ctrl-C, Ctrl-Break or the console
/// window being closed (Windows ends the process a few seconds after a
/// close event, so cleanup must be quick). Must be called inside a Tokio
/// runtime; the handlers are installed by the call, so call it before the
/// signal may arrive and keep the future.
#[cfg(unix)]
pub async fn terminated() -> io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Resolves when the process is asked to terminate, with the name of what
/// asked.
///
/// Unix: `SIGTERM` or `SIGINT`. Windows: Ctrl-C, Ctrl-Break or the console
/// window being closed (Windows ends the process a few seconds after a
/// close event, so cleanup must be quick). Must be called inside a Tokio
/// runtime; the handlers are installed by the call, so call it before the
/// signal may arrive and keep the future.
#[cfg(windows)]
pub async fn terminated() -> io::Result<&'static str> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
    let mut c = ctrl_c()?;
    let mut brk = ctrl_break()?;
    let mut close = ctrl_close()?;
    Ok(tokio::select! {
        _ = c.recv() => "Ctrl-C",
        _ = brk.recv() => "Ctrl-Break",
        _ = close.recv() => "console close",
    })
}

/// Resolves when the process is asked to terminate, with the name of what
/// asked. On this OS only Ctrl-C (`tokio::signal::ctrl_c`) is watched.
#[cfg(not(any(unix, windows)))]
pub async fn terminated() -> io::Result<&'static str> {
    tokio::signal::ctrl_c().await?;
    Ok("Ctrl-C")
}
