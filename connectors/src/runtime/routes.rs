//! `GET /v1/sources`, `POST /v1/sources/{name}/pause`, `POST /v1/sources/{name}/resume`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tracing::info;

use super::supervisor::Supervisor;

pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new()
        .route("/v1/sources", get(list))
        .route("/v1/sources/{name}/pause", post(pause))
        .route("/v1/sources/{name}/resume", post(resume))
        .with_state(supervisor)
}

/// The sources, and the repeats the processor dropped by the events' `source` (`null`
/// when the processor runs in another process: see its `/metrics`).
async fn list(State(s): State<Arc<Supervisor>>) -> Response {
    axum::Json(json!({ "sources": s.statuses(), "duplicates": s.duplicates() })).into_response()
}

async fn pause(State(s): State<Arc<Supervisor>>, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, true)
}

async fn resume(State(s): State<Arc<Supervisor>>, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, false)
}

fn set_paused(s: &Supervisor, name: &str, paused: bool) -> Response {
    match s.get(name) {
        Ok(handle) => {
            if paused {
                handle.pause();
            } else {
                handle.resume();
            }
            info!(source = name, paused, "Source pause state changed.");
            axum::Json(handle.status()).into_response()
        }
        Err(e) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
