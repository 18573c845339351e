//! Connectors of a pipeline: resolve the program's `.from`/`.to` bindings to connector
//! parameters (VPL declaration first, else the deploy request's `connectors` map), then start
//! the connection tasks and the pipeline's ingest loop.
//!
//! A connector that cannot be opened or is of an unsupported kind marks the pipeline
//! `degraded` with a reason; it never fails the worker.

pub mod mqtt;
pub mod nats;

use crate::engine::{Event, PipelineEngine};
use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use crate::server::AppState;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use varpulis_api::worker::{BatchError, ConnectorParams};

/// Most events the ingest loop hands to the engine under one lock hold.
const INGEST_BATCH: usize = 256;

/// What a pipeline's connectors will do, computed before the pipeline is registered so a
/// bad binding rejects the deploy without side effects.
#[derive(Debug, Default)]
pub struct Plan {
    mqtt: Vec<mqtt::MqttPlan>,
    nats: Vec<nats::NatsPlan>,
    /// Connectors that cannot run here, with the reason (the pipeline starts `degraded`).
    unsupported: Vec<String>,
    /// Inter-pipeline routes (docs/dataplane.md).
    routes: Option<crate::dataplane::RoutePlan>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.mqtt.is_empty()
            && self.nats.is_empty()
            && self.unsupported.is_empty()
            && self.routes.is_none()
    }

    /// Adds the pipeline's inter-pipeline routes.
    pub fn with_routes(mut self, routes: Option<crate::dataplane::RoutePlan>) -> Self {
        self.routes = routes;
        self
    }
}

/// Resolves every binding of the program.
pub fn plan(
    engine: &PipelineEngine,
    supplied: &BTreeMap<String, ConnectorParams>,
) -> Result<Plan, WorkerError> {
    let declared: BTreeMap<String, (String, Map<String, Value>)> = engine
        .connectors()
        .into_iter()
        .map(|c| (c.name, (c.kind, c.params)))
        .collect();
    let resolve = |name: &str| -> Result<(String, Map<String, Value>), WorkerError> {
        if let Some(d) = declared.get(name) {
            return Ok(d.clone());
        }
        if let Some(s) = supplied.get(name) {
            return Ok((s.connector_type.to_ascii_lowercase(), s.params.clone()));
        }
        Err(WorkerError::Connector(format!(
            "connector `{name}` is neither declared in the program nor supplied in `connectors`"
        )))
    };
    let mut by_name: BTreeMap<String, mqtt::MqttPlan> = BTreeMap::new();
    let mut nats_by_name: BTreeMap<String, nats::NatsPlan> = BTreeMap::new();
    let mut plan = Plan::default();
    let sources = engine.sources();
    let sinks = engine.sinks();
    let names: std::collections::BTreeSet<&str> = sources
        .iter()
        .map(|s| s.connector.as_str())
        .chain(sinks.iter().map(|s| s.connector.as_str()))
        .collect();
    for name in names {
        let (kind, params) = resolve(name)?;
        if kind == "nats" {
            nats_by_name.insert(name.to_owned(), nats::NatsPlan::new(name, &params)?);
            continue;
        }
        if kind != "mqtt" {
            plan.unsupported.push(format!(
                "connector `{name}` of kind `{kind}` is not supported by this worker"
            ));
            continue;
        }
        by_name.insert(name.to_owned(), mqtt::MqttPlan::new(name, &params)?);
    }
    for s in &sources {
        if let Some(p) = by_name.get_mut(&s.connector) {
            p.add_source(s.topic.as_deref(), &s.event_type)?;
        }
        if let Some(p) = nats_by_name.get_mut(&s.connector) {
            p.add_source(s.topic.as_deref(), &s.event_type)?;
        }
    }
    for s in &sinks {
        if let Some(p) = by_name.get_mut(&s.connector) {
            p.add_sink(s.topic.as_deref(), &s.stream)?;
        }
        if let Some(p) = nats_by_name.get_mut(&s.connector) {
            p.add_sink(s.topic.as_deref(), &s.stream)?;
        }
    }
    plan.mqtt = by_name.into_values().collect();
    plan.nats = nats_by_name.into_values().collect();
    Ok(plan)
}

/// Starts the connection tasks and the ingest loop of a registered pipeline.
pub fn start(state: &Arc<AppState>, pipeline: &Arc<Pipeline>, plan: Plan) {
    if plan.is_empty() {
        pipeline.set_sinks(Vec::new());
        return;
    }
    if let Some(reason) = plan.unsupported.first() {
        pipeline.set_degraded(reason.clone());
    }
    let (tx, rx) = tokio::sync::mpsc::channel(state.config.connector_channel_capacity);
    let mut sinks = Vec::new();
    for m in plan.mqtt {
        sinks.extend(m.start(state, pipeline, tx.clone()));
    }
    if let Some(routes) = plan.routes {
        routes.start(state, pipeline, tx.clone());
    }
    pipeline.set_sinks(sinks);
    let nats_sinks = plan
        .nats
        .into_iter()
        .filter_map(|n| n.start(state, pipeline, tx.clone()));
    pipeline.nats.set(nats_sinks.collect());
    drop(tx);
    let p = pipeline.clone();
    let cancel = pipeline.cancel.clone();
    state.tasks.spawn(ingest_loop(p, rx, cancel));
}

/// Feeds connector events to the engine in small batches and publishes the outputs.
async fn ingest_loop(
    p: Arc<Pipeline>,
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(INGEST_BATCH);
    let mut out = Vec::new();
    let mut errors: Vec<BatchError> = Vec::new();
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
        };
        batch.push(first);
        while batch.len() < INGEST_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        p.process(&batch, &mut out, &mut errors);
        for e in errors.drain(..) {
            tracing::debug!(pipeline = %p.id, error = %e.error, "event rejected by the engine");
        }
        batch.clear();
        tokio::select! {
            () = cancel.cancelled() => break,
            () = p.publish(&out) => {},
        }
        out.clear();
    }
}
