//! Where a pipeline's outputs go: one [`Sink`] per output connection (an MQTT or NATS `.to`
//! connector, the outbound inter-pipeline routes). A pipeline holds its sinks and publishes
//! each processed chunk through all of them; each sink picks the outputs bound to it.

use crate::counters::Counters;
use crate::engine::Output;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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

    /// For a sink whose client delivers in the background (Kafka): a ticket that is settled
    /// once every record it was handed so far is delivered or given up. A source acknowledges
    /// its inputs only then (docs/connectors.md, "Kafka").
    fn delivery_ticket(&self) -> Option<DeliveryTicket> {
        None
    }
}

/// Which of the records a sink handed to its client are settled (delivered or given up), in
/// the order they were handed: record `n` is the `n`-th handed.
#[derive(Debug, Default)]
pub struct DeliveryWindow(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    /// Every record before this one is settled.
    base: u64,
    /// From `base` on: settled or not.
    settled: VecDeque<bool>,
}

impl DeliveryWindow {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers the next record handed to the client.
    pub fn hand(&self) -> u64 {
        let mut w = self.lock();
        w.settled.push_back(false);
        w.base + w.settled.len() as u64 - 1
    }

    /// Record `n` is delivered or given up.
    pub fn settle(&self, n: u64) {
        let mut w = self.lock();
        let Some(i) = n.checked_sub(w.base) else {
            return;
        };
        if let Some(s) = w.settled.get_mut(i as usize) {
            *s = true;
        }
        while w.settled.front() == Some(&true) {
            w.settled.pop_front();
            w.base += 1;
        }
    }

    /// A ticket for every record handed so far.
    pub fn ticket(self: &Arc<Self>) -> DeliveryTicket {
        let w = self.lock();
        DeliveryTicket {
            window: self.clone(),
            upto: w.base + w.settled.len() as u64,
        }
    }
}

/// Settled once every record a sink had handed to its client when it was taken is settled.
#[derive(Debug, Clone)]
pub struct DeliveryTicket {
    window: Arc<DeliveryWindow>,
    upto: u64,
}

impl DeliveryTicket {
    /// Whether every record it covers is delivered or given up.
    pub fn is_settled(&self) -> bool {
        self.window.lock().base >= self.upto
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_settles_when_every_record_before_it_did_in_any_order() {
        let w = Arc::new(DeliveryWindow::default());
        assert!(w.ticket().is_settled());
        let (a, b, c) = (w.hand(), w.hand(), w.hand());
        assert_eq!((a, b, c), (0, 1, 2));
        let t = w.ticket();
        w.settle(c);
        w.settle(a);
        assert!(!t.is_settled());
        let d = w.hand();
        let later = w.ticket();
        w.settle(b);
        assert!(t.is_settled());
        assert!(!later.is_settled());
        w.settle(d);
        w.settle(d);
        w.settle(99);
        assert!(later.is_settled());
        assert!(w.ticket().is_settled());
    }
}
