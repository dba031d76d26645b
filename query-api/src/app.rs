//! The whole HTTP surface of a Helios process: the routes of each part, merged, plus
//! health ([`crate::health`]) and a JSON 404.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use helios_schemas::Registry;
use serde_json::json;

use crate::health::{healthz, readyz};
use crate::state::ApiState;

/// `ingest` is the connectors' router (`POST /v1/events`); the registry routes are served
/// at the root like Confluent's, so registry clients need only the base URL.
pub fn router(ingest: Router, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(ingest)
        .merge(crate::registry::router(registry))
        .merge(crate::dashboard::router())
        .fallback(not_found)
}

/// The read API alone (`helios serve api`): health, the read routes and the dashboard.
pub fn api_router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(read_router(state))
        .merge(crate::dashboard::router())
        .fallback(not_found)
}

/// The read API over a store: insights, SQL, readiness and the OpenAPI document. Merged
/// into [`router`]'s app by every process that serves queries.
pub fn read_router(state: ApiState) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/v1/sql", post(crate::sql::run))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .with_state(state.clone())
        .merge(crate::insights::router(state))
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    // Ingest routes exist only for the sources the spec declares, so say where to look
    // rather than list routes this process may not serve.
    let hint = if uri.path().starts_with("/v1/events") || uri.path().starts_with("/v1/webhooks/") {
        "no source serves this route: declare it in the spec (`[[source]]` of type http, github or webhook); GET /v1/sources lists the running sources"
    } else {
        "Helios serves the dashboard at /, the insights API (/v1/aggregates, /v1/insights/timeseries, /v1/insights/top, /v1/alerts, /v1/insights, /v1/events, /v1/subjects/{subject}, /v1/late, POST /v1/sql; GET /openapi.json describes them), /v1/events and /v1/webhooks/* (per the spec's sources), /v1/sources, /v1/storage, /healthz, /readyz, /metrics and the schema registry (/subjects, /schemas/ids/{id}, /config, /compatibility)"
    };
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": format!("no route for {}", uri.path()),
            "hint": hint,
        })),
    )
}
