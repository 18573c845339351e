//! Parser unit tests: precedence, layout, recovery.

use super::*;

/// Renders an expression as a fully parenthesized S-expression.
fn sx(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Null => "null".into(),
        ExprKind::Duration(d) => format!("{d}ns"),
        ExprKind::Timestamp(t) => format!("@{t}"),
        ExprKind::Name(n) => n.name.clone(),
        ExprKind::Array(items) => {
            format!("[{}]", items.iter().map(sx).collect::<Vec<_>>().join(" "))
        }
        ExprKind::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|m| format!("{}:{}", sx(&m.key), sx(&m.value)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ExprKind::Unary { op, operand } => {
            let o = match op {
                UnaryOp::Neg => "neg",
                UnaryOp::BitNot => "~",
                UnaryOp::Not => "not",
            };
            format!("({o} {})", sx(operand))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", op.symbol(), sx(lhs), sx(rhs))
        }
        ExprKind::Range {
            start,
            end,
            inclusive,
        } => format!(
            "({} {} {})",
            if *inclusive { "..=" } else { ".." },
            sx(start),
            sx(end)
        ),
        ExprKind::Call {
            callee,
            args,
            method,
        } => format!(
            "({}{} {})",
            if *method { "." } else { "" },
            callee.name,
            args.iter().map(sx).collect::<Vec<_>>().join(" ")
        ),
        ExprKind::Field {
            base,
            name,
            optional,
        } => format!(
            "({} {} {})",
            if *optional { "?." } else { "." },
            sx(base),
            name.name
        ),
        ExprKind::Index { base, index } => format!("(idx {} {})", sx(base), sx(index)),
        ExprKind::Slice { base, start, end } => format!(
            "(slice {} {} {})",
            sx(base),
            start.as_ref().map(|e| sx(e)).unwrap_or("_".into()),
            end.as_ref().map(|e| sx(e)).unwrap_or("_".into())
        ),
        ExprKind::If { cond, then, else_ } => {
            format!("(if {} {} {})", sx(cond), sx(then), sx(else_))
        }
        ExprKind::EventFilter { event, filter } => {
            format!("({} where {})", event.name, sx(filter))
        }
        ExprKind::Lambda { params, body } => format!(
            "(fn {} {})",
            params
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(","),
            sx(body)
        ),
    }
}

fn parse_ok(src: &str) -> Program {
    let (p, d) = parse_program(src);
    assert!(d.is_empty(), "unexpected diagnostics for {src:?}: {d:#?}");
    p
}

/// Parses `let x = <src>` and renders the value.
fn e(src: &str) -> String {
    let p = parse_ok(&format!("let x = {src}"));
    match &p.items[0] {
        Item::Binding(b) => sx(&b.value),
        other => panic!("not a binding: {other:?}"),
    }
}

fn errs(src: &str) -> Vec<String> {
    parse_program(src)
        .1
        .into_iter()
        .map(|d| d.message)
        .collect()
}

#[test]
fn precedence_table() {
    assert_eq!(e("1 + 2 * 3"), "(+ 1 (* 2 3))");
    assert_eq!(e("1 - 2 - 3"), "(- (- 1 2) 3)");
    assert_eq!(e("-2 ** 2"), "(** (neg 2) 2)");
    assert_eq!(e("2 ** 3 ** 2"), "(** 2 (** 3 2))");
    assert_eq!(e("2 ** -1"), "(** 2 (neg 1))");
    assert_eq!(e("a * b ** c"), "(* a (** b c))");
    assert_eq!(e("a or b and c"), "(or a (and b c))");
    assert_eq!(e("not a and b"), "(and (not a) b)");
    assert_eq!(e("not a == b"), "(not (== a b))");
    assert_eq!(e("a ?? b or c"), "(?? a (or b c))");
    assert_eq!(e("a | b ^ c & d"), "(| a (^ b (& c d)))");
    assert_eq!(e("a << 1 + 2"), "(<< a (+ 1 2))");
    assert_eq!(e("a & b == c"), "(== (& a b) c)");
    assert_eq!(e("1 + 2 .. 3 * 4"), "(.. (+ 1 2) (* 3 4))");
    assert_eq!(e("0..=n"), "(..= 0 n)");
    assert_eq!(
        e("x in [1, 2] and y not in m"),
        "(and (in x [1 2]) (not in y m))"
    );
    assert_eq!(e("~a % 3 / b"), "(/ (% (~ a) 3) b)");
    assert_eq!(
        e("a >= 1 and b != 2 or c <= 3"),
        "(or (and (>= a 1) (!= b 2)) (<= c 3))"
    );
    assert_eq!(e("a > b >> 2"), "(> a (>> b 2))");
}

#[test]
fn comparisons_are_non_associative() {
    assert_eq!(
        errs("let x = a < b < c"),
        vec!["comparison operators cannot be chained"]
    );
    assert_eq!(
        errs("let x = a == b != c"),
        vec!["comparison operators cannot be chained"]
    );
    assert_eq!(
        errs("let x = 0..1..2"),
        vec!["ranges cannot be chained; add parentheses"]
    );
}

#[test]
fn postfix_calls_fields_indexes_slices() {
    assert_eq!(e("f(a, b)"), "(f a b)");
    assert_eq!(e("xs.len()"), "(.len xs)");
    assert_eq!(
        e("s.replace(\"a\", \"b\").upper()"),
        "(.upper (.replace s \"a\" \"b\"))"
    );
    assert_eq!(e("a.b?.c"), "(?. (. a b) c)");
    assert_eq!(e("a[0][-1]"), "(idx (idx a 0) (neg 1))");
    assert_eq!(e("a[1:2]"), "(slice a 1 2)");
    assert_eq!(e("a[:2]"), "(slice a _ 2)");
    assert_eq!(e("a[1:]"), "(slice a 1 _)");
    assert_eq!(e("-a.b"), "(neg (. a b))");
    assert_eq!(e("r.in"), "(. r in)");
}

#[test]
fn literals_and_primaries() {
    assert_eq!(e("[1, 2.5, \"s\", true, null,]"), "[1 2.5 \"s\" true null]");
    assert_eq!(e("{\"k\": 1, k2: v}"), "{\"k\":1 \"k2\":v}");
    assert_eq!(e("{}"), "{}");
    assert_eq!(
        e("if a > 1 then \"x\" else \"y\""),
        "(if (> a 1) \"x\" \"y\")"
    );
    assert_eq!(e("5s"), "5000000000ns");
    assert_eq!(e("@1970-01-01T00:00:01Z"), "@1000000000");
    assert_eq!(e("(1 + 2) * 3"), "(* (+ 1 2) 3)");
    assert_eq!(e("x => x + 1"), "(fn x (+ x 1))");
    assert_eq!(e("(a, b) => a * b"), "(fn a,b (* a b))");
}

#[test]
fn keyword_prefixed_identifiers_are_names() {
    assert_eq!(
        e("notify_level + allocation"),
        "(+ notify_level allocation)"
    );
    assert_eq!(
        e("notes and true_count or breakdown"),
        "(or (and notes true_count) breakdown)"
    );
    assert_eq!(e("format == order_id"), "(== format order_id)");
    let p = parse_ok("stream S = A .where(type == \"x\" and from > 1 and in_flight)");
    assert_eq!(p.streams().count(), 1);
    let p = parse_ok("fn f():\n    var breakdown = 1\n    breakdown := 2\n    letter := 3\n");
    assert_eq!(p.functions().next().map(|f| f.body.stmts.len()), Some(3));
}

#[test]
fn stream_declarations() {
    let p = parse_ok(
        "stream Hot: Stream<PumpReading> = PumpReading as r .where(r.inlet_temp > 80.0)\n    .emit(pump: pump, temp: inlet_temp, level: \"high\")\n    .to(Plant, topic: \"a/b\")",
    );
    let s = p.streams().next().unwrap();
    assert_eq!(s.name.name, "Hot");
    assert!(matches!(
        &s.ty,
        Some(TypeExpr {
            kind: TypeKind::Stream(_),
            ..
        })
    ));
    match &s.source.kind {
        SourceKind::Named { name, alias, .. } => {
            assert_eq!(name.name, "PumpReading");
            assert_eq!(alias.as_ref().map(|a| a.name.as_str()), Some("r"));
        }
        other => panic!("{other:?}"),
    }
    let kinds: Vec<OpKind> = s.ops.iter().map(StreamOp::kind).collect();
    assert_eq!(kinds, vec![OpKind::Where, OpKind::Emit, OpKind::To]);
    let emit = &s.ops[1];
    assert_eq!(emit.args.len(), 3);
    assert_eq!(emit.args[2].field_name(), Some("level"));
    assert!(matches!(emit.named("level").map(|e| &e.kind), Some(ExprKind::Str(s)) if s == "high"));
    assert_eq!(s.ops[2].named("topic").map(sx), Some("\"a/b\"".into()));
}

#[test]
fn from_is_folded_into_the_source() {
    let p = parse_ok("stream R = PumpReading.from(Plant, topic: \"plant/#\") .where(rpm > 0)");
    let s = p.streams().next().unwrap();
    let from = s.source.from.as_ref().unwrap();
    assert_eq!(from.connector.name, "Plant");
    assert_eq!(from.args[0].name.as_ref().unwrap().name, "topic");
    assert_eq!(s.ops.len(), 1);
}

#[test]
fn sequence_steps_stop_at_chain_operators() {
    let p = parse_ok(
        "stream T = Login as lg\n    -> PasswordReset where account == lg.account as pr\n    -> all Transfer where account == lg.account as tx\n    .within(20m)\n    .emit(account: lg.account)",
    );
    let s = p.streams().next().unwrap();
    assert_eq!(s.steps.len(), 2);
    assert!(s.steps[1].all);
    assert_eq!(s.steps[1].alias.as_ref().unwrap().name, "tx");
    assert_eq!(
        s.steps[0].filter.as_ref().map(sx),
        Some("(== account (. lg account))".into())
    );
    assert_eq!(s.ops.len(), 2);
}

#[test]
fn tier2_sources_and_not_filters_parse() {
    let p = parse_ok(
        "stream M = merge(A, stream Hot = B .where(t > 1))\nstream J = join(A, B) .on(A.k == B.k) .window(5m)\nstream K = all Transfer as tx -> Logout .not(SupportCall where account == tx.account)",
    );
    let kinds: Vec<_> = p.streams().map(|s| &s.source.kind).collect();
    let SourceKind::Merge(inputs) = kinds[0] else {
        panic!("{:?}", kinds[0])
    };
    assert_eq!(inputs.len(), 2);
    assert_eq!(
        inputs[1].name.as_ref().map(|n| n.name.as_str()),
        Some("Hot")
    );
    assert_eq!(inputs[1].ops.len(), 1);
    assert!(matches!(kinds[1], SourceKind::Join(i, _) if i.len() == 2));
    assert_eq!(
        p.streams().nth(1).map(|s| s.ops[0].kind()),
        Some(OpKind::On)
    );
    assert!(
        matches!(kinds[2], SourceKind::All { name, alias: Some(_), .. } if name.name == "Transfer")
    );
    let not = p
        .streams()
        .nth(2)
        .and_then(|s| s.ops[0].first_positional().cloned());
    assert!(
        matches!(not.map(|e| e.kind), Some(ExprKind::EventFilter { event, .. }) if event.name == "SupportCall")
    );
}

#[test]
fn declarations() {
    let p = parse_ok(
        "event PumpReading:\n    pump: str\n    rpm: int\n    tags: [str]\n    m: {str: float}\n    note: str?\nconnector Plant = mqtt(host: \"b\", port: 1883)\ncontext ingest\ncontext crunch (cores: [2, 3])\nlet a = 1\nvar b = 2\nconst c: int = 3\nb := b + 1\n",
    );
    let ev = p.events().next().unwrap();
    assert_eq!(ev.fields.len(), 5);
    assert!(matches!(ev.fields[4].ty.kind, TypeKind::Optional(_)));
    assert!(matches!(ev.fields[3].ty.kind, TypeKind::Map(..)));
    let c = p.connectors().next().unwrap();
    assert_eq!((c.kind.name.as_str(), c.params.len()), ("mqtt", 2));
    let ctx: Vec<_> = p
        .contexts()
        .map(|c| (c.name.name.clone(), c.params.len()))
        .collect();
    assert_eq!(
        ctx,
        vec![("ingest".to_string(), 0), ("crunch".to_string(), 1)]
    );
    assert_eq!(p.items.len(), 8);
    assert!(matches!(&p.items[7], Item::Assign(a) if a.target.name == "b"));
    assert!(
        matches!(&p.items[6], Item::Binding(b) if b.kind == BindingKind::Const && b.ty.is_some())
    );
}

#[test]
fn statements_and_layout() {
    let src = "fn f(n: int, xs) -> int:\n    var t = 0\n    for i in 0..n:\n        if i % 2 == 0:\n            continue\n        elif i > 10:\n            break\n        else:\n            t := t +\n                i\n    while t > 100:\n        t := t - 1\n    for x in xs:\n        emit Out(x: x,\n    y: 2)\n    return t\nfn g():\n    return\nlet after = 1\n";
    let p = parse_ok(src);
    let f = p.function("f").unwrap();
    assert!(p.function("nope").is_none());
    assert_eq!(f.params.len(), 2);
    assert!(f.params[1].ty.is_none());
    assert!(f.ret.is_some());
    let kinds: Vec<&str> = f
        .body
        .stmts
        .iter()
        .map(|s| match &s.kind {
            StmtKind::Binding(_) => "let",
            StmtKind::For { .. } => "for",
            StmtKind::While { .. } => "while",
            StmtKind::Return(Some(_)) => "return",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["let", "for", "while", "for", "return"]);
    let StmtKind::For { body, .. } = &f.body.stmts[1].kind else {
        panic!()
    };
    let StmtKind::If {
        branches,
        else_body,
    } = &body.stmts[0].kind
    else {
        panic!()
    };
    assert_eq!(branches.len(), 2);
    let else_body = else_body.as_ref().unwrap();
    // the continuation line (deeper indentation) belongs to the assignment
    assert!(matches!(&else_body.stmts[0].kind, StmtKind::Assign(a) if sx(&a.value) == "(+ t i)"));
    let g = p.functions().nth(1).unwrap();
    assert!(matches!(g.body.stmts[0].kind, StmtKind::Return(None)));
    assert_eq!(p.items.len(), 3);
}

#[test]
fn conditional_expression_as_a_statement() {
    let p = parse_ok(
        "fn pick(a):\n    if a > f(1, [2]) then \"x\" else \"y\"\n    if a:\n        return 1\n",
    );
    let f = p.functions().next().unwrap();
    assert!(
        matches!(&f.body.stmts[0].kind, StmtKind::Expr(e) if matches!(e.kind, ExprKind::If { .. }))
    );
    assert!(matches!(&f.body.stmts[1].kind, StmtKind::If { .. }));
}

#[test]
fn multiline_chains_at_top_level() {
    let p = parse_ok("stream S = A\n.where(x > 1)\n        .emit(\n  x: x)\nstream T = S .emit()");
    assert_eq!(
        p.streams().map(|s| s.ops.len()).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn statements_end_at_line_end_in_blocks() {
    // `return` without a value must not swallow the next line
    let p = parse_ok("fn f(x):\n    if x:\n        return\n    -x\n");
    let f = p.functions().next().unwrap();
    assert_eq!(f.body.stmts.len(), 2);
    assert!(matches!(&f.body.stmts[1].kind, StmtKind::Expr(e) if sx(e) == "(neg x)"));
}

#[test]
fn errors_recover_to_the_next_declaration() {
    let d = parse_program(
        "stream A = X .where(\nstream B = Y .emit(v: 1 +)\nlet ok = 1\nstream C = Z .emit(v: ))\n",
    )
    .1;
    let lines: Vec<u32> = d.iter().map(|d| d.span.line).collect();
    assert_eq!(lines, vec![1, 2, 4], "{d:#?}");
}

#[test]
fn errors_in_blocks_recover_per_line() {
    let (p, d) = parse_program("fn f():\n    let = 1\n    let y = 2\n    x := )\n    return y\n");
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(d[0].span.line, 2);
    assert_eq!(d[1].span.line, 4);
    assert_eq!(p.functions().next().map(|f| f.body.stmts.len()), Some(2));
}

#[test]
fn layout_errors() {
    assert_eq!(
        errs("fn f():\nlet x = 1\n"),
        vec!["expected an indented block after `:`"]
    );
    assert_eq!(
        errs("fn f(): return 1\n"),
        vec!["expected a new line after `:`, found `return`"]
    );
    assert_eq!(
        errs("fn f():\n    let x = 1\n  let y = 2\n"),
        vec!["inconsistent indentation: expected column 5, found column 3"]
    );
    assert_eq!(
        errs("fn f():\n    return 1 2\n"),
        vec!["expected end of line, found integer `2`"]
    );
}

#[test]
fn hints_for_equals_sign_mistakes() {
    let d = parse_program("stream S = A .where(x = 1)").1;
    assert_eq!(d[0].message, "expected `,` or `)`, found `=`");
    assert_eq!(
        d[0].hint.as_deref(),
        Some("use `==` to compare, or `name: value` for a named argument")
    );
    let d = parse_program("fn f():\n    x = 1\n").1;
    assert_eq!(d[0].message, "expected end of line, found `=`");
    assert!(d[0].hint.as_deref().is_some_and(|h| h.contains(":=")));
}

#[test]
fn misplaced_statements() {
    assert_eq!(
        errs("emit X(a: 1)"),
        vec!["`emit` is only allowed inside a function"]
    );
    assert_eq!(
        errs("return 1"),
        vec!["`return` is only allowed inside a function"]
    );
    assert_eq!(
        errs("break"),
        vec!["`break` is only allowed inside a function"]
    );
    assert_eq!(
        errs("fn f():\n    else:\n        x\n"),
        vec!["`else` without a matching `if`"]
    );
    assert_eq!(
        errs("stram S = A"),
        vec!["expected a declaration (`stream`, `event`, `fn`, `let`, …), found `stram`"]
    );
    let d = parse_program("stram S = A").1;
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `stream`?"));
    assert_eq!(errs("pattern P = SEQ(A)"), Vec::<String>::new());
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_crash() {
    let src = format!("let x = {}1{}", "(".repeat(5000), ")".repeat(5000));
    let d = errs(&src);
    assert_eq!(d, vec![format!("nesting deeper than {MAX_DEPTH} levels")]);
    let src = format!("let x = {}1", "-".repeat(5000));
    assert_eq!(errs(&src).len(), 1);
    let mut src = String::from("fn f():\n");
    for i in 1..300 {
        src.push_str(&" ".repeat(i * 2));
        src.push_str("if x:\n");
    }
    assert!(!errs(&src).is_empty());
}

#[test]
fn spans_point_at_the_problem() {
    let (_, d) = parse_program("stream S = A\n    .where(x > )");
    assert_eq!((d[0].span.line, d[0].span.column), (2, 16));
    assert_eq!(d[0].message, "expected an expression, found `)`");
}
