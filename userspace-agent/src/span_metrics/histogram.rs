//! Explicit-bucket histograms, as OTLP and Prometheus define them: bucket `i` counts
//! values in `(bounds[i-1], bounds[i]]` (upper bound inclusive, like Prometheus `le`),
//! and one last bucket counts everything above the largest bound.

/// Bucket boundaries (seconds) the HTTP semantic conventions advise for
/// `http.{server,client}.request.duration`.
pub const HTTP_DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bucket boundaries (seconds) of the OpenTelemetry Collector's servicegraph connector
/// (its default `latency_histogram_buckets`), so dashboards built for it work unchanged.
pub const SERVICE_GRAPH_BOUNDS: &[f64] = &[
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

/// A cumulative histogram over fixed, ascending bucket bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `bounds.len() + 1` buckets; the last one is `(bounds[last], +Inf)`.
    counts: Box<[u64]>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Histogram {
    /// `bounds` must be strictly ascending and finite (the constants above are).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1].into_boxed_slice(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records one value; NaN and infinities are ignored (they would poison `sum`).
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds `other` into `self`; `false` (and nothing changed) if the bounds differ.
    pub fn merge(&mut self, other: &Histogram) -> bool {
        if self.bounds != other.bounds {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        true
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Per-bucket (not cumulative) counts, `bounds().len() + 1` of them.
    pub fn bucket_counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest recorded value; `None` while empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest recorded value; `None` while empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// `(upper bound, cumulative count)` per bucket, ending with `(+Inf, count)`:
    /// Prometheus `_bucket{le=..}` series.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let uppers = self.bounds.iter().copied().chain([f64::INFINITY]);
        uppers.zip(self.counts.iter().scan(0u64, |acc, c| {
            *acc += c;
            Some(*acc)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_constants_are_ascending() {
        for b in [HTTP_DURATION_BOUNDS, SERVICE_GRAPH_BOUNDS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(HTTP_DURATION_BOUNDS.len(), 14);
    }

    #[test]
    fn values_land_in_upper_inclusive_buckets() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 2.5, 100.0] {
            h.record(v);
        }
        assert_eq!(h.bucket_counts(), &[2, 2, 2]);
        assert_eq!(h.count(), 6);
        assert!((h.sum() - 107.5).abs() < 1e-9);
        assert_eq!(h.min(), Some(0.5));
        assert_eq!(h.max(), Some(100.0));
        let cum: Vec<_> = h.cumulative().collect();
        assert_eq!(cum, [(1.0, 2), (2.0, 4), (f64::INFINITY, 6)]);
    }

    #[test]
    fn http_bounds_place_typical_latencies() {
        let mut h = Histogram::new(HTTP_DURATION_BOUNDS);
        h.record(0.0); // first bucket
        h.record(0.005); // first bucket: bound is inclusive
        h.record(0.0051); // second
        h.record(11.0); // overflow bucket
        assert_eq!(h.bucket_counts()[0], 2);
        assert_eq!(h.bucket_counts()[1], 1);
        assert_eq!(h.bucket_counts()[14], 1);
        assert_eq!(h.bucket_counts().iter().sum::<u64>(), h.count());
    }

    #[test]
    fn non_finite_values_are_ignored_and_empty_has_no_min() {
        let mut h = Histogram::new(&[1.0]);
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        assert_eq!(h.count(), 0);
        assert_eq!(h.min(), None);
        assert_eq!(h.max(), None);
    }

    #[test]
    fn merge_adds_and_refuses_other_bounds() {
        let mut a = Histogram::new(&[1.0]);
        let mut b = Histogram::new(&[1.0]);
        a.record(0.5);
        b.record(3.0);
        assert!(a.merge(&b));
        assert_eq!(a.bucket_counts(), &[1, 1]);
        assert_eq!((a.min(), a.max()), (Some(0.5), Some(3.0)));
        assert!(!a.merge(&Histogram::new(&[2.0])));
        assert_eq!(a.count(), 2);
    }
}
