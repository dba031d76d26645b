//! The whole HTTP surface of a Helios process: the routes of each part, merged, plus
//! health and a JSON 404.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use helios_schemas::Registry;
use serde_json::json;

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

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    // Ingest routes exist only for the sources the spec declares, so say where to look
    // rather than list routes this process may not serve.
    let hint = if uri.path().starts_with("/v1/events") || uri.path().starts_with("/v1/webhooks/") {
        "no source serves this route: declare it in the spec (`[[source]]` of type http, github or webhook); GET /v1/sources lists the running sources"
    } else {
        "Helios serves /v1/events and /v1/webhooks/* (per the spec's sources), /v1/sources, /healthz and the schema registry (/subjects, /schemas/ids/{id}, /config, /compatibility)"
    };
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": format!("no route for {}", uri.path()),
            "hint": hint,
        })),
    )
}
