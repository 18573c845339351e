//! Worker calls over NATS (spec/nats-transport.txt): request/reply on
//! `varpulis.cluster.cmd.{worker_id}.{command}`, the worker's API key in the `x-api-key` header,
//! the payload `{pipeline_id, ...}` (the HTTP body for a deploy) and the answer's HTTP status in
//! the `varpulis-status` header of the reply.

use serde_json::{json, Value};
use std::time::Duration;
use varpulis_api::nats::{command_subject, STATUS_HEADER};
use varpulis_api::API_KEY_HEADER;

use super::call::{Answer, EventBatch, WorkerCall};
use super::{BoxFuture, WorkerRef, WorkerTransport};
use crate::transport::nats::link::NatsLink;

/// The NATS transport over this node's link.
#[derive(Debug, Clone)]
pub struct NatsTransport {
    link: NatsLink,
}

impl NatsTransport {
    /// A transport over `link`.
    pub fn new(link: NatsLink) -> Self {
        NatsTransport { link }
    }
}

/// `body` with `"pipeline_id"` added (the worker's command payloads name their pipeline).
fn with_pipeline(mut body: Value, pipeline_id: &str) -> Value {
    if let Value::Object(obj) = &mut body {
        obj.insert("pipeline_id".into(), Value::String(pipeline_id.to_string()));
    }
    body
}

/// `{"pipeline_id": .., "events": [..]}` with the events as they are (not re-encoded).
fn raw_batch_payload(pipeline_id: &str, events: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(events.len() + pipeline_id.len() + 32);
    out.extend_from_slice(br#"{"pipeline_id":"#);
    serde_json::to_writer(&mut out, pipeline_id).map_err(|e| e.to_string())?;
    out.extend_from_slice(br#","events":"#);
    out.extend_from_slice(events);
    out.push(b'}');
    Ok(out)
}

/// The payload of a command.
pub fn payload(call: &WorkerCall) -> Result<Vec<u8>, String> {
    let value = match call {
        WorkerCall::Deploy(body) => return serde_json::to_vec(body).map_err(|e| e.to_string()),
        WorkerCall::Undeploy { pipeline_id } | WorkerCall::Checkpoint { pipeline_id } => {
            json!({ "pipeline_id": pipeline_id })
        }
        WorkerCall::Inject { pipeline_id, event } => with_pipeline(
            serde_json::to_value(event).map_err(|e| e.to_string())?,
            pipeline_id,
        ),
        WorkerCall::InjectBatch { pipeline_id, batch } => {
            let events = match batch {
                EventBatch::Raw { events, .. } => {
                    return raw_batch_payload(pipeline_id, events);
                }
                EventBatch::Json(events) => {
                    serde_json::to_value(events).map_err(|e| e.to_string())?
                }
                EventBatch::Evt(text) => Value::String(text.clone()),
            };
            with_pipeline(json!({ "events": events }), pipeline_id)
        }
        WorkerCall::Handover { .. } => return Err("no NATS command for a hand-over".into()),
        WorkerCall::Metrics { .. } => return Err("no NATS command for pipeline metrics".into()),
    };
    Ok(value.to_string().into_bytes())
}

impl WorkerTransport for NatsTransport {
    fn send<'a>(
        &'a self,
        worker: &'a WorkerRef,
        call: &'a WorkerCall,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        Box::pin(async move {
            let command = call
                .nats_command()
                .ok_or_else(|| "this call is not carried over NATS".to_string())?;
            let mut headers = async_nats::HeaderMap::new();
            if !worker.api_key.is_empty() {
                headers.insert(API_KEY_HEADER, worker.api_key.as_str());
            }
            let request = async_nats::Request::new()
                .headers(headers)
                .payload(payload(call)?.into())
                .timeout(Some(timeout));
            let reply = self
                .link
                .client
                .send_request(command_subject(&worker.id, command), request)
                .await
                .map_err(|e| format!("over NATS: {e}"))?;
            let status = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(STATUS_HEADER))
                .and_then(|v| v.as_str().parse::<u16>().ok())
                .unwrap_or(200);
            Ok(Answer {
                status,
                body: reply.payload,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varpulis_api::worker::InputEvent;

    #[test]
    fn payloads_name_their_pipeline() {
        let inject = WorkerCall::Inject {
            pipeline_id: "p-1".into(),
            event: InputEvent {
                event_type: "A".into(),
                fields: Default::default(),
                timestamp: None,
            },
        };
        let v: Value = serde_json::from_slice(&payload(&inject).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"event_type": "A", "fields": {}, "pipeline_id": "p-1"})
        );
        let batch = WorkerCall::InjectBatch {
            pipeline_id: "p".into(),
            batch: EventBatch::Evt("A { x: 1 }\n".into()),
        };
        let v: Value = serde_json::from_slice(&payload(&batch).unwrap()).unwrap();
        assert_eq!(v, json!({"events": "A { x: 1 }\n", "pipeline_id": "p"}));
        let raw = WorkerCall::InjectBatch {
            pipeline_id: "p\"q".into(),
            batch: EventBatch::Raw {
                events: axum::body::Bytes::from_static(
                    br#"[{"event_type":"A","fields":{"x":1.50}}]"#,
                ),
                count: 1,
            },
        };
        let bytes = payload(&raw).unwrap();
        assert!(bytes.ends_with(br#""events":[{"event_type":"A","fields":{"x":1.50}}]}"#));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["pipeline_id"], "p\"q");
        assert_eq!(v["events"][0]["event_type"], "A");
    }
}
