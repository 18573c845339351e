//! Shared analysis of sequences and joins (VPL.md §7), used by the checker and the runtime so
//! both read a pattern the same way.
//!
//! * A **sequence** is a stream with `->` steps or an `all T` source. Its steps are the source
//!   (step 0) followed by the written steps; each step's *capture name* is its alias, else its
//!   event type name.
//! * A **join** `join(A, B).on(A.k == B.k)` relates its inputs by key: the condition is a
//!   conjunction of equalities `X.f == Y.g` between input fields. Equal terms form classes and
//!   every class must hold a field of every input; the key of an input is then its field in each
//!   class, in class order.

use crate::ast::{
    BinaryOp, Expr, ExprKind, Ident, OpKind, PatternDecl, Program, SourceKind, StreamDecl,
    SubStream,
};
use crate::span::Span;

/// One step of a sequence, the source included (step 0).
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// `all` (Kleene) step.
    pub all: bool,
    /// Event type the step waits for.
    pub event: &'a Ident,
    /// `where` filter.
    pub filter: Option<&'a Expr>,
    /// Name under which later steps and operators read the captured event (alias or type).
    pub capture: &'a Ident,
    /// Written with `.increasing(f)` / `.decreasing(f)`.
    pub trend: bool,
    /// Where the step was written.
    pub span: Span,
}

/// Whether the stream is a sequence (has `->` steps or an `all T` source).
pub fn is_sequence(s: &StreamDecl) -> bool {
    !s.steps.is_empty() || matches!(s.source.kind, SourceKind::All { .. })
}

/// The steps of a sequence stream, source first; `None` when the source cannot start a
/// sequence (`merge(…)`, `join(…)`).
pub fn sequence_steps(s: &StreamDecl) -> Option<Vec<Step<'_>>> {
    let src = s.source.kind.event_source()?;
    let first = Step {
        all: src.all,
        event: src.name,
        filter: src.filter,
        trend: src.trend,
        capture: src.alias.unwrap_or(src.name),
        span: s.source.span,
    };
    let mut steps = vec![first];
    steps.extend(s.steps.iter().map(|st| Step {
        all: st.all,
        event: &st.event,
        filter: st.filter.as_ref(),
        trend: st.trend,
        capture: st.alias.as_ref().unwrap_or(&st.event),
        span: st.span,
    }));
    Some(steps)
}

/// Every event type or stream the stream reads, in first-mention order without duplicates: its
/// source inputs, then sequence step types, then `.not(T …)` types.
pub fn stream_inputs(s: &StreamDecl) -> Vec<&Ident> {
    let sources = s.source.kind.input_names().into_iter();
    first_mentions(
        sources
            .chain(s.steps.iter().map(|st| &st.event))
            .chain(not_types(s)),
    )
}

/// The event types of the stream's `.not(T …)` operators.
fn not_types(s: &StreamDecl) -> impl Iterator<Item = &Ident> {
    s.ops
        .iter()
        .filter(|o| o.kind() == OpKind::Not)
        .filter_map(|o| match &o.first_positional()?.kind {
            ExprKind::EventFilter { event, .. } => Some(event),
            ExprKind::Name(id) => Some(id),
            _ => None,
        })
}

/// `names` in first-mention order without duplicates.
fn first_mentions<'a>(names: impl Iterator<Item = &'a Ident>) -> Vec<&'a Ident> {
    let mut out: Vec<&Ident> = Vec::new();
    for id in names {
        if !out.iter().any(|o| o.name == id.name) {
            out.push(id);
        }
    }
    out
}

/// The named pattern a stream reads (`stream S = P …`), if its source names one.
pub fn stream_pattern<'a>(program: &'a Program, s: &StreamDecl) -> Option<&'a PatternDecl> {
    match &s.source.kind {
        SourceKind::Named { name, .. } if s.steps.is_empty() => program.pattern(&name.name),
        _ => None,
    }
}

/// Every event type or stream the stream reads, like [`stream_inputs`], with a named pattern
/// source replaced by the types its items read (negated items included).
pub fn stream_reads<'a>(program: &'a Program, s: &'a StreamDecl) -> Vec<&'a Ident> {
    let Some(p) = stream_pattern(program, s) else {
        return stream_inputs(s);
    };
    let items = p.body.items();
    first_mentions(items.iter().map(|i| &i.event).chain(not_types(s)))
}

/// Name of a `merge`/`join` input: `S` for `stream S = A …`, else the source `A`.
pub fn input_name(input: &SubStream) -> &Ident {
    input.name.as_ref().unwrap_or(&input.source)
}

/// Every `.on(c)` condition of a join: those written on the inputs, then on the stream.
pub fn join_conditions<'a>(inputs: &'a [SubStream], s: &'a StreamDecl) -> Vec<&'a Expr> {
    inputs
        .iter()
        .flat_map(|i| i.ops.iter())
        .chain(s.ops.iter())
        .filter(|o| o.kind() == OpKind::On)
        .filter_map(|o| o.first_positional())
        .collect()
}

/// Why a join condition cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinKeyError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// How to fix it.
    pub hint: Option<String>,
}

fn key_error(message: impl Into<String>, span: Span, hint: Option<&str>) -> JoinKeyError {
    JoinKeyError {
        message: message.into(),
        span,
        hint: hint.map(str::to_string),
    }
}

const ON_HINT: &str = "write `.on(A.key == B.key)`, joining several keys with `and`";

fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::And,
            lhs,
            rhs,
        } => {
            conjuncts(lhs, out);
            conjuncts(rhs, out);
        }
        _ => out.push(e),
    }
}

/// `(input index, field)` of an `X.f` term.
fn term(
    e: &Expr,
    names: &[&str],
    types: &[&str],
    warnings: &mut Vec<(Span, String)>,
) -> Result<(usize, String), JoinKeyError> {
    match &e.kind {
        ExprKind::Field { base, name, .. } => match &base.kind {
            ExprKind::Name(x) => match names.iter().position(|n| *n == x.name) {
                Some(i) => Ok((i, name.name.clone())),
                // Leniency: an input named by its event type (`.on(OrderEvent.id == …)` for
                // `stream Orders = OrderEvent`), when exactly one input reads that type.
                None if types.iter().filter(|t| **t == x.name).count() == 1 => {
                    let i = types.iter().position(|t| *t == x.name).unwrap_or(0);
                    warnings.push((
                        x.span,
                        format!(
                            "`{}` is the event type of input `{}`; name the input instead",
                            x.name,
                            names.get(i).copied().unwrap_or("?")
                        ),
                    ));
                    Ok((i, name.name.clone()))
                }
                None => Err(key_error(
                    format!("`{}` is not an input of this join", x.name),
                    x.span,
                    Some(&format!("the inputs are {}", quoted(names))),
                )),
            },
            _ => Err(key_error(
                "a join key must be `Input.field`",
                e.span,
                Some(ON_HINT),
            )),
        },
        _ => Err(key_error(
            "a join key must be `Input.field`",
            e.span,
            Some(ON_HINT),
        )),
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The equality classes of a join's `.on` conditions: each class lists the `(input, field)`
/// terms that must be equal, in first-mention order. Every input is related to the others
/// through the classes (directly or through other inputs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinGraph {
    /// The classes of equal terms.
    pub classes: Vec<Vec<(usize, String)>>,
}

impl JoinGraph {
    /// The classes holding a field of both inputs, in class order.
    pub fn shared(&self, a: usize, b: usize) -> Vec<usize> {
        (0..self.classes.len())
            .filter(|c| self.field(*c, a).is_some() && self.field(*c, b).is_some())
            .collect()
    }

    /// The field of `input` in class `class`, if it has one.
    pub fn field(&self, class: usize, input: usize) -> Option<&str> {
        self.classes
            .get(class)?
            .iter()
            .find(|(i, _)| *i == input)
            .map(|(_, f)| f.as_str())
    }

    /// Whether one class holds a field of every input (a single shared key, VPL.md §7).
    pub fn single_key(&self, inputs: usize) -> bool {
        self.classes
            .iter()
            .all(|c| (0..inputs).all(|i| c.iter().any(|(x, _)| *x == i)))
    }
}

/// Derives the key fields of every input when the `.on` conditions give every input a field in
/// every class (one shared key); `names` are the input names in order.
pub fn join_keys(names: &[&str], conds: &[&Expr]) -> Result<Vec<Vec<String>>, JoinKeyError> {
    let (g, _) = join_graph_lenient(names, &[], conds)?;
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for c in 0..g.classes.len() {
        for (i, k) in keys.iter_mut().enumerate() {
            match g.field(c, i) {
                Some(f) => k.push(f.to_string()),
                None => {
                    return Err(key_error(
                        format!("`{}` has no field in every join key", names[i]),
                        Span::default(),
                        None,
                    ))
                }
            }
        }
    }
    Ok(keys)
}

/// The join graph, and warnings (position, message) about inputs named by event type.
pub type LenientGraph = (JoinGraph, Vec<(Span, String)>);

/// Reads the `.on` conditions into a [`JoinGraph`], also accepting an input named by its event
/// type (`types`, per input) when that is unambiguous (each such use gives a warning).
pub fn join_graph_lenient(
    names: &[&str],
    types: &[&str],
    conds: &[&Expr],
) -> Result<LenientGraph, JoinKeyError> {
    let mut warnings = Vec::new();
    let g = join_graph_inner(names, types, conds, &mut warnings)?;
    Ok((g, warnings))
}

fn join_graph_inner(
    names: &[&str],
    types: &[&str],
    conds: &[&Expr],
    warnings: &mut Vec<(Span, String)>,
) -> Result<JoinGraph, JoinKeyError> {
    let mut leaves = Vec::new();
    for c in conds {
        conjuncts(c, &mut leaves);
    }
    // Classes of equal terms, each a list of (input, field), in first-mention order.
    let mut classes: Vec<Vec<(usize, String)>> = Vec::new();
    for leaf in &leaves {
        let ExprKind::Binary {
            op: BinaryOp::Eq,
            lhs,
            rhs,
        } = &leaf.kind
        else {
            return Err(key_error(
                "a join condition must equate fields of two inputs",
                leaf.span,
                Some(ON_HINT),
            ));
        };
        let (a, b) = (
            term(lhs, names, types, warnings)?,
            term(rhs, names, types, warnings)?,
        );
        if a.0 == b.0 {
            return Err(key_error(
                "a join condition must relate two different inputs",
                leaf.span,
                Some(ON_HINT),
            ));
        }
        let ca = classes.iter().position(|c| c.contains(&a));
        let cb = classes.iter().position(|c| c.contains(&b));
        match (ca, cb) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                let (lo, hi) = (x.min(y), x.max(y));
                let moved = classes.remove(hi);
                if let Some(c) = classes.get_mut(lo) {
                    c.extend(moved);
                }
            }
            (Some(x), None) => {
                if let Some(c) = classes.get_mut(x) {
                    c.push(b);
                }
            }
            (None, Some(y)) => {
                if let Some(c) = classes.get_mut(y) {
                    c.push(a);
                }
            }
            (None, None) => classes.push(vec![a, b]),
        }
    }
    let Some(first) = leaves.first() else {
        return Ok(JoinGraph::default());
    };
    // Every input must be reachable from the first one through the classes.
    let mut reached = vec![false; names.len()];
    if let Some(r) = reached.first_mut() {
        *r = true;
    }
    loop {
        let mut grew = false;
        for class in &classes {
            if class.iter().any(|(i, _)| reached.get(*i) == Some(&true)) {
                for (i, _) in class {
                    if let Some(r) = reached.get_mut(*i) {
                        grew |= !*r;
                        *r = true;
                    }
                }
            }
        }
        if !grew {
            break;
        }
    }
    if let Some(i) = reached.iter().position(|r| !r) {
        return Err(key_error(
            format!(
                "the join conditions do not relate `{}` to `{}`",
                names.get(i).copied().unwrap_or("?"),
                names.first().copied().unwrap_or("?")
            ),
            first.span,
            Some("relate every input to another one, e.g. `A.k == B.k and B.j == C.j`"),
        ));
    }
    Ok(JoinGraph { classes })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cond(src: &str) -> Expr {
        let (p, d) = crate::parse(&format!("stream S = X .where({src})"));
        assert!(d.is_empty(), "{d:?}");
        let s = p.streams().next().unwrap().clone();
        s.ops[0].first_positional().unwrap().clone()
    }

    #[test]
    fn keys_per_input_in_class_order() {
        let c = cond("A.k == B.id and B.z == A.y and C.key == B.id");
        let keys = join_keys(&["A", "B", "C"], &[&c]);
        assert!(keys.is_err(), "class of y/z lacks C: {keys:?}");
        let (g, _) = join_graph_lenient(&["A", "B", "C"], &[], &[&c]).unwrap();
        assert!(!g.single_key(3));
        assert_eq!(g.shared(0, 1), vec![0, 1]);
        assert_eq!(g.shared(1, 2), vec![0]);
        assert_eq!(g.field(1, 0), Some("y"));
        let c = cond("A.k == B.id and B.z == A.y");
        assert_eq!(
            join_keys(&["A", "B"], &[&c]).unwrap(),
            vec![vec!["k", "y"], vec!["id", "z"]]
        );
        let c = cond("A.k == B.k and C.j == D.j");
        let e = join_graph_lenient(&["A", "B", "C", "D"], &[], &[&c]).unwrap_err();
        assert_eq!(e.message, "the join conditions do not relate `C` to `A`");
    }

    #[test]
    fn bad_conditions_are_explained() {
        let msg = |s: &str| join_keys(&["A", "B"], &[&cond(s)]).unwrap_err().message;
        assert_eq!(
            msg("A.k == A.j"),
            "a join condition must relate two different inputs"
        );
        assert_eq!(msg("A.k == Q.k"), "`Q` is not an input of this join");
        assert_eq!(
            msg("A.k > B.k"),
            "a join condition must equate fields of two inputs"
        );
        assert_eq!(msg("A.k == 3"), "a join key must be `Input.field`");
    }
}
