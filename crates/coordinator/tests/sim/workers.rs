//! Fake workers behind the coordinator's real `WorkerClient`: each keeps its pipelines (source,
//! event count, paused, forwarding after a hand-over) and answers every worker call the way
//! `varpulis server` does, with faults injected from a seeded RNG. Every call is recorded, so
//! two runs with the same seed can be compared call for call.

use axum::body::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use varpulis_api::worker::{Checkpoint, HandoverResponse};
use varpulis_coordinator::transport::worker_client::{
    Answer, BoxFuture, WorkerCall, WorkerRef, WorkerTransport,
};

/// One pipeline on a fake worker.
#[derive(Debug, Clone, PartialEq)]
pub struct FakePipeline {
    /// Its VPL.
    pub source: String,
    /// Events processed (restored from a checkpoint, moved by a hand-over).
    pub events: u64,
    /// Deployed paused (a rollout's new version before its hand-over).
    pub paused: bool,
    /// After a hand-over: the pipeline its events go to.
    pub forward_to: Option<String>,
}

#[derive(Debug, Default)]
struct FakeWorker {
    alive: bool,
    pipelines: BTreeMap<String, FakePipeline>,
}

#[derive(Debug)]
struct Fakes {
    workers: BTreeMap<String, FakeWorker>,
    rng: StdRng,
    deploy_failure_rate: f64,
    fail_handovers: bool,
    calls: Vec<String>,
}

/// Every fake worker.
#[derive(Debug)]
pub struct FakeWorkers(Mutex<Fakes>);

fn answer(status: u16, body: serde_json::Value) -> Answer {
    Answer {
        status,
        body: Bytes::from(body.to_string()),
    }
}

fn not_found(what: &str) -> Answer {
    answer(
        404,
        json!({"error": format!("{what} not found"), "code": "not_found"}),
    )
}

impl FakeWorkers {
    /// No workers yet; faults drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        FakeWorkers(Mutex::new(Fakes {
            workers: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            deploy_failure_rate: 0.0,
            fail_handovers: false,
            calls: Vec::new(),
        }))
    }

    /// Starts (or restarts, empty) worker `id`.
    pub fn start(&self, id: &str) {
        let mut f = self.0.lock().unwrap();
        f.workers.insert(
            id.to_string(),
            FakeWorker {
                alive: true,
                pipelines: BTreeMap::new(),
            },
        );
    }

    /// Kills worker `id`: it answers nothing any more.
    pub fn kill(&self, id: &str) {
        if let Some(w) = self.0.lock().unwrap().workers.get_mut(id) {
            w.alive = false;
        }
    }

    /// Whether worker `id` is alive.
    pub fn alive(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .workers
            .get(id)
            .is_some_and(|w| w.alive)
    }

    /// Fails this share of deploys (seeded).
    pub fn fail_deploys(&self, rate: f64) {
        self.0.lock().unwrap().deploy_failure_rate = rate;
    }

    /// Fails every hand-over.
    pub fn fail_handovers(&self, fail: bool) {
        self.0.lock().unwrap().fail_handovers = fail;
    }

    /// The pipelines worker `id` runs.
    pub fn pipelines(&self, id: &str) -> BTreeMap<String, FakePipeline> {
        self.0
            .lock()
            .unwrap()
            .workers
            .get(id)
            .map(|w| w.pipelines.clone())
            .unwrap_or_default()
    }

    /// Feeds `n` events to pipeline `pipeline_id` on worker `id` (following hand-overs).
    pub fn process(&self, id: &str, pipeline_id: &str, n: u64) {
        let mut f = self.0.lock().unwrap();
        if let Some(w) = f.workers.get_mut(id) {
            let target = w
                .pipelines
                .get(pipeline_id)
                .and_then(|p| p.forward_to.clone())
                .unwrap_or_else(|| pipeline_id.to_string());
            if let Some(p) = w.pipelines.get_mut(&target) {
                p.events += n;
            }
        }
    }

    /// Every call so far, `"<worker> <call>"`.
    pub fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().calls.clone()
    }

    fn handle(&self, worker: &WorkerRef, call: &WorkerCall) -> Result<Answer, String> {
        let mut f = self.0.lock().unwrap();
        let name = call.nats_command().unwrap_or("handover");
        let pipeline = match call {
            WorkerCall::Deploy(req) => req.id.clone().unwrap_or_default(),
            other => other.pipeline_id().unwrap_or_default().to_string(),
        };
        f.calls.push(format!("{} {name} {pipeline}", worker.id));
        let rate = f.deploy_failure_rate;
        let injected = matches!(call, WorkerCall::Deploy(_)) && rate > 0.0 && f.rng.gen_bool(rate);
        let fail_handovers = f.fail_handovers;
        let Some(w) = f.workers.get_mut(&worker.id).filter(|w| w.alive) else {
            return Err("connection refused".into());
        };
        let answer = match call {
            WorkerCall::Deploy(_) if injected => answer(
                500,
                json!({"error": "injected deploy failure", "code": "internal"}),
            ),
            WorkerCall::Deploy(req) => {
                let id = req.id.clone().unwrap_or_else(|| req.name.clone());
                let created = !w.pipelines.contains_key(&id);
                w.pipelines.entry(id.clone()).or_insert(FakePipeline {
                    source: req.source.clone(),
                    events: req.checkpoint.as_ref().map_or(0, |c| c.events_processed),
                    paused: req.paused,
                    forward_to: None,
                });
                let status = if created { 201 } else { 200 };
                answer(
                    status,
                    json!({"id": id, "name": req.name, "status": "running"}),
                )
            }
            WorkerCall::Undeploy { pipeline_id } => match w.pipelines.remove(pipeline_id) {
                Some(_) => answer(200, json!({"deleted": true})),
                None => not_found(pipeline_id),
            },
            WorkerCall::Metrics { pipeline_id } => match w.pipelines.get(pipeline_id) {
                Some(p) => answer(
                    200,
                    json!({"pipeline_id": pipeline_id, "events_in": p.events, "events_out": 0, "errors": 0}),
                ),
                None => not_found(pipeline_id),
            },
            WorkerCall::Checkpoint { pipeline_id } => match w.pipelines.get(pipeline_id) {
                Some(p) => answer(
                    200,
                    json!(Checkpoint {
                        pipeline_id: pipeline_id.clone(),
                        events_processed: p.events,
                        version: 1,
                        state: format!("count={}", p.events),
                    }),
                ),
                None => not_found(pipeline_id),
            },
            WorkerCall::Inject { pipeline_id, .. }
            | WorkerCall::InjectBatch { pipeline_id, .. } => {
                let n = match call {
                    WorkerCall::InjectBatch { batch, .. } => batch.len() as u64,
                    _ => 1,
                };
                match w.pipelines.get_mut(pipeline_id) {
                    Some(p) => {
                        p.events += n;
                        answer(200, json!({"accepted": n, "output_events": []}))
                    }
                    None => not_found(pipeline_id),
                }
            }
            WorkerCall::Handover { .. } if fail_handovers => answer(
                409,
                json!({"error": "injected hand-over failure", "code": "conflict"}),
            ),
            WorkerCall::Handover {
                pipeline_id,
                request,
            } => {
                let keep = request.state.as_deref() != Some("reset");
                let Some(events) = w.pipelines.get(pipeline_id).map(|p| p.events) else {
                    return Ok(not_found(pipeline_id));
                };
                let Some(to) = w.pipelines.get_mut(&request.to) else {
                    return Ok(not_found(&request.to));
                };
                if keep {
                    to.events = events;
                }
                to.paused = false;
                to.forward_to = None;
                if let Some(from) = w.pipelines.get_mut(pipeline_id) {
                    from.forward_to = Some(request.to.clone());
                }
                answer(
                    200,
                    json!(HandoverResponse {
                        from: pipeline_id.clone(),
                        to: request.to.clone(),
                        state_transferred: keep,
                        events_processed: events,
                        already: false,
                    }),
                )
            }
        };
        Ok(answer)
    }
}

impl WorkerTransport for FakeWorkers {
    fn send<'a>(
        &'a self,
        worker: &'a WorkerRef,
        call: &'a WorkerCall,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, String>> {
        let result = self.handle(worker, call);
        Box::pin(async move {
            tokio::task::yield_now().await;
            result
        })
    }
}
