//! The Prometheus part of Sonde's HTTP server (`crate::serve`): `GET /metrics` and
//! `HEAD /metrics` answer with the text exposition of the registry; another method on
//! `/metrics` gets 405 (with `Allow: GET,HEAD`), another path the server's 404. The
//! query string is ignored (`/metrics?name[]=x` is the whole exposition).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use super::SpanMetrics;
use super::prometheus::CONTENT_TYPE;

/// Where Prometheus scrapes.
pub const PATH: &str = "/metrics";

/// The scrape route, to be merged into the server's router.
pub fn routes(registry: Arc<SpanMetrics>) -> Router {
    // `get` also answers HEAD: the same response, with its Content-Length, no body.
    Router::new().route(PATH, get(scrape)).with_state(registry)
}

async fn scrape(State(registry): State<Arc<SpanMetrics>>) -> Response {
    // Copying and formatting every series is real work: off the agent's event loop.
    match tokio::task::spawn_blocking(move || registry.render_prometheus()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            log::warn!("rendering the Prometheus exposition failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
