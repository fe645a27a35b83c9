//! The OTLP `ExportMetricsServiceRequest` of a [`Snapshot`]: one `ResourceMetrics`
//! per resource, one scope `sonde`, cumulative temporality, histograms as explicit-
//! bucket `Histogram` points. Pure: the transport that sends it lives elsewhere.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue as ProtoKeyValue, any_value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram as ProtoHistogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;

use super::attrs::{AttrValue, Attrs};
use super::snapshot::{MetricData, MetricSnapshot, Point, Snapshot};
use crate::spans::{Resource, Value};

/// The instrumentation scope of every metric Sonde emits.
pub const SCOPE_NAME: &str = "sonde";

/// Builds the request for everything in `snapshot`; resources without points are left out.
pub fn build_request(snapshot: &Snapshot) -> ExportMetricsServiceRequest {
    let mut per_resource: Vec<Vec<Metric>> = vec![Vec::new(); snapshot.resources.len()];
    for m in &snapshot.metrics {
        for (resource, metric) in split_by_resource(m, snapshot) {
            if let Some(list) = per_resource.get_mut(resource) {
                list.push(metric);
            }
        }
    }
    let resource_metrics = snapshot
        .resources
        .iter()
        .zip(per_resource)
        .filter(|(_, metrics)| !metrics.is_empty())
        .map(|(resource, metrics)| ResourceMetrics {
            resource: Some(proto_resource(resource)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// One `Metric` per resource that has points of `m`.
fn split_by_resource(m: &MetricSnapshot, snap: &Snapshot) -> Vec<(usize, Metric)> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let (start, time) = (snap.start_unix_nano, snap.time_unix_nano);
    let metric = |data| Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: Vec::new(),
        data: Some(data),
    };
    match &m.data {
        MetricData::Sum { monotonic, points } => group(points)
            .into_iter()
            .map(|(r, pts)| {
                let data_points = pts.iter().map(|p| number_point(p, start, time)).collect();
                let sum = Sum {
                    data_points,
                    aggregation_temporality: cumulative,
                    is_monotonic: *monotonic,
                };
                (r, metric(metric::Data::Sum(sum)))
            })
            .collect(),
        MetricData::Gauge(points) => group(points)
            .into_iter()
            .map(|(r, pts)| {
                let data_points = pts.iter().map(|p| number_point(p, start, time)).collect();
                (r, metric(metric::Data::Gauge(Gauge { data_points })))
            })
            .collect(),
        MetricData::Histogram(points) => group(points)
            .into_iter()
            .map(|(r, pts)| {
                let data_points = pts
                    .iter()
                    .map(|p| HistogramDataPoint {
                        attributes: proto_attrs(&p.attrs),
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count: p.value.count(),
                        sum: Some(p.value.sum()),
                        bucket_counts: p.value.bucket_counts().to_vec(),
                        explicit_bounds: p.value.bounds().to_vec(),
                        exemplars: Vec::new(),
                        flags: 0,
                        min: p.value.min(),
                        max: p.value.max(),
                    })
                    .collect();
                let h = ProtoHistogram {
                    data_points,
                    aggregation_temporality: cumulative,
                };
                (r, metric(metric::Data::Histogram(h)))
            })
            .collect(),
    }
}

/// Points grouped by resource, in order of first appearance.
fn group<T>(points: &[Point<T>]) -> Vec<(usize, Vec<&Point<T>>)> {
    let mut groups: Vec<(usize, Vec<&Point<T>>)> = Vec::new();
    for p in points {
        match groups.iter_mut().find(|(r, _)| *r == p.resource) {
            Some((_, list)) => list.push(p),
            None => groups.push((p.resource, vec![p])),
        }
    }
    groups
}

fn number_point(p: &Point<u64>, start: u64, time: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: proto_attrs(&p.attrs),
        start_time_unix_nano: start,
        time_unix_nano: time,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(p.value).unwrap_or(i64::MAX),
        )),
    }
}

fn proto_resource(resource: &Resource) -> ProtoResource {
    ProtoResource {
        attributes: resource
            .attributes
            .iter()
            .map(|kv| proto_kv(&kv.key, any_from_value(&kv.value)))
            .collect(),
        ..Default::default()
    }
}

fn proto_attrs(attrs: &Attrs) -> Vec<ProtoKeyValue> {
    attrs
        .iter()
        .map(|(k, v)| {
            let value = match v {
                AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
                AttrValue::Int(i) => any_value::Value::IntValue(*i),
                AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
            };
            proto_kv(k, value)
        })
        .collect()
}

fn any_from_value(v: &Value) -> any_value::Value {
    match v {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    }
}

fn proto_kv(key: &str, value: any_value::Value) -> ProtoKeyValue {
    ProtoKeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;

    use super::*;
    use crate::sinks::test_support::resource;
    use crate::span_metrics::histogram::Histogram;

    fn snapshot() -> Snapshot {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.record(0.05);
        h.record(2.0);
        Snapshot {
            start_unix_nano: 100,
            time_unix_nano: 200,
            resources: vec![resource("sonde"), resource("checkout"), resource("unused")],
            metrics: vec![
                MetricSnapshot {
                    name: "http.server.request.duration".into(),
                    description: "d".into(),
                    unit: "s".into(),
                    data: MetricData::Histogram(vec![Point {
                        resource: 1,
                        attrs: Attrs::new().with("http.response.status_code", 200),
                        value: h,
                    }]),
                },
                MetricSnapshot {
                    name: "sonde.events_read".into(),
                    description: "e".into(),
                    unit: String::new(),
                    data: MetricData::Sum {
                        monotonic: true,
                        points: vec![Point {
                            resource: 0,
                            attrs: Attrs::new(),
                            value: 5,
                        }],
                    },
                },
            ],
        }
    }

    fn service(rm: &ResourceMetrics) -> String {
        let res = rm.resource.as_ref().expect("resource");
        let kv = res
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .expect("service.name");
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn request_round_trips_and_groups_by_resource() {
        let req = build_request(&snapshot());
        let bytes = req.encode_to_vec();
        let decoded = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, req);

        let services: Vec<_> = decoded.resource_metrics.iter().map(service).collect();
        assert_eq!(
            services,
            ["sonde", "checkout"],
            "resources without points omitted"
        );
        for rm in &decoded.resource_metrics {
            let scope = rm.scope_metrics[0].scope.as_ref().expect("scope");
            assert_eq!(scope.name, "sonde");
        }

        let checkout = &decoded.resource_metrics[1].scope_metrics[0].metrics[0];
        assert_eq!(checkout.name, "http.server.request.duration");
        assert_eq!(checkout.unit, "s");
        let Some(metric::Data::Histogram(h)) = &checkout.data else {
            panic!("histogram expected");
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, [0.1, 1.0]);
        assert_eq!(p.bucket_counts, [1, 0, 1]);
        assert_eq!(p.count, 2);
        assert_eq!(p.sum, Some(2.05));
        assert_eq!((p.min, p.max), (Some(0.05), Some(2.0)));
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (100, 200));
        assert_eq!(p.attributes[0].key, "http.response.status_code");

        let own = &decoded.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Sum(sum)) = &own.data else {
            panic!("sum expected");
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(5))
        );
    }

    #[test]
    fn empty_snapshot_gives_an_empty_request() {
        let snap = Snapshot {
            start_unix_nano: 0,
            time_unix_nano: 0,
            resources: vec![Arc::new((*resource("sonde")).clone())],
            metrics: Vec::new(),
        };
        assert!(build_request(&snap).resource_metrics.is_empty());
    }
}
