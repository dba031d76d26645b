//! The sources' part of the spec (`[[source]]` tables in `helios.toml`) and the one
//! function that knows every connector: [`build`].

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::body::UnverifiedBodies;
use crate::file_tail::{FileTailConfig, FileTailSource};
use crate::git::{GitConfig, GitSource};
use crate::github::{GithubConfig, GithubWebhooks};
use crate::host::{HostConfig, HostSource};
use crate::http_ingest::{HttpIngest, HttpIngestConfig};
use crate::kafka_bridge::{KafkaBridge, KafkaBridgeConfig};
use crate::probe::{ProbeConfig, ProbeSource};
use crate::runtime::{PullSource, SourceHandle, Supervisor};
use crate::webhook::{WebhookConfig, Webhooks};
use crate::{ConnectorError, Result};

/// One `[[source]]` table; `type` picks the connector.
// A spec holds a handful, parsed once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceSpec {
    /// CloudEvents over HTTP: `POST /v1/events`.
    Http(HttpIngestConfig),
    /// This machine's CPU, load, memory, swap, disk and network figures.
    Host(HostConfig),
    /// Lines appended to files matched by globs.
    #[serde(rename = "file")]
    FileTail(FileTailConfig),
    /// HTTP(S) uptime probe of one URL.
    Probe(ProbeConfig),
    /// New commits in local git repositories.
    Git(GitConfig),
    /// GitHub webhooks: `POST /v1/webhooks/github/{name}`.
    Github(GithubConfig),
    /// Generic JSON webhooks: `POST /v1/webhooks/{name}`.
    Webhook(WebhookConfig),
    /// External Kafka topics mapped to events.
    KafkaBridge(KafkaBridgeConfig),
}

impl SourceSpec {
    /// The source's unique name.
    pub fn name(&self) -> &str {
        match self {
            SourceSpec::Http(c) => &c.name,
            SourceSpec::Host(c) => &c.name,
            SourceSpec::FileTail(c) => &c.name,
            SourceSpec::Probe(c) => &c.name,
            SourceSpec::Git(c) => &c.name,
            SourceSpec::Github(c) => &c.name,
            SourceSpec::Webhook(c) => &c.name,
            SourceSpec::KafkaBridge(c) => &c.name,
        }
    }

    /// The connector type, as written in `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Http(_) => "http",
            SourceSpec::Host(_) => "host",
            SourceSpec::FileTail(_) => "file",
            SourceSpec::Probe(_) => "probe",
            SourceSpec::Git(_) => "git",
            SourceSpec::Github(_) => "github",
            SourceSpec::Webhook(_) => "webhook",
            SourceSpec::KafkaBridge(_) => "kafka_bridge",
        }
    }

    /// The source's own event-time bound (`max_future`), when it sets one.
    pub fn max_future(&self) -> Option<std::time::Duration> {
        match self {
            SourceSpec::Http(c) => c.max_future,
            SourceSpec::Host(c) => c.max_future,
            SourceSpec::FileTail(c) => c.max_future,
            SourceSpec::Probe(c) => c.max_future,
            SourceSpec::Git(c) => c.max_future,
            SourceSpec::Github(c) => c.max_future,
            SourceSpec::Webhook(c) => c.max_future,
            SourceSpec::KafkaBridge(c) => c.max_future,
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
            SourceSpec::Host(c) => c.validate().map_err(|m| ConnectorError::config(name, m)),
            SourceSpec::FileTail(c) => c.validate().map_err(|m| ConnectorError::config(name, m)),
            SourceSpec::Probe(c) => c.validate().map_err(|m| ConnectorError::config(name, m)),
            SourceSpec::Git(c) => c.validate().map_err(|m| ConnectorError::config(name, m)),
            SourceSpec::Github(c) => c.validate(),
            SourceSpec::Webhook(c) => c.validate(),
            SourceSpec::KafkaBridge(c) => c.validate(),
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

/// The sources `helios up` runs when no spec says otherwise; `own_url` is where Helios'
/// own HTTP listener is reached from this machine (`http://127.0.0.1:8080`, or the
/// `https://` name of its certificate), which the `self` probe watches; `data_dir` holds
/// generated secrets.
///
/// The GitHub route (`github`) uses `HELIOS_GITHUB_SECRET` when set, else a secret
/// generated on first start into `<data_dir>/secrets/github.secret`; the generic webhook
/// route (`webhook`) likewise `HELIOS_WEBHOOK_TOKEN` or `<data_dir>/secrets/webhook.token`.
/// Host metrics (`host`, every 10 s) and a probe of Helios' own `/healthz` (`self`, every
/// 10 s) make live events appear within seconds of the first start.
pub fn default_sources(own_url: &str, data_dir: &Path) -> Vec<SourceSpec> {
    let from_env = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    let mut github = GithubConfig::default();
    if from_env("HELIOS_GITHUB_SECRET") {
        github.secret_env = Some("HELIOS_GITHUB_SECRET".to_string());
    } else {
        github.secret_file = Some(data_dir.join("secrets").join("github.secret"));
        github.generate_secret = true;
    }
    let mut webhook = WebhookConfig::default();
    if from_env("HELIOS_WEBHOOK_TOKEN") {
        webhook.token_env = Some("HELIOS_WEBHOOK_TOKEN".to_string());
    } else {
        webhook.token_file = Some(data_dir.join("secrets").join("webhook.token"));
        webhook.generate_token = true;
    }
    vec![
        SourceSpec::Http(HttpIngestConfig::default()),
        SourceSpec::Github(github),
        SourceSpec::Webhook(webhook),
        SourceSpec::Host(HostConfig::default()),
        SourceSpec::Probe(ProbeConfig {
            name: "self".to_string(),
            url: format!("{own_url}/healthz"),
            interval: std::time::Duration::from_secs(10),
            timeout: std::time::Duration::from_secs(5),
            subject: Some("helios".to_string()),
            ..ProbeConfig::default()
        }),
    ]
}

/// Runs a pull source under `supervisor`; `make` builds a fresh instance on every (re)start.
fn spawn_pull<C, S>(
    supervisor: &Supervisor,
    spec: &SourceSpec,
    config: &C,
    make: fn(C) -> Result<S>,
) -> Result<()>
where
    C: Clone + Send + Sync + 'static,
    S: PullSource + 'static,
{
    let config = config.clone();
    let handle = register(supervisor, spec)?;
    supervisor.start(
        handle,
        Box::new(move || Ok(Box::new(make(config.clone())?) as Box<dyn PullSource>)),
    );
    Ok(())
}

/// Registers the source's status handle with its own settings (`max_future`), before
/// anything can emit through it.
fn register(supervisor: &Supervisor, spec: &SourceSpec) -> Result<SourceHandle> {
    let handle = supervisor.register(spec.name(), spec.kind())?;
    handle.set_max_future(spec.max_future());
    Ok(handle)
}

/// Starts every source of the spec under `supervisor` and returns the routes of the push
/// sources (merge them into the API router). Names must be unique. Unverified webhook
/// bodies get the default budget ([`UnverifiedBodies::DEFAULT_BYTES`]).
pub fn build(specs: &[SourceSpec], supervisor: &Arc<Supervisor>) -> Result<Router> {
    build_with(specs, supervisor, UnverifiedBodies::default())
}

/// [`build`], with the byte budget that bodies read before their request is
/// authenticated (GitHub's HMAC-signed deliveries) share. Every GitHub source's
/// `max_body_bytes` must fit in it, or a delivery of that size could never be read.
pub fn build_with(
    specs: &[SourceSpec],
    supervisor: &Arc<Supervisor>,
    unverified: UnverifiedBodies,
) -> Result<Router> {
    let mut router = Router::new();
    let mut http_sources = 0;
    for spec in specs {
        if let SourceSpec::Github(c) = spec
            && c.max_body_bytes > unverified.total()
        {
            return Err(ConnectorError::config(
                &c.name,
                format!(
                    "max_body_bytes ({}) is larger than the budget of unverified webhook bodies ({} bytes), so a delivery that large could never be read; raise --unverified-body-budget or lower max_body_bytes",
                    c.max_body_bytes,
                    unverified.total()
                ),
            ));
        }
    }
    let mut github = GithubWebhooks::with_budget(unverified);
    let mut webhooks = Webhooks::default();
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
                let handle = register(supervisor, spec)?;
                let ingest = HttpIngest::new(c.clone(), supervisor.emitter().clone(), handle);
                router = router.merge(ingest.router());
            }
            SourceSpec::Host(c) => spawn_pull(supervisor, spec, c, |c| Ok(HostSource::new(c)))?,
            SourceSpec::FileTail(c) => spawn_pull(supervisor, spec, c, FileTailSource::new)?,
            SourceSpec::Probe(c) => spawn_pull(supervisor, spec, c, ProbeSource::new)?,
            SourceSpec::Git(c) => spawn_pull(supervisor, spec, c, GitSource::new)?,
            SourceSpec::Github(c) => {
                let secret = c.secret_origin().resolve(name)?;
                let handle = register(supervisor, spec)?;
                github.add(c.clone(), &secret, supervisor.emitter().clone(), handle)?;
            }
            SourceSpec::Webhook(c) => {
                let token = c.token_origin().resolve(name)?;
                let handle = register(supervisor, spec)?;
                webhooks.add(c.clone(), token, supervisor.emitter().clone(), handle)?;
            }
            SourceSpec::KafkaBridge(c) => {
                // A missing TLS file, password variable or password file stops the start,
                // naming it, rather than failing each restart of the source.
                c.check_files()?;
                c.resolve_sasl_password()?;
                let config = c.clone();
                let handle = register(supervisor, spec)?;
                supervisor.start(
                    handle,
                    Box::new(move || {
                        Ok(Box::new(KafkaBridge::new(config.clone())?)
                            as Box<dyn crate::runtime::PullSource>)
                    }),
                );
            }
        }
    }
    if !github.is_empty() {
        router = router.merge(github.router());
    }
    if !webhooks.is_empty() {
        router = router.merge(webhooks.router());
    }
    Ok(router.merge(crate::runtime::router(supervisor.clone())))
}

#[cfg(test)]
mod pull_tests;
