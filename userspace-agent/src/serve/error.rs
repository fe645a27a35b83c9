//! Errors of the HTTP server.

use std::net::SocketAddr;

/// Why a listening endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken, not local, or not permitted.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The bound socket would not say its own address.
    #[error("cannot read the listening socket's address")]
    LocalAddr(#[source] std::io::Error),
}
