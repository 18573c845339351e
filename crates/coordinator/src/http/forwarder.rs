//! The follower's side of forwarding: batches concurrent forwards into one leader call.
//!
//! Every write a follower forwards becomes a [`WireRequest`] handed to one batching task; the task
//! sends everything queued to the leader's `POST /raft/forward-batch` as one request (at most
//! [`MAX_BATCH_ITEMS`] items, about [`BATCH_BYTES`]), with up to [`IN_FLIGHT_BATCHES`] batches
//! on the wire at once, and hands each caller the answer of its own item. Under load, batches
//! grow with the queue; one client alone pays one request as before. Items larger than
//! [`BATCHED_ITEM_BYTES`] and forwarded reads go alone ([`send_one`]).
//!
//! Bounds (issue 24 item 6): at most [`MAX_FORWARDS`] forwards are under way on a node at once
//! (queued, on the wire, or waiting for the local apply); one more is refused at once with
//! `503 overloaded` and `Retry-After` instead of queueing without limit.
//!
//! A leader that does not know the batch route (an older version during a rolling upgrade: 404 or
//! 405) or does not accept this node as a peer (401/403) gets the batch's items one by one, as
//! before batching.

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use varpulis_api::FORWARDED_BY_HEADER;
use varpulis_raft::PEER_SECRET_HEADER;

use crate::http::forward_wire::{
    self, AnswerDecoder, WireRequest, WireResponse, CONTENT_TYPE, PATH,
};
use crate::metrics::Metrics;
use crate::transport::worker_client::error_chain;

/// Byte budget of one batch (the items' encoded size).
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Largest item that is batched; larger ones are forwarded alone.
pub const BATCHED_ITEM_BYTES: usize = 256 * 1024;
/// Most items in one batch.
pub const MAX_BATCH_ITEMS: usize = 256;
/// Batches on the wire at once (while it is answered, the next one fills). One: the leader
/// proposes the whole batch as one entry, and the next batch, larger, forms meanwhile; with 2, 4
/// or 8 the follower path cost more CPU per write for fewer writes/s (docs/benchmarks.md,
/// "Issue 24: commit pipeline (session 11)").
pub const IN_FLIGHT_BATCHES: usize = 1;
/// Environment override of [`IN_FLIGHT_BATCHES`] (1 to 64), a diagnostic for A/B measurements
/// (docs/raft.md), not a tuning knob.
pub const IN_FLIGHT_ENV: &str = "VARPULIS_FORWARD_IN_FLIGHT";

/// [`IN_FLIGHT_BATCHES`], or its override from [`IN_FLIGHT_ENV`].
fn in_flight_batches() -> usize {
    std::env::var(IN_FLIGHT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(IN_FLIGHT_BATCHES)
}
/// Longest a batch whose answers are not all in keeps its in-flight place.
pub const PERMIT_HOLD: std::time::Duration = std::time::Duration::from_millis(100);
/// Forwards under way on one node at once; beyond, `503 overloaded`.
pub const MAX_FORWARDS: usize = 4096;

/// Why a forward got no answer from the leader.
#[derive(Debug)]
pub enum ForwardFailure {
    /// The leader could not be reached or its answer was cut short (the caller answers 421).
    Unreachable(String),
}

type Reply = oneshot::Sender<Result<WireResponse, ForwardFailure>>;

struct Job {
    leader_url: Arc<str>,
    item: WireRequest,
    reply: Reply,
}

/// Handle to the batching task (cheap to share; the task stops when the handle is dropped).
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<Job>,
    admitted: Arc<Semaphore>,
    shed: Arc<Metrics>,
    batching: bool,
}

/// Environment switch that turns batching off (`0` or `off`): every forward then goes alone, as
/// before batching. A diagnostic for A/B measurements (docs/raft.md), not a tuning knob.
pub const BATCHING_ENV: &str = "VARPULIS_FORWARD_BATCHING";

/// One admitted forward; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Clone)]
struct Link {
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    node_id: u64,
    peer_secret: Option<HeaderValue>,
}

impl Forwarder {
    /// Starts the batching task (needs a Tokio runtime).
    pub fn start(
        metrics: Arc<Metrics>,
        http: reqwest::Client,
        node_id: u64,
        peer_secret: Option<&str>,
    ) -> Forwarder {
        Self::with_bound(metrics, http, node_id, peer_secret, MAX_FORWARDS)
    }

    /// [`Forwarder::start`] with another bound on concurrent forwards.
    pub fn with_bound(
        metrics: Arc<Metrics>,
        http: reqwest::Client,
        node_id: u64,
        peer_secret: Option<&str>,
        max_forwards: usize,
    ) -> Forwarder {
        let peer_secret = peer_secret.and_then(|s| match HeaderValue::from_str(s) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!("the peer secret is not a valid header value");
                None
            }
        });
        let (tx, rx) = mpsc::channel(max_forwards.max(1));
        let link = Link {
            metrics,
            http,
            node_id,
            peer_secret,
        };
        let shed = link.metrics.clone();
        tokio::spawn(run(rx, link));
        let batching = !matches!(
            std::env::var(BATCHING_ENV).ok().as_deref().map(str::trim),
            Some("0" | "off" | "false")
        );
        Forwarder {
            tx,
            admitted: Arc::new(Semaphore::new(max_forwards.max(1))),
            shed,
            batching,
        }
    }

    /// Whether forwards are batched (see [`BATCHING_ENV`]).
    pub fn batching(&self) -> bool {
        self.batching
    }

    /// A place for one forward, or `None` when [`MAX_FORWARDS`] are under way.
    pub fn admit(&self) -> Option<Admitted> {
        let place = self.admitted.clone().try_acquire_owned().ok().map(Admitted);
        if place.is_none() {
            Metrics::inc(&self.shed.forwards_shed);
        }
        place
    }

    /// Forwards `item` to the leader at `leader_url` inside a batch; the leader's answer to it.
    pub async fn submit(
        &self,
        leader_url: &str,
        item: WireRequest,
    ) -> Result<WireResponse, ForwardFailure> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            leader_url: Arc::from(leader_url.trim_end_matches('/')),
            item,
            reply,
        };
        // The channel holds as many jobs as there are admission places: never full for an
        // admitted caller; closed only when the node shuts down.
        if self.tx.try_send(job).is_err() {
            return Err(ForwardFailure::Unreachable(
                "the forwarding queue is closed or full".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ForwardFailure::Unreachable(
                "the forwarding task stopped".into(),
            ))
        })
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, link: Link) {
    let in_flight = Arc::new(Semaphore::new(in_flight_batches()));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut bytes = forward_wire::request_size(&first.item);
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_ITEMS && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += forward_wire::request_size(&job.item);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let link = link.clone();
        tokio::spawn(async move {
            // Almost always one leader; after a leader change a batch may hold both.
            let mut groups: Vec<(Arc<str>, Vec<Job>)> = Vec::new();
            for job in jobs {
                match groups.iter_mut().find(|(url, _)| *url == job.leader_url) {
                    Some((_, group)) => group.push(job),
                    None => groups.push((job.leader_url.clone(), vec![job])),
                }
            }
            let mut permit = Some(permit);
            for (url, jobs) in groups {
                send_batch(&link, &url, jobs, &mut permit).await;
            }
        });
    }
}

/// Sends one batch and hands out its answers. `permit` (its place among the
/// [`IN_FLIGHT_BATCHES`]) is given back once every item is answered, or [`PERMIT_HOLD`] after the
/// answer started, whichever comes first: a slow item must not keep the next batches waiting.
async fn send_batch(
    link: &Link,
    leader_url: &str,
    jobs: Vec<Job>,
    permit: &mut Option<OwnedSemaphorePermit>,
) {
    let (items, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
    let body = Bytes::from(forward_wire::encode_requests(&items));
    Metrics::inc(&link.metrics.forward_batches);
    let url = format!("{leader_url}{PATH}");
    let send = || {
        let mut request = link
            .http
            .post(&url)
            .header(
                HeaderName::from_static(FORWARDED_BY_HEADER),
                HeaderValue::from(link.node_id),
            )
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body.clone());
        if let Some(secret) = &link.peer_secret {
            request = request.header(HeaderName::from_static(PEER_SECRET_HEADER), secret);
        }
        request.send()
    };
    let sent = match send().await {
        // Connecting failed: the leader never saw the batch, so one retry is safe.
        Err(err) if err.is_connect() => send().await,
        other => other,
    };
    let answer = match sent {
        Ok(answer) => answer,
        Err(err) => {
            let reason = error_chain(&err);
            tracing::warn!(%leader_url, items = replies.len(), "cannot reach the leader: {reason}");
            return fail_all(replies, &reason);
        }
    };
    let status = answer.status();
    if matches!(
        status,
        StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
    ) {
        tracing::debug!(%leader_url, %status, "the leader refused a forward batch; forwarding one by one");
        let singles = items
            .into_iter()
            .zip(replies)
            .map(|(item, reply)| async move {
                let _ = reply.send(send_one(&link.http, leader_url, item).await);
            });
        futures::future::join_all(singles).await;
        return;
    }
    if !status.is_success() {
        // The batch as a whole was refused (overloaded, shutting down, ...): each item gets
        // that answer, with its status and `Retry-After`.
        let headers = answer.headers().clone();
        let body = answer.bytes().await.unwrap_or_default();
        let refused = WireResponse {
            status,
            headers,
            body,
        };
        for reply in replies {
            let _ = reply.send(Ok(refused.clone()));
        }
        return;
    }
    // Answers arrive as the leader has them, in any order: hand each out at once.
    let mut replies: Vec<Option<Reply>> = replies.into_iter().map(Some).collect();
    let mut decoder = AnswerDecoder::new(replies.len());
    let mut answer = answer;
    let release_at = tokio::time::Instant::now() + PERMIT_HOLD;
    let failure = 'read: loop {
        let chunk = if permit.is_some() {
            match tokio::time::timeout_at(release_at, answer.chunk()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    *permit = None;
                    continue;
                }
            }
        } else {
            answer.chunk().await
        };
        match chunk {
            Ok(Some(chunk)) => {
                decoder.push(&chunk);
                loop {
                    match decoder.next_frame() {
                        Ok(Some((index, item))) => {
                            if let Some(reply) = replies.get_mut(index).and_then(Option::take) {
                                let _ = reply.send(Ok(item));
                            }
                        }
                        Ok(None) => break,
                        // Nothing after an undecodable frame can be trusted.
                        Err(err) => {
                            break 'read Some(format!("undecodable forward batch answer: {err}"))
                        }
                    }
                }
            }
            Ok(None) if decoder.complete() => break None,
            Ok(None) => break Some("the leader's answer ended early".to_string()),
            Err(err) => break Some(format!("leader answer cut short: {}", error_chain(&err))),
        }
    };
    let left: Vec<Reply> = replies.into_iter().flatten().collect();
    if !left.is_empty() {
        let reason = failure.unwrap_or_else(|| "no answer for the item".into());
        tracing::warn!(%leader_url, items = left.len(), "{reason}");
        fail_all(left, &reason);
    }
}

fn fail_all(replies: Vec<Reply>, reason: &str) {
    for reply in replies {
        let _ = reply.send(Err(ForwardFailure::Unreachable(reason.to_string())));
    }
}

/// Forwards one request to the leader at `leader_url` as a request of its own.
pub async fn send_one(
    http: &reqwest::Client,
    leader_url: &str,
    item: WireRequest,
) -> Result<WireResponse, ForwardFailure> {
    let url = format!(
        "{}{}",
        leader_url.trim_end_matches('/'),
        item.path_and_query
    );
    let send = || {
        http.request(item.method.clone(), &url)
            .headers(item.headers.clone())
            .body(item.body.clone())
            .send()
    };
    let sent = match send().await {
        // Connecting failed: the leader never saw the request, so one retry is safe (a stale
        // pooled connection or a full accept queue are the usual causes).
        Err(err) if err.is_connect() => send().await,
        other => other,
    };
    let answer = sent.map_err(|err| ForwardFailure::Unreachable(error_chain(&err)))?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.map_err(|err| {
        ForwardFailure::Unreachable(format!("leader answer cut short: {}", error_chain(&err)))
    })?;
    Ok(WireResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admission_is_bounded_and_places_come_back() {
        let metrics = Arc::new(Metrics::default());
        let forwarder = Forwarder::with_bound(metrics.clone(), reqwest::Client::new(), 1, None, 2);
        let a = forwarder.admit().expect("first place");
        let _b = forwarder.admit().expect("second place");
        assert!(forwarder.admit().is_none(), "a third forward is refused");
        assert_eq!(
            metrics
                .forwards_shed
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        drop(a);
        assert!(forwarder.admit().is_some(), "a freed place is reused");
    }
}
