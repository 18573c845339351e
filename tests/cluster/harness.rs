//! Process-level test harness: spawns real `varpulis coordinator` and `varpulis server`
//! processes on loopback, talks to them over HTTP, and injects faults by PID
//! (SIGKILL, SIGSTOP, SIGCONT).
//!
//! Everything here is written from the external contracts (DESIGN.md, the spec), never from
//! the implementation: the point is to test the product the way an operator uses it.
//! Waits are bounded polls ([`wait_until`]); no correctness check relies on a fixed sleep.
//! When a test panics, the tails of every child's logs are printed on drop.

// The benches include this file with `#[path]` and use only part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Path of the binary cargo built for this test or bench target.
pub const BIN: &str = env!("CARGO_BIN_EXE_varpulis");

/// The binary to run: `VARPULIS_BIN` when set (e.g. a release build for the benches),
/// otherwise [`BIN`].
pub fn bin() -> String {
    std::env::var("VARPULIS_BIN").unwrap_or_else(|_| BIN.to_owned())
}
/// Coordinator API key used by default.
pub const ADMIN_KEY: &str = "admin";
/// Worker API key used by default.
pub const WORKER_KEY: &str = "worker-secret";
/// Coordinators' peer secret used by default (`--peer-secret`).
pub const PEER_SECRET: &str = "peer-secret";

/// Ports handed out by this process, so two ensembles of the same test binary never collide.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Picks a free loopback port: binds `127.0.0.1:0`, reads the port, releases it.
/// Ports already handed out by this process are skipped. Another process may still grab
/// the port before the child binds it; [`Ensemble::start`] retries with fresh ports then.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        let set = guard.get_or_insert_with(HashSet::new);
        if set.insert(port) {
            return port;
        }
    }
    panic!("no free port found after 1000 attempts");
}

/// Starts an outside server (a broker) on a free loopback port and waits up to `ready_within`
/// until it accepts connections; `command(port)` builds its command line. A child that exits
/// early (port taken by another process) is retried on a fresh port, three times in all, then
/// this panics naming `what`. Returns the child and its port.
pub fn spawn_listening(
    what: &str,
    ready_within: Duration,
    command: impl Fn(u16) -> Command,
) -> (Child, u16) {
    for _ in 0..3 {
        let port = free_port();
        let mut child = command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let deadline = Instant::now() + ready_within;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // port taken: try another one
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} did not start");
}

/// Polls `f` every `poll` until it returns `Some`, or gives up after `timeout`.
pub async fn try_wait_until<T, F, Fut>(timeout: Duration, poll: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Like [`try_wait_until`] but panics with `what` on timeout.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, poll: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match try_wait_until(timeout, poll, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for: {what}"),
    }
}

/// An HTTP answer: status, parsed JSON body (Null when not JSON) and raw text.
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status code.
    pub status: u16,
    /// Body parsed as JSON, `Value::Null` when it is not JSON.
    pub body: Value,
    /// Raw body text.
    pub text: String,
    /// `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// `Connection` header, if any.
    pub connection: Option<String>,
}

impl Resp {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the body parsed as a JSON object.
    pub fn is_json_object(&self) -> bool {
        self.body.is_object()
    }

    /// Asserts the status, printing the body on mismatch.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status, body: {}",
            self.text
        );
        self
    }

    /// Asserts a 2xx status, printing the body otherwise.
    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        assert!(
            self.ok(),
            "expected 2xx, got {}: {}",
            self.status,
            self.text
        );
        self
    }

    /// Asserts this is a JSON error body `{error, code}` with the given status.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> &Self {
        self.expect_status(status);
        assert!(
            self.body.is_object(),
            "error body is not a JSON object: {:?}",
            self.text
        );
        assert!(
            self.body["error"].is_string(),
            "error body has no `error` string: {}",
            self.text
        );
        assert!(
            self.body["code"].is_string(),
            "error body has no `code` string: {}",
            self.text
        );
        self
    }
}

/// TLS files of an ensemble: one leaf certificate (valid for localhost, 127.0.0.1 and the
/// given hosts) shared by every process, signed by a throwaway CA.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (`--tls-ca`, and `--tls-client-ca` when `mutual`).
    pub ca: PathBuf,
    /// The leaf certificate (`--tls-cert`).
    pub cert: PathBuf,
    /// Its key (`--tls-key`).
    pub key: PathBuf,
    /// Mutual TLS: every process requires and presents client certificates.
    pub mutual: bool,
    /// The CA that signed the leaf (to issue more, e.g. for reload tests).
    pub authority: std::sync::Arc<varpulis_tls::throwaway::ThrowawayCa>,
    /// Names the leaf is valid for.
    pub names: Vec<String>,
    /// Keeps the files alive.
    pub dir: std::sync::Arc<TempDir>,
}

impl TlsFiles {
    /// A fresh CA and a leaf for localhost, 127.0.0.1 and `hosts`.
    pub fn generate(hosts: &[&str], mutual: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("varpulis-tls-")
            .tempdir()
            .expect("tempdir");
        let ca = varpulis_tls::throwaway::ThrowawayCa::new("varpulis test CA").expect("CA");
        let ca_path = dir.path().join("ca.pem");
        ca.write_cert(&ca_path).expect("write CA");
        let mut names = vec!["localhost", "127.0.0.1", "varpulis-coordinator"];
        for host in hosts {
            if !names.contains(host) {
                names.push(host);
            }
        }
        let leaf = ca.issue_files(dir.path(), "node", &names).expect("leaf");
        Self {
            ca: ca_path,
            cert: leaf.cert,
            key: leaf.key,
            mutual,
            authority: std::sync::Arc::new(ca),
            names: names.iter().map(|n| n.to_string()).collect(),
            dir: std::sync::Arc::new(dir),
        }
    }

    /// The `--tls-*` flags of a coordinator or worker.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--tls-cert".to_owned(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ];
        if self.mutual {
            args.extend(["--tls-client-ca".into(), self.ca.display().to_string()]);
        }
        args
    }

    /// The client side for tests: trusts the CA, presents the leaf under mutual TLS.
    pub fn client(&self) -> varpulis_tls::ClientTls {
        let identity = self.mutual.then(|| {
            varpulis_tls::keys::KeyStore::load(&self.cert, &self.key).expect("client identity")
        });
        varpulis_tls::ClientTls::new(Some(&self.ca), identity).expect("client TLS")
    }
}

/// `https` with TLS files, `http` without.
pub fn scheme(tls: &Option<TlsFiles>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// A small JSON client that sends `x-api-key` when it has one.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    key: Option<String>,
    timeout: Duration,
}

impl Api {
    /// A client sending `key` (or no key).
    pub fn new(key: Option<&str>) -> Self {
        Self::with_tls(key, &varpulis_tls::ClientTls::none())
    }

    /// A client sending `key` over `tls` (CA and client certificate of a TLS ensemble).
    pub fn with_tls(key: Option<&str>, tls: &varpulis_tls::ClientTls) -> Self {
        let http = tls
            .reqwest_builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client");
        Self {
            http,
            key: key.map(str::to_owned),
            timeout: Duration::from_secs(15),
        }
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// The same client with another key (or none).
    pub fn with_key(&self, key: Option<&str>) -> Self {
        Self {
            key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Sends a request; `Err` only on transport failure (refused, timeout, reset).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self.http.request(method, url).timeout(self.timeout);
        if let Some(key) = &self.key {
            req = req.header("x-api-key", key);
        }
        if let Some((bytes, content_type)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after");
        let content_type = header("content-type");
        let connection = header("connection");
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            body,
            text,
            retry_after,
            content_type,
            connection,
        })
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Resp, reqwest::Error> {
        self.send(reqwest::Method::GET, url, None).await
    }

    /// `DELETE url`.
    pub async fn delete(&self, url: &str) -> Result<Resp, reqwest::Error> {
        self.send(reqwest::Method::DELETE, url, None).await
    }

    /// `POST url` with a JSON body.
    pub async fn post(&self, url: &str, body: &Value) -> Result<Resp, reqwest::Error> {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.send(
            reqwest::Method::POST,
            url,
            Some((bytes, "application/json")),
        )
        .await
    }

    /// `POST url` with raw bytes and a content type.
    pub async fn post_raw(
        &self,
        url: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<Resp, reqwest::Error> {
        self.send(reqwest::Method::POST, url, Some((bytes, content_type)))
            .await
    }
}

/// One child process of the binary, with its logs in files.
#[derive(Debug)]
pub struct Proc {
    /// Name used in log dumps (`coord-1`, `worker-0`).
    pub name: String,
    args: Vec<String>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    child: Option<Child>,
    stopped: bool,
    /// Command run in front of the binary, e.g. `ip netns exec <ns>` (empty: none).
    prefix: Vec<String>,
}

impl Proc {
    /// Spawns `varpulis <args>` with logs appended to `<log_dir>/<name>.{out,err}`.
    pub fn spawn(name: &str, args: Vec<String>, log_dir: &Path) -> Self {
        Self::spawn_wrapped(name, Vec::new(), args, log_dir)
    }

    /// Like [`Proc::spawn`] but runs `<prefix...> varpulis <args>`, e.g. with the prefix
    /// `ip netns exec <ns>` (which execs in place, so the PID is the binary's).
    pub fn spawn_wrapped(
        name: &str,
        prefix: Vec<String>,
        args: Vec<String>,
        log_dir: &Path,
    ) -> Self {
        let mut proc = Self {
            name: name.to_owned(),
            args,
            stdout_path: log_dir.join(format!("{name}.out")),
            stderr_path: log_dir.join(format!("{name}.err")),
            child: None,
            stopped: false,
            prefix,
        };
        proc.start();
        proc
    }

    fn start(&mut self) {
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("open log file")
        };
        let mut cmd = match self.prefix.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin());
                cmd
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("VARPULIS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("VARPULIS_API_KEY")
            .env_remove("VARPULIS_COORDINATOR")
            .env_remove("VARPULIS_WORKER_ID")
            .env_remove("VARPULIS_WORKER_TOKEN")
            .env_remove("VARPULIS_RAFT_PEERS")
            .env_remove("VARPULIS_RAFT_NODE_ID")
            .env_remove("VARPULIS_DATA_DIR")
            .env_remove("VARPULIS_PEER_SECRET")
            .stdin(Stdio::null())
            .stdout(open(&self.stdout_path))
            .stderr(open(&self.stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin()));
        self.child = Some(child);
        self.stopped = false;
    }

    /// Starts the process again with the same arguments (same ports, same data dir).
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process was spawned, has not exited and is not stopped.
    pub fn is_up(&mut self) -> bool {
        !self.stopped && self.exit_status().is_none() && self.child.is_some()
    }

    /// The exit status if the process has exited on its own.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with the PID of our own (not yet reaped) child.
            let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
            assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                self.stopped = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process freezes (its sockets stay open but nothing answers).
    pub fn stop(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = true;
    }

    /// SIGTERM: asks the process to shut down gracefully (it exits on its own).
    pub fn term(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGCONT after [`Proc::stop`].
    pub fn cont(&mut self) {
        self.signal(libc::SIGCONT);
        self.stopped = false;
    }

    /// Last `lines` lines of stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in [&self.stdout_path, &self.stderr_path] {
            out.push_str(&format!("---- {} ----\n", path.display()));
            out.push_str(&tail(path, lines));
        }
        out
    }

    /// Whole stderr (used to spot "address in use").
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no file)\n");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = String::new();
    let _ = file.read_to_string(&mut buf);
    let all: Vec<&str> = buf.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    out.push('\n');
    out
}

/// Timings and keys of an ensemble.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Coordinator `--api-key`.
    pub api_key: String,
    /// Worker `--api-key`.
    pub worker_key: String,
    /// Coordinator `--peer-secret` (`None`: the API key guards the Raft RPCs).
    pub peer_secret: Option<String>,
    /// Coordinator and worker `--heartbeat-interval` (seconds).
    pub heartbeat_interval: f64,
    /// Coordinator `--heartbeat-timeout` (seconds).
    pub heartbeat_timeout: f64,
    /// Coordinator `--sweep-interval` (seconds).
    pub sweep_interval: f64,
    /// `--raft-heartbeat-ms`, when set.
    pub raft_heartbeat_ms: Option<u64>,
    /// `--raft-election-min-ms`, when set.
    pub raft_election_min_ms: Option<u64>,
    /// `--raft-election-max-ms`, when set.
    pub raft_election_max_ms: Option<u64>,
    /// Worker ids; `worker-0`, `worker-1`, ... when empty.
    pub worker_ids: Vec<String>,
    /// How long [`Ensemble::start`] may wait for leader + registrations.
    pub start_timeout: Duration,
    /// Extra arguments appended to every coordinator's command line (e.g. `--mqtt-url`).
    pub coord_extra_args: Vec<String>,
    /// Extra arguments appended to every worker's command line.
    pub worker_extra_args: Vec<String>,
    /// Serve and call over TLS (`https://` everywhere), see [`TlsFiles`].
    pub tls: Option<TlsFiles>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            api_key: ADMIN_KEY.into(),
            worker_key: WORKER_KEY.into(),
            peer_secret: Some(PEER_SECRET.into()),
            heartbeat_interval: 1.0,
            heartbeat_timeout: 3.0,
            sweep_interval: 1.0,
            raft_heartbeat_ms: None,
            raft_election_min_ms: None,
            raft_election_max_ms: None,
            worker_ids: Vec::new(),
            start_timeout: Duration::from_secs(40),
            coord_extra_args: Vec::new(),
            worker_extra_args: Vec::new(),
            tls: None,
        }
    }
}

/// Where the children of an ensemble run (default: everything on 127.0.0.1).
#[derive(Debug, Clone, Default)]
pub struct NetLayout {
    /// Per coordinator `i`: the IPv4 address it binds to and advertises, and a command
    /// prefix such as `ip netns exec <ns>`. Missing entries mean 127.0.0.1, no prefix.
    pub coords: Vec<(String, Vec<String>)>,
    /// Address the workers bind to and advertise (127.0.0.1 when `None`).
    pub worker_host: Option<String>,
    /// Per worker `i`: the address it binds to and advertises and a command prefix (its own
    /// network namespace); missing entries use `worker_host`, no prefix.
    pub workers: Vec<(String, Vec<String>)>,
    /// Per coordinator `i`: the URL the group (and the workers) know it by, e.g. a proxy in
    /// front of it (`--raft-peers` lists these). Missing: its own address.
    pub advertise: Vec<String>,
    /// Per coordinator `i`: its HTTP port (picked free when missing).
    pub ports: Vec<u16>,
}

impl NetLayout {
    fn coord(&self, i: usize) -> (String, Vec<String>) {
        self.coords
            .get(i)
            .cloned()
            .unwrap_or_else(|| ("127.0.0.1".to_owned(), Vec::new()))
    }

    fn worker_host(&self) -> String {
        self.worker_host
            .clone()
            .unwrap_or_else(|| "127.0.0.1".to_owned())
    }

    fn worker(&self, i: usize) -> (String, Vec<String>) {
        self.workers
            .get(i)
            .cloned()
            .unwrap_or_else(|| (self.worker_host(), Vec::new()))
    }
}

/// A coordinator process and its data dir (kept across restarts).
#[derive(Debug)]
pub struct Coordinator {
    /// Raft node id (1-based position in `--raft-peers`).
    pub id: u64,
    /// HTTP port.
    pub port: u16,
    /// Base URL.
    pub url: String,
    /// Data dir (sled).
    pub data_dir: TempDir,
    /// The process.
    pub proc: Proc,
}

/// A worker process.
#[derive(Debug)]
pub struct Worker {
    /// Worker id.
    pub id: String,
    /// HTTP port.
    pub port: u16,
    /// Base URL.
    pub url: String,
    /// The process.
    pub proc: Proc,
}

/// A set of coordinators (one Raft group) and workers.
#[derive(Debug)]
pub struct Ensemble {
    /// Coordinators, index `i` has Raft id `i + 1`.
    pub coords: Vec<Coordinator>,
    /// Workers.
    pub workers: Vec<Worker>,
    /// Client with the coordinator key.
    pub api: Api,
    /// Options used.
    pub opts: Opts,
    logs: TempDir,
}

fn secs(v: f64) -> String {
    format!("{v}")
}

impl Ensemble {
    /// Starts `n_coords` coordinators (a Raft group; a single node without `--raft-peers`
    /// when `n_coords == 1`) and `n_workers` workers, then waits until a leader is known,
    /// every coordinator is ready and every worker is registered `ready`.
    /// Retries with fresh ports when a child dies at start (port taken by someone else).
    pub async fn start(n_coords: usize, n_workers: usize, opts: Opts) -> Self {
        Self::start_in(n_coords, n_workers, opts, &NetLayout::default()).await
    }

    /// Like [`Ensemble::start`], with the coordinators and workers placed by `net`
    /// (bind addresses, e.g. network namespaces for partition tests).
    pub async fn start_in(n_coords: usize, n_workers: usize, opts: Opts, net: &NetLayout) -> Self {
        let mut last_err = String::new();
        for attempt in 0..3 {
            let ens = Self::spawn(n_coords, n_workers, opts.clone(), net);
            match ens.settle().await {
                Ok(()) => return ens,
                Err(e) => {
                    let port_clash = ens.any_port_clash();
                    last_err = format!("{e}\n{}", ens.all_logs(40));
                    if !port_clash {
                        break;
                    }
                    eprintln!("ensemble start attempt {attempt} hit a port clash, retrying");
                }
            }
        }
        panic!("ensemble did not start: {last_err}");
    }

    fn spawn(n_coords: usize, n_workers: usize, opts: Opts, net: &NetLayout) -> Self {
        let logs = tempfile::Builder::new()
            .prefix("varpulis-logs-")
            .tempdir()
            .expect("tempdir");
        let ports: Vec<u16> = (0..n_coords)
            .map(|i| net.ports.get(i).copied().unwrap_or_else(free_port))
            .collect();
        let urls: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                net.advertise
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("{}://{}:{p}", scheme(&opts.tls), net.coord(i).0))
            })
            .collect();
        let mut coords = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let data_dir = tempfile::Builder::new()
                .prefix("varpulis-coord-")
                .tempdir()
                .expect("tempdir");
            let (host, prefix) = net.coord(i);
            let mut args =
                coordinator_args_on(&host, &opts, *port, i as u64 + 1, &urls, data_dir.path());
            args.extend(opts.coord_extra_args.iter().cloned());
            let name = format!("coord-{}", i + 1);
            let proc = Proc::spawn_wrapped(&name, prefix, args, logs.path());
            coords.push(Coordinator {
                id: i as u64 + 1,
                port: *port,
                url: urls[i].clone(),
                data_dir,
                proc,
            });
        }
        let mut workers = Vec::new();
        for i in 0..n_workers {
            let id = opts
                .worker_ids
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("worker-{i}"));
            let port = free_port();
            let (host, prefix) = net.worker(i);
            let url = format!("{}://{host}:{port}", scheme(&opts.tls));
            let mut args = worker_args_on(&host, &opts, port, &id, &urls);
            args.extend(opts.worker_extra_args.iter().cloned());
            let proc = Proc::spawn_wrapped(&id, prefix, args, logs.path());
            workers.push(Worker {
                id,
                port,
                url,
                proc,
            });
        }
        let api = match &opts.tls {
            Some(tls) => Api::with_tls(Some(&opts.api_key), &tls.client()),
            None => Api::new(Some(&opts.api_key)),
        };
        Self {
            coords,
            workers,
            api,
            opts,
            logs,
        }
    }

    async fn settle(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.start_timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let me = self;
        try_wait_until(left(), Duration::from_millis(100), || async move {
            me.leader().await
        })
        .await
        .ok_or("no leader elected")?;
        for i in 0..self.coords.len() {
            if !self.is_ready(i).await {
                let ok = try_wait_until(left(), Duration::from_millis(100), || async move {
                    me.is_ready(i).await.then_some(())
                })
                .await;
                ok.ok_or(format!("coordinator {} never ready", i + 1))?;
            }
        }
        let ids: Vec<String> = self.workers.iter().map(|w| w.id.clone()).collect();
        if !ids.is_empty() {
            let ids = &ids;
            try_wait_until(left(), Duration::from_millis(200), || async move {
                me.workers_in_status(ids, "ready").await.then_some(())
            })
            .await
            .ok_or("workers never all registered ready")?;
        }
        Ok(())
    }

    fn any_port_clash(&self) -> bool {
        let clash = |s: String| s.contains("in use") || s.contains("AddrInUse");
        self.coords.iter().any(|c| clash(c.proc.stderr()))
            || self.workers.iter().any(|w| clash(w.proc.stderr()))
    }

    /// Tails of every child's logs.
    pub fn all_logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for c in &self.coords {
            out.push_str(&format!(
                "==== {} ====\n{}",
                c.proc.name,
                c.proc.log_tail(lines)
            ));
        }
        for w in &self.workers {
            out.push_str(&format!(
                "==== {} ====\n{}",
                w.proc.name,
                w.proc.log_tail(lines)
            ));
        }
        out
    }

    /// Coordinator URLs in Raft id order.
    pub fn coord_urls(&self) -> Vec<String> {
        self.coords.iter().map(|c| c.url.clone()).collect()
    }

    /// `{url}/api/v1/cluster{path}` of coordinator `i`.
    pub fn cluster_url(&self, i: usize, path: &str) -> String {
        format!("{}/api/v1/cluster{path}", self.coords[i].url)
    }

    /// `GET /raft/metrics` of coordinator `i` (None when it does not answer within 1 s).
    pub async fn metrics(&self, i: usize) -> Option<Value> {
        let api = self.api.with_timeout(Duration::from_secs(1));
        let r = api
            .get(&format!("{}/raft/metrics", self.coords[i].url))
            .await
            .ok()?;
        r.ok().then_some(r.body)
    }

    /// Whether `GET /ready` of coordinator `i` answers 200.
    pub async fn is_ready(&self, i: usize) -> bool {
        let api = self.api.with_timeout(Duration::from_secs(1));
        matches!(api.get(&format!("{}/ready", self.coords[i].url)).await, Ok(r) if r.status == 200)
    }

    /// Indexes of coordinators whose process is running and not stopped.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.coords.len())
            .filter(|&i| self.coords[i].proc.is_up())
            .collect()
    }

    /// The index of the leader when every answering coordinator agrees on it.
    pub async fn leader(&self) -> Option<usize> {
        self.leader_among(&(0..self.coords.len()).collect::<Vec<_>>())
            .await
    }

    /// The index of the leader as seen by coordinators `among` (those that answer).
    pub async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let mut leader = None;
        let mut views = Vec::new();
        for &i in among {
            if let Some(m) = self.metrics(i).await {
                if m["state"] == "Leader" {
                    leader = Some(i);
                }
                views.push(m["current_leader"].as_u64());
            }
        }
        let l = leader?;
        let id = self.coords[l].id;
        views.iter().all(|v| *v == Some(id)).then_some(l)
    }

    /// Waits for a leader agreed by coordinators `among`, then for it to be ready.
    pub async fn wait_leader_among(&self, among: &[usize], timeout: Duration) -> usize {
        let me = self;
        wait_until(
            "leader elected",
            timeout,
            Duration::from_millis(50),
            || async move {
                let l = me.leader_among(among).await?;
                me.is_ready(l).await.then_some(l)
            },
        )
        .await
    }

    /// Waits for a leader agreed by all coordinators.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let all: Vec<usize> = (0..self.coords.len()).collect();
        self.wait_leader_among(&all, timeout).await
    }

    /// Indexes of the coordinators other than `leader`.
    pub fn others(&self, leader: usize) -> Vec<usize> {
        (0..self.coords.len()).filter(|&i| i != leader).collect()
    }

    /// Waits until coordinator `i` answers `/ready` 200.
    pub async fn wait_ready(&self, i: usize, timeout: Duration) {
        let me = self;
        wait_until(
            &format!("coordinator {} ready", i + 1),
            timeout,
            Duration::from_millis(100),
            || async move { me.is_ready(i).await.then_some(()) },
        )
        .await
    }

    /// The full worker list (limit 1000) as answered by coordinator `i`.
    pub async fn worker_list(&self, i: usize) -> Option<Vec<Value>> {
        let r = self
            .api
            .get(&self.cluster_url(i, "/workers?limit=1000"))
            .await
            .ok()?;
        if !r.ok() {
            return None;
        }
        r.body["workers"].as_array().cloned()
    }

    /// Whether some coordinator lists every id in `ids` with `status`.
    pub async fn workers_in_status(&self, ids: &[String], status: &str) -> bool {
        for i in 0..self.coords.len() {
            if let Some(list) = self.worker_list(i).await {
                return ids.iter().all(|id| {
                    list.iter()
                        .any(|w| w["id"] == id.as_str() && w["status"] == status)
                });
            }
        }
        false
    }

    /// Status of worker `id` as seen by coordinator `i`.
    pub async fn worker_status(&self, i: usize, id: &str) -> Option<String> {
        let r = self
            .api
            .get(&self.cluster_url(i, &format!("/workers/{id}")))
            .await
            .ok()?;
        r.ok()
            .then(|| r.body["status"].as_str().unwrap_or_default().to_owned())
    }

    /// Index of the worker with id `id`.
    pub fn worker_index(&self, id: &str) -> usize {
        self.workers
            .iter()
            .position(|w| w.id == id)
            .expect("known worker id")
    }

    /// Starts one more worker `id` registering with every coordinator (same options as the
    /// ensemble's workers); returns its index. Does not wait for the registration.
    pub fn add_worker(&mut self, id: &str) -> usize {
        let port = free_port();
        let url = format!("{}://127.0.0.1:{port}", scheme(&self.opts.tls));
        let mut args = worker_args(&self.opts, port, id, &self.coord_urls());
        args.extend(self.opts.worker_extra_args.iter().cloned());
        let proc = Proc::spawn(id, args, self.logs.path());
        self.workers.push(Worker {
            id: id.to_owned(),
            port,
            url,
            proc,
        });
        self.workers.len() - 1
    }

    /// Starts one more worker `id` with its own API key `key`, knowing only the coordinators
    /// `urls`; returns its index. Does not wait for the registration.
    pub fn add_worker_with(&mut self, id: &str, key: &str, urls: &[String]) -> usize {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let opts = Opts {
            worker_key: key.to_owned(),
            ..self.opts.clone()
        };
        let mut args = worker_args(&opts, port, id, urls);
        args.extend(self.opts.worker_extra_args.iter().cloned());
        let proc = Proc::spawn(id, args, self.logs.path());
        self.workers.push(Worker {
            id: id.to_owned(),
            port,
            url,
            proc,
        });
        self.workers.len() - 1
    }

    /// Restarts coordinator `i` with its data dir.
    pub fn restart_coord(&mut self, i: usize) {
        self.coords[i].proc.restart();
    }

    /// Directory holding the children's logs.
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.all_logs(60));
        }
        for w in &mut self.workers {
            w.proc.kill();
        }
        for c in &mut self.coords {
            c.proc.kill();
        }
    }
}

/// Arguments of `varpulis coordinator` for node `id` of `urls` (single node when one URL).
pub fn coordinator_args(
    opts: &Opts,
    port: u16,
    id: u64,
    urls: &[String],
    data: &Path,
) -> Vec<String> {
    coordinator_args_on("127.0.0.1", opts, port, id, urls, data)
}

/// [`coordinator_args`] binding `host` instead of 127.0.0.1.
pub fn coordinator_args_on(
    host: &str,
    opts: &Opts,
    port: u16,
    id: u64,
    urls: &[String],
    data: &Path,
) -> Vec<String> {
    let mut args = vec![
        "coordinator".to_owned(),
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        host.to_owned(),
        "--api-key".into(),
        opts.api_key.clone(),
        "--heartbeat-interval".into(),
        secs(opts.heartbeat_interval),
        "--heartbeat-timeout".into(),
        secs(opts.heartbeat_timeout),
        "--sweep-interval".into(),
        secs(opts.sweep_interval),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    if let Some(secret) = &opts.peer_secret {
        args.extend(["--peer-secret".into(), secret.clone()]);
    }
    if let Some(tls) = &opts.tls {
        args.extend(tls.args());
    }
    if urls.len() > 1 {
        args.extend([
            "--raft-peers".into(),
            urls.join(","),
            "--raft-node-id".into(),
            id.to_string(),
        ]);
    }
    for (flag, value) in [
        ("--raft-heartbeat-ms", opts.raft_heartbeat_ms),
        ("--raft-election-min-ms", opts.raft_election_min_ms),
        ("--raft-election-max-ms", opts.raft_election_max_ms),
    ] {
        if let Some(v) = value {
            args.extend([flag.to_owned(), v.to_string()]);
        }
    }
    args
}

/// Arguments of `varpulis server` registering with every coordinator of `urls`.
pub fn worker_args(opts: &Opts, port: u16, id: &str, urls: &[String]) -> Vec<String> {
    worker_args_on("127.0.0.1", opts, port, id, urls)
}

/// [`worker_args`] binding and advertising `host` instead of 127.0.0.1.
pub fn worker_args_on(
    host: &str,
    opts: &Opts,
    port: u16,
    id: &str,
    urls: &[String],
) -> Vec<String> {
    let mut args = vec![
        "server".to_owned(),
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        host.to_owned(),
        "--api-key".into(),
        opts.worker_key.clone(),
        "--coordinator".into(),
        urls.join(","),
        "--worker-id".into(),
        id.to_owned(),
        "--advertise-address".into(),
        format!("{}://{host}:{port}", scheme(&opts.tls)),
        "--heartbeat-interval".into(),
        secs(opts.heartbeat_interval),
    ];
    if let Some(tls) = &opts.tls {
        args.extend(tls.args());
    }
    args
}

/// Body of a fake worker registration (no process behind it).
pub fn fake_worker(id: &str) -> Value {
    serde_json::json!({
        "worker_id": id,
        "address": "http://127.0.0.1:9",
        "api_key": "fake",
        "capacity": {"cpu_cores": 1, "pipelines_running": 0, "max_pipelines": 10}
    })
}

/// A field of an output event, whether nested in `fields` (DTO) or flat (tutorial output).
pub fn event_field<'a>(event: &'a Value, name: &str) -> &'a Value {
    match event.get("fields").and_then(|f| f.get(name)) {
        Some(v) => v,
        None => &event[name],
    }
}

/// Group helpers shared by the process tests (create, read back, wait until running).
impl Ensemble {
    /// `POST /pipeline-groups` through coordinator `via`; expects 201 and returns the group id.
    pub async fn create_group(&self, via: usize, spec: &Value) -> String {
        let r = self
            .api
            .post(&self.cluster_url(via, "/pipeline-groups"), spec)
            .await
            .expect("create group");
        r.expect_status(201);
        r.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("group without id: {}", r.text))
            .to_owned()
    }

    /// `GET /pipeline-groups/{gid}` through coordinator `via` (`None` when that fails).
    pub async fn group_view(&self, via: usize, gid: &str) -> Option<Value> {
        let r = self
            .api
            .get(&self.cluster_url(via, &format!("/pipeline-groups/{gid}")))
            .await
            .ok()?;
        r.ok().then_some(r.body)
    }

    /// Waits (20 s at most) until the group's status seen through `via` is `running`.
    pub async fn wait_group_running(&self, via: usize, gid: &str) {
        wait_until(
            "group running",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async move { (self.group_view(via, gid).await?["status"] == "running").then_some(()) },
        )
        .await;
    }

    /// Waits (polling every 100 ms, panicking after `timeout`) until every worker of `ids` is in
    /// `status` ([`Ensemble::workers_in_status`]).
    pub async fn wait_workers_in_status(&self, ids: &[&str], status: &str, timeout: Duration) {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let ids = &ids;
        wait_until(
            &format!("{ids:?} {status}"),
            timeout,
            Duration::from_millis(100),
            || async move { self.workers_in_status(ids, status).await.then_some(()) },
        )
        .await;
    }

    /// [`Ensemble::create_group`] then [`Ensemble::wait_group_running`]; returns the group id.
    pub async fn deploy_group(&self, via: usize, spec: &Value) -> String {
        let gid = self.create_group(via, spec).await;
        self.wait_group_running(via, &gid).await;
        gid
    }
}

/// Waits until every coordinator in `nodes` reports the same `last_applied` and `state_hash`
/// (`GET /raft/metrics`); returns them.
pub async fn wait_converged(ens: &Ensemble, nodes: &[usize], timeout: Duration) -> (u64, String) {
    wait_until(
        "same last_applied and state_hash everywhere",
        timeout,
        Duration::from_millis(100),
        || async move {
            let mut seen: Option<(u64, String)> = None;
            for &i in nodes {
                let m: Value = ens.metrics(i).await?;
                let applied = m["last_applied"].as_u64().unwrap_or(0);
                let hash = m["state_hash"].as_str()?.to_owned();
                match &seen {
                    None => seen = Some((applied, hash)),
                    Some(s) if *s == (applied, hash) => {}
                    Some(_) => return None,
                }
            }
            seen
        },
    )
    .await
}

/// MQTT options of a test client on `127.0.0.1:port` named `name-<random>` (keep-alive 10 s,
/// 100 in flight).
pub fn mqtt_options(port: u16, name: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(
        format!("{name}-{:08x}", rand::random::<u32>()),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(10));
    o.set_inflight(100);
    o
}

/// Subscribes a test MQTT client built from `options` (request queue `cap`) to `topic`;
/// returns once the broker acknowledged, with the client and the received JSON payloads
/// (`null` for a payload that is not JSON). The event loop runs in the background.
pub async fn mqtt_subscriber(
    options: rumqttc::MqttOptions,
    cap: usize,
    topic: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    use rumqttc::{Event, Packet, QoS};
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, cap);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ack = Some(ack_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(a) = ack.take() {
                        let _ = a.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ack_rx)
        .await
        .expect("subscription acknowledged")
        .expect("subscriber task alive");
    (client, rx)
}
