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

/// A [`FastMap`] keyed by partition keys that also takes a [`KeyRef`] borrowed from an event to
/// look a key up (no string clone per lookup).
pub(crate) type KeyMap<V> = hashbrown::HashMap<KeyRepr, V, foldhash::fast::RandomState>;

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
/// then share a hash, which equality tells apart. [`KeyRef`] hashes the same way.
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

/// A partition key borrowed from an event's value (null, int or string): looks up a
/// [`KeyMap`] without cloning the string. Hashes and compares as [`KeyRepr::of`] of the value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyRef<'a> {
    /// [`KeyRepr::Null`].
    Null,
    /// [`KeyRepr::Int`].
    Int(i64),
    /// [`KeyRepr::Str`].
    Str(&'a Arc<str>),
}

impl<'a> KeyRef<'a> {
    /// The key of `v` when it can be borrowed (null, int, string); `None` for the other kinds,
    /// whose key is a text built from the value ([`KeyRepr::of`]).
    #[inline]
    pub(crate) fn of(v: &'a Value) -> Option<KeyRef<'a>> {
        match v {
            Value::Null => Some(KeyRef::Null),
            Value::Int(i) => Some(KeyRef::Int(*i)),
            Value::Str(s) => Some(KeyRef::Str(s)),
            _ => None,
        }
    }

    /// The owned key (`KeyRepr::of` of the value).
    pub(crate) fn to_owned_key(self) -> KeyRepr {
        match self {
            KeyRef::Null => KeyRepr::Null,
            KeyRef::Int(i) => KeyRepr::Int(i),
            KeyRef::Str(s) => KeyRepr::Str(s.clone()),
        }
    }
}

impl Hash for KeyRef<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            KeyRef::Null => state.write_u8(0),
            KeyRef::Int(i) => state.write_i64(*i),
            KeyRef::Str(s) => state.write(s.as_bytes()),
        }
    }
}

impl hashbrown::Equivalent<KeyRepr> for KeyRef<'_> {
    #[inline]
    fn equivalent(&self, key: &KeyRepr) -> bool {
        match (self, key) {
            (KeyRef::Null, KeyRepr::Null) => true,
            (KeyRef::Int(a), KeyRepr::Int(b)) => a == b,
            (KeyRef::Str(a), KeyRepr::Str(b)) => Arc::ptr_eq(a, b) || ***a == **b,
            _ => false,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A key borrowed from a value finds the entry of the owned key of an equal value (same
    /// hash, equal), and only that one: not a key of another kind with the same text or bits.
    #[test]
    fn borrowed_keys_find_the_owned_keys() {
        let values = [
            Value::Null,
            Value::Int(7),
            Value::Int(-1),
            Value::str("7"),
            Value::str(""),
            Value::str("k1"),
            Value::Float(7.0),
            Value::Bool(true),
        ];
        let mut map: KeyMap<usize> = KeyMap::default();
        for (i, v) in values.iter().enumerate() {
            map.insert(KeyRepr::of(v), i);
        }
        for (i, v) in values.iter().enumerate() {
            // A string equal in content but in another allocation finds it too.
            let copy = match v {
                Value::Str(s) => Value::str(s),
                other => other.clone(),
            };
            if let Some(k) = KeyRef::of(&copy) {
                assert_eq!(map.get(&k), Some(&i), "{v:?}");
                assert_eq!(k.to_owned_key(), KeyRepr::of(v));
            }
        }
        assert!(map.get(&KeyRef::Str(&Arc::from("k2"))).is_none());
        assert!(map.get(&KeyRef::Int(8)).is_none());
    }
}
