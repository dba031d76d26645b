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
        .fallback(not_found)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": format!("no route for {}", uri.path()),
            "routes": [
                "POST /v1/events", "GET /v1/sources", "POST /v1/sources/{name}/pause|resume",
                "GET /healthz", "/subjects", "/schemas/ids/{id}", "/config", "/compatibility",
            ],
        })),
    )
}
