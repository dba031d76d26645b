//! Settings of a generic webhook source.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::mapping::{MappingSpec, Preset};
use crate::Result;
use crate::secret::{SecretOrigin, SecretString};

/// `[[source]] type = "webhook"` in the spec: `POST /v1/webhooks/{name}`.
///
/// Callers authenticate with `Authorization: Bearer <token>` or `?token=<token>`. Set
/// exactly one of `token`, `token_env` and `token_file`. The body is mapped by `preset` or
/// `[source.mapping]` (default: [`MappingSpec::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Name of the source in `/v1/sources` and in the URL. Default `webhook`.
    pub name: String,
    /// The token itself. Prefer `token_env` or `token_file` in shared specs.
    pub token: Option<SecretString>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// Path of a file holding the token (surrounding whitespace is ignored).
    pub token_file: Option<PathBuf>,
    /// With `token_file`: when the file does not exist, write a random token there (mode
    /// 0600) on first start. Default false.
    pub generate_token: bool,
    /// A built-in mapping for a known format (`alertmanager`); excludes `mapping`.
    pub preset: Option<Preset>,
    /// How JSON fields become events.
    pub mapping: Option<MappingSpec>,
    /// Largest accepted body in bytes; larger ones get `413`. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Requests being appended at the same time; more get `503` with `Retry-After`.
    /// Default 256.
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

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            name: "webhook".to_string(),
            token: None,
            token_env: None,
            token_file: None,
            generate_token: false,
            preset: None,
            mapping: None,
            max_body_bytes: 10 << 20,
            max_in_flight: 256,
            max_future: None,
        }
    }
}

impl WebhookConfig {
    pub(crate) fn token_origin(&self) -> SecretOrigin<'_> {
        SecretOrigin {
            what: "token",
            literal: self.token.as_ref(),
            env: self.token_env.as_deref(),
            file: self.token_file.as_deref(),
            generate: self.generate_token,
        }
    }

    /// Checks the settings (token origin, mapping) without reading the token.
    pub fn validate(&self) -> Result<()> {
        self.token_origin().validate(&self.name)?;
        if self.max_body_bytes == 0 || self.max_in_flight == 0 {
            return Err(crate::ConnectorError::config(
                &self.name,
                "max_body_bytes and max_in_flight must be positive",
            ));
        }
        super::mapping::Mapper::new(&self.name, self.preset, self.mapping.as_ref()).map(drop)
    }
}
