//! Which log and registry a command talks to: the embedded data dir, or Kafka and a
//! registry URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use helios_log::Log;
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::kafka::{KafkaConfig, KafkaLog};
use helios_schemas::{Registry, RemoteRegistry, SchemaSource};

/// Where the log lives, for the commands that read it.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// The data dir holding the embedded log and registry (used unless --kafka and
    /// --registry say otherwise).
    #[arg(long, env = "HELIOS_DATA_DIR", default_value = "./helios-data")]
    pub data_dir: PathBuf,

    /// Use Kafka instead of the embedded log: bootstrap servers, e.g. `127.0.0.1:9092`.
    #[arg(long, env = "HELIOS_KAFKA_BOOTSTRAP")]
    pub kafka: Option<String>,

    /// Schema registry URL (default: the data dir's embedded registry).
    #[arg(long, env = "HELIOS_REGISTRY_URL")]
    pub registry: Option<String>,
}

/// The embedded log's folder inside a data dir.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// The embedded registry's folder inside a data dir.
pub fn registry_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("registry")
}

impl LogArgs {
    pub async fn open_log(&self) -> anyhow::Result<Log> {
        match &self.kafka {
            Some(servers) => KafkaLog::connect(KafkaConfig::new(servers.clone()))
                .await
                .with_context(|| format!("connecting to Kafka at {servers}")),
            None => {
                let dir = log_dir(&self.data_dir);
                let log = EmbeddedLog::open_read_only(&dir).with_context(|| {
                    format!(
                        "opening the log in {} (is this the data dir of `helios up`?)",
                        dir.display()
                    )
                })?;
                Ok(log.log())
            }
        }
    }

    /// Opens the log for a stage that writes or commits: Kafka, or the data dir's embedded
    /// log (which only one process may hold; `role` names the stage in the error).
    pub async fn open_writable_log(
        &self,
        role: &str,
    ) -> anyhow::Result<(Log, Option<EmbeddedLog>)> {
        match &self.kafka {
            Some(servers) => Ok((
                KafkaLog::connect(KafkaConfig::new(servers.clone()))
                    .await
                    .with_context(|| format!("connecting to Kafka at {servers}"))?,
                None,
            )),
            None => {
                let dir = log_dir(&self.data_dir);
                let embedded = EmbeddedLog::open(&dir, EmbeddedConfig::default()).with_context(|| {
                    format!(
                        "opening the log in {} ({role} needs it writable: stop `helios up` on this \
                         data dir, or point --kafka at a broker)",
                        dir.display()
                    )
                })?;
                Ok((embedded.log(), Some(embedded)))
            }
        }
    }

    pub fn open_registry(&self) -> anyhow::Result<Arc<dyn SchemaSource>> {
        match &self.registry {
            Some(url) => Ok(Arc::new(
                RemoteRegistry::new(url).with_context(|| format!("registry URL {url}"))?,
            )),
            None => {
                let dir = registry_dir(&self.data_dir);
                Ok(Arc::new(Registry::open_read_only(&dir).with_context(
                    || format!("opening the registry in {}", dir.display()),
                )?))
            }
        }
    }
}
