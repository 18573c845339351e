//! The state shape of a program, and what changes between two versions.
//!
//! A pipeline's engine state is made of its top-level variables and, per stream, the state of
//! its sequence steps and operators. Two versions of a program whose shapes are equal — the
//! same variables, the same streams with the same steps and operators in the same order — keep
//! compatible state: a rolling update may carry the old version's state into the new one.
//! Anything else needs the new version to start empty. Pure analysis of the parsed program.

use crate::ast::{Item, Program};

/// The state-relevant shape of `program`: `var <name>` per top-level variable, then
/// `stream <name> (<n> steps) .<op> .<op>` per stream, in program order.
pub fn state_shape(program: &Program) -> Vec<String> {
    let mut shape = Vec::new();
    for item in &program.items {
        match item {
            Item::Binding(b) => shape.push(format!("var {}", b.name.name)),
            Item::Stream(s) => {
                let ops: Vec<&str> = s.ops.iter().map(|o| o.name.name.as_str()).collect();
                shape.push(format!(
                    "stream {} ({} steps) .{}",
                    s.name.name,
                    s.steps.len(),
                    ops.join(" .")
                ));
            }
            _ => {}
        }
    }
    shape
}

/// Why the state of `old` cannot continue in `new`, one reason per line (`` `x` is gone``,
/// `` `y` is new``, or that they are reordered); empty when the shapes are equal. Both sources
/// are parsed with error recovery: callers check them first.
pub fn shape_changes(old: &str, new: &str) -> Vec<String> {
    let (a, b) = (
        state_shape(&crate::parse(old).0),
        state_shape(&crate::parse(new).0),
    );
    if a == b {
        return Vec::new();
    }
    let removed = a.iter().filter(|x| !b.contains(x));
    let added = b.iter().filter(|x| !a.contains(x));
    let mut out: Vec<String> = removed
        .map(|x| format!("`{x}` is gone"))
        .chain(added.map(|x| format!("`{x}` is new")))
        .collect();
    if out.is_empty() {
        out.push("streams or variables are reordered".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTER: &str = "var count = 0\nfn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v)\nstream S = Tick .process(bump(v))\n";

    #[test]
    fn same_streams_and_operators_keep_the_state() {
        let changed = COUNTER.replace(
            "emit Count(n: count, v: v)",
            "emit Count(n: count, v: v * 2)",
        );
        assert!(shape_changes(COUNTER, &changed).is_empty());
        assert_eq!(
            state_shape(&crate::parse(COUNTER).0),
            ["var count", "stream S (0 steps) .process"]
        );
    }

    #[test]
    fn a_new_operator_or_stream_needs_a_reset() {
        let filtered = COUNTER.replace(".process(bump(v))", ".where(v > 0) .process(bump(v))");
        let why = shape_changes(COUNTER, &filtered);
        assert!(!why.is_empty());
        assert!(why.iter().any(|w| w.contains("where")), "{why:?}");
        let renamed = COUNTER.replace("stream S", "stream T");
        assert_eq!(shape_changes(COUNTER, &renamed).len(), 2);
        let no_var = COUNTER.replace("var count = 0", "var total = 0");
        assert!(!shape_changes(COUNTER, &no_var).is_empty());
        let swapped = "stream A = X .emit(v: 1)\nstream B = Y .emit(v: 2)\n";
        let reordered = "stream B = Y .emit(v: 2)\nstream A = X .emit(v: 1)\n";
        assert_eq!(
            shape_changes(swapped, reordered),
            ["streams or variables are reordered"]
        );
    }
}
