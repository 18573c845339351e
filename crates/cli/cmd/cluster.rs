//! `varpulis cluster`: a client for a running coordinator ensemble.
//!
//! Every request goes to the first URL of `--coordinator` (env `VARPULIS_COORDINATOR`); on a
//! connection error, `421 Misdirected Request` or `503 Service Unavailable` the next URL is tried
//! (a 421 naming a `leader_url` moves that URL to the front). Output is a human table by default
//! and the server's JSON with `--json`. HTTP errors are reported with their status and the
//! server's `error` message. Exit codes: 0 success, 1 the server refused (4xx/5xx), 2 usage or
//! transport failure.
//!
//! There is no `leader transfer`: the coordinator offers no transfer route, so a leader is moved
//! by stopping it (a new one is elected within an election timeout), see docs/operations.md.

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use varpulis_api::cluster::{
    GroupInjectBatchResponse, GroupInjectRequest, GroupInjectResponse, MigrationList,
    PipelineGroupInfo, PipelineGroupList, PipelineGroupSpec, Topology, WorkerList,
};
use varpulis_api::raft::{AddLearnerRequest, ChangeMembershipRequest, RaftMetricsView};
use varpulis_api::{ErrorBody, API_KEY_HEADER};

/// How long `status` waits for one coordinator's `/raft/metrics`.
const STATUS_NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// Flags of `varpulis cluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Coordinator URL(s), comma separated; the next one is tried on connection errors, 421 and 503.
    #[arg(
        long,
        env = "VARPULIS_COORDINATOR",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:9100",
        global = true
    )]
    coordinator: Vec<String>,
    /// API key of the coordinators (sent as `x-api-key`).
    #[arg(long, env = "VARPULIS_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30.0, global = true, value_name = "SECS")]
    timeout: f64,
    #[command(subcommand)]
    command: Cmd,
}

/// Subcommands of `varpulis cluster`.
#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Raft state of every coordinator (from /raft/metrics) and workers by state.
    Status,
    /// Registered workers.
    Workers,
    /// Pipeline groups: list, deploy, remove.
    #[command(subcommand)]
    Groups(GroupsCmd),
    /// Send events to a pipeline group (routed by its routes).
    Inject(InjectArgs),
    /// Which pipeline runs on which worker, with routes.
    Topology,
    /// Pipeline migrations (after worker failures or drains).
    Migrations,
    /// Raft membership: add or remove a coordinator.
    #[command(subcommand)]
    Members(MembersCmd),
    /// Follow the cluster event stream (workers, groups, migrations, leader changes).
    Events {
        /// Resume after this event id (e.g. `42` or `42.1`); default: from now on.
        #[arg(long)]
        since: Option<String>,
    },
}

/// `varpulis cluster groups ...`.
#[derive(Debug, clap::Subcommand)]
enum GroupsCmd {
    /// List pipeline groups.
    List,
    /// Show one pipeline group.
    Get {
        /// Group id.
        id: String,
    },
    /// Deploy a pipeline group from a JSON spec file (`-` reads stdin).
    Deploy {
        /// The group spec: `{name, pipelines: [{name, source}], routes: [...]}`.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Tear a pipeline group down.
    Rm {
        /// Group id.
        id: String,
    },
}

/// `varpulis cluster inject ...`.
#[derive(Debug, clap::Args)]
struct InjectArgs {
    /// Group id.
    group_id: String,
    /// Event type of a single event.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    event_type: Option<String>,
    /// Fields of the single event, as a JSON object.
    #[arg(long, default_value = "{}", conflicts_with = "file")]
    fields: String,
    /// An `.evt` file sent to /inject-batch (`-` reads stdin).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
}

/// `varpulis cluster members ...`.
#[derive(Debug, clap::Subcommand)]
enum MembersCmd {
    /// Add a coordinator: first as a learner (it catches up), then as a voter.
    Add {
        /// Id of the new node (must be unused).
        #[arg(long)]
        node_id: u64,
        /// Base URL the other coordinators reach it at.
        #[arg(long)]
        address: String,
        /// Stop after add-learner (do not make it a voter).
        #[arg(long)]
        learner_only: bool,
    },
    /// Remove a coordinator from the voters (and learners).
    Remove {
        /// Node id to remove.
        node_id: u64,
    },
}

/// Failures of the client.
#[derive(Debug)]
enum ClientError {
    /// The server answered with an error status.
    Http {
        method: Method,
        path: String,
        url: String,
        status: StatusCode,
        message: String,
    },
    /// No coordinator could be reached.
    Unreachable {
        method: Method,
        path: String,
        details: String,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http {
                method,
                path,
                url,
                status,
                message,
            } => write!(f, "{method} {path}: HTTP {status} from {url}: {message}"),
            Self::Unreachable {
                method,
                path,
                details,
            } => write!(f, "{method} {path}: no coordinator reachable ({details})"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client over the list of coordinators.
struct Client {
    http: reqwest::Client,
    urls: Vec<String>,
    key: Option<String>,
}

impl Client {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let urls: Vec<String> = args
            .coordinator
            .iter()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            bail!("no coordinator URL given (--coordinator or VARPULIS_COORDINATOR)");
        }
        for u in &urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("coordinator URL `{u}` must start with http:// or https://");
            }
        }
        let timeout = Duration::try_from_secs_f64(args.timeout).context("--timeout")?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            urls,
            key: args.api_key.clone().filter(|k| !k.is_empty()),
        })
    }

    /// One request against `url` only.
    async fn send_to(
        &self,
        url: &str,
        method: &Method,
        path: &str,
        body: Option<&Body>,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let mut req = self.http.request(method.clone(), format!("{url}{path}"));
        if let Some(k) = &self.key {
            req = req.header(API_KEY_HEADER, k);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(v),
            Some(Body::Text(t)) => req
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .body(t.clone()),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, text))
    }

    /// Sends to the coordinators in turn; returns the first answer that is neither a transport
    /// failure, nor 421, nor 503 (or the last such answer when all fail that way).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<String, ClientError> {
        let mut queue: Vec<String> = self.urls.clone();
        let mut tried: Vec<String> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut last_refusal: Option<ClientError> = None;
        while !queue.is_empty() {
            let url = queue.remove(0);
            if tried.contains(&url) {
                continue;
            }
            tried.push(url.clone());
            match self.send_to(&url, &method, path, body.as_ref()).await {
                Err(e) => failures.push(format!("{url}: {}", transport_reason(&e))),
                Ok((status, text)) if status.is_success() => return Ok(text),
                Ok((status, text)) => {
                    let parsed: Option<ErrorBody> = serde_json::from_str(&text).ok();
                    let err = ClientError::Http {
                        method: method.clone(),
                        path: path.to_owned(),
                        url: url.clone(),
                        status,
                        message: error_message(parsed.as_ref(), &text),
                    };
                    if status == StatusCode::MISDIRECTED_REQUEST
                        || status == StatusCode::SERVICE_UNAVAILABLE
                    {
                        if let Some(leader) = parsed.and_then(|p| p.leader_url) {
                            queue.insert(0, leader.trim_end_matches('/').to_owned());
                        }
                        failures.push(format!("{url}: HTTP {status}"));
                        last_refusal = Some(err);
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(last_refusal.unwrap_or(ClientError::Unreachable {
            method,
            path: path.to_owned(),
            details: failures.join("; "),
        }))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, Value)> {
        let text = self.request(Method::GET, path, None).await?;
        decode(path, &text)
    }
}

/// A request body.
enum Body {
    Json(Value),
    Text(String),
}

/// A short reason for a transport failure.
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        e.to_string()
    }
}

/// The server's `error` field, else the body text (shortened).
fn error_message(parsed: Option<&ErrorBody>, text: &str) -> String {
    match parsed {
        Some(b) => {
            let mut m = format!("{} ({})", b.error, b.code);
            for d in &b.diagnostics {
                m.push_str(&format!("\n  {}:{}: {}", d.line, d.column, d.message));
            }
            m
        }
        None if text.trim().is_empty() => "empty body".to_owned(),
        None => text.chars().take(500).collect(),
    }
}

/// Parses `text` as `T` and as a raw value (for `--json`).
fn decode<T: DeserializeOwned>(path: &str, text: &str) -> anyhow::Result<(T, Value)> {
    let raw: Value = serde_json::from_str(text)
        .with_context(|| format!("{path}: the answer is not JSON: {text:.200}"))?;
    let typed = serde_json::from_value(raw.clone())
        .with_context(|| format!("{path}: unexpected answer shape"))?;
    Ok((typed, raw))
}

/// Reads a file, or stdin for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
    }
}

/// Prints rows as an aligned table under `headers`.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(dispatch(&client, &args)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Http { .. }) => {
                eprintln!("error: {e:#}");
                Ok(ExitCode::from(1))
            }
            _ => Err(e),
        },
    }
}

async fn dispatch(c: &Client, args: &Args) -> anyhow::Result<()> {
    let json = args.json;
    match &args.command {
        Cmd::Status => status(c, json).await,
        Cmd::Events { since } => follow_events(c, since.clone(), json).await,
        Cmd::Workers => {
            let (list, raw): (WorkerList, _) = c.get("/api/v1/cluster/workers?limit=1000").await?;
            if json {
                return print_json(&raw);
            }
            let rows: Vec<Vec<String>> = list
                .workers
                .iter()
                .map(|w| {
                    vec![
                        w.id.clone(),
                        w.status.clone(),
                        w.address.clone(),
                        format!("{}/{}", w.pipelines_running, w.max_pipelines),
                        w.events_processed.to_string(),
                        opt(w.last_heartbeat_ms_ago),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "STATUS",
                    "ADDRESS",
                    "PIPELINES",
                    "EVENTS",
                    "LAST_HB_MS",
                ],
                &rows,
            );
            println!("{} worker(s)", list.total);
            Ok(())
        }
        Cmd::Groups(g) => groups(c, g, json).await,
        Cmd::Inject(i) => inject(c, i, json).await,
        Cmd::Topology => {
            let (topo, raw): (Topology, _) = c.get("/api/v1/cluster/topology").await?;
            if json {
                return print_json(&raw);
            }
            let mut rows = Vec::new();
            for g in &topo.groups {
                for p in &g.pipelines {
                    rows.push(vec![
                        g.group_name.clone(),
                        g.group_id.clone(),
                        p.name.clone(),
                        p.worker_id.clone(),
                        p.worker_address.clone(),
                    ]);
                }
            }
            table(
                &["GROUP", "GROUP_ID", "PIPELINE", "WORKER", "ADDRESS"],
                &rows,
            );
            for g in &topo.groups {
                for r in &g.routes {
                    println!(
                        "route {}: {} -> {} [{}]",
                        g.group_name,
                        r.from_pipeline,
                        r.to_pipeline,
                        r.event_types.join(", ")
                    );
                }
            }
            Ok(())
        }
        Cmd::Migrations => {
            let (list, raw): (MigrationList, _) =
                c.get("/api/v1/cluster/migrations?limit=1000").await?;
            if json {
                return print_json(&raw);
            }
            let rows: Vec<Vec<String>> = list
                .migrations
                .iter()
                .map(|m| {
                    vec![
                        m.id.clone(),
                        m.group_id.clone(),
                        m.pipeline_name.clone(),
                        m.from_worker.clone(),
                        opt(m.to_worker.clone()),
                        m.status.clone(),
                        m.reason.clone(),
                        m.restored_from_checkpoint.to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "GROUP",
                    "PIPELINE",
                    "FROM",
                    "TO",
                    "STATUS",
                    "REASON",
                    "CHECKPOINT",
                ],
                &rows,
            );
            println!("{} migration(s)", list.total);
            Ok(())
        }
        Cmd::Members(m) => members(c, m, json).await,
    }
}

/// `status`: every URL's /raft/metrics (each node answers for itself), then workers by state.
async fn status(c: &Client, json: bool) -> anyhow::Result<()> {
    let mut nodes: Vec<Value> = Vec::new();
    let mut rows = Vec::new();
    for url in &c.urls {
        // A frozen node must not stall the whole report: each node gets a few seconds.
        let answer = tokio::time::timeout(
            STATUS_NODE_TIMEOUT,
            c.send_to(url, &Method::GET, "/raft/metrics", None),
        )
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| transport_reason(&e)));
        match answer.and_then(|(status, text)| {
            if status.is_success() {
                serde_json::from_str::<Value>(&text).map_err(|e| format!("bad JSON: {e}"))
            } else {
                Err(format!("HTTP {status}"))
            }
        }) {
            Ok(raw) => {
                match serde_json::from_value::<RaftMetricsView>(raw.clone()) {
                    Ok(m) => rows.push(vec![
                        url.clone(),
                        m.id.to_string(),
                        m.state.clone(),
                        m.current_term.to_string(),
                        opt(m.current_leader),
                        opt(m.last_applied),
                        format!("{:?}", m.membership),
                    ]),
                    Err(e) => rows.push(vec![url.clone(), "-".into(), format!("bad answer: {e}")]),
                }
                nodes.push(serde_json::json!({"url": url, "metrics": raw}));
            }
            Err(reason) => {
                rows.push(vec![url.clone(), "-".into(), format!("DOWN ({reason})")]);
                nodes.push(serde_json::json!({"url": url, "error": reason}));
            }
        }
    }
    let workers = c
        .get::<WorkerList>("/api/v1/cluster/workers?limit=1000")
        .await;
    if json {
        let w = match &workers {
            Ok((_, raw)) => raw.clone(),
            Err(e) => serde_json::json!({"error": format!("{e:#}")}),
        };
        return print_json(&serde_json::json!({"nodes": nodes, "workers": w}));
    }
    table(
        &[
            "COORDINATOR",
            "ID",
            "STATE",
            "TERM",
            "LEADER",
            "APPLIED",
            "MEMBERS",
        ],
        &rows,
    );
    match workers {
        Ok((list, _)) => {
            let mut by_state: std::collections::BTreeMap<String, usize> = Default::default();
            for w in &list.workers {
                *by_state.entry(w.status.clone()).or_default() += 1;
            }
            let parts: Vec<String> = by_state.iter().map(|(s, n)| format!("{s}={n}")).collect();
            println!("workers: {} total ({})", list.total, parts.join(", "));
        }
        Err(e) => println!("workers: unavailable ({e:#})"),
    }
    Ok(())
}

async fn groups(c: &Client, cmd: &GroupsCmd, json: bool) -> anyhow::Result<()> {
    const GROUPS: &str = "/api/v1/cluster/pipeline-groups";
    match cmd {
        GroupsCmd::List => {
            let (list, raw): (PipelineGroupList, _) =
                c.get(&format!("{GROUPS}?limit=1000")).await?;
            if json {
                return print_json(&raw);
            }
            let rows: Vec<Vec<String>> = list
                .pipeline_groups
                .iter()
                .map(|g| {
                    vec![
                        g.id.clone(),
                        g.name.clone(),
                        g.status.clone(),
                        g.pipeline_count.to_string(),
                        placements_summary(g),
                    ]
                })
                .collect();
            table(&["ID", "NAME", "STATUS", "PIPELINES", "PLACEMENTS"], &rows);
            println!("{} group(s)", list.total);
            Ok(())
        }
        GroupsCmd::Get { id } => {
            let (g, raw): (PipelineGroupInfo, _) = c.get(&format!("{GROUPS}/{id}")).await?;
            if json {
                return print_json(&raw);
            }
            print_group(&g);
            Ok(())
        }
        GroupsCmd::Deploy { file } => {
            let text = read_input(file)?;
            let spec: PipelineGroupSpec = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not a pipeline group spec", file.display()))?;
            let body = serde_json::to_value(&spec)?;
            let answer = c
                .request(Method::POST, GROUPS, Some(Body::Json(body)))
                .await?;
            let (g, raw): (PipelineGroupInfo, _) = decode(GROUPS, &answer)?;
            if json {
                return print_json(&raw);
            }
            print_group(&g);
            Ok(())
        }
        GroupsCmd::Rm { id } => {
            let path = format!("{GROUPS}/{id}");
            let answer = c.request(Method::DELETE, &path, None).await?;
            if json {
                let raw: Value = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
                return print_json(&raw);
            }
            println!("group {id} torn down");
            Ok(())
        }
    }
}

fn placements_summary(g: &PipelineGroupInfo) -> String {
    g.placements
        .iter()
        .map(|p| format!("{}@{}", p.pipeline_name, p.worker_id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_group(g: &PipelineGroupInfo) {
    println!("group {} ({}) status {}", g.name, g.id, g.status);
    let rows: Vec<Vec<String>> = g
        .placements
        .iter()
        .map(|p| {
            vec![
                p.pipeline_name.clone(),
                p.worker_id.clone(),
                p.worker_address.clone(),
                p.pipeline_id.clone(),
                p.status.clone(),
            ]
        })
        .collect();
    table(
        &["PIPELINE", "WORKER", "ADDRESS", "PIPELINE_ID", "STATUS"],
        &rows,
    );
}

async fn inject(c: &Client, a: &InjectArgs, json: bool) -> anyhow::Result<()> {
    let base = format!("/api/v1/cluster/pipeline-groups/{}", a.group_id);
    if let Some(file) = &a.file {
        let text = read_input(file)?;
        let path = format!("{base}/inject-batch");
        let answer = c
            .request(Method::POST, &path, Some(Body::Text(text)))
            .await?;
        let (r, raw): (GroupInjectBatchResponse, _) = decode(&path, &answer)?;
        if json {
            return print_json(&raw);
        }
        let routed: Vec<String> = r.routed.iter().map(|(p, n)| format!("{p}={n}")).collect();
        println!(
            "accepted {} event(s), routed: {}",
            r.accepted,
            routed.join(", ")
        );
        for e in &r.output_events {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    let event_type = a
        .event_type
        .clone()
        .ok_or_else(|| anyhow!("--event-type or -f FILE is required"))?;
    let fields: Map<String, Value> = serde_json::from_str(&a.fields)
        .with_context(|| format!("--fields must be a JSON object, got `{}`", a.fields))?;
    let body = serde_json::to_value(GroupInjectRequest { event_type, fields })?;
    let path = format!("{base}/inject");
    let answer = c
        .request(Method::POST, &path, Some(Body::Json(body)))
        .await?;
    let (r, raw): (GroupInjectResponse, _) = decode(&path, &answer)?;
    if json {
        return print_json(&raw);
    }
    println!(
        "routed to {} on {} ({} output event(s))",
        r.routed_to,
        r.worker_id,
        r.worker_response.output_events.len()
    );
    for e in &r.worker_response.output_events {
        println!("{}", serde_json::to_string(e)?);
    }
    Ok(())
}

async fn members(c: &Client, cmd: &MembersCmd, json: bool) -> anyhow::Result<()> {
    let view = match cmd {
        MembersCmd::Add {
            node_id,
            address,
            learner_only,
        } => {
            let req = serde_json::to_value(AddLearnerRequest {
                node_id: *node_id,
                address: address.clone(),
            })?;
            let text = c
                .request(Method::POST, "/raft/add-learner", Some(Body::Json(req)))
                .await?;
            let (mut view, mut raw): (RaftMetricsView, Value) = decode("/raft/add-learner", &text)?;
            if !learner_only {
                let mut members = view.membership.clone();
                if !members.contains(node_id) {
                    members.push(*node_id);
                }
                (view, raw) = change_membership(c, members).await?;
            }
            if json {
                return print_json(&raw);
            }
            view
        }
        MembersCmd::Remove { node_id } => {
            let text = c.request(Method::GET, "/raft/metrics", None).await?;
            let (view, _): (RaftMetricsView, Value) = decode("/raft/metrics", &text)?;
            if !view.membership.contains(node_id) {
                bail!(
                    "node {node_id} is not a voter (members: {:?})",
                    view.membership
                );
            }
            let members: Vec<u64> = view
                .membership
                .iter()
                .copied()
                .filter(|n| n != node_id)
                .collect();
            let (view, raw) = change_membership(c, members).await?;
            if json {
                return print_json(&raw);
            }
            view
        }
    };
    println!(
        "membership: voters {:?}, learners {:?}, leader {}",
        view.membership,
        view.learners,
        opt(view.current_leader)
    );
    Ok(())
}

async fn change_membership(
    c: &Client,
    members: Vec<u64>,
) -> anyhow::Result<(RaftMetricsView, Value)> {
    let req = serde_json::to_value(ChangeMembershipRequest { members })?;
    let text = c
        .request(
            Method::POST,
            "/raft/change-membership",
            Some(Body::Json(req)),
        )
        .await?;
    decode("/raft/change-membership", &text)
}

/// `varpulis cluster events`: follows `GET /api/v1/cluster/events` (SSE), printing one line per
/// event; on a dropped connection it resumes from the last id seen, trying the next coordinator.
async fn follow_events(c: &Client, mut since: Option<String>, json: bool) -> anyhow::Result<()> {
    let mut attempt = 0usize;
    loop {
        let url = &c.urls[attempt % c.urls.len()];
        attempt += 1;
        let mut req = c
            .http
            .get(format!("{url}/api/v1/cluster/events"))
            .timeout(Duration::from_secs(365 * 24 * 3600));
        if let Some(k) = &c.key {
            req = req.header(API_KEY_HEADER, k);
        }
        if let Some(id) = &since {
            req = req.query(&[("since", id)]);
        }
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let parsed = serde_json::from_str::<ErrorBody>(&text).ok();
                if status.is_client_error() {
                    bail!("{url}: {status}: {}", error_message(parsed.as_ref(), &text));
                }
                eprintln!("{url}: {status}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                eprintln!("{url}: {}; retrying", transport_reason(&e));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, "message".to_string(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                if id.is_some() {
                    since.clone_from(&id);
                }
                if json {
                    println!("{data}");
                } else if kind == "reset" {
                    println!("-- reset: events were missed ({data})");
                } else {
                    let details = serde_json::from_str::<Value>(&data)
                        .ok()
                        .and_then(|v| v.get("data").cloned())
                        .map(|d| d.to_string())
                        .unwrap_or(data);
                    println!("{:<8} {:<24} {details}", id.unwrap_or_default(), kind);
                }
            }
        }
        eprintln!("{url}: event stream closed; reconnecting");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
