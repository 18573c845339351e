//! Cluster event stream (issue 11): `GET /api/v1/cluster/events` delivers the expected
//! sequence for a scripted scenario, from a follower with the same ids as the leader, and
//! resumes after an id with `since`. Also home of the small SSE client the live-ops tests share.

use crate::harness::{fake_worker, Ensemble, Opts, ADMIN_KEY};
use serde_json::{json, Value};
use std::time::Duration;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    /// `id:` (empty when absent).
    pub id: String,
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:` parsed as JSON (a string when it is not JSON).
    pub data: Value,
}

/// A streaming SSE client over reqwest (a real HTTP client, no buffering of the whole body).
pub struct SseReader {
    resp: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Opens `url` with the admin key; panics unless the answer is 200 `text/event-stream`.
    pub async fn open(url: &str, key: &str) -> SseReader {
        let resp = reqwest::Client::new()
            .get(url)
            .header("x-api-key", key)
            .send()
            .await
            .expect("open event stream");
        assert_eq!(resp.status().as_u16(), 200, "GET {url}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        SseReader {
            resp,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ends or nothing arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut ev = Sse {
                    id: String::new(),
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                let text = data.join("\n");
                ev.data = serde_json::from_str(&text).unwrap_or(Value::String(text));
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Reads until an event satisfies `pred`; returns every event read (the match last).
    pub async fn until(&mut self, timeout: Duration, pred: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(ev) = self.next(left).await else {
                panic!("no matching event within {timeout:?}; saw {seen:#?}");
            };
            let done = pred(&ev);
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }
}

/// `(type, key field)` of the scripted events, in order, skipping everything else.
fn script_view(events: &[Sse], worker: &str, group: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| {
            e.data["data"]["worker_id"] == worker
                || e.data["data"]["name"] == group
                || (e.event.starts_with("group_") && e.data["data"]["group_id"].is_string())
        })
        .map(|e| (e.event.clone(), e.id.clone()))
        .collect()
}

#[tokio::test]
async fn event_stream_follows_a_scripted_scenario_on_every_node_and_resumes() {
    let ens = Ensemble::start(3, 0, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let stream = |i: usize| format!("{}/api/v1/cluster/events", ens.coords[i].url);
    let mut on_follower = SseReader::open(&stream(follower), ADMIN_KEY).await;
    let mut on_leader = SseReader::open(&stream(leader), ADMIN_KEY).await;

    // The script: a worker joins and goes silent, a group comes and goes, the worker leaves.
    let worker = "ev-worker";
    ens.api
        .post(
            &ens.cluster_url(follower, "/workers/register"),
            &fake_worker(worker),
        )
        .await
        .unwrap()
        .expect_ok();
    let until_unhealthy = |e: &Sse| e.event == "worker_unhealthy";
    let mut seen_f = on_follower
        .until(Duration::from_secs(20), until_unhealthy)
        .await;
    let spec = json!({"name": "ev-group", "pipelines": [
        {"name": "p", "source": "stream S = Tick .emit(v: 1)"}]});
    let gid = ens.create_group(follower, &spec).await;
    ens.api
        .delete(&ens.cluster_url(follower, &format!("/pipeline-groups/{gid}")))
        .await
        .unwrap()
        .expect_ok();
    ens.api
        .delete(&ens.cluster_url(follower, &format!("/workers/{worker}")))
        .await
        .unwrap()
        .expect_ok();
    let left = |e: &Sse| e.event == "worker_left";
    seen_f.extend(on_follower.until(Duration::from_secs(20), left).await);
    let seen_l = on_leader.until(Duration::from_secs(20), left).await;

    let script = script_view(&seen_f, worker, "ev-group");
    let kinds: Vec<&str> = script.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "worker_joined",
            "worker_unhealthy",
            "group_deployed",
            "group_deleted",
            "worker_left"
        ],
        "{seen_f:#?}"
    );
    // Derived from the log: the leader numbers them exactly like the follower.
    assert_eq!(script_view(&seen_l, worker, "ev-group"), script);
    let deployed = seen_f.iter().find(|e| e.event == "group_deployed").unwrap();
    assert_eq!(deployed.data["data"]["group_id"], gid.as_str());
    assert_eq!(deployed.data["id"], deployed.id.as_str());

    // Resume after the deploy event: the next scripted events come back with the same ids.
    let url = format!("{}?since={}", stream(follower), deployed.id);
    let mut resumed = SseReader::open(&url, ADMIN_KEY).await;
    let again = resumed.until(Duration::from_secs(10), left).await;
    assert!(again.iter().all(|e| e.event != "reset"), "{again:#?}");
    assert_eq!(
        script_view(&again, worker, "ev-group"),
        script[3..].to_vec(),
        "resume after {}",
        deployed.id
    );
    // Last-Event-ID works the same way, and bad ids are refused.
    let resp = reqwest::Client::new()
        .get(stream(follower))
        .header("x-api-key", ADMIN_KEY)
        .header("last-event-id", "nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Without the key the stream is refused like any API route.
    let resp = reqwest::get(stream(follower)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// `(log index, sub-index)` of an event id, for ordering.
fn id_key(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('.').unwrap_or((id, "0"));
    (a.parse().unwrap(), b.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_stream_shows_a_migration_and_a_leader_kill_and_resumes_without_gaps() {
    let mut ens = Ensemble::start(3, 2, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let stream = format!("{}/api/v1/cluster/events", ens.coords[follower].url);
    // `reference` reads everything; `first` goes away mid-way and resumes with `since`.
    let mut reference = SseReader::open(&stream, ADMIN_KEY).await;
    let mut first = SseReader::open(&stream, ADMIN_KEY).await;
    let gid = crate::migration::create_counters(
        &ens,
        leader,
        "ev-move",
        &[("count", "Tick", "worker-0")],
    )
    .await;

    // The worker running the pipeline dies: it is moved, with reason worker_unhealthy.
    ens.workers[0].proc.kill();
    let is_started = |e: &Sse| e.event == "migration_started";
    let before = first.until(Duration::from_secs(20), is_started).await;
    drop(first);
    let started = before.last().unwrap().clone();
    assert_eq!(
        started.data["data"]["group_id"],
        gid.as_str(),
        "{started:?}"
    );
    assert_eq!(started.data["data"]["from_worker"], "worker-0");
    assert_eq!(started.data["data"]["to_worker"], "worker-1");
    assert_eq!(started.data["data"]["reason"], "worker_unhealthy");
    let migration_id = started.data["data"]["migration_id"].clone();
    let done = |e: &Sse| e.event == "migration_completed";
    let mut seen = reference.until(Duration::from_secs(20), done).await;
    let completed = seen.last().unwrap().clone();
    assert_eq!(
        completed.data["data"]["migration_id"], migration_id,
        "{completed:?}"
    );

    // The leader is killed: the follower's stream reports the new leader.
    ens.coords[leader].proc.kill();
    let changed = |e: &Sse| e.event == "leader_changed";
    seen.extend(reference.until(Duration::from_secs(30), changed).await);
    let lc = seen.last().unwrap().clone();
    assert_ne!(
        lc.data["data"]["leader_id"],
        json!(leader as u64 + 1),
        "{lc:?}"
    );
    assert_eq!(
        lc.data["data"]["previous_leader_id"],
        json!(leader as u64 + 1),
        "{lc:?}"
    );
    assert_eq!(lc.data["data"]["observed_by"], json!(follower as u64 + 1));

    // Resume after the last event `first` read: exactly what `reference` saw after it.
    let url = format!("{stream}?since={}", started.id);
    let mut resumed = SseReader::open(&url, ADMIN_KEY).await;
    let again = resumed.until(Duration::from_secs(10), changed).await;
    let ids = |evs: &[Sse]| evs.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let after: Vec<Sse> = seen
        .iter()
        .filter(|e| id_key(&e.id) > id_key(&started.id))
        .cloned()
        .collect();
    assert_eq!(
        ids(&again),
        ids(&after),
        "resumed {again:#?}\nreference {seen:#?}"
    );
    assert!(again.iter().all(|e| e.event != "reset"));
    // Together, the two halves hold every id once, in order.
    let mut all = ids(&before);
    all.extend(ids(&again));
    let keys: Vec<(u64, u64)> = all.iter().map(|i| id_key(i)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {all:?}"
    );
    let kinds: Vec<&str> = before
        .iter()
        .chain(&again)
        .map(|e| e.event.as_str())
        .collect();
    for kind in ["migration_started", "migration_completed", "leader_changed"] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            1,
            "{kind} in {kinds:?}"
        );
    }
}
