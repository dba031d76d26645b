//! The insights routes: answers over the store's tables, the same on ClickHouse and on
//! the embedded store.
//!
//! - [`series`]: `GET /v1/insights/timeseries` and `GET /v1/insights/top`, combining an
//!   aggregate's windows by the rules of [`combine`].
//! - [`records`]: `GET /v1/alerts`, `GET /v1/insights`, `GET /v1/events` (cursor pages).
//! - [`subjects`]: `GET /v1/subjects/{subject}`.
//! - [`late`]: `GET /v1/late`, late events per aggregate and rule.
//! - `GET /v1/aggregates`: the catalog, so clients know what to ask for.
//!
//! Names in a request (aggregate, measure, group key) must be in the catalog; values are
//! bound parameters. Unknown parameters are a 400, never ignored.

mod combine;
pub mod late;
pub mod params;
pub mod records;
pub mod series;
pub mod subjects;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::catalog::Catalog;
use crate::state::ApiState;

/// The insights routes over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/aggregates", get(aggregates))
        .route("/v1/insights/timeseries", get(series::timeseries))
        .route("/v1/insights/top", get(series::top))
        .route("/v1/insights", get(records::insights))
        .route("/v1/alerts", get(records::alerts))
        .route("/v1/events", get(records::events))
        .route("/v1/subjects/{subject}", get(subjects::subject))
        .route("/v1/late", get(late::late))
        .with_state(state)
}

/// `GET /v1/aggregates`.
#[utoipa::path(
    get,
    path = "/v1/aggregates",
    tag = "insights",
    responses((status = 200, description = "The aggregates, their group keys, measures and windows", body = Catalog)),
    security(("api_key" = []))
)]
pub async fn aggregates(State(state): State<ApiState>) -> Json<Catalog> {
    Json(state.catalog.as_ref().clone())
}
