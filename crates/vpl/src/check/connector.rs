//! Connector declarations (§9, docs/connectors.md): each kind's parameters with their types,
//! the required ones, and which kinds can be a `.from` source.
//!
//! One table per kind ([`KINDS`]); the checks are the same for all of them: a parameter must be
//! named, known (an error with a did-you-mean; for Kafka, MQTT and NATS unknown names only warn:
//! Kafka passes them to the client as properties, MQTT and NATS ignore them, since programs of
//! the existing product carry such parameters), given once, and of its type; a required parameter (or one of
//! its alternatives) must be present.

use super::{literal_type, Checker, Ty};
use crate::ast::*;
use crate::diagnostics::Diagnostic;
use std::collections::HashMap;

/// The type a connector parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamTy {
    /// A string (or a bare name, which reads as its text).
    Str,
    /// A non-negative integer.
    Count,
    /// A positive integer.
    Positive,
    /// `true` or `false`.
    Bool,
    /// A duration literal (`500ms`, `5s`).
    Duration,
    /// A string or an array of strings (`"h1:9092,h2:9092"` or `["h1:9092", "h2:9092"]`).
    StrList,
    /// A map of string keys to literal values (`{"authorization": "Bearer x"}`).
    Map,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
}

impl ParamTy {
    fn describe(self) -> String {
        match self {
            ParamTy::Str => "a string".into(),
            ParamTy::Count => "a non-negative integer".into(),
            ParamTy::Positive => "a positive integer".into(),
            ParamTy::Bool => "`true` or `false`".into(),
            ParamTy::Duration => "a duration (e.g. `5s`)".into(),
            ParamTy::StrList => "a string or an array of strings".into(),
            ParamTy::Map => "a map (e.g. `{\"k\": \"v\"}`)".into(),
            ParamTy::OneOf(words) => format!("one of {}", words.join(", ")),
        }
    }
}

/// One connector kind.
struct Kind {
    /// The kind's name as written (`http`).
    name: &'static str,
    /// Its display name in messages (`HTTP`).
    label: &'static str,
    /// Known parameters.
    params: &'static [(&'static str, ParamTy)],
    /// Required parameters: each entry lists alternatives, one of which must be present.
    required: &'static [&'static [&'static str]],
    /// Whether `.from` may read from it (else it is an output-only kind).
    source: bool,
    /// Whether unknown parameters only warn (Kafka passes them to the client as properties;
    /// MQTT and NATS ignore them, as the existing product's programs rely on) rather than
    /// being errors.
    pass_through: bool,
}

const TLS: [(&str, ParamTy); 4] = [
    ("tls", ParamTy::Bool),
    ("tls_ca", ParamTy::Str),
    ("tls_cert", ParamTy::Str),
    ("tls_key", ParamTy::Str),
];

const MQTT: &[(&str, ParamTy)] = &[
    ("host", ParamTy::Str),
    ("port", ParamTy::Count),
    ("client_id", ParamTy::Str),
    ("username", ParamTy::Str),
    ("password", ParamTy::Str),
    ("qos", ParamTy::Count),
    ("topic", ParamTy::Str),
    TLS[0],
    TLS[1],
    TLS[2],
    TLS[3],
];

const NATS: &[(&str, ParamTy)] = &[
    ("servers", ParamTy::StrList),
    ("url", ParamTy::Str),
    ("host", ParamTy::Str),
    ("port", ParamTy::Count),
    ("subject", ParamTy::Str),
    ("topic", ParamTy::Str),
    ("username", ParamTy::Str),
    ("user", ParamTy::Str),
    ("password", ParamTy::Str),
    ("token", ParamTy::Str),
    ("name", ParamTy::Str),
    ("client_id", ParamTy::Str),
    TLS[0],
    TLS[1],
    TLS[2],
    TLS[3],
];

const KAFKA: &[(&str, ParamTy)] = &[
    ("brokers", ParamTy::StrList),
    ("url", ParamTy::Str),
    ("group_id", ParamTy::Str),
    ("topic", ParamTy::Str),
    ("client_id", ParamTy::Str),
    ("properties", ParamTy::Map),
    TLS[0],
    TLS[1],
    TLS[2],
    TLS[3],
];

/// HTTP methods an `http` connector may use.
pub(crate) const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

const HTTP: &[(&str, ParamTy)] = &[
    ("url", ParamTy::Str),
    ("method", ParamTy::OneOf(HTTP_METHODS)),
    ("headers", ParamTy::Map),
    ("timeout", ParamTy::Duration),
    ("batch", ParamTy::Positive),
    ("queue", ParamTy::Positive),
    ("retries", ParamTy::Count),
    ("max_backoff", ParamTy::Duration),
];

const FILE: &[(&str, ParamTy)] = &[("path", ParamTy::Str), ("rotate_bytes", ParamTy::Positive)];

/// Every connector kind (§9).
const KINDS: &[Kind] = &[
    Kind {
        name: "mqtt",
        label: "MQTT",
        params: MQTT,
        required: &[&["host"]],
        source: true,
        pass_through: true,
    },
    Kind {
        name: "nats",
        label: "NATS",
        params: NATS,
        required: &[&["servers", "url", "host"]],
        source: true,
        pass_through: true,
    },
    Kind {
        name: "kafka",
        label: "Kafka",
        params: KAFKA,
        required: &[&["brokers", "url"]],
        source: true,
        pass_through: true,
    },
    Kind {
        name: "http",
        label: "HTTP",
        params: HTTP,
        required: &[&["url"]],
        source: false,
        pass_through: false,
    },
    Kind {
        name: "file",
        label: "file",
        params: FILE,
        required: &[&["path"]],
        source: false,
        pass_through: false,
    },
    Kind {
        name: "console",
        label: "console",
        params: &[],
        required: &[],
        source: false,
        pass_through: false,
    },
];

/// Names of every connector kind (for did-you-mean).
pub(super) fn kind_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name)
}

fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

impl<'a> Checker<'a> {
    /// Checks a `connector` declaration against its kind's table.
    pub(super) fn check_connector(&mut self, c: &'a ConnectorDecl) {
        let Some(kind) = kind(c.kind.name.as_str()) else {
            let hint = self
                .capped_suggest(&c.kind.name, kind_names())
                .map(|h| format!("did you mean `{h}`?"))
                .or_else(|| {
                    Some(format!(
                        "kinds: {}",
                        kind_names().collect::<Vec<_>>().join(", ")
                    ))
                });
            self.error_hint(
                format!("unknown connector kind `{}`", c.kind.name),
                c.kind.span,
                hint,
            );
            return;
        };
        let mut seen = HashMap::new();
        for a in &c.params {
            let Some(name) = &a.name else {
                self.check_param_value(&a.value);
                self.error_hint(
                    "connector parameters need a name",
                    a.span,
                    Some("write `param: value`, e.g. `url: \"http://localhost:8080\"`".into()),
                );
                continue;
            };
            self.dup_check(&mut seen, name, "parameter");
            let Some(&(_, ty)) = kind.params.iter().find(|(p, _)| *p == name.name) else {
                self.connector_value(&a.value, ParamTy::Str, true);
                let hint = self
                    .capped_suggest(&name.name, kind.params.iter().map(|(p, _)| *p))
                    .map(|h| format!("did you mean `{h}`?"));
                if kind.pass_through {
                    let fate = if kind.name == "kafka" {
                        "passed to the client as a property"
                    } else {
                        "ignored"
                    };
                    let mut d = Diagnostic::warning(
                        format!("unknown {} parameter `{}` ({fate})", kind.label, name.name),
                        name.span,
                    );
                    d.hint = hint;
                    self.diags.push(d);
                } else {
                    let hint = hint.or_else(|| {
                        let known: Vec<&str> = kind.params.iter().map(|(p, _)| *p).collect();
                        Some(if known.is_empty() {
                            format!("`{}()` takes no parameters", kind.name)
                        } else {
                            format!("parameters: {}", known.join(", "))
                        })
                    });
                    self.error_hint(
                        format!("unknown {} parameter `{}`", kind.label, name.name),
                        name.span,
                        hint,
                    );
                }
                continue;
            };
            if kind.name == "kafka" && name.name.starts_with("tls") {
                self.error_hint(
                    "TLS is not supported for Kafka connectors (librdkafka is built without OpenSSL)",
                    name.span,
                    Some("use a plaintext listener".into()),
                );
                continue;
            }
            if !self.connector_value(&a.value, ty, false) {
                let found = literal_type(&a.value);
                self.error(
                    format!(
                        "{} parameter `{}` must be {}, found {}",
                        kind.label,
                        name.name,
                        ty.describe(),
                        describe_found(&a.value, found)
                    ),
                    a.value.span,
                );
            }
        }
        for alternatives in kind.required {
            let present = c.params.iter().any(|a| {
                a.name
                    .as_ref()
                    .is_some_and(|n| alternatives.contains(&n.name.as_str()))
            });
            if !present {
                let what = alternatives
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                self.error_hint(
                    format!("{} connector `{}` needs {what}", kind.label, c.name.name),
                    c.span,
                    Some(format!("add `{}: …`", alternatives[0])),
                );
            }
        }
    }

    /// Checks a `.from`/`.to` binding against the kind of its connector (when declared here):
    /// output-only kinds cannot be read from, and `key:` is Kafka's only.
    pub(super) fn check_connector_binding(&mut self, conn: &Ident, op: &str, args: &[&Arg]) {
        let Some(decl) = self.connectors.get(conn.name.as_str()) else {
            return;
        };
        let Some(kind) = kind(decl.kind.name.as_str()) else {
            return;
        };
        if op == "from" && !kind.source {
            self.error_hint(
                format!(
                    "connector `{}` is of kind `{}`, which can only be written to",
                    conn.name, kind.name
                ),
                conn.span,
                Some(format!("use it with `.to({})`", conn.name)),
            );
        }
        for a in args {
            let Some(n) = &a.name else { continue };
            let allowed: &[&str] = match (kind.name, op) {
                ("kafka", "to") => &["topic", "key"],
                ("http" | "file" | "console", "to") => &[],
                _ => &["topic"],
            };
            if !allowed.contains(&n.name.as_str()) {
                let hint = if allowed.is_empty() {
                    format!("`.{op}({})` takes no parameters", conn.name)
                } else {
                    format!("parameters: {}", allowed.join(", "))
                };
                let message = format!(
                    "unknown `.{op}` parameter `{}` for a {} connector",
                    n.name, kind.label
                );
                if kind.pass_through {
                    let mut d = Diagnostic::warning(format!("{message} (ignored)"), n.span);
                    d.hint = Some(hint);
                    self.diags.push(d);
                } else {
                    self.error_hint(message, n.span, Some(hint));
                }
            } else if n.name == "key"
                && !matches!(a.value.kind, ExprKind::Name(_) | ExprKind::Str(_))
            {
                self.error(
                    "`key` must name a field of the event (e.g. `key: pump`)",
                    a.value.span,
                );
            }
        }
    }

    /// `.enrich(H, key: e, fields: [a, b], ttl: 60s, timeout: 500ms)` (docs/connectors.md): an
    /// HTTP connector, a key expression, field names, positive durations.
    pub(super) fn check_enrich(&mut self, op: &'a StreamOp) {
        let mut positional = op.args.iter().filter(|a| a.name.is_none());
        match positional.next().map(|a| &a.value.kind) {
            Some(ExprKind::Name(conn)) => {
                self.check_connector_ref(conn);
                if let Some(decl) = self.connectors.get(conn.name.as_str()) {
                    if decl.kind.name != "http" {
                        self.error_hint(
                            format!(
                                "`.enrich` needs an `http` connector; `{}` is of kind `{}`",
                                conn.name, decl.kind.name
                            ),
                            conn.span,
                            Some(format!(
                                "declare `connector {} = http(url: \"…\")`",
                                conn.name
                            )),
                        );
                    }
                }
            }
            _ => self.error_hint(
                "`.enrich` needs an HTTP connector name first",
                op.span,
                Some(
                    "write `.enrich(Ref, key: id, fields: [name], ttl: 60s, timeout: 500ms)`"
                        .into(),
                ),
            ),
        }
        if let Some(extra) = positional.next() {
            self.error(
                "`.enrich` takes one connector and named parameters",
                extra.span,
            );
        }
        let mut seen = HashMap::new();
        for a in op.args.iter() {
            let Some(n) = &a.name else { continue };
            self.dup_check(&mut seen, n, "parameter");
            match n.name.as_str() {
                "key" => {
                    self.expr(&a.value, super::Place::Stream);
                }
                "fields" => {
                    let ok = match &a.value.kind {
                        ExprKind::Array(items) => items
                            .iter()
                            .all(|i| matches!(i.kind, ExprKind::Name(_) | ExprKind::Str(_))),
                        _ => false,
                    };
                    if !ok {
                        self.error(
                            "`fields` must be an array of field names, e.g. `[name, zone]`",
                            a.value.span,
                        );
                    }
                }
                "ttl" | "timeout" => {
                    if !matches!(a.value.kind, ExprKind::Duration(d) if d > 0) {
                        self.error(
                            format!("`{}` must be a positive duration, e.g. `500ms`", n.name),
                            a.value.span,
                        );
                    }
                }
                other => {
                    let hint = self
                        .capped_suggest(other, ["key", "fields", "ttl", "timeout"])
                        .map(|h| format!("did you mean `{h}`?"));
                    self.error_hint(
                        format!("unknown `.enrich` parameter `{other}`"),
                        n.span,
                        hint,
                    );
                }
            }
        }
        if op.named("key").is_none() {
            self.error_hint(
                "`.enrich` needs `key: expression`",
                op.span,
                Some("e.g. `key: customer_id`".into()),
            );
        }
    }

    /// Whether `e` is a valid value of type `ty`; also reports values that are not literals.
    /// `quiet` only checks the value's shape (unknown parameters).
    fn connector_value(&mut self, e: &Expr, ty: ParamTy, quiet: bool) -> bool {
        if let ExprKind::Map(entries) = &e.kind {
            for entry in entries {
                if !matches!(entry.key.kind, ExprKind::Str(_) | ExprKind::Name(_)) {
                    self.error("map keys must be strings or names", entry.key.span);
                }
                self.check_param_value(&entry.value);
                if matches!(entry.value.kind, ExprKind::Map(_)) {
                    self.error("map values must be literals", entry.value.span);
                }
            }
            return quiet || ty == ParamTy::Map;
        }
        self.check_param_value(e);
        if quiet {
            return true;
        }
        let found = literal_type(e);
        let negative = matches!(
            e.kind,
            ExprKind::Unary {
                op: UnaryOp::Neg,
                ..
            }
        );
        if found == Ty::Unknown && !negative && !matches!(e.kind, ExprKind::Name(_)) {
            // Not a literal: `check_param_value` reported it already.
            return true;
        }
        match ty {
            ParamTy::Str => matches!(e.kind, ExprKind::Str(_) | ExprKind::Name(_)),
            ParamTy::Count => matches!(e.kind, ExprKind::Int(n) if n >= 0),
            ParamTy::Positive => matches!(e.kind, ExprKind::Int(n) if n > 0),
            ParamTy::Bool => found == Ty::Bool,
            ParamTy::Duration => found == Ty::Duration,
            ParamTy::StrList => match &e.kind {
                ExprKind::Str(_) | ExprKind::Name(_) => true,
                ExprKind::Array(items) => items
                    .iter()
                    .all(|i| matches!(i.kind, ExprKind::Str(_) | ExprKind::Name(_))),
                _ => false,
            },
            ParamTy::Map => false,
            ParamTy::OneOf(words) => match &e.kind {
                ExprKind::Str(s) => words.iter().any(|w| w.eq_ignore_ascii_case(s)),
                ExprKind::Name(n) => words.iter().any(|w| w.eq_ignore_ascii_case(&n.name)),
                _ => false,
            },
        }
    }
}

fn describe_found(e: &Expr, ty: Ty) -> String {
    match &e.kind {
        ExprKind::Str(s) => format!("\"{s}\""),
        ExprKind::Int(n) => n.to_string(),
        ExprKind::Name(n) => format!("`{}`", n.name),
        _ if ty.known() => ty.name().to_owned(),
        _ => "an expression".to_owned(),
    }
}
