//! Where a pipeline's outputs go: one [`Sink`] per output connection (an MQTT or NATS `.to`
//! connector, the outbound inter-pipeline routes). A pipeline holds its sinks and publishes
//! each processed chunk through all of them; each sink picks the outputs bound to it.

use crate::counters::Counters;
use crate::engine::Output;
use futures::future::BoxFuture;

/// An output connection of a pipeline.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Publishes the outputs bound to this sink, waiting (bounded) while its queue is full.
    /// Failures are counted in `counters` and logged, never returned: a publish error is not
    /// fatal to the pipeline (VPL.md §9).
    fn publish<'a>(&'a self, outputs: &'a [Output], counters: &'a Counters) -> BoxFuture<'a, ()>;

    /// Health and counters, for sinks that report them (HTTP, file, console): shown in the
    /// pipeline's status and on `/metrics`; a connector that is down makes the pipeline
    /// `degraded`.
    fn status(&self) -> Vec<varpulis_api::worker::ConnectorStatus> {
        Vec::new()
    }
}

/// Each output a `.to` bound to `connector`, with the topic (or subject) it goes to: the
/// binding's, else the connector's `default`; a binding with neither is skipped.
pub fn bound_to<'a>(
    outputs: &'a [Output],
    connector: &'a str,
    default: Option<&'a str>,
) -> impl Iterator<Item = (&'a Output, String)> + 'a {
    outputs.iter().flat_map(move |o| {
        o.sinks()
            .filter(move |b| b.connector == connector)
            .filter_map(move |b| Some((o, b.topic().or(default)?.to_owned())))
    })
}
