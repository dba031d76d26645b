//! Generic webhooks: `POST /v1/webhooks/{source}` into `helios.events`, for CI, deploy and
//! alerting tools.
//!
//! Owns token authentication (`Authorization: Bearer` or `?token=`, constant-time compare;
//! `401` otherwise, checked before a byte of the body is read) and the JSON-to-event [`mapping`] rules, which the Kafka topic bridge
//! shares. A body that is not JSON or misses a mapped field is `400` with the reason and
//! nothing is written; the `202` is sent once the events are durable.
//!
//! CloudEvents binary content mode is deliberately not read here: `ce-*` headers are
//! ignored and the body is mapped like any other. A webhook source's events belong to
//! that source (`Event.source` is its name, and its token is a credential for it alone),
//! while a CloudEvent names its own `source` and `id`: honouring them would let a webhook
//! token write as any source, and overriding them would make one CloudEvent two different
//! events on this route and on `POST /v1/events`. CloudEvents producers, binary mode
//! included, post to `/v1/events` with an `ingest` key.

mod config;
pub mod mapping;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;

pub use config::WebhookConfig;
use mapping::{Input, Mapper, body_id};

use crate::body::{content_length, read_limited};
use crate::push::{PushGate, error};
use crate::runtime::{Emitter, SourceHandle, now_micros};
use crate::secret::{SecretString, constant_time_eq};

/// The generic webhook sources, all served by one route keyed by source name.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    sources: HashMap<String, Arc<WebhookSource>>,
}

struct WebhookSource {
    config: WebhookConfig,
    token: SecretString,
    mapper: Mapper,
    gate: PushGate,
}

impl std::fmt::Debug for WebhookSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Adds a source; `token` is its resolved token, `handle` its status.
    pub fn add(
        &mut self,
        config: WebhookConfig,
        token: SecretString,
        emitter: Emitter,
        handle: SourceHandle,
    ) -> crate::Result<()> {
        let mapper = Mapper::new(&config.name, config.preset, config.mapping.as_ref())?;
        let gate = PushGate::new(handle, emitter, config.max_in_flight);
        self.sources.insert(
            config.name.clone(),
            Arc::new(WebhookSource {
                config,
                token,
                mapper,
                gate,
            }),
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
            .route("/v1/webhooks/{source}", post(deliver))
            .layer(DefaultBodyLimit::max(limit))
            .with_state(Arc::new(self.clone()))
    }
}

/// The token a request presents: the bearer token, else the `token` query parameter.
fn presented_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = auth.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// A delivery of a webhook source; `202` once its events are durable.
///
/// The JSON body becomes events by the source's mapping. The source's token, not an API
/// key.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{source}",
    operation_id = "webhook_delivery",
    tag = "ingest",
    params(
        ("source" = String, Path, description = "The webhook source's name in the spec"),
        ("token" = Option<String>, Query, description = "The source's token, for senders that cannot set a header"),
    ),
    request_body(content = Object, description = "The sender's JSON, mapped by the source's rules", content_type = "application/json"),
    responses(
        (status = 202, description = "Written and durable", body = crate::push::Delivered),
        (status = 400, description = "Not JSON, or a mapped field is missing: nothing was written", body = crate::push::PushError),
        (status = 401, description = "No token, or not the source's", body = crate::push::PushError),
        (status = 404, description = "No webhook source of that name", body = crate::push::PushError),
        (status = 413, description = "The body is over the source's `max_body_bytes`", body = crate::push::PushError),
        (status = 503, description = "The source is paused, at capacity, or the log failed: nothing was written; see Retry-After", body = crate::push::PushError),
        (status = 507, description = "The data dir's disk is nearly full: nothing was written; see Retry-After", body = crate::push::PushError),
    ),
    security(("webhook_token" = []))
)]
pub(crate) async fn deliver(
    State(hooks): State<Arc<Webhooks>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(source) = hooks.sources.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no webhook source named `{name}`; configure a `[[source]] type = \"webhook\"` with that name"
            ),
        );
    };
    let authorized = presented_token(&headers, query.as_deref())
        .is_some_and(|t| constant_time_eq(t.as_bytes(), source.token.expose().as_bytes()));
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token; send `Authorization: Bearer <token>` or `?token=<token>`",
        );
    }
    let _permit = match source.gate.admit() {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    // Only now, with the token checked, is the body read.
    let limit = source.config.max_body_bytes;
    let body = match read_limited(body, content_length(&headers), limit, |_| {}).await {
        Ok(b) => b,
        Err(e) => return e.into_response(limit),
    };
    let doc: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    // Valid JSON is valid UTF-8.
    let raw = std::str::from_utf8(&body).unwrap_or_default();
    let seed = body_id(&name, &body);
    let received_at = now_micros();
    let input = Input {
        raw,
        id_seed: &seed,
        received_at,
        default_time: received_at,
    };
    match source.mapper.map(&doc, &input) {
        Ok(events) if events.is_empty() => error(
            StatusCode::BAD_REQUEST,
            "the payload holds no events (the items array is empty)",
        ),
        Ok(events) => source.gate.emit(events).await,
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[cfg(test)]
mod tests;
