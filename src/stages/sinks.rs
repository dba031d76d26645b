//! The sink stage: the output topics loaded into the store (ClickHouse, migrated on start,
//! or the Parquet store in the data dir) and the alert notifier. `helios up` and `helios
//! run sink` both start it with [`start_sinks`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use helios_log::{Log, TopicSpec, create_topic_if_missing};
use helios_schemas::SchemaSource;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseStore, migrations};
use helios_sinks::notify::{Notifier, NotifyConfig, WebhookConfig};
use helios_sinks::parquet::{ParquetConfig, ParquetStore};
use helios_sinks::{Decoders, Sink, SinkConfig, SinkTopics, Store, StoreSpec};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::backend::Topics;
use crate::stages::supervision::Failures;

/// How the sink batches rows for the store (`helios up` and `helios run sink`).
#[derive(Debug, Clone, Args)]
pub struct SinkBatching {
    /// Rows per store write: a batch is written when it holds this many rows or its oldest
    /// row is a second old, whichever comes first. ClickHouse prefers fewer, larger inserts:
    /// for bulk loads and catching up on a backlog, 100000 writes about a quarter faster
    /// per row than 20000 (bench/RESULTS.md), at the cost of memory.
    #[arg(long, env = "HELIOS_SINK_BATCH_ROWS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sink_batch_rows: u32,

    /// Most rows the sink holds (the batch being built plus the one being written); at this
    /// bound it stops reading and the log keeps the rest. [default: twice --sink-batch-rows,
    /// at least 20000]
    #[arg(long, env = "HELIOS_SINK_MAX_BUFFERED_ROWS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sink_max_buffered_rows: Option<u32>,
}

impl SinkBatching {
    /// `config` with these batch settings.
    fn apply(&self, config: SinkConfig) -> SinkConfig {
        let batch_rows = self.sink_batch_rows as usize;
        let max_buffered_rows = self
            .sink_max_buffered_rows
            .map_or((2 * batch_rows).max(config.max_buffered_rows), |m| {
                m as usize
            });
        SinkConfig {
            batch_rows,
            max_buffered_rows,
            ..config
        }
    }
}

/// The alert notifier's record (`helios up` and `helios run sink`).
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// How long a delivered (or given-up) notification is remembered, so a replay of the
    /// alerts topic does not send it again: keep it longer than that topic keeps alerts
    /// (7 days by default in the embedded log; on Kafka, the topic's retention.ms). Older
    /// ones are forgotten, which keeps the record (`<data dir>/notify`) bounded.
    #[arg(long, env = "HELIOS_NOTIFY_RECORD_HORIZON", default_value = "30d",
          value_parser = crate::stages::http::parse_positive_duration)]
    pub notify_record_horizon: std::time::Duration,
}

/// Everything [`start_sinks`] needs.
pub struct SinksSetup {
    pub log: Log,
    pub registry: Arc<dyn SchemaSource>,
    pub store: StoreSpec,
    pub webhooks: Vec<WebhookConfig>,
    /// ClickHouse, or `None` for the Parquet store in the data dir.
    pub clickhouse: Option<ClickHouseConfig>,
    pub data_dir: PathBuf,
    pub group: String,
    /// Partitions of `helios.aggregates` if the sink has to create it.
    pub aggregates_partitions: u32,
    /// Topic names (prefix) of the deployment.
    pub topics: Topics,
    pub batching: SinkBatching,
    pub notify: NotifyArgs,
    /// Where the sink and the notifier report an error they stopped on.
    pub failures: Failures,
    /// Size cap of the Parquet store (ignored with ClickHouse).
    pub store_max_bytes: Option<u64>,
}

/// The running sink and notifier.
pub struct RunningSinks {
    stop: watch::Sender<bool>,
    tasks: Vec<(
        &'static str,
        JoinHandle<Result<(), helios_sinks::SinkError>>,
    )>,
    /// The sink's counters.
    pub metrics: Arc<helios_sinks::SinkMetrics>,
    /// The topics the sink reads.
    pub topics: Vec<String>,
}

impl RunningSinks {
    /// Asks the sink and the notifier to stop (the sink flushes what it holds and commits)
    /// and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(stage = name, error = %e, "Stage stopped with an error."),
                Err(e) => warn!(stage = name, error = %e, "Stage task failed."),
            }
        }
    }
}

/// What the embedded store keeps: `spec`, with `Retention::DEFAULT` for every table whose
/// retention the spec leaves out, so a default install does not grow forever (ADR-016).
/// Not for ClickHouse: a default TTL there would delete data that deployments kept.
pub fn embedded_store_spec(spec: &StoreSpec) -> StoreSpec {
    StoreSpec {
        retention: spec.retention.clone().or(&helios_sinks::Retention::DEFAULT),
        ..spec.clone()
    }
}

/// The Parquet store's folder inside a data dir.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// Ensures the output topics, opens the store (migrating ClickHouse), and starts the sink
/// and, when webhooks are configured, the notifier.
pub async fn start_sinks(setup: SinksSetup) -> anyhow::Result<RunningSinks> {
    let names = &setup.topics;
    let topics = SinkTopics {
        events: Some(names.name("helios.events")),
        aggregates: Some(names.name("helios.aggregates")),
        alerts: Some(names.name("helios.alerts")),
        insights: Some(names.name("helios.insights")),
        dead_letters: Some(names.name("helios.dlq")),
        late: Some(names.name("helios.late")),
    };
    let admin = setup.log.admin();
    for (topic, partitions) in [
        (&topics.events, names.partitions),
        (&topics.aggregates, setup.aggregates_partitions),
        (&topics.alerts, 1),
        (&topics.insights, 1),
        (&topics.dead_letters, 1),
        // As many as the processor gives it (it writes per input partition).
        (&topics.late, setup.aggregates_partitions),
    ] {
        let Some(topic) = topic else { continue };
        // Only missing topics: the stage that writes a topic decides its partitions.
        create_topic_if_missing(&*admin, &TopicSpec::new(topic.as_str(), partitions))
            .await
            .with_context(|| format!("creating topic {topic}"))?;
    }
    let store: Arc<dyn Store> = match &setup.clickhouse {
        Some(config) => {
            let ch = ClickHouse::new(config)?;
            let report = migrations::migrate(&ch, &setup.store)
                .await
                .with_context(|| format!("migrating ClickHouse at {}", config.url))?;
            if !report.is_noop() {
                info!(applied = ?report.applied, spec = ?report.spec_changes, "Migrated ClickHouse.");
            }
            Arc::new(ClickHouseStore::new(ch, setup.store.clone())?)
        }
        None => {
            let dir = store_dir(&setup.data_dir);
            Arc::new(
                ParquetStore::open(
                    ParquetConfig::new(&dir).max_bytes(setup.store_max_bytes),
                    embedded_store_spec(&setup.store),
                )
                .with_context(|| format!("opening the Parquet store in {}", dir.display()))?,
            )
        }
    };
    let read_topics: Vec<String> = [
        &topics.events,
        &topics.aggregates,
        &topics.alerts,
        &topics.insights,
        &topics.dead_letters,
        &topics.late,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let embedded_store = setup.clickhouse.is_none();
    let config = setup.batching.apply(SinkConfig {
        group: setup.group.clone(),
        topics,
        // The embedded store compacts small files; let it look every minute.
        retention_every_s: if embedded_store { 60 } else { 3_600 },
        ..SinkConfig::default()
    });
    let sink = Sink::new(store, config, Decoders::new(setup.registry.clone()))?;
    let metrics = sink.metrics();
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let log = setup.log.clone();
    let sink_rx = rx.clone();
    let failures = setup.failures.clone();
    tasks.push((
        "sink",
        tokio::spawn(async move {
            let r = sink.run(&log, sink_rx).await;
            if let Err(e) = &r {
                failures.report("sink", e);
            }
            r
        }),
    ));
    if !setup.webhooks.is_empty() {
        let mut notify = NotifyConfig::new(setup.webhooks, setup.data_dir.join("notify"));
        notify.topic = names.name("helios.alerts");
        notify.tls = crate::backend::outbound().clone();
        notify.record_horizon = setup.notify.notify_record_horizon;
        let notifier = Notifier::new(notify, setup.registry.clone())?;
        let log = setup.log.clone();
        let failures = setup.failures.clone();
        tasks.push((
            "notifier",
            tokio::spawn(async move {
                let r = notifier.run(&log, rx).await.map(|_| ());
                if let Err(e) = &r {
                    failures.report("notifier", e);
                }
                r
            }),
        ));
    }
    Ok(RunningSinks {
        stop,
        tasks,
        metrics,
        topics: read_topics,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        batching: SinkBatching,
    }

    fn config(args: &[&str]) -> SinkConfig {
        let cli = Cli::try_parse_from(std::iter::once("helios").chain(args.iter().copied()))
            .expect("valid flags");
        cli.batching.apply(SinkConfig::default())
    }

    #[test]
    fn the_embedded_store_keeps_the_spec_retention_and_defaults_the_rest() {
        let spec = StoreSpec {
            retention: helios_sinks::Retention {
                events: Some(std::time::Duration::from_secs(3_600)),
                ..helios_sinks::Retention::default()
            },
            ..StoreSpec::default()
        };
        let embedded = embedded_store_spec(&spec);
        assert_eq!(
            embedded.retention.events,
            Some(std::time::Duration::from_secs(3_600))
        );
        assert_eq!(
            embedded.retention.alerts,
            helios_sinks::Retention::DEFAULT.alerts
        );
        assert!(embedded.retention.aggregates.is_some());
    }

    #[test]
    fn batching_flags_default_to_the_sink_defaults_and_scale_the_buffer() {
        let plain = config(&[]);
        let defaults = SinkConfig::default();
        assert_eq!(
            (plain.batch_rows, plain.max_buffered_rows),
            (defaults.batch_rows, defaults.max_buffered_rows)
        );
        let bulk = config(&["--sink-batch-rows", "100000"]);
        assert_eq!(
            (bulk.batch_rows, bulk.max_buffered_rows),
            (100_000, 200_000)
        );
        bulk.validate().unwrap();
        let set = config(&[
            "--sink-batch-rows",
            "1000",
            "--sink-max-buffered-rows",
            "3000",
        ]);
        assert_eq!((set.batch_rows, set.max_buffered_rows), (1_000, 3_000));
    }

    #[test]
    fn batching_flags_that_cannot_work_are_refused_with_the_reason() {
        let err = Cli::try_parse_from(["helios", "--sink-batch-rows", "0"]).unwrap_err();
        assert!(err.to_string().contains("--sink-batch-rows"), "{err}");
        let small = config(&[
            "--sink-batch-rows",
            "50000",
            "--sink-max-buffered-rows",
            "10000",
        ]);
        let err = small.validate().unwrap_err().to_string();
        assert!(
            err.contains("max_buffered_rows is smaller than batch_rows"),
            "{err}"
        );
    }
}
