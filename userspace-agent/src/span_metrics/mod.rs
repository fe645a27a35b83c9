//! Metrics derived from spans, plus the agent's own health, exported as Prometheus
//! text and OTLP (see `docs/metrics.md` for names, labels and bounds).
//!
//! [`SpanMetrics`] is the registry: it records finished spans into RED histograms
//! ([`red`]) and service-graph edges ([`service_graph`]), all bounded ([`store`]), and
//! hands out [`Snapshot`]s that [`prometheus::render`] and [`otlp::build_request`]
//! turn into wire formats. [`SpanMetricsSink`] feeds it from the span pipeline;
//! [`scrape::routes`] is its part of the agent's HTTP server (`crate::serve`).

pub mod attrs;
pub mod export;
pub mod health;
pub mod histogram;
pub mod otlp;
pub mod prometheus;
pub mod red;
pub mod scrape;
pub mod service_graph;
pub mod snapshot;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

pub use attrs::{AttrValue, Attrs};
pub use histogram::Histogram;
pub use red::{DEFAULT_RULES, RedRule};
pub use service_graph::{Edge, ServiceGraphConfig};
pub use snapshot::{MetricData, MetricSnapshot, Point, Snapshot};
pub use store::{InstrumentDesc, InstrumentKind};

use crate::metrics::Counters;
use crate::sinks::{SinkError, SpanSink};
use crate::spans::{KeyValue, Resource, Span};
use histogram::SERVICE_GRAPH_BOUNDS;
use service_graph::ServiceGraph;
use store::Store;

/// Requests per edge (the servicegraph connector's and Tempo's name).
pub const SERVICE_GRAPH_REQUESTS: InstrumentDesc = InstrumentDesc {
    name: "traces_service_graph_request_total",
    description: "Requests between two nodes of the service graph.",
    unit: "",
    kind: InstrumentKind::Counter,
};
/// Failed requests per edge: either side's span has status ERROR.
pub const SERVICE_GRAPH_FAILED: InstrumentDesc = InstrumentDesc {
    name: "traces_service_graph_request_failed_total",
    description: "Failed requests between two nodes of the service graph.",
    unit: "",
    kind: InstrumentKind::Counter,
};
/// Client-side durations per edge.
pub const SERVICE_GRAPH_CLIENT_SECONDS: InstrumentDesc = InstrumentDesc {
    name: "traces_service_graph_request_client_seconds",
    description: "Request durations as seen by the client.",
    unit: "s",
    kind: InstrumentKind::Histogram(SERVICE_GRAPH_BOUNDS),
};
/// Server-side durations per edge.
pub const SERVICE_GRAPH_SERVER_SECONDS: InstrumentDesc = InstrumentDesc {
    name: "traces_service_graph_request_server_seconds",
    description: "Request durations as seen by the server.",
    unit: "s",
    kind: InstrumentKind::Histogram(SERVICE_GRAPH_BOUNDS),
};

/// Limits and tables of the registry.
#[derive(Clone, Copy, Debug)]
pub struct SpanMetricsConfig {
    /// Distinct series per metric before measurements go to its overflow series.
    pub max_series_per_metric: usize,
    pub service_graph: ServiceGraphConfig,
    /// Span -> RED histogram mapping, first match wins.
    pub red_rules: &'static [RedRule],
    /// `Counters` names exported as gauges rather than sums.
    pub gauge_counters: &'static [&'static str],
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        Self {
            // The OpenTelemetry SDKs' default cardinality limit.
            max_series_per_metric: 2000,
            service_graph: ServiceGraphConfig::default(),
            red_rules: DEFAULT_RULES,
            gauge_counters: health::GAUGE_COUNTERS,
        }
    }
}

/// The resource of the agent's own metrics, of service-graph metrics (an edge belongs
/// to two services) and of overflow series.
pub fn agent_resource(host_name: &str) -> Resource {
    let pid = std::process::id();
    Resource {
        service_name: "sonde".to_owned(),
        attributes: vec![
            KeyValue::new("service.name", "sonde"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", format!("{host_name}:{pid}")),
            KeyValue::new("host.name", host_name.to_owned()),
            KeyValue::new("process.pid", i64::from(pid)),
        ],
    }
}

/// The registry of span-derived metrics, shared (`Arc`) between the span pipeline,
/// the scrape endpoint and the OTLP exporter. Locks are held only to record a batch or
/// to copy a snapshot.
#[derive(Debug)]
pub struct SpanMetrics {
    state: Mutex<State>,
    config: SpanMetricsConfig,
    agent_resource: Arc<Resource>,
    counters: Option<Arc<Counters>>,
    start_unix_nano: u64,
}

#[derive(Debug)]
struct State {
    store: Store,
    graph: ServiceGraph,
    /// Reused buffer of edges completed by one call.
    edges: Vec<Edge>,
}

impl SpanMetrics {
    /// `start_unix_nano`: when counting starts (the agent's start).
    pub fn new(config: SpanMetricsConfig, agent_resource: Resource, start_unix_nano: u64) -> Self {
        let agent_resource = Arc::new(agent_resource);
        Self {
            state: Mutex::new(State {
                store: Store::new(config.max_series_per_metric, Arc::clone(&agent_resource)),
                graph: ServiceGraph::new(config.service_graph),
                edges: Vec::new(),
            }),
            config,
            agent_resource,
            counters: None,
            start_unix_nano,
        }
    }

    /// Also export the agent's counters (`sonde.<name>`).
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Records finished spans; `now_unix_nano` is the driver's clock (pairing windows).
    pub fn record(&self, spans: &[Span], now_unix_nano: u64) {
        let mut state = self.lock();
        let State {
            store,
            graph,
            edges,
        } = &mut *state;
        for span in spans {
            if let Some((desc, attrs, seconds)) = red::red_series(span, self.config.red_rules) {
                store.observe(desc, &span.resource, attrs, seconds);
            }
            graph.on_span(span, now_unix_nano, edges);
        }
        self.record_edges(store, edges);
    }

    /// Expires service-graph spans whose pairing window ended.
    pub fn tick(&self, now_unix_nano: u64) {
        let mut state = self.lock();
        let State {
            store,
            graph,
            edges,
        } = &mut *state;
        graph.expire(now_unix_nano, edges);
        self.record_edges(store, edges);
    }

    /// Expires every waiting span now (at shutdown, so the last edges are counted).
    pub fn flush(&self) {
        let mut state = self.lock();
        let State {
            store,
            graph,
            edges,
        } = &mut *state;
        graph.flush(edges);
        self.record_edges(store, edges);
    }

    /// Every metric now; `now_unix_nano` is the points' timestamp.
    pub fn snapshot(&self, now_unix_nano: u64) -> Snapshot {
        let (mut metrics, resources, own, agent) = {
            let state = self.lock();
            let stats = state.graph.stats();
            let own = [
                (
                    "span_metrics_series_overflow",
                    state.store.overflowed(),
                    "span-metric measurements recorded into an overflow series (cardinality limit reached)",
                ),
                (
                    "service_graph_expired",
                    stats.expired,
                    "spans that found no service-graph counterpart within the pairing window",
                ),
                (
                    "service_graph_evicted",
                    stats.evicted,
                    "spans expired early because the service-graph pending store was full",
                ),
                (
                    "service_graph_pending",
                    state.graph.pending_len() as u64,
                    "spans waiting for their service-graph counterpart",
                ),
            ];
            let store = &state.store;
            (
                store.snapshot(),
                store.resources().to_vec(),
                own,
                store.agent_resource(),
            )
        };
        metrics.extend(health::health_metrics(
            &own,
            &["service_graph_pending"],
            agent,
        ));
        if let Some(counters) = &self.counters {
            metrics.extend(health::health_metrics(
                &counters.snapshot(),
                self.config.gauge_counters,
                agent,
            ));
        }
        metrics.sort_by(|a, b| a.name.cmp(&b.name));
        Snapshot {
            start_unix_nano: self.start_unix_nano,
            time_unix_nano: now_unix_nano,
            resources,
            metrics,
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render_prometheus(&self) -> String {
        prometheus::render(&self.snapshot(now_unix_nano()))
    }

    /// The OTLP request of everything, timestamped `now_unix_nano`.
    pub fn export_request(&self, now_unix_nano: u64) -> ExportMetricsServiceRequest {
        otlp::build_request(&self.snapshot(now_unix_nano))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Recording never leaves the state half-updated in a way worth refusing to read.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_edges(&self, store: &mut Store, edges: &mut Vec<Edge>) {
        let res = &self.agent_resource;
        for edge in edges.drain(..) {
            let attrs = Attrs::new()
                .with("client", edge.client)
                .with("server", edge.server);
            store.add(&SERVICE_GRAPH_REQUESTS, res, attrs.clone(), 1);
            // Recorded even when 0, so failure ratios have both series from the start.
            store.add(
                &SERVICE_GRAPH_FAILED,
                res,
                attrs.clone(),
                u64::from(edge.failed),
            );
            if let Some(s) = edge.client_seconds {
                store.observe(&SERVICE_GRAPH_CLIENT_SECONDS, res, attrs.clone(), s);
            }
            if let Some(s) = edge.server_seconds {
                store.observe(&SERVICE_GRAPH_SERVER_SECONDS, res, attrs, s);
            }
        }
    }
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Feeds every span to a [`SpanMetrics`] registry and forwards nothing: the driver fans
/// spans out to it next to the printing/exporting sink.
#[derive(Debug, Clone)]
pub struct SpanMetricsSink {
    metrics: Arc<SpanMetrics>,
}

impl SpanMetricsSink {
    pub fn new(metrics: Arc<SpanMetrics>) -> Self {
        Self { metrics }
    }
}

impl SpanSink for SpanMetricsSink {
    fn export(&mut self, spans: Vec<Span>, now_unix_nano: u64) -> Result<(), SinkError> {
        self.metrics.record(&spans, now_unix_nano);
        Ok(())
    }

    fn tick(&mut self, now_unix_nano: u64) -> Result<(), SinkError> {
        self.metrics.tick(now_unix_nano);
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.metrics.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
