//! Hashable keys of values: partition keys (`.partition_by`), join keys and `count_distinct`.
//!
//! Ints and strings (the usual keys) hash directly; other values hash by their debug text, which
//! is exact for every value kind (floats by their shortest round-trip form).

use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A hash map over keys built from event values (partitions, join keys, live runs): foldhash,
/// several times cheaper than std's SipHash for the short keys of the hot paths, seeded randomly
/// per map like std's, so keys chosen by a sender cannot be aimed at one bucket.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Hashable form of a partition key. Equality is by content; two strings sharing one
/// allocation (names and values interned by the decoders) compare without reading the bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum KeyRepr {
    Null,
    Int(i64),
    Str(Arc<str>),
    Other(String),
}

impl PartialEq for KeyRepr {
    fn eq(&self, other: &KeyRepr) -> bool {
        match (self, other) {
            (KeyRepr::Null, KeyRepr::Null) => true,
            (KeyRepr::Int(a), KeyRepr::Int(b)) => a == b,
            (KeyRepr::Str(a), KeyRepr::Str(b)) => Arc::ptr_eq(a, b) || a == b,
            (KeyRepr::Other(a), KeyRepr::Other(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for KeyRepr {}

/// One write per key (the hot paths hash a partition key per event): a string key hashes its
/// bytes only, without a kind tag or the terminator `str` adds; keys of different kinds may
/// then share a hash, which equality tells apart.
impl Hash for KeyRepr {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            KeyRepr::Null => state.write_u8(0),
            KeyRepr::Int(i) => state.write_i64(*i),
            KeyRepr::Str(s) => state.write(s.as_bytes()),
            KeyRepr::Other(s) => state.write(s.as_bytes()),
        }
    }
}

impl KeyRepr {
    pub(crate) fn of(v: &Value) -> KeyRepr {
        match v {
            Value::Null => KeyRepr::Null,
            Value::Int(i) => KeyRepr::Int(*i),
            Value::Str(s) => KeyRepr::Str(s.clone()),
            other => KeyRepr::Other(format!("{other:?}")),
        }
    }
}

/// A hashable value with VPL equality: `1` and `1.0` are the same key, maps compare regardless of
/// entry order, `NaN` equals itself. Used by `.distinct`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ValueKey {
    Null,
    Bool(bool),
    Int(i64),
    /// A float that is not an integer, by its bits (`-0.0` is `0`, an int).
    Float(u64),
    Str(Arc<str>),
    Timestamp(i64),
    Duration(i64),
    List(Vec<ValueKey>),
    /// Entries sorted by name.
    Map(Vec<(Arc<str>, ValueKey)>),
}

impl ValueKey {
    /// The key of `v`.
    pub(crate) fn of(v: &Value) -> ValueKey {
        match v {
            Value::Null => ValueKey::Null,
            Value::Bool(b) => ValueKey::Bool(*b),
            Value::Int(i) => ValueKey::Int(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64 {
                    ValueKey::Int(*f as i64)
                } else {
                    ValueKey::Float(f.to_bits())
                }
            }
            Value::Str(s) => ValueKey::Str(s.clone()),
            Value::Timestamp(t) => ValueKey::Timestamp(*t),
            Value::Duration(d) => ValueKey::Duration(*d),
            Value::Array(a) => ValueKey::List(a.iter().map(ValueKey::of).collect()),
            Value::Map(m) => ValueKey::of_fields(m),
        }
    }

    /// The key of a list of named values (an event's fields or a map), in any order.
    pub(crate) fn of_fields(fields: &[(Arc<str>, Value)]) -> ValueKey {
        let mut entries: Vec<(Arc<str>, ValueKey)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), ValueKey::of(v)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        ValueKey::Map(entries)
    }

    /// A value with this key (for checkpoints: `ValueKey::of(&k.to_value()) == k`).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            ValueKey::Null => Value::Null,
            ValueKey::Bool(b) => Value::Bool(*b),
            ValueKey::Int(i) => Value::Int(*i),
            ValueKey::Float(bits) => Value::Float(f64::from_bits(*bits)),
            ValueKey::Str(s) => Value::Str(s.clone()),
            ValueKey::Timestamp(t) => Value::Timestamp(*t),
            ValueKey::Duration(d) => Value::Duration(*d),
            ValueKey::List(items) => {
                Value::Array(Arc::new(items.iter().map(Self::to_value).collect()))
            }
            ValueKey::Map(entries) => Value::Map(Arc::new(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            )),
        }
    }
}
