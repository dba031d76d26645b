//! The one error type of the API routes and what each variant answers over HTTP: a status
//! and a JSON body `{"error": "...", "hint": "..."}` saying what was wrong and what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;

/// Why a request was not answered.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The request itself is wrong: a parameter, the SQL text, the body.
    #[error("{error}")]
    BadRequest { error: String, hint: String },

    /// The request is understood but not allowed (a write, a system table, a file).
    #[error("{error}")]
    Forbidden { error: String, hint: String },

    /// What the request names does not exist (an aggregate, a measure, a subject).
    #[error("{error}")]
    NotFound { error: String, hint: String },

    /// The query ran over a limit: rows, answer bytes, memory or time.
    #[error("{error}")]
    OverLimit { error: String, hint: String },

    /// Too many queries are running or waiting; retry after `retry_after_secs`.
    #[error("{error}")]
    Busy {
        error: String,
        hint: String,
        retry_after_secs: u64,
    },

    /// The store did not answer (down, overloaded); the request may be retried.
    #[error("the store is unavailable: {reason}")]
    Unavailable { reason: String },

    /// The store answered with an error that is not the request's fault.
    #[error("the store failed: {reason}")]
    Store { reason: String },
}

/// `Result` with [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// A bad parameter or body.
    pub fn bad(error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::BadRequest {
            error: error.into(),
            hint: hint.into(),
        }
    }

    /// A forbidden statement, table or function.
    pub fn forbidden(error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::Forbidden {
            error: error.into(),
            hint: hint.into(),
        }
    }

    /// Something named that does not exist.
    pub fn not_found(error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::NotFound {
            error: error.into(),
            hint: hint.into(),
        }
    }

    /// A row or time limit exceeded.
    pub fn over_limit(error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError::OverLimit {
            error: error.into(),
            hint: hint.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::OverLimit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    fn hint(&self) -> &str {
        match self {
            ApiError::BadRequest { hint, .. }
            | ApiError::Forbidden { hint, .. }
            | ApiError::NotFound { hint, .. }
            | ApiError::OverLimit { hint, .. }
            | ApiError::Busy { hint, .. } => hint,
            ApiError::Unavailable { .. } => {
                "retry shortly; GET /readyz tells when the store answers again"
            }
            ApiError::Store { .. } => "see the Helios log for the store's full answer",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::Busy {
                retry_after_secs, ..
            } => Some(retry_after_secs.to_string()),
            ApiError::Unavailable { .. } => Some("5".to_owned()),
            _ => None,
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "API request failed");
        }
        let mut response = (
            status,
            axum::Json(json!({"error": self.to_string(), "hint": self.hint()})),
        )
            .into_response();
        if let Some(value) = retry_after.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}
