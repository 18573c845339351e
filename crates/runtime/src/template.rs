//! Message templates: `"High temp: {temperature}F in {zone}"` in `.emit`, `.print`, `.log` and
//! `.alert` string literals (the existing product's interpolation).
//!
//! `{name}` is replaced by the current event's field `name` as text (strings without quotes);
//! `{a.b}` reads field `b` of capture (or map field) `a`; `{name:.N}` formats a number with `N`
//! decimals. A placeholder naming no field of the event,
//! or that is not a placeholder (`{}`, `{a b}`), stays as written; `{{` and `}}` are literal
//! braces.

use crate::error::RuntimeError;
use crate::limits::Limits;
use crate::value::{Fields, Value};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Field {
        /// `a.b.c`: the first name is a field of the event (else a capture), the rest map keys.
        path: Vec<Arc<str>>,
        decimals: Option<usize>,
        /// The placeholder as written (kept when the field is missing).
        raw: String,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

fn is_path(s: &str) -> bool {
    s.split('.').all(is_name)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    /// Parses `text`; `None` when it holds no placeholder (a plain string).
    pub(crate) fn parse(text: &str) -> Option<Template> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let mut any = false;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                lit.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if let Some(after) = tail.strip_prefix('}') {
                lit.push('}');
                rest = after;
                continue;
            }
            let Some(end) = tail.find('}') else {
                lit.push_str(tail);
                rest = "";
                break;
            };
            let inner = &tail[1..end];
            let (name, spec) = match inner.split_once(':') {
                Some((n, s)) => (n.trim(), Some(s.trim())),
                None => (inner.trim(), None),
            };
            let decimals = match spec {
                None => Some(None),
                Some(s) => s
                    .strip_prefix('.')
                    .and_then(|d| d.parse::<usize>().ok())
                    .filter(|d| *d <= 32)
                    .map(Some),
            };
            match decimals {
                Some(decimals) if is_path(name) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field {
                        path: name.split('.').map(Arc::from).collect(),
                        decimals,
                        raw: tail[..=end].to_string(),
                    });
                    any = true;
                }
                _ => lit.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        any.then_some(Template { parts })
    }

    /// The text with the placeholders filled from the event's `fields` (or the `captures`);
    /// an error, before allocating, if it would exceed the string limit of `limits`.
    pub(crate) fn render(
        &self,
        fields: &Fields,
        captures: &Fields,
        limits: &Limits,
    ) -> Result<String, RuntimeError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    limits.check_string(out.len().saturating_add(s.len()))?;
                    out.push_str(s);
                }
                Part::Field {
                    path,
                    decimals,
                    raw,
                } => {
                    let piece = match resolve(path, fields, captures) {
                        None => raw.clone(),
                        Some(v) => match (decimals, v.as_f64()) {
                            (Some(d), Some(x)) => format!("{x:.d$}", d = *d),
                            _ => match v {
                                Value::Str(s) => {
                                    limits.check_string(out.len().saturating_add(s.len()))?;
                                    out.push_str(s);
                                    continue;
                                }
                                other => {
                                    let n = limits.check_text(other)?;
                                    limits.check_string(out.len().saturating_add(n))?;
                                    other.to_string()
                                }
                            },
                        },
                    };
                    limits.check_string(out.len().saturating_add(piece.len()))?;
                    out.push_str(&piece);
                }
            }
        }
        Ok(out)
    }
}

/// The value at `path`: its first name in `fields`, else in `captures`, then map keys.
fn resolve<'v>(path: &[Arc<str>], fields: &'v Fields, captures: &'v Fields) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let find = |fs: &'v Fields| fs.iter().find(|(k, _)| k == first).map(|(_, v)| v);
    let mut v = find(fields).or_else(|| find(captures))?;
    for key in rest {
        v = match v {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v)?,
            _ => return None,
        };
    }
    (!v.is_null()).then_some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        vec![
            ("zone".into(), Value::str("A")),
            ("t".into(), Value::Float(105.256)),
            ("n".into(), Value::Int(3)),
        ]
    }

    #[test]
    fn placeholders_are_filled_from_the_event() {
        let t = Template::parse("High {t}F in {zone} ({n}), {t:.2}, {{x}}, {missing}, {a b}, {}")
            .map(|t| {
                t.render(&fields(), &Vec::new(), &Limits::default())
                    .unwrap()
            });
        assert_eq!(
            t.as_deref(),
            Some("High 105.256F in A (3), 105.26, {x}, {missing}, {a b}, {}")
        );
        assert_eq!(Template::parse("no placeholders {} {{x}}"), None);
        assert_eq!(
            Template::parse("{n:.1} {zone:.3} {open")
                .map(|t| t
                    .render(&fields(), &Vec::new(), &Limits::default())
                    .unwrap())
                .as_deref(),
            Some("3.0 A {open")
        );
        let caps: Fields = vec![(
            "t1".into(),
            Value::Map(std::sync::Arc::new(vec![(
                "symbol".into(),
                Value::str("ACME"),
            )])),
        )];
        assert_eq!(
            Template::parse("{t1.symbol} {t1.price} {zone}")
                .map(|t| t.render(&fields(), &caps, &Limits::default()).unwrap())
                .as_deref(),
            Some("ACME {t1.price} A")
        );
    }

    #[test]
    fn rendering_respects_the_string_limit() {
        let limits = Limits {
            max_string_bytes: 10,
            ..Limits::default()
        };
        let t = Template::parse("{zone}{zone}{zone}").unwrap();
        assert!(t.render(&fields(), &Vec::new(), &limits).is_ok());
        let t = Template::parse("{zone} and a long literal").unwrap();
        assert!(t.render(&fields(), &Vec::new(), &limits).is_err());
        // Huge precisions are not placeholders (at most 32 decimals).
        assert_eq!(Template::parse("{t:.1000000000}"), None);
    }
}
