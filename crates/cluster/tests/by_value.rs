//! `ClusterState::apply_owned` (the replicated apply loop's path) against `apply`: for any
//! sequence of commands, both give the same responses, events and state.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use varpulis_cluster::{ClusterState, Command};

/// Commands that exercise every by-value branch: connector saves (valid, invalid, duplicate,
/// unknown), batches, idempotency envelopes (repeated keys, nested), and a few others.
fn pool() -> Vec<Command> {
    let mqtt = |name: &str, port: serde_json::Value| Command::CreateConnector {
        spec: connector(name, " MQTT ", json!({"host": "h", "port": port})),
    };
    let put = Command::PutConnector {
        spec: connector(
            "Nats1",
            "nats",
            json!({"port": "4222", "servers": "nats://h"}),
        ),
    };
    let update = Command::UpdateConnector {
        spec: connector("MqttOut", "mqtt", json!({"host": "other", "port": 8883})),
    };
    vec![
        mqtt("MqttOut", json!("1883")),
        mqtt("Second", json!(1884)),
        mqtt("bad-name", json!(1)),
        mqtt("BadPort", json!("99999")),
        update.clone(),
        put.clone(),
        Command::DeleteConnector {
            name: "MqttOut".into(),
        },
        Command::batch(vec![mqtt("InBatch", json!(1)), update.clone(), put.clone()]),
        Command::batch(vec![Command::batch(vec![])]),
        Command::Idempotent {
            key: "k1".into(),
            command: Box::new(mqtt("Keyed", json!("10"))),
        },
        Command::Idempotent {
            key: "k2".into(),
            command: Box::new(Command::batch(vec![put, mqtt("KeyedBatch", json!(2))])),
        },
        Command::Idempotent {
            key: "k3".into(),
            command: Box::new(Command::Idempotent {
                key: "inner".into(),
                command: Box::new(Command::Noop),
            }),
        },
        Command::Idempotent {
            key: String::new(),
            command: Box::new(Command::Noop),
        },
        reg("w1"),
        create("g1", spec("g1", &["p1"]), &[("p1", 0, Some("w1"))]),
        Command::Noop,
    ]
}

/// `cmd` as the log decodes it: nothing shared with `cmd`.
fn decoded(cmd: &Command) -> Command {
    serde_json::from_slice(&serde_json::to_vec(cmd).unwrap()).unwrap()
}

proptest! {
    #[test]
    fn apply_owned_equals_apply(picks in proptest::collection::vec(0usize..16, 1..40)) {
        let pool = pool();
        let mut by_ref = ClusterState::default();
        let mut by_value = ClusterState::default();
        let mut unshared = ClusterState::default();
        for i in picks {
            let cmd = &pool[i % pool.len()];
            let a = by_ref.apply(cmd);
            // A clone shares its batches' items with `pool` (the path of a log entry that is
            // still cached); a decoded copy owns them (the path that moves them).
            let b = by_value.apply_owned(cmd.clone());
            let c = unshared.apply_owned(decoded(cmd));
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a, c);
            prop_assert_eq!(&by_ref, &by_value);
            prop_assert_eq!(&by_ref, &unshared);
        }
        prop_assert_eq!(by_ref.state_hash(), by_value.state_hash());
        prop_assert_eq!(by_ref.state_hash(), unshared.state_hash());
    }
}
