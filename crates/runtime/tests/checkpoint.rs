//! Checkpoint/restore: a restored engine continues exactly where the checkpointed one stopped, and
//! bad bytes are rejected without changing state.

#![allow(clippy::unwrap_used)]

use varpulis_runtime::{evt, Engine, EngineOptions, Event, RuntimeError, Value};

const COUNTER: &str = include_str!("../examples/counter.vpl");

fn ticks(n: usize) -> Vec<Event> {
    let text: String = (0..n)
        .map(|i| format!("@{i}s Tick {{ source: \"s{i}\" }}\n"))
        .collect();
    evt::parse_evt(&text).unwrap()
}

fn run(engine: &mut Engine, events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        engine.process(e, &mut out).unwrap();
    }
    out.iter().map(|o| o.to_json().to_string()).collect()
}

#[test]
fn restored_counter_continues_identically() {
    let events = ticks(10);
    let opts = EngineOptions::default();
    let mut straight = Engine::compile(COUNTER, &opts).unwrap();
    let expected = run(&mut straight, &events);

    let mut first = Engine::compile(COUNTER, &opts).unwrap();
    let mut got = run(&mut first, &events[..4]);
    let bytes = first.checkpoint().unwrap();
    drop(first);
    let mut second = Engine::compile(COUNTER, &opts).unwrap();
    second.restore(&bytes).unwrap();
    assert!(matches!(second.global("count"), Some(Value::Int(4))));
    got.extend(run(&mut second, &events[4..]));
    assert_eq!(got, expected);
    assert_eq!(second.stats(), straight.stats());
    assert!(expected.last().unwrap().contains("\"count\":10"));
}

#[test]
fn corrupt_or_foreign_checkpoints_are_rejected() {
    let opts = EngineOptions::default();
    let mut engine = Engine::compile(COUNTER, &opts).unwrap();
    run(&mut engine, &ticks(3));
    let bytes = engine.checkpoint().unwrap();

    let mut fresh = Engine::compile(COUNTER, &opts).unwrap();
    for bad in [
        &bytes[..bytes.len() / 2],
        b"not a checkpoint".as_slice(),
        &[],
    ] {
        assert!(matches!(
            fresh.restore(bad),
            Err(RuntimeError::Checkpoint(_))
        ));
    }
    let mut flipped = bytes.clone();
    let i = flipped.len() - 5;
    flipped[i] ^= 0x20;
    assert!(fresh.restore(&flipped).is_err());
    assert!(
        matches!(fresh.global("count"), Some(Value::Int(0))),
        "failed restore changed state"
    );

    let other = format!("{COUNTER}\nstream Extra = Tick .emit()\n");
    let mut foreign = Engine::compile(&other, &opts).unwrap();
    assert!(foreign.restore(&bytes).is_err());
    fresh.restore(&bytes).unwrap();
    assert!(matches!(fresh.global("count"), Some(Value::Int(3))));
}

#[test]
fn api_surface_reports_bindings() {
    let src = r#"
connector Plant = mqtt(host: "broker.local", port: 1883, client_id: "vp-1")
stream Readings = PumpReading.from(Plant, topic: "plant/pumps/#")
stream Alerts = Readings .where(rpm > 3000) .emit(pump: pump, rpm: rpm) .to(Plant, topic: "plant/alerts")
stream Other = Valve .emit()
"#;
    let engine = Engine::compile(src, &EngineOptions::default()).unwrap();
    assert_eq!(
        engine.input_types(),
        vec!["PumpReading".to_string(), "Valve".to_string()]
    );
    let sources = engine.sources();
    assert_eq!(sources.len(), 1);
    assert_eq!(
        (sources[0].connector.as_str(), sources[0].topic()),
        ("Plant", Some("plant/pumps/#"))
    );
    let sinks = engine.sinks();
    assert_eq!(
        (sinks[0].stream.as_str(), sinks[0].topic()),
        ("Alerts", Some("plant/alerts"))
    );
    let conns = engine.connectors();
    assert_eq!(conns[0].kind, "mqtt");
    assert_eq!(
        conns[0].params[1],
        ("port".to_string(), serde_json::json!(1883))
    );
}

#[test]
fn external_connectors_are_accepted() {
    let src = "stream S = In .emit(x: x) .to(Registered, topic: \"t\")";
    assert!(Engine::compile(src, &EngineOptions::default()).is_err());
    let opts = EngineOptions {
        external_connectors: vec!["Registered".into()],
        ..EngineOptions::default()
    };
    let mut engine = Engine::compile(src, &opts).unwrap();
    let mut out = Vec::new();
    let fields = serde_json::json!({"x": 1});
    engine
        .process(
            &Event::from_json("In", fields.as_object().unwrap(), 7),
            &mut out,
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].sink().map(|s| s.connector.as_str()),
        Some("Registered")
    );
}

#[test]
fn engine_can_move_between_threads_and_be_shared() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Event>();
    assert_send_sync::<varpulis_runtime::OutputEvent>();
}

#[test]
fn another_version_with_the_same_state_shape_continues_from_the_state() {
    let opts = EngineOptions::default();
    let mut old = Engine::compile(COUNTER, &opts).unwrap();
    run(&mut old, &ticks(3));
    let bytes = old.checkpoint().unwrap();
    // A rolling update: same variable and streams, different expressions (whitespace here).
    let new_source = format!("{COUNTER}\n# version 2\n");
    let mut new = Engine::compile(&new_source, &opts).unwrap();
    assert!(
        new.restore(&bytes).is_err(),
        "strict restore is per program"
    );
    new.restore_compatible(&bytes).unwrap();
    assert!(matches!(new.global("count"), Some(Value::Int(3))));
    // A program without the variable cannot take the state, and is left untouched.
    let other = Engine::compile("stream S = Tick .emit(v: 1)", &opts).unwrap();
    let other_bytes = other.checkpoint().unwrap();
    let mut counter = Engine::compile(COUNTER, &opts).unwrap();
    assert!(counter.restore_compatible(&other_bytes).is_err());
    assert!(matches!(counter.global("count"), Some(Value::Int(0))));
}
