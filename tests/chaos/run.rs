//! One chaos run: an ensemble of 3 coordinators and 2 workers, concurrent client traffic,
//! a data-plane probe through the workers ([`crate::probe`]), a seeded fault schedule, a
//! metrics sampler, then the final checks and the report.

use crate::checker::{self, Input, Op, Output, Verdict};
use crate::harness::{Api, Ensemble, NetLayout, Opts, TlsFiles};
use crate::history::{classify, write_output, Class, Record};
use crate::netns;
use crate::probe::{self, Probe};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Parameters of a run (from the environment, see docs/chaos.md).
#[derive(Debug, Clone)]
pub struct Config {
    /// RNG seed of the fault schedule and the traffic.
    pub seed: u64,
    /// How long traffic and faults run.
    pub duration: Duration,
    /// Maximum number of faults (the schedule stops early when reached).
    pub max_faults: usize,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Search budget of the linearizability checker per key.
    pub budget: usize,
    /// Run every process over mutual TLS (`CHAOS_TLS=1`): HTTPS between coordinators, to
    /// workers and from the clients.
    pub tls: bool,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Config {
    /// Reads `CHAOS_SEED`, `CHAOS_DURATION_SECS`, `CHAOS_FAULTS`, `CHAOS_CLIENTS`.
    pub fn from_env(default_secs: u64, default_faults: usize) -> Self {
        let seed = env_num("CHAOS_SEED", rand::random::<u64>() % 1_000_000);
        Self {
            seed,
            duration: Duration::from_secs(env_num("CHAOS_DURATION_SECS", default_secs)),
            max_faults: env_num("CHAOS_FAULTS", default_faults),
            clients: env_num("CHAOS_CLIENTS", 6),
            budget: env_num("CHAOS_CHECK_BUDGET", 300_000),
            tls: env_num("CHAOS_TLS", 0u8) == 1,
        }
    }

    /// The same configuration over mutual TLS.
    pub fn with_tls(self) -> Self {
        Self { tls: true, ..self }
    }
}

/// Shared recorder of operations.
#[derive(Debug, Default)]
struct Recorder {
    seq: AtomicU64,
    ops: Mutex<Vec<Record>>,
}

/// Connector names, worker ids under test (fake registrations, no process behind them).
const CONNECTORS: usize = 5;
const FAKE_WORKERS: usize = 4;
const VPL: &str = "stream A = EventA .emit(v: 1)";

struct Client {
    idx: usize,
    urls: Vec<String>,
    api: Api,
    rec: Arc<Recorder>,
    t0: Instant,
    rng: StdRng,
    groups: Vec<(String, Option<String>)>,
    next_group: usize,
}

/// Extracts the checked value of a key from a read's answer body.
type Extract = fn(&Value, &str) -> Option<String>;

/// One request of the traffic and how the checker models it.
struct Req {
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
    /// History key, e.g. `conn:c1`.
    key: String,
    input: Input,
    /// Set for reads: how to get the value out of a 200 answer.
    read: Option<Extract>,
}

impl Req {
    fn new(method: reqwest::Method, path: String, key: String, input: Input) -> Self {
        Self {
            method,
            path,
            body: None,
            key,
            input,
            read: None,
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// A consistent read of `key` through `path`.
    fn read(path: String, key: String, extract: Extract) -> Self {
        let mut req = Self::new(reqwest::Method::GET, path, key, Input::Read);
        req.read = Some(extract);
        req
    }

    /// Consistent read of connector `name`.
    fn read_connector(name: &str) -> Self {
        Self::read(
            format!("/connectors/{name}?consistent=true"),
            format!("conn:{name}"),
            read_connector,
        )
    }

    /// Consistent read of fake worker `wid`.
    fn read_worker(wid: &str) -> Self {
        Self::read(
            format!("/workers/{wid}?consistent=true"),
            format!("worker:{wid}"),
            read_worker,
        )
    }
}

impl Client {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Sends one request to coordinator `node` and records it.
    async fn call(&mut self, node: usize, req: Req) -> (Option<u16>, Option<Value>) {
        let Req {
            method,
            path,
            body,
            key,
            input,
            read,
        } = req;
        let url = format!("{}/api/v1/cluster{path}", self.urls[node]);
        let id = self.rec.seq.fetch_add(1, Ordering::SeqCst);
        let invoke = self.now();
        let bytes = body.map(|b| {
            (
                serde_json::to_vec(&b).unwrap_or_default(),
                "application/json",
            )
        });
        let result = self.api.send(method.clone(), &url, bytes).await;
        let complete = self.now();
        let class = classify(&result);
        let status = result.as_ref().ok().map(|r| r.status);
        let output = match read {
            Some(extract) => match &result {
                Ok(r) if r.status == 200 => {
                    let id = key.split_once(':').map_or("", |(_, id)| id);
                    Some(Output::Value(extract(&r.body, id)))
                }
                Ok(r) if r.status == 404 => Some(Output::Value(None)),
                _ => None,
            },
            // 409 observes presence only for a create; 404 absence only for an update or
            // delete. Any other definite refusal (e.g. a 409 on deregistering a busy worker)
            // had no effect and observes nothing.
            None => match (write_output(class, status), &input) {
                (Some(Output::Exists), i) if !matches!(i, Input::Create(_)) => None,
                (Some(Output::Missing), Input::Create(_) | Input::Upsert(_)) => None,
                (o, _) => o,
            },
        };
        let detail = match &result {
            Ok(r) if !r.ok() => r.text.chars().take(160).collect(),
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        let body = result.ok().filter(|r| r.ok()).map(|r| r.body);
        self.rec
            .ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record {
                id,
                client: self.idx,
                node,
                key,
                request: format!("{method} {path}"),
                invoke_ns: invoke,
                complete_ns: complete,
                status,
                class: if read.is_some() && class == Class::Failed && status == Some(404) {
                    Class::Ok
                } else {
                    class
                },
                detail,
                input,
                output,
            });
        (status, body)
    }

    /// A random operation on a connector (create/update/delete/read) or a fake worker
    /// registration (upsert/deregister/read); `val` is the unique value a write sets.
    fn keyed(&mut self, val: String) -> Req {
        use reqwest::Method;
        if self.rng.gen_range(0..8) < 5 {
            let name = format!("c{}", self.rng.gen_range(0..CONNECTORS));
            let key = format!("conn:{name}");
            let body = json!({"name": name, "connector_type": "mqtt",
                "params": {"host": "localhost", "port": 1883}, "description": val});
            match self.rng.gen_range(0..4) {
                0 => {
                    Req::new(Method::POST, "/connectors".into(), key, Input::Create(val)).body(body)
                }
                1 => Req::new(
                    Method::PUT,
                    format!("/connectors/{name}"),
                    key,
                    Input::Update(val),
                )
                .body(body),
                2 => Req::new(
                    Method::DELETE,
                    format!("/connectors/{name}"),
                    key,
                    Input::Delete,
                ),
                _ => Req::read_connector(&name),
            }
        } else {
            let wid = format!("chaos-w{}", self.rng.gen_range(0..FAKE_WORKERS));
            let key = format!("worker:{wid}");
            match self.rng.gen_range(0..3) {
                0 => Req::new(
                    Method::POST,
                    "/workers/register".into(),
                    key,
                    Input::Upsert(val.clone()),
                )
                .body(json!({"worker_id": wid,
                    "address": "http://127.0.0.1:9", "api_key": "fake", "labels": {"v": val},
                    "capacity": {"cpu_cores": 1, "pipelines_running": 0, "max_pipelines": 1}})),
                1 => Req::new(
                    Method::DELETE,
                    format!("/workers/{wid}"),
                    key,
                    Input::Delete,
                ),
                _ => Req::read_worker(&wid),
            }
        }
    }

    /// A random pipeline-group operation. Group names are used for one create only, so the
    /// id of an acknowledged create is the only id that name can ever have.
    async fn group_op(&mut self, node: usize) {
        use reqwest::Method;
        let choice = self.rng.gen_range(0..3);
        let known = self.groups.len();
        if choice == 0 || known == 0 {
            let name = format!("g-{}-{}", self.idx, self.next_group);
            self.next_group += 1;
            let body = json!({"name": name, "pipelines": [{"name": "p", "source": VPL}]});
            let req = Req::new(
                Method::POST,
                "/pipeline-groups".into(),
                format!("group:{name}"),
                Input::Create("1".into()),
            )
            .body(body);
            let got = self.call(node, req).await;
            let id = got.1.and_then(|b| b["id"].as_str().map(str::to_owned));
            self.groups.push((name, id));
            return;
        }
        // Reads go by id (a list is paginated, at most 1000 per page, and offsets shift
        // under concurrent deletes). Names whose create had no known outcome are only read
        // by the final paged listing.
        let (name, id) = self.groups[self.rng.gen_range(0..known)].clone();
        let Some(id) = id else {
            return;
        };
        let key = format!("group:{name}");
        let req = if choice == 1 {
            Req::new(
                Method::DELETE,
                format!("/pipeline-groups/{id}"),
                key,
                Input::Delete,
            )
        } else {
            Req::read(
                format!("/pipeline-groups/{id}?consistent=true"),
                key,
                |_, _| Some("1".to_owned()),
            )
        };
        self.call(node, req).await;
    }

    /// One random operation through a random coordinator.
    async fn one(&mut self) {
        let node = self.rng.gen_range(0..self.urls.len());
        let val = format!("v{}-{}", self.idx, self.rng.gen::<u32>());
        if self.rng.gen_range(0..10) < 8 {
            let req = self.keyed(val);
            self.call(node, req).await;
        } else {
            self.group_op(node).await;
        }
    }
}

fn read_connector(body: &Value, _name: &str) -> Option<String> {
    Some(body["description"].as_str().unwrap_or_default().to_owned())
}

fn read_worker(body: &Value, _id: &str) -> Option<String> {
    // The written value travels in a label (an address is scheme://host:port only).
    Some(body["labels"]["v"].as_str().unwrap_or_default().to_owned())
}

/// One `/raft/metrics` sample.
#[derive(Debug, Clone)]
struct Sample {
    node: usize,
    at_ms: u64,
    state: String,
    term: u64,
    leader: Option<u64>,
    applied: Option<u64>,
    hash: Option<String>,
}

/// A fault that was injected, with what was measured around it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    /// Kind (`kill_leader`, `kill_follower`, `pause_leader`, `kill_worker`, `restart`).
    pub kind: String,
    /// Target (`coord-2`, `worker-0`).
    pub target: String,
    /// Seconds since the start.
    pub at_secs: f64,
    /// Milliseconds until the remaining coordinators agreed on a ready leader (leader faults).
    pub no_leader_ms: Option<u64>,
    /// Partitions: seconds the victim was cut off.
    pub cut_secs: Option<f64>,
    /// Partitions: milliseconds after the heal until the victim followed the current
    /// leader at the leader's applied index (None: not within 30 s, or not a partition).
    pub rejoin_ms: Option<u64>,
    /// Partitions: the victim's coordinator index and the cut window (ns since start).
    #[serde(skip)]
    pub window: Option<(usize, u64, u64)>,
}

impl FaultRecord {
    fn new(kind: &str, target: String, at_secs: f64, no_leader_ms: Option<u64>) -> Self {
        Self {
            kind: kind.into(),
            target,
            at_secs,
            no_leader_ms,
            cut_secs: None,
            rejoin_ms: None,
            window: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillLeader,
    KillFollower,
    PauseLeader,
    KillWorker,
    /// Split 1|2 with the leader alone: peer traffic cut both ways, clients still reach it.
    PartitionLeader,
    /// Split 1|2 with a follower alone (peer traffic cut, clients still reach it).
    PartitionFollower,
    /// The leader's link down: cut from peers, clients and workers.
    IsolateLeader,
    /// A worker cut from every coordinator both ways; it still reaches the MQTT broker, so
    /// only its lease keeps it from running its pipelines next to their new copies.
    PartitionWorker,
    /// SIGTERM of the leader: a planned stop, it hands leadership over first (issue 24).
    TermLeader,
}

impl Fault {
    fn is_partition(self) -> bool {
        matches!(
            self,
            Self::PartitionLeader
                | Self::PartitionFollower
                | Self::IsolateLeader
                | Self::PartitionWorker
        )
    }
}

/// Runs the whole scenario and returns the report (panics only on harness failures).
pub async fn run(cfg: Config) -> Value {
    eprintln!(
        "chaos: seed {} (replay with CHAOS_SEED={}), duration {:?}, max faults {}",
        cfg.seed, cfg.seed, cfg.duration, cfg.max_faults
    );
    // Declared before the ensemble so that it is dropped after the processes are killed.
    // A namespace per coordinator and per worker (the workers' own let a partition cut one
    // worker from the coordinators while it still reaches the MQTT broker on the bridge).
    let (net, partitions) = match netns::probe().and_then(|()| netns::Net::setup_with(3, 2)) {
        Ok(net) => {
            let described = net.describe();
            (Some(net), described)
        }
        Err(why) => (None, format!("SKIPPED: {why}")),
    };
    eprintln!("chaos: network partitions: {partitions}");
    let layout = match &net {
        Some(net) => NetLayout {
            coords: (0..3)
                .map(|i| (net.nodes[i].addr.clone(), net.exec_prefix(i)))
                .collect(),
            worker_host: Some(net.host_addr.clone()),
            workers: (0..2)
                .map(|w| (net.nodes[3 + w].addr.clone(), net.exec_prefix(3 + w)))
                .collect(),
            ..NetLayout::default()
        },
        None => NetLayout::default(),
    };
    // Over TLS the one leaf must be valid for every address the processes advertise.
    let tls = cfg.tls.then(|| {
        let mut hosts: Vec<String> = layout.coords.iter().map(|(a, _)| a.clone()).collect();
        hosts.extend(layout.worker_host.clone());
        hosts.extend(layout.workers.iter().map(|(a, _)| a.clone()));
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        TlsFiles::generate(&hosts, true)
    });
    eprintln!(
        "chaos: TLS {}",
        if tls.is_some() { "on (mutual)" } else { "off" }
    );
    let opts = Opts {
        tls,
        raft_heartbeat_ms: Some(100),
        raft_election_min_ms: Some(400),
        raft_election_max_ms: Some(800),
        heartbeat_interval: 1.0,
        heartbeat_timeout: 4.0,
        sweep_interval: 1.0,
        // Planned moves (rebalance) run the old and new copy side by side for a moment by
        // design; the probe checks failover moves, where that must never happen.
        coord_extra_args: vec!["--no-auto-rebalance".into()],
        worker_extra_args: vec!["--label".into(), probe::WORKER_LABEL.into()],
        ..Opts::default()
    };
    let mut ens = Ensemble::start_in(3, 2, opts, &layout).await;
    let probe_host = net
        .as_ref()
        .map_or_else(|| "127.0.0.1".to_owned(), |n| n.host_addr.clone());
    let urls = ens.coord_urls();
    let t0 = Instant::now();
    let probe = Probe::start(&ens, &probe_host, t0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rec = Arc::new(Recorder::default());
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();

    // Metrics sampler.
    let sampler = {
        let (urls, stop, samples, api) = (
            urls.clone(),
            stop.clone(),
            samples.clone(),
            ens.api.with_timeout(Duration::from_millis(500)),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for (node, url) in urls.iter().enumerate() {
                    if let Ok(r) = api.get(&format!("{url}/raft/metrics")).await {
                        if r.ok() {
                            let m = &r.body;
                            let s = Sample {
                                node,
                                at_ms: t0.elapsed().as_millis() as u64,
                                state: m["state"].as_str().unwrap_or_default().to_owned(),
                                term: m["current_term"].as_u64().unwrap_or(0),
                                leader: m["current_leader"].as_u64(),
                                applied: m["last_applied"].as_u64(),
                                hash: m["state_hash"].as_str().map(str::to_owned),
                            };
                            samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // Traffic.
    let mut clients = Vec::new();
    for idx in 0..cfg.clients {
        let mut c = Client {
            idx,
            urls: urls.clone(),
            api: ens.api.with_timeout(Duration::from_secs(5)),
            rec: rec.clone(),
            t0,
            rng: StdRng::seed_from_u64(cfg.seed.wrapping_mul(31).wrapping_add(idx as u64 + 1)),
            groups: Vec::new(),
            next_group: 0,
        };
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                c.one().await;
                let pause = c.rng.gen_range(10..60);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            c.groups
        }));
    }

    // Fault schedule.
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut partitions_skipped = 0usize;
    let end = t0 + cfg.duration;
    tokio::time::sleep(Duration::from_secs(3)).await;
    while Instant::now() + Duration::from_secs(8) < end && faults.len() < cfg.max_faults {
        let fault = match rng.gen_range(0..9) {
            0 => Fault::KillLeader,
            1 => Fault::KillFollower,
            2 => Fault::PauseLeader,
            3 => Fault::KillWorker,
            4 => Fault::PartitionLeader,
            5 => Fault::PartitionFollower,
            6 => Fault::PartitionWorker,
            7 => Fault::IsolateLeader,
            _ => Fault::TermLeader,
        };
        let down_ms = rng.gen_range(1000..4000);
        let gap_ms = rng.gen_range(2000..6000);
        match (&net, fault.is_partition()) {
            (None, true) => {
                eprintln!(
                    "chaos: t={:.1}s {fault:?} SKIPPED ({partitions})",
                    t0.elapsed().as_secs_f64()
                );
                partitions_skipped += 1;
            }
            // Cut for longer than the clients' 5 s timeout, so that writes sent to the
            // cut-off node complete (or time out) inside the window and are checked.
            // Longer than the workers' lease (3.6 s), so the victim fences and its pipelines
            // move while it is cut off.
            (Some(net), true) if fault == Fault::PartitionWorker => {
                partition_worker(&ens, net, down_ms + 5000, t0, &mut faults).await;
            }
            (Some(net), true) => {
                partition(&ens, net, fault, down_ms + 5000, t0, &mut faults).await;
            }
            (_, false) => inject(&mut ens, fault, down_ms, t0, &mut faults).await,
        }
        tokio::time::sleep(Duration::from_millis(gap_ms)).await;
    }
    let left = end.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;
    stop.store(true, Ordering::SeqCst);
    let mut group_names: BTreeSet<String> = BTreeSet::new();
    for c in clients {
        if let Ok(groups) = c.await {
            group_names.extend(groups.into_iter().map(|(n, _)| n));
        }
    }
    let _ = sampler.await;

    // Heal: every process up, a leader known, every node ready.
    for i in 0..ens.coords.len() {
        if !ens.coords[i].proc.is_up() {
            ens.restart_coord(i);
        }
    }
    ens.wait_leader(Duration::from_secs(60)).await;
    for i in 0..ens.coords.len() {
        ens.wait_ready(i, Duration::from_secs(60)).await;
    }
    let mut probe_violations = Vec::new();
    let probe_report = probe.finish(&ens, &mut probe_violations).await;

    // Final consistent reads of every key from every node, after all traffic ended.
    let mut fin = Client {
        idx: usize::MAX,
        urls: urls.clone(),
        api: ens.api.with_timeout(Duration::from_secs(10)),
        rec: rec.clone(),
        t0,
        rng: StdRng::seed_from_u64(0),
        groups: Vec::new(),
        next_group: 0,
    };
    let mut final_unanswered = 0usize;
    for (node, url) in urls.iter().enumerate() {
        let finals = (0..CONNECTORS)
            .map(|c| Req::read_connector(&format!("c{c}")))
            .chain((0..FAKE_WORKERS).map(|w| Req::read_worker(&format!("chaos-w{w}"))));
        for req in finals {
            let got = fin.call(node, req).await;
            final_unanswered += usize::from(!matches!(got.0, Some(200 | 404)));
        }
        // Every page (traffic has stopped, so offsets are stable).
        let invoke = fin.now();
        let mut present: BTreeSet<String> = BTreeSet::new();
        let mut offset = 0usize;
        let complete = loop {
            let page = fin
                .api
                .get(&format!(
                    "{url}/api/v1/cluster/pipeline-groups?consistent=true&limit=1000&offset={offset}"
                ))
                .await;
            let r = match page {
                Ok(r) if r.ok() => r,
                _ => break None,
            };
            let items = r.body["pipeline_groups"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            present.extend(
                items
                    .iter()
                    .filter_map(|g| g["name"].as_str().map(str::to_owned)),
            );
            offset += items.len();
            if r.body["pagination"]["has_more"] != true || items.is_empty() {
                break Some(fin.now());
            }
        };
        let Some(complete) = complete else {
            final_unanswered += 1;
            continue;
        };
        let mut ops = rec.ops.lock().unwrap_or_else(|e| e.into_inner());
        for name in &group_names {
            let id = rec.seq.fetch_add(1, Ordering::SeqCst);
            ops.push(Record {
                id,
                client: usize::MAX,
                node,
                key: format!("group:{name}"),
                request: "GET /pipeline-groups (final, all pages)".into(),
                invoke_ns: invoke,
                complete_ns: complete,
                status: Some(200),
                class: Class::Ok,
                detail: String::new(),
                input: Input::Read,
                output: Some(Output::Value(
                    present.contains(name).then(|| "1".to_owned()),
                )),
            });
        }
    }

    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let final_hashes = converge_hashes(&ens).await;
    let ops = std::mem::take(&mut *rec.ops.lock().unwrap_or_else(|e| e.into_inner()));
    let mut report = build_report(
        &cfg,
        &partitions,
        partitions_skipped,
        &ops,
        &faults,
        &samples,
        final_hashes,
        final_unanswered,
    );
    report["probe"] = probe_report;
    if let Some(v) = report["violations"].as_array_mut() {
        v.extend(probe_violations.into_iter().map(Value::String));
    }
    drop(ens);
    report
}

async fn inject(
    ens: &mut Ensemble,
    fault: Fault,
    down_ms: u64,
    t0: Instant,
    faults: &mut Vec<FaultRecord>,
) {
    let at_secs = t0.elapsed().as_secs_f64();
    let down = Duration::from_millis(down_ms);
    if matches!(fault, Fault::KillWorker) && !ens.workers.is_empty() {
        let w = (down_ms as usize) % ens.workers.len();
        ens.workers[w].proc.kill();
        let name = ens.workers[w].id.clone();
        eprintln!("chaos: t={at_secs:.1}s kill -9 worker {name}");
        tokio::time::sleep(down).await;
        ens.workers[w].proc.restart();
        faults.push(FaultRecord::new("kill_worker", name, at_secs, None));
        return;
    }
    let leader = ens.leader().await;
    match (fault, leader) {
        (_, None) => {
            eprintln!("chaos: t={at_secs:.1}s no agreed leader, fault skipped");
        }
        (Fault::KillFollower, Some(l)) => {
            let others = ens.others(l);
            let f = others[(down_ms as usize) % others.len()];
            eprintln!("chaos: t={at_secs:.1}s kill -9 follower coord-{}", f + 1);
            ens.coords[f].proc.kill();
            tokio::time::sleep(down).await;
            ens.restart_coord(f);
            faults.push(FaultRecord::new(
                "kill_follower",
                format!("coord-{}", f + 1),
                at_secs,
                None,
            ));
        }
        (Fault::KillLeader | Fault::PauseLeader | Fault::TermLeader, Some(l)) => {
            let pause = matches!(fault, Fault::PauseLeader);
            let how = match fault {
                Fault::PauseLeader => "SIGSTOP",
                Fault::TermLeader => "SIGTERM",
                _ => "kill -9",
            };
            eprintln!("chaos: t={at_secs:.1}s {how} leader coord-{}", l + 1);
            let started = Instant::now();
            match fault {
                Fault::PauseLeader => ens.coords[l].proc.stop(),
                Fault::TermLeader => ens.coords[l].proc.term(),
                _ => ens.coords[l].proc.kill(),
            }
            let others = ens.others(l);
            let others = &others;
            let me = &*ens;
            let new = crate::harness::try_wait_until(
                Duration::from_secs(20),
                Duration::from_millis(25),
                || async move {
                    let n = me.leader_among(others).await?;
                    me.is_ready(n).await.then_some(n)
                },
            )
            .await;
            let no_leader_ms = new.map(|_| started.elapsed().as_millis() as u64);
            eprintln!("chaos:   new leader after {no_leader_ms:?} ms");
            tokio::time::sleep(down).await;
            if pause {
                ens.coords[l].proc.cont();
            } else {
                ens.restart_coord(l);
            }
            faults.push(FaultRecord::new(
                match fault {
                    Fault::PauseLeader => "pause_leader",
                    Fault::TermLeader => "term_leader",
                    _ => "kill_leader",
                },
                format!("coord-{}", l + 1),
                at_secs,
                no_leader_ms,
            ));
        }
        (_, Some(_)) => {}
    }
}

/// Waits until coordinators `among` agree on a ready leader; the elapsed milliseconds.
async fn leader_elected(ens: &Ensemble, among: &[usize], started: Instant) -> Option<u64> {
    let new = crate::harness::try_wait_until(
        Duration::from_secs(20),
        Duration::from_millis(25),
        || async move {
            let n = ens.leader_among(among).await?;
            ens.is_ready(n).await.then_some(n)
        },
    )
    .await;
    new.map(|_| started.elapsed().as_millis() as u64)
}

/// A cut or heal of one node of a [`netns::Net`].
type NetOp = fn(&netns::Net, usize) -> Result<(), String>;

/// Cuts a coordinator off for `down_ms` (see [`Fault`]), heals, and measures the time to
/// a new leader (leader victims) and until the victim has caught up after the heal.
async fn partition(
    ens: &Ensemble,
    net: &netns::Net,
    fault: Fault,
    down_ms: u64,
    t0: Instant,
    faults: &mut Vec<FaultRecord>,
) {
    let at_secs = t0.elapsed().as_secs_f64();
    let Some(leader) = ens.leader().await else {
        eprintln!("chaos: t={at_secs:.1}s no agreed leader, {fault:?} skipped");
        return;
    };
    let victim = if fault == Fault::PartitionFollower {
        let others = ens.others(leader);
        others[(down_ms as usize) % others.len()]
    } else {
        leader
    };
    let (kind, cut, heal): (&str, NetOp, NetOp) = match fault {
        Fault::IsolateLeader => ("isolate_leader", netns::Net::isolate, netns::Net::rejoin),
        Fault::PartitionLeader => (
            "partition_leader",
            netns::Net::split_off,
            netns::Net::unsplit,
        ),
        _ => (
            "partition_follower",
            netns::Net::split_off,
            netns::Net::unsplit,
        ),
    };
    eprintln!("chaos: t={at_secs:.1}s {kind} coord-{}", victim + 1);
    if let Err(e) = cut(net, victim) {
        eprintln!("chaos:   cut failed ({e}), healing");
        let _ = heal(net, victim);
        return;
    }
    let started = Instant::now();
    let cut_ns = t0.elapsed().as_nanos() as u64;
    let others = ens.others(victim);
    let no_leader_ms = if victim == leader {
        let ms = leader_elected(ens, &others, started).await;
        eprintln!("chaos:   new leader after {ms:?} ms");
        ms
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(down_ms)).await;
    let heal_ns = t0.elapsed().as_nanos() as u64;
    let cut_secs = started.elapsed().as_secs_f64();
    if let Err(e) = heal(net, victim) {
        eprintln!("chaos:   heal failed: {e}");
    }
    let rejoin_ms = rejoined(ens, victim).await;
    eprintln!("chaos:   healed after {cut_secs:.1}s, victim caught up after {rejoin_ms:?} ms");
    let mut rec = FaultRecord::new(kind, format!("coord-{}", victim + 1), at_secs, no_leader_ms);
    rec.cut_secs = Some(cut_secs);
    rec.rejoin_ms = rejoin_ms;
    rec.window = Some((victim, cut_ns, heal_ns));
    faults.push(rec);
}

/// Cuts a worker from every coordinator for `down_ms` (it keeps its MQTT broker), then heals.
async fn partition_worker(
    ens: &Ensemble,
    net: &netns::Net,
    down_ms: u64,
    t0: Instant,
    faults: &mut Vec<FaultRecord>,
) {
    let at_secs = t0.elapsed().as_secs_f64();
    let n = net
        .nodes
        .len()
        .saturating_sub(net.coords)
        .min(ens.workers.len());
    if n == 0 {
        return;
    }
    let w = (down_ms as usize) % n;
    let name = ens.workers[w].id.clone();
    eprintln!("chaos: t={at_secs:.1}s partition_worker {name}");
    if let Err(e) = net.cut_worker(w) {
        eprintln!("chaos:   cut failed ({e}), healing");
        let _ = net.uncut_worker(w);
        return;
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(down_ms)).await;
    let cut_secs = started.elapsed().as_secs_f64();
    if let Err(e) = net.uncut_worker(w) {
        eprintln!("chaos:   heal failed: {e}");
    }
    eprintln!("chaos:   healed after {cut_secs:.1}s");
    let mut rec = FaultRecord::new("partition_worker", name, at_secs, None);
    rec.cut_secs = Some(cut_secs);
    faults.push(rec);
}

/// Milliseconds until coordinator `victim` follows the leader agreed by everyone and has
/// applied at least what the leader had applied when the wait began (30 s at most).
async fn rejoined(ens: &Ensemble, victim: usize) -> Option<u64> {
    let started = Instant::now();
    // u64::MAX: the leader's applied index is not known yet.
    let target = &AtomicU64::new(u64::MAX);
    crate::harness::try_wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async move {
            let leader = ens.leader().await?;
            if target.load(Ordering::SeqCst) == u64::MAX {
                let applied = ens.metrics(leader).await?["last_applied"].as_u64()?;
                target.store(applied, Ordering::SeqCst);
            }
            let applied = ens.metrics(victim).await?["last_applied"].as_u64()?;
            (applied >= target.load(Ordering::SeqCst)).then_some(())
        },
    )
    .await
    .map(|()| started.elapsed().as_millis() as u64)
}

/// Polls every node's metrics until all report the same applied index, and returns
/// `(applied, hashes)` of that moment (or the last view if they never line up).
async fn converge_hashes(ens: &Ensemble) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let mut views = Vec::new();
        for i in 0..ens.coords.len() {
            views.push(ens.metrics(i).await);
        }
        let applied: Vec<Option<u64>> = views
            .iter()
            .map(|m| m.as_ref().and_then(|m| m["last_applied"].as_u64()))
            .collect();
        let hashes: Vec<Value> = views
            .iter()
            .map(|m| {
                m.as_ref()
                    .map(|m| m["state_hash"].clone())
                    .unwrap_or(Value::Null)
            })
            .collect();
        last = json!({"applied": applied, "hashes": hashes, "aligned": false});
        if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
            last["aligned"] = json!(true);
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Checks everything and builds the JSON report.
#[allow(clippy::too_many_arguments)]
fn build_report(
    cfg: &Config,
    partitions: &str,
    partitions_skipped: usize,
    ops: &[Record],
    faults: &[FaultRecord],
    samples: &[Sample],
    final_hashes: Value,
    final_unanswered: usize,
) -> Value {
    let mut violations: Vec<String> = Vec::new();
    let count = |c: Class| {
        ops.iter()
            .filter(|r| r.class == c && r.input != Input::Read)
            .count()
    };
    let reads = ops.iter().filter(|r| r.input == Input::Read).count();

    // Linearizability per key.
    let mut history: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    for r in ops {
        let Some(output) = r.output.clone() else {
            continue;
        };
        let ret = (output != Output::Unknown).then_some(r.complete_ns);
        history.entry(r.key.clone()).or_default().push(Op {
            id: r.id,
            invoke: r.invoke_ns,
            ret,
            input: r.input.clone(),
            output,
        });
    }
    let started = Instant::now();
    let verdicts = checker::check_all(&history, cfg.budget);
    eprintln!(
        "chaos: checked {} keys, {} ops in {:?}",
        history.len(),
        history.values().map(Vec::len).sum::<usize>(),
        started.elapsed()
    );
    let mut inconclusive = Vec::new();
    for (key, v) in &verdicts {
        match v {
            Verdict::Violation => {
                violations.push(format!("key {key}: history is not linearizable"));
                eprintln!("chaos: VIOLATION on {key}; history:");
                for r in ops.iter().filter(|r| &r.key == key) {
                    eprintln!(
                        "  #{} c{} n{} [{:.3}s..{:.3}s] {} {:?} -> {:?} {:?} {}",
                        r.id,
                        r.client,
                        r.node,
                        r.invoke_ns as f64 / 1e9,
                        r.complete_ns as f64 / 1e9,
                        r.request,
                        r.input,
                        r.status,
                        r.output,
                        r.detail
                    );
                }
            }
            Verdict::Inconclusive => inconclusive.push(key.clone()),
            Verdict::Linearizable => {}
        }
    }

    // State hashes at equal applied index; one leader per term.
    let mut by_index: BTreeMap<u64, BTreeMap<String, BTreeSet<usize>>> = BTreeMap::new();
    let mut leaders: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    let mut leader_changes = 0usize;
    let mut max_term = 0u64;
    let mut seen_leader = false;
    for s in samples {
        if let (Some(a), Some(h)) = (s.applied, &s.hash) {
            by_index
                .entry(a)
                .or_default()
                .entry(h.clone())
                .or_default()
                .insert(s.node);
        }
        if s.state == "Leader" {
            leaders.entry(s.term).or_default().insert(s.node);
            if s.term > max_term {
                if seen_leader {
                    leader_changes += 1;
                }
                seen_leader = true;
                max_term = s.term;
            }
        }
        let _ = (s.at_ms, s.leader);
    }
    let hash_comparisons = by_index
        .values()
        .filter(|h| h.values().flatten().collect::<BTreeSet<_>>().len() > 1)
        .count();
    for (idx, hashes) in &by_index {
        if hashes.len() > 1 {
            violations.push(format!(
                "state hashes differ at applied index {idx}: {hashes:?}"
            ));
        }
    }
    for (term, nodes) in &leaders {
        if nodes.len() > 1 {
            violations.push(format!("two leaders in term {term}: {nodes:?}"));
        }
    }
    if final_hashes["aligned"] == true {
        let hs: BTreeSet<String> = final_hashes["hashes"]
            .as_array()
            .map(|a| a.iter().map(|h| h.to_string()).collect())
            .unwrap_or_default();
        if hs.len() > 1 {
            violations.push(format!("final state hashes differ: {final_hashes}"));
        }
    } else {
        violations.push(format!(
            "nodes never reached one applied index after healing: {final_hashes}"
        ));
    }
    let minority = minority_checks(ops, faults, &mut violations);
    if final_unanswered > 0 {
        violations.push(format!(
            "{final_unanswered} final consistent reads got no answer after healing"
        ));
    }

    // Status histogram per route kind, e.g. `POST /workers/register 201`.
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for r in ops {
        let route: String = r.request.split('/').take(2).collect::<Vec<_>>().join("/");
        let status = r.status.map_or("none".to_owned(), |s| s.to_string());
        *statuses.entry(format!("{route} {status}")).or_default() += 1;
    }
    let sample_ops: Vec<&Record> = ops
        .iter()
        .filter(|r| r.class == Class::Unknown)
        .take(20)
        .collect();
    let report = json!({
        "seed": cfg.seed,
        "replay": format!("CHAOS_SEED={} CHAOS_DURATION_SECS={} CHAOS_FAULTS={}", cfg.seed, cfg.duration.as_secs(), cfg.max_faults),
        "duration_secs": cfg.duration.as_secs(),
        "clients": cfg.clients,
        "partitions": partitions,
        "partition_faults_skipped": partitions_skipped,
        "minority_checks": minority,
        "faults": faults,
        "fault_count": faults.len(),
        "ops": {
            "writes_acked": count(Class::Ok),
            "writes_failed": count(Class::Failed),
            "writes_unknown": count(Class::Unknown),
            "reads": reads,
            "keys_checked": verdicts.len(),
        },
        "statuses": statuses,
        "leader_changes": leader_changes,
        "terms_seen": leaders.len(),
        "applied_indexes_compared_across_nodes": hash_comparisons,
        "final_hashes": final_hashes,
        "inconclusive_keys": inconclusive,
        "violations": violations,
        "unknown_examples": sample_ops,
    });
    let path = report_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&report) {
        Ok(text) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("chaos: cannot write {}: {e}", path.display());
            }
        }
        Err(e) => eprintln!("chaos: cannot serialize the report: {e}"),
    }
    eprintln!("chaos: report written to {}", path.display());
    report
}

/// "A minority never acknowledges a write": during each partition window, a write sent to
/// the cut-off coordinator after the cut and answered before the heal must not be 2xx (it
/// can only be committed by a majority it cannot reach). Returns per-window counts:
/// writes sent to the node during the window, and the outcome of those answered in it.
fn minority_checks(ops: &[Record], faults: &[FaultRecord], violations: &mut Vec<String>) -> Value {
    let mut out = Vec::new();
    for f in faults {
        let Some((node, cut, heal)) = f.window else {
            continue;
        };
        let sent: Vec<&Record> = ops
            .iter()
            .filter(|r| {
                r.node == node && r.input != Input::Read && r.invoke_ns >= cut && r.invoke_ns < heal
            })
            .collect();
        // The first few, as `[invoke, complete]` seconds after the cut and the status.
        let examples: Vec<String> = sent
            .iter()
            .take(8)
            .map(|r| {
                format!(
                    "{} [{:.2}s..{:.2}s] {:?} {}",
                    r.request,
                    (r.invoke_ns - cut) as f64 / 1e9,
                    r.complete_ns.saturating_sub(cut) as f64 / 1e9,
                    r.status,
                    r.detail.chars().take(60).collect::<String>()
                )
            })
            .collect();
        let inside: Vec<&Record> = ops
            .iter()
            .filter(|r| r.node == node && r.invoke_ns >= cut && r.complete_ns <= heal)
            .collect();
        let writes = |c: Class| {
            inside
                .iter()
                .filter(|r| r.input != Input::Read && r.class == c)
                .count()
        };
        let acked = writes(Class::Ok);
        for r in inside
            .iter()
            .filter(|r| r.input != Input::Read && r.class == Class::Ok)
        {
            violations.push(format!(
                "{} {} acknowledged write #{} ({} {}) while cut off from the majority",
                f.kind, f.target, r.id, r.request, r.key
            ));
        }
        out.push(json!({
            "kind": f.kind,
            "target": f.target,
            "at_secs": f.at_secs,
            "writes_sent": sent.len(),
            "window_secs": (heal - cut) as f64 / 1e9,
            "sent_examples": examples,
            "writes_acked": acked,
            "writes_failed": writes(Class::Failed),
            "writes_unknown": writes(Class::Unknown),
            "reads_answered": inside.iter().filter(|r| r.input == Input::Read && r.class == Class::Ok).count(),
        }));
    }
    Value::Array(out)
}

/// `CHAOS_REPORT`, else `<workspace>/target/chaos-report.json`.
pub fn report_path() -> PathBuf {
    std::env::var_os("CHAOS_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/chaos-report.json")
        })
}
