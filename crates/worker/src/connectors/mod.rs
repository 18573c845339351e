//! Connectors of a pipeline: resolve the program's `.from`/`.to` bindings to connector
//! parameters (VPL declaration first, else the deploy request's `connectors` map), then start
//! the connection tasks and the pipeline's ingest loop.
//!
//! A connector that cannot be opened or is of an unsupported kind marks the pipeline
//! `degraded` with a reason; it never fails the worker.
//!
//! The output side (MQTT/NATS `.to`, outbound routes) starts with the pipeline. The input side
//! (`.from`, inbound routes) runs as a [`Feed`] and starts with it too, unless the deploy says
//! `paused` (the new version of a rolling update): its sources then start at the hand-over,
//! usually by taking the old version's feed over (pipeline.rs).

pub mod mqtt;
pub mod nats;

use crate::engine::{Event, PipelineEngine};
use crate::error::WorkerError;
use crate::pipeline::{Feed, Pipeline};
use crate::server::AppState;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use varpulis_api::worker::{BatchError, ConnectorParams};

/// Most events the ingest loop hands to the engine under one lock hold.
const INGEST_BATCH: usize = 256;

/// What a pipeline's connectors will do, computed before the pipeline is registered so a
/// bad binding rejects the deploy without side effects.
#[derive(Debug, Default, Clone)]
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

    /// Splits into the output side (sinks, outbound routes, unsupported connectors) and the
    /// input side (subscriptions, inbound routes), each keeping only what it needs.
    fn split(self) -> (Plan, Plan) {
        let (mut sinks, mut sources) = (Plan::default(), Plan::default());
        for m in self.mqtt {
            let (out, inp) = m.split();
            sinks.mqtt.extend(out);
            sources.mqtt.extend(inp);
        }
        for n in self.nats {
            let (out, inp) = n.split();
            sinks.nats.extend(out);
            sources.nats.extend(inp);
        }
        if let Some(r) = self.routes {
            let (out, inp) = r.split();
            sinks.routes = out;
            sources.routes = inp;
        }
        sinks.unsupported = self.unsupported;
        (sinks, sources)
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

/// Starts the connection tasks of a registered pipeline: its output side at once, its input
/// side (feed and ingest loop) unless `paused`. The sources are recorded either way, so a
/// hand-over can compare them and start them later.
pub fn start(state: &Arc<AppState>, pipeline: &Arc<Pipeline>, plan: Plan, paused: bool) {
    let (sinks, sources) = plan.split();
    start_sinks(state, pipeline, sinks);
    if sources.is_empty() {
        pipeline.set_source_plan(None, String::new());
        return;
    }
    let signature = format!("{sources:?}");
    pipeline.set_source_plan(Some(sources), signature);
    if !paused {
        start_sources(state, pipeline);
    }
}

fn start_sinks(state: &Arc<AppState>, pipeline: &Arc<Pipeline>, plan: Plan) {
    if let Some(reason) = plan.unsupported.first() {
        pipeline.set_degraded(reason.clone());
    }
    let mut sinks = Vec::new();
    for m in plan.mqtt {
        sinks.extend(m.start_sinks(state, pipeline));
    }
    if let Some(routes) = plan.routes {
        routes.start_outbound(state, pipeline);
    }
    pipeline.set_sinks(sinks);
    let nats_sinks = plan
        .nats
        .into_iter()
        .filter_map(|n| n.start(state, pipeline, None, pipeline.cancel.clone()));
    pipeline.nats.set(nats_sinks.collect());
}

/// Starts the input side of a pipeline from its recorded source plan: the source connections
/// and the ingest loop, as a [`Feed`] the pipeline owns (and may hand over later).
pub fn start_sources(state: &Arc<AppState>, pipeline: &Arc<Pipeline>) {
    let Some((plan, signature)) = pipeline.source_plan() else {
        return;
    };
    let (tx, rx) = tokio::sync::mpsc::channel(state.config.connector_channel_capacity);
    let feed = Feed::new(pipeline, signature);
    for m in plan.mqtt {
        m.start_sources(state, &feed, tx.clone());
    }
    if let Some(routes) = plan.routes {
        routes.start_inbound(state, pipeline, &feed, tx.clone());
    }
    for n in plan.nats {
        let _ = n.start(state, pipeline, Some(tx.clone()), feed.connections.clone());
    }
    drop(tx);
    pipeline.set_feed(feed.clone());
    state.tasks.spawn(ingest_loop(feed, rx));
}

/// Feeds connector events to the engine in small batches and publishes the outputs through
/// the pipeline that processed them (the feed's target may change at a hand-over).
async fn ingest_loop(feed: Arc<Feed>, rx: tokio::sync::mpsc::Receiver<Event>) {
    run_ingest(&feed, rx).await;
    feed.done.cancel();
}

async fn run_ingest(feed: &Feed, mut rx: tokio::sync::mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(INGEST_BATCH);
    let mut out = Vec::new();
    let mut errors: Vec<BatchError> = Vec::new();
    loop {
        let first = tokio::select! {
            () = feed.ingest.cancelled() => break,
            ev = rx.recv() => match ev { Some(ev) => ev, None => break },
        };
        batch.push(first);
        while batch.len() < INGEST_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let Some(p) = feed.target() else { break };
        let ran = p.process_in(&batch, &mut out, &mut errors);
        drop(p);
        for e in errors.drain(..) {
            tracing::debug!(pipeline = %ran.id, error = %e.error, "event rejected by the engine");
        }
        batch.clear();
        tokio::select! {
            () = feed.ingest.cancelled() => break,
            // Its pipeline is gone (deleted after a hand-over): skip, the feed goes on.
            () = ran.cancel.cancelled() => {},
            () = ran.publish(&out) => {},
        }
        out.clear();
    }
}
