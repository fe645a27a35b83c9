//! The series of every span-derived metric, with a cardinality limit per metric.
//!
//! A series is (resource, attribute set). Once a metric has `max_series` series, new
//! attribute sets are recorded into one overflow series per metric, with the single
//! attribute `otel.metric.overflow = true`, under the agent's own resource (the OTel SDK
//! behaviour; the overflowing span's resource is not kept, or the overflow would grow
//! with it). Series are never removed: values are cumulative for the agent's lifetime.

use std::collections::HashMap;
use std::sync::Arc;

use super::attrs::{AttrValue, Attrs};
use super::histogram::Histogram;
use super::snapshot::{MetricData, MetricSnapshot, Point};
use crate::spans::Resource;

/// What an instrument aggregates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InstrumentKind {
    /// A monotonic count.
    Counter,
    /// A histogram over these bucket bounds.
    Histogram(&'static [f64]),
}

/// A metric's identity, as the mapping tables declare it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstrumentDesc {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub kind: InstrumentKind,
}

/// Index of an interned resource.
type ResourceId = usize;

#[derive(Clone, Debug)]
enum Cell {
    Counter(u64),
    Histogram(Histogram),
}

impl Cell {
    fn new(kind: InstrumentKind) -> Self {
        match kind {
            InstrumentKind::Counter => Cell::Counter(0),
            InstrumentKind::Histogram(bounds) => Cell::Histogram(Histogram::new(bounds)),
        }
    }
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
enum Measurement {
    Add(u64),
    Observe(f64),
}

impl Measurement {
    fn apply(self, cell: &mut Cell) {
        match (self, cell) {
            (Measurement::Add(n), Cell::Counter(c)) => *c = c.saturating_add(n),
            (Measurement::Observe(v), Cell::Histogram(h)) => h.record(v),
            // A measurement of the wrong kind (a name declared twice with different
            // kinds) is a programming error in a table; never worth a panic in the agent.
            _ => debug_assert!(false, "measurement does not match the instrument kind"),
        }
    }
}

#[derive(Debug)]
struct Instrument {
    desc: InstrumentDesc,
    /// Series by resource, then attributes (two levels so a lookup needs no clone).
    series: HashMap<ResourceId, HashMap<Attrs, Cell>>,
    /// Number of series in `series`.
    len: usize,
    overflow: Option<Cell>,
}

/// Resources seen so far, deduplicated by value (every process has its own `Arc`, and
/// a process re-reading its resource after exec may produce an equal one).
#[derive(Debug, Default)]
struct Resources {
    list: Vec<Arc<Resource>>,
    by_value: HashMap<Vec<(String, AttrValue)>, ResourceId>,
    /// Fast path: spans of one batch usually share one `Arc`. Holding the `Arc` keeps
    /// its address from being reused by another resource.
    last: Option<(Arc<Resource>, ResourceId)>,
}

impl Resources {
    fn key(resource: &Resource) -> Vec<(String, AttrValue)> {
        let mut key: Vec<_> = resource
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), AttrValue::from(&kv.value)))
            .collect();
        key.sort();
        key
    }

    fn find(&mut self, resource: &Arc<Resource>) -> Option<ResourceId> {
        if let Some((last, id)) = &self.last
            && Arc::ptr_eq(last, resource)
        {
            return Some(*id);
        }
        let id = *self.by_value.get(&Self::key(resource))?;
        self.last = Some((Arc::clone(resource), id));
        Some(id)
    }

    fn intern(&mut self, resource: &Arc<Resource>) -> ResourceId {
        if let Some(id) = self.find(resource) {
            return id;
        }
        let id = self.list.len();
        self.list.push(Arc::clone(resource));
        self.by_value.insert(Self::key(resource), id);
        self.last = Some((Arc::clone(resource), id));
        id
    }
}

/// Every span-derived metric; not thread-safe by itself (the registry wraps it).
#[derive(Debug)]
pub struct Store {
    max_series: usize,
    resources: Resources,
    agent_resource: ResourceId,
    instruments: Vec<Instrument>,
    by_name: HashMap<&'static str, usize>,
    overflowed: u64,
}

impl Store {
    /// `max_series`: distinct series per metric before recording into its overflow series.
    pub fn new(max_series: usize, agent_resource: Arc<Resource>) -> Self {
        let mut resources = Resources::default();
        let agent_resource = resources.intern(&agent_resource);
        Self {
            max_series,
            resources,
            agent_resource,
            instruments: Vec::new(),
            by_name: HashMap::new(),
            overflowed: 0,
        }
    }

    /// Adds `n` to a counter.
    pub fn add(&mut self, desc: &InstrumentDesc, resource: &Arc<Resource>, attrs: Attrs, n: u64) {
        self.record(desc, resource, attrs, Measurement::Add(n));
    }

    /// Records one histogram value.
    pub fn observe(
        &mut self,
        desc: &InstrumentDesc,
        resource: &Arc<Resource>,
        attrs: Attrs,
        value: f64,
    ) {
        self.record(desc, resource, attrs, Measurement::Observe(value));
    }

    /// Measurements recorded into an overflow series so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// The resource the agent's own metrics (and overflow series) belong to.
    pub fn agent_resource(&self) -> usize {
        self.agent_resource
    }

    pub fn resources(&self) -> &[Arc<Resource>] {
        &self.resources.list
    }

    fn record(
        &mut self,
        desc: &InstrumentDesc,
        resource: &Arc<Resource>,
        attrs: Attrs,
        m: Measurement,
    ) {
        let index = match self.by_name.get(desc.name) {
            Some(&i) => i,
            None => {
                self.instruments.push(Instrument {
                    desc: *desc,
                    series: HashMap::new(),
                    len: 0,
                    overflow: None,
                });
                self.by_name.insert(desc.name, self.instruments.len() - 1);
                self.instruments.len() - 1
            }
        };
        let instrument = &mut self.instruments[index];
        let kind = instrument.desc.kind;
        let existing = self.resources.find(resource);
        if let Some(cell) = existing
            .and_then(|rid| instrument.series.get_mut(&rid))
            .and_then(|by_attrs| by_attrs.get_mut(&attrs))
        {
            m.apply(cell);
            return;
        }
        if instrument.len < self.max_series {
            let rid = existing.unwrap_or_else(|| self.resources.intern(resource));
            let mut cell = Cell::new(kind);
            m.apply(&mut cell);
            instrument
                .series
                .entry(rid)
                .or_default()
                .insert(attrs, cell);
            instrument.len += 1;
        } else {
            self.overflowed += 1;
            m.apply(instrument.overflow.get_or_insert_with(|| Cell::new(kind)));
        }
    }

    /// Copies every metric out, sorted by name; points sorted by (resource, attributes).
    pub fn snapshot(&self) -> Vec<MetricSnapshot> {
        let mut out: Vec<MetricSnapshot> = self
            .instruments
            .iter()
            .map(|inst| self.snapshot_instrument(inst))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn snapshot_instrument(&self, inst: &Instrument) -> MetricSnapshot {
        let overflow = inst
            .overflow
            .as_ref()
            .map(|cell| ((self.agent_resource, Attrs::overflow()), cell));
        let mut cells: Vec<_> = inst
            .series
            .iter()
            .flat_map(|(r, by_attrs)| by_attrs.iter().map(|(a, c)| ((*r, a.clone()), c)))
            .chain(overflow)
            .collect();
        cells.sort_by(|a, b| a.0.cmp(&b.0));
        let data = match inst.desc.kind {
            InstrumentKind::Counter => MetricData::Sum {
                monotonic: true,
                points: cells
                    .into_iter()
                    .filter_map(|((resource, attrs), cell)| match cell {
                        Cell::Counter(value) => Some(Point {
                            resource,
                            attrs,
                            value: *value,
                        }),
                        Cell::Histogram(_) => None,
                    })
                    .collect(),
            },
            InstrumentKind::Histogram(_) => MetricData::Histogram(
                cells
                    .into_iter()
                    .filter_map(|((resource, attrs), cell)| match cell {
                        Cell::Histogram(h) => Some(Point {
                            resource,
                            attrs,
                            value: h.clone(),
                        }),
                        Cell::Counter(_) => None,
                    })
                    .collect(),
            ),
        };
        MetricSnapshot {
            name: inst.desc.name.to_owned(),
            description: inst.desc.description.to_owned(),
            unit: inst.desc.unit.to_owned(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::test_support::resource;

    const REQS: InstrumentDesc = InstrumentDesc {
        name: "test.requests",
        description: "requests",
        unit: "",
        kind: InstrumentKind::Counter,
    };
    const DUR: InstrumentDesc = InstrumentDesc {
        name: "test.duration",
        description: "durations",
        unit: "s",
        kind: InstrumentKind::Histogram(&[0.1, 1.0]),
    };

    fn points(store: &Store, name: &str) -> MetricData {
        store
            .snapshot()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.data)
            .expect("metric exists")
    }

    #[test]
    fn equal_resources_in_distinct_arcs_share_series() {
        let mut s = Store::new(10, resource("sonde"));
        let attrs = Attrs::new().with("k", "v");
        s.add(&REQS, &resource("a"), attrs.clone(), 1);
        s.add(&REQS, &resource("a"), attrs.clone(), 2);
        s.add(&REQS, &resource("b"), attrs, 1);
        let MetricData::Sum { points, monotonic } = points(&s, "test.requests") else {
            panic!("sum expected");
        };
        assert!(monotonic);
        let values: Vec<_> = points
            .iter()
            .map(|p| (s.resources()[p.resource].service_name.as_str(), p.value))
            .collect();
        assert_eq!(values, [("a", 3), ("b", 1)]);
    }

    #[test]
    fn beyond_the_limit_measurements_go_to_one_overflow_series() {
        let mut s = Store::new(2, resource("sonde"));
        let res = resource("svc");
        for i in 0..5 {
            s.observe(&DUR, &res, Attrs::new().with("i", i64::from(i)), 0.5);
        }
        // Existing series keep recording after the limit is reached.
        s.observe(&DUR, &res, Attrs::new().with("i", 0), 0.5);
        assert_eq!(s.overflowed(), 3);
        let MetricData::Histogram(points) = points(&s, "test.duration") else {
            panic!("histogram expected");
        };
        assert_eq!(points.len(), 3);
        let overflow = points
            .iter()
            .find(|p| p.attrs == Attrs::overflow())
            .expect("overflow series");
        assert_eq!(overflow.value.count(), 3);
        assert_eq!(overflow.resource, s.agent_resource());
        let first = points
            .iter()
            .find(|p| p.attrs == Attrs::new().with("i", 0))
            .expect("first series");
        assert_eq!(first.value.count(), 2);
        // Other metrics have their own budget.
        s.add(&REQS, &res, Attrs::new().with("i", 9), 1);
        assert_eq!(s.overflowed(), 3);
    }
}
