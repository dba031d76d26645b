//! The sources' part of the spec (`[[source]]` tables in `helios.toml`) and the one
//! function that knows every connector: [`build`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::http_ingest::{HttpIngest, HttpIngestConfig};
use crate::runtime::Supervisor;
use crate::{ConnectorError, Result};

/// One `[[source]]` table; `type` picks the connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceSpec {
    /// CloudEvents over HTTP: `POST /v1/events`.
    Http(HttpIngestConfig),
}

impl SourceSpec {
    /// The source's unique name.
    pub fn name(&self) -> &str {
        match self {
            SourceSpec::Http(c) => &c.name,
        }
    }

    /// The connector type, as written in `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Http(_) => "http",
        }
    }

    /// Checks what can be checked without starting anything.
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConnectorError::config(
                name,
                "a source name must be non-empty and use only letters, digits, `-` and `_` (it appears in URLs)",
            ));
        }
        match self {
            SourceSpec::Http(c) => {
                if c.max_body_bytes == 0 {
                    return Err(ConnectorError::config(
                        name,
                        "max_body_bytes must be positive",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The sources part of a spec file: `[[source]]` tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSpec {
    /// The sources to run; `helios up` without a spec file runs [`default_sources`].
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceSpec>,
}

/// The sources `helios up` runs when no spec says otherwise; `listen` is Helios' own
/// HTTP address (sources may watch Helios itself).
pub fn default_sources(_listen: SocketAddr) -> Vec<SourceSpec> {
    vec![SourceSpec::Http(HttpIngestConfig::default())]
}

/// Starts every source of the spec under `supervisor` and returns the routes of the push
/// sources (merge them into the API router). Names must be unique.
pub fn build(specs: &[SourceSpec], supervisor: &Arc<Supervisor>) -> Result<Router> {
    let mut router = Router::new();
    let mut http_sources = 0;
    for spec in specs {
        spec.validate()?;
        let name = spec.name();
        match spec {
            SourceSpec::Http(c) => {
                http_sources += 1;
                if http_sources > 1 {
                    return Err(ConnectorError::config(
                        name,
                        "only one `http` source can exist: it owns the route POST /v1/events",
                    ));
                }
                let handle = supervisor.register(name, spec.kind())?;
                let ingest = HttpIngest::new(c.clone(), supervisor.emitter().clone(), handle);
                router = router.merge(ingest.router());
            }
        }
    }
    Ok(router.merge(crate::runtime::router(supervisor.clone())))
}
