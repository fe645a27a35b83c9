//! The Prometheus scrape endpoint: a minimal HTTP/1.1 server on tokio answering
//! `GET /metrics` (and `HEAD`) with the text exposition format, 404 elsewhere.
//!
//! One request per connection (`Connection: close`), at most [`MAX_CONNECTIONS`]
//! handled at once, request heads capped at [`MAX_HEAD`] bytes and read with a
//! timeout, so a slow or hostile client cannot pin memory or tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::SpanMetrics;
use super::prometheus::CONTENT_TYPE;

/// Connections served concurrently; further ones wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound scrape endpoint (bind first to learn the port when binding port 0).
#[derive(Debug)]
pub struct PrometheusServer {
    listener: TcpListener,
}

impl PrometheusServer {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Prometheus endpoint to {addr}"))?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves scrapes of `registry` until the task is dropped.
    pub async fn serve(self, registry: Arc<SpanMetrics>) -> anyhow::Result<()> {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .context("connection limit closed")?;
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("prometheus endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                if let Err(e) = handle(stream, registry).await {
                    log::debug!("prometheus endpoint: {e:#}");
                }
                drop(permit);
            });
        }
    }
}

/// Binds `addr` and serves `GET /metrics` from `registry` until the task is dropped.
pub async fn serve_prometheus(addr: SocketAddr, registry: Arc<SpanMetrics>) -> anyhow::Result<()> {
    PrometheusServer::bind(addr).await?.serve(registry).await
}

async fn handle(mut stream: TcpStream, registry: Arc<SpanMetrics>) -> anyhow::Result<()> {
    let head = tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream))
        .await
        .context("request head timed out")??;
    let route = route(&head);
    let body = match route {
        Route::Metrics { .. } => tokio::task::spawn_blocking(move || registry.render_prometheus())
            .await
            .context("rendering metrics")?,
        _ => String::new(),
    };
    let response = response(route, &body);
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await
    .context("response timed out")??;
    Ok(())
}

/// Reads until the end of the request head, EOF, or [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
    }
    Ok(buf)
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    MethodNotAllowed,
    NotFound,
    BadRequest,
}

fn route(head: &[u8]) -> Route {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (path, method) {
        ("/metrics", "GET") => Route::Metrics { head_only: false },
        ("/metrics", "HEAD") => Route::Metrics { head_only: true },
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

fn response(route: Route, body: &str) -> Vec<u8> {
    let (status, content_type, body, head_only) = match route {
        Route::Metrics { head_only } => ("200 OK", CONTENT_TYPE, body, head_only),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "text/plain", "use GET\n", false),
        Route::NotFound => ("404 Not Found", "text/plain", "try /metrics\n", false),
        Route::BadRequest => ("400 Bad Request", "text/plain", "bad request\n", false),
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"garbage"), Route::BadRequest);
        assert_eq!(route(b""), Route::BadRequest);
    }

    #[test]
    fn head_response_has_length_but_no_body() {
        let r =
            String::from_utf8(response(Route::Metrics { head_only: true }, "abc")).expect("utf8");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 3\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = String::from_utf8(response(Route::NotFound, "")).expect("utf8");
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
    }
}
