//! What a deploy sends: the worker request of one placement, built from the replicated state.
//!
//! The pipeline id is derived from (group, pipeline, replica, epoch), so a deploy retried by the
//! same or a new leader is idempotent on the worker instead of starting a duplicate; the result
//! is recorded at the epoch the deploy was decided against, so a stale one is fenced off.

use std::collections::BTreeMap;
use varpulis_api::cluster::{RouteSpec, EXTERNAL};
use varpulis_api::worker::{
    Checkpoint, ConnectorParams, DeployPipelineRequest, PipelineRoutes, RouteTopic,
};

use crate::group::{default_topic, PlacementStatus};
use crate::state::ClusterState;

/// One deploy: which placement, where, and the request body.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployJob {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub group_name: String,
    /// Pipeline name in the group.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Placement epoch the deploy is decided against (the pipeline id carries it).
    pub epoch: u64,
    /// Worker to deploy on.
    pub worker_id: String,
    /// The `POST /api/v1/pipelines` body.
    pub request: DeployPipelineRequest,
}

impl DeployJob {
    /// The pipeline id the worker runs it under.
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

/// Where and how to deploy a placement that is not on its current worker yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployAt<'a> {
    /// Worker to deploy on.
    pub worker_id: &'a str,
    /// Epoch to deploy at (the placement's, or the next one for a migration or a rollout).
    pub epoch: u64,
    /// Start without consuming the sources (the new version of a rolling update).
    pub paused: bool,
}

/// The deploy of one placement on `at.worker_id` at `at.epoch`, with the source of the group's
/// current spec (or `source` when given: a rolling update's new version) and the placement's
/// last stored checkpoint (none for a rollout's new pipeline, which takes the state over by
/// hand-over). `None` when the group, the placement, the pipeline or the worker is unknown.
pub fn deploy_job(
    s: &ClusterState,
    placement: (&str, &str, u32),
    at: DeployAt<'_>,
    source: Option<&str>,
    mqtt_url: Option<&str>,
) -> Option<DeployJob> {
    let (group_id, pipeline, replica) = placement;
    let group = s.group(group_id)?;
    let p = group.placement(pipeline, replica)?;
    s.worker(at.worker_id)?;
    let (source, checkpoint) = match source {
        Some(new) => (new.to_string(), None),
        None => (
            group
                .spec
                .pipelines
                .iter()
                .find(|spec| spec.name == pipeline)?
                .source
                .clone(),
            p.checkpoint
                .as_ref()
                .and_then(|c| serde_json::from_str::<Checkpoint>(&c.data).ok()),
        ),
    };
    let id = pipeline_id(group_id, pipeline, replica, at.epoch);
    let connectors = connectors_used(s, &source);
    Some(DeployJob {
        group_id: group.id.clone(),
        group_name: group.name.clone(),
        pipeline_name: pipeline.to_string(),
        replica,
        epoch: at.epoch,
        worker_id: at.worker_id.to_string(),
        request: DeployPipelineRequest {
            name: format!("{}/{}", group.name, pipeline),
            source,
            connectors,
            checkpoint,
            id: Some(id),
            epoch: Some(at.epoch),
            routes: route_topics(s, group_id, pipeline, replica, mqtt_url),
            paused: at.paused,
        },
    })
}

/// The deploy of one placement on its current worker at its current epoch, if it has one.
pub fn current_deploy(
    s: &ClusterState,
    group_id: &str,
    pipeline: &str,
    replica: u32,
    mqtt_url: Option<&str>,
) -> Option<DeployJob> {
    let p = s.group(group_id)?.placement(pipeline, replica)?;
    let at = DeployAt {
        worker_id: p.worker_id.as_deref()?,
        epoch: p.epoch,
        paused: false,
    };
    deploy_job(s, (group_id, pipeline, replica), at, None, mqtt_url)
}

/// Deploys of a group's placements that have a worker but are not running (Pending,
/// Deploying or Failed), except those whose program failed on the worker (a failed *deploy*
/// is retried, a failed *program* is not: see `Placement::program_failed`).
pub fn pending_deploys(s: &ClusterState, group_id: &str, mqtt_url: Option<&str>) -> Vec<DeployJob> {
    let Some(group) = s.group(group_id) else {
        return Vec::new();
    };
    group
        .placements
        .iter()
        .filter(|p| p.worker_id.is_some() && !p.is_program_failed())
        .filter(|p| {
            matches!(
                p.status,
                PlacementStatus::Pending | PlacementStatus::Deploying | PlacementStatus::Failed
            )
        })
        .filter_map(|p| current_deploy(s, group_id, &p.pipeline_name, p.replica, mqtt_url))
        .collect()
}

/// Every connector of the registry, in the shape workers take.
pub fn connectors(s: &ClusterState) -> BTreeMap<String, ConnectorParams> {
    select_connectors(s, |_| true)
}

/// The connectors of the registry that `source` may use, in the shape workers take: those whose
/// name appears in it as an identifier (a VPL `.from(Name, …)`/`.to(Name)` names the connector
/// by its identifier). Conservative: a name that only appears in a comment or a string is
/// shipped too, but a connector the program uses is never left out. Workers get no other
/// connector's parameters (secrets included), and a deploy's size follows its program, not the
/// registry.
pub fn connectors_used(s: &ClusterState, source: &str) -> BTreeMap<String, ConnectorParams> {
    let idents = identifiers(source);
    select_connectors(s, |name| idents.contains(name))
}

/// The identifiers of `source` (ASCII letters, digits, `_`; not starting with a digit).
fn identifiers(source: &str) -> std::collections::BTreeSet<&str> {
    source
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

fn select_connectors(
    s: &ClusterState,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, ConnectorParams> {
    s.connectors()
        .filter(|c| keep(&c.name))
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
    let topic = |r: &RouteSpec| {
        r.mqtt_topic
            .clone()
            .unwrap_or_else(|| default_topic(&group.name, &r.from_pipeline, &r.to_pipeline))
    };
    let mut routes = PipelineRoutes::default();
    for r in group.routes.iter().filter(|r| r.from_pipeline != EXTERNAL) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_a_program_into_names() {
        let ids = identifiers("stream S = A.from(Plant, topic: \"a/b\")\n  .to(Out_2) # 3x");
        for name in [
            "stream", "S", "A", "from", "Plant", "topic", "a", "b", "to", "Out_2",
        ] {
            assert!(ids.contains(name), "{name}");
        }
        assert!(!ids.contains("Plan"));
        assert!(!ids.contains("3x"));
    }

    #[test]
    fn pipeline_ids_are_stable_and_url_safe() {
        let a = pipeline_id("6b19c256-a766-40f9", "pipe a/b", 0, 1);
        assert_eq!(a, "pipe_a_b-6b19c256-r0-e1");
        assert_eq!(a, pipeline_id("6b19c256-a766-40f9", "pipe a/b", 0, 1));
        assert_ne!(a, pipeline_id("6b19c256-a766-40f9", "pipe a/b", 0, 2));
    }
}
