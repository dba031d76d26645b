//! Health routes: `GET /healthz` (the process serves HTTP) and `GET /readyz` (the store
//! answers queries), shared by every router of [`crate::app`] and described in the
//! OpenAPI document.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{info, warn};

use crate::state::ApiState;

/// `GET /healthz`: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Object))
)]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers queries.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = Object),
        (status = 503, description = "The store does not answer; the reason says why"),
    )
)]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    // Anyone may ask, so the answer names the kind of store only: where it is (a URL, a
    // directory) and why it fails go to the log, once per change.
    let store = match state.store.dialect() {
        crate::store::Dialect::ClickHouse => "clickhouse",
        crate::store::Dialect::DataFusion => "embedded",
    };
    match state.store.ready().await {
        Ok(()) => {
            if READY_FAILING.swap(false, Ordering::Relaxed) {
                info!(store = %state.store.describe(), "The store answers again.");
            }
            axum::Json(json!({"status": "ready", "store": store})).into_response()
        }
        Err(e) => {
            if !READY_FAILING.swap(true, Ordering::Relaxed) {
                warn!(store = %state.store.describe(), error = %e, "The store does not answer; /readyz says not ready.");
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({
                    "status": "not ready",
                    "store": store,
                    "error": "the store does not answer queries; the server's log says why",
                })),
            )
                .into_response()
        }
    }
}

/// Whether the last `/readyz` found the store failing, so the log says it once per change.
static READY_FAILING: AtomicBool = AtomicBool::new(false);
