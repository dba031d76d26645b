//! API keys and the protection in front of every route: who may call what (one policy
//! table), per-key rate limits, a body limit and a request timeout.
//!
//! - [`Scope`]: `ingest`, `read`, `admin` (admin may do everything).
//! - [`KeyStore`]: the key file (`keys.json`), hashes only, written atomically, re-read
//!   when another process changes it (checked with a `stat` on every keyed request).
//! - [`policy`]: (method, path) → public, the route's own check (webhooks), or a scope.
//! - [`protect`]: wraps a composed [`Router`] in all of the above.
//!
//! A key travels as `Authorization: Bearer hel_<id>_<secret>`; on the schema registry's
//! routes also as HTTP Basic ([`basic`]: user = key id and password = secret, or any user
//! and the whole key as password), as Confluent's registry clients send it, except from a
//! browser page of another site. Refusals are JSON `{"error", "hint"}`: `401` (no,
//! malformed, unknown or revoked key, with `WWW-Authenticate: Bearer`, never a Basic
//! challenge, so no browser offers to store a password for Helios), `403` (wrong scope),
//! `429` with `Retry-After`, `413`, `504`. The authenticated [`ApiKey`] is put in the request's extensions and in the
//! `api_key` tracing span (`key_id`, `key_name`) around the handler.

mod basic;
mod layer;
mod limit;
pub mod policy;
mod scope;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use limit::RateLimit;
pub use policy::MetricsAccess;
pub use scope::Scope;
pub use store::{ApiKey, KEY_PREFIX, KeyRecord, KeyStore, NewKey, Revocation, SecretKey, Verdict};

/// What can go wrong with keys and the key file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{given}` is not a key scope; use ingest, read or admin")]
    UnknownScope { given: String },

    #[error("could not {action} the API key file {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the API key file {} is not valid: {reason}; fix it, or move it away and create keys again with `helios keys create`",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error("no API key with id `{id}` in {}; `helios keys list` shows the ids", path.display())]
    NoSuchKey { id: String, path: PathBuf },

    #[error("the key name {name:?} cannot be used: {reason}")]
    InvalidName { name: String, reason: &'static str },
}

/// `Result` with the auth [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How [`protect`] guards a router.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The keys requests are checked against.
    pub keys: KeyStore,
    /// Per-key request rate.
    pub rate: RateLimit,
    /// Largest request body, for every route that does not set its own (the ingest and
    /// webhook routes keep the limit of their source's configuration).
    pub max_body_bytes: usize,
    /// How long a request may take before it is abandoned with `504`.
    pub request_timeout: Duration,
    /// Whether `GET /metrics` needs a `read` key.
    pub metrics: MetricsAccess,
}

impl AuthConfig {
    /// 2 MiB: axum's default, ample for SQL, registry schemas and control requests.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 2 << 20;
    /// 30 s: longer than any query or fsync should take, short enough that a stuck
    /// request does not hold its connection forever.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// The defaults around `keys`.
    pub fn new(keys: KeyStore) -> AuthConfig {
        AuthConfig {
            keys,
            rate: RateLimit::default(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            metrics: MetricsAccess::default(),
        }
    }
}

/// Guards a router served without API keys (a stage's `--metrics-listen`): only the
/// routes `auth::policy` makes public (with `/metrics` public) are answered; every other
/// request gets `401`, as it would without a key.
pub fn public_only(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(layer::public_only))
}

/// Wraps the whole composed router (routes and fallback) in the key check, the rate
/// limit, the body limit and the timeout. Call it last, on the router that is served.
pub fn protect(router: Router, config: AuthConfig) -> Router {
    let limit = config.max_body_bytes;
    let guard = Arc::new(layer::Guard::new(config));
    // Routes with their own `DefaultBodyLimit` layer sit inside this one, so theirs wins.
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(guard, layer::guard))
}
