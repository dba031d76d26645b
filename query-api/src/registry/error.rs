//! Errors of the registry routes and their one mapping to Confluent responses:
//! `{"error_code": N, "message": "..."}` with Confluent's status codes. Internal failures
//! are logged and answered without their details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use helios_schemas::Error as SchemaError;
use serde_json::json;

use super::respond;

/// What a registry request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] SchemaError),
    /// The request itself is unusable (body, content type, path).
    #[error("{message}")]
    Request {
        /// HTTP status.
        status: StatusCode,
        /// Confluent error code.
        code: u32,
        /// What was wrong and what to do.
        message: String,
    },
    /// The blocking registry task died.
    #[error("registry task failed: {0}")]
    Task(String),
}

/// `Result` with the registry routes' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn request(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self::Request {
            status,
            code,
            message: message.into(),
        }
    }

    /// Status and Confluent error code.
    fn classify(&self) -> (StatusCode, u32) {
        use SchemaError as E;
        match self {
            Self::Request { status, code, .. } => (*status, *code),
            Self::Registry(e) => match e {
                E::SubjectNotFound { .. } => (StatusCode::NOT_FOUND, 40401),
                E::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
                E::SchemaIdNotFound { .. } | E::SchemaNotRegistered { .. } => {
                    (StatusCode::NOT_FOUND, 40403)
                }
                E::SubjectLevelNotSet { .. } => (StatusCode::NOT_FOUND, 40408),
                E::InvalidSchema { .. } | E::UnsupportedSchemaType { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, 42201)
                }
                E::InvalidVersion { .. } => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
                E::InvalidCompatibilityLevel { .. } => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
                E::Incompatible { .. } => (StatusCode::CONFLICT, 409),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
            },
            Self::Task(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "Schema registry request failed.");
            "internal error in the schema registry store; see the helios log".to_string()
        } else {
            self.to_string()
        };
        respond(status, json!({ "error_code": code, "message": message }))
    }
}
