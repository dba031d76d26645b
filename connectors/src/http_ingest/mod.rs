//! `POST /v1/events`: CloudEvents over HTTP into `helios.events`.
//!
//! Accepts the HTTP binding's content modes, told apart by `Content-Type`:
//! - `application/cloudevents+json`: one structured CloudEvent;
//! - `application/cloudevents-batch+json`: a batch;
//! - `application/x-ndjson` (or `application/ndjson`): one structured CloudEvent a line;
//! - any other content type, or none, with a `ce-specversion` header: one binary-mode
//!   CloudEvent (attributes in `ce-*` headers, the body is the data), mapped exactly as
//!   its structured form would be ([`cloudevents::binary`]);
//! - without `ce-specversion`: `application/json` or no content type is structured or
//!   batch by the body's first character; anything else is `415`. A request that has
//!   `ce-*` headers but no `ce-specversion` is told so in the error.
//!
//! Good items are appended keyed by `subject`; bad items are listed with their index and
//! field (a binary-mode event is item 0), among them items dated more than the source's
//! `max_future` after their receipt (field `time`). The `202` is sent only after the log
//! reports the accepted events durable (per its fsync policy), so an acknowledged event is
//! never lost.

mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use helios_schemas::cloudevents::{self, BodyError};
use serde::Serialize;
use tracing::{Instrument, debug, warn};
use utoipa::ToSchema;

pub use config::HttpIngestConfig;

use crate::push::Admission;
use crate::runtime::{Emitter, RequestOutcome, SourceHandle, SourceState, now_micros};

/// Shared state of the ingest route.
#[derive(Debug, Clone)]
pub struct HttpIngest {
    inner: Arc<Inner>,
}

struct Inner {
    config: HttpIngestConfig,
    emitter: Emitter,
    source: SourceHandle,
    admission: Admission,
    stats: IngestStats,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpIngest")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Counters of the ingest route, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub busy: AtomicU64,
}

impl HttpIngest {
    /// `source` is this route's status (register it with the supervisor).
    pub fn new(config: HttpIngestConfig, emitter: Emitter, source: SourceHandle) -> Self {
        let permits = config.max_in_flight;
        let disk = emitter.disk().cloned();
        source.set_state(SourceState::Running);
        HttpIngest {
            inner: Arc::new(Inner {
                config,
                emitter,
                admission: Admission::new(source.clone(), permits, disk),
                source,
                stats: IngestStats::default(),
            }),
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> &IngestStats {
        &self.inner.stats
    }

    /// The routes, ready to merge into the API router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/events", post(post_events))
            .layer(DefaultBodyLimit::max(self.inner.config.max_body_bytes))
            .with_state(self.clone())
    }
}

/// What a `202` says: the events written (durable in the log) and the items refused.
#[derive(Debug, Serialize, PartialEq, ToSchema)]
pub struct Accepted {
    /// Events written.
    pub accepted: usize,
    /// Items refused, with why; the others were written.
    pub rejected: Vec<Rejected>,
}

/// One refused item.
#[derive(Debug, Serialize, PartialEq, ToSchema)]
pub struct Rejected {
    /// Its position in the batch or NDJSON body, from 0 (a single event is item 0).
    pub index: usize,
    /// The attribute at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub error: String,
}

/// An error answer: what was wrong, and every refused item when items were read.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestError {
    pub error: String,
    /// Absent when the body could not be read as items at all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

/// A CloudEvent 1.0 in JSON, as `POST /v1/events` reads it (the parser is
/// `helios_schemas::cloudevents`; this type only describes the format in the OpenAPI
/// document). Any other member is an extension attribute: a name of `a-z0-9`, a string,
/// number or boolean value, kept in the event's `attrs` (the schema leaves other members
/// open, as JSON Schema does by default).
#[derive(Debug, ToSchema)]
pub struct CloudEvent {
    /// `"1.0"`.
    pub specversion: String,
    /// With `source`, the event's identity: a repeat of both is applied once.
    pub id: String,
    pub source: String,
    /// The event's kind (`ci.run`, `deploy`, …).
    #[schema(rename = "type")]
    pub kind: String,
    /// What the event is about (a repository, a host): aggregates group by it.
    pub subject: Option<String>,
    /// When it happened (RFC 3339); the time of receipt when absent. At most the
    /// source's `max_future` ahead of receipt.
    #[schema(format = DateTime)]
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// The payload, kept as sent.
    #[schema(value_type = Option<Value>)]
    pub data: Option<serde_json::Value>,
    /// A binary payload, base64 (not with `data`).
    pub data_base64: Option<String>,
    /// The extension Helios measures (`sum(value)`, …): a number, or a string holding one.
    pub value: Option<f64>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    error_with(status, message, Vec::new())
}

fn error_with(status: StatusCode, message: impl Into<String>, rejected: Vec<Rejected>) -> Response {
    let body = IngestError {
        error: message.into(),
        rejected,
    };
    (status, axum::Json(body)).into_response()
}

/// Takes CloudEvents; `202` once they are durable in the log.
///
/// The content mode follows `Content-Type`: one structured event, a batch, NDJSON (an event a line),
/// or binary mode (any other type with `ce-specversion: 1.0` and the attributes in `ce-*`
/// headers, the body being the data). Items that are not valid are listed and the rest
/// written; a repeat of an event (same `source` and `id`) is written again and applied
/// once. An `ingest` key.
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "ingest_events",
    tag = "ingest",
    request_body(
        description = "CloudEvents in structured, batched, NDJSON or binary content mode",
        content(
            (CloudEvent = "application/cloudevents+json"),
            (Vec<CloudEvent> = "application/cloudevents-batch+json"),
            (String = "application/x-ndjson"),
            (CloudEvent = "application/json"),
            (Object = "*/*"),
        ),
    ),
    params(
        ("ce-specversion" = Option<String>, Header, description = "`1.0`: the request is one binary-mode CloudEvent, its other attributes in `ce-id`, `ce-source`, `ce-type`, `ce-subject`, `ce-time`, … (percent-encoded)"),
    ),
    responses(
        (status = 202, description = "Written and durable; refused items listed", body = Accepted),
        (status = 400, description = "Not one valid event (the body unreadable, or every item refused)", body = IngestError),
        (status = 401, description = "No API key, or not a valid one"),
        (status = 403, description = "A key without the `ingest` scope"),
        (status = 413, description = "The body is over the source's `max_body_bytes`", body = IngestError),
        (status = 415, description = "A content type this route does not read", body = IngestError),
        (status = 429, description = "The key's request rate is over its limit; see Retry-After"),
        (status = 503, description = "The source is paused, at capacity, or the log failed: nothing was written; see Retry-After", body = crate::push::PushError),
        (status = 507, description = "The data dir's disk is nearly full: nothing was written; see Retry-After", body = crate::push::PushError),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn post_events(
    State(ingest): State<HttpIngest>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The request's span is the root of each accepted event's trace: its context goes
    // into the records' headers. Only made when traces are exported (hot path).
    if !helios_log::trace_propagation_enabled() {
        return handle_events(ingest, headers, body).await;
    }
    let span = tracing::info_span!(
        "ingest.request",
        source = ingest.inner.source.name(),
        route = "/v1/events",
        accepted = tracing::field::Empty,
        rejected = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    // A caller that traces its own work (W3C headers) sees the ingest in its trace.
    if let Some(parent) = headers.get("traceparent") {
        let state = headers.get("tracestate").map(|v| v.as_bytes());
        helios_log::continue_trace(&span, parent.as_bytes(), state);
    }
    let resp = handle_events(ingest, headers, body)
        .instrument(span.clone())
        .await;
    span.record("status", resp.status().as_u16());
    resp
}

async fn handle_events(
    ingest: HttpIngest,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let inner = &ingest.inner;
    inner.stats.requests.fetch_add(1, Ordering::Relaxed);
    let requests = inner.source.requests();
    let _permit = match inner.admission.admit() {
        Ok(permit) => permit,
        Err(refused) => {
            if refused.busy {
                inner.stats.busy.fetch_add(1, Ordering::Relaxed);
            }
            return *refused.response;
        }
    };
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = inner.config.max_body_bytes;
            requests.record(RequestOutcome::TooLarge);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than the limit of {limit} bytes; split it into smaller batches"
                ),
            );
        }
        Err(e) => {
            requests.record(RequestOutcome::Invalid);
            return error(
                e.status(),
                format!("could not read the request body: {}", e.body_text()),
            );
        }
    };
    let content_type = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(ct)) => Some(ct),
        Some(Err(_)) => {
            requests.record(RequestOutcome::UnsupportedMediaType);
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the Content-Type header is not ASCII text; send a media type such as application/cloudevents+json",
            );
        }
    };
    let has_specversion = headers.contains_key(SPECVERSION_HEADER);
    // Said only when a request looks like binary mode but cannot be read as it.
    let hint = if has_specversion {
        ""
    } else {
        binary_mode_hint(&headers)
    };
    let received_at = now_micros();
    let parsed = if cloudevents::is_binary_mode(content_type, has_specversion) {
        let all = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        Ok(vec![(
            0,
            cloudevents::parse_binary(all, content_type, &bytes, received_at),
        )])
    } else {
        cloudevents::parse_body_indexed(content_type, &bytes, received_at)
    };
    let items = match parsed {
        Ok(items) => items,
        Err(e @ BodyError::UnsupportedContentType { .. }) => {
            requests.record(RequestOutcome::UnsupportedMediaType);
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{e}{hint}"));
        }
        Err(e) => {
            requests.record(RequestOutcome::Invalid);
            return error(StatusCode::BAD_REQUEST, format!("{e}{hint}"));
        }
    };

    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    // Dated too far ahead of now, an event would drag the watermark with it: refused
    // like any other bad item, with how far ahead it is and the limit.
    let max_future = inner.emitter.max_future(&inner.source);
    for (index, item) in items {
        match item {
            Ok(event) => match helios_schemas::event_time::check(&event, max_future) {
                Ok(()) => events.push(event),
                Err(why) => rejected.push(Rejected {
                    index,
                    field: Some("time".to_string()),
                    error: why.to_string(),
                }),
            },
            Err(e) => rejected.push(Rejected {
                index: e.index,
                field: e.field,
                error: e.message,
            }),
        }
    }
    inner
        .stats
        .rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    requests.record_events(0, rejected.len());
    let span = tracing::Span::current();
    span.record("accepted", events.len());
    span.record("rejected", rejected.len());
    if events.is_empty() {
        requests.record(RequestOutcome::Invalid);
        let what = if rejected.is_empty() {
            "the request holds no events"
        } else {
            "no event in the request is valid"
        };
        return error_with(StatusCode::BAD_REQUEST, format!("{what}{hint}"), rejected);
    }
    let accepted = events.len();
    let started = Instant::now();
    if let Err(e) = inner.emitter.emit(&inner.source, &events).await {
        inner.source.record_error(e.to_string());
        warn!(topic = inner.emitter.events_topic(), events = accepted, error = %e, "Appending ingested events failed.");
        if e.is_disk_full() {
            requests.record(RequestOutcome::DiskFull);
            return crate::push::disk_full(&e);
        }
        requests.record(RequestOutcome::LogError);
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the events could not be written to the log ({e}); nothing was acknowledged, retry the request"
            ),
        );
        if e.fault() != crate::Fault::User {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        return resp;
    }
    inner
        .stats
        .accepted
        .fetch_add(accepted as u64, Ordering::Relaxed);
    requests.record(RequestOutcome::Accepted);
    requests.record_events(accepted, 0);
    debug!(
        events = accepted,
        rejected = rejected.len(),
        append_ms = started.elapsed().as_secs_f64() * 1e3,
        "Ingested events."
    );
    (
        StatusCode::ACCEPTED,
        axum::Json(Accepted { accepted, rejected }),
    )
        .into_response()
}

/// The header whose presence makes a request a binary-mode CloudEvent.
const SPECVERSION_HEADER: &str = "ce-specversion";

/// For a request without `ce-specversion`: a note on its errors when it has other `ce-*`
/// headers, since its sender most likely meant binary mode and forgot the one header
/// that selects it.
fn binary_mode_hint(headers: &HeaderMap) -> &'static str {
    let prefix = cloudevents::binary::HEADER_PREFIX;
    if headers.keys().any(|name| name.as_str().starts_with(prefix)) {
        "; the request has ce-* headers but no ce-specversion: a binary-mode CloudEvent needs `ce-specversion: 1.0`"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests;
