//! What a source connection hands to the ingest loop: an event and, for an MQTT message of a
//! persistent session or a Kafka record, the acknowledgement to send once the event's outputs
//! are out (a PUBACK; for Kafka, storing the record's offset for the next commit).
//!
//! A pipeline placed by a coordinator consumes QoS ≥ 1 MQTT topics through a persistent broker
//! session named after its placement (docs/worker.md, "Zero loss at the lease edge"). Its
//! messages are acknowledged by hand, only after the engine ran them and their outputs were
//! published; a message the copy did not finish (its worker fenced, crashed, or the pipeline
//! moved) stays unacknowledged in the session, and the broker delivers it again to the next
//! copy that resumes the session.
//!
//! [`close_flushing`] is how such a connection ends when its feed stops: it stops passing on
//! messages (they stay unacknowledged), waits for the ingest loop to acknowledge what it already
//! published, then disconnects once those acknowledgements are written.

use crate::engine::Event;
use crate::pipeline::Feed;
use rumqttc::{AsyncClient, EventLoop, Outgoing, Publish};
use std::time::Duration;

/// Longest a closing connection waits for the ingest loop to finish its current batch.
pub const ACK_FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// Longest a closing connection waits for its last acknowledgements and DISCONNECT to go out.
const DISCONNECT_DEADLINE: Duration = Duration::from_millis(500);

/// The acknowledgement of one input, sent through the connection that received it.
#[derive(Debug)]
pub enum Ack {
    /// An MQTT message of a persistent session.
    Mqtt {
        /// The connection that received it.
        client: AsyncClient,
        /// The message (payload dropped).
        publish: Publish,
    },
    /// A Kafka record.
    Kafka(super::kafka::KafkaAck),
}

impl Ack {
    /// The acknowledgement of `publish`, received on `client`'s connection.
    pub fn new(client: AsyncClient, mut publish: Publish) -> Self {
        // Only the packet id and QoS are needed.
        publish.payload = Default::default();
        Self::Mqtt { client, publish }
    }

    /// Queues the PUBACK (a connection gone meanwhile leaves the message to be delivered
    /// again, to this copy when it reconnects or to the next one), or stores the Kafka offset.
    pub fn send(self) {
        match self {
            Self::Mqtt { client, publish } => {
                if let Err(e) = client.try_ack(&publish) {
                    tracing::debug!(error = %e, pkid = publish.pkid, "mqtt ack not sent");
                }
            }
            Self::Kafka(ack) => ack.send(),
        }
    }
}

/// One input for the ingest loop.
#[derive(Debug)]
pub struct Inbound {
    /// The decoded event.
    pub event: Event,
    /// Sent once the event ran and its outputs were published (never when they were
    /// discarded: fenced, pipeline stopped).
    pub ack: Option<Ack>,
}

impl From<Event> for Inbound {
    fn from(event: Event) -> Self {
        Self { event, ack: None }
    }
}

/// Ends a connection whose feed stopped: incoming messages are no longer passed on (left
/// unacknowledged), the ingest loop's last acknowledgements are written (it ends within
/// [`ACK_FLUSH_DEADLINE`]), then the DISCONNECT. Bounded, so a dead broker never holds it up.
pub async fn close_flushing(feed: &Feed, client: &AsyncClient, eventloop: &mut EventLoop) {
    let ingest_done = feed.done.clone();
    let wait_ingest = tokio::time::sleep(ACK_FLUSH_DEADLINE);
    tokio::pin!(wait_ingest);
    loop {
        tokio::select! {
            () = ingest_done.cancelled() => break,
            () = &mut wait_ingest => break,
            r = eventloop.poll() => if r.is_err() { return },
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(DISCONNECT_DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
