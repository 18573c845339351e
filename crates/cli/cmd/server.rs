//! `varpulis server`: a worker. Flags (and environment) become a `WorkerConfig`; the listener is
//! bound here and the worker runs until SIGTERM or Ctrl-C, then drains and exits 0.

use anyhow::Context;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;
use varpulis_worker::{PipelineLimits, WorkerConfig};

/// Flags of `varpulis server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port of the REST API.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// API key required in `x-api-key` (all routes but /health and /ready).
    #[arg(long, env = "VARPULIS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Coordinator URL(s), comma separated; tried in turn.
    #[arg(long, env = "VARPULIS_COORDINATOR", value_delimiter = ',')]
    coordinator: Vec<String>,
    /// Worker id (a UUID v4 when unset).
    #[arg(long, env = "VARPULIS_WORKER_ID")]
    worker_id: Option<String>,
    /// URL coordinators use to reach this worker (default http://BIND:PORT).
    #[arg(long)]
    advertise_address: Option<String>,
    /// Join token required by the coordinator.
    #[arg(long, env = "VARPULIS_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
    /// Label `key=value` reported at registration (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Most pipelines this worker accepts.
    #[arg(long, default_value_t = 100)]
    max_pipelines: u32,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5.0)]
    heartbeat_interval: f64,
    /// Seconds between checkpoint pushes to the coordinator (0 or unset: none; the coordinator
    /// then pulls checkpoints itself).
    #[arg(long, value_name = "SECS")]
    checkpoint_interval: Option<f64>,
    /// Keep each pipeline's deploy and last checkpoint in this directory (created 0700), so a
    /// restarted worker resumes its pipelines' state; without coordinators it also deploys
    /// them again at start.
    #[arg(long, env = "VARPULIS_STATE_DIR", value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Seconds between local checkpoints into --state-dir (pipelines whose state moved).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    state_interval: f64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    body_limit: usize,
    /// MQTT broker for inter-pipeline routes (e.g. mqtt://host:1883); wins over the
    /// coordinator's --mqtt-url shipped in deploys.
    #[arg(long, env = "VARPULIS_MQTT_URL", value_name = "URL")]
    mqtt_url: Option<String>,
    /// Coordinator transport: http or nats (nats needs --nats-url instead of --coordinator).
    #[arg(long, env = "VARPULIS_TRANSPORT", default_value = "http")]
    transport: varpulis_worker::Transport,
    /// NATS server(s) for --transport nats (e.g. nats://127.0.0.1:4222).
    #[arg(long, env = "VARPULIS_NATS_URL", value_name = "URL")]
    nats_url: Option<String>,
    /// Loop steps one stream may spend on one event before the event is rejected
    /// (default: the runtime's per-event step budget).
    #[arg(long, value_name = "STEPS")]
    step_budget: Option<u64>,
    /// Most output events one input event may produce before it is rejected (default 100000).
    #[arg(long, value_name = "N")]
    max_outputs_per_event: Option<usize>,
    /// Most output events one inject answer carries; the rest are published but left out
    /// (default 100000).
    #[arg(long, value_name = "N")]
    max_outputs_per_response: Option<usize>,
    /// Consecutive budget errors after which a pipeline is marked failed and refuses events
    /// (0: never; default 5).
    #[arg(long, value_name = "N")]
    fail_after_budget_errors: Option<u32>,
    /// Most live partial matches one sequence stream keeps (default: the runtime's).
    #[arg(long, value_name = "N")]
    max_sequence_runs: Option<usize>,
    #[command(flatten)]
    tls: super::tls::ServerTlsArgs,
    #[command(flatten)]
    conns: super::conns::ConnArgs,
    /// Serve Prometheus metrics on `GET /metrics` (the tutorial's production checklist flag).
    /// Accepted for compatibility: metrics are always on, so it changes nothing.
    #[arg(long)]
    #[allow(dead_code)] // accepted only; see the doc comment
    metrics: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{s}` is not key=value")),
    }
}

fn config(args: Args) -> anyhow::Result<WorkerConfig> {
    let host = if args.bind == "0.0.0.0" || args.bind == "::" {
        "127.0.0.1".to_owned()
    } else {
        args.bind.clone()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let heartbeat =
        Duration::try_from_secs_f64(args.heartbeat_interval).context("--heartbeat-interval")?;
    let scheme = if args.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let defaults = PipelineLimits::default();
    let limits = PipelineLimits {
        step_budget: args.step_budget.unwrap_or(defaults.step_budget),
        max_outputs_per_event: args
            .max_outputs_per_event
            .unwrap_or(defaults.max_outputs_per_event),
        max_outputs_per_response: args
            .max_outputs_per_response
            .unwrap_or(defaults.max_outputs_per_response),
        fail_after_budget_errors: args
            .fail_after_budget_errors
            .unwrap_or(defaults.fail_after_budget_errors),
        max_sequence_runs: args.max_sequence_runs.unwrap_or(defaults.max_sequence_runs),
        ..defaults
    };
    let cfg = WorkerConfig {
        advertise_address: args
            .advertise_address
            .unwrap_or_else(|| format!("{scheme}://{host}:{}", args.port)),
        bind: args.bind,
        port: args.port,
        api_key: args.api_key.filter(|k| !k.is_empty()),
        coordinators: args
            .coordinator
            .into_iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect(),
        worker_id: args
            .worker_id
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        worker_token: args.worker_token.filter(|t| !t.is_empty()),
        checkpoint_interval: match args.checkpoint_interval {
            Some(secs) if secs > 0.0 => {
                Some(Duration::try_from_secs_f64(secs).context("--checkpoint-interval")?)
            }
            _ => None,
        },
        heartbeat_interval: heartbeat,
        state_dir: args.state_dir,
        state_interval: Duration::try_from_secs_f64(args.state_interval)
            .context("--state-interval")?,
        max_pipelines: args.max_pipelines,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        body_limit: args.body_limit,
        mqtt_url: args.mqtt_url.filter(|u| !u.trim().is_empty()),
        transport: args.transport,
        nats_url: args.nats_url.filter(|u| !u.trim().is_empty()),
        limits,
        ..WorkerConfig::default()
    };
    let mut cfg = cfg;
    args.tls.overlay(&mut cfg.tls);
    args.conns.overlay(&mut cfg.conns);
    cfg.validate()?;
    Ok(cfg)
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _log_guard = super::logging::init();
    let cfg = config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", cfg.bind, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let local = listener.local_addr()?;
        println!(
            "varpulis worker {} listening on {}://{local}",
            cfg.worker_id,
            cfg.tls.scheme()
        );
        if let Some(url) = cfg
            .nats_url
            .as_deref()
            .filter(|_| cfg.coordinators.is_empty())
        {
            println!(
                "  coordinators via NATS {url} (advertised as {})",
                cfg.advertise_address
            );
        } else if cfg.coordinators.is_empty() {
            println!("  standalone (no --coordinator)");
        } else {
            println!(
                "  coordinators: {} (advertised as {})",
                cfg.coordinators.join(", "),
                cfg.advertise_address
            );
        }
        if let Some(dir) = &cfg.state_dir {
            println!("  state dir: {}", dir.display());
        }
        varpulis_worker::run(cfg, listener, shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn metrics_flag_is_accepted() {
        let parsed = Cli::try_parse_from(["server", "--metrics", "--port", "9001"]);
        assert!(parsed.is_ok_and(|c| c.args.metrics && c.args.port == 9001));
    }
}
