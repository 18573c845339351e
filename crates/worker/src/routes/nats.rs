//! The worker API over NATS (spec/nats-transport.txt): the worker subscribes to
//! `varpulis.cluster.cmd.{worker_id}.>` and maps each command onto its own REST route, run
//! in-process through the same router (same validation, same errors, same API-key check with
//! the `x-api-key` header of the message):
//!
//! | command | payload | route |
//! |---|---|---|
//! | `deploy` | `{name, source, ...}` (the HTTP deploy body) | `POST /api/v1/pipelines` |
//! | `undeploy` | `{pipeline_id}` | `DELETE /api/v1/pipelines/{id}` |
//! | `inject` | `{pipeline_id, event_type, fields}` | `POST .../{id}/events` |
//! | `inject_batch` | `{pipeline_id, events}` (array, or `.evt` text as a string) | `POST .../{id}/events-batch` |
//! | `checkpoint` | `{pipeline_id}` | `POST .../{id}/checkpoint` |
//! | `restore` | `{pipeline_id, checkpoint}` | `POST .../{id}/restore` |
//! | `drain` | `{}` | `POST /api/v1/drain` |
//!
//! Every reply carries the route's JSON answer as payload and its HTTP status code in the
//! `varpulis-status` header. The NATS connection is the coordinator client's.

use crate::error::WorkerError;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use varpulis_api::nats::{valid_token, PREFIX, STATUS_HEADER};
use varpulis_api::{Code, ErrorBody, API_KEY_HEADER};

/// Serves the worker API on NATS commands.
#[derive(Debug, Clone)]
struct CommandServer {
    state: Arc<AppState>,
    client: async_nats::Client,
    router: Router,
}

/// Subscribes to this worker's command subjects and returns the task serving them until the
/// worker shuts down (then it unsubscribes and flushes the connection).
pub async fn serve(
    state: Arc<AppState>,
    client: async_nats::Client,
    router: Router,
) -> Result<tokio::task::JoinHandle<()>, WorkerError> {
    let subject = format!("{PREFIX}.cmd.{}.>", state.config.worker_id);
    let commands = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| WorkerError::Config(format!("cannot subscribe to {subject}: {e}")))?;
    let server = CommandServer {
        state,
        client,
        router,
    };
    Ok(tokio::spawn(server.run(commands)))
}

impl CommandServer {
    async fn run(self, mut commands: async_nats::Subscriber) {
        let cancel = self.state.shutdown.clone();
        loop {
            let msg = tokio::select! {
                () = cancel.cancelled() => break,
                m = commands.next() => match m { Some(m) => m, None => break },
            };
            let this = self.clone();
            self.state
                .tasks
                .spawn(async move { this.handle(msg).await });
        }
        let _ = commands.unsubscribe().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), self.client.flush()).await;
    }

    /// Runs one command and replies (when the message has a reply subject).
    async fn handle(&self, msg: async_nats::Message) {
        let cmd = msg
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let api_key = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(API_KEY_HEADER))
            .map(|v| v.as_str().to_owned());
        let (status, body) = match to_request(&cmd, &msg.payload, api_key.as_deref()) {
            Ok(req) => self.call(req).await,
            Err(message) => (
                400,
                serde_json::to_vec(&ErrorBody::new(Code::BadRequest, message)).unwrap_or_default(),
            ),
        };
        tracing::debug!(%cmd, status, "nats command");
        if let Some(reply) = msg.reply {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(STATUS_HEADER, status.to_string().as_str());
            headers.insert("content-type", "application/json");
            if let Err(e) = self
                .client
                .publish_with_headers(reply, headers, body.into())
                .await
            {
                tracing::warn!(%cmd, "cannot reply: {e}");
            }
        }
    }

    async fn call(&self, req: Request<Body>) -> (u16, Vec<u8>) {
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status().as_u16();
        match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
            Ok(b) => (status, b.to_vec()),
            Err(e) => (
                500,
                serde_json::to_vec(&ErrorBody::new(
                    Code::Internal,
                    format!("reading the answer: {e}"),
                ))
                .unwrap_or_default(),
            ),
        }
    }
}

fn take_pipeline_id(obj: &mut Map<String, Value>) -> Result<String, String> {
    match obj.remove("pipeline_id") {
        Some(Value::String(id)) if valid_token(&id) => Ok(id),
        Some(Value::String(id)) => Err(format!("bad pipeline_id `{id}`")),
        Some(_) => Err("`pipeline_id` must be a string".into()),
        None => Err("missing field `pipeline_id`".into()),
    }
}

/// Maps a command and its JSON payload onto the worker route that implements it.
pub fn to_request(
    cmd: &str,
    payload: &[u8],
    api_key: Option<&str>,
) -> Result<Request<Body>, String> {
    let parsed: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(payload).map_err(|e| format!("invalid JSON payload: {e}"))?
    };
    let Value::Object(mut obj) = parsed else {
        return Err("the payload must be a JSON object".into());
    };
    let base = "/api/v1/pipelines";
    let (method, path, body, content_type) = match cmd {
        "deploy" => (
            Method::POST,
            base.to_owned(),
            Value::Object(obj).to_string(),
            "application/json",
        ),
        "undeploy" => {
            let id = take_pipeline_id(&mut obj)?;
            (
                Method::DELETE,
                format!("{base}/{id}"),
                String::new(),
                "application/json",
            )
        }
        "inject" => {
            let id = take_pipeline_id(&mut obj)?;
            (
                Method::POST,
                format!("{base}/{id}/events"),
                Value::Object(obj).to_string(),
                "application/json",
            )
        }
        "inject_batch" => {
            let id = take_pipeline_id(&mut obj)?;
            let path = format!("{base}/{id}/events-batch");
            match obj.remove("events") {
                Some(Value::String(text)) => (Method::POST, path, text, "text/plain"),
                Some(events @ Value::Array(_)) => (
                    Method::POST,
                    path,
                    json!({"events": events}).to_string(),
                    "application/json",
                ),
                _ => return Err("`events` must be an array of events or .evt text".into()),
            }
        }
        "checkpoint" => {
            let id = take_pipeline_id(&mut obj)?;
            (
                Method::POST,
                format!("{base}/{id}/checkpoint"),
                String::new(),
                "application/json",
            )
        }
        "restore" => {
            let id = take_pipeline_id(&mut obj)?;
            let checkpoint = match obj.remove("checkpoint") {
                Some(Value::String(s)) => {
                    serde_json::from_str(&s).map_err(|e| format!("bad checkpoint: {e}"))?
                }
                Some(cp) => cp,
                None => Value::Object(obj),
            };
            (
                Method::POST,
                format!("{base}/{id}/restore"),
                checkpoint.to_string(),
                "application/json",
            )
        }
        "drain" => (
            Method::POST,
            "/api/v1/drain".to_owned(),
            String::new(),
            "application/json",
        ),
        other => return Err(format!("unknown command `{other}`")),
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type);
    if let Some(k) = api_key {
        req = req.header(API_KEY_HEADER, k);
    }
    req.body(Body::from(body)).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_routes() {
        let r = to_request(
            "inject",
            br#"{"pipeline_id":"p1","event_type":"A","fields":{}}"#,
            Some("k"),
        )
        .unwrap();
        assert_eq!(
            (r.method(), r.uri().path()),
            (&Method::POST, "/api/v1/pipelines/p1/events")
        );
        assert_eq!(r.headers()[API_KEY_HEADER], "k");
        let r = to_request("undeploy", br#"{"pipeline_id":"p1"}"#, None).unwrap();
        assert_eq!(
            (r.method(), r.uri().path()),
            (&Method::DELETE, "/api/v1/pipelines/p1")
        );
        let r = to_request(
            "inject_batch",
            br#"{"pipeline_id":"p1","events":"A { x: 1 }"}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        let r = to_request("drain", b"", None).unwrap();
        assert_eq!(r.uri().path(), "/api/v1/drain");
        assert!(to_request("inject", br#"{"event_type":"A"}"#, None).is_err());
        assert!(to_request("inject", br#"{"pipeline_id":"../x"}"#, None).is_err());
        assert!(to_request("reboot", b"{}", None).is_err());
        assert!(to_request("deploy", b"[1]", None).is_err());
    }
}
