//! Checker unit tests: one per diagnostic, plus accepted programs.

use super::*;

fn errors(src: &str) -> Vec<String> {
    match crate::check(src, &CheckOptions::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.into_iter().map(|d| d.message).collect(),
    }
}

fn first_error(src: &str) -> Diagnostic {
    crate::check(src, &CheckOptions::default())
        .err()
        .and_then(|d| d.into_iter().next())
        .unwrap_or_else(|| panic!("expected an error for {src:?}"))
}

fn warnings(src: &str) -> Vec<String> {
    match crate::check(src, &CheckOptions::default()) {
        Ok(c) => c.warnings.into_iter().map(|d| d.message).collect(),
        Err(d) => panic!("unexpected errors: {d:#?}"),
    }
}

const PRELUDE: &str = "event A:\n    x: int\n";

fn ok(src: &str) {
    let full = format!("{PRELUDE}{src}");
    let r = crate::check(&full, &CheckOptions::default());
    assert!(r.is_ok(), "{src}: {:#?}", r.err());
}

fn err(src: &str) -> Vec<String> {
    errors(&format!("{PRELUDE}{src}"))
}

#[test]
fn unknown_function_suggests_a_builtin() {
    let d = first_error("stream S = A .where(foo(x) > 1)");
    assert_eq!(d.message, "unknown function `foo`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `floor`?"));
    assert_eq!((d.span.line, d.span.column), (1, 21));
    let d = first_error("fn compute(a):\n    return a\nstream S = A .process(compte(x))");
    assert_eq!(d.message, "unknown function `compte`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `compute`?"));
}

#[test]
fn builtin_arity() {
    assert_eq!(
        err("stream S = A .where(substring(\"abc\") == \"a\")"),
        vec!["`substring` takes 2 or 3 arguments, found 1"]
    );
    assert_eq!(
        err("stream S = A .where(\"abc\".len(1) > 1)"),
        vec!["`len` takes 1 argument, found 2 (including the receiver before `.len`)"]
    );
    ok("stream S = A .where(\"abc\".len() > 1 and substring(\"abc\", 1, 2) == \"b\")");
}

#[test]
fn user_function_arity() {
    assert_eq!(
        err("fn f(a, b):\n    return a\nstream S = A .where(f(1, 2, 3) > 0)"),
        vec!["function `f` takes 2 arguments, found 3"]
    );
    let w = warnings("fn f(a, b):\n    return a\nstream S = B .where(f(1) > 0)");
    assert!(w.contains(
        &"function `f` takes 2 arguments, found 1; the missing ones are null".to_string()
    ));
}

#[test]
fn user_functions_shadow_builtins() {
    ok("fn len(a, b):\n    return a\nstream S = A .where(len(1, 2) > 0)");
}

#[test]
fn assignment_needs_a_var() {
    assert_eq!(
        err("fn f(p):\n    let a = 1\n    a := 2\n"),
        vec!["cannot assign to `a`: it is a `let` binding, not a `var`"]
    );
    assert_eq!(
        err("fn f(p):\n    p := 2\n"),
        vec!["cannot assign to `p`: it is a parameter, not a `var`"]
    );
    assert_eq!(
        err("fn f():\n    for i in 3:\n        i := 2\n"),
        vec!["cannot assign to `i`: it is a loop variable, not a `var`"]
    );
    assert_eq!(
        err("fn f():\n    nope := 2\n"),
        vec!["cannot assign to undeclared variable `nope`"]
    );
    assert_eq!(
        err("const k = 1\nk := 2\n"),
        vec!["cannot assign to `k`: it is a `const`, not a `var`"]
    );
    assert_eq!(
        err("v := 2\nvar v = 1\n"),
        vec!["cannot assign to `v`: no `var` with that name is declared before this line"]
    );
    ok("var g = 0\ng := 1\nfn f():\n    var a = 1\n    if a > 0:\n        a := 2\n    g := a\n");
}

#[test]
fn block_scoping_of_bindings() {
    assert_eq!(
        err("fn f():\n    if true:\n        var a = 1\n    a := 2\n"),
        vec!["cannot assign to undeclared variable `a`"]
    );
}

#[test]
fn undeclared_contexts() {
    let d = first_error("context ingest\nstream S = A .context(ingst)");
    assert_eq!(d.message, "undeclared context `ingst`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `ingest`?"));
    assert_eq!(
        err("stream S = A .emit(context: crunch, x: x)"),
        vec!["undeclared context `crunch`"]
    );
    ok("context ingest\ncontext crunch (cores: [2, 3])\nstream S = A .context(ingest) .emit(context: crunch, x: x)");
    assert_eq!(
        err("context a\ncontext b\nstream S = A .context(a) .context(b)"),
        vec!["a stream can run in only one context"]
    );
    assert_eq!(
        err("context c (cores: [\"x\"])"),
        vec!["`cores` must be an array of non-negative integers, e.g. `[2, 3]`"]
    );
}

#[test]
fn unknown_connectors_unless_external() {
    let src = "stream S = A.from(Plant, topic: \"a/#\") .to(Out, topic: \"b\")";
    assert_eq!(
        err(src),
        vec!["unknown connector `Plant`", "unknown connector `Out`"]
    );
    let opts = CheckOptions {
        external_connectors: vec!["Plant".into(), "Out".into()],
    };
    assert!(crate::check(&format!("{PRELUDE}{src}"), &opts).is_ok());
    ok("connector Plant = mqtt(host: \"h\", port: 1883)\nstream S = A.from(Plant, topic: \"a\") .to(Plant)");
}

#[test]
fn connector_declarations() {
    ok("connector N = nats(servers: \"nats://h:4222\")\nstream S = A.from(N, topic: \"a.>\")");
    assert_eq!(
        err("connector N = nats(subject: \"a\")"),
        vec!["NATS connector `N` needs `servers` or `url` or `host`"]
    );
    assert_eq!(
        err("connector C = mqtt(port: 1883)"),
        vec!["MQTT connector `C` needs `host`"]
    );
    assert_eq!(
        err("connector C = mqtt(host: \"h\", port: \"x\")"),
        vec!["MQTT parameter `port` must be a non-negative integer, found \"x\""]
    );
    // Programs of the existing product carry MQTT parameters we do not use: a warning.
    assert_eq!(
        warnings(&format!(
            "{PRELUDE}connector C = mqtt(host: \"h\", prot: 1)"
        )),
        vec!["unknown MQTT parameter `prot` (ignored)"]
    );
}

#[test]
fn duplicate_names() {
    assert_eq!(
        err("event A:\n    y: int\n"),
        vec!["duplicate type name `A`"]
    );
    assert_eq!(
        err("stream S = A .emit()\nstream S = A .emit()"),
        vec!["duplicate type name `S`"]
    );
    assert_eq!(
        err("fn f():\n    return 1\nfn f():\n    return 2\n"),
        vec!["duplicate function name `f`"]
    );
    assert_eq!(
        err("context c\ncontext c"),
        vec!["duplicate context name `c`"]
    );
    assert_eq!(
        err("let a = 1\nvar a = 2"),
        vec!["duplicate top-level binding name `a`"]
    );
    assert_eq!(
        err("event E:\n    a: int\n    a: str\n"),
        vec!["duplicate field name `a`"]
    );
    assert_eq!(
        err("fn f(a, a):\n    return a\n"),
        vec!["duplicate parameter name `a`"]
    );
    assert_eq!(
        err("stream S = A .emit(a: 1, a: 2)"),
        vec!["duplicate field name `a`"]
    );
    assert_eq!(
        err("fn f():\n    emit E(a: 1, a: 2)\n"),
        vec!["duplicate field name `a`"]
    );
}

#[test]
fn stream_cycles() {
    assert_eq!(
        err("stream P = Q .emit()\nstream Q = R .emit()\nstream R = P .emit()"),
        vec!["stream cycle: P -> Q -> R -> P"]
    );
    assert_eq!(err("stream S = S .emit()"), vec!["stream cycle: S -> S"]);
    let e = err("stream M = merge(A, N)\nstream N = M .emit()");
    assert!(
        e.contains(&"stream cycle: M -> N -> M".to_string()),
        "{e:?}"
    );
    ok("stream Late = Early .emit()\nstream Early = A .emit()");
}

#[test]
fn unknown_and_unsupported_operators() {
    let d = first_error("stream S = A .wher(x > 1)");
    assert_eq!(d.message, "unknown operator `.wher`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `.where`?"));
    assert_eq!(err("stream S = A .map(x)"), vec!["unknown operator `.map`"]);
    assert_eq!(
        err("stream S = A .within(5m)"),
        vec!["`.within` needs a sequence"]
    );
    assert_eq!(
        err("stream S = merge(A, A)"),
        vec!["duplicate merge input `A`"]
    );
    let w = warnings(
        "event A:\n    k: int\nevent B:\n    k: int\nstream S = join(A, B).on(A.k == B.k)",
    );
    assert_eq!(
        w,
        vec!["a join without `.window` keeps partner events for 1 minute"]
    );
    ok("stream S = all A .within(1s)");
    ok("stream S = A -> A as a2 .emit()");
}

#[test]
fn operator_arguments() {
    assert_eq!(
        err("stream S = A .where()"),
        vec!["`.where` needs one argument"]
    );
    assert_eq!(
        err("stream S = A .where(x, x)"),
        vec!["`.where` takes one argument"]
    );
    assert_eq!(
        err("stream S = A .select(1)"),
        vec!["`select` fields need a name"]
    );
    assert_eq!(
        err("stream S = A .emit(1)"),
        vec!["`emit` fields need a name"]
    );
    assert_eq!(
        err("stream S = A .process(len(x))"),
        vec!["`.process` needs a user function, `len` is a built-in"]
    );
    assert_eq!(
        err("stream S = A .process(x)"),
        vec!["`.process` expects a function call"]
    );
    assert_eq!(
        err("stream S = A .where(x > 1) .from(C)"),
        vec!["`.from` must directly follow the stream source"]
    );
    assert_eq!(
        err("stream S = A .to(\"x\")"),
        vec!["`.to` needs a connector name first"]
    );
    assert_eq!(
        err("stream S = A .emit(n: count())"),
        vec!["`count` is an aggregate function; it is only allowed in `.aggregate(…)`"]
    );
}

#[test]
fn control_flow_outside_loops() {
    assert_eq!(
        err("fn f():\n    break\n"),
        vec!["`break` outside of a loop"]
    );
    assert_eq!(
        err("fn f():\n    continue\n"),
        vec!["`continue` outside of a loop"]
    );
    ok("fn f():\n    while true:\n        if 1 > 0:\n            break\n        continue\n");
}

#[test]
fn type_mismatches() {
    assert_eq!(
        err("stream S = A .where(\"a\" - 1 > 0)"),
        vec!["type mismatch: cannot apply `-` to str and int"]
    );
    assert_eq!(
        err("stream S = A .where(5)"),
        vec!["type mismatch: `.where` argument must be a bool, found int"]
    );
    assert_eq!(
        err("stream S = A .filter(\"yes\")"),
        vec!["type mismatch: `.filter` argument must be a bool, found str"]
    );
    assert_eq!(
        err("fn f():\n    while 1:\n        break\n"),
        vec!["type mismatch: `while` condition must be a bool, found int"]
    );
    assert_eq!(
        err("let a = not 3"),
        vec!["type mismatch: `not` needs a bool, found int"]
    );
    assert_eq!(
        err("let a = -\"x\""),
        vec!["type mismatch: cannot negate a str"]
    );
    assert_eq!(
        err("let a = len(\"x\") + \"y\""),
        vec!["type mismatch: cannot apply `+` to int and str"]
    );
    assert_eq!(
        err("let a = 1.5 | 2"),
        vec!["type mismatch: `|` needs ints, found float"]
    );
    assert_eq!(
        err("fn f():\n    for c in 2.5:\n        break\n"),
        vec!["cannot iterate over a float (use a range, an array, a map or an int)"]
    );
    assert_eq!(
        err("let r = 0..1.5"),
        vec!["type mismatch: range bounds must be ints, found float"]
    );
    ok("let a = \"x\" + \"y\"\nlet b = 1 + 2.5\nlet d = 5s + 2ms\nlet t = @2024-01-01 + 1d\nstream S = A .where(x > 1 and true)");
    assert_eq!(
        warnings("let a = \"x\" < 1"),
        vec!["comparing str with int with `<` always gives null"]
    );
}

#[test]
fn event_filters_outside_not() {
    assert_eq!(
        err("stream S = A .where(B where x > 1)"),
        vec!["`Type where condition` is only allowed in `.not(…)`"]
    );
    assert_eq!(
        err("stream S = A .not(B where x > 1)"),
        vec!["`.not` needs a sequence"]
    );
}

#[test]
fn lambdas_only_where_a_function_is_expected() {
    ok("let f = x => x + 1\nstream S = A .emit(y: f(x))");
    ok("stream S = A .emit(ys: filter([1, 2, x], v => v > 1), zs: map([x], v => v * 2))");
    assert_eq!(
        err("stream S = A .emit(y: x => x)"),
        vec!["a lambda can only be passed to `filter`, `map`, `any` or `all`, given to `.pattern(…)`, or bound at top level"]
    );
    assert_eq!(
        err("stream S = A .emit(y: filter([1], 3))"),
        vec!["`filter` needs a function as its second argument"]
    );
    assert_eq!(
        err("let f = x => x + 1\nstream S = A .emit(y: f(x, 2))"),
        vec!["`f` takes 1 argument, found 2"]
    );
}

#[test]
fn undeclared_sources_only_warn() {
    let w = warnings("stream S = Undeclared .emit(a: a)");
    assert_eq!(
        w,
        vec!["`Undeclared` is neither a declared event type nor a stream; it is treated as an event type"]
    );
    assert_eq!(
        warnings("stream T = S .emit()\nstream S = X2 .emit()").len(),
        1
    );
}

#[test]
fn unknown_names_are_event_fields_not_errors() {
    ok("fn f():\n    return some_field + 1\nstream S = A .where(whatever > 1 and r.x == 2) .emit(v: f())");
}

#[test]
fn unknown_types_warn() {
    assert_eq!(
        warnings("event E:\n    a: integer\n"),
        vec!["unknown type `integer`"]
    );
}

#[test]
fn remaining_declaration_and_operator_diagnostics() {
    assert_eq!(
        err("event E extends Nope:\n    a: int\n"),
        vec!["unknown base event `Nope`"]
    );
    ok("event E extends A:\n    a: int\n");
    assert_eq!(
        err("stream S = A .select()"),
        vec!["`.select` needs at least one field"]
    );
    assert_eq!(
        err("stream S = A .where(c: x)"),
        vec!["`.where` takes no named arguments"]
    );
    assert_eq!(
        err("connector C = mqtt(\"h\")"),
        vec![
            "MQTT connector `C` needs `host`",
            "connector parameters need a name"
        ]
    );
    assert_eq!(
        err("connector C = mqtt(host: \"h\", port: 1 + 2)"),
        vec!["parameter values must be literals, names or arrays"]
    );
    assert_eq!(
        err("connector C = mqttt(host: \"h\")"),
        vec!["unknown connector kind `mqttt`"]
    );
    assert_eq!(
        warnings("context c (threads: 2)"),
        vec!["unknown context parameter `threads`"]
    );
    let conn = "connector C = mqtt(host: \"h\")\n";
    assert_eq!(
        err(&format!("{conn}stream S = A .to(C, topic: 5)")),
        vec!["`topic` must be a string, found int"]
    );
    assert_eq!(
        err(&format!("{conn}stream S = A .to(C, C)")),
        vec!["`.to` takes one connector and named parameters"]
    );
    assert_eq!(
        err(&format!("{conn}stream S = A.from(C, \"t\")")),
        vec!["`.from` takes one connector and named parameters"]
    );
}

#[test]
fn errors_are_sorted_and_all_reported() {
    let e =
        errors("stream S = A .where(nope1())\nstream T = A .where(nope2())\nfn f():\n    break\n");
    assert_eq!(
        e,
        vec![
            "unknown function `nope1`",
            "unknown function `nope2`",
            "`break` outside of a loop"
        ]
    );
}

#[test]
fn tier2_windows_and_aggregates_accepted() {
    ok("stream S = A .window(10s) .aggregate(n: count(), m: avg(x)) .having(n > 1) .emit()");
    ok("stream S = A .partition_by(x) .window(1m, sliding: 15s) .aggregate(k: x, s: sum(x * 2))");
    ok("stream S = A .window(50, sliding: 10) .aggregate(r: max(x) - min(x), d: count(distinct(x)))");
    ok("stream S = A .window(session: 30s) .aggregate(e: ema(x, 5), sd: stddev(x), f: first(x), l: last(x))");
    ok("stream S = A .aggregate(c: count_distinct(x), m: max(x, 3) + count(x))");
    ok("stream S = A .window(100) .emit()");
}

#[test]
fn tier2_misuse_diagnostics() {
    let e = err;
    assert_eq!(
        e("stream S = A .where(stddev(x) > 1)"),
        vec!["`stddev` is an aggregate function; it is only allowed in `.aggregate(…)`"]
    );
    assert_eq!(
        e("stream S = A .aggregate(m: kurtosis(x))"),
        vec!["unknown aggregate function `kurtosis`"]
    );
    assert_eq!(
        e("stream S = A .having(x > 1)"),
        vec!["`.having` needs a preceding `.aggregate`"]
    );
    assert_eq!(
        e("stream S = A .window(5min)"),
        vec!["invalid duration unit `min`"]
    );
    assert_eq!(
        e("stream S = A .window(x)"),
        vec!["the window size must be a duration literal or a positive integer"]
    );
    assert_eq!(
        e("stream S = A .window(session_x)"),
        vec!["`session_x` is not a window kind"]
    );
    assert_eq!(
        e("stream S = A .window(0s)"),
        vec!["the window size must be positive"]
    );
    assert_eq!(
        e("stream S = A .window(-5)"),
        vec!["the window size must be positive"]
    );
    assert_eq!(
        e("stream S = A .window(10s, sliding: 0s)"),
        vec!["the slide must be positive"]
    );
    assert_eq!(
        e("stream S = A .window(10s, sliding: 3)"),
        vec!["the slide must be of the same kind as the window size"]
    );
    assert_eq!(
        e("stream S = A .window(session: 5)"),
        vec!["the session gap must be a duration literal"]
    );
    assert_eq!(
        e("stream S = A .partition_by(x) .partition_by(x)"),
        vec!["a stream can have only one `.partition_by`"]
    );
    assert_eq!(
        e("stream S = A .aggregate(count() + 1)"),
        vec!["`.aggregate` fields need a name"]
    );
    assert_eq!(
        e("stream S = A .aggregate(n: count()) .window(5s)"),
        vec!["`.window` must come before `.aggregate`"]
    );
    assert_eq!(
        e("stream S = A .aggregate(e: ema(x, 0))"),
        vec!["the `ema` period must be a positive integer literal"]
    );
    assert_eq!(e("stream S = A .aggregate(n: count(), n: sum(x))").len(), 1);
}

#[test]
fn tier2_sequences_accepted() {
    ok("stream Takeover = Login as lg\n    -> PasswordReset where account == lg.account as pr\n    -> all Transfer where account == lg.account as tx\n    -> Logout where account == lg.account as lo\n    .within(20m)\n    .not(SupportCall where account == lg.account)\n    .emit(account: lg.account, last_amount: tx.amount)");
    ok("stream S = A as a -> B .partition_by(k) .within(5s) .not(C) .where(a.x > 1) .emit()");
    ok("stream M = merge(A, stream Hi = B .where(x > 1)) .window(1s) .aggregate(n: count())");
    ok("stream J = join(A, stream Bs = B .where(ok)).on(A.k == Bs.k and A.j == Bs.j).window(5m) .emit(a: A.x, b: Bs.y)");
    let w = warnings("stream S = A -> all B");
    assert!(w.iter().any(|m| m.contains("trailing `all`")), "{w:?}");
}

#[test]
fn tier2_sequence_and_join_misuse_diagnostics() {
    let d = first_error("stream S = A as a\n  -> B where x == c.y as b -> C as c");
    assert_eq!(d.message, "`c` is not captured yet");
    assert_eq!((d.span.line, d.span.column), (2, 19));
    // A step's own capture names the candidate; the first step may be filtered.
    ok("stream S = A where x > 1 as a -> B as b where b.y > a.x -> all C where v > c.v as c .within(1m)");
    assert_eq!(
        err("stream S = A -> B -> B .emit()"),
        vec!["two sequence steps are named `B`"]
    );
    assert_eq!(
        err("stream S = A -> B .within(5) .within(1s)"),
        vec!["the `.within` duration must be a duration literal",]
    );
    assert_eq!(
        err("stream S = A -> B .not(3)"),
        vec!["`.not` expects an event type, optionally with a filter"]
    );
    assert_eq!(
        err("stream S = A -> B .window(1s) .aggregate(n: count())"),
        vec![
            "`.window` cannot be used on a sequence stream",
            "`.aggregate` cannot be used on a sequence stream"
        ]
    );
    assert_eq!(
        err("stream S = A .on(A.k == B.k)"),
        vec!["`.on` is only allowed on a `join(…)` stream"]
    );
    assert_eq!(
        err("stream J = join(A, B).window(1m)"),
        vec!["a join needs `.on(…)`"]
    );
    assert_eq!(
        err("stream J = join(A, B).on(A.k == C.k).window(1m)"),
        vec!["`C` is not an input of this join"]
    );
    assert_eq!(
        err("stream J = join(A, B).on(A.k == B.k).window(10)"),
        vec!["a join window must be a duration"]
    );
    assert_eq!(
        err("stream J = join(A, B).on(A.k == B.k).window(1m) .aggregate(n: count())"),
        vec!["`.aggregate` cannot be used on a join stream"]
    );
    assert_eq!(
        err("stream J = join(A).on(A.k == A.j).window(1m)"),
        vec![
            "a join needs at least two inputs",
            "a join condition must relate two different inputs"
        ]
    );
    assert_eq!(
        err("stream M = merge(A .emit(), B)"),
        vec!["`.emit` is not allowed on a merge input"]
    );
    assert_eq!(
        err("stream M = merge(A, B) -> C"),
        vec!["a sequence must start with an event type"]
    );
    assert_eq!(
        err("stream S = Late -> Late2 as x .emit()\nstream Late = S .emit()\nstream Late2 = A .emit()"),
        vec!["stream cycle: S -> Late -> S"]
    );
}
