//! Schema registration, once for every stage: the subjects a stage writes with
//! (`<topic>-value`, Confluent's topic naming) registered in the embedded registry of the
//! data dir or in a remote Confluent-compatible one, and the source of schemas its codecs
//! read with.

use std::sync::Arc;

use anyhow::Context;
use helios_schemas::{Registry, RemoteRegistry, SchemaSource};

use crate::backend::Topics;

/// Where a stage registers and reads schemas.
#[derive(Clone)]
pub enum Schemas {
    /// The data dir's own registry (served by `helios up` and `helios run ingest`).
    Embedded(Arc<Registry>),
    /// A Confluent-compatible registry (`--registry`).
    Remote(Arc<RemoteRegistry>),
}

impl Schemas {
    /// Registers `schema` under the subject of the topic `base` (with the deployment's
    /// prefix) and returns its id.
    pub async fn register(&self, topics: &Topics, base: &str, schema: &str) -> anyhow::Result<u32> {
        let subject = format!("{}-value", topics.name(base));
        match self {
            Schemas::Embedded(registry) => registry
                .register(&subject, schema)
                .map(|r| r.id)
                .with_context(|| format!("registering {subject} in the embedded registry")),
            Schemas::Remote(remote) => remote.register(&subject, schema).await.with_context(|| {
                format!(
                    "registering {subject} at {} (a registry behind Helios' API keys needs an \
                     admin key in HELIOS_REGISTRY_KEY)",
                    remote.url()
                )
            }),
        }
    }

    /// What codecs resolve schema ids with.
    pub fn source(&self) -> Arc<dyn SchemaSource> {
        match self {
            Schemas::Embedded(registry) => registry.clone(),
            Schemas::Remote(remote) => remote.clone(),
        }
    }

    /// The embedded registry, which the process then serves; `None` for a remote one.
    pub fn served(&self) -> Option<Arc<Registry>> {
        match self {
            Schemas::Embedded(registry) => Some(registry.clone()),
            Schemas::Remote(_) => None,
        }
    }
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schemas::Embedded(_) => f.write_str("Schemas::Embedded"),
            Schemas::Remote(r) => write!(f, "Schemas::Remote({})", r.url()),
        }
    }
}

/// The registry a writing stage uses: the remote one the backend names, else the data
/// dir's embedded registry, opened writable.
pub fn writable(backend: &crate::backend::Backend) -> anyhow::Result<Schemas> {
    match backend.remote_registry()? {
        Some(remote) => Ok(Schemas::Remote(remote)),
        None => Ok(Schemas::Embedded(open_embedded(&backend.data_dir)?)),
    }
}

/// The data dir's embedded registry, opened writable.
pub fn open_embedded(data_dir: &std::path::Path) -> anyhow::Result<Arc<Registry>> {
    let dir = crate::backend::registry_dir(data_dir);
    let registry = Registry::open(&dir)
        .with_context(|| format!("opening the schema registry in {}", dir.display()))?;
    Ok(Arc::new(registry))
}
