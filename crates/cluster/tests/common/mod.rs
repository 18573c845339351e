//! Helpers shared by the cluster state tests.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;
use varpulis_api::cluster::{ConnectorSpec, PipelineGroupSpec, PipelineSpec, RouteSpec, EXTERNAL};
use varpulis_cluster::{
    ClusterState, Command, Error, Outcome, PlacementAssignment, PlacementStatus, RegisterWorker,
    WorkerStatus,
};

/// A registration of `id` at a derived address.
pub fn reg(id: &str) -> Command {
    reg_with(id, 100, &[])
}

/// A registration with capacity and labels.
pub fn reg_with(id: &str, max_pipelines: u32, labels: &[(&str, &str)]) -> Command {
    Command::RegisterWorker(RegisterWorker {
        worker_id: id.to_string(),
        address: format!("http://{id}:9000"),
        api_key: format!("key-{id}"),
        cpu_cores: 4,
        max_pipelines,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        now_ms: 1_000,
        takeover: None,
    })
}

/// A pipeline spec.
pub fn pipe(name: &str) -> PipelineSpec {
    PipelineSpec {
        name: name.to_string(),
        source: format!("stream {name} = X .emit(v: 1)"),
        worker_affinity: None,
        replicas: None,
        labels: Default::default(),
    }
}

/// A route.
pub fn route(from: &str, to: &str, types: &[&str]) -> RouteSpec {
    RouteSpec {
        from_pipeline: from.to_string(),
        to_pipeline: to.to_string(),
        event_types: types.iter().map(|s| s.to_string()).collect(),
        mqtt_topic: None,
    }
}

/// A group spec with the given pipelines and an `_external` route to the first.
pub fn spec(name: &str, pipelines: &[&str]) -> PipelineGroupSpec {
    PipelineGroupSpec {
        name: name.to_string(),
        pipelines: pipelines.iter().map(|p| pipe(p)).collect(),
        routes: vec![route(EXTERNAL, pipelines[0], &["*"])],
        placement: None,
    }
}

/// `CreateGroup` with explicit placements `(pipeline, replica, worker)`.
pub fn create(
    id: &str,
    spec: PipelineGroupSpec,
    placements: &[(&str, u32, Option<&str>)],
) -> Command {
    Command::CreateGroup {
        group_id: id.to_string(),
        spec,
        placements: placements
            .iter()
            .map(|(p, r, w)| PlacementAssignment {
                pipeline_name: p.to_string(),
                replica: *r,
                worker_id: w.map(str::to_string),
            })
            .collect(),
        next_rr_cursor: None,
        created_at_ms: 2_000,
    }
}

/// A connector spec.
pub fn connector(name: &str, kind: &str, params: Value) -> ConnectorSpec {
    ConnectorSpec {
        name: name.to_string(),
        connector_type: kind.to_string(),
        params: params.as_object().cloned().unwrap_or_default(),
        description: None,
    }
}

/// The state without its `applied` counter (what a rejected command must not change).
pub fn domain(state: &ClusterState) -> Value {
    let mut v = serde_json::to_value(state).unwrap();
    if let Some(o) = v.as_object_mut() {
        o.remove("applied");
        o.remove("idempotency");
    }
    v
}

/// Applies `cmd`, expecting success.
pub fn ok(state: &mut ClusterState, cmd: Command) -> Outcome {
    match state.apply(&cmd).into_result() {
        Ok(o) => o,
        Err(e) => panic!("{} rejected: {e}", cmd.name()),
    }
}

/// Applies `cmd`, expecting a rejection that leaves the state unchanged.
pub fn rejected(state: &mut ClusterState, cmd: Command) -> Error {
    let before = domain(state);
    let resp = state.apply(&cmd);
    assert!(
        resp.events.is_empty(),
        "rejected {} reported {:?}",
        cmd.name(),
        resp.events
    );
    let err = match resp.into_result() {
        Ok(o) => panic!("{} accepted: {o:?}", cmd.name()),
        Err(e) => e,
    };
    assert_eq!(
        domain(state),
        before,
        "rejected {} changed the state",
        cmd.name()
    );
    err
}

/// Sets worker `id` to `status` (at t = 1 ms, no reason), expecting success.
pub fn set_status(state: &mut ClusterState, id: &str, status: WorkerStatus) {
    ok(
        state,
        Command::SetWorkerStatus {
            worker_id: id.into(),
            status,
            now_ms: 1,
            reason: None,
        },
    );
}

/// The worker's report that replica `replica` of `pipeline` (at `epoch`) runs as
/// `pid-{pipeline}`.
pub fn running_update(group_id: &str, pipeline: &str, replica: u32, epoch: u64) -> Command {
    Command::UpdatePlacement {
        group_id: group_id.into(),
        pipeline_name: pipeline.into(),
        replica,
        epoch,
        worker_id: None,
        pipeline_id: Some(format!("pid-{pipeline}")),
        status: PlacementStatus::Running,
        error: None,
    }
}

/// A state with workers `w1..=wn` registered.
pub fn with_workers(n: usize) -> ClusterState {
    let mut s = ClusterState::default();
    for i in 1..=n {
        ok(&mut s, reg(&format!("w{i}")));
    }
    s
}
