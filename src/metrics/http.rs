//! A minimal HTTP/1.1 server for `GET /metrics`, on loopback only.
//!
//! One request per connection (`Connection: close`). The request head must
//! arrive within [`REQUEST_TIMEOUT`] and fit [`MAX_REQUEST`] bytes; a body is
//! never read. `GET /metrics` (any query string) is answered with the text
//! exposition; `HEAD /metrics` with its headers; any other well-formed
//! request gets 404, a malformed or oversized one 400, and a slow one is
//! dropped. At most [`MAX_CONNECTIONS`] requests are served at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::CONTENT_TYPE;

/// Largest request head accepted, in bytes.
pub const MAX_REQUEST: usize = 8192;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served at once; further connections wait in the backlog.
pub const MAX_CONNECTIONS: usize = 16;

/// Renders the exposition text for one scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A bound metrics listener.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Binds `addr`, which must be a loopback address (metrics are never
    /// served to the network).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("metrics address {addr} is not a loopback address"),
            ));
        }
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the returned task is aborted.
    pub fn spawn(self, render: Render) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(render))
    }

    async fn run(self, render: Render) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let render = render.clone();
            tokio::spawn(async move {
                handle(stream, &render).await;
                drop(permit);
            });
        }
    }
}

/// Binds `addr` (loopback only) and serves `render`'s output on
/// `GET /metrics` until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    render: Render,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let server = MetricsServer::bind(addr).await?;
    let local = server.local_addr()?;
    Ok((local, server.spawn(render)))
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    BadRequest,
}

/// Parses a request head (request line and headers, without the final
/// empty line).
fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { head_only: false },
        ("HEAD", "/metrics") => Route::Metrics { head_only: true },
        _ => Route::NotFound,
    }
}

/// Reads the request head: `Ok(Some(head))`, `Ok(None)` if it is too large
/// or the client closed early.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let start = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(start + end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

async fn handle(mut stream: TcpStream, render: &Render) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => route(&head),
        Ok(Ok(None)) => Route::BadRequest,
        Ok(Err(_)) | Err(_) => return,
    };
    let (status, body, head_only) = match head {
        Route::Metrics { head_only } => ("200 OK", render(), head_only),
        Route::NotFound => (
            "404 Not Found",
            "not found; try /metrics\n".to_owned(),
            false,
        ),
        Route::BadRequest => ("400 Bad Request", "bad request\n".to_owned(), false),
    };
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        answer.extend_from_slice(body.as_bytes());
    }
    let write = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(r("GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::NotFound);
        assert_eq!(r("GET /metrics/x HTTP/1.1"), Route::NotFound);
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics HTTP/1.1 x",
            "GET metrics HTTP/1.1",
            "GET /metrics SPDY/3",
        ] {
            assert_eq!(r(bad), Route::BadRequest, "{bad:?}");
        }
        assert_eq!(route(b"GET /\xff HTTP/1.1"), Route::BadRequest);
    }

    async fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        assert!(MetricsServer::bind("0.0.0.0:0".parse().unwrap())
            .await
            .is_err());
        let render: Render = Arc::new(|| "# TYPE x counter\nx 1\n".to_owned());
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), render).await.unwrap();
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("version=0.0.4"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n# TYPE x counter\nx 1\n"), "{ok}");
        let head = ask(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.contains("Content-Length: 21\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let missing = ask(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let bad = ask(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_REQUEST * 2, b'a');
        let too_big = ask(addr, &huge).await;
        assert!(too_big.is_empty() || too_big.starts_with("HTTP/1.1 400 "));
        // An early close does not hurt the server.
        drop(TcpStream::connect(addr).await.unwrap());
        let again = ask(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
        task.abort();
    }
}
