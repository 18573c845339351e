//! The table of built-in functions (§11.2 scalar built-ins, §6.2 aggregates) with their arities.
//!
//! Beyond §6.2, the aggregates of the existing product are known: `percentile(e, q)`,
//! `median(e)`, `p50/p95/p99(e)` (linear interpolation between sorted values), `collect(e)` (the
//! non-null values as an array) and `distinct_count(e)` (= `count_distinct`).
//!
//! Shared by the checker (unknown function / wrong arity diagnostics) and the runtime (dispatch).

/// Where a built-in may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinKind {
    /// An ordinary per-value function.
    Scalar,
    /// Only meaningful inside `.aggregate(…)` (Tier 2).
    Aggregate,
    /// A scalar function that is also an aggregate (`sum`, `avg`, `min`, `max`, `first`, `last`).
    Both,
}

/// One built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Builtin {
    /// Function name.
    pub name: &'static str,
    /// Fewest arguments accepted.
    pub min_args: usize,
    /// Most arguments accepted.
    pub max_args: usize,
    /// Scalar, aggregate or both.
    pub kind: BuiltinKind,
}

impl Builtin {
    /// True when `n` arguments are accepted.
    pub fn accepts(&self, n: usize) -> bool {
        (self.min_args..=self.max_args).contains(&n)
    }

    /// Human-readable arity (`1`, `2 or 3`, `0 to 1`).
    pub fn arity_text(&self) -> String {
        if self.min_args == self.max_args {
            self.min_args.to_string()
        } else if self.max_args == self.min_args + 1 {
            format!("{} or {}", self.min_args, self.max_args)
        } else {
            format!("{} to {}", self.min_args, self.max_args)
        }
    }
}

const fn b(name: &'static str, min_args: usize, max_args: usize, kind: BuiltinKind) -> Builtin {
    Builtin {
        name,
        min_args,
        max_args,
        kind,
    }
}

use BuiltinKind::{Aggregate as A, Both as B, Scalar as S};

/// Every built-in, sorted by name.
///
/// `min`/`max` take one argument as aggregates (or over an array) and two as scalars.
/// `round` takes an optional number of decimals; `get` an optional default.
pub static BUILTINS: &[Builtin] = &[
    b("abs", 1, 1, S),
    b("all", 2, 2, S),
    b("any", 2, 2, S),
    b("avg", 1, 1, B),
    b("ceil", 1, 1, S),
    b("collect", 1, 1, A),
    b("contains", 2, 2, S),
    b("cos", 1, 1, S),
    b("count", 0, 1, A),
    b("count_distinct", 1, 1, A),
    b("distinct", 1, 1, A),
    b("distinct_count", 1, 1, A),
    b("ema", 2, 2, A),
    b("ends_with", 2, 2, S),
    b("exp", 1, 1, S),
    b("filter", 2, 2, S),
    b("first", 1, 1, B),
    b("flatten", 1, 1, S),
    b("floor", 1, 1, S),
    b("get", 2, 3, S),
    b("is_array", 1, 1, S),
    b("is_bool", 1, 1, S),
    b("is_float", 1, 1, S),
    b("is_int", 1, 1, S),
    b("is_map", 1, 1, S),
    b("is_null", 1, 1, S),
    b("is_string", 1, 1, S),
    b("join", 2, 2, S),
    b("keys", 1, 1, S),
    b("last", 1, 1, B),
    b("len", 1, 1, S),
    b("log", 1, 1, S),
    b("log10", 1, 1, S),
    b("lower", 1, 1, S),
    b("map", 2, 2, S),
    b("max", 1, 2, B),
    b("median", 1, 1, A),
    b("min", 1, 2, B),
    b("p50", 1, 1, A),
    b("p95", 1, 1, A),
    b("p99", 1, 1, A),
    b("percentile", 2, 2, A),
    b("pop", 1, 1, S),
    b("pow", 2, 2, S),
    b("push", 2, 2, S),
    b("range", 1, 2, S),
    b("replace", 3, 3, S),
    b("reverse", 1, 1, S),
    b("round", 1, 2, S),
    b("set", 3, 3, S),
    b("sin", 1, 1, S),
    b("sliding_pairs", 1, 1, S),
    b("sort", 1, 1, S),
    b("split", 2, 2, S),
    b("sqrt", 1, 1, S),
    b("starts_with", 2, 2, S),
    b("stddev", 1, 1, A),
    b("substring", 2, 3, S),
    b("sum", 1, 1, B),
    b("tan", 1, 1, S),
    b("to_float", 1, 1, S),
    b("to_int", 1, 1, S),
    b("to_string", 1, 1, S),
    b("trim", 1, 1, S),
    b("type_of", 1, 1, S),
    b("upper", 1, 1, S),
    b("values", 1, 1, S),
    b("variance", 1, 1, B),
];

/// For built-ins that take a function (`filter(xs, x => …)`), the position of that argument.
pub fn lambda_arg(name: &str) -> Option<usize> {
    match name {
        "filter" | "map" | "any" | "all" => Some(1),
        _ => None,
    }
}

/// Looks up a built-in by name.
pub fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS
        .binary_search_by(|b| b.name.cmp(name))
        .ok()
        .and_then(|i| BUILTINS.get(i))
}

/// Functions usable as aggregates inside `.aggregate(…)` (VPL.md §6.2).
pub const AGGREGATE_FUNCTIONS: &[&str] = &[
    "count",
    "count_distinct",
    "sum",
    "avg",
    "stddev",
    "min",
    "max",
    "first",
    "last",
    "ema",
    "variance",
    "percentile",
    "median",
    "p50",
    "p95",
    "p99",
    "collect",
    "distinct_count",
];

/// Whether `name(…)` with `argc` arguments is an aggregate call inside `.aggregate(…)`
/// (`min`/`max` with two arguments stay scalar).
pub fn is_aggregate_call(name: &str, argc: usize) -> bool {
    match name {
        "count" => argc <= 1,
        "count_distinct" | "distinct_count" | "sum" | "avg" | "stddev" | "variance" | "min"
        | "max" | "first" | "last" | "median" | "p50" | "p95" | "p99" | "collect" => argc == 1,
        "ema" | "percentile" => argc == 2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_so_lookup_finds_everything() {
        for w in BUILTINS.windows(2) {
            assert!(w[0].name < w[1].name, "{} >= {}", w[0].name, w[1].name);
        }
        for bi in BUILTINS {
            assert_eq!(lookup(bi.name), Some(bi));
        }
        assert_eq!(lookup("nosuch"), None);
    }

    #[test]
    fn arity_ranges() {
        let sub =
            lookup("substring").map(|b| (b.accepts(1), b.accepts(2), b.accepts(3), b.accepts(4)));
        assert_eq!(sub, Some((false, true, true, false)));
        assert_eq!(
            lookup("round").map(|b| b.arity_text()),
            Some("1 or 2".to_string())
        );
    }
}
