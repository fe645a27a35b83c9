//! One accepted connection: hyper's HTTP/1 server over it, under the deadlines of
//! [`Limits`].

use std::pin::pin;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Limits;

/// hyper refuses a smaller read buffer (`http1::Builder::max_buf_size` asserts it).
const MIN_HEAD_BYTES: usize = 8 * 1024;

/// Serves the one request of `stream`. Ends when the response is written, at the
/// connection deadline, or (within the grace period) once `stopped` fires.
pub(super) async fn serve(
    stream: TcpStream,
    routes: Router,
    limits: Limits,
    mut stopped: watch::Receiver<()>,
) {
    // A response is written whole and then the connection closes: nothing to batch.
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(MIN_HEAD_BYTES))
        .keep_alive(false);
    let mut conn =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(routes)));
    let deadline = tokio::time::sleep(limits.connection_timeout);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = deadline => {
            log::debug!("HTTP endpoint: connection from {peer:?} cut at its deadline");
            return;
        }
        _ = stopped.changed() => {
            // Closes at once when no request is under way, else after its response.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.shutdown_grace, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        // Timeouts, resets, malformed requests: the client's business, not ours.
        log::debug!("HTTP endpoint: connection from {peer:?}: {e}");
    }
}
