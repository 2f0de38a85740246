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

/// Under Wine as on Windows: these need no privilege (a named pipe with
/// the default security descriptor is its creator's).
#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use crate::ipc::{self, IpcError, IpcListener, IpcStream};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A pipe name no other test (or test run) uses.
    fn unique(what: &str) -> String {
        format!("test-{what}-{}", std::process::id())
    }

    #[test]
    fn endpoints_are_named_pipes() {
        assert_eq!(ipc::LOCATION, r"\\.\pipe\");
        assert_eq!(ipc::endpoint("antq0"), r"\\.\pipe\antq-antq0");
        assert_eq!(ipc::check_listable().ok(), Some(()));
    }

    /// `running` lists `\\.\pipe\`. Wine 8 cannot: FindFirstFile on
    /// `\\.\pipe\*` fails there with ERROR_BAD_DEV_TYPE (os error 66), and
    /// `running` finds nothing (scripts/xcheck.sh skips this test).
    #[test]
    fn running_lists_a_served_pipe() {
        let name = unique("list");
        runtime().block_on(async {
            let listener = IpcListener::bind(&name).await.unwrap();
            assert!(ipc::running().contains(&name), "{:?}", ipc::running());
            assert!(ipc::is_running(&name));
            drop(listener);
            assert!(!ipc::is_running(&name), "{:?}", ipc::running());
        });
    }

    /// A second instance is refused while the first serves the name. Wine
    /// 8 does not enforce FILE_FLAG_FIRST_PIPE_INSTANCE (a second
    /// CreateNamedPipe with it succeeds), so scripts/xcheck.sh skips this
    /// test.
    #[test]
    fn second_bind_is_refused_while_served() {
        let name = unique("inuse");
        runtime().block_on(async {
            let listener = IpcListener::bind(&name).await.unwrap();
            match IpcListener::bind(&name).await {
                Err(IpcError::InUse { name: n, .. }) => assert_eq!(n, name),
                other => panic!("second bind while served: {other:?}"),
            }
            drop(listener);
            drop(IpcListener::bind(&name).await.unwrap());
        });
    }

    /// The client's side of the protocol antq-tun speaks: one line, then
    /// the answer until the server closes.
    async fn ask(name: &str, line: &str) -> Result<String, IpcError> {
        let mut c = ipc::connect(name).await?;
        c.write_all(line.as_bytes()).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        Ok(out)
    }

    /// The server's side: reads one line, answers, closes.
    async fn serve_one(listener: &mut IpcListener, answer: &str) -> String {
        let mut s: IpcStream = listener.accept().await.unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while s.read(&mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        s.write_all(answer.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn round_trip_second_client_and_closed_server() {
        let name = unique("rt");
        runtime().block_on(async {
            let mut listener = IpcListener::bind(&name).await.unwrap();
            assert_eq!(listener.endpoint(), ipc::endpoint(&name));

            // A request and its answer, then a second client on the same
            // listener (the instance that served the first was replaced).
            let answer = "x".repeat(64 * 1024);
            let (got, asked) =
                tokio::join!(ask(&name, "status\n"), serve_one(&mut listener, &answer));
            assert_eq!(asked, "status");
            assert_eq!(got.unwrap(), answer);
            let (got, asked) = tokio::join!(ask(&name, "down\n"), serve_one(&mut listener, "ok\n"));
            assert_eq!(asked, "down");
            assert_eq!(got.unwrap(), "ok\n");

            // Two clients connected at once, each with its own connection.
            let mut first = ipc::connect(&name).await.unwrap();
            let mut s1 = listener.accept().await.unwrap();
            let mut second = ipc::connect(&name).await.unwrap();
            let mut s2 = listener.accept().await.unwrap();
            second.write_all(b"2").await.unwrap();
            first.write_all(b"1").await.unwrap();
            let mut byte = [0u8; 1];
            s1.read_exact(&mut byte).await.unwrap();
            assert_eq!(&byte, b"1");
            s2.read_exact(&mut byte).await.unwrap();
            assert_eq!(&byte, b"2");
        });
        // A closed server: the pipe is gone, a client is told so.
        runtime().block_on(async {
            match ipc::connect(&name).await {
                Err(IpcError::NotRunning { name: n, endpoint }) => {
                    assert_eq!(n, name);
                    assert_eq!(endpoint, ipc::endpoint(&name));
                }
                other => panic!("connect to a closed server: {other:?}"),
            }
            // And the name can be served again.
            drop(IpcListener::bind(&name).await.unwrap());
        });
    }

    /// A server that goes away mid-answer ends the client's read, with
    /// what was written before it went.
    #[test]
    fn server_gone_mid_connection_ends_the_read() {
        let name = unique("gone");
        runtime().block_on(async {
            let mut listener = IpcListener::bind(&name).await.unwrap();
            let mut c = ipc::connect(&name).await.unwrap();
            let mut s = listener.accept().await.unwrap();
            s.write_all(b"partial").await.unwrap();
            drop(s);
            drop(listener);
            // (ERROR_BROKEN_PIPE, which tokio reads as the end.)
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, b"partial");
        });
    }
}
