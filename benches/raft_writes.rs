//! Raft write benchmark: committed writes per second and latency through the leader and
//! through a follower (proxied), with 1, 16 and 64 concurrent clients, on a three-coordinator
//! ensemble on loopback. Every write is durable (acknowledged once committed on a quorum).
//!
//! Settings (environment):
//! - `RAFT_WRITES_SECS` (default 5): duration of each cell.
//! - `RAFT_WRITES_KIND`: `connector` (default: `POST /connectors` with a distinct name, the
//!   issue's measure) or `register` (a worker registration with a distinct id).
//! - `RAFT_WRITES_CLIENT`: `lean` (default: one raw keep-alive HTTP/1.1 connection per client,
//!   [`lean_http`]), `reqwest` (the harness's reqwest client, the figure of sessions 2–8) or
//!   `wrk` (the `wrk` load generator with `benches/wrk/connector_creates.lua`, one thread, as
//!   issue 24 measured; connector creates only; latency percentiles are wrk's;
//!   `RAFT_WRITES_WRK_VERBOSE=1` prints wrk's whole report).
//! - `RAFT_WRITES_CLIENTS` (default `1,16,64`) and `RAFT_WRITES_VIA` (default
//!   `leader,follower`): the cells.
//! - `RAFT_HEARTBEAT_MS`, `RAFT_ELECTION_MIN_MS`, `RAFT_ELECTION_MAX_MS`: Raft timings.
//! - `VARPULIS_BIN`: the coordinator binary (A/B runs against another build).
//!
//! Every cell also prints the CPU the processes used while it ran, in % of one core: the
//! bench's own client (`client`), the node written to (`via`), and the two others; and the CPU
//! per write (µs) of all four together, since the clients and the three coordinators share the
//! same cores, then of the leader alone and of the node written to alone. Run: `cargo bench --bench raft_writes`.

#[path = "../tests/cluster/harness.rs"]
mod harness;
#[path = "common/lean_http.rs"]
mod lean_http;
#[path = "common/proc_stats.rs"]
#[allow(dead_code)]
mod proc_stats;

use harness::{fake_worker, Api, Ensemble, Opts, ADMIN_KEY};
use lean_http::LeanClient;
use proc_stats::{cpu_ticks, ticks_per_second};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// What one write is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connector,
    Register,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Connector => "/connectors",
            Kind::Register => "/workers/register",
        }
    }

    fn body(self, id: &str) -> Vec<u8> {
        let value = match self {
            Kind::Connector => serde_json::json!({
                "name": id, "connector_type": "mqtt",
                "params": {"host": "localhost", "port": 1883}
            }),
            Kind::Register => fake_worker(id),
        };
        serde_json::to_vec(&value).expect("serialize")
    }
}

/// User + system CPU time of this process plus its children that were waited for (a `wrk`
/// run; the coordinators are reaped only at the end).
fn own_cpu() -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let get = |who| {
        // SAFETY: getrusage fills the struct we pass; both `who` values are valid.
        let usage = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut u);
            u
        };
        tv(usage.ru_utime) + tv(usage.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// A `wrk` duration in its own units (`4.90ms`, `120.00us`, `1.20s`).
fn wrk_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| Duration::from_secs_f64(v * scale))
}

/// Runs `wrk` (one thread, `clients` connections) against `url`; returns (requests/s, p50,
/// p99, errors: non-2xx answers plus socket errors).
fn run_wrk(url: &str, tag: &str, clients: usize, secs: f64) -> (f64, Duration, Duration, usize) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/wrk/connector_creates.lua"
    );
    let out = std::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{clients}"),
            &format!("-d{}s", secs.ceil() as u64),
        ])
        .args(["--latency", "--timeout", "10s", "-s", script, url])
        .env("RAFT_WRK_PREFIX", tag)
        .env("RAFT_WRK_KEY", ADMIN_KEY)
        .output()
        .expect("run wrk (apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rate = 0.0;
    let (mut p50, mut p99) = (Duration::ZERO, Duration::ZERO);
    let mut errors = 0usize;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => rate = v.parse().unwrap_or(0.0),
            ["50%", v] => p50 = wrk_duration(v).unwrap_or_default(),
            ["99%", v] => p99 = wrk_duration(v).unwrap_or_default(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<usize>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<usize>().ok())
                    .sum::<usize>()
            }
            _ => {}
        }
    }
    if rate == 0.0 || std::env::var_os("RAFT_WRITES_WRK_VERBOSE").is_some() {
        eprintln!("  wrk said: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    (rate, p50, p99, errors)
}

/// Whether this cell's first error was printed (one line per cell, not per client).
static REPORTED: AtomicBool = AtomicBool::new(false);

/// One client's loop: writes until `deadline`; returns (latencies, errors).
async fn client_loop(
    client: Client,
    tag: String,
    kind: Kind,
    deadline: Instant,
) -> (Vec<Duration>, usize) {
    let mut lat = Vec::new();
    let mut errors = 0usize;
    let mut n = 0u64;
    let report = |errors: &mut usize, what: String| {
        if !REPORTED.swap(true, Ordering::Relaxed) {
            eprintln!("  first error ({tag}): {what}");
        }
        *errors += 1;
    };
    match client {
        Client::Lean(mut lean) => {
            while Instant::now() < deadline {
                let body = kind.body(&format!("{tag}_{n}"));
                n += 1;
                let t = Instant::now();
                match lean.post(&body).await {
                    Ok(r) if (200..300).contains(&r.status) => lat.push(t.elapsed()),
                    Ok(r) => report(
                        &mut errors,
                        format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    ),
                    Err(e) => report(&mut errors, e.to_string()),
                }
            }
        }
        Client::Reqwest(api, url) => {
            while Instant::now() < deadline {
                let body = kind.body(&format!("{tag}_{n}"));
                n += 1;
                let t = Instant::now();
                match api.post_raw(&url, body, "application/json").await {
                    Ok(r) if r.ok() => lat.push(t.elapsed()),
                    Ok(r) => report(&mut errors, format!("{} {}", r.status, r.text)),
                    Err(e) => report(&mut errors, e.to_string()),
                }
            }
        }
    }
    (lat, errors)
}

enum Client {
    Lean(LeanClient),
    Reqwest(Api, String),
}

/// What one cell measured.
struct Cell {
    /// wrk's own figures (requests/s, p50, p99) when wrk was the client.
    wrk: Option<(f64, Duration, Duration)>,
    lat: Vec<Duration>,
    errors: usize,
    wall: Duration,
    client_cpu: Duration,
    /// CPU seconds of each coordinator during the cell.
    coord_cpu: Vec<f64>,
}

async fn measure(
    ens: &Ensemble,
    via: usize,
    client: &str,
    kind: Kind,
    tag: &str,
    clients: usize,
    secs: f64,
) -> Cell {
    let url = ens.cluster_url(via, kind.path());
    let addr = format!("127.0.0.1:{}", ens.coords[via].port);
    let path = format!("/api/v1/cluster{}", kind.path());
    let api = ens.api.with_timeout(Duration::from_secs(10));
    let pids: Vec<u32> = ens
        .coords
        .iter()
        .map(|c| c.proc.pid().unwrap_or(0))
        .collect();
    let ticks0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    REPORTED.store(false, Ordering::Relaxed);
    let cpu0 = own_cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    let mut wrk = None;
    let mut wrk_errors = 0;
    if client == "wrk" {
        let (url, tag) = (url.clone(), tag.to_owned());
        let (rate, p50, p99, errors) =
            tokio::task::spawn_blocking(move || run_wrk(&url, &tag, clients, secs))
                .await
                .expect("wrk task");
        wrk = Some((rate, p50, p99));
        wrk_errors = errors;
    }
    for c in 0..clients {
        if wrk.is_some() {
            break;
        }
        let one = if client != "reqwest" {
            Client::Lean(LeanClient::new(&addr, &path, &[("x-api-key", ADMIN_KEY)]))
        } else {
            Client::Reqwest(api.clone(), url.clone())
        };
        tasks.push(tokio::spawn(client_loop(
            one,
            format!("{tag}_c{c}"),
            kind,
            deadline,
        )));
    }
    let mut lat = Vec::new();
    let mut errors = wrk_errors;
    for t in tasks {
        let (l, e) = t.await.expect("client task");
        lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed();
    let client_cpu = own_cpu().saturating_sub(cpu0);
    let tps = ticks_per_second();
    let coord_cpu = pids
        .iter()
        .zip(&ticks0)
        .map(|(p, t0)| cpu_ticks(*p).saturating_sub(*t0) as f64 / tps)
        .collect();
    lat.sort();
    Cell {
        wrk,
        lat,
        errors,
        wall,
        client_cpu,
        coord_cpu,
    }
}

fn main() {
    let secs: f64 = std::env::var("RAFT_WRITES_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let kind = match env_str("RAFT_WRITES_KIND", "connector").as_str() {
        "register" => Kind::Register,
        _ => Kind::Connector,
    };
    let client = env_str("RAFT_WRITES_CLIENT", "lean");
    if client == "wrk" && kind != Kind::Connector {
        eprintln!("RAFT_WRITES_CLIENT=wrk sends connector creates only");
        return;
    }
    let cells: Vec<usize> = env_str("RAFT_WRITES_CLIENTS", "1,16,64")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let vias: Vec<String> = env_str("RAFT_WRITES_VIA", "leader,follower")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = Opts {
            heartbeat_timeout: 3600.0,
            raft_heartbeat_ms: env_u64("RAFT_HEARTBEAT_MS"),
            raft_election_min_ms: env_u64("RAFT_ELECTION_MIN_MS"),
            raft_election_max_ms: env_u64("RAFT_ELECTION_MAX_MS"),
            start_timeout: Duration::from_secs(60),
            // Every write adds a new worker or connector: lift the default caps (10,000
            // workers, 1,000 connectors; docs/security.md) so the bench measures the log,
            // not the limit.
            coord_extra_args: vec![
                "--limit".into(),
                "max_workers=100000000".into(),
                "--limit".into(),
                "max_connectors=100000000".into(),
            ],
            ..Opts::default()
        };
        let ens = Ensemble::start(3, 0, opts).await;
        let leader = ens.wait_leader(Duration::from_secs(30)).await;
        let follower = ens.others(leader)[0];
        println!(
            "raft_writes: {} ({}), {} client, {secs} s per cell, 3 coordinators on loopback",
            match kind {
                Kind::Connector => "connector creates",
                Kind::Register => "worker registrations",
            },
            kind.path(),
            match client.as_str() {
                "wrk" => "wrk (1 thread)",
                "reqwest" => "reqwest",
                _ => "lean keep-alive",
            },
        );
        let pid = |i: usize| ens.coords[i].proc.pid().unwrap_or(0);
        println!(
            "leader: coordinator {} (pid {}), follower written to: coordinator {} (pid {})",
            ens.coords[leader].id,
            pid(leader),
            ens.coords[follower].id,
            pid(follower)
        );
        println!(
            "{:<9} {:>7} {:>9} {:>9} {:>9} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>8} {:>6} {:>6}",
            "via",
            "clients",
            "writes/s",
            "p50",
            "p99",
            "errors",
            "client",
            "via",
            "peer",
            "peer",
            "µs/write",
            "leader",
            "via"
        );
        for via_name in &vias {
            let via = match via_name.as_str() {
                "follower" => follower,
                _ => leader,
            };
            for &clients in &cells {
                let tag = format!("{via_name}_{clients}_{}", std::process::id());
                let cell = measure(&ens, via, &client, kind, &tag, clients, secs).await;
                let wall = cell.wall.as_secs_f64();
                let (rate, p50, p99) = match cell.wrk {
                    Some(figures) => figures,
                    None => (
                        cell.lat.len() as f64 / wall,
                        percentile(&cell.lat, 0.50),
                        percentile(&cell.lat, 0.99),
                    ),
                };
                let writes = rate * wall;
                let pct = |cpu: f64| 100.0 * cpu / wall;
                let others: Vec<f64> = (0..ens.coords.len())
                    .filter(|&i| i != via)
                    .map(|i| cell.coord_cpu[i])
                    .collect();
                let total_cpu = cell.client_cpu.as_secs_f64() + cell.coord_cpu.iter().sum::<f64>();
                let per_write = |cpu: f64| if writes < 1.0 { 0.0 } else { 1e6 * cpu / writes };
                println!(
                    "{:<9} {:>7} {:>9.0} {:>9.2?} {:>9.2?} {:>6} | {:>5.0}% {:>5.0}% {:>5.0}% {:>5.0}% {:>8.0} {:>6.0} {:>6.0}",
                    via_name,
                    clients,
                    rate,
                    p50,
                    p99,
                    cell.errors,
                    pct(cell.client_cpu.as_secs_f64()),
                    pct(cell.coord_cpu[via]),
                    pct(others.first().copied().unwrap_or(0.0)),
                    pct(others.get(1).copied().unwrap_or(0.0)),
                    per_write(total_cpu),
                    per_write(cell.coord_cpu[leader]),
                    per_write(cell.coord_cpu[via]),
                );
            }
        }
        println!("(CPU columns: % of one core during the cell; µs/write: CPU of the client and the three coordinators per write, then of the leader alone and of the node written to alone; target: 64 clients >= 20,000 writes/s via the leader, >= 15,000 via a follower)");
    });
}
