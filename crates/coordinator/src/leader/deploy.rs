//! Leader → worker calls: deploy a placement, record the result through Raft, tear down.
//!
//! A deploy sends `POST {worker}/api/v1/pipelines` with `{name, source, connectors, id, epoch}` and
//! the worker's own api key. The pipeline id is derived from (group, pipeline, replica, epoch), so a
//! deploy retried by the same or a new leader is idempotent on the worker instead of starting a
//! duplicate. The result is recorded with `UpdatePlacement` at the epoch the decision was made
//! against: if the placement moved meanwhile, the state machine rejects the stale update (fencing).

use std::collections::BTreeMap;
use varpulis_api::worker::{
    Checkpoint, ConnectorParams, DeployPipelineRequest, PipelineRoutes, RouteTopic,
};
use varpulis_cluster::group::PlacementStatus;
use varpulis_cluster::{ClusterState, Command};

use crate::leader::context::LeaderCtx;
use crate::metrics::Metrics;
use crate::transport::worker_client::WorkerRef;

/// Everything needed to deploy one placement, read from the replicated state in one go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub group_name: String,
    /// Pipeline name in the group.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Placement epoch the deploy is decided against.
    pub epoch: u64,
    /// The worker it runs on.
    pub worker: WorkerRef,
    /// VPL source.
    pub source: String,
    /// Last stored checkpoint, to restore before the first event.
    pub checkpoint: Option<Checkpoint>,
}

impl Target {
    /// The pipeline id used on the worker (stable for a given placement epoch).
    pub fn pipeline_id(&self) -> String {
        pipeline_id(
            &self.group_id,
            &self.pipeline_name,
            self.replica,
            self.epoch,
        )
    }
}

/// Stable, URL-safe pipeline id for a placement at an epoch.
pub fn pipeline_id(group_id: &str, pipeline: &str, replica: u32, epoch: u64) -> String {
    let name: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let group: String = group_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("{name}-{group}-r{replica}-e{epoch}")
}

/// The deploy target of one placement on its current worker, if it has one.
pub fn target(s: &ClusterState, group_id: &str, pipeline: &str, replica: u32) -> Option<Target> {
    let placement = s.group(group_id)?.placement(pipeline, replica)?;
    let worker_id = placement.worker_id.clone()?;
    target_on(s, group_id, pipeline, replica, &worker_id, placement.epoch)
}

/// The deploy target of one placement on `worker_id` at `epoch` (migrations deploy on the target
/// worker at the epoch the placement will have once moved).
pub fn target_on(
    s: &ClusterState,
    group_id: &str,
    pipeline: &str,
    replica: u32,
    worker_id: &str,
    epoch: u64,
) -> Option<Target> {
    let group = s.group(group_id)?;
    let placement = group.placement(pipeline, replica)?;
    let worker = s.worker(worker_id)?;
    let source = group
        .spec
        .pipelines
        .iter()
        .find(|p| p.name == pipeline)?
        .source
        .clone();
    let checkpoint = placement
        .checkpoint
        .as_ref()
        .and_then(|c| serde_json::from_str::<Checkpoint>(&c.data).ok());
    Some(Target {
        group_id: group.id.clone(),
        group_name: group.name.clone(),
        pipeline_name: pipeline.to_string(),
        replica,
        epoch,
        worker: WorkerRef::of(worker),
        source,
        checkpoint,
    })
}

/// Placements of a group that have a worker but are not running (what a deploy should fix).
pub fn pending_targets(s: &ClusterState, group_id: &str) -> Vec<Target> {
    let Some(group) = s.group(group_id) else {
        return Vec::new();
    };
    group
        .placements
        .iter()
        .filter(|p| p.worker_id.is_some())
        .filter(|p| {
            matches!(
                p.status,
                PlacementStatus::Pending | PlacementStatus::Deploying | PlacementStatus::Failed
            )
        })
        .filter_map(|p| target(s, group_id, &p.pipeline_name, p.replica))
        .collect()
}

/// Every connector of the registry, in the shape workers take.
pub fn connectors(s: &ClusterState) -> BTreeMap<String, ConnectorParams> {
    s.connectors()
        .map(|c| {
            (
                c.name.clone(),
                ConnectorParams {
                    connector_type: c.connector_type.clone(),
                    params: c.params.clone(),
                },
            )
        })
        .collect()
}

/// The inter-pipeline routes of one placement (data plane, docs/dataplane.md): outbound and
/// inbound MQTT topics, the coordinator's `--mqtt-url`, and a session id stable across epochs.
/// `None` when the pipeline has no route to or from another pipeline.
pub fn route_topics(
    s: &ClusterState,
    group_id: &str,
    pipeline: &str,
    replica: u32,
    mqtt_url: Option<&str>,
) -> Option<PipelineRoutes> {
    let group = s.group(group_id)?;
    let topic = |r: &varpulis_api::cluster::RouteSpec| {
        r.mqtt_topic.clone().unwrap_or_else(|| {
            varpulis_cluster::group::default_topic(&group.name, &r.from_pipeline, &r.to_pipeline)
        })
    };
    let mut routes = PipelineRoutes::default();
    for r in group
        .routes
        .iter()
        .filter(|r| r.from_pipeline != varpulis_api::cluster::EXTERNAL)
    {
        if r.from_pipeline == pipeline {
            routes.outbound.push(RouteTopic {
                pipeline: r.to_pipeline.clone(),
                topic: topic(r),
                event_types: r.event_types.clone(),
            });
        }
        if r.to_pipeline == pipeline {
            routes.inbound.push(RouteTopic {
                pipeline: r.from_pipeline.clone(),
                topic: topic(r),
                event_types: r.event_types.clone(),
            });
        }
    }
    if routes.outbound.is_empty() && routes.inbound.is_empty() {
        return None;
    }
    routes.mqtt_url = mqtt_url.map(str::to_owned);
    let short_group: String = group_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let name: String = pipeline
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(48)
        .collect();
    routes.session = Some(format!("vp-{short_group}-{name}-r{replica}"));
    Some(routes)
}

/// Sends the deploy call; returns the worker's pipeline id or a message.
pub async fn call_deploy(ctx: &LeaderCtx, t: &Target) -> Result<String, String> {
    call_deploy_with(ctx, t, false).await
}

/// [`call_deploy`], optionally `paused` (sources start at a hand-over: rolling updates).
pub async fn call_deploy_with(ctx: &LeaderCtx, t: &Target, paused: bool) -> Result<String, String> {
    let connectors = ctx.store.read(connectors);
    let mqtt_url = ctx.settings.mqtt_url.clone();
    let routes = ctx.store.read(|s| {
        route_topics(
            s,
            &t.group_id,
            &t.pipeline_name,
            t.replica,
            mqtt_url.as_deref(),
        )
    });
    let body = DeployPipelineRequest {
        name: format!("{}/{}", t.group_name, t.pipeline_name),
        source: t.source.clone(),
        connectors,
        checkpoint: t.checkpoint.clone(),
        id: Some(t.pipeline_id()),
        epoch: Some(t.epoch),
        routes,
        paused,
    };
    ctx.workers
        .deploy(&t.worker, &body)
        .await
        .map_err(|e| e.to_string())
}

/// Deploys one placement and records Running or Failed through Raft. Returns whether it runs.
pub async fn deploy_and_record(ctx: &LeaderCtx, t: &Target) -> bool {
    let result = call_deploy(ctx, t).await;
    let (status, pipeline_id, error) = match &result {
        Ok(id) => (PlacementStatus::Running, Some(id.clone()), None),
        Err(message) => {
            Metrics::inc(&ctx.metrics.deploy_failures);
            tracing::warn!(group = %t.group_name, pipeline = %t.pipeline_name, "deploy failed: {message}");
            (PlacementStatus::Failed, None, Some(message.clone()))
        }
    };
    let command = Command::UpdatePlacement {
        group_id: t.group_id.clone(),
        pipeline_name: t.pipeline_name.clone(),
        replica: t.replica,
        epoch: t.epoch,
        worker_id: Some(t.worker.id.clone()),
        pipeline_id,
        status,
        error,
    };
    match ctx.store.write(command).await {
        Ok(_) => result.is_ok(),
        Err(err) => {
            tracing::warn!(group = %t.group_name, pipeline = %t.pipeline_name, "cannot record deploy result: {err}");
            false
        }
    }
}

/// Best-effort `DELETE {worker}/api/v1/pipelines/{id}`; a 404 counts as done.
pub async fn undeploy(ctx: &LeaderCtx, worker: &WorkerRef, pipeline_id: &str) -> bool {
    match ctx.workers.undeploy(worker, pipeline_id).await {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(%pipeline_id, "undeploy failed: {err}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_ids_are_stable_and_url_safe() {
        let a = pipeline_id("6b19c256-a766-40f9", "pipe a/b", 0, 1);
        assert_eq!(a, "pipe_a_b-6b19c256-r0-e1");
        assert_eq!(a, pipeline_id("6b19c256-a766-40f9", "pipe a/b", 0, 1));
        assert_ne!(a, pipeline_id("6b19c256-a766-40f9", "pipe a/b", 0, 2));
    }
}
