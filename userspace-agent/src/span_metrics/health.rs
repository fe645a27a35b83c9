//! The agent's own health as metrics: every [`Counters`](crate::metrics::Counters)
//! entry becomes `sonde.<name>`, a monotonic sum, or a gauge when listed in
//! [`GAUGE_COUNTERS`]; the span-metrics pipeline adds its own counters and levels.

use super::attrs::Attrs;
use super::snapshot::{MetricData, MetricSnapshot, Point};

/// Names (as in `Counters::snapshot()`) that hold a level rather than a running count,
/// exported as gauges. None of today's counters is a level; add a name here when one is.
pub const GAUGE_COUNTERS: &[&str] = &["export_queue_depth"];

/// The health metrics from `(name, value, help)` triples, under resource `resource`.
/// Names listed in `gauges` become gauges, every other one a monotonic sum.
pub fn health_metrics(
    counters: &[(&str, u64, &str)],
    gauges: &[&str],
    resource: usize,
) -> Vec<MetricSnapshot> {
    counters
        .iter()
        .map(|&(name, value, help)| {
            let points = vec![Point {
                resource,
                attrs: Attrs::new(),
                value,
            }];
            MetricSnapshot {
                name: format!("sonde.{name}"),
                description: help.to_owned(),
                unit: String::new(),
                data: if gauges.contains(&name) {
                    MetricData::Gauge(points)
                } else {
                    MetricData::Sum {
                        monotonic: true,
                        points,
                    }
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counters;

    #[test]
    fn every_counter_is_a_sonde_sum_unless_listed_as_gauge() {
        let c = Counters::default();
        Counters::inc(&c.events_read);
        let snap = c.snapshot();
        let metrics = health_metrics(&snap, &["spans_built"], 0);
        assert_eq!(metrics.len(), snap.len());
        let events = metrics
            .iter()
            .find(|m| m.name == "sonde.events_read")
            .expect("events_read");
        assert!(matches!(
            &events.data,
            MetricData::Sum { monotonic: true, points } if points[0].value == 1
        ));
        let built = metrics
            .iter()
            .find(|m| m.name == "sonde.spans_built")
            .expect("spans_built");
        assert!(matches!(built.data, MetricData::Gauge(_)));
    }
}
