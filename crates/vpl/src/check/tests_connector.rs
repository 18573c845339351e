//! Connector declaration and binding checks (docs/connectors.md): every kind's parameters,
//! required ones, types, and output-only kinds.

use super::*;

const PRELUDE: &str = "event A:\n    x: int\n";

/// Every diagnostic of `src` (after the prelude) as `line:col severity message`.
fn diags(src: &str) -> Vec<String> {
    let full = format!("{PRELUDE}{src}");
    let all = match crate::check(&full, &CheckOptions::default()) {
        Ok(c) => c.warnings,
        Err(d) => d,
    };
    let mut out: Vec<String> = all
        .into_iter()
        .map(|d| {
            let sev = if d.is_error() { "error" } else { "warning" };
            format!("{}:{} {sev} {}", d.span.line, d.span.column, d.message)
        })
        .collect();
    out.sort();
    out
}

fn clean(src: &str) {
    assert_eq!(diags(src), Vec::<String>::new(), "{src}");
}

#[test]
fn every_kind_accepts_its_documented_parameters() {
    clean("connector M = mqtt(host: \"h\", port: 1883, client_id: \"c\", username: \"u\", password: \"p\", qos: 1, topic: \"t\", tls: true, tls_ca: \"ca.pem\")");
    clean("connector N = nats(servers: [\"nats://a:4222\", \"nats://b:4222\"], subject: \"s\", token: \"t\")");
    clean("connector K = kafka(brokers: \"h:9092,h2:9092\", group_id: \"g\", topic: \"t\", client_id: \"c\", properties: {\"linger.ms\": \"5\"})");
    clean("connector K = kafka(url: \"h:9092\")");
    clean("connector H = http(url: \"http://h/x\", method: \"PUT\", headers: {\"authorization\": \"Bearer x\", n: 1}, timeout: 5s, batch: 500, queue: 10000, retries: 3, max_backoff: 10s)");
    clean("connector F = file(path: \"/tmp/out.jsonl\", rotate_bytes: 1048576)");
    clean("connector C = console()");
    clean("connector K = kafka(brokers: \"h:9092\")\nstream S = A.from(K, topic: \"in\") .emit(x: x) .to(K, topic: \"out\", key: x)");
    clean("connector H = http(url: \"http://h\")\nconnector F = file(path: \"o\")\nconnector C = console()\nstream S = A .emit(x: x) .to(H) .to(F) .to(C)");
}

#[test]
fn missing_required_parameters_point_at_the_declaration() {
    assert_eq!(
        diags("connector H = http(method: \"POST\")"),
        vec!["3:1 error HTTP connector `H` needs `url`"]
    );
    assert_eq!(
        diags("connector F = file(rotate_bytes: 10)"),
        vec!["3:1 error file connector `F` needs `path`"]
    );
    assert_eq!(
        diags("connector K = kafka(group_id: \"g\")"),
        vec!["3:1 error Kafka connector `K` needs `brokers` or `url`"]
    );
}

#[test]
fn unknown_parameters_are_errors_with_a_suggestion() {
    let d = diags("connector H = http(url: \"u\", timout: 5s)");
    assert_eq!(d, vec!["3:30 error unknown HTTP parameter `timout`"]);
    let full = format!("{PRELUDE}connector H = http(url: \"u\", timout: 5s)");
    let e = crate::check(&full, &CheckOptions::default()).err().unwrap();
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `timeout`?"));
    assert_eq!(
        diags("connector C = console(path: \"x\")"),
        vec!["3:23 error unknown console parameter `path`"]
    );
    assert_eq!(
        diags("connector F = file(path: \"x\", rotate: 5)"),
        vec!["3:31 error unknown file parameter `rotate`"]
    );
}

#[test]
fn unknown_kafka_parameters_only_warn() {
    assert_eq!(
        diags("connector K = kafka(brokers: \"h:9092\", linger_ms: 5)"),
        vec![
            "3:40 warning unknown Kafka parameter `linger_ms` (passed to the client as a property)"
        ]
    );
}

#[test]
fn wrongly_typed_parameters_name_the_expected_type() {
    assert_eq!(
        diags("connector H = http(url: 5)"),
        vec!["3:25 error HTTP parameter `url` must be a string, found 5"]
    );
    assert_eq!(
        diags("connector H = http(url: \"u\", timeout: 5)"),
        vec!["3:39 error HTTP parameter `timeout` must be a duration (e.g. `5s`), found 5"]
    );
    assert_eq!(
        diags("connector H = http(url: \"u\", batch: 0)"),
        vec!["3:37 error HTTP parameter `batch` must be a positive integer, found 0"]
    );
    assert_eq!(
        diags("connector H = http(url: \"u\", method: \"FETCH\")"),
        vec!["3:38 error HTTP parameter `method` must be one of GET, POST, PUT, PATCH, DELETE, found \"FETCH\""]
    );
    assert_eq!(
        diags("connector H = http(url: \"u\", headers: \"x\")"),
        vec!["3:39 error HTTP parameter `headers` must be a map (e.g. `{\"k\": \"v\"}`), found \"x\""]
    );
    assert_eq!(
        diags("connector F = file(path: \"p\", rotate_bytes: \"1M\")"),
        vec!["3:45 error file parameter `rotate_bytes` must be a positive integer, found \"1M\""]
    );
    assert_eq!(
        diags("connector K = kafka(brokers: [\"a\", 1])"),
        vec!["3:30 error Kafka parameter `brokers` must be a string or an array of strings, found array"]
    );
    assert_eq!(
        diags("connector N = nats(url: \"u\", tls: \"yes\")"),
        vec!["3:35 error NATS parameter `tls` must be `true` or `false`, found \"yes\""]
    );
}

#[test]
fn unknown_kinds_and_duplicates() {
    assert_eq!(
        diags("connector H = htp(url: \"u\")"),
        vec!["3:15 error unknown connector kind `htp`"]
    );
    let d = diags("connector H = http(url: \"u\", url: \"v\")");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("duplicate parameter name `url`"), "{d:?}");
}

#[test]
fn output_only_kinds_cannot_be_sources() {
    assert_eq!(
        diags("connector H = http(url: \"u\")\nstream S = A.from(H)"),
        vec!["4:19 error connector `H` is of kind `http`, which can only be written to"]
    );
    assert_eq!(
        diags("connector F = file(path: \"u\")\nstream S = A .emit(x: x) .to(F, topic: \"t\")"),
        vec!["4:33 error unknown `.to` parameter `topic` for a file connector"]
    );
    assert_eq!(
        diags("connector M = mqtt(host: \"h\")\nstream S = A .emit(x: x) .to(M, key: x)"),
        vec!["4:33 warning unknown `.to` parameter `key` for a MQTT connector (ignored)"]
    );
}

#[test]
fn enrich_is_checked_against_its_http_connector() {
    clean("connector R = http(url: \"http://r/c\")\nstream S = A .enrich(R, key: x, fields: [name, \"tier\"], ttl: 60s, timeout: 500ms) .emit()");
    clean("connector R = http(url: \"http://r/c\")\nstream S = A .enrich(R, key: x) .emit()");
    assert_eq!(
        diags("connector M = mqtt(host: \"h\")\nstream S = A .enrich(M, key: x)"),
        vec!["4:22 error `.enrich` needs an `http` connector; `M` is of kind `mqtt`"]
    );
    assert_eq!(
        diags("connector R = http(url: \"u\")\nstream S = A .enrich(R)"),
        vec!["4:14 error `.enrich` needs `key: expression`"]
    );
    assert_eq!(
        diags("connector R = http(url: \"u\")\nstream S = A .enrich(R, key: x, ttl: 5, fields: name, tmeout: 1s)"),
        vec![
            "4:38 error `ttl` must be a positive duration, e.g. `500ms`",
            "4:49 error `fields` must be an array of field names, e.g. `[name, zone]`",
            "4:55 error unknown `.enrich` parameter `tmeout`",
        ]
    );
    assert_eq!(
        diags("stream S = A .enrich(Nope, key: x)"),
        vec!["3:22 error unknown connector `Nope`"]
    );
}

#[test]
fn kafka_tls_is_refused_at_the_parameter() {
    assert_eq!(
        diags("connector K = kafka(brokers: \"h:9092\", tls: true)"),
        vec!["3:40 error TLS is not supported for Kafka connectors (librdkafka is built without OpenSSL)"]
    );
}
