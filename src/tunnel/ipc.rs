//! The local admin channel (ipc) of a running tunnel: `antq-tun status` and
//! `antq-tun down` talk to the instance through it.
//!
//! The transport is [`antq_platform::ipc`]: one endpoint per interface
//! name (a Unix socket `/run/antq/NAME.NETNS.sock` in a directory only root
//! can enter; a named pipe `\\.\pipe\antq-NAME` on Windows). This module is
//! the protocol: a client sends one line (`status`, `down`, `reload PATH`,
//! or `ping TIMEOUT_MS TARGET`) and reads the answer until the server
//! closes the connection.

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

pub use antq_platform::ipc::{endpoint, is_running, IpcError, IpcListener, IpcStream, LOCATION};

/// A request on the admin channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Print the status as JSON.
    Status,
    /// Stop the tunnel.
    Down,
    /// Re-read the config file at this path and apply what changed. The
    /// answer starts with `ok:` or `error:`.
    Reload(std::path::PathBuf),
    /// Ping a peer once (`antq-tun ping`); the answer is one
    /// [`PingAnswer`](super::ping::PingAnswer) as JSON.
    Ping {
        /// An overlay address, a key or a member's name.
        target: String,
        /// How long the ping may take, resolving the target included.
        timeout: std::time::Duration,
    },
}

/// The longest ping timeout a client may ask for.
pub const PING_TIMEOUT_MAX: std::time::Duration = std::time::Duration::from_secs(60);

fn parse_ping(rest: &str) -> Option<Request> {
    let (ms, target) = rest.split_once(' ')?;
    let timeout = std::time::Duration::from_millis(ms.parse().ok()?);
    (!target.is_empty() && !target.contains(' ') && timeout <= PING_TIMEOUT_MAX).then(|| {
        Request::Ping {
            target: target.to_owned(),
            timeout,
        }
    })
}

/// Creates the ipc endpoint of `name`, refusing if a live instance
/// answers on it; a stale socket file is replaced. Dropping the listener
/// removes the endpoint.
pub async fn bind(name: &str) -> Result<IpcListener, IpcError> {
    IpcListener::bind(name).await
}

/// Accepts one request; returns it with the stream to answer on.
/// Connections that send no valid request within 2 s are dropped.
pub async fn accept(listener: &mut IpcListener) -> std::io::Result<(Request, IpcStream)> {
    loop {
        let stream = listener.accept().await?;
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
            (Ok(Ok(_)), text) => {
                if let Some(path) = text.strip_prefix("reload ").filter(|p| !p.is_empty()) {
                    Request::Reload(path.into())
                } else if let Some(ping) = text.strip_prefix("ping ").and_then(parse_ping) {
                    ping
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        return Ok((request, reader.into_inner()));
    }
}

/// Writes an answer and closes the stream.
pub async fn answer(mut stream: IpcStream, text: &str) {
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Client side: sends `request` to the instance running `name` and returns
/// its answer.
pub async fn request(name: &str, request: Request) -> Result<String, IpcError> {
    let mut stream = antq_platform::ipc::connect(name).await?;
    let io = |source| IpcError::Io {
        endpoint: endpoint(name),
        source,
    };
    let line = match request {
        Request::Status => "status\n".to_owned(),
        Request::Down => "down\n".to_owned(),
        Request::Reload(path) => format!("reload {}\n", path.display()),
        Request::Ping { target, timeout } => format!("ping {} {target}\n", timeout.as_millis()),
    };
    stream.write_all(line.as_bytes()).await.map_err(io)?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.map_err(io)?;
    Ok(out)
}

/// Names of the interfaces (of this network namespace) whose ipc
/// endpoints exist, sorted. Fails with `PermissionDenied` when this user may
/// not look (the endpoints are root's): that is not "none running".
pub fn running_interfaces() -> std::io::Result<Vec<String>> {
    antq_platform::ipc::check_listable()?;
    Ok(antq_platform::ipc::running())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(target: &str, ms: u64) -> Request {
        Request::Ping {
            target: target.into(),
            timeout: std::time::Duration::from_millis(ms),
        }
    }

    #[test]
    fn ping_lines() {
        assert_eq!(parse_ping("1000 10.90.0.2"), Some(ping("10.90.0.2", 1000)));
        assert_eq!(parse_ping("1000"), None);
        assert_eq!(parse_ping("1000 "), None);
        assert_eq!(parse_ping("x 10.90.0.2"), None);
        assert_eq!(parse_ping("1000 a b"), None);
        assert_eq!(parse_ping("60001 a"), None);
    }

    /// The protocol over a real endpoint: a client that sends no request
    /// is dropped and the next one served; a request and its answer, read
    /// to the end once the server closes; no endpoint after the listener
    /// is gone. Needs no privilege on Windows (a named pipe: it runs under
    /// Wine in CI, `scripts/xcheck.sh`); on Unix the socket lives in root's
    /// directory.
    #[test]
    #[cfg_attr(unix, ignore = "needs root")]
    fn request_answer_and_gone() {
        assert!(antq_platform::is_root() || cfg!(windows), "needs root");
        let name = format!("test-ipc-{}", std::process::id());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut listener = bind(&name).await.unwrap();
            let server = async {
                let (req, stream) = accept(&mut listener).await.unwrap();
                assert_eq!(req, Request::Status);
                answer(stream, "{\"peers\": []}\n").await;
                let (req, stream) = accept(&mut listener).await.unwrap();
                assert_eq!(req, Request::Down);
                answer(stream, "ok\n").await;
                let (req, stream) = accept(&mut listener).await.unwrap();
                assert_eq!(req, ping("b", 1500));
                answer(stream, "{}\n").await;
            };
            let clients = async {
                let mut junk = antq_platform::ipc::connect(&name).await.unwrap();
                junk.write_all(b"what?\n").await.unwrap();
                let status = request(&name, Request::Status).await.unwrap();
                let down = request(&name, Request::Down).await.unwrap();
                request(&name, ping("b", 1500)).await.unwrap();
                (status, down)
            };
            let ((), (status, down)) = tokio::join!(server, clients);
            assert_eq!(status, "{\"peers\": []}\n");
            assert_eq!(down, "ok\n");
            drop(listener);
            assert!(matches!(
                request(&name, Request::Status).await,
                Err(IpcError::NotRunning { .. })
            ));
        });
    }
}
