//! Waiting for the request to terminate a foreground process, or to reload
//! its configuration.

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

/// Requests to reload the configuration: `SIGHUP` on Unix (what
/// `systemctl reload` sends through the unit's `ExecReload=` or `kill -HUP`
/// does). Other systems have no such signal: there `recv` never resolves and
/// `antq-tun reload` (through the local admin channel) is the way.
#[derive(Debug)]
pub struct ReloadSignal {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl ReloadSignal {
    /// Installs the handler. Must be called inside a Tokio runtime, before
    /// the signal may arrive (without a handler `SIGHUP` ends the process).
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    /// Resolves at the next reload request.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.hup.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

/// Tells the service manager the service is ready (systemd `Type=notify`:
/// `READY=1`, with a status line). Does nothing when not started by systemd
/// (no `NOTIFY_SOCKET`) or on other systems.
pub fn notify_ready(status: &str) {
    #[cfg(target_os = "linux")]
    {
        let _ = sd_notify::notify(
            false,
            &[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(status),
            ],
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = status;
}

/// Tells the service manager the service is stopping (`STOPPING=1`).
pub fn notify_stopping() {
    #[cfg(target_os = "linux")]
    {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    }
}
