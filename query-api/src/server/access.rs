//! The access log (`--access-log`): one line per request answered, at `info` under the
//! target `helios::access`, with the method, the path, the status, how long the answer
//! took, and the API key's id when one was accepted. It is logged inside the connection's
//! span, which names the caller's address and, under mutual TLS, its certificate
//! (`server/peer.rs`). Off by default: webhooks at a high rate would flood the log.
//!
//! The path is logged without its query string (where a caller might put something it
//! would not want in a log) and cut at 256 characters. It comes from the request line,
//! where hyper admits no space or control character, so it cannot start a log line of
//! its own.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::info;

/// The id of the API key a request was accepted with, put on its response by the auth
/// layer for the access log.
#[derive(Debug, Clone)]
pub struct AcceptedKey(pub String);

/// Longest path logged.
const PATH_MAX: usize = 256;

/// Logs the request once its answer's head is ready.
pub(crate) async fn log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(PATH_MAX).collect();
    let response = next.run(req).await;
    let key_id = response
        .extensions()
        .get::<AcceptedKey>()
        .map_or("", |k| k.0.as_str());
    info!(
        target: "helios::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        key_id,
        "Answered a request."
    );
    response
}
