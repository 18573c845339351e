//! Operators that pass or drop single events by what the stream has already seen (Tier 3):
//!
//! * [`DistinctOp`] (`.distinct([e, …])`): drops an event whose key (the listed expressions, or
//!   every field when none is given) was seen among the most recent 10,000 distinct keys; a
//!   repeated key counts as seen again (least-recently-used eviction).
//! * [`LimitOp`] (`.limit(n)`, `.first()` = `.limit(1)`): passes the first `n` events ever.
//!
//! With `.partition_by(k)` both keep their state per partition (the LRU capacity is shared by
//! all partitions, so memory stays bounded).

use crate::codec::{decode_value, encode_value};
use crate::error::RuntimeError;
use crate::key::{KeyRepr, ValueKey};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Distinct keys remembered by one `.distinct` (VPL.md §5).
pub const DISTINCT_CAPACITY: usize = 10_000;

fn ck_err(msg: &str) -> RuntimeError {
    RuntimeError::Checkpoint(format!("distinct/limit state: {msg}"))
}

type Slot = (KeyRepr, ValueKey);

#[derive(Default)]
struct LruState {
    /// Key → stamp of its most recent use.
    stamp: HashMap<Slot, u64>,
    /// Uses in order; entries whose stamp is stale are skipped.
    order: VecDeque<(u64, Slot)>,
    next: u64,
}

/// `.distinct(…)` state.
pub(crate) struct DistinctOp {
    capacity: usize,
    state: Mutex<LruState>,
}

impl DistinctOp {
    /// An empty operator keeping `capacity` keys.
    pub(crate) fn new(capacity: usize) -> Self {
        DistinctOp {
            capacity: capacity.max(1),
            state: Mutex::new(LruState::default()),
        }
    }

    /// Whether an event with this partition and key passes (it was not seen recently).
    pub(crate) fn admit(&self, part: KeyRepr, key: ValueKey) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (part, key);
        let stamp = st.next;
        st.next += 1;
        let seen = st.stamp.insert(slot.clone(), stamp).is_some();
        st.order.push_back((stamp, slot));
        while st.stamp.len() > self.capacity {
            let Some((s, k)) = st.order.pop_front() else {
                break;
            };
            if st.stamp.get(&k) == Some(&s) {
                st.stamp.remove(&k);
            }
        }
        if st.order.len() > 2 * self.capacity + 64 {
            let LruState { stamp, order, .. } = &mut *st;
            order.retain(|(s, k)| stamp.get(k) == Some(s));
        }
        !seen
    }

    /// The live keys, least recently used first.
    pub(crate) fn snapshot(&self) -> Json {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<Json> = st
            .order
            .iter()
            .filter(|(s, k)| st.stamp.get(k) == Some(s))
            .map(|(_, (p, k))| {
                json!([
                    serde_json::to_value(p).unwrap_or(Json::Null),
                    encode_value(&k.to_value())
                ])
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Parses a [`DistinctOp::snapshot`] (`None`: empty state).
    pub(crate) fn parse_snapshot(
        &self,
        j: Option<&Json>,
    ) -> Result<DistinctRestored, RuntimeError> {
        let mut st = LruState::default();
        if let Some(j) = j {
            for e in j
                .get("keys")
                .and_then(Json::as_array)
                .ok_or_else(|| ck_err("keys"))?
            {
                let pair = e
                    .as_array()
                    .filter(|p| p.len() == 2)
                    .ok_or_else(|| ck_err("key entry"))?;
                let part: KeyRepr =
                    serde_json::from_value(pair[0].clone()).map_err(|_| ck_err("partition"))?;
                let key = ValueKey::of(&decode_value(&pair[1])?);
                let stamp = st.next;
                st.next += 1;
                st.stamp.insert((part.clone(), key.clone()), stamp);
                st.order.push_back((stamp, (part, key)));
            }
        }
        Ok(DistinctRestored(st))
    }

    /// Installs state from [`DistinctOp::parse_snapshot`].
    pub(crate) fn install(&self, r: DistinctRestored) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}

/// Decoded `.distinct` state (installed only once everything parsed).
pub(crate) struct DistinctRestored(LruState);

/// `.limit(n)` state: events passed per partition.
pub(crate) struct LimitOp {
    limit: u64,
    passed: Mutex<HashMap<KeyRepr, u64>>,
}

impl LimitOp {
    /// An operator passing `limit` events (per partition).
    pub(crate) fn new(limit: u64) -> Self {
        LimitOp {
            limit,
            passed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one more event of this partition passes.
    pub(crate) fn admit(&self, part: KeyRepr) -> bool {
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        let n = passed.entry(part).or_insert(0);
        if *n < self.limit {
            *n += 1;
            true
        } else {
            false
        }
    }

    /// Counts per partition (sorted for stable bytes).
    pub(crate) fn snapshot(&self) -> Json {
        let passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(String, Json, u64)> = passed
            .iter()
            .map(|(k, n)| {
                let j = serde_json::to_value(k).unwrap_or(Json::Null);
                (j.to_string(), j, *n)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        json!({ "passed": rows.into_iter().map(|(_, k, n)| json!([k, n])).collect::<Vec<_>>() })
    }

    /// Parses a [`LimitOp::snapshot`] (`None`: empty state).
    pub(crate) fn parse_snapshot(&self, j: Option<&Json>) -> Result<LimitRestored, RuntimeError> {
        let mut passed = HashMap::new();
        if let Some(j) = j {
            for e in j
                .get("passed")
                .and_then(Json::as_array)
                .ok_or_else(|| ck_err("passed"))?
            {
                let pair = e
                    .as_array()
                    .filter(|p| p.len() == 2)
                    .ok_or_else(|| ck_err("count entry"))?;
                let part: KeyRepr =
                    serde_json::from_value(pair[0].clone()).map_err(|_| ck_err("partition"))?;
                let n = pair[1].as_u64().ok_or_else(|| ck_err("count"))?;
                passed.insert(part, n);
            }
        }
        Ok(LimitRestored(passed))
    }

    /// Installs state from [`LimitOp::parse_snapshot`].
    pub(crate) fn install(&self, r: LimitRestored) {
        *self.passed.lock().unwrap_or_else(|p| p.into_inner()) = r.0;
    }
}

/// Decoded `.limit` state.
pub(crate) struct LimitRestored(HashMap<KeyRepr, u64>);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn distinct_is_an_lru_of_keys() {
        let d = DistinctOp::new(2);
        let k = |i: i64| ValueKey::Int(i);
        assert!(d.admit(KeyRepr::Null, k(1)));
        assert!(d.admit(KeyRepr::Null, k(2)));
        assert!(!d.admit(KeyRepr::Null, k(1)), "seen; refreshed");
        assert!(
            d.admit(KeyRepr::Null, k(3)),
            "evicts 2, the least recently used"
        );
        assert!(!d.admit(KeyRepr::Null, k(1)));
        assert!(d.admit(KeyRepr::Null, k(2)));
        // 1.0 and 1 are the same key; partitions are separate.
        assert!(!d.admit(
            KeyRepr::Null,
            ValueKey::of(&crate::value::Value::Float(2.0))
        ));
        assert!(d.admit(KeyRepr::Int(7), k(2)));
    }

    #[test]
    fn snapshots_restore_the_same_recency() {
        let d = DistinctOp::new(3);
        for i in [1, 2, 3, 1] {
            d.admit(KeyRepr::Null, ValueKey::Int(i));
        }
        let snap = d.snapshot();
        let e = DistinctOp::new(3);
        e.install(e.parse_snapshot(Some(&snap)).unwrap());
        assert_eq!(e.snapshot(), snap);
        assert!(e.admit(KeyRepr::Null, ValueKey::Int(4)), "evicts 2");
        assert!(e.admit(KeyRepr::Null, ValueKey::Int(2)));
    }
}
