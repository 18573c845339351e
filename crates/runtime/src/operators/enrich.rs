//! `.enrich(H, key: e, fields: [a, b], ttl: 60s, timeout: 500ms)`: reference data merged into
//! each event (docs/connectors.md).
//!
//! The engine stays synchronous: it asks an [`Enricher`] (given in `EngineOptions::enricher`
//! by the embedder) for the fields of a key and waits at most `timeout` for the answer. The
//! enricher owns the I/O, the cache (`ttl`) and the counters; a worker's enricher sends the
//! HTTP request on its reactor while the pipeline's own engine thread waits (bounded), so the
//! reactor never blocks. No enricher, a `null` key, a timeout or an error all pass the event on
//! unenriched (the enricher counts the failures).
//!
//! Merge: every returned field (or only those named in `fields`) is set on the event,
//! replacing a field of the same name; the others keep their order, new ones are appended.

use crate::value::{Fields, Value};
use std::sync::Arc;
use std::time::Duration;

/// Default `ttl` of cached answers.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default `timeout` of one lookup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// One lookup the engine asks for.
#[derive(Debug, Clone, Copy)]
pub struct EnrichRequest<'a> {
    /// The connector named by `.enrich`.
    pub connector: &'a str,
    /// The key, as text.
    pub key: &'a str,
    /// How long an answer may be reused.
    pub ttl: Duration,
    /// How long the engine waits for the answer.
    pub timeout: Duration,
}

/// Resolves `.enrich` lookups for an engine (a worker's HTTP lookups, a test's table).
pub trait Enricher: Send + Sync + std::fmt::Debug {
    /// The fields of `req.key`, or `None` when there are none in time (not found, timeout,
    /// error; the enricher counts why). Must return within about `req.timeout`.
    fn lookup(
        &self,
        req: &EnrichRequest<'_>,
    ) -> Option<Arc<serde_json::Map<String, serde_json::Value>>>;
}

/// A compiled `.enrich`.
pub(crate) struct EnrichOp {
    pub connector: String,
    /// Only these fields of the answer (none: all of them).
    pub fields: Vec<String>,
    pub ttl: Duration,
    pub timeout: Duration,
    pub enricher: Option<Arc<dyn Enricher>>,
}

impl EnrichOp {
    /// The event's fields with the answer for `key` merged in, or `None` to pass it on as is.
    pub fn merged(&self, key: &Value, fields: &Fields) -> Option<Fields> {
        let enricher = self.enricher.as_ref()?;
        let key = match key {
            Value::Null => return None,
            other => other.to_string(),
        };
        let answer = enricher.lookup(&EnrichRequest {
            connector: &self.connector,
            key: &key,
            ttl: self.ttl,
            timeout: self.timeout,
        })?;
        let mut out = fields.clone();
        let mut set = |name: &str, v: &serde_json::Value| {
            let v = Value::from_json(v);
            match out.iter_mut().find(|(k, _)| &**k == name) {
                Some(slot) => slot.1 = v,
                None => out.push((Arc::from(name), v)),
            }
        };
        if self.fields.is_empty() {
            for (k, v) in answer.iter() {
                set(k, v);
            }
        } else {
            for name in &self.fields {
                if let Some(v) = answer.get(name) {
                    set(name, v);
                }
            }
        }
        Some(out)
    }
}

/// Compiles `.enrich(H, key: e, fields: [...], ttl: d, timeout: d)`: the key expression and
/// the operator. Errors are diagnostics at the operator (the checker reports them first).
pub(crate) fn compile(
    c: &mut crate::compile::Compiler,
    op: &varpulis_vpl::ast::StreamOp,
    enricher: Option<Arc<dyn Enricher>>,
) -> Result<(crate::compile::ExprFn, EnrichOp), varpulis_vpl::Diagnostic> {
    use varpulis_vpl::ast::ExprKind;
    use varpulis_vpl::Diagnostic;
    let connector = match op.first_positional().map(|e| &e.kind) {
        Some(ExprKind::Name(n)) => n.name.clone(),
        _ => {
            return Err(Diagnostic::error(
                "`.enrich` needs an HTTP connector name first",
                op.span,
            ))
        }
    };
    let Some(key) = op.named("key") else {
        return Err(Diagnostic::error(
            "`.enrich` needs `key: expression`",
            op.span,
        ));
    };
    let key = c.expr(key);
    let fields = match op.named("fields").map(|e| &e.kind) {
        None => Vec::new(),
        Some(ExprKind::Array(items)) => items
            .iter()
            .filter_map(|i| match &i.kind {
                ExprKind::Name(n) => Some(n.name.clone()),
                ExprKind::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        Some(_) => {
            return Err(Diagnostic::error(
                "`fields` must be an array of field names",
                op.span,
            ))
        }
    };
    let duration = |name: &str, default: Duration| match op.named(name).map(|e| &e.kind) {
        None => Ok(default),
        Some(ExprKind::Duration(ns)) if *ns > 0 => Ok(Duration::from_nanos(*ns)),
        Some(_) => Err(Diagnostic::error(
            format!("`{name}` must be a positive duration (e.g. `500ms`)"),
            op.span,
        )),
    };
    Ok((
        key,
        EnrichOp {
            connector,
            fields,
            ttl: duration("ttl", DEFAULT_TTL)?,
            timeout: duration("timeout", DEFAULT_TIMEOUT)?,
            enricher,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Engine, EngineOptions};
    use std::sync::Mutex;

    /// A table enricher recording the requests it saw.
    #[derive(Debug, Default)]
    struct Table(Mutex<Vec<(String, String, Duration, Duration)>>);

    impl Enricher for Table {
        fn lookup(
            &self,
            r: &EnrichRequest<'_>,
        ) -> Option<Arc<serde_json::Map<String, serde_json::Value>>> {
            self.0
                .lock()
                .unwrap()
                .push((r.connector.into(), r.key.into(), r.ttl, r.timeout));
            if r.key == "none" {
                return None;
            }
            let v = serde_json::json!({"name": format!("n-{}", r.key), "x": 99, "extra": true});
            v.as_object().cloned().map(Arc::new)
        }
    }

    fn run(src: &str, enricher: Option<Arc<Table>>, evt: &str) -> Vec<serde_json::Value> {
        let opts = EngineOptions {
            enricher: enricher.map(|t| t as Arc<dyn Enricher>),
            ..EngineOptions::default()
        };
        let mut e = Engine::compile(src, &opts).unwrap();
        let mut out = Vec::new();
        for ev in crate::parse_evt(evt).unwrap() {
            e.process(&ev, &mut out).unwrap();
        }
        out.iter()
            .filter(|o| o.is_output)
            .map(|o| o.to_json()["fields"].clone())
            .collect()
    }

    const SRC: &str = "connector R = http(url: \"http://r\")\n\
        stream S = A .enrich(R, key: k, fields: [name, x], ttl: 5s, timeout: 20ms) .emit()\n";

    #[test]
    fn listed_fields_replace_or_extend_the_event() {
        let t = Arc::new(Table::default());
        let out = run(
            SRC,
            Some(t.clone()),
            "A { k: \"a\", x: 1 }\nA { k: \"none\", x: 2 }\nA { x: 3 }\n",
        );
        assert_eq!(
            out[0],
            serde_json::json!({"k": "a", "x": 99, "name": "n-a"})
        );
        assert_eq!(
            out[1],
            serde_json::json!({"k": "none", "x": 2}),
            "no answer: unenriched"
        );
        assert_eq!(out[2], serde_json::json!({"x": 3}), "null key: no lookup");
        let seen = t.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0],
            (
                "R".into(),
                "a".into(),
                Duration::from_secs(5),
                Duration::from_millis(20)
            )
        );
    }

    #[test]
    fn without_an_enricher_events_pass_unenriched() {
        assert_eq!(
            run(SRC, None, "A { k: \"a\", x: 1 }\n"),
            [serde_json::json!({"k": "a", "x": 1})]
        );
    }
}
