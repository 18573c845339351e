//! Program budgets (issue 18 item 4): endless loops, deep recursion, string doubling, huge
//! collections and output floods fail the event with a clear error and a counter; the engine
//! carries on with the next event and the process never aborts.

#![allow(clippy::unwrap_used)]

use varpulis_runtime::{Engine, EngineOptions, Event, RuntimeError, Value};

fn engine(src: &str) -> Engine {
    Engine::compile(src, &EngineOptions::default()).unwrap()
}

fn event(n: i64) -> Event {
    Event::new("In", 0, vec![("n".into(), Value::Int(n))])
}

/// Runs one event and returns (outputs, errors).
fn feed(e: &mut Engine, ev: &Event) -> (usize, Vec<RuntimeError>) {
    let mut out = Vec::new();
    e.process(ev, &mut out).unwrap();
    let errs = e.take_errors().into_iter().map(|r| r.error).collect();
    (out.iter().filter(|o| o.is_output).count(), errs)
}

#[test]
fn endless_loop_is_stopped_quickly_by_the_default_step_budget() {
    let mut e = engine(
        "fn spin(n: int) -> int:\n    var x = 0\n    while true:\n        x := x + 1\n    return x\n\
         stream S = In .emit(v: spin(n))\nstream Ok = In .emit(n: n)\n",
    );
    let t = std::time::Instant::now();
    let (outs, errs) = feed(&mut e, &event(1));
    // Generous even for a debug build on a loaded machine; release takes a few tens of ms.
    assert!(t.elapsed().as_secs_f64() < 5.0, "took {:?}", t.elapsed());
    assert_eq!(errs, vec![RuntimeError::StepBudget(1_000_000)]);
    assert_eq!(outs, 1, "the other stream still ran");
    assert_eq!(e.stats().budget_exceeded, 1);
    assert_eq!(e.stats().errors, 1);
}

#[test]
fn deep_recursion_fails_the_event_even_on_a_small_thread_stack() {
    // 256 nested calls, each through a deeply nested expression: must not overflow a 2 MiB
    // stack (the default of spawned threads and tokio's blocking pool).
    let nested = format!("{}depth(n - 1){}", "(1 + ".repeat(30), ")".repeat(30));
    let src = format!(
        "fn depth(n: int) -> int:\n    if n <= 0:\n        return 0\n    return {nested}\n\
         stream S = In .emit(v: depth(n))\n"
    );
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut e = engine(&src);
            let small = feed(&mut e, &event(10));
            let deep = feed(&mut e, &event(100_000));
            (small, deep)
        })
        .unwrap();
    let ((outs, errs), (deep_outs, deep_errs)) = handle.join().unwrap();
    assert_eq!((outs, errs.len()), (1, 0));
    assert_eq!(deep_outs, 0);
    assert!(
        matches!(
            deep_errs.as_slice(),
            [RuntimeError::Recursion(_) | RuntimeError::StackLimit(_)]
        ),
        "{deep_errs:?}"
    );
}

#[test]
fn string_doubling_fails_with_a_size_error_not_an_abort() {
    let mut e = engine(
        "fn grow(n: int) -> int:\n    var s = \"ab\"\n    while true:\n        s := s + s\n    return len(s)\n\
         stream S = In .emit(v: grow(n))\n",
    );
    let (outs, errs) = feed(&mut e, &event(1));
    assert_eq!(outs, 0);
    match errs.as_slice() {
        [RuntimeError::ValueTooLarge(m)] => assert!(m.contains("limit of 16777216 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.stats().budget_exceeded, 1);
}

#[test]
fn huge_results_are_refused_before_they_are_allocated() {
    let cases = [
        // 8 MiB string, each `a` replaced by 8 MiB: would be 2^46 bytes.
        "fn f(n: int) -> int:\n    var s = \"a\"\n    for i in 0..23:\n        s := s + s\n    return len(replace(s, \"a\", s))\n",
        // A million-element split of a 16 MiB string is over the collection limit.
        "fn f(n: int) -> int:\n    var s = \"a\"\n    for i in 0..21:\n        s := s + s\n    return len(split(s, \"\"))\n",
        // Exponentially shared structure: its text would be 2^60 elements long.
        "fn f(n: int) -> int:\n    var a = [1]\n    for i in 0..60:\n        a := [a, a]\n    return len(to_string(a))\n",
        "fn f(n: int) -> int:\n    return len(range(0, 100000000))\n",
    ];
    for body in cases {
        let mut e = engine(&format!("{body}stream S = In .emit(v: f(n))\n"));
        let (outs, errs) = feed(&mut e, &event(1));
        assert_eq!(outs, 0, "{body}");
        assert!(
            matches!(errs.as_slice(), [RuntimeError::ValueTooLarge(_)]),
            "{body}: {errs:?}"
        );
    }
}

#[test]
fn deeply_nested_values_are_refused_before_they_can_overflow_the_stack() {
    // A million nested arrays would overflow the stack when dropped.
    let mut e = engine(
        "fn f(n: int) -> int:\n    var a = []\n    while true:\n        a := [a]\n    return 0\n\
         stream S = In .emit(v: f(n))\n",
    );
    let (outs, errs) = feed(&mut e, &event(1));
    assert_eq!(outs, 0);
    match errs.as_slice() {
        [RuntimeError::ValueTooLarge(m)] => assert!(m.contains("nested"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_exponential_value_cannot_become_an_output_field() {
    let mut e = engine(
        "fn f(n: int):\n    var a = [1]\n    for i in 0..60:\n        a := [a, a]\n    emit Big(a: a)\n\
         stream S = In .process(f(n))\n",
    );
    let (outs, errs) = feed(&mut e, &event(1));
    assert_eq!(outs, 0);
    assert!(
        matches!(errs.as_slice(), [RuntimeError::ValueTooLarge(_)]),
        "{errs:?}"
    );
}

#[test]
fn many_large_values_exhaust_the_memory_budget() {
    let opts = EngineOptions {
        memory_budget: 64 << 20,
        ..EngineOptions::default()
    };
    // Each iteration builds a new 1 MiB string and keeps it: 100 MiB in total.
    let src = "fn f(n: int) -> int:\n    var s = \"a\"\n    for i in 0..20:\n        s := s + s\n    var keep = []\n    for i in 0..100:\n        keep := push(keep, s + to_string(i))\n    return len(keep)\n\
               stream S = In .emit(v: f(n))\n";
    let mut e = Engine::compile(src, &opts).unwrap();
    let (_, errs) = feed(&mut e, &event(1));
    assert_eq!(errs, vec![RuntimeError::MemoryBudget(64 << 20)]);
}

#[test]
fn output_floods_are_capped_per_input_event() {
    let opts = EngineOptions {
        max_outputs_per_event: 1_000,
        step_budget: 10_000_000,
        ..EngineOptions::default()
    };
    let src = "fn flood(n: int):\n    for i in 0..n:\n        emit Out(i: i)\n\
               stream S = In .process(flood(n))\nstream T = S .emit(i: i)\n";
    let mut e = Engine::compile(src, &opts).unwrap();
    // 400 emitted + 400 routed to T: 800; T handles each routed event on its own, so its first
    // 200 outputs fit and the other 200 fail.
    let (outs, errs) = feed(&mut e, &event(400));
    assert_eq!(outs, 600);
    assert_eq!(
        e.stats().errors,
        200,
        "(only the last 100 errors are kept for take_errors)"
    );
    assert!(
        errs.iter().all(|e| *e == RuntimeError::OutputLimit(1_000)),
        "{errs:?}"
    );
    let (outs, errs) = feed(&mut e, &event(1_000_000));
    assert_eq!(outs, 0);
    assert_eq!(errs, vec![RuntimeError::OutputLimit(1_000)]);
    // The next event is unaffected.
    let (outs, errs) = feed(&mut e, &event(3));
    assert_eq!((outs, errs.len()), (6, 0));
}

#[test]
fn message_templates_respect_the_string_limit() {
    // A 1 MiB field written 64 times by a template would be 64 MiB: over a 4 MiB limit, the
    // event fails before the text is built.
    let placeholders = "{s}".repeat(64);
    let src =
        format!("stream S = In .emit(m: \"{placeholders}\")\nstream Ok = In .emit(n: len(s))\n");
    let opts = EngineOptions {
        max_string_bytes: 4 << 20,
        ..EngineOptions::default()
    };
    let mut e = Engine::compile(&src, &opts).unwrap();
    let ev = Event::new(
        "In",
        0,
        vec![("s".into(), Value::str(&"x".repeat(1 << 20)))],
    );
    let (outs, errs) = feed(&mut e, &ev);
    assert_eq!(outs, 1, "the other stream still ran");
    assert!(
        matches!(errs.as_slice(), [RuntimeError::ValueTooLarge(_)]),
        "{errs:?}"
    );
    let small = Event::new("In", 0, vec![("s".into(), Value::str("ab"))]);
    assert_eq!(feed(&mut e, &small), (2, Vec::new()));
}
