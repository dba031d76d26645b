//! The data dir's disk: how much the embedded log and store may keep (retention and size
//! caps), the reserve below which ingest refuses new events, and what the data dir holds
//! now (for `/metrics`, `GET /v1/storage` and `helios topics`). Defaults: ADR-016.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use clap::Args;
use helios_connectors::runtime::DiskGuard;
use helios_log::Log;
use helios_log::embedded::DefaultRetention;
use helios_query_api::storage::{TableUsage, TopicUsage, Usage, UsageSource};
use helios_sinks::Retention;
use tracing::debug;

use crate::stages::http::{parse_positive_duration, parse_size};

/// A size limit, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit(pub Option<u64>);

/// An age limit, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeLimit(pub Option<Duration>);

/// `off`, or a size such as `1GiB` (see [`parse_size`]).
pub fn parse_size_limit(s: &str) -> Result<SizeLimit, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(SizeLimit(None));
    }
    parse_size(s).map(|b| SizeLimit(Some(b as u64)))
}

/// `off`, or a duration such as `7d`.
pub fn parse_age_limit(s: &str) -> Result<AgeLimit, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(AgeLimit(None));
    }
    parse_positive_duration(s).map(|d| AgeLimit(Some(d)))
}

/// Retention of the embedded log's topics (every role that writes a data dir's log).
#[derive(Debug, Clone, Args)]
pub struct LogRetentionArgs {
    /// How long the embedded log keeps records (by append time), for every topic; whole
    /// segments are deleted once all their records are older. `off` keeps them forever.
    /// Kafka topics keep the broker's retention.
    #[arg(long, env = "HELIOS_LOG_RETENTION", default_value = "7d", value_parser = parse_age_limit)]
    pub log_retention: AgeLimit,

    /// Most bytes one topic of the embedded log takes on disk, split evenly over its
    /// partitions; the oldest records go first, checked on every new segment, so a topic
    /// never holds more. E.g. `1GiB`; `off` for no cap.
    #[arg(long, env = "HELIOS_LOG_RETENTION_SIZE", default_value = "1GiB", value_parser = parse_size_limit)]
    pub log_retention_size: SizeLimit,
}

impl LogRetentionArgs {
    /// The log's retention for topics without their own.
    pub fn default_retention(&self) -> DefaultRetention {
        DefaultRetention {
            age: self.log_retention.0,
            topic_bytes: self.log_retention_size.0,
        }
    }
}

/// The free space ingest keeps on the data dir's disk (`helios up`, `helios run ingest`).
#[derive(Debug, Clone, Args)]
pub struct MinFreeArgs {
    /// Ingest refuses new events while the data dir's file system has less than this
    /// free: HTTP ingest and webhooks answer `507` with the reason and Retry-After, pull
    /// sources back off. What is left stays for the pipeline, the store and retention,
    /// and ingest resumes by itself once space is back. `off` disables the check.
    #[arg(long, env = "HELIOS_MIN_FREE_DISK", default_value = "512MiB", value_parser = parse_size_limit)]
    pub min_free_disk: SizeLimit,
}

impl MinFreeArgs {
    /// The guard of a data dir's disk, unless the check is off or the log is elsewhere.
    pub fn guard(&self, data_dir: &Path, embedded_log: bool) -> Option<DiskGuard> {
        match self.min_free_disk.0 {
            Some(reserve) if embedded_log => Some(DiskGuard::new(data_dir, reserve)),
            _ => None,
        }
    }
}

/// The embedded store's size cap (`helios up`, `helios run sink`).
#[derive(Debug, Clone, Args)]
pub struct StoreCapArgs {
    /// Most bytes the embedded Parquet store (`<data dir>/store`) takes, all tables
    /// together: past it whole days go, oldest first (each table keeps its newest day),
    /// on top of the spec's `[retention]`. `off` for no cap. ClickHouse keeps only the
    /// spec's retention.
    #[arg(long, env = "HELIOS_STORE_MAX_SIZE", default_value = "4GiB", value_parser = parse_size_limit)]
    pub store_max_size: SizeLimit,
}

/// What a data dir holds, measured on request.
#[derive(Debug, Clone)]
pub struct DataDirUsage {
    pub data_dir: PathBuf,
    /// The embedded log, or `None` (Kafka).
    pub log: Option<Log>,
    /// Ingest's free-space guard, if on.
    pub guard: Option<DiskGuard>,
    /// The embedded store's folder, its retention per table and its cap, or `None`
    /// (ClickHouse, or no store in this process).
    pub store: Option<(PathBuf, Retention, Option<u64>)>,
}

impl DataDirUsage {
    /// Measures now: the file system, the topics, the tables.
    pub async fn measure(&self) -> Usage {
        let guard = self
            .guard
            .clone()
            .unwrap_or_else(|| DiskGuard::new(&self.data_dir, 0));
        let store = self.store.clone();
        let (space, tables) = tokio::task::spawn_blocking(move || {
            let space = guard.space();
            let tables =
                store.map(|(dir, retention, _)| (helios_sinks::parquet::usage(&dir), retention));
            (space, tables)
        })
        .await
        .unwrap_or_else(|e| (Err(std::io::Error::other(e.to_string())), None));
        let (free_bytes, total_bytes) = match space {
            Ok(s) => (Some(s.free), Some(s.total)),
            Err(e) => {
                debug!(data_dir = %self.data_dir.display(), error = %e, "Cannot read the data dir's free space.");
                (None, None)
            }
        };
        let min_free_bytes = self.guard.as_ref().map(DiskGuard::reserve);
        let tables = match tables {
            Some((Ok(sizes), retention)) => sizes
                .into_iter()
                .map(|(name, bytes)| TableUsage {
                    retention_seconds: table_retention(&retention, &name).map(|d| d.as_secs()),
                    name,
                    bytes,
                })
                .collect(),
            Some((Err(e), _)) => {
                debug!(error = %e, "Cannot measure the store's tables.");
                Vec::new()
            }
            None => Vec::new(),
        };
        Usage {
            data_dir: self.data_dir.display().to_string(),
            free_bytes,
            total_bytes,
            min_free_bytes,
            ingest_refused: matches!((free_bytes, min_free_bytes), (Some(f), Some(m)) if f < m),
            topics: match &self.log {
                Some(log) => topic_usage(log).await,
                None => Vec::new(),
            },
            tables,
            store_max_bytes: self.store.as_ref().and_then(|(_, _, cap)| *cap),
        }
    }
}

impl UsageSource for DataDirUsage {
    fn usage(&self) -> Pin<Box<dyn Future<Output = Usage> + Send + '_>> {
        Box::pin(self.measure())
    }
}

/// Each topic of `log` with its size on disk and the retention in force.
pub async fn topic_usage(log: &Log) -> Vec<TopicUsage> {
    let admin = log.admin();
    let names = match admin.list_topics().await {
        Ok(names) => names,
        Err(e) => {
            debug!(error = %e, "Cannot list the topics.");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        // A topic deleted meanwhile has nothing to report.
        let Ok(info) = admin.describe_topic(&name).await else {
            continue;
        };
        let partitions = info.partitions.len() as u32;
        out.push(TopicUsage {
            bytes: info.partitions.iter().filter_map(|p| p.size_bytes).sum(),
            retention_seconds: info.retention.map(|d| d.as_secs()),
            retention_bytes: info
                .retention_bytes
                .map(|b| b.saturating_mul(u64::from(partitions))),
            partitions,
            name,
        });
    }
    out
}

/// The retention of a store table by its folder name (`agg_*` are the aggregates).
fn table_retention(r: &Retention, table: &str) -> Option<Duration> {
    match table {
        // Late events are events, and age with them (as the store expires them).
        "events" | "late_events" => r.events,
        "alerts" => r.alerts,
        "insights" => r.insights,
        "dead_letters" => r.dead_letters,
        t if t.starts_with("agg_") => r.aggregates,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogRetentionArgs,
        #[command(flatten)]
        free: MinFreeArgs,
        #[command(flatten)]
        store: StoreCapArgs,
    }

    #[test]
    fn defaults_bound_the_disk_and_every_limit_can_be_set_or_turned_off() {
        let cli = Cli::try_parse_from(["helios"]).unwrap();
        assert_eq!(
            cli.log.default_retention(),
            DefaultRetention {
                age: Some(Duration::from_secs(7 * 86_400)),
                topic_bytes: Some(1 << 30),
            }
        );
        assert_eq!(cli.free.min_free_disk, SizeLimit(Some(512 << 20)));
        assert_eq!(cli.store.store_max_size, SizeLimit(Some(4 << 30)));
        let guard = cli.free.guard(Path::new("/srv"), true).unwrap();
        assert_eq!(guard.reserve(), 512 << 20);
        assert!(
            cli.free.guard(Path::new("/srv"), false).is_none(),
            "not on Kafka"
        );

        let cli = Cli::try_parse_from([
            "helios",
            "--log-retention",
            "2h",
            "--log-retention-size",
            "off",
            "--min-free-disk",
            "off",
            "--store-max-size",
            "100MiB",
        ])
        .unwrap();
        assert_eq!(
            cli.log.default_retention(),
            DefaultRetention {
                age: Some(Duration::from_secs(7_200)),
                topic_bytes: None,
            }
        );
        assert!(cli.free.guard(Path::new("/srv"), true).is_none());
        assert_eq!(cli.store.store_max_size, SizeLimit(Some(100 << 20)));

        for bad in [
            &["helios", "--log-retention", "0s"][..],
            &["helios", "--log-retention-size", "1GB"],
            &["helios", "--min-free-disk", "lots"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tables_take_their_retention_by_name() {
        let r = Retention::DEFAULT;
        assert_eq!(table_retention(&r, "events"), r.events);
        assert_eq!(table_retention(&r, "late_events"), r.events);
        assert_eq!(table_retention(&r, "agg_ci_runs"), r.aggregates);
        assert_eq!(table_retention(&r, "dead_letters"), r.dead_letters);
        assert_eq!(table_retention(&r, "something_else"), None);
    }
}
