//! Hashable keys of values: partition keys (`.partition_by`), join keys and `count_distinct`.
//!
//! Ints and strings (the usual keys) hash directly; other values hash by their debug text, which
//! is exact for every value kind (floats by their shortest round-trip form).

use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Hashable form of a partition key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum KeyRepr {
    Null,
    Int(i64),
    Str(Arc<str>),
    Other(String),
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

