//! The web console: a browser UI served by every coordinator at `/ui/` (`/` redirects there).
//!
//! The pages are plain HTML, CSS and JavaScript modules embedded in the binary at compile time
//! ([`assets`]); nothing is fetched from elsewhere and there is no build step. The page reads the
//! cluster through the public API with the operator's key (`x-api-key`), so it shows exactly
//! what curl would. Two small routes were added for it and documented like the rest
//! (`docs/api.md`): VPL validation without deploying ([`check`]) and the per-pipeline counters
//! of a group ([`pipeline_metrics`]).
//!
//! [`guard::Guard`] wraps the whole router: security headers and a Content-Security-Policy on every
//! answer, CORS for the other members' origins (so a console whose node dies carries on through
//! another member) and a refusal of cross-site writes.

pub mod assets;
pub mod check;
pub mod guard;
pub mod origin;
pub mod pipeline_metrics;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{get, post};
use axum::Router;

use crate::node::AppState;

/// Adds the console pages and routes to a coordinator's `app` (API + `/raft/*`); `server::run`
/// then wraps the result in [`guard::Guard`].
pub fn attach(app: Router, state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(assets::root))
        .route("/ui", get(assets::ui_redirect))
        .route("/ui/", get(assets::index))
        .route("/ui/{*asset}", get(assets::asset));
    let api = Router::new()
        .route("/api/v1/cluster/validate", post(check::validate))
        .route(
            "/api/v1/cluster/pipeline-groups/{id}/metrics",
            get(pipeline_metrics::group_metrics),
        )
        .layer(map_response(guard::json_method_errors))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(from_fn_with_state(
            state.clone(),
            crate::http::auth::require_api_key,
        ));
    let console = pages.merge(api).with_state(state.clone());
    app.merge(console)
}
