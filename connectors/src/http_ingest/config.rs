//! Settings of the HTTP ingest route.

use serde::{Deserialize, Serialize};

/// `[[source]] type = "http"` in the spec: `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpIngestConfig {
    /// Name of the source in `/v1/sources`. Default `http`.
    pub name: String,
    /// Largest accepted request body in bytes; larger requests get `413`. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Requests appending at the same time; more get `503` with `Retry-After`. Default 256.
    pub max_in_flight: usize,
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        HttpIngestConfig {
            name: "http".to_string(),
            max_body_bytes: 10 << 20,
            max_in_flight: 256,
        }
    }
}
