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
    /// Refuse events dated more than this after Helios received them (they go to the
    /// dead-letter topic with the reason; `POST /v1/events` rejects the item instead), so
    /// one event from the far future cannot move the watermark. Default: the process's
    /// `--max-future` (`HELIOS_MAX_FUTURE`, 15m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_future: Option<std::time::Duration>,
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        HttpIngestConfig {
            name: "http".to_string(),
            max_body_bytes: 10 << 20,
            max_in_flight: 256,
            max_future: None,
        }
    }
}
