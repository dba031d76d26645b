//! GitHub webhooks: `POST /v1/webhooks/github/{source}` into `helios.events`.
//!
//! Owns the signature check (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body with the
//! source's secret, compared in constant time; anything else is `401` and nothing is
//! written) and the mapping of GitHub's event types to events ([`events`]). The delivery
//! id (`X-GitHub-Delivery`) is the event id, so redeliveries dedupe downstream. `ping`
//! answers `200` without writing. The `202` is sent once the event is durable.

mod config;
pub mod events;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::debug;

pub use config::GithubConfig;

use crate::push::{PushGate, body_error, error};
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
    let Some(expected) = header.strip_prefix("sha256=").and_then(unhex) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The GitHub webhook sources, all served by one route keyed by source name.
#[derive(Debug, Clone, Default)]
pub struct GithubWebhooks {
    sources: HashMap<String, Arc<GithubSource>>,
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

async fn deliver(
    State(hooks): State<Arc<GithubWebhooks>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(source) = hooks.sources.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no GitHub webhook source named `{name}`; configure a `[[source]] type = \"github\"` with that name"
            ),
        );
    };
    let _permit = match source.gate.admit() {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(&e, source.config.max_body_bytes),
    };
    if body.len() > source.config.max_body_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than the limit of {} bytes",
                source.config.max_body_bytes
            ),
        );
    }
    let Some(signature) = header_str(&headers, "x-hub-signature-256") else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing X-Hub-Signature-256; set a secret in the GitHub webhook settings",
        );
    };
    if !verify_with(source.mac.clone(), &body, signature) {
        debug!(source = %name, "Refused a GitHub delivery with a bad signature.");
        return error(
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match the body; check that the webhook secret in GitHub equals this source's secret",
        );
    }
    let Some(event) = header_str(&headers, "x-github-event") else {
        return error(StatusCode::BAD_REQUEST, "missing X-GitHub-Event header");
    };
    if event == "ping" {
        return (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "ok": true, "source": name })),
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

#[cfg(test)]
mod tests;
