//! `varpulis local`: a whole cluster on one machine, for trying Varpulis and for development.
//!
//! Starts the embedded MQTT broker in this process, then three `varpulis coordinator` child
//! processes forming one Raft group and N `varpulis server` workers registered with all three.
//! It waits until a leader is elected and every worker is registered `ready`, prints the URLs
//! and a curl session to paste, and on Ctrl-C / SIGTERM stops every child and waits for it.
//! The banner shows each child's pid; a child that dies later is reported on stderr (name,
//! pid, exit status, end of its log) while the others keep running.
//!
//! Children are spawned from `current_exe()`, so the ensemble always runs the same build.
//! Their logs go to `<data-dir>/logs/<name>.log`.
//!
//! The coordinators authenticate their Raft RPCs with a peer secret generated at random for
//! each run ([`peer_secret`]) and handed to them in `VARPULIS_PEER_SECRET` (the environment, not
//! the command line, which other local users can read); workers never see it. Workers join
//! with a join token generated the same way (`VARPULIS_WORKER_TOKEN` of every child), so no
//! other local process can register a worker with the ensemble.
//!
//! With `--tls`, a throwaway CA is generated for the run (rcgen, [`TlsDir`]) under
//! `<data-dir>/tls/`: coordinators and workers serve HTTPS only with leaves it signed and verify
//! every server they call against it (`--tls-ca`); the banner prints the CA path and curl lines
//! with `--cacert`. Mutual TLS is not switched on (curl would then need a client certificate).
//! The embedded MQTT broker speaks TLS too (`mqtts://`, a leaf of the same CA), so route
//! traffic between workers is encrypted as well.

use anyhow::{bail, Context};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for a leader and the workers' registrations.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long children get to exit on their own after Ctrl-C before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Number of coordinators: three is the smallest group that survives the loss of one.
const COORDINATORS: u16 = 3;

/// Flags of `varpulis local`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of workers to start.
    #[arg(long, default_value_t = 2)]
    pub workers: u16,
    /// Port of coordinator 1; coordinators 2 and 3 take the next two.
    #[arg(long, default_value_t = 9100)]
    pub base_port: u16,
    /// Port of worker 0; the others take the following ports.
    #[arg(long, default_value_t = 9000)]
    pub worker_base_port: u16,
    /// Port of the embedded MQTT broker.
    #[arg(long, default_value_t = 1883)]
    pub mqtt_port: u16,
    /// Use this external MQTT broker (e.g. mqtt://host:1883) instead of starting the embedded
    /// one; passed to every coordinator and worker for inter-pipeline routes.
    #[arg(long, env = "VARPULIS_MQTT_URL", value_name = "URL")]
    pub mqtt_url: Option<String>,
    /// API key of the coordinators.
    #[arg(long, default_value = "admin")]
    pub api_key: String,
    /// API key of the workers (the coordinators send it when they call a worker).
    #[arg(long, default_value = "test")]
    pub worker_api_key: String,
    /// Directory for the coordinators' data and every log (default: a fresh temporary
    /// directory, removed at exit; `./varpulis-local` with `--keep`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory at exit (and default it to `./varpulis-local`), so the next
    /// run recovers the cluster state.
    #[arg(long)]
    pub keep: bool,
    /// Serve HTTPS everywhere with a throwaway CA generated for this run (printed in the
    /// banner; use it with curl --cacert).
    #[arg(long)]
    pub tls: bool,
}

/// The throwaway CA and leaves of `varpulis local --tls`.
struct TlsDir {
    ca: PathBuf,
    coordinator: varpulis_tls::throwaway::IssuedFiles,
    worker: varpulis_tls::throwaway::IssuedFiles,
    broker: varpulis_tls::throwaway::IssuedFiles,
}

impl TlsDir {
    /// Generates a CA and one leaf for the coordinators, one for the workers, in `dir`.
    fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let ca = varpulis_tls::throwaway::ThrowawayCa::new("varpulis local throwaway CA")?;
        let ca_path = dir.join("ca.pem");
        ca.write_cert(&ca_path)?;
        let coordinator = ca.issue_files(
            dir,
            "coordinator",
            &["localhost", "127.0.0.1", "varpulis-coordinator"],
        )?;
        let worker = ca.issue_files(dir, "worker", &["localhost", "127.0.0.1"])?;
        let broker = ca.issue_files(dir, "broker", &["localhost", "127.0.0.1"])?;
        Ok(Self {
            ca: ca_path,
            coordinator,
            worker,
            broker,
        })
    }

    /// The `--tls-*` flags of a child using `leaf`.
    fn args(&self, leaf: &varpulis_tls::throwaway::IssuedFiles) -> Vec<String> {
        vec![
            "--tls-cert".to_owned(),
            leaf.cert.display().to_string(),
            "--tls-key".into(),
            leaf.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

/// A child process with its log file.
struct Managed {
    name: String,
    url: String,
    log: PathBuf,
    child: Child,
}

/// A child is never left behind, whatever ends the run (an error, a panic such as a failed
/// write to a closed stdout): dropping it kills it if it still runs, and reaps it.
impl Drop for Managed {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Managed {
    /// `NAME (pid N) exited (STATUS)` once the process has exited.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        Some(format!(
            "{} (pid {}) exited ({status})",
            self.name,
            self.child.id()
        ))
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let coord_ports = port_range(args.base_port, COORDINATORS, "--base-port")?;
    let worker_ports = port_range(args.worker_base_port, args.workers, "--worker-base-port")?;
    check_ports(
        &coord_ports,
        &worker_ports,
        args.mqtt_url.is_none().then_some(args.mqtt_port),
    )?;

    let (data_dir, remove_at_exit) = match (&args.data_dir, args.keep) {
        (Some(dir), _) => (dir.clone(), false),
        (None, true) => (PathBuf::from("varpulis-local"), false),
        (None, false) => {
            let dir = std::env::temp_dir().join(format!("varpulis-local-{}", std::process::id()));
            (dir, true)
        }
    };
    let log_dir = data_dir.join("logs");
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run_ensemble(&args, &coord_ports, &worker_ports, &data_dir));
    if remove_at_exit {
        if let Err(e) = std::fs::remove_dir_all(&data_dir) {
            eprintln!("warning: could not remove {}: {e}", data_dir.display());
        }
    }
    result
}

/// The broker every child uses for routes: `--mqtt-url`, else the embedded one.
fn mqtt_url(args: &Args) -> String {
    args.mqtt_url.clone().unwrap_or_else(|| {
        // The embedded broker speaks TLS under --tls.
        let scheme = if args.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", args.mqtt_port)
    })
}

/// `count` consecutive ports from `base`, or a clear error when they overflow.
fn port_range(base: u16, count: u16, flag: &str) -> anyhow::Result<Vec<u16>> {
    (0..count)
        .map(|i| base.checked_add(i).filter(|p| *p != 0))
        .collect::<Option<Vec<u16>>>()
        .with_context(|| format!("{flag} {base} leaves no room for {count} ports"))
}

/// Fails with a clear message when a port is used twice or already taken on 127.0.0.1.
fn check_ports(coords: &[u16], workers: &[u16], mqtt: Option<u16>) -> anyhow::Result<()> {
    let mut wanted: Vec<(u16, String)> = Vec::new();
    for (i, p) in coords.iter().enumerate() {
        wanted.push((*p, format!("coordinator {} (--base-port)", i + 1)));
    }
    for (i, p) in workers.iter().enumerate() {
        wanted.push((*p, format!("worker-{i} (--worker-base-port)")));
    }
    if let Some(mqtt) = mqtt {
        wanted.push((mqtt, "the MQTT broker (--mqtt-port)".to_owned()));
    }
    for (i, (port, what)) in wanted.iter().enumerate() {
        if let Some((_, other)) = wanted[..i].iter().find(|(p, _)| p == port) {
            bail!("port {port} is wanted by both {other} and {what}; choose other base ports");
        }
        if let Err(e) = TcpListener::bind(("127.0.0.1", *port)) {
            bail!("port {port} for {what} is not available on 127.0.0.1 ({e}); is another `varpulis local` running? Pick another port with the flag named");
        }
    }
    Ok(())
}

async fn run_ensemble(
    args: &Args,
    coord_ports: &[u16],
    worker_ports: &[u16],
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let log_dir = data_dir.join("logs");
    let tls = if args.tls {
        Some(TlsDir::generate(&data_dir.join("tls"))?)
    } else {
        None
    };
    let broker_tls = tls.as_ref().map(|t| varpulis_worker::BrokerTls {
        cert: t.broker.cert.clone(),
        key: t.broker.key.clone(),
    });
    let broker = match &args.mqtt_url {
        Some(_) => None,
        None => Some(
            varpulis_worker::broker::start_embedded_broker_with(args.mqtt_port, broker_tls)
                .with_context(|| {
                    format!(
                        "cannot start the MQTT broker on 127.0.0.1:{}",
                        args.mqtt_port
                    )
                })?,
        ),
    };

    let exe = std::env::current_exe().context("cannot find the varpulis executable")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let coord_urls: Vec<String> = coord_ports
        .iter()
        .map(|p| format!("{scheme}://127.0.0.1:{p}"))
        .collect();
    let peers = coord_urls.join(",");
    let mut children: Vec<Managed> = Vec::new();
    let secret = peer_secret();
    let join_token = peer_secret();

    let spawned = spawn_all(
        args,
        tls.as_ref(),
        &secret,
        &join_token,
        &exe,
        coord_ports,
        worker_ports,
        &peers,
        data_dir,
        &log_dir,
        &mut children,
    );
    let outcome = match spawned {
        Ok(()) => {
            wait_and_serve(
                args,
                tls.as_ref(),
                &coord_urls,
                &mut children,
                data_dir,
                &log_dir,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let grace = if outcome.is_ok() {
        STOP_GRACE
    } else {
        Duration::ZERO
    };
    stop_all(&mut children, grace);
    drop(broker);
    outcome
}

#[allow(clippy::too_many_arguments)]
fn spawn_all(
    args: &Args,
    tls: Option<&TlsDir>,
    peer_secret: &str,
    join_token: &str,
    exe: &Path,
    coord_ports: &[u16],
    worker_ports: &[u16],
    peers: &str,
    data_dir: &Path,
    log_dir: &Path,
    children: &mut Vec<Managed>,
) -> anyhow::Result<()> {
    for (i, port) in coord_ports.iter().enumerate() {
        let node = i + 1;
        let dir = data_dir.join(format!("coordinator-{node}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cmd_args = vec![
            "coordinator".to_owned(),
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--api-key".into(),
            args.api_key.clone(),
            "--raft-peers".into(),
            peers.to_owned(),
            "--raft-node-id".into(),
            node.to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--mqtt-url".into(),
            mqtt_url(args),
        ];
        if let Some(tls) = tls {
            cmd_args.extend(tls.args(&tls.coordinator));
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let name = format!("coordinator-{node}");
        children.push(spawn(
            exe,
            &name,
            &format!("{scheme}://127.0.0.1:{port}"),
            &cmd_args,
            &[
                ("VARPULIS_PEER_SECRET", peer_secret),
                ("VARPULIS_WORKER_TOKEN", join_token),
            ],
            log_dir,
        )?);
    }
    for (i, port) in worker_ports.iter().enumerate() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let id = format!("worker-{i}");
        let mut cmd_args = vec![
            "server".to_owned(),
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--api-key".into(),
            args.worker_api_key.clone(),
            "--coordinator".into(),
            peers.to_owned(),
            "--worker-id".into(),
            id.clone(),
            "--advertise-address".into(),
            url.clone(),
            "--mqtt-url".into(),
            mqtt_url(args),
        ];
        if let Some(tls) = tls {
            cmd_args.extend(tls.args(&tls.worker));
        }
        let env = [("VARPULIS_WORKER_TOKEN", join_token)];
        children.push(spawn(exe, &id, &url, &cmd_args, &env, log_dir)?);
    }
    Ok(())
}

/// A fresh random peer secret (two UUID v4: 244 random bits, hex).
fn peer_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn spawn(
    exe: &Path,
    name: &str,
    url: &str,
    args: &[String],
    env: &[(&str, &str)],
    log_dir: &Path,
) -> anyhow::Result<Managed> {
    let log = log_dir.join(format!("{name}.log"));
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    let child = Command::new(exe)
        .args(args)
        // The key is on the command line; keep the children from picking up a different one.
        .env_remove("VARPULIS_API_KEY")
        .env_remove("VARPULIS_COORDINATOR")
        .env_remove("VARPULIS_WORKER_ID")
        .env_remove("VARPULIS_WORKER_TOKEN")
        .env_remove("VARPULIS_RAFT_PEERS")
        .env_remove("VARPULIS_RAFT_NODE_ID")
        .env_remove("VARPULIS_DATA_DIR")
        .env_remove("VARPULIS_MQTT_URL")
        .env_remove("VARPULIS_PEER_SECRET")
        .env_remove("VARPULIS_TLS_CERT")
        .env_remove("VARPULIS_TLS_KEY")
        .env_remove("VARPULIS_TLS_CA")
        .env_remove("VARPULIS_TLS_CLIENT_CA")
        .env_remove("VARPULIS_TLS_PEER_NAME")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Managed {
        name: name.to_owned(),
        url: url.to_owned(),
        log,
        child,
    })
}

/// Fails when a child has exited, quoting the end of its log.
fn check_alive(children: &mut [Managed]) -> anyhow::Result<()> {
    for c in children.iter_mut() {
        if let Some(exit) = c.exited() {
            bail!("{exit}; end of {}:\n{}", c.log.display(), tail(&c.log, 20));
        }
    }
    Ok(())
}

async fn wait_and_serve(
    args: &Args,
    tls: Option<&TlsDir>,
    coord_urls: &[String],
    children: &mut [Managed],
    data_dir: &Path,
    log_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let client_tls = varpulis_tls::ClientTls::new(tls.map(|t| t.ca.as_path()), None)?;
    let http = client_tls
        .reqwest_builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the HTTP client")?;
    println!(
        "Starting 3 coordinators and {} workers (logs in {})...",
        args.workers,
        log_dir.display()
    );

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut interrupt = Box::pin(shutdown_signal());
    let leader = loop {
        check_alive(children)?;
        if let Some(l) = find_leader(&http, coord_urls).await {
            break l;
        }
        if Instant::now() > deadline {
            bail!(
                "no Raft leader after {STARTUP_TIMEOUT:?}; see the logs in {}",
                log_dir.display()
            );
        }
        tokio::select! {
            _ = &mut interrupt => return Ok(ExitCode::from(130)),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };
    let leader_url = &coord_urls[leader];
    loop {
        check_alive(children)?;
        let ready = ready_workers(&http, leader_url, &args.api_key).await;
        if ready >= usize::from(args.workers) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {ready} of {} workers registered after {STARTUP_TIMEOUT:?}; see the logs in {}",
                args.workers,
                log_dir.display()
            );
        }
        tokio::select! {
            _ = &mut interrupt => return Ok(ExitCode::from(130)),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }

    print_banner(args, tls, coord_urls, leader, children, data_dir, log_dir);

    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = &mut interrupt => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for (c, seen) in children.iter_mut().zip(reported.iter_mut()) {
            if !*seen {
                if let Some(exit) = c.exited() {
                    eprintln!(
                        "warning: {exit}; the others keep running. End of {}:\n{}",
                        c.log.display(),
                        tail(&c.log, 10)
                    );
                    *seen = true;
                }
            }
        }
    }
    // Whoever read the banner may be gone (its end of a pipe closed): say it if we can, and
    // stop the children either way.
    let _ = writeln!(std::io::stdout(), "\nStopping the ensemble...");
    Ok(ExitCode::SUCCESS)
}

fn print_banner(
    args: &Args,
    tls: Option<&TlsDir>,
    coord_urls: &[String],
    leader: usize,
    children: &[Managed],
    data_dir: &Path,
    log_dir: &Path,
) {
    let key = &args.api_key;
    // With --tls, curl verifies the coordinators against the run's CA.
    let curl = match tls {
        Some(tls) => format!("curl --cacert {}", tls.ca.display()),
        None => "curl".to_owned(),
    };
    // Any coordinator answers; show a follower to make the point that writes are proxied.
    let any = &coord_urls[(leader + 1) % coord_urls.len()];
    println!();
    println!("Varpulis local ensemble is ready");
    println!("================================");
    println!("Console:       {any}/ui/  (API key: {key})");
    for (i, url) in coord_urls.iter().enumerate() {
        let role = if i == leader { "  (leader)" } else { "" };
        let pid = children
            .get(i)
            .map_or_else(String::new, |c| format!("  pid {}", c.child.id()));
        println!("coordinator {}: {url}{pid}{role}", i + 1);
    }
    for c in children.iter().filter(|c| c.name.starts_with("worker-")) {
        println!(
            "{:<14} {}  pid {}",
            format!("{}:", c.name),
            c.url,
            c.child.id()
        );
    }
    println!("MQTT broker:   {}", mqtt_url(args));
    println!(
        "API key:       {key} (coordinators), {} (workers)",
        args.worker_api_key
    );
    if let Some(tls) = tls {
        println!(
            "TLS:           HTTPS only; throwaway CA {} (certificates in {})",
            tls.ca.display(),
            tls.ca
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
    }
    println!("Data dir:      {}", data_dir.display());
    println!("Logs:          {}/<name>.log", log_dir.display());
    println!();
    println!("Try it (any coordinator answers; writes are proxied to the leader):");
    println!();
    println!("{curl} -s {any}/api/v1/cluster/workers -H 'x-api-key: {key}'");
    println!();
    println!(
        "GROUP_ID=$({curl} -s -X POST {any}/api/v1/cluster/pipeline-groups -H 'x-api-key: {key}' \\\n  \
         -H 'Content-Type: application/json' \\\n  \
         -d '{{\"name\":\"demo\",\"pipelines\":[{{\"name\":\"alerts\",\"source\":\"stream Alerts = Reading .where(temperature > 100) .emit(sensor_id: sensor_id, temperature: temperature)\"}}],\"routes\":[{{\"from_pipeline\":\"_external\",\"to_pipeline\":\"alerts\",\"event_types\":[\"Reading*\"]}}]}}' \\\n  \
         | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p'); echo $GROUP_ID"
    );
    println!();
    println!(
        "{curl} -s -X POST {any}/api/v1/cluster/pipeline-groups/$GROUP_ID/inject -H 'x-api-key: {key}' \\\n  \
         -H 'Content-Type: application/json' \\\n  \
         -d '{{\"event_type\":\"Reading\",\"fields\":{{\"sensor_id\":\"T1\",\"temperature\":105.5}}}}'"
    );
    println!();
    println!("Press Ctrl-C to stop.");
}

/// Index of the coordinator every answering node agrees is the leader.
async fn find_leader(http: &reqwest::Client, urls: &[String]) -> Option<usize> {
    let mut leader = None;
    let mut views = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let metrics: Value = match http.get(format!("{url}/raft/metrics")).send().await {
            Ok(r) if r.status().is_success() => r.json().await.ok()?,
            _ => return None,
        };
        if metrics["state"] == "Leader" {
            leader = Some(i);
        }
        views.push(metrics["current_leader"].as_u64());
    }
    let l = leader?;
    let id = u64::try_from(l + 1).ok()?;
    views.iter().all(|v| *v == Some(id)).then_some(l)
}

/// Number of workers the coordinator lists as `ready` (0 when it does not answer).
async fn ready_workers(http: &reqwest::Client, url: &str, key: &str) -> usize {
    let resp = http
        .get(format!("{url}/api/v1/cluster/workers?limit=1000"))
        .header("x-api-key", key)
        .send()
        .await;
    let Ok(resp) = resp else { return 0 };
    let Ok(body) = resp.json::<Value>().await else {
        return 0;
    };
    body["workers"]
        .as_array()
        .map(|ws| ws.iter().filter(|w| w["status"] == "ready").count())
        .unwrap_or(0)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Stops every child: workers first, then coordinators. Children that already received the
/// terminal's SIGINT get a short grace period to exit on their own; the rest are killed.
/// Every child is waited for, so none is left behind.
fn stop_all(children: &mut [Managed], grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|c| matches!(c.child.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in children.iter_mut().rev() {
        if matches!(c.child.try_wait(), Ok(None)) {
            let _ = c.child.kill();
        }
        let _ = c.child.wait();
    }
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(32 * 1024)));
    let mut buf = String::new();
    let _ = file.read_to_string(&mut buf);
    let all: Vec<&str> = buf.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_gets_its_own_long_peer_secret() {
        let (a, b) = (peer_secret(), peer_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
