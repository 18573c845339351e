//! `GET /health`, `GET /ready` and `GET /metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use varpulis_api::worker::{HealthResponse, WorkerCounts};
use varpulis_api::{Code, ErrorBody};
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::ClusterState;

use crate::http::error::RETRY_AFTER_SECS;
use crate::metrics::gauge;
use crate::node::AppState;

/// Entries a node may trail its own log by and still call itself ready (in-flight appends).
const READY_LAG: u64 = 64;

fn worker_counts(s: &ClusterState) -> WorkerCounts {
    let mut counts = WorkerCounts {
        total: s.worker_count(),
        ..Default::default()
    };
    for w in s.workers() {
        match w.status {
            WorkerStatus::Ready => counts.ready += 1,
            WorkerStatus::Unhealthy => counts.unhealthy += 1,
            _ => {}
        }
    }
    counts
}

/// `GET /health`: always 200 while the process serves; says who leads.
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    let view = state.raft.metrics_summary();
    Json(HealthResponse {
        role: "coordinator".to_string(),
        status: "healthy".to_string(),
        version: varpulis_api::VERSION.to_string(),
        raft_role: Some(view.state.clone()),
        leader_id: view.current_leader,
        workers: Some(state.read(worker_counts)),
        worker_id: None,
        ws_connections: Some(state.sessions.load(std::sync::atomic::Ordering::Relaxed)),
    })
}

/// `GET /ready`: 200 when this node can serve linearizable reads and writes: it knows a leader,
/// that leader holds a quorum (a leader that has not heard from a quorum for
/// `RaftNode::quorum_loss_after` answers 503), and this node has applied what it has in its log.
/// docs/operations.md ("Health and readiness") documents each reason.
pub async fn ready(State(state): State<AppState>) -> Response {
    let view = state.raft.metrics_summary();
    let applied = view.last_applied.unwrap_or(0);
    let last_log = view.last_log_index.unwrap_or(0);
    let caught_up = applied.saturating_add(READY_LAG) >= last_log;
    let lost_quorum = state.raft.leader_lost_quorum();
    let reason = if view.current_leader.is_none() {
        Some("no leader known")
    } else if lost_quorum {
        Some("this node leads but has not heard from a quorum of voters (quorum lost?)")
    } else if !caught_up {
        Some("catching up with the log")
    } else {
        None
    };
    let body = json!({
        "ready": reason.is_none(),
        "node_id": state.node_id,
        "raft_role": view.state,
        "leader_id": view.current_leader,
        "quorum": !lost_quorum && view.current_leader.is_some(),
        "last_applied": view.last_applied,
        "last_log_index": view.last_log_index,
    });
    let Some(reason) = reason else {
        return (StatusCode::OK, Json(body)).into_response();
    };
    let mut error = serde_json::to_value(ErrorBody::new(
        Code::NotReady,
        format!("not ready: {reason}"),
    ))
    .unwrap_or_else(|_| json!({}));
    if let (Some(map), Some(extra)) = (error.as_object_mut(), body.as_object()) {
        map.extend(extra.clone());
    }
    let status =
        StatusCode::from_u16(Code::NotReady.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = (status, Json(error)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    response
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    // No state hash here: hashing costs as much as the state is large. The disk size walks
    // sled's files: on the blocking pool.
    let mut view = state.raft.metrics_summary();
    let raft = state.raft.clone();
    view.data_size_bytes = tokio::task::spawn_blocking(move || raft.data_size_bytes())
        .await
        .ok()
        .flatten();
    let mut out = String::new();
    gauge(
        &mut out,
        "varpulis_raft_term",
        "Current Raft term",
        view.current_term,
    );
    gauge(
        &mut out,
        "varpulis_raft_is_leader",
        "1 when this node is the leader",
        u8::from(view.state == "Leader"),
    );
    gauge(
        &mut out,
        "varpulis_raft_leader_id",
        "Id of the known leader (0 = none)",
        view.current_leader.unwrap_or(0),
    );
    gauge(
        &mut out,
        "varpulis_raft_applied_index",
        "Last applied log index",
        view.last_applied.unwrap_or(0),
    );
    gauge(
        &mut out,
        "varpulis_raft_last_log_index",
        "Last log index",
        view.last_log_index.unwrap_or(0),
    );
    gauge(
        &mut out,
        "varpulis_raft_voters",
        "Voters in the membership",
        view.membership.len(),
    );
    gauge(
        &mut out,
        "varpulis_raft_learners",
        "Learners in the membership",
        view.learners.len(),
    );
    if let Some(bytes) = view.data_size_bytes {
        gauge(
            &mut out,
            "varpulis_raft_data_size_bytes",
            "Bytes of Raft storage (sled) on this node's disk",
            bytes,
        );
    }
    let _ = std::fmt::Write::write_fmt(
        &mut out,
        format_args!(
            "# HELP varpulis_state_info Hash of the applied cluster state\n# TYPE varpulis_state_info gauge\n\
             varpulis_state_info{{state_hash=\"{}\",applied=\"{}\"}} 1\n",
            view.state_hash,
            view.last_applied.unwrap_or(0)
        ),
    );
    let (by_status, groups, placements_running, migrations) = state.read(|s| {
        let mut by_status = std::collections::BTreeMap::new();
        for status in WorkerStatus::ALL {
            by_status.insert(status.as_str(), 0usize);
        }
        for w in s.workers() {
            *by_status.entry(w.status.as_str()).or_default() += 1;
        }
        let running = s
            .groups()
            .into_iter()
            .flat_map(|g| &g.placements)
            .filter(|p| p.status == varpulis_cluster::group::PlacementStatus::Running)
            .count();
        (by_status, s.group_count(), running, migration_counts(s))
    });
    out.push_str(
        "# HELP varpulis_workers Registered workers by status\n# TYPE varpulis_workers gauge\n",
    );
    for (status, n) in by_status {
        out.push_str(&format!("varpulis_workers{{status=\"{status}\"}} {n}\n"));
    }
    gauge(
        &mut out,
        "varpulis_pipeline_groups",
        "Pipeline groups",
        groups,
    );
    gauge(
        &mut out,
        "varpulis_placements_running",
        "Placements in state Running",
        placements_running,
    );
    let (by_migration_status, started) = migrations;
    out.push_str(
        "# HELP varpulis_migrations Migrations kept (every active one, the last finished ones) by status\n\
         # TYPE varpulis_migrations gauge\n",
    );
    for (status, n) in by_migration_status {
        out.push_str(&format!("varpulis_migrations{{status=\"{status}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP varpulis_migrations_started_total Migrations started since the cluster was created\n\
         # TYPE varpulis_migrations_started_total counter\n",
    );
    out.push_str(&format!("varpulis_migrations_started_total {started}\n"));
    state.metrics().render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Kept migrations by status (every status listed, zeros included) and the number ever started
/// (sequence numbers grow by one per migration and the newest one is always kept).
fn migration_counts(s: &ClusterState) -> (Vec<(&'static str, usize)>, u64) {
    use varpulis_cluster::migration::MigrationStatus;
    let mut counts: Vec<(&'static str, usize)> = [
        MigrationStatus::Pending,
        MigrationStatus::Deploying,
        MigrationStatus::Completed,
        MigrationStatus::Failed,
    ]
    .iter()
    .map(|st| (st.as_str(), 0))
    .collect();
    let mut started = 0u64;
    for m in s.migrations() {
        if let Some(entry) = counts
            .iter_mut()
            .find(|(name, _)| *name == m.status.as_str())
        {
            entry.1 += 1;
        }
        started = started.max(m.seq.saturating_add(1));
    }
    (counts, started)
}
