//! The middleware in front of every route: the policy, the key check, the per-key rate
//! limit, the body limit and the request timeout, each refusal a JSON
//! `{"error", "hint"}` like the rest of the API.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{Instrument, debug};

use super::basic;
use super::limit::{Limiter, retry_after_secs};
use super::policy::{self, Access, BodyLimit, Credentials, MetricsAccess};
use super::store::{KeyStore, Verdict};
use super::{AuthConfig, Scope};

/// What the middleware needs, shared by all requests.
#[derive(Debug)]
pub(crate) struct Guard {
    keys: KeyStore,
    limiter: Limiter,
    max_body_bytes: usize,
    timeout: std::time::Duration,
    metrics: MetricsAccess,
}

impl Guard {
    pub(crate) fn new(config: AuthConfig) -> Guard {
        Guard {
            keys: config.keys,
            limiter: Limiter::new(config.rate),
            max_body_bytes: config.max_body_bytes,
            timeout: config.request_timeout,
            metrics: config.metrics,
        }
    }
}

pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    mut req: Request,
    next: Next,
) -> Response {
    let rule = policy::classify(req.method(), req.uri().path(), guard.metrics);
    // The key's id, for the access log (on the response).
    let mut accepted = None;
    let span = match rule.access {
        Access::Public | Access::OwnCheck => tracing::Span::none(),
        Access::Needs(needed) => {
            let key = match authenticate(&guard, req.headers(), needed, rule.credentials) {
                Ok(key) => key,
                Err(refusal) => {
                    debug!(method = %req.method(), path = req.uri().path(), reason = %refusal.error,
                           "Refused a request without a usable API key.");
                    return refusal.into_response();
                }
            };
            if let Err(wait) = guard.limiter.take(&key.id, tokio::time::Instant::now()) {
                let limit = guard.limiter.limit();
                debug!(key_id = %key.id, path = req.uri().path(), "Rate limited an API key.");
                let secs = retry_after_secs(wait);
                let mut resp = refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "key `{}` made more than {} requests/s (bursts of {})",
                        key.id, limit.per_second, limit.burst
                    ),
                    format!(
                        "retry in {secs}s (Retry-After); the limit is per key and set with `helios up --rate-limit/--rate-burst`"
                    ),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return resp;
            }
            if !key.scope.allows(needed) {
                debug!(key_id = %key.id, scope = %key.scope, needed = %needed,
                       path = req.uri().path(), "Refused a key of the wrong scope.");
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{} {} needs a key with scope `{needed}` (or `admin`); key `{}`{} has scope `{}`",
                        req.method(),
                        req.uri().path(),
                        key.id,
                        named(&key.name),
                        key.scope
                    ),
                    format!(
                        "use a `{needed}` key; create one with `helios keys create --scope {needed}`"
                    ),
                );
            }
            let span = tracing::info_span!("api_key", key_id = %key.id, key_name = %key.name, scope = %key.scope);
            accepted = Some(crate::server::access::AcceptedKey(key.id.clone()));
            req.extensions_mut().insert(key);
            span
        }
    };
    if rule.body == BodyLimit::Global
        && let Some(len) = content_length(req.headers())
        && len > guard.max_body_bytes as u64
    {
        return too_large(Some(len), guard.max_body_bytes);
    }
    let response = match tokio::time::timeout(guard.timeout, next.run(req).instrument(span)).await {
        Ok(response) => response,
        Err(_) => {
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request took longer than the limit of {} and was abandoned",
                    humantime::format_duration(guard.timeout)
                ),
                "narrow the query or send smaller batches; the limit is set with `helios up --request-timeout`",
            );
        }
    };
    // A body that turned out too large while being read (no or a false Content-Length)
    // is refused by axum's extractors in plain text; answer in the API's JSON instead.
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && rule.body == BodyLimit::Global
        && !is_json(response.headers())
    {
        return too_large(None, guard.max_body_bytes);
    }
    let mut response = response;
    if let Some(key) = accepted {
        response.extensions_mut().insert(key);
    }
    response
}

/// Why a request gets `401`.
struct Unauthorized {
    error: String,
    hint: String,
    /// Whether a credential was sent (and refused) rather than missing.
    presented: bool,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut resp = refuse(StatusCode::UNAUTHORIZED, self.error, self.hint);
        // RFC 6750: name the scheme; say `invalid_token` when a token was sent but refused.
        let challenge = if self.presented {
            r#"Bearer realm="helios", error="invalid_token""#
        } else {
            r#"Bearer realm="helios""#
        };
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        resp
    }
}

/// The key a request presents, checked.
fn authenticate(
    guard: &Guard,
    headers: &HeaderMap,
    needed: Scope,
    credentials: Credentials,
) -> Result<super::ApiKey, Unauthorized> {
    let create = format!("create one with `helios keys create --scope {needed}`");
    let basic_too = credentials == Credentials::BearerOrBasic;
    let how = if basic_too {
        "send `Authorization: Bearer <key>`, or HTTP Basic with the key id as user and its secret as password"
    } else {
        "send `Authorization: Bearer <key>`"
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "this route needs an API key and none was sent".into(),
            format!("{how}; {create}"),
            false,
        ));
    };
    let (scheme, token) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .unwrap_or_default();
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        Cow::Borrowed(token)
    } else if scheme.eq_ignore_ascii_case("basic") {
        if !basic_too {
            return Err(unauthorized(
                "HTTP Basic credentials are accepted only on the schema registry's routes (/subjects, /schemas, /compatibility, /config)".into(),
                format!("send `Authorization: Bearer hel_<id>_<secret>` here; {create}"),
                true,
            ));
        }
        if let Some(site) = cross_site(headers) {
            return Err(unauthorized(
                format!(
                    "HTTP Basic credentials are not accepted from a web page of another site (Sec-Fetch-Site: {site})"
                ),
                "a browser replays stored Basic credentials on its own; send the key as `Authorization: Bearer <key>`".into(),
                true,
            ));
        }
        match basic::key_from_basic(token) {
            Ok(key) => Cow::Owned(key),
            Err(why) => {
                return Err(unauthorized(
                    why.reason().into(),
                    format!("{how}; {create}"),
                    true,
                ));
            }
        }
    } else {
        let error = if basic_too {
            "the Authorization header is neither `Bearer <key>` nor HTTP Basic"
        } else {
            "the Authorization header is not `Bearer <key>`"
        };
        return Err(unauthorized(error.into(), format!("{how}; {create}"), true));
    };
    let malformed = if scheme.eq_ignore_ascii_case("basic") {
        "the Basic credentials do not hold a Helios API key (key ids are 12 and secrets 64 lowercase hex digits, keys `hel_<id>_<secret>`)"
    } else {
        "the bearer token is not a Helios API key (they look like `hel_<id>_<secret>`)"
    };
    match guard.keys.verify(&presented) {
        Verdict::Valid(key) => Ok(key),
        Verdict::Malformed => Err(unauthorized(
            malformed.into(),
            format!("check that the whole key was copied; {create}"),
            true,
        )),
        Verdict::Unknown => Err(unauthorized(
            "the API key is not known to this server".into(),
            // The key file's path is not named: anyone can get this answer.
            format!("`helios keys list` shows the keys this server knows; {create}"),
            true,
        )),
        Verdict::Revoked { id, at } => Err(unauthorized(
            format!("API key `{id}` was revoked at {at}"),
            format!("use another key; {create}"),
            true,
        )),
    }
}

/// The `Sec-Fetch-Site` of a request a browser made for a page of another origin, if it is
/// one. Registry clients send no such header; browsers send it on every request.
fn cross_site(headers: &HeaderMap) -> Option<&str> {
    let site = headers.get("sec-fetch-site")?;
    let site = site.to_str().unwrap_or("(not text)");
    (!matches!(site, "same-origin" | "none")).then_some(site)
}

fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

fn unauthorized(error: String, hint: String, presented: bool) -> Unauthorized {
    Unauthorized {
        error,
        hint,
        presented,
    }
}

fn too_large(len: Option<u64>, limit: usize) -> Response {
    let error = match len {
        Some(len) => format!("the request body is {len} bytes, over the limit of {limit} bytes"),
        None => format!("the request body is over the limit of {limit} bytes"),
    };
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        error,
        "send a smaller body; the limit is set with `helios up --body-limit` (POST /v1/events and webhooks have their own, per source)",
    )
}

fn refuse(status: StatusCode, error: String, hint: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "hint": hint.into()})),
    )
        .into_response()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
}

/// The guard of a listener without keys (`--metrics-listen`): what the policy makes
/// public passes, everything else is refused as it would be without a key.
pub(crate) async fn public_only(request: Request, next: Next) -> Response {
    let rule = policy::classify(
        request.method(),
        request.uri().path(),
        MetricsAccess::Public,
    );
    match rule.access {
        Access::Public => next.run(request).await,
        _ => refuse(
            StatusCode::UNAUTHORIZED,
            "this listener serves only public routes".to_owned(),
            "it has no API keys; ask the process's main listener",
        ),
    }
}
