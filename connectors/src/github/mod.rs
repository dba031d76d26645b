//! GitHub webhooks: `POST /v1/webhooks/github/{source}` into `helios.events`.
//!
//! Owns the signature check (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body with the
//! source's secret, compared in constant time; anything else is `401` and nothing is
//! written). The body must be read to be verified, so an unverified body is read only
//! after the cheap checks (a signature header of the right shape, a `Content-Length`
//! within the limit) and only within the byte budget all unverified bodies share
//! ([`crate::body::UnverifiedBodies`]; spent: `503` with `Retry-After`, unread) and the mapping of GitHub's event types to events ([`events`]). The delivery
//! id (`X-GitHub-Delivery`) is the event id, so redeliveries dedupe downstream. `ping`
//! answers `200` without writing. The `202` is sent once the event is durable.

mod config;
pub mod events;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tracing::debug;
use utoipa::ToSchema;

pub use config::GithubConfig;

use crate::body::{UnverifiedBodies, budget_spent, content_length, read_limited};
use crate::push::{PushGate, error};
use crate::runtime::{Emitter, SourceHandle, now_micros};
use crate::secret::{SecretString, unhex};

type HmacSha256 = Hmac<Sha256>;

/// Verifies an `X-Hub-Signature-256` header value (`sha256=<hex>`) for `body`.
///
/// The comparison is constant-time (`Mac::verify_slice`).
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => verify_with(mac, body, header),
        Err(_) => false,
    }
}

fn verify_with(mut mac: HmacSha256, body: &[u8], header: &str) -> bool {
    let Some(expected) = expected_signature(header) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The 32 bytes an `X-Hub-Signature-256` value (`sha256=<64 hex digits>`) carries.
fn expected_signature(header: &str) -> Option<Vec<u8>> {
    header
        .strip_prefix("sha256=")
        .and_then(unhex)
        .filter(|b| b.len() == 32)
}

/// The GitHub webhook sources, all served by one route keyed by source name.
#[derive(Debug, Clone, Default)]
pub struct GithubWebhooks {
    sources: HashMap<String, Arc<GithubSource>>,
    /// Bytes of bodies being read before their signature is checked, shared by every
    /// source (and, through the clone, every route given the same budget).
    unverified: UnverifiedBodies,
}

/// One configured GitHub source.
struct GithubSource {
    config: GithubConfig,
    /// The HMAC keyed with the secret, cloned per delivery.
    mac: HmacSha256,
    gate: PushGate,
}

impl std::fmt::Debug for GithubSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GithubWebhooks {
    /// No sources yet; unverified bodies draw on `budget`.
    pub fn with_budget(budget: UnverifiedBodies) -> Self {
        GithubWebhooks {
            sources: HashMap::new(),
            unverified: budget,
        }
    }

    /// Adds a source; `secret` is the resolved webhook secret, `handle` its status.
    pub fn add(
        &mut self,
        config: GithubConfig,
        secret: &SecretString,
        emitter: Emitter,
        handle: SourceHandle,
    ) -> crate::Result<()> {
        let mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).map_err(|e| {
            crate::ConnectorError::config(&config.name, format!("unusable secret: {e}"))
        })?;
        let gate = PushGate::new(handle, emitter, config.max_in_flight);
        self.sources.insert(
            config.name.clone(),
            Arc::new(GithubSource { config, mac, gate }),
        );
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The route, ready to merge into the API router.
    pub fn router(&self) -> Router {
        let limit = self
            .sources
            .values()
            .map(|s| s.config.max_body_bytes)
            .max()
            .unwrap_or(0);
        Router::new()
            .route("/v1/webhooks/github/{source}", post(deliver))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(Arc::new(self.clone()))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to GitHub's `ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pong {
    pub ok: bool,
    /// The source that answered.
    pub source: String,
}

/// A GitHub webhook delivery; `202` once its event is durable.
///
/// Checked against the source's secret and mapped to an event by its `X-GitHub-Event`;
/// its `X-GitHub-Delivery` is the event id, so a redelivery is applied once. `ping` is
/// answered without writing.
#[utoipa::path(
    post,
    path = "/v1/webhooks/github/{source}",
    operation_id = "github_delivery",
    tag = "ingest",
    params(
        ("source" = String, Path, description = "The GitHub source's name in the spec"),
        ("X-GitHub-Event" = String, Header, description = "The event type (`push`, `workflow_run`, `ping`, …)"),
        ("X-GitHub-Delivery" = Option<String>, Header, description = "The delivery's id: the event id"),
    ),
    request_body(content = Object, description = "GitHub's payload, content type application/json", content_type = "application/json"),
    responses(
        (status = 200, description = "A `ping`, answered; nothing written", body = Pong),
        (status = 202, description = "Written and durable", body = crate::push::Delivered),
        (status = 400, description = "No X-GitHub-Event, or a payload that is not the event's JSON", body = crate::push::PushError),
        (status = 401, description = "X-Hub-Signature-256 missing or not the body's HMAC with the source's secret", body = crate::push::PushError),
        (status = 404, description = "No GitHub source of that name", body = crate::push::PushError),
        (status = 413, description = "The body is over the source's `max_body_bytes`", body = crate::push::PushError),
        (status = 415, description = "A form-encoded delivery (set the webhook's content type to application/json)", body = crate::push::PushError),
        (status = 503, description = "The source is paused, at capacity, the unverified-body budget is spent, or the log failed: nothing was written; see Retry-After", body = crate::push::PushError),
        (status = 507, description = "The data dir's disk is nearly full: nothing was written; see Retry-After", body = crate::push::PushError),
    ),
    security(("github_signature" = []))
)]
pub(crate) async fn deliver(
    State(hooks): State<Arc<GithubWebhooks>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(source) = hooks.sources.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no GitHub webhook source named `{name}`; configure a `[[source]] type = \"github\"` with that name"
            ),
        );
    };
    // Cheap checks first: nothing of the body is read for a request that fails them.
    let Some(signature) = header_str(&headers, "x-hub-signature-256") else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256; set a secret in the GitHub webhook settings",
        );
    };
    if expected_signature(signature).is_none() {
        return bad_signature(&name);
    }
    let limit = source.config.max_body_bytes;
    let declared = content_length(&headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return crate::body::too_large(limit);
    }
    // The body must be read to be verified: within the budget all unverified bodies
    // share, reserving what the request says it sends (or its limit, if it does not say).
    let reserve = declared.map_or(limit, |n| n as usize);
    let Some(reserved) = hooks.unverified.try_reserve(reserve) else {
        debug!(source = %name, bytes = reserve, "Turned a GitHub delivery away: the unverified body budget is spent.");
        return budget_spent();
    };
    let mut mac = source.mac.clone();
    let body = match read_limited(body, declared, limit, |chunk| mac.update(chunk)).await {
        Ok(b) => b,
        Err(e) => return e.into_response(limit),
    };
    let verified = expected_signature(signature).is_some_and(|sig| mac.verify_slice(&sig).is_ok());
    drop(reserved);
    if !verified {
        return bad_signature(&name);
    }
    let _permit = match source.gate.admit() {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let Some(event) = header_str(&headers, "x-github-event") else {
        return error(StatusCode::BAD_REQUEST, "missing X-GitHub-Event header");
    };
    if event == "ping" {
        return (
            StatusCode::OK,
            axum::Json(Pong {
                ok: true,
                source: name,
            }),
        )
            .into_response();
    }
    // GitHub's form content type sends `payload=<url-encoded JSON>`; a JSON body with a
    // wrong content type (curl's default) is taken as JSON.
    let looks_like_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !looks_like_json
        && header_str(&headers, header::CONTENT_TYPE.as_str())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "form-encoded deliveries are not supported; set the webhook's content type to application/json in GitHub",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the payload is not UTF-8 JSON");
    };
    let received_at = now_micros();
    let fallback_id;
    let id = match header_str(&headers, "x-github-delivery") {
        Some(id) if !id.is_empty() => id,
        _ => {
            fallback_id = crate::webhook::mapping::body_id(&name, &body);
            &fallback_id
        }
    };
    let delivery = events::Delivery {
        source: &name,
        event,
        id,
        received_at,
    };
    match events::map(&delivery, text) {
        Ok(event) => source.gate.emit(vec![event]).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e.0),
    }
}

fn bad_signature(name: &str) -> Response {
    debug!(source = %name, "Refused a GitHub delivery with a bad signature.");
    error(
        StatusCode::UNAUTHORIZED,
        "X-Hub-Signature-256 does not match the body; check that the webhook secret in GitHub equals this source's secret",
    )
}

#[cfg(test)]
mod tests;
