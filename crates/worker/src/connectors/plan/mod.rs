//! What a pipeline's connectors will do, decided before anything connects: the program's
//! `.from`/`.to` bindings resolved to connector parameters (the VPL declaration first, else
//! the deploy request's `connectors` map) and its inter-pipeline routes. Computed before the
//! pipeline is registered, so a bad binding rejects the deploy without side effects.
//!
//! Pure data and checks; the connections that carry a plan out are in the connector modules.

pub mod kafka;
pub mod mqtt;
pub mod nats;
pub mod output;
pub mod routes;

use crate::engine::PipelineEngine;
use crate::error::WorkerError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use varpulis_api::worker::ConnectorParams;

/// The parameters of one kind of connector, and how its topics are checked.
pub trait Params: Sized + Clone {
    /// Reads the parameters of connector `name` (strings or numbers both work).
    fn from_map(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError>;
    /// The topic (or subject) a `.from` subscribes to: `topic`, else the connector's default.
    fn source_topic(&self, name: &str, topic: Option<&str>) -> Result<String, WorkerError>;
    /// Checks the topic a `.to` publishes to (`topic`, else the connector's default).
    fn check_sink_topic(&self, name: &str, topic: Option<&str>) -> Result<(), WorkerError>;
}

/// One connector's parameters and bindings for one pipeline.
#[derive(Debug, Clone)]
pub struct ConnectorPlan<P> {
    /// Connector name.
    pub name: String,
    /// Its parameters.
    pub params: P,
    /// `(topic, default event type)` of each `.from`.
    pub subscriptions: Vec<(String, String)>,
    /// Streams whose `.to` uses this connector.
    pub sinks: Vec<String>,
}

impl<P: Params> ConnectorPlan<P> {
    /// A plan with no bindings yet.
    pub fn new(name: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        Ok(Self {
            name: name.to_owned(),
            params: P::from_map(name, params)?,
            subscriptions: Vec::new(),
            sinks: Vec::new(),
        })
    }

    /// Adds a `.from` binding.
    pub fn add_source(&mut self, topic: Option<&str>, event_type: &str) -> Result<(), WorkerError> {
        let topic = self.params.source_topic(&self.name, topic)?;
        self.subscriptions.push((topic, event_type.to_owned()));
        Ok(())
    }

    /// Adds a `.to` binding.
    pub fn add_sink(&mut self, topic: Option<&str>, stream: &str) -> Result<(), WorkerError> {
        self.params.check_sink_topic(&self.name, topic)?;
        self.sinks.push(stream.to_owned());
        Ok(())
    }

    /// Splits into the sinks-only and the subscriptions-only plan (each `None` when empty):
    /// they run as two connections, so the subscriptions can be handed over on their own.
    pub fn split(self) -> (Option<Self>, Option<Self>) {
        let sinks = (!self.sinks.is_empty()).then(|| Self {
            subscriptions: Vec::new(),
            ..self.clone()
        });
        let sources = (!self.subscriptions.is_empty()).then(|| Self {
            sinks: Vec::new(),
            ..self
        });
        (sinks, sources)
    }
}

/// Every connection of one pipeline.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// MQTT connectors.
    pub mqtt: Vec<mqtt::MqttPlan>,
    /// NATS connectors.
    pub nats: Vec<nats::NatsPlan>,
    /// Kafka connectors.
    pub kafka: Vec<kafka::KafkaPlan>,
    /// Output-only connectors (HTTP, file, console).
    pub outputs: Vec<output::OutputPlan>,
    /// The `.enrich` lookups of the pipeline (shown with the output side).
    pub enrich: Option<std::sync::Arc<super::enrich::HttpEnricher>>,
    /// Connectors that cannot run here, with the reason (the pipeline starts `degraded`).
    pub unsupported: Vec<String>,
    /// Inter-pipeline routes (docs/dataplane.md).
    pub routes: Option<routes::RoutePlan>,
}

impl Plan {
    /// Whether the plan opens no connection and reports nothing.
    pub fn is_empty(&self) -> bool {
        self.mqtt.is_empty()
            && self.nats.is_empty()
            && self.kafka.is_empty()
            && self.outputs.is_empty()
            && self.unsupported.is_empty()
            && self.routes.is_none()
    }

    /// Splits into the output side (sinks, outbound routes, unsupported connectors) and the
    /// input side (subscriptions, inbound routes), each keeping only what it needs.
    pub fn split(self) -> (Plan, Plan) {
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
        for k in self.kafka {
            let (out, inp) = k.split();
            sinks.kafka.extend(out);
            sources.kafka.extend(inp);
        }
        if let Some(r) = self.routes {
            let (out, inp) = r.split();
            sinks.routes = out;
            sources.routes = inp;
        }
        sinks.outputs = self.outputs;
        sinks.enrich = self.enrich;
        sinks.unsupported = self.unsupported;
        (sinks, sources)
    }

    /// Adds the pipeline's `.enrich` lookups.
    pub fn with_enricher(mut self, enricher: std::sync::Arc<super::enrich::HttpEnricher>) -> Self {
        self.enrich = Some(enricher);
        self
    }

    /// Adds the pipeline's inter-pipeline routes.
    pub fn with_routes(mut self, routes: Option<routes::RoutePlan>) -> Self {
        self.routes = routes;
        self
    }

    /// What the plan's sources are (connectors, topics, sessions): a new version of a pipeline
    /// takes the old one's sources over at a hand-over only when this is the same.
    pub fn signature(&self) -> String {
        format!("{self:?}")
    }
}

/// Resolves every connector binding of the program.
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
    let mut mqtt_by_name: BTreeMap<String, mqtt::MqttPlan> = BTreeMap::new();
    let mut nats_by_name: BTreeMap<String, nats::NatsPlan> = BTreeMap::new();
    let mut kafka_by_name: BTreeMap<String, kafka::KafkaPlan> = BTreeMap::new();
    let mut outputs_by_name: BTreeMap<String, output::OutputPlan> = BTreeMap::new();
    let mut plan = Plan::default();
    let sources = engine.sources();
    let sinks = engine.sinks();
    let names: BTreeSet<&str> = sources
        .iter()
        .map(|s| s.connector.as_str())
        .chain(sinks.iter().map(|s| s.connector.as_str()))
        .collect();
    for name in names {
        let (kind, params) = resolve(name)?;
        match kind.as_str() {
            "mqtt" => {
                mqtt_by_name.insert(name.to_owned(), mqtt::MqttPlan::new(name, &params)?);
            }
            "nats" => {
                nats_by_name.insert(name.to_owned(), nats::NatsPlan::new(name, &params)?);
            }
            "kafka" => {
                kafka_by_name.insert(name.to_owned(), kafka::KafkaPlan::new(name, &params)?);
            }
            k if output::is_output_kind(k) => {
                outputs_by_name.insert(name.to_owned(), output::OutputPlan::new(name, k, &params)?);
            }
            _ => plan.unsupported.push(format!(
                "connector `{name}` of kind `{kind}` is not supported by this worker"
            )),
        }
    }
    for s in &sources {
        if let Some(p) = mqtt_by_name.get_mut(&s.connector) {
            p.add_source(s.topic.as_deref(), &s.event_type)?;
        }
        if let Some(p) = nats_by_name.get_mut(&s.connector) {
            p.add_source(s.topic.as_deref(), &s.event_type)?;
        }
        if let Some(p) = kafka_by_name.get_mut(&s.connector) {
            p.add_source(s.topic.as_deref(), &s.event_type)?;
        }
        if let Some(p) = outputs_by_name.get(&s.connector) {
            return Err(WorkerError::Connector(format!(
                "connector `{}` is of kind `{}`, which can only be written to (`.to`), not read with `.from`",
                p.name,
                p.kind.name()
            )));
        }
    }
    for s in &sinks {
        if let Some(p) = mqtt_by_name.get_mut(&s.connector) {
            p.add_sink(s.topic.as_deref(), &s.stream)?;
        }
        if let Some(p) = nats_by_name.get_mut(&s.connector) {
            p.add_sink(s.topic.as_deref(), &s.stream)?;
        }
        if let Some(p) = kafka_by_name.get_mut(&s.connector) {
            p.add_sink(s.topic.as_deref(), &s.stream)?;
        }
        if let Some(p) = outputs_by_name.get_mut(&s.connector) {
            p.sinks.push(s.stream.clone());
        }
    }
    plan.mqtt = mqtt_by_name.into_values().collect();
    plan.nats = nats_by_name.into_values().collect();
    plan.kafka = kafka_by_name.into_values().collect();
    plan.outputs = outputs_by_name.into_values().collect();
    Ok(plan)
}
