//! A point-in-time copy of every metric, the one input of both exporters
//! (Prometheus text and OTLP), so they cannot disagree about what exists.

use std::sync::Arc;

use super::attrs::Attrs;
use super::histogram::Histogram;
use crate::spans::Resource;

/// Every metric at one instant. Values are cumulative since `start_unix_nano`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the agent started counting (OTLP `start_time_unix_nano`).
    pub start_unix_nano: u64,
    /// When the snapshot was taken (OTLP `time_unix_nano`).
    pub time_unix_nano: u64,
    /// Resources referenced by [`Point::resource`].
    pub resources: Vec<Arc<Resource>>,
    /// Sorted by name; each metric's points sorted by (resource, attributes).
    pub metrics: Vec<MetricSnapshot>,
}

/// One metric (OTel instrument) and its series.
#[derive(Clone, Debug)]
pub struct MetricSnapshot {
    /// OTel name, e.g. `http.server.request.duration`.
    pub name: String,
    pub description: String,
    /// UCUM unit, e.g. `s`; empty when dimensionless.
    pub unit: String,
    pub data: MetricData,
}

/// The series of a metric, by kind.
#[derive(Clone, Debug)]
pub enum MetricData {
    /// A cumulative sum (a Prometheus counter when monotonic).
    Sum {
        monotonic: bool,
        points: Vec<Point<u64>>,
    },
    /// A level, read at snapshot time.
    Gauge(Vec<Point<u64>>),
    /// A cumulative explicit-bucket histogram.
    Histogram(Vec<Point<Histogram>>),
}

impl MetricData {
    /// How many series the metric has.
    pub fn len(&self) -> usize {
        match self {
            MetricData::Sum { points, .. } | MetricData::Gauge(points) => points.len(),
            MetricData::Histogram(points) => points.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One series: where it comes from, what identifies it, its value.
#[derive(Clone, Debug)]
pub struct Point<T> {
    /// Index into [`Snapshot::resources`].
    pub resource: usize,
    pub attrs: Attrs,
    pub value: T,
}
