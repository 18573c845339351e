//! A pipeline's connections: output sinks (MQTT/NATS `.to`, outbound routes) and input feeds
//! (`.from` subscriptions, inbound routes).
//!
//! - [`plan`]: what the connectors will do, resolved and checked before anything connects.
//! - [`sink`]: the [`sink::Sink`] trait every output connection implements.
//! - [`mqtt`], [`nats`], [`kafka`], [`routes`]: the connections of each kind.
//! - [`inbound`]: what sources hand the ingest loop (an event, maybe an MQTT acknowledgement).
//! - [`enrich`]: `.enrich` lookups over HTTP connectors.
//! - [`http`], [`file`], [`console`]: output-only connectors ([`lines`] is the machinery file
//!   and console share, [`stats`] their health and counters; docs/connectors.md).
//! - [`ingest`]: the loop that runs what the sources received through the engine.
//! - [`payload`]: the wire format of events on each kind of connection.
//! - [`timers`]: wall-clock ticks for `timer(…)` sources.
//!
//! A connector that cannot be opened or is of an unsupported kind marks the pipeline
//! `degraded` with a reason; it never fails the worker.
//!
//! The output side starts with the pipeline. The input side runs as a [`Feed`] and starts with
//! it too, unless the deploy says `paused` (the new version of a rolling update): its sources
//! then start at the hand-over, usually by taking the old version's feed over.

pub mod console;
pub mod enrich;
pub mod file;
pub mod http;
pub mod inbound;
pub mod ingest;
pub mod kafka;
pub mod lines;
pub mod mqtt;
pub mod nats;
pub mod payload;
pub mod plan;
pub mod routes;
pub mod sink;
pub mod stats;
pub mod timers;

use crate::pipeline::{Feed, Pipeline};
use crate::state::AppState;
use plan::Plan;
use std::sync::Arc;

/// Starts the connections of a registered pipeline: its output side at once, its input side
/// (feed and ingest loop) unless `paused`. The sources are recorded either way, so a hand-over
/// can compare them and start them later.
pub fn start(state: &AppState, pipeline: &Arc<Pipeline>, plan: Plan, paused: bool) {
    let (sinks, sources) = plan.split();
    start_sinks(state, pipeline, sinks);
    if !paused {
        timers::start(state, pipeline);
    }
    if sources.is_empty() {
        pipeline.set_source_plan(None);
        return;
    }
    pipeline.set_source_plan(Some(sources));
    if !paused {
        start_sources(state, pipeline);
    }
}

fn start_sinks(state: &AppState, pipeline: &Arc<Pipeline>, plan: Plan) {
    if let Some(reason) = plan.unsupported.first() {
        pipeline.set_degraded(reason.clone());
    }
    let mut sinks = Vec::new();
    if let Some(r) = plan.routes {
        sinks.extend(routes::start_outbound(state, pipeline, r));
    }
    for n in plan.nats {
        sinks.extend(nats::start(
            state,
            pipeline,
            n,
            None,
            pipeline.cancel.clone(),
        ));
    }
    for m in &plan.mqtt {
        sinks.extend(mqtt::start_sink(state, pipeline, m));
    }
    for k in &plan.kafka {
        match kafka::sink::start(state, pipeline, k) {
            Ok(sink) => sinks.push(sink),
            Err(reason) => {
                tracing::error!(pipeline = %pipeline.id, %reason, "kafka sink not started");
                pipeline.set_degraded(reason);
            }
        }
    }
    if let Some(e) = plan.enrich {
        sinks.push(Box::new(enrich::EnrichStatus(e)));
    }
    for o in plan.outputs {
        match start_output(state, pipeline, o) {
            Ok(sink) => sinks.push(sink),
            Err(reason) => {
                tracing::error!(pipeline = %pipeline.id, %reason, "output connector not started");
                pipeline.set_degraded(reason);
            }
        }
    }
    pipeline.set_sinks(sinks);
}

/// Starts one output-only connector (HTTP, file, console).
fn start_output(
    state: &AppState,
    pipeline: &Arc<Pipeline>,
    o: plan::output::OutputPlan,
) -> Result<Box<dyn sink::Sink>, String> {
    use plan::output::OutputKind;
    match o.kind {
        OutputKind::Http(params) => http::start(state, pipeline, &o.name, params),
        OutputKind::File(params) => {
            let target = file::RotatingFile::open(&params).map_err(|e| {
                format!(
                    "file connector `{}`: cannot open `{}`: {e}",
                    o.name,
                    params.path.display()
                )
            })?;
            Ok(lines::start(
                state,
                pipeline,
                &o.name,
                "file",
                payload::encode_output,
                target,
            ))
        }
        OutputKind::Console => Ok(lines::start(
            state,
            pipeline,
            &o.name,
            "console",
            |o| serde_json::to_vec(&o.to_json()).unwrap_or_default(),
            console::Stdout,
        )),
    }
}

/// Starts the input side of a pipeline from its recorded source plan: the source connections
/// and the ingest loop, as a [`Feed`] the pipeline owns (and may hand over later).
pub fn start_sources(state: &AppState, pipeline: &Arc<Pipeline>) {
    let Some((plan, signature)) = pipeline.source_plan() else {
        return;
    };
    if pipeline.is_fenced() {
        // Started when the fence is lifted (`coordinator::fence`).
        pipeline.mark_fence_paused();
        return;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(state.config.connector_channel_capacity);
    let feed = Feed::new(pipeline, signature);
    for m in plan.mqtt {
        mqtt::start_source(state, &feed, m, tx.clone());
    }
    for k in plan.kafka {
        kafka::source::start(state, &feed, k, tx.clone());
    }
    if let Some(r) = plan.routes {
        routes::start_inbound(state, pipeline, &feed, r, tx.clone());
    }
    for n in plan.nats {
        let health = feed.source_health(&n.name, "nats");
        let _ = nats::start(
            state,
            pipeline,
            n,
            Some((tx.clone(), health)),
            feed.connections.clone(),
        );
    }
    drop(tx);
    pipeline.set_feed(feed.clone());
    state.tasks.spawn(ingest::ingest_loop(feed, rx));
}
