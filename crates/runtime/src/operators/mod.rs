//! Stateful stream operators. Each holds its state behind a `Mutex` (the engine runs an operator
//! chain through shared references), snapshots it for checkpoints and restores it exactly.
//!
//! * [`window`]: `.window`, `.aggregate`, `.partition_by` (VPL.md §6);
//! * [`sequence`]: `->` sequences with `all`, `.within`, `.not` (§7);
//! * [`join`]: `join(…)` and `merge(…)` (§7);
//! * [`gate`]: `.distinct` and `.limit` (Tier 3);
//! * [`pattern`]: named patterns (§8);
//! * [`enrich`]: `.enrich` over an embedder's [`enrich::Enricher`] (docs/connectors.md);
//! * [`trend`]: `.trend_aggregate(…)` over a Kleene sequence;
//! * [`capture_emit`]: a sequence's or join's `.emit` of capture fields, built from the captures;
//! * [`kleene`]: Kleene captures read as arrays of their events;
//! * [`runs`]: what sequences and patterns share about their partial matches;
//! * [`reorder`]: the `.watermark` front of streams whose operators need ordered events (§6.4).

pub(crate) mod capture_emit;
pub mod enrich;
pub(crate) mod gate;
pub(crate) mod join;
pub(crate) mod kleene;
pub(crate) mod pattern;
pub(crate) mod reorder;
pub(crate) mod runs;
pub(crate) mod self_ref;
pub mod sequence;
pub(crate) mod trend;
pub(crate) mod window;
