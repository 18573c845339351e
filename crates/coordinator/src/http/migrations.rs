//! `GET /api/v1/cluster/migrations`: placement moves, newest last.

use axum::extract::State;
use axum::Json;
use varpulis_api::cluster::MigrationList;
use varpulis_api::Page;

use crate::http::extract::ApiQuery;
use crate::node::AppState;

/// `GET /api/v1/cluster/migrations`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Json<MigrationList> {
    let all = state.read(varpulis_cluster::views::migration_views);
    let (migrations, total, pagination) = page.apply(all);
    Json(MigrationList {
        migrations,
        total,
        pagination,
    })
}
