//! Limits on everything that enters the Raft log, checked BEFORE a command is proposed.
//!
//! Every byte of a command is written to the log of every coordinator, replicated, snapshotted
//! and kept in memory. Unbounded input (a registration with 9 MB of labels, a group of 10,000
//! pipelines) stalls consensus and grows every node's memory, so each client-supplied field and
//! each collection has a limit ([`Limits`], configurable, with defaults sized far above real use).
//!
//! [`enforce`] is pure: it reads the applied state (for the cluster-wide counts) and the command,
//! and either refuses the command with [`Error::LimitExceeded`] (nothing is proposed) or lets it
//! through. Text that the *leader* writes into commands (failure reasons, worker error messages)
//! is not refused but truncated to [`Limits::max_text_bytes`]: a worker answering with a 10 MB
//! error must not block the reconciler.
//!
//! Limits are checked against the leader's state before proposing, not in `apply` (they are
//! configuration, possibly different on each node, and `apply` must stay deterministic): two
//! registrations of new workers proposed concurrently when the cluster is one below
//! `max_workers` can both pass. Counts may therefore exceed their limit by the number of writes
//! in flight at once; sizes never do.
//!
//! Status codes: a field or a count inside the request that is too large answers `413`; a
//! cluster-wide capacity (workers, groups, connectors) that is reached answers `400`. Both carry
//! the code `limit_exceeded` and name the limit (`limits.max_labels`, ...).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use varpulis_api::cluster::{ConnectorSpec, PipelineGroupSpec};

use crate::command::{Command, RegisterWorker};
use crate::error::{Error, LimitScope};
use crate::state::ClusterState;
use crate::version::RolloutCommand;

/// The configurable limits (TOML table `[limits]` of the coordinator, flag `--limit KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Registered workers in the cluster.
    pub max_workers: u64,
    /// Pipeline groups in the cluster.
    pub max_groups: u64,
    /// Connectors in the cluster.
    pub max_connectors: u64,
    /// Pipelines in one group.
    pub max_pipelines_per_group: u64,
    /// Replicas of one pipeline.
    pub max_replicas: u64,
    /// Routes in one group.
    pub max_routes_per_group: u64,
    /// Event type patterns of one route.
    pub max_event_types_per_route: u64,
    /// Labels of one worker or one pipeline.
    pub max_labels: u64,
    /// Bytes of one label key or value.
    pub max_label_bytes: u64,
    /// Bytes of a name: group, pipeline, connector, connector type, placement strategy, event
    /// type, parameter key.
    pub max_name_bytes: u64,
    /// Bytes of a worker id (also a pipeline's `worker_affinity`).
    pub max_id_bytes: u64,
    /// Bytes of a worker's address.
    pub max_address_bytes: u64,
    /// Bytes of a worker's API key.
    pub max_secret_bytes: u64,
    /// Bytes of one pipeline's VPL source.
    pub max_program_bytes: u64,
    /// Bytes of a whole group spec (JSON), rolling updates included.
    pub max_spec_bytes: u64,
    /// Parameters of one connector.
    pub max_params: u64,
    /// Bytes of one connector parameter value (JSON).
    pub max_param_bytes: u64,
    /// Bytes of a connector description.
    pub max_description_bytes: u64,
    /// Bytes of a route's MQTT topic.
    pub max_topic_bytes: u64,
    /// Bytes of one stored pipeline checkpoint (never above the state machine's own 1 MiB cap).
    pub max_checkpoint_bytes: u64,
    /// Bytes of leader-written text (reasons, error messages): longer text is truncated.
    pub max_text_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_workers: 10_000,
            max_groups: 1_000,
            max_connectors: 1_000,
            max_pipelines_per_group: 100,
            max_replicas: 64,
            max_routes_per_group: 256,
            max_event_types_per_route: 64,
            max_labels: 64,
            max_label_bytes: 256,
            max_name_bytes: 128,
            max_id_bytes: 256,
            max_address_bytes: 512,
            max_secret_bytes: 512,
            max_program_bytes: 256 * 1024,
            max_spec_bytes: 1024 * 1024,
            max_params: 64,
            max_param_bytes: 16 * 1024,
            max_description_bytes: 4096,
            max_topic_bytes: 256,
            max_checkpoint_bytes: crate::state::MAX_CHECKPOINT_BYTES as u64,
            max_text_bytes: 4096,
        }
    }
}

/// The key names of [`Limits`], for `--limit KEY=VALUE` and error messages.
pub const LIMIT_KEYS: &[&str] = &[
    "max_workers",
    "max_groups",
    "max_connectors",
    "max_pipelines_per_group",
    "max_replicas",
    "max_routes_per_group",
    "max_event_types_per_route",
    "max_labels",
    "max_label_bytes",
    "max_name_bytes",
    "max_id_bytes",
    "max_address_bytes",
    "max_secret_bytes",
    "max_program_bytes",
    "max_spec_bytes",
    "max_params",
    "max_param_bytes",
    "max_description_bytes",
    "max_topic_bytes",
    "max_checkpoint_bytes",
    "max_text_bytes",
];

impl Limits {
    fn slot(&mut self, key: &str) -> Option<&mut u64> {
        Some(match key {
            "max_workers" => &mut self.max_workers,
            "max_groups" => &mut self.max_groups,
            "max_connectors" => &mut self.max_connectors,
            "max_pipelines_per_group" => &mut self.max_pipelines_per_group,
            "max_replicas" => &mut self.max_replicas,
            "max_routes_per_group" => &mut self.max_routes_per_group,
            "max_event_types_per_route" => &mut self.max_event_types_per_route,
            "max_labels" => &mut self.max_labels,
            "max_label_bytes" => &mut self.max_label_bytes,
            "max_name_bytes" => &mut self.max_name_bytes,
            "max_id_bytes" => &mut self.max_id_bytes,
            "max_address_bytes" => &mut self.max_address_bytes,
            "max_secret_bytes" => &mut self.max_secret_bytes,
            "max_program_bytes" => &mut self.max_program_bytes,
            "max_spec_bytes" => &mut self.max_spec_bytes,
            "max_params" => &mut self.max_params,
            "max_param_bytes" => &mut self.max_param_bytes,
            "max_description_bytes" => &mut self.max_description_bytes,
            "max_topic_bytes" => &mut self.max_topic_bytes,
            "max_checkpoint_bytes" => &mut self.max_checkpoint_bytes,
            "max_text_bytes" => &mut self.max_text_bytes,
            _ => return None,
        })
    }

    /// Sets one limit from `KEY=VALUE` (the `--limit` flag).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}`: expected KEY=VALUE, e.g. max_labels=64"))?;
        let key = key.trim();
        let value: u64 = value
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("`{assignment}`: the value must be a whole number"))?;
        let slot = self
            .slot(key)
            .ok_or_else(|| format!("unknown limit `{key}` (known: {})", LIMIT_KEYS.join(", ")))?;
        *slot = value;
        Ok(())
    }

    /// Largest accepted body of a worker registration: every field at its limit, plus room for
    /// the capacity and the list of running pipelines a worker reports (at least 1 MiB). A
    /// larger body is refused before it is read.
    pub fn registration_body_bytes(&self) -> usize {
        let labels = self
            .max_labels
            .saturating_mul(self.max_label_bytes.saturating_mul(2).saturating_add(8));
        let fields = self
            .max_id_bytes
            .saturating_add(self.max_address_bytes)
            .saturating_add(self.max_secret_bytes);
        let total = labels.saturating_add(fields).saturating_add(1024 * 1024);
        usize::try_from(total).unwrap_or(usize::MAX)
    }

    /// Checks that every limit is usable (at least 1; checkpoints within the hard cap).
    pub fn validate(&self) -> Result<(), String> {
        let mut copy = self.clone();
        for key in LIMIT_KEYS {
            if copy.slot(key).is_some_and(|v| *v == 0) {
                return Err(format!("limit {key} must be at least 1"));
            }
        }
        let hard = crate::state::MAX_CHECKPOINT_BYTES as u64;
        if self.max_checkpoint_bytes > hard {
            return Err(format!(
                "limit max_checkpoint_bytes must be at most {hard} (the state machine's cap)"
            ));
        }
        Ok(())
    }
}

/// The refusal for `what` being `actual` where `limit` allows `max`.
fn exceeded(scope: LimitScope, limit: &str, what: String, actual: u64, max: u64) -> Error {
    Error::LimitExceeded {
        limit: format!("limits.{limit}"),
        what,
        actual,
        max,
        scope,
    }
}

/// Refuses `len` above `max` (a size or a count inside the request: 413).
fn within(limit: &str, what: impl FnOnce() -> String, len: usize, max: u64) -> Result<(), Error> {
    let len = len as u64;
    if len > max {
        return Err(exceeded(LimitScope::Request, limit, what(), len, max));
    }
    Ok(())
}

fn labels_within(
    limits: &Limits,
    owner: impl Fn() -> String,
    labels: &BTreeMap<String, String>,
) -> Result<(), Error> {
    within(
        "max_labels",
        || format!("the number of labels of {}", owner()),
        labels.len(),
        limits.max_labels,
    )?;
    for (key, value) in labels {
        within(
            "max_label_bytes",
            || format!("a label key of {} (bytes)", owner()),
            key.len(),
            limits.max_label_bytes,
        )?;
        within(
            "max_label_bytes",
            || format!("the value of label '{}' of {} (bytes)", short(key), owner()),
            value.len(),
            limits.max_label_bytes,
        )?;
    }
    Ok(())
}

/// A name for messages: at most 64 bytes of it (the name itself may be the oversized field).
fn short(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// Truncates leader-written text to `max` bytes (on a character boundary).
fn clamp(text: &mut String, max: u64) {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if text.len() <= max {
        return;
    }
    const MARK: &str = " [truncated]";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    if text.len() + MARK.len() <= max {
        text.push_str(MARK);
    }
}

fn clamp_opt(text: &mut Option<String>, max: u64) {
    if let Some(t) = text {
        clamp(t, max);
    }
}

/// Checks the size of a registration's body (bytes) against
/// [`Limits::registration_body_bytes`], before it is parsed.
pub fn check_registration_body(limits: &Limits, len: usize) -> Result<(), Error> {
    let max = limits.registration_body_bytes();
    if len > max {
        return Err(exceeded(
            LimitScope::Request,
            "max_labels",
            "the registration body (bytes; its size follows limits.max_labels, \
                 limits.max_label_bytes, limits.max_id_bytes, limits.max_address_bytes and \
                 limits.max_secret_bytes)"
                .to_string(),
            len as u64,
            max as u64,
        ));
    }
    Ok(())
}

/// Checks the sizes of a worker registration.
pub fn check_registration(limits: &Limits, r: &RegisterWorker) -> Result<(), Error> {
    within(
        "max_id_bytes",
        || "the worker id (bytes)".into(),
        r.worker_id.len(),
        limits.max_id_bytes,
    )?;
    let owner = || format!("worker '{}'", short(&r.worker_id));
    within(
        "max_address_bytes",
        || format!("the address of {} (bytes)", owner()),
        r.address.len(),
        limits.max_address_bytes,
    )?;
    within(
        "max_secret_bytes",
        || format!("the api_key of {} (bytes)", owner()),
        r.api_key.len(),
        limits.max_secret_bytes,
    )?;
    labels_within(limits, owner, &r.labels)
}

/// Checks a pipeline group spec (creation or rolling update); cheap enough to run before the
/// VPL check.
pub fn check_group_spec(limits: &Limits, spec: &PipelineGroupSpec) -> Result<(), Error> {
    within(
        "max_name_bytes",
        || "the group name (bytes)".into(),
        spec.name.len(),
        limits.max_name_bytes,
    )?;
    let group = || format!("group '{}'", short(&spec.name));
    within(
        "max_pipelines_per_group",
        || format!("the number of pipelines of {}", group()),
        spec.pipelines.len(),
        limits.max_pipelines_per_group,
    )?;
    within(
        "max_routes_per_group",
        || format!("the number of routes of {}", group()),
        spec.routes.len(),
        limits.max_routes_per_group,
    )?;
    if let Some(strategy) = &spec.placement {
        within(
            "max_name_bytes",
            || format!("the placement strategy of {} (bytes)", group()),
            strategy.len(),
            limits.max_name_bytes,
        )?;
    }
    for p in &spec.pipelines {
        within(
            "max_name_bytes",
            || format!("a pipeline name of {} (bytes)", group()),
            p.name.len(),
            limits.max_name_bytes,
        )?;
        let pipeline = || format!("pipeline '{}' of {}", short(&p.name), group());
        within(
            "max_program_bytes",
            || format!("the VPL source of {} (bytes)", pipeline()),
            p.source.len(),
            limits.max_program_bytes,
        )?;
        if let Some(affinity) = &p.worker_affinity {
            within(
                "max_id_bytes",
                || format!("the worker_affinity of {} (bytes)", pipeline()),
                affinity.len(),
                limits.max_id_bytes,
            )?;
        }
        within(
            "max_replicas",
            || format!("the replicas of {}", pipeline()),
            crate::group::replicas_of(p) as usize,
            limits.max_replicas,
        )?;
        labels_within(limits, pipeline, &p.labels)?;
    }
    for (i, r) in spec.routes.iter().enumerate() {
        let route = || format!("route {i} of {}", group());
        for end in [&r.from_pipeline, &r.to_pipeline] {
            within(
                "max_name_bytes",
                || format!("a pipeline name in {} (bytes)", route()),
                end.len(),
                limits.max_name_bytes,
            )?;
        }
        within(
            "max_event_types_per_route",
            || format!("the number of event types of {}", route()),
            r.event_types.len(),
            limits.max_event_types_per_route,
        )?;
        for t in &r.event_types {
            within(
                "max_name_bytes",
                || format!("an event type of {} (bytes)", route()),
                t.len(),
                limits.max_name_bytes,
            )?;
        }
        if let Some(topic) = &r.mqtt_topic {
            within(
                "max_topic_bytes",
                || format!("the MQTT topic of {} (bytes)", route()),
                topic.len(),
                limits.max_topic_bytes,
            )?;
        }
    }
    // Every field is bounded now; the whole spec must also fit one log entry comfortably.
    let size = json_len(spec);
    within(
        "max_spec_bytes",
        || format!("the spec of {} (bytes)", group()),
        size,
        limits.max_spec_bytes,
    )?;
    Ok(())
}

/// The length of `value` as JSON, counted without building the text (the write path checks
/// every connector's params on every write); `usize::MAX` if it cannot be serialized.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Checks the sizes of a connector definition.
pub fn check_connector(limits: &Limits, spec: &ConnectorSpec) -> Result<(), Error> {
    within(
        "max_name_bytes",
        || "the connector name (bytes)".into(),
        spec.name.len(),
        limits.max_name_bytes,
    )?;
    let owner = || format!("connector '{}'", short(&spec.name));
    within(
        "max_name_bytes",
        || format!("the connector_type of {} (bytes)", owner()),
        spec.connector_type.len(),
        limits.max_name_bytes,
    )?;
    within(
        "max_params",
        || format!("the number of params of {}", owner()),
        spec.params.len(),
        limits.max_params,
    )?;
    for (key, value) in &spec.params {
        within(
            "max_name_bytes",
            || format!("a param name of {} (bytes)", owner()),
            key.len(),
            limits.max_name_bytes,
        )?;
        let size = match value {
            serde_json::Value::String(s) => s.len(),
            other => json_len(other),
        };
        within(
            "max_param_bytes",
            || format!("param '{}' of {} (bytes)", short(key), owner()),
            size,
            limits.max_param_bytes,
        )?;
    }
    if let Some(d) = &spec.description {
        within(
            "max_description_bytes",
            || format!("the description of {} (bytes)", owner()),
            d.len(),
            limits.max_description_bytes,
        )?;
    }
    Ok(())
}

/// Checks `cmd` against `limits` and the applied `state` before it is proposed: sizes
/// ([`check_sizes`], which also truncates leader-written text) then cluster-wide counts
/// ([`check_counts`]). `Err` means: do not propose, answer the error.
pub fn enforce(limits: &Limits, state: &ClusterState, cmd: &mut Command) -> Result<(), Error> {
    check_sizes(limits, cmd)?;
    check_counts(limits, state, cmd)
}

/// The size checks of [`enforce`]: every client-supplied field and collection of `cmd`, without
/// the state (run them before taking a lock). Truncates leader-written text in place.
pub fn check_sizes(limits: &Limits, cmd: &mut Command) -> Result<(), Error> {
    let text = limits.max_text_bytes;
    match cmd {
        Command::Noop | Command::DeregisterWorker { .. } | Command::DeleteGroup { .. } => Ok(()),
        Command::DeleteConnector { .. } | Command::CompleteMigration { .. } => Ok(()),
        Command::StartMigration { .. } | Command::ProgressMigration { .. } => Ok(()),
        Command::RegisterWorker(r) => check_registration(limits, r),
        Command::SetWorkerStatus { reason, .. } => {
            clamp_opt(reason, text);
            Ok(())
        }
        Command::CreateGroup { spec, .. } => check_group_spec(limits, spec),
        Command::UpdatePlacement { error, .. } => {
            clamp_opt(error, text);
            Ok(())
        }
        Command::FailPipeline { reason, .. } => {
            clamp(reason, text);
            Ok(())
        }
        Command::CreateConnector { spec }
        | Command::UpdateConnector { spec }
        | Command::PutConnector { spec } => check_connector(limits, spec),
        Command::FailMigration { error, .. } => {
            clamp(error, text);
            Ok(())
        }
        // Same answer as the state machine's own cap (`413 payload_too_large`, docs/api.md).
        Command::StoreCheckpoint { checkpoint, .. }
            if checkpoint.len() as u64 > limits.max_checkpoint_bytes =>
        {
            Err(Error::CheckpointTooLarge {
                size: checkpoint.len(),
                max: usize::try_from(limits.max_checkpoint_bytes).unwrap_or(usize::MAX),
            })
        }
        Command::StoreCheckpoint { .. } => Ok(()),
        Command::Rollout(step) => match step {
            RolloutCommand::Start { rollout, .. } => check_group_spec(limits, &rollout.spec),
            RolloutCommand::Abort { error, .. } => {
                clamp(error, text);
                Ok(())
            }
            RolloutCommand::Switch { .. } | RolloutCommand::Finish { .. } => Ok(()),
        },
        Command::Batch(items) => std::sync::Arc::make_mut(items)
            .iter_mut()
            .try_for_each(|c| check_sizes(limits, c)),
        Command::Idempotent { command, .. } => check_sizes(limits, command),
    }
}

/// The cluster-wide counts of [`enforce`]: a new worker, group or connector must leave room.
/// Re-registering a known worker or replacing a known connector never counts.
pub fn check_counts(limits: &Limits, state: &ClusterState, cmd: &Command) -> Result<(), Error> {
    let full = |limit: &str, what: &str, count: usize, max: u64| -> Result<(), Error> {
        if count as u64 >= max {
            return Err(exceeded(
                LimitScope::Cluster,
                limit,
                format!("the number of {what}"),
                count as u64 + 1,
                max,
            ));
        }
        Ok(())
    };
    match cmd {
        Command::RegisterWorker(r) if state.worker(&r.worker_id).is_none() => full(
            "max_workers",
            "registered workers",
            state.worker_count(),
            limits.max_workers,
        ),
        Command::CreateGroup { .. } => full(
            "max_groups",
            "pipeline groups",
            state.group_count(),
            limits.max_groups,
        ),
        Command::CreateConnector { spec } | Command::PutConnector { spec }
            if state.connector(&spec.name).is_none() =>
        {
            full(
                "max_connectors",
                "connectors",
                state.connector_count(),
                limits.max_connectors,
            )
        }
        Command::Batch(items) => items
            .iter()
            .try_for_each(|c| check_counts(limits, state, c)),
        // A retry of a keyed command that was already applied only replays its answer.
        Command::Idempotent { key, .. } if state.idempotent_response(key).is_some() => Ok(()),
        Command::Idempotent { command, .. } => check_counts(limits, state, command),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use varpulis_api::cluster::{PipelineSpec, RouteSpec};

    fn registration(id: &str) -> RegisterWorker {
        RegisterWorker {
            worker_id: id.into(),
            address: "http://127.0.0.1:9000".into(),
            api_key: "k".into(),
            cpu_cores: 1,
            max_pipelines: 10,
            labels: BTreeMap::new(),
            now_ms: 1,
            takeover: None,
        }
    }

    fn spec(pipelines: usize) -> PipelineGroupSpec {
        PipelineGroupSpec {
            name: "g".into(),
            pipelines: (0..pipelines)
                .map(|i| PipelineSpec {
                    name: format!("p{i}"),
                    source: "stream A = EventA .emit(v: 1)".into(),
                    worker_affinity: None,
                    replicas: None,
                    labels: BTreeMap::new(),
                })
                .collect(),
            routes: Vec::new(),
            placement: None,
        }
    }

    fn connector(name: &str) -> ConnectorSpec {
        let mut params = serde_json::Map::new();
        params.insert("host".into(), "localhost".into());
        ConnectorSpec {
            name: name.into(),
            connector_type: "mqtt".into(),
            params,
            description: None,
        }
    }

    fn refused(res: Result<(), Error>) -> (String, u16) {
        let err = res.unwrap_err();
        assert_eq!(err.code(), "limit_exceeded", "{err}");
        (err.to_string(), err.http_status())
    }

    #[test]
    fn oversized_labels_are_refused_with_413() {
        let l = Limits::default();
        let mut r = registration("w1");
        r.labels.insert("zone".into(), "x".repeat(9 * 1024 * 1024));
        let (msg, status) = refused(check_registration(&l, &r));
        assert_eq!(status, 413);
        assert!(msg.contains("limits.max_label_bytes"), "{msg}");
        assert!(
            msg.len() < 400,
            "the message does not echo the value: {msg}"
        );

        let mut r = registration("w1");
        for i in 0..65 {
            r.labels.insert(format!("k{i}"), "v".into());
        }
        let (msg, _) = refused(check_registration(&l, &r));
        assert!(msg.contains("65") && msg.contains("64"), "{msg}");

        let mut r = registration("w1");
        r.labels.insert("k".repeat(257), "v".into());
        refused(check_registration(&l, &r));
        // At the limit is fine.
        let mut r = registration("w1");
        for i in 0..64 {
            r.labels.insert(format!("{i:0>256}"), "v".repeat(256));
        }
        assert!(check_registration(&l, &r).is_ok());
    }

    #[test]
    fn ids_addresses_and_keys_are_bounded() {
        let l = Limits::default();
        refused(check_registration(&l, &registration(&"w".repeat(257))));
        let mut r = registration("w");
        r.address = format!("http://{}:1", "h".repeat(600));
        refused(check_registration(&l, &r));
        let mut r = registration("w");
        r.api_key = "k".repeat(513);
        refused(check_registration(&l, &r));
    }

    #[test]
    fn the_worker_count_is_bounded_but_known_workers_may_re_register() {
        let l = Limits {
            max_workers: 2,
            ..Limits::default()
        };
        let mut s = ClusterState::new();
        for id in ["a", "b"] {
            let mut cmd = Command::RegisterWorker(registration(id));
            enforce(&l, &s, &mut cmd).unwrap();
            assert!(s.apply(&cmd).response.result.is_ok());
        }
        let mut third = Command::RegisterWorker(registration("c"));
        let (msg, status) = refused(enforce(&l, &s, &mut third));
        assert_eq!(status, 400);
        assert!(msg.contains("limits.max_workers"), "{msg}");
        let mut again = Command::RegisterWorker(registration("a")).with_key("k1");
        assert!(enforce(&l, &s, &mut again).is_ok());
    }

    #[test]
    fn group_specs_are_bounded() {
        let l = Limits::default();
        assert!(check_group_spec(&l, &spec(100)).is_ok());
        let (msg, status) = refused(check_group_spec(&l, &spec(101)));
        assert_eq!(status, 413);
        assert!(msg.contains("max_pipelines_per_group"), "{msg}");

        let mut s = spec(1);
        s.pipelines[0].source = "x".repeat(256 * 1024 + 1);
        refused(check_group_spec(&l, &s));
        let mut s = spec(1);
        s.name = "n".repeat(129);
        refused(check_group_spec(&l, &s));
        let mut s = spec(1);
        s.pipelines[0].replicas = Some(65);
        refused(check_group_spec(&l, &s));
        let mut s = spec(1);
        s.routes = vec![RouteSpec {
            from_pipeline: "_external".into(),
            to_pipeline: "p0".into(),
            event_types: (0..65).map(|i| format!("E{i}")).collect(),
            mqtt_topic: None,
        }];
        refused(check_group_spec(&l, &s));
        // Five sources just under the per-program limit still exceed the whole-spec limit.
        let mut s = spec(5);
        for p in &mut s.pipelines {
            p.source = "x".repeat(256 * 1024);
        }
        let (msg, _) = refused(check_group_spec(&l, &s));
        assert!(msg.contains("max_spec_bytes"), "{msg}");
    }

    #[test]
    fn checkpoints_keep_the_state_machine_answer_and_retries_replay() {
        let l = Limits {
            max_checkpoint_bytes: 10,
            ..Limits::default()
        };
        let mut cmd = Command::StoreCheckpoint {
            group_id: "g".into(),
            pipeline_name: "p".into(),
            replica: 0,
            epoch: 1,
            checkpoint: "c".repeat(11),
            events_processed: 0,
            taken_at_ms: 1,
        };
        let err = check_sizes(&l, &mut cmd).unwrap_err();
        assert_eq!(
            (err.code().as_str(), err.http_status()),
            ("payload_too_large", 413)
        );

        // A keyed create that was applied is replayed even once the limit is reached.
        let l = Limits {
            max_groups: 1,
            ..Limits::default()
        };
        let mut s = ClusterState::new();
        let create = |id: &str, key: &str| {
            Command::CreateGroup {
                group_id: id.into(),
                spec: spec(1),
                placements: Vec::new(),
                next_rr_cursor: None,
                created_at_ms: 1,
            }
            .with_key(key)
        };
        assert!(s.apply(&create("g1", "k")).response.result.is_ok());
        assert!(check_counts(&l, &s, &create("g1", "k")).is_ok());
        refused(check_counts(&l, &s, &create("g2", "k2")));
    }

    #[test]
    fn the_group_count_is_bounded() {
        let l = Limits {
            max_groups: 0,
            ..Limits::default()
        };
        let mut cmd = Command::CreateGroup {
            group_id: "g1".into(),
            spec: spec(1),
            placements: Vec::new(),
            next_rr_cursor: None,
            created_at_ms: 1,
        };
        let (_, status) = refused(enforce(&l, &ClusterState::new(), &mut cmd));
        assert_eq!(status, 400);
    }

    #[test]
    fn json_len_is_the_length_of_the_json_text() {
        for value in [
            serde_json::json!(1883),
            serde_json::json!({"a": [1, "two", null], "b": {"c": 2.5}}),
            serde_json::json!("caf\u{e9} \"quoted\""),
        ] {
            assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
        }
    }

    #[test]
    fn connectors_are_bounded() {
        let l = Limits {
            max_connectors: 1,
            ..Limits::default()
        };
        let mut s = ClusterState::new();
        let mut c = connector("broker");
        c.params
            .insert("password".into(), "p".repeat(16 * 1024 + 1).into());
        refused(check_connector(&l, &c));
        let mut c = connector("broker");
        for i in 0..64 {
            c.params.insert(format!("k{i}"), 1.into());
        }
        refused(check_connector(&l, &c));
        refused(check_connector(&l, &connector(&"c".repeat(129))));
        let mut c = connector("broker");
        c.description = Some("d".repeat(4097));
        refused(check_connector(&l, &c));

        let cmd = Command::CreateConnector {
            spec: connector("broker"),
        };
        assert!(s.apply(&cmd).response.result.is_ok());
        let mut other = Command::CreateConnector {
            spec: connector("other"),
        };
        let (_, status) = refused(enforce(&l, &s, &mut other));
        assert_eq!(status, 400);
        // Replacing the existing one is not a new connector.
        let mut update = Command::PutConnector {
            spec: connector("broker"),
        };
        assert!(enforce(&l, &s, &mut update).is_ok());
        // Deleting always works.
        let mut delete = Command::DeleteConnector {
            name: "x".repeat(10_000),
        };
        assert!(enforce(&l, &s, &mut delete).is_ok());
    }

    #[test]
    fn leader_text_is_truncated_not_refused() {
        let l = Limits::default();
        let mut cmd = Command::FailMigration {
            migration_id: "m".into(),
            error: "é".repeat(100_000),
            now_ms: 1,
        };
        enforce(&l, &ClusterState::new(), &mut cmd).unwrap();
        let Command::FailMigration { error, .. } = &cmd else {
            unreachable!()
        };
        assert!(error.len() <= 4096, "{}", error.len());
        assert!(error.ends_with("[truncated]"));
    }

    #[test]
    fn batches_and_keyed_commands_are_checked_inside() {
        let l = Limits::default();
        let mut r = registration("w");
        r.labels.insert("k".into(), "v".repeat(300));
        let mut cmd = Command::batch(vec![
            Command::Noop,
            Command::RegisterWorker(r).with_key("key"),
        ]);
        refused(enforce(&l, &ClusterState::new(), &mut cmd));
    }

    #[test]
    fn limits_are_set_by_name_and_validated() {
        let mut l = Limits::default();
        l.set("max_labels=8").unwrap();
        l.set(" max_workers = 20_000 ").unwrap();
        assert_eq!((l.max_labels, l.max_workers), (8, 20_000));
        assert!(l.set("max_nothing=1").unwrap_err().contains("max_labels"));
        assert!(l.set("max_labels").is_err());
        assert!(l.set("max_labels=-1").is_err());
        l.set("max_labels=0").unwrap();
        assert!(l.validate().is_err());
        let l = Limits {
            max_checkpoint_bytes: 2 << 20,
            ..Limits::default()
        };
        assert!(l.validate().is_err());
        assert!(Limits::default().validate().is_ok());
        let mut all = Limits::default();
        for key in LIMIT_KEYS {
            assert!(all.slot(key).is_some(), "{key}");
        }
    }

    #[test]
    fn the_registration_body_limit_follows_the_label_limits() {
        let l = Limits::default();
        assert!(l.registration_body_bytes() >= 1024 * 1024);
        assert!(l.registration_body_bytes() < 2 * 1024 * 1024);
        let big = Limits {
            max_labels: 1000,
            max_label_bytes: 4096,
            ..Limits::default()
        };
        assert!(big.registration_body_bytes() > 8 * 1024 * 1024);
        assert!(check_registration_body(&l, 1000).is_ok());
        let (msg, status) = refused(check_registration_body(&l, 9 * 1024 * 1024));
        assert_eq!(status, 413);
        assert!(msg.contains("limits.max_label_bytes"), "{msg}");
    }

    #[test]
    fn limits_parse_from_toml_with_defaults() {
        let l: Limits = toml_like("{\"max_labels\": 3}");
        assert_eq!(l.max_labels, 3);
        assert_eq!(l.max_workers, Limits::default().max_workers);
        assert!(serde_json::from_str::<Limits>("{\"max_typo\": 3}").is_err());
    }

    fn toml_like(json: &str) -> Limits {
        serde_json::from_str(json).unwrap()
    }
}
