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
}
