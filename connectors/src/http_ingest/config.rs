//! Settings of the HTTP ingest route.

use serde::{Deserialize, Serialize};

/// `[ingest.http]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpIngestConfig {
    /// Topic the events are appended to.
    pub topic: String,
    /// Largest accepted request body in bytes; larger requests get `413`. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Requests appending at the same time; more get `503` with `Retry-After`. Default 256.
    pub max_in_flight: usize,
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        HttpIngestConfig {
            topic: "helios.events".to_string(),
            max_body_bytes: 10 << 20,
            max_in_flight: 256,
        }
    }
}
