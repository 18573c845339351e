//! Cluster-wide connector definitions (`POST /api/v1/cluster/connectors`).
//!
//! VPL programs refer to a connector by name, so the name must be an identifier
//! (`[A-Za-z_][A-Za-z0-9_]*`). `connector_type` is `mqtt` or `nats` (case-insensitive, stored
//! lowercase). An MQTT connector needs a non-empty `host`; a `port` (MQTT or NATS) may arrive as
//! a number or a numeric string and is stored as a number in `1..=65535`.

use serde_json::Value;
use varpulis_api::cluster::ConnectorSpec;

use crate::error::Error;

/// Connector types the cluster accepts.
pub const CONNECTOR_TYPES: [&str; 2] = ["mqtt", "nats"];

/// Whether `name` is an identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An MQTT connector's `host` must be a non-empty string.
fn check_mqtt_host(params: &serde_json::Map<String, Value>) -> Result<(), Error> {
    match params.get("host") {
        Some(Value::String(h)) if !h.trim().is_empty() => Ok(()),
        Some(_) => Err(Error::InvalidConnector(
            "mqtt 'host' must be a non-empty string".into(),
        )),
        None => Err(Error::InvalidConnector(
            "mqtt connector needs a 'host' parameter".into(),
        )),
    }
}

fn parse_port(value: &Value) -> Result<u64, Error> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(p) if (1..=65535).contains(&p) => Ok(p),
        _ => Err(Error::InvalidConnector(format!(
            "port must be a number between 1 and 65535 (a number or a numeric string), got {value}"
        ))),
    }
}

/// Validates a connector and returns its normalised form (lowercase type, numeric port).
///
/// Copies the spec; [`normalize_owned`] moves it instead (the apply path, which owns the
/// command). Both give the same result.
pub fn normalize(spec: &ConnectorSpec) -> Result<ConnectorSpec, Error> {
    normalize_owned(spec.clone())
}

/// [`normalize`] by value: validates `spec` and normalises it in place, so the params map is
/// moved rather than copied (every replica runs this for every connector write, issue 24).
pub fn normalize_owned(mut spec: ConnectorSpec) -> Result<ConnectorSpec, Error> {
    if !is_identifier(&spec.name) {
        return Err(Error::InvalidConnector(format!(
            "name '{}' must be an identifier ([A-Za-z_][A-Za-z0-9_]*) because VPL refers to it",
            spec.name
        )));
    }
    let trimmed = spec.connector_type.trim();
    let Some(kind) = CONNECTOR_TYPES
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(trimmed))
    else {
        return Err(Error::InvalidConnector(format!(
            "connector_type '{}' is not supported (expected one of: {})",
            spec.connector_type,
            CONNECTOR_TYPES.join(", ")
        )));
    };
    if spec.connector_type != kind {
        spec.connector_type = kind.to_string();
    }
    if kind == "mqtt" {
        check_mqtt_host(&spec.params)?;
    }
    if let Some(value) = spec.params.get_mut("port") {
        let port = parse_port(value)?;
        // An integer in range is already its normal form; only a string is rewritten.
        if !matches!(value, Value::Number(_)) {
            *value = Value::from(port);
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, kind: &str, params: Value) -> ConnectorSpec {
        ConnectorSpec {
            name: name.into(),
            connector_type: kind.into(),
            params: params.as_object().cloned().unwrap_or_default(),
            description: None,
        }
    }

    fn message(r: Result<ConnectorSpec, Error>) -> String {
        match r {
            Err(Error::InvalidConnector(m)) => m,
            other => panic!("expected InvalidConnector, got {other:?}"),
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("MqttOut"));
        assert!(is_identifier("_x9"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("9x"));
        assert!(!is_identifier("my-conn"));
        assert!(!is_identifier("a b"));
    }

    #[test]
    fn port_string_is_normalised_to_a_number() {
        let c = normalize(&spec(
            "M",
            "MQTT",
            json!({"host": "localhost", "port": "1883"}),
        ))
        .unwrap();
        assert_eq!(c.connector_type, "mqtt");
        assert_eq!(c.params["port"], json!(1883));
        let c = normalize(&spec("M", "mqtt", json!({"host": "h", "port": 8883}))).unwrap();
        assert_eq!(c.params["port"], json!(8883));
        let c = normalize(&spec("N", "nats", json!({"servers": "nats://h:4222"}))).unwrap();
        assert_eq!(c.connector_type, "nats");
    }

    #[test]
    fn invalid_connectors_are_rejected() {
        assert!(
            message(normalize(&spec("bad-name", "mqtt", json!({"host": "h"}))))
                .contains("identifier")
        );
        assert!(message(normalize(&spec("k", "kafka", json!({})))).contains("not supported"));
        assert!(message(normalize(&spec("m", "mqtt", json!({})))).contains("needs a 'host'"));
        assert!(message(normalize(&spec("m", "mqtt", json!({"host": ""})))).contains("non-empty"));
        assert!(message(normalize(&spec("m", "mqtt", json!({"host": 5})))).contains("non-empty"));
        for port in [
            json!("abc"),
            json!(0),
            json!(70000),
            json!(-1),
            json!(true),
            json!(""),
        ] {
            let m = message(normalize(&spec(
                "m",
                "mqtt",
                json!({"host": "h", "port": port}),
            )));
            assert!(m.contains("between 1 and 65535"), "{m}");
        }
    }

    /// The copying implementation `normalize_owned` replaced (session 11), kept as the oracle.
    fn reference(spec: &ConnectorSpec) -> Result<ConnectorSpec, Error> {
        if !is_identifier(&spec.name) {
            return Err(Error::InvalidConnector(format!(
                "name '{}' must be an identifier ([A-Za-z_][A-Za-z0-9_]*) because VPL refers to it",
                spec.name
            )));
        }
        let kind = spec.connector_type.trim().to_ascii_lowercase();
        if !CONNECTOR_TYPES.contains(&kind.as_str()) {
            return Err(Error::InvalidConnector(format!(
                "connector_type '{}' is not supported (expected one of: {})",
                spec.connector_type,
                CONNECTOR_TYPES.join(", ")
            )));
        }
        let mut params = spec.params.clone();
        if kind == "mqtt" {
            check_mqtt_host(&params)?;
        }
        if let Some(port) = params.get("port") {
            let port = parse_port(port)?;
            params.insert("port".to_string(), Value::from(port));
        }
        Ok(ConnectorSpec {
            name: spec.name.clone(),
            connector_type: kind,
            params,
            description: spec.description.clone(),
        })
    }

    fn param() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(json!(1883)),
            Just(json!(0)),
            Just(json!(65535)),
            Just(json!(70000)),
            Just(json!(-3)),
            Just(json!(12.5)),
            Just(json!(true)),
            Just(json!(null)),
            Just(json!("")),
            Just(json!(" 8883 ")),
            Just(json!("4222")),
            Just(json!("abc")),
            Just(json!("localhost")),
            Just(json!({"nested": [1, 2]})),
        ]
    }

    proptest::proptest! {
        /// By value and by reference give the reference result: same spec (byte for byte once
        /// serialized, so the state hash is unchanged) or the same error message.
        #[test]
        fn normalize_owned_equals_the_copying_version(
            name in proptest::sample::select(vec!["M", "_x9", "bad-name", "", "9x", "Out_1"]),
            kind in proptest::sample::select(
                vec!["mqtt", "MQTT", " Nats ", "nats", "kafka", "", "mqtt\t", "NaTs"],
            ),
            host in proptest::option::of(param()),
            port in proptest::option::of(param()),
            extra in proptest::option::of(param()),
            description in proptest::option::of("[a-z ]{0,8}"),
        ) {
            let mut params = serde_json::Map::new();
            for (k, v) in [("host", host), ("port", port), ("topic", extra)] {
                if let Some(v) = v {
                    params.insert(k.to_string(), v);
                }
            }
            let spec = ConnectorSpec {
                name: name.to_string(),
                connector_type: kind.to_string(),
                params,
                description,
            };
            let want = reference(&spec);
            let by_ref = normalize(&spec);
            let by_value = normalize_owned(spec.clone());
            let show = |r: &Result<ConnectorSpec, Error>| match r {
                Ok(s) => format!("ok {}", serde_json::to_string(s).unwrap_or_default()),
                Err(e) => format!("err {e}"),
            };
            proptest::prop_assert_eq!(show(&by_ref), show(&want));
            proptest::prop_assert_eq!(show(&by_value), show(&want));
            proptest::prop_assert_eq!(by_value.ok(), want.ok());
        }
    }
}
