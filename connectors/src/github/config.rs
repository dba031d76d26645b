//! Settings of a GitHub webhook source.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::secret::{SecretOrigin, SecretString};

/// `[[source]] type = "github"` in the spec: `POST /v1/webhooks/github/{name}`.
///
/// Set exactly one of `secret`, `secret_env` and `secret_file`; it must equal the secret
/// entered in GitHub's webhook settings (content type `application/json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// Name of the source in `/v1/sources` and in the URL. Default `github`.
    pub name: String,
    /// The webhook secret itself. Prefer `secret_env` or `secret_file` in shared specs.
    pub secret: Option<SecretString>,
    /// Name of an environment variable holding the webhook secret.
    pub secret_env: Option<String>,
    /// Path of a file holding the webhook secret (surrounding whitespace is ignored).
    pub secret_file: Option<PathBuf>,
    /// With `secret_file`: when the file does not exist, write a random secret there
    /// (mode 0600) on first start. Default false.
    pub generate_secret: bool,
    /// Largest accepted delivery in bytes; larger ones get `413`. Default 25 MiB (GitHub
    /// caps payloads at 25 MB).
    pub max_body_bytes: usize,
    /// Deliveries being appended at the same time; more get `503` with `Retry-After`.
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

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            name: "github".to_string(),
            secret: None,
            secret_env: None,
            secret_file: None,
            generate_secret: false,
            max_body_bytes: 25 << 20,
            max_in_flight: 256,
            max_future: None,
        }
    }
}

impl GithubConfig {
    pub(crate) fn secret_origin(&self) -> SecretOrigin<'_> {
        SecretOrigin {
            what: "secret",
            literal: self.secret.as_ref(),
            env: self.secret_env.as_deref(),
            file: self.secret_file.as_deref(),
            generate: self.generate_secret,
        }
    }

    /// Checks the settings without reading the secret.
    pub fn validate(&self) -> Result<()> {
        self.secret_origin().validate(&self.name)?;
        if self.max_body_bytes == 0 || self.max_in_flight == 0 {
            return Err(crate::ConnectorError::config(
                &self.name,
                "max_body_bytes and max_in_flight must be positive",
            ));
        }
        Ok(())
    }
}
