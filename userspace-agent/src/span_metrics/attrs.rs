//! Attribute sets that identify one series: sorted by key, hashable, so two spans with
//! the same attributes in any order land in the same series.

use std::fmt;

use crate::spans::Value;

/// One attribute value of a series (the span model's [`Value`], made hashable).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&Value> for AttrValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Str(s) => AttrValue::Str(s.to_string()),
            Value::Int(i) => AttrValue::Int(*i),
            Value::Bool(b) => AttrValue::Bool(*b),
        }
    }
}
impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(v.to_owned())
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The attribute key OTel SDKs use for the series that absorbs measurements once a
/// metric has reached its cardinality limit.
pub const OVERFLOW_KEY: &str = "otel.metric.overflow";

/// A set of attributes, sorted by key, at most one value per key. Keys are static:
/// they come from the mapping tables, never from captured data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attrs(Vec<(&'static str, AttrValue)>);

impl Attrs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The attribute set of an overflow series: `otel.metric.overflow = true`.
    pub fn overflow() -> Self {
        Self::new().with(OVERFLOW_KEY, true)
    }

    /// Sets `key` (replacing an earlier value).
    pub fn insert(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| (*k).cmp(key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    /// Builder form of [`Attrs::insert`].
    pub fn with(mut self, key: &'static str, value: impl Into<AttrValue>) -> Self {
        self.insert(key, value);
        self
    }

    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Attributes in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &AttrValue)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertion_order_does_not_matter_and_keys_are_unique() {
        let a = Attrs::new().with("b", 1).with("a", "x");
        let b = Attrs::new().with("a", "y").with("b", 1).with("a", "x");
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("a"), Some(&AttrValue::from("x")));
        assert_eq!(a.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Attrs::overflow().get(OVERFLOW_KEY), Some(&true.into()));
    }
}
