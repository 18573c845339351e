//! Checker unit tests for Tier 3: one per diagnostic with its line and column, the leniencies
//! (warnings, not errors) and accepted programs.

use super::*;

/// Every diagnostic as `line:col severity: message` (errors if any, else warnings).
fn diags(src: &str) -> Vec<String> {
    let show = |d: &Diagnostic| {
        let sev = if d.is_error() { "error" } else { "warning" };
        format!("{}:{} {sev}: {}", d.span.line, d.span.column, d.message)
    };
    match crate::check(src, &CheckOptions::default()) {
        Ok(c) => c.warnings.iter().map(show).collect(),
        Err(d) => d.iter().map(show).collect(),
    }
}

fn accepted(src: &str) {
    if let Err(d) = crate::check(src, &CheckOptions::default()) {
        panic!("{src}\n{}", crate::render_all(src, "t.vpl", &d));
    }
}

#[test]
fn tier3_programs_are_accepted() {
    accepted(
        "event Order:\n    id: str\n    amount: float\nevent Shipped:\n    id: str\n\
         pattern Slow = SEQ(Order as o, NOT Shipped where id == o.id) within 2h partition by id\n\
         stream Late = Slow .where(o.amount > 10.0) .emit(order: o.id)\n\
         pattern Arrow = Order as o -> all Shipped where id == o.id as s -> NOT Order within 5m\n\
         stream A2 = Arrow .emit()\n\
         pattern Any = OR(Order, Shipped as sh)\nstream A3 = Any .emit()\n\
         pattern Both = AND(Order as x, SEQ(Shipped as y, Order? as z)) within 1m\nstream A4 = Both .emit()\n\
         pattern Br = Order[amount > 5.0] as b -> Shipped+ as c\nstream A5 = Br .emit()\n\
         stream T = timer(5s, initial_delay: 1s) .emit(at: timestamp)\n\
         stream D = Order .distinct(id) .limit(10) .first() .print(\"x\", id) .log(level: \"warn\", message: \"m\", data: id) .emit as Alert(i: id)\n\
         stream W = Order .watermark(out_of_order: 5s) .allowed_lateness(10s) .window(1m) .pattern(big: events => len(events) > 2) .aggregate(n: count(), v: variance(amount)) .emit()\n\
         stream Sq = sequence(a: Order, b: Shipped where id == a.id .within(1h)) .emit()\n\
         type Money = float\ntype Ids = [str]\n\
         let twice = x => x * 2\n\
         stream L = Order .emit(t: twice(amount), f: filter([1, 2], v => v > 1), p: sliding_pairs([1, 2, 3]).map((a, b) => b - a))\n",
    );
}

#[test]
fn pattern_misuse_is_reported_with_positions() {
    assert_eq!(
        diags("pattern P = SEQ(A as a, B as a)\n"),
        ["1:30 error: two pattern items are named `a`"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A where v == b.v as a, B as b)\n"),
        ["1:30 error: `b` is not captured yet"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A as a, NOT B)\n"),
        ["1:13 error: a pattern that can end in `NOT` needs `within`: the absence is confirmed at the deadline"]
    );
    assert_eq!(
        diags("pattern P = AND(A, NOT B) within 1m\n"),
        ["1:20 error: `NOT` is only allowed in a sequence, not in `AND`"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A, NOT B as b) within 1m\n"),
        ["1:29 error: a `NOT` item captures nothing"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A*, B?)\n"),
        ["1:13 error: this pattern can match without any event"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A, B) within 5\n"),
        ["1:30 error: `within` needs a positive duration literal"]
    );
    assert_eq!(
        diags("pattern P = A -> B within 1m -> C within 5m\nstream S = P .emit()\n"),
        unknown_types(&["A", "B", "C"], &[(1, 13), (1, 18), (1, 33)])
            .chain([
                "1:42 warning: several `within` clauses: the last one bounds the whole pattern"
                    .to_string()
            ])
            .collect::<Vec<_>>()
    );
    assert_eq!(
        diags("pattern P = SEQ(A, B)\nevent P:\n    x: int\n"),
        ["2:7 error: duplicate type name `P`"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A as a, B)\nstream S = P as x .emit()\n"),
        ["2:17 error: a pattern source takes no alias: `P` names its captures itself"]
    );
    assert_eq!(
        diags("pattern P = SEQ(A, B)\nstream S = P .window(5s) .aggregate(n: count())\n"),
        [
            "2:15 error: `.window` cannot be used on a sequence stream",
            "2:27 error: `.aggregate` cannot be used on a sequence stream"
        ]
    );
    // `count(capture)`: the events a capture took (sequences and patterns only).
    accepted("event T:\n    v: int\npattern R = T as t0 -> T+ as r\nstream S = R .where(count(r) >= 2) .emit(n: count(r) + 1)\nstream Q = T as a -> all T as b .within(1m) .emit(n: count(b))\n");
    assert_eq!(
        diags("event T:\n    v: int\nstream S = T .emit(n: count(v))\n"),
        ["3:23 error: `count` is an aggregate function; it is only allowed in `.aggregate(…)`"]
    );
    // A Kleene item's filter may read its own capture (the previous event).
    accepted("event T:\n    v: int\npattern R = T as t0 -> all T where v > r.v as r\nstream S = R .emit()\n");
}

/// The warnings for undeclared types `names` at the given positions.
fn unknown_types<'a>(names: &'a [&str], at: &'a [(u32, u32)]) -> impl Iterator<Item = String> + 'a {
    names.iter().zip(at).map(|(n, (l, c))| {
        format!("{l}:{c} warning: `{n}` is neither a declared event type nor a stream; it is treated as an event type")
    })
}

#[test]
fn tier3_operator_misuse_is_reported_with_positions() {
    let e = "event A:\n    x: int\n";
    let at2 = |s: &str| diags(&format!("{e}{s}\n"));
    assert_eq!(
        at2("stream S = A .limit(x)"),
        ["3:21 error: `.limit` needs a non-negative integer literal"]
    );
    assert_eq!(
        at2("stream S = A .first(2)"),
        ["3:21 error: `.first()` takes no arguments"]
    );
    assert_eq!(
        at2("stream S = A .distinct(k: x)"),
        ["3:24 error: `.distinct` takes no named arguments"]
    );
    assert_eq!(
        at2("stream S = A .print(t: x)"),
        ["3:21 error: `.print` takes values to print, not named arguments"]
    );
    assert_eq!(
        at2("stream S = A .log(level: \"loud\")"),
        ["3:26 error: unknown log level"]
    );
    assert_eq!(
        at2("stream S = A .log(lvl: \"info\")"),
        ["3:19 error: unknown `.log` parameter `lvl`"]
    );
    assert_eq!(
        at2("stream S = A .watermark()"),
        ["3:14 error: `.watermark` needs the out-of-order bound"]
    );
    assert_eq!(
        at2("stream S = A .watermark(out_of_order: 5)"),
        ["3:39 error: the out-of-order bound must be a duration literal (e.g. `5s`, `500ms`)"]
    );
    assert_eq!(
        at2("stream S = A .watermark(out_of_order: 1s) .watermark(out_of_order: 2s)"),
        ["3:43 error: a stream can have only one `.watermark`"]
    );
    assert_eq!(
        at2("stream S = A .allowed_lateness(x)"),
        ["3:32 error: the allowed lateness must be a duration literal (e.g. `5s`, `500ms`)"]
    );
    assert_eq!(
        at2("stream S = A .window(3) .allowed_lateness(1s)"),
        ["3:25 warning: `.allowed_lateness` has no effect on a count window: late events are dropped"]
    );
    assert_eq!(
        at2("stream S = A .window(5s) .aggregate(n: count()) .pattern(p: e => true)"),
        ["3:49 error: `.pattern` must come before `.aggregate`"]
    );
    assert_eq!(
        at2("stream S = A .pattern(e => true)"),
        ["3:14 error: `.pattern` takes one named lambda over the window's events"]
    );
    assert_eq!(
        at2("stream S = A .pattern(p: (a, b) => true)"),
        ["3:14 error: the `.pattern` lambda takes one parameter: the window's events"]
    );
    assert_eq!(
        at2("stream S = timer(0s)"),
        ["3:18 error: the timer period must be positive"]
    );
    assert_eq!(
        at2("stream S = timer(5s, every: 1s)"),
        ["3:22 error: unknown `timer` parameter `every`"]
    );
    assert_eq!(
        at2("stream S = timer(initial_delay: 1s)"),
        ["3:12 error: `timer` needs a period"]
    );
    assert_eq!(
        at2("stream S = A .forecast(confidence: 0.5)"),
        ["3:15 error: `.forecast` is not supported: pattern forecasting needs a learned prediction model that this runtime does not have"]
    );
    assert_eq!(at2("stream S = A .score(model: \"m.onnx\")"), ["3:15 error: `.score` is not supported: ONNX model scoring is not available in this runtime"]);
    assert_eq!(
        at2("stream S = A .trend_aggregate(n: count_trends())"),
        ["3:15 error: `.trend_aggregate` needs a `->` sequence with an `all` step"]
    );
    // `.enrich` is supported over HTTP connectors (check/tests_connector.rs).
    assert!(at2("stream S = A .enrich(Ref, key: x)")[0]
        .starts_with("3:22 error: unknown connector `Ref`"));
}

#[test]
fn unknown_operators_are_named_even_with_unparsable_arguments() {
    let e = "event A:\n    x: int\n";
    assert_eq!(
        diags(&format!("{e}stream S = A .order_by(x desc)\n")),
        ["3:15 error: unknown operator `.order_by`"]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = A .fork(a: A .where(x > 1), b: A)\n"
        )),
        ["3:15 error: unknown operator `.fork`"]
    );
    for op in [
        "map",
        "tap",
        "collect",
        "any",
        "all",
        "concurrent",
        "on_error",
    ] {
        let d = diags(&format!("{e}stream S = A .{op}(x => x)\n"));
        assert_eq!(d, [format!("3:15 error: unknown operator `.{op}`")], "{op}");
    }
}

#[test]
fn leniencies_are_warnings() {
    let types = "event O:\n    id: int\nevent C:\n    oid: int\n";
    assert_eq!(
        diags(&format!(
            "{types}stream J = join(O, C) .on(O.id == C.oid) .emit()\n"
        )),
        ["5:12 warning: a join without `.window` keeps partner events for 1 minute"]
    );
    assert_eq!(
        diags(&format!("{types}stream J = join(stream Os = O, stream Cs = C) .on(O.id == C.oid) .window(1m) .emit()\n")),
        [
            "5:51 warning: `O` is the event type of input `Os`; name the input instead",
            "5:59 warning: `C` is the event type of input `Cs`; name the input instead"
        ]
    );
    assert_eq!(
        diags(&format!("{types}stream J = join(stream Os = O, stream Cs = C on Os.id == Cs.oid) .window(1m) .emit()\n")),
        Vec::<String>::new()
    );
    assert_eq!(
        diags(&format!(
            "{types}stream S = O as o -> C as c .within(1m) .within(5m) .emit()\n"
        )),
        ["5:41 warning: several `.within`: the last one bounds the whole pattern"]
    );
    assert_eq!(
        diags(&format!("{types}stream W = O .window(5m, policy: \"watermark\") .aggregate(n: count())\n")),
        ["5:26 warning: `policy:` is ignored: time windows always fire when the watermark passes their end"]
    );
    assert_eq!(
        diags("config mqtt {\n    host: \"x\"\n}\nevent A:\n    x: int\n"),
        ["1:1 warning: `config` blocks are deprecated and ignored"]
    );
    assert_eq!(
        diags("config:\n    a: 1\n    b: [1, 2]\n"),
        ["1:1 warning: `config` blocks are deprecated and ignored"]
    );
    assert_eq!(
        diags(&format!(
            "{types}stream S = O .where(id > 1 && id < 5 || id == 9) .emit()\n"
        )),
        [
            "5:28 warning: `&&` is read as `and`",
            "5:38 warning: `||` is read as `or`"
        ]
    );
    // The first step of a sequence may be filtered, `as` may precede `where`, a step's filter may
    // name its own capture; without steps `T where c as a` is a filter.
    assert_eq!(
        diags(&format!("{types}stream S = O where id > 1 as o -> C as c where c.oid == o.id .within(1m) .emit()\nstream F = O where id > 1 as o .emit(id: o.id)\n")),
        Vec::<String>::new()
    );
}

#[test]
fn lambdas_types_and_events() {
    assert_eq!(
        diags("type A = B\ntype B = A\n")[0],
        "1:1 error: type alias `A` refers to itself"
    );
    assert_eq!(
        diags("event A extends B:\n    x: int\nevent B extends A:\n    y: int\n")[0],
        "1:17 error: event `A` extends itself: A extends B extends A"
    );
    assert_eq!(
        diags("event B:\n    x: int\nevent A extends B:\n    x: int\n"),
        ["4:5 error: field `x` is already declared by base event `B`"]
    );
    assert_eq!(
        diags("let f = (x, x) => x\n"),
        ["1:13 error: duplicate parameter name `x`"]
    );
    assert_eq!(
        diags("stream S = A .emit(v: any([1], 2))\n")[0],
        "1:32 error: `any` needs a function as its second argument"
    );
    assert_eq!(
        diags("stream S = A .emit(v: map([1], (a, b, c) => a))\n")[0],
        "1:32 error: the function given to `map` takes one parameter (or two for pairs)"
    );
}

#[test]
fn template_and_import_misuse() {
    assert_eq!(
        diags("for i in x..3:\n    stream S{i} = A .emit()\n"),
        ["1:10 error: template range bounds must be integer literals"]
    );
    assert_eq!(
        diags("for i in 0..2:\nstream S = A\n"),
        ["1:14 error: expected an indented block after `:`"]
    );
    assert_eq!(
        diags("import \"x.vpl\"\n"),
        ["1:1 error: `import` needs a program read from a file; this program was given as text"]
    );
}

#[test]
fn match_mode_diagnostics() {
    let e = "event A:\n    v: int\n";
    assert_eq!(
        diags(&format!("{e}stream S = A .stnm() .emit()\n")),
        ["3:15 error: `.stnm()` needs a sequence or a named pattern"]
    );
    assert_eq!(
        diags(&format!("{e}stream S = A as a -> all A as b -> A as c .within(1m) .subsets() .emit()\n")),
        ["3:56 error: `.subsets` is not supported: enumerating every subset of a Kleene group (2^n - 1 matches per run) is not available"]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = A as a -> A as b .within(1m) .stnm() .strict() .emit()\n"
        )),
        ["3:50 error: `.strict()` conflicts with `.stnm()`"]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = A as a -> A as b .within(1m) .longest(1) .emit()\n"
        )),
        ["3:41 error: `.longest()` takes no arguments"]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = A as a -> all A.increasing(1) as b .within(1m)\n"
        )),
        ["3:28 error: `.increasing` expects one field name"]
    );
    assert_eq!(
        diags(&format!("{e}stream S = A as a -> all A.increasing(v) as up .within(1m) .stnm() .each() .emit(n: count(up))\npattern P = A as a -> all A.decreasing(v) as d within 1m\nstream Q = P .stam() .longest() .emit(v: d.v)\n")),
        Vec::<String>::new()
    );
}

#[test]
fn extra_aggregates() {
    let e = "event A:\n    v: float\n";
    assert_eq!(
        diags(&format!(
            "{e}stream S = A .window(1s) .aggregate(p: percentile(v, 150))\n"
        )),
        ["3:54 error: the percentile must be a number literal between 0 and 1 (or a percentage up to 100)"]
    );
    assert_eq!(
        diags(&format!("{e}stream S = A .window(1s) .aggregate(p: percentile(v, 0.9), m: median(v), a: p50(v), b: p95(v), c: p99(v), d: collect(v), n: distinct_count(v)) .emit()\n")),
        Vec::<String>::new()
    );
}

#[test]
fn alert_parameters() {
    let e = "event A:\n    v: float\n";
    assert_eq!(
        diags(&format!("{e}stream S = A .alert(webhook: \"https://x\", message: \"v={{v}}\") .emit()\n")),
        ["3:21 warning: webhooks are not sent by this runtime: the alert is logged (target `vpl`, level info)"]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = A .alert(\"x\", channel: \"c\") .emit()\n"
        )),
        [
            "3:21 error: `.alert` takes named parameters",
            "3:26 error: unknown `.alert` parameter `channel`"
        ]
    );
}

#[test]
fn outer_joins_are_joins() {
    let e = "event A:\n    k: int\nevent B:\n    k: int\n";
    for kw in ["left_join", "right_join", "full_join"] {
        assert_eq!(
            diags(&format!("{e}stream R = {kw}(stream L = A, stream Q = B .on(L.k == Q.k)) .window(5m) .emit(k: L.k)\n")),
            Vec::<String>::new()
        );
    }
    // Checked like a join: the inputs must be related.
    let d = diags(&format!(
        "{e}stream R = left_join(stream L = A, stream Q = B) .window(5m) .emit(k: L.k)\n"
    ));
    assert!(
        d.iter().any(|x| x.starts_with("5:") && x.contains("error")),
        "{d:?}"
    );
}

#[test]
fn inline_pattern_streams() {
    let e = "event A:\n    v: int\nevent B:\n    v: int\n";
    // Arithmetic in filters is not pattern syntax: these stay sequences and filters.
    assert_eq!(
        diags(&format!("{e}stream S = A where v * 2 > 1 as a -> B where v + 1 > a.v as b .within(1m) .emit()\nstream F = A .where(v * 2 > 1) .emit()\n")),
        Vec::<String>::new()
    );
    let prog = crate::parse(&format!(
        "{e}stream S = A+ as a -> B[v > 1] as b .within(1m) .emit()\n"
    ))
    .0;
    assert!(prog.pattern("S#pattern").is_some());
    assert_eq!(
        diags(&format!("{e}stream S = A+ as a -> B[v > 1] as b -> NOT A .emit()\n")),
        ["5:12 error: a pattern that can end in `NOT` needs `within`: the absence is confirmed at the deadline"]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = (A as a -> B as b) AND OR(A, B) .within(1m) .emit()\n"
        )),
        Vec::<String>::new()
    );
    // `within d` and `partition by k` after the pattern, as in a declaration.
    let src = format!("{e}stream S = SEQ(A as a, B as b) within 5m partition by v .emit()\n");
    let prog = crate::parse(&src).0;
    let p = prog
        .pattern("S#pattern")
        .map(|p| (p.within.len(), p.partition_by.is_some()));
    assert_eq!(p, Some((1, true)));
    assert_eq!(diags(&src), Vec::<String>::new());
}

#[test]
fn unnamed_aggregates_are_named_after_the_call() {
    let e = "event A:\n    v: float\n    k: str\n";
    assert_eq!(
        diags(&format!("{e}stream S = A .window(1s) .aggregate(sum(v), count(), count(distinct(k)), m: max(v)) .emit()\n")),
        [
            "4:37 warning: this aggregate has no name: its field is `sum_v`",
            "4:45 warning: this aggregate has no name: its field is `count`",
            "4:54 warning: this aggregate has no name: its field is `count_distinct_k`"
        ]
    );
    assert_eq!(
        diags(&format!(
            "{e}stream S = A .window(1s) .aggregate(sum(v), sum_v: sum(v))\n"
        )),
        ["4:45 error: duplicate field name `sum_v`"]
    );
}

#[test]
fn record_types() {
    let ok = "type Point = {x: float, y: float}\ntype One = {name: str}\ntype Trailing = {a: int, b: [str],}\ntype Counts = {str: int}\nevent Shape:\n    center: Point\n    pt: {x: float, y: float}?\n";
    assert_eq!(diags(ok), Vec::<String>::new());
    let prog = crate::parse(ok).0;
    let kinds: Vec<bool> = prog
        .items
        .iter()
        .filter_map(|i| match i {
            crate::ast::Item::Type(t) => Some(matches!(t.ty.kind, crate::ast::TypeKind::Record(_))),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [true, true, true, false]);
    assert_eq!(
        diags("type P = {x: int, x: nosuch}\n"),
        ["1:19 error: duplicate field name `x`"]
    );
}

#[test]
fn keyword_within_and_partition_after_sequence_steps() {
    let e = "event A:\n    k: int\nevent B:\n    k: int\n";
    let src = format!("{e}stream S = A as a -> B as b within 5m partition by k .emit()\n");
    let prog = crate::parse(&src).0;
    let kinds: Vec<crate::ast::OpKind> = prog
        .streams()
        .next()
        .map(|s| s.ops.iter().map(|o| o.kind()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            crate::ast::OpKind::Within,
            crate::ast::OpKind::PartitionBy,
            crate::ast::OpKind::Emit
        ]
    );
    assert_eq!(diags(&src), Vec::<String>::new());
    assert_eq!(
        diags(&format!(
            "{e}stream S = A as a -> B as b within k .emit()\n"
        )),
        ["5:36 error: the `.within` duration must be a duration literal"]
    );
}

#[test]
fn patterns_built_from_patterns() {
    let e = "event A:\n    v: int\nevent B:\n    v: int\nevent C:\n    v: int\n";
    let src = format!("{e}pattern P1 = A as a -> B as b\npattern P2 = P1 -> C as c within 1m\n");
    let prog = crate::parse(&src).0;
    let caps: Option<Vec<String>> = prog.pattern("P2").map(|p| {
        p.body
            .captures()
            .into_iter()
            .map(|i| i.capture().name.clone())
            .collect()
    });
    assert_eq!(caps, Some(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(diags(&src), Vec::<String>::new());
    assert_eq!(
        diags(&format!(
            "{e}pattern P1 = A -> P2\npattern P2 = P1 -> C within 1m\n"
        )),
        [
            "7:19 error: pattern `P2` uses itself",
            "8:14 error: pattern `P1` uses itself"
        ]
    );
    assert_eq!(
        diags(&format!(
            "{e}pattern P1 = A -> B\npattern P2 = P1+ -> NOT P1 -> C within 1m\n"
        )),
        [
            "8:14 error: pattern `P1` used as an item takes no quantifier, filter or alias",
            "8:25 error: `NOT` needs an event type: `P1` is a pattern"
        ]
    );
    assert_eq!(
        diags(&format!("{e}pattern P1 = A -> B within 5s\npattern P2 = P1 -> C within 1m\n")),
        ["8:14 warning: the `within` / `partition by` of pattern `P1` do not apply where it is used"]
    );
}

#[test]
fn sequences_over_patterns() {
    let e = "event A:\n    v: int\nevent B:\n    v: int\nevent C:\n    v: int\n";
    let src = format!("{e}pattern P1 = A as a -> B as b\nstream S = P1 -> all C where v > a.v as c .within(1m) .emit(n: count(c))\n");
    let prog = crate::parse(&src).0;
    let caps: Option<Vec<String>> = prog.pattern("S#pattern").map(|p| {
        p.body
            .captures()
            .into_iter()
            .map(|i| i.capture().name.clone())
            .collect()
    });
    assert_eq!(caps, Some(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(diags(&src), Vec::<String>::new());
}

#[test]
fn kleene_captures_are_arrays() {
    let ev = "event A:\n    k: int\n    v: int\nevent B:\n    k: int\n    v: int\n";
    accepted(&format!(
        "{ev}pattern P = SEQ(A as a, B+ as bs, A where v > sum(map(bs, b => b.v)) as c) within 1m\n\
         stream S = P .where(len(bs) > 1 and bs[0].v < bs[-1].v) .emit(n: len(bs), f: bs[0].v, l: bs.v, s: bs[1:], m: max(map(bs, b => b.v)), ok: any(bs, b => b.v > a.v), c: count(bs), all: bs)\n\
         stream Q = A as a -> all B where len(xs) < 3 as xs -> A .emit(n: len(xs), first: first(xs).v)\n\
         stream Sh = A as a -> all B as bs -> A .emit(n: len(filter([1], bs => bs > 0)))\n"
    ));
    assert_eq!(
        diags(&format!("{ev}pattern P = SEQ(A as a, B+ as bs)\nstream S = P .emit(x: a[0].v, y: len(a))\n")),
        [
            "8:23 error: `a` captures one event and cannot be indexed: only a Kleene capture (`T+`, `T*`, `all T`) is an array of events",
            "8:38 error: `a` captures one event and cannot be given to `len`: only a Kleene capture (`T+`, `T*`, `all T`) is an array of events",
        ]
    );
    assert_eq!(
        diags(&format!("{ev}stream S = A as a -> all B as bs -> A as c .emit(x: c[1:], y: sum(bs), z: bs + 1)\n")),
        [
            "7:53 error: `c` captures one event and cannot be sliced: only a Kleene capture (`T+`, `T*`, `all T`) is an array of events",
            "7:67 error: `sum` needs numbers, but `bs` is an array of events",
            "7:75 error: type mismatch: cannot apply `+` to array and int",
        ]
    );
    assert_eq!(
        diags(&format!("{ev}pattern P = SEQ(A as a, B+ where len(a) > 1 as bs) within 1m\nstream S = P .emit()\n")),
        ["7:38 error: `a` captures one event and cannot be given to `len`: only a Kleene capture (`T+`, `T*`, `all T`) is an array of events"]
    );
}

#[test]
fn trend_aggregate_diagnostics() {
    let ev = "event A:\n    v: int\nevent B:\n    v: int\n";
    accepted(&format!(
        "{ev}stream T = A as a -> all B where v > a.v and v > b.v as b -> A as c .within(1m) .partition_by(v)\n\
         \x20   .trend_aggregate(n: count_trends(), e: count_events(), nb: count_events(b), s: sum_trends(b.v), m: avg_trends(b.v), lo: min_trends(b.v), hi: max_trends(b.v))\n\
         \x20   .emit(a: a.v, n: n)\n"
    ));
    assert_eq!(
        diags(&format!("{ev}stream T = A as a -> B as b -> A as c .trend_aggregate(n: count_trends())\n")),
        [
            "5:40 error: `.trend_aggregate` needs `.within(…)`: each start's result is emitted when it ends",
            "5:40 error: `.trend_aggregate` needs an `all` step: without one a start has at most one trend",
        ]
    );
    assert_eq!(
        diags(&format!("{ev}stream T = A as a -> all B as b -> A where v > a.v as c -> B where v > a.v and v < b.v as d .within(1s) .stnm() .trend_aggregate(n: count(), s: sum_trends(v))\n")),
        [
            "5:84 error: with `.trend_aggregate`, a filter reads the trend's first event (`a`) and its previous event, not `b`",
            "5:106 error: a selection or emission mode cannot be combined with `.trend_aggregate` (trends use skip-till-any-match)",
            "5:133 error: not a trend aggregate",
            "5:145 error: not a trend aggregate",
        ]
    );
}
