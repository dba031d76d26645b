//! `GET /v1/sources`, `POST /v1/sources/{name}/pause`, `POST /v1/sources/{name}/resume`,
//! and their part of the OpenAPI document ([`openapi`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;
use tracing::info;
use utoipa::{OpenApi, ToSchema};

use super::status::{SourceState, SourceStatus};
use super::supervisor::Supervisor;

/// The answer of `GET /v1/sources`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sources {
    /// Every source of this process.
    pub sources: Vec<SourceStatus>,
    /// Repeats the processor dropped, by the events' `source`; `null` when the processor
    /// runs in another process (its `/metrics` has them).
    pub duplicates: Option<BTreeMap<String, u64>>,
}

#[derive(OpenApi)]
#[openapi(
    paths(list, pause, resume),
    components(schemas(Sources, SourceStatus, SourceState)),
    tags((name = "sources", description = "The sources of a process that runs them (helios up, helios run ingest): state, counters, pause and resume")),
)]
struct SourcesDoc;

/// The routes of this module as an OpenAPI document, for a process that serves them to
/// merge into its own.
pub fn openapi() -> utoipa::openapi::OpenApi {
    SourcesDoc::openapi()
}

pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new()
        .route("/v1/sources", get(list))
        .route("/v1/sources/{name}/pause", post(pause))
        .route("/v1/sources/{name}/resume", post(resume))
        .with_state(supervisor)
}

/// The sources, and the repeats the processor dropped by the events' `source`.
#[utoipa::path(
    get,
    path = "/v1/sources",
    tag = "sources",
    responses((status = 200, description = "Every source with its state and counters", body = Sources)),
    security(("api_key" = []))
)]
async fn list(State(s): State<Arc<Supervisor>>) -> Response {
    axum::Json(Sources {
        sources: s.statuses(),
        duplicates: s.duplicates(),
    })
    .into_response()
}

/// Stops a source from taking events until it is resumed: a pull source stops reading
/// (it resumes where it stopped), a push route answers `503`. An `admin` key.
#[utoipa::path(
    post,
    path = "/v1/sources/{name}/pause",
    tag = "sources",
    params(("name" = String, Path, description = "The source's name in the spec")),
    responses(
        (status = 200, description = "The source, now paused", body = SourceStatus),
        (status = 404, description = "No source of that name", body = Object),
    ),
    security(("api_key" = []))
)]
async fn pause(State(s): State<Arc<Supervisor>>, Path(name): Path<String>) -> Response {
    set_paused(&s, &name, true)
}

/// Lets a paused source take events again. An `admin` key.
#[utoipa::path(
    post,
    path = "/v1/sources/{name}/resume",
    tag = "sources",
    params(("name" = String, Path, description = "The source's name in the spec")),
    responses(
        (status = 200, description = "The source, running again", body = SourceStatus),
        (status = 404, description = "No source of that name", body = Object),
    ),
    security(("api_key" = []))
)]
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
