//! The coordinator's HTTP API: routing, authentication, the follower → leader proxy, error
//! rendering, and one module per resource whose handlers only translate HTTP to calls.
//!
//! Layering (outermost first): API key (or worker token on the worker routes, [`auth`]) →
//! leader gate ([`proxy`]: forward writes to the leader, linearizable reads) → handler. The
//! first two run as one hand-written service ([`gate`]): a `from_fn` layer costs a boxed
//! service clone and boxed futures per request, and the write routes are hot (issue 24).
//! `/health` and `/ready` are open. The Raft routes (`/raft/*`) come from
//! `varpulis_raft::router` and carry their own auth.

pub mod applied;
pub mod auth;
pub mod body_cap;
pub mod connectors;
pub mod console;
pub mod edge;
pub mod error;
pub mod events;
pub mod extract;
pub mod forward_batch;
pub mod forward_wire;
pub mod forwarder;
pub mod gate;
pub mod groups;
pub mod health;
pub mod migrations;
pub mod operations;
pub mod output;
pub mod proxy;
pub mod session;
pub mod snapshot;
pub mod workers;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;
use tower::util::MapResponseLayer;

use crate::http::error::{json_errors, not_found};
use crate::http::gate::{Credential, GateLayer};
use crate::node::AppState;

const GROUPS: &str = "/api/v1/cluster/pipeline-groups";

/// The API router (without `/raft/*`).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/cluster/workers", get(workers::list))
        .route("/api/v1/cluster/workers/{id}", get(workers::get))
        .route(GROUPS, post(groups::create).get(groups::list))
        .route(
            &format!("{GROUPS}/{{id}}"),
            get(groups::get)
                .delete(groups::delete)
                .put(groups::rollout::update),
        )
        .route(
            &format!("{GROUPS}/{{id}}/inject"),
            post(groups::inject::inject),
        )
        .route(
            &format!("{GROUPS}/{{id}}/inject-batch"),
            post(groups::inject::inject_batch),
        )
        .route("/api/v1/cluster/topology", get(groups::topology))
        .route(
            "/api/v1/cluster/connectors",
            post(connectors::create).get(connectors::list),
        )
        .route(
            "/api/v1/cluster/connectors/{name}",
            get(connectors::get)
                .put(connectors::update)
                .delete(connectors::delete),
        )
        .route(
            "/api/v1/cluster/workers/{id}/drain",
            post(operations::drain),
        )
        .route("/api/v1/cluster/rebalance", post(operations::rebalance))
        .route("/api/v1/cluster/migrations", get(migrations::list))
        .route("/api/v1/cluster/events", get(events::stream_events))
        .route(
            &format!("{GROUPS}/{{id}}/output"),
            get(output::stream_group_output),
        )
        .route(
            &format!("{GROUPS}/{{id}}/rollback"),
            post(groups::rollout::rollback),
        )
        .route(
            &format!("{GROUPS}/{{id}}/versions"),
            get(groups::rollout::versions),
        )
        .route("/api/v1/cluster/snapshot", get(snapshot::get))
        .route("/metrics", get(health::metrics))
        .layer(GateLayer::new(state.clone(), Credential::ApiKey));
    let worker_routes = Router::new()
        // A registration larger than its fields' limits allow is refused before it is parsed
        // (docs/security.md): a 9 MB body must not cost the leader a 9 MB parse.
        .route(
            "/api/v1/cluster/workers/register",
            post(workers::register).layer(from_fn_with_state(
                state.clone(),
                body_cap::cap_registration,
            )),
        )
        .route(
            "/api/v1/cluster/workers/{id}/heartbeat",
            post(workers::heartbeat),
        )
        .route(
            "/api/v1/cluster/workers/{id}/checkpoints",
            post(workers::push_checkpoint),
        )
        .route(
            "/api/v1/cluster/workers/{id}/session",
            get(session::session),
        )
        .route(
            "/api/v1/cluster/workers/{id}/suspect",
            post(session::suspect),
        )
        .layer(GateLayer::new(state.clone(), Credential::WorkerToken));
    // A deregistration comes from an operator (cluster API key) or from the worker itself (its
    // own key): the worker's graceful shutdown deregisters with the key it registered with.
    let deregistration = Router::new()
        .route("/api/v1/cluster/workers/{id}", delete(workers::delete))
        .layer(GateLayer::new(state.clone(), Credential::Checked))
        .route_layer(from_fn_with_state(
            state.clone(),
            auth::require_operator_or_worker,
        ));
    let open = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready));
    Router::new()
        .merge(api)
        .merge(worker_routes)
        .merge(deregistration)
        .merge(open)
        .fallback(not_found)
        // One layer (one boxed service per route) for both: JSON error bodies outside, the body
        // limit inside, as two `.layer` calls would order them.
        .layer(
            tower::ServiceBuilder::new()
                .layer(MapResponseLayer::new(json_errors))
                .layer(DefaultBodyLimit::max(state.config.body_limit)),
        )
        .with_state(state)
}
