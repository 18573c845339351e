//! Pipeline groups and their placements.
//!
//! A group holds its spec as submitted, its routes (with generated MQTT topics) and one
//! [`Placement`] per pipeline replica. Invariants kept by `apply`:
//! - group names are unique; a placement exists for every `(pipeline, replica)` of the spec;
//! - a placement's `epoch` never decreases and grows by one each time it moves to another
//!   worker (or loses its worker), so a command decided against an older epoch is fenced;
//! - two replicas of the same pipeline are never on the same worker.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use varpulis_api::cluster::{PipelineGroupSpec, RouteSpec, EXTERNAL};

use crate::error::Error;

/// Longest accepted group or pipeline name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Deployment state of one placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PlacementStatus {
    /// Waiting for a worker (none was available) or for deployment.
    Pending,
    /// The leader is deploying it on its worker.
    Deploying,
    /// Running on its worker.
    Running,
    /// Deployment or the pipeline failed.
    Failed,
    /// Being moved to another worker.
    Migrating,
    /// Stopped on purpose.
    Stopped,
}

impl PlacementStatus {
    /// The API name (`Pending`, `Running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementStatus::Pending => "Pending",
            PlacementStatus::Deploying => "Deploying",
            PlacementStatus::Running => "Running",
            PlacementStatus::Failed => "Failed",
            PlacementStatus::Migrating => "Migrating",
            PlacementStatus::Stopped => "Stopped",
        }
    }
}

impl fmt::Display for PlacementStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The newest checkpoint of a placement, used to restore it after a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Epoch of the placement that produced it.
    pub epoch: u64,
    /// Opaque state as returned by the worker.
    pub data: String,
    /// Events the pipeline had processed.
    pub events_processed: u64,
    /// When it was taken (leader's clock).
    pub taken_at_ms: u64,
}

/// Where one replica of one pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Pipeline name in the group.
    pub pipeline_name: String,
    /// Replica number (0-based).
    pub replica: u32,
    /// Worker it is placed on; `None` while Pending without a worker.
    pub worker_id: Option<String>,
    /// Pipeline id on the worker, once deployed.
    pub pipeline_id: Option<String>,
    /// Deployment state.
    pub status: PlacementStatus,
    /// Fencing epoch (starts at 1, +1 per move).
    pub epoch: u64,
    /// Last error reported for it.
    pub error: Option<String>,
    /// Newest checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The *program* failed on its worker (repeated budget errors, reported in a heartbeat),
    /// as opposed to a failed deploy: with status `Failed`, the leader neither redeploys nor
    /// moves it; a redeploy or update of the group (any later placement update) starts it
    /// again. Absent from states written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub program_failed: bool,
}

impl Placement {
    /// A placement of `pipeline_name`/`replica` on `worker_id` (or Pending without one).
    pub fn new(pipeline_name: &str, replica: u32, worker_id: Option<String>) -> Self {
        Placement {
            pipeline_name: pipeline_name.to_string(),
            replica,
            worker_id,
            pipeline_id: None,
            status: PlacementStatus::Pending,
            epoch: 1,
            error: None,
            checkpoint: None,
            program_failed: false,
        }
    }

    /// Whether the leader must leave it alone: its program failed on its worker.
    pub fn is_program_failed(&self) -> bool {
        self.program_failed && self.status == PlacementStatus::Failed
    }

    /// Moves the placement to `worker_id` (or unassigns it): new epoch, no pipeline id.
    pub(crate) fn move_to(&mut self, worker_id: Option<String>) {
        self.worker_id = worker_id;
        self.pipeline_id = None;
        self.program_failed = false;
        self.epoch = self.epoch.saturating_add(1);
    }
}

/// Overall state of a group, derived from its placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStatus {
    /// Some placements are not running yet and none failed.
    Deploying,
    /// Every placement runs.
    Running,
    /// Some placements run, others failed.
    PartiallyRunning,
    /// Placements failed and none runs.
    Failed,
}

impl GroupStatus {
    /// The API name (`running`, `partially_running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Deploying => "deploying",
            GroupStatus::Running => "running",
            GroupStatus::PartiallyRunning => "partially_running",
            GroupStatus::Failed => "failed",
        }
    }
}

/// A deployed pipeline group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group id (UUID chosen by the leader).
    pub id: String,
    /// Group name (unique).
    pub name: String,
    /// The spec as submitted.
    pub spec: PipelineGroupSpec,
    /// Routes with their MQTT topics filled in.
    pub routes: Vec<RouteSpec>,
    /// One placement per pipeline replica, in spec order then replica order.
    pub placements: Vec<Placement>,
    /// Creation time (leader's clock).
    pub created_at_ms: u64,
    /// Creation sequence number (orders groups by creation).
    pub seq: u64,
    /// Version (1 at creation).
    pub version: u64,
}

impl Group {
    /// The placement of `pipeline`/`replica`.
    pub fn placement(&self, pipeline: &str, replica: u32) -> Option<&Placement> {
        self.placements
            .iter()
            .find(|p| p.pipeline_name == pipeline && p.replica == replica)
    }

    /// Index of the placement of `pipeline`/`replica`.
    pub(crate) fn placement_index(&self, pipeline: &str, replica: u32) -> Option<usize> {
        self.placements
            .iter()
            .position(|p| p.pipeline_name == pipeline && p.replica == replica)
    }

    /// Whether another replica of `pipeline` (other than `replica`) sits on `worker`.
    pub fn hosts_other_replica(&self, pipeline: &str, replica: u32, worker: &str) -> bool {
        self.placements.iter().any(|p| {
            p.pipeline_name == pipeline
                && p.replica != replica
                && p.worker_id.as_deref() == Some(worker)
        })
    }

    /// Derived status of the group.
    pub fn status(&self) -> GroupStatus {
        let running = self
            .placements
            .iter()
            .filter(|p| p.status == PlacementStatus::Running)
            .count();
        let failed = self
            .placements
            .iter()
            .filter(|p| p.status == PlacementStatus::Failed)
            .count();
        if running == self.placements.len() {
            GroupStatus::Running
        } else if failed > 0 && running > 0 {
            GroupStatus::PartiallyRunning
        } else if failed > 0 {
            GroupStatus::Failed
        } else {
            GroupStatus::Deploying
        }
    }
}

/// Replica count of a pipeline spec (default 1).
pub fn replicas_of(p: &varpulis_api::cluster::PipelineSpec) -> u32 {
    p.replicas.unwrap_or(1)
}

/// The generated MQTT topic of a route: `varpulis/<group>/<from>/<to>`.
pub fn default_topic(group_name: &str, from: &str, to: &str) -> String {
    format!("varpulis/{group_name}/{from}/{to}")
}

fn validate_name(what: &str, name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::InvalidSpec(format!("{what} name must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidSpec(format!(
            "{what} name '{name}' is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '+' | '#'))
    {
        return Err(Error::InvalidSpec(format!(
            "{what} name '{name}' must not contain '/', '+', '#' or control characters"
        )));
    }
    Ok(())
}

fn validate_pattern(pattern: &str) -> Result<(), Error> {
    if pattern.is_empty() {
        return Err(Error::InvalidSpec(
            "event type patterns must not be empty".into(),
        ));
    }
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    if stem.contains('*') {
        return Err(Error::InvalidSpec(format!(
            "event type pattern '{pattern}': '*' is only allowed at the end"
        )));
    }
    Ok(())
}

/// Validates a group spec against the cluster (`known_workers` bounds `replicas`) and
/// returns its routes with MQTT topics filled in.
///
/// `replicas` must be at least 1; more than one replica needs at least that many
/// registered (non-dead) workers, since replicas go to distinct workers.
pub fn validate_spec(
    spec: &PipelineGroupSpec,
    known_workers: usize,
) -> Result<Vec<RouteSpec>, Error> {
    validate_name("group", &spec.name)?;
    if spec.pipelines.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "group '{}' has no pipelines",
            spec.name
        )));
    }
    crate::strategy::Strategy::parse(spec.placement.as_deref())?;
    let mut names = BTreeSet::new();
    for p in &spec.pipelines {
        validate_name("pipeline", &p.name)?;
        if p.name == EXTERNAL {
            return Err(Error::InvalidSpec(format!(
                "'{EXTERNAL}' is reserved and cannot name a pipeline"
            )));
        }
        if !names.insert(p.name.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "duplicate pipeline name '{}'",
                p.name
            )));
        }
        if p.source.trim().is_empty() {
            return Err(Error::InvalidSpec(format!(
                "pipeline '{}' has an empty source",
                p.name
            )));
        }
        let replicas = replicas_of(p);
        if replicas == 0 {
            return Err(Error::InvalidSpec(format!(
                "pipeline '{}': replicas must be at least 1",
                p.name
            )));
        }
        if replicas > 1 && replicas as usize > known_workers {
            return Err(Error::InvalidSpec(format!(
                "pipeline '{}' asks for {replicas} replicas but only {known_workers} workers are registered",
                p.name
            )));
        }
        if matches!(&p.worker_affinity, Some(a) if a.trim().is_empty()) {
            return Err(Error::InvalidSpec(format!(
                "pipeline '{}': worker_affinity is empty",
                p.name
            )));
        }
    }
    let mut routes = Vec::with_capacity(spec.routes.len());
    for r in &spec.routes {
        if r.from_pipeline != EXTERNAL && !names.contains(r.from_pipeline.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "route from unknown pipeline '{}'",
                r.from_pipeline
            )));
        }
        if !names.contains(r.to_pipeline.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "route to unknown pipeline '{}'",
                r.to_pipeline
            )));
        }
        if r.from_pipeline == r.to_pipeline {
            return Err(Error::InvalidSpec(format!(
                "route from '{}' to itself would loop",
                r.to_pipeline
            )));
        }
        if r.event_types.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "route {} -> {} has no event_types",
                r.from_pipeline, r.to_pipeline
            )));
        }
        for pattern in &r.event_types {
            validate_pattern(pattern)?;
        }
        let topic = match &r.mqtt_topic {
            Some(t) if t.trim().is_empty() || t.contains(['+', '#']) => {
                return Err(Error::InvalidSpec(format!(
                    "mqtt_topic '{t}' must be non-empty and free of '+'/'#' wildcards"
                )))
            }
            Some(t) => t.clone(),
            None => default_topic(&spec.name, &r.from_pipeline, &r.to_pipeline),
        };
        routes.push(RouteSpec {
            mqtt_topic: Some(topic),
            ..r.clone()
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use varpulis_api::cluster::PipelineSpec;

    fn pipe(name: &str) -> PipelineSpec {
        PipelineSpec {
            name: name.into(),
            source: "stream A = X .emit(v: 1)".into(),
            worker_affinity: None,
            replicas: None,
            labels: Default::default(),
        }
    }

    fn route(from: &str, to: &str, types: &[&str]) -> RouteSpec {
        RouteSpec {
            from_pipeline: from.into(),
            to_pipeline: to.into(),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            mqtt_topic: None,
        }
    }

    fn spec() -> PipelineGroupSpec {
        PipelineGroupSpec {
            name: "app".into(),
            pipelines: vec![pipe("a"), pipe("b")],
            routes: vec![route(EXTERNAL, "a", &["A*"]), route("a", "b", &["Out"])],
            placement: None,
        }
    }

    fn rejects(s: &PipelineGroupSpec, workers: usize, needle: &str) {
        match validate_spec(s, workers) {
            Err(Error::InvalidSpec(msg)) => {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
            }
            other => panic!("expected InvalidSpec containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn valid_spec_gets_generated_topics() {
        let routes = validate_spec(&spec(), 1).unwrap();
        assert_eq!(
            routes[0].mqtt_topic.as_deref(),
            Some("varpulis/app/_external/a")
        );
        assert_eq!(routes[1].mqtt_topic.as_deref(), Some("varpulis/app/a/b"));
        let mut s = spec();
        s.routes[0].mqtt_topic = Some("custom/topic".into());
        assert_eq!(
            validate_spec(&s, 0).unwrap()[0].mqtt_topic.as_deref(),
            Some("custom/topic")
        );
    }

    #[test]
    fn invalid_specs_are_rejected_with_clear_messages() {
        let mut s = spec();
        s.name = " ".into();
        rejects(&s, 1, "group name must not be empty");
        let mut s = spec();
        s.name = "a/b".into();
        rejects(&s, 1, "must not contain");
        let mut s = spec();
        s.pipelines.clear();
        s.routes.clear();
        rejects(&s, 1, "no pipelines");
        let mut s = spec();
        s.pipelines[1].name = "a".into();
        rejects(&s, 1, "duplicate pipeline name 'a'");
        let mut s = spec();
        s.pipelines[0].name = EXTERNAL.into();
        rejects(&s, 1, "reserved");
        let mut s = spec();
        s.pipelines[0].source = "  ".into();
        rejects(&s, 1, "empty source");
        let mut s = spec();
        s.pipelines[0].replicas = Some(0);
        rejects(&s, 1, "at least 1");
        let mut s = spec();
        s.pipelines[0].replicas = Some(3);
        rejects(&s, 2, "asks for 3 replicas");
        let mut s = spec();
        s.pipelines[0].worker_affinity = Some(String::new());
        rejects(&s, 1, "worker_affinity");
        let mut s = spec();
        s.routes.push(route("ghost", "a", &["X"]));
        rejects(&s, 1, "route from unknown pipeline 'ghost'");
        let mut s = spec();
        s.routes.push(route(EXTERNAL, "ghost", &["X"]));
        rejects(&s, 1, "route to unknown pipeline 'ghost'");
        let mut s = spec();
        s.routes.push(route("a", "a", &["X"]));
        rejects(&s, 1, "itself");
        let mut s = spec();
        s.routes.push(route(EXTERNAL, "b", &[]));
        rejects(&s, 1, "no event_types");
        let mut s = spec();
        s.routes.push(route(EXTERNAL, "b", &[""]));
        rejects(&s, 1, "must not be empty");
        let mut s = spec();
        s.routes.push(route(EXTERNAL, "b", &["A*B"]));
        rejects(&s, 1, "only allowed at the end");
        let mut s = spec();
        s.routes[0].mqtt_topic = Some("a/#".into());
        rejects(&s, 1, "mqtt_topic");
        let mut s = spec();
        s.placement = Some("random".into());
        rejects(&s, 1, "placement strategy");
    }

    #[test]
    fn replicas_within_worker_count_are_accepted() {
        let mut s = spec();
        s.pipelines[0].replicas = Some(2);
        assert!(validate_spec(&s, 2).is_ok());
        s.pipelines[0].replicas = Some(1);
        assert!(
            validate_spec(&s, 0).is_ok(),
            "a single replica may wait for a worker"
        );
    }

    #[test]
    fn group_status_is_derived_from_placements() {
        let mut g = Group {
            id: "g".into(),
            name: "app".into(),
            spec: spec(),
            routes: vec![],
            placements: vec![Placement::new("a", 0, None), Placement::new("b", 0, None)],
            created_at_ms: 0,
            seq: 0,
            version: 1,
        };
        assert_eq!(g.status(), GroupStatus::Deploying);
        g.placements[0].status = PlacementStatus::Running;
        assert_eq!(g.status(), GroupStatus::Deploying);
        g.placements[1].status = PlacementStatus::Failed;
        assert_eq!(g.status(), GroupStatus::PartiallyRunning);
        g.placements[0].status = PlacementStatus::Failed;
        assert_eq!(g.status(), GroupStatus::Failed);
        g.placements[0].status = PlacementStatus::Running;
        g.placements[1].status = PlacementStatus::Running;
        assert_eq!(g.status(), GroupStatus::Running);
        assert_eq!(g.status().as_str(), "running");
    }
}
