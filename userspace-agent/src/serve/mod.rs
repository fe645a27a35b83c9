//! Sonde's listening endpoints: one HTTP server, routes contributed by the features
//! that serve them.
//!
//! A feature hands over its routes as an [`axum::Router`] with its own state already
//! applied (`Router<()>`), e.g. `span_metrics::scrape::routes(registry)` for
//! `GET /metrics`. The agent merges the parts (`Router::merge`) and passes the result to
//! [`Server::serve`]; paths nobody claims get axum's 404, a claimed path asked with
//! another method gets 405 with `Allow`. At most one part may set a fallback (a
//! viewer serving its single-page app): `Router::merge` panics on two.
//!
//! The server is axum on hyper 1 (HTTP/1 only), as tasks on the agent's own tokio
//! runtime. A task never blocks: a route with real work to do (rendering every metric)
//! runs it with `spawn_blocking`. So that a slow or hostile client can neither pin
//! memory nor take the endpoint away for long, every connection is bounded by
//! [`Limits`]: a cap on connections served at once (more wait in the kernel's accept
//! queue), a header read timeout, a head and a body size limit, a request timeout and
//! a deadline for the whole connection. Each connection carries one request
//! (`Connection: close`), so an idle keep-alive connection never holds a slot.
//!
//! [`Serving::shutdown`] stops accepting, lets responses under way finish (at most
//! [`Limits::shutdown_grace`]) and closes the listener; dropping [`Serving`] asks for
//! the same without waiting.

mod connection;
mod error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::ServeError;

/// What one client may take of the server. The defaults suit a scrape endpoint and a
/// local viewer alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (at least 1); further ones wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
    /// Largest request head (request line and headers); a larger one gets 431. hyper
    /// needs at least 8 KiB: smaller values are raised to that.
    pub max_head_bytes: usize,
    /// Largest request body; a larger declared `Content-Length` gets 413 before any
    /// of it is read, a longer chunked body fails when a route reads it.
    pub max_body_bytes: usize,
    /// Time from accepting a connection to having its whole request head.
    pub header_read_timeout: Duration,
    /// Time a route has to answer (reading the body included); then 503.
    pub request_timeout: Duration,
    /// The whole life of a connection, writing the response included: a client that
    /// stops reading is cut off at this point.
    pub connection_timeout: Duration,
    /// How long [`Serving::shutdown`] waits for responses under way.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            max_head_bytes: 8 * 1024,
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// A bound listening socket, not yet serving (bind first to learn the port of `:0`,
/// or to fail before anything else starts).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    limits: Limits,
}

impl Server {
    pub async fn bind(addr: SocketAddr, limits: Limits) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        Ok(Self {
            listener,
            local_addr,
            limits,
        })
    }

    /// The address actually bound (the port chosen for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `routes` on the current tokio runtime until [`Serving::shutdown`] or drop.
    pub fn serve(self, routes: Router) -> Serving {
        let Self {
            listener,
            local_addr,
            limits,
        } = self;
        let routes = routes
            // Applied to the merged router so every part gets the same limits.
            .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
            // A route that cannot answer in time is the server's fault, hence 503.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                limits.request_timeout,
            ));
        let (stop, stopped) = watch::channel(());
        let task = tokio::spawn(accept_loop(listener, routes, limits, stopped));
        Serving {
            local_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A running server. Dropping it asks the server to stop without waiting.
#[derive(Debug)]
#[must_use = "dropping `Serving` stops the server"]
pub struct Serving {
    local_addr: SocketAddr,
    /// Dropped to tell the accept loop and every connection to stop.
    stop: Option<watch::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Serving {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes idle connections, waits at most
    /// [`Limits::shutdown_grace`] for responses under way, then drops the rest and
    /// the listener.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            log::warn!("HTTP endpoint {}: accept loop failed: {e}", self.local_addr);
        }
    }
}

/// Accepts while a connection slot is free; at the stop signal, tells connections to
/// finish and waits for them (bounded by the grace period).
async fn accept_loop(
    listener: TcpListener,
    routes: Router,
    limits: Limits,
    mut stopped: watch::Receiver<()>,
) {
    let max = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    loop {
        let slot = tokio::select! {
            // Only the sender's drop is ever signalled: `changed` then errs at once.
            _ = stopped.changed() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("HTTP endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = connection::serve(stream, routes.clone(), limits, stopped.clone());
        tokio::spawn(async move {
            conn.await;
            drop(slot);
        });
    }
    drop(listener);
    // Every slot back means every connection is over; each ends within the grace
    // period once told to stop, this wait is only the backstop.
    let all = slots.acquire_many(max);
    if tokio::time::timeout(limits.shutdown_grace, all)
        .await
        .is_err()
    {
        log::debug!("HTTP endpoint: connections still open after the grace period");
    }
}

#[cfg(test)]
mod tests;
