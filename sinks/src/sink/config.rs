//! The sink's settings: which topic feeds which table, and how it batches and retries.

use serde::{Deserialize, Serialize};

use crate::backoff::RetryPolicy;
use crate::error::{Result, SinkError};

/// Which topic feeds which table. A `None` topic is not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkTopics {
    /// `Event`s into `events`.
    #[serde(default)]
    pub events: Option<String>,
    /// `WindowResult`s into `agg_<aggregate>`.
    #[serde(default)]
    pub aggregates: Option<String>,
    /// `Alert`s into `alerts`.
    #[serde(default)]
    pub alerts: Option<String>,
    /// `Insight`s into `insights`.
    #[serde(default)]
    pub insights: Option<String>,
    /// `DeadLetter`s into `dead_letters`.
    #[serde(default)]
    pub dead_letters: Option<String>,
    /// Late events (`DeadLetter`s of the processor's late stage) into `late_events`.
    #[serde(default)]
    pub late: Option<String>,
}

impl Default for SinkTopics {
    fn default() -> Self {
        SinkTopics {
            events: Some("helios.events".into()),
            aggregates: Some("helios.aggregates".into()),
            alerts: Some("helios.alerts".into()),
            insights: Some("helios.insights".into()),
            dead_letters: Some("helios.dlq".into()),
            late: Some("helios.late".into()),
        }
    }
}

impl SinkTopics {
    pub(super) fn all(&self) -> Vec<&str> {
        [
            &self.events,
            &self.aggregates,
            &self.alerts,
            &self.insights,
            &self.dead_letters,
            &self.late,
        ]
        .into_iter()
        .filter_map(|t| t.as_deref())
        .collect()
    }

    pub(super) fn kind_of(&self, topic: &str) -> Option<TopicKind> {
        let is = |t: &Option<String>| t.as_deref() == Some(topic);
        if is(&self.events) {
            Some(TopicKind::Events)
        } else if is(&self.aggregates) {
            Some(TopicKind::Aggregates)
        } else if is(&self.alerts) {
            Some(TopicKind::Alerts)
        } else if is(&self.insights) {
            Some(TopicKind::Insights)
        } else if is(&self.dead_letters) {
            Some(TopicKind::DeadLetters)
        } else if is(&self.late) {
            Some(TopicKind::Late)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TopicKind {
    Events,
    Aggregates,
    Alerts,
    Insights,
    DeadLetters,
    Late,
}

/// How the sink batches and retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Consumer group; every sink process with the same group shares the partitions.
    #[serde(default = "default_group")]
    pub group: String,
    /// Topics to read.
    #[serde(default)]
    pub topics: SinkTopics,
    /// Flush once this many rows are buffered (ClickHouse prefers thousands per insert,
    /// and Parquet files of thousands of rows compress well).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Flush once the oldest buffered row is this old, ms (about one insert per second).
    #[serde(default = "default_batch_interval_ms")]
    pub batch_interval_ms: u64,
    /// Upper bound on buffered rows; polling stops at this bound. At least `batch_rows`.
    #[serde(default = "default_max_buffered_rows")]
    pub max_buffered_rows: usize,
    /// Records asked for per poll.
    #[serde(default = "default_poll_max")]
    pub poll_max: usize,
    /// Spacing of retries of inserts and commits.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How often the store's upkeep (retention, compaction) runs, s.
    #[serde(default = "default_retention_every_s")]
    pub retention_every_s: u64,
}

fn default_group() -> String {
    "helios-sink".to_owned()
}
fn default_batch_rows() -> usize {
    5_000
}
fn default_batch_interval_ms() -> u64 {
    1_000
}
fn default_max_buffered_rows() -> usize {
    20_000
}
fn default_poll_max() -> usize {
    1_000
}
fn default_retention_every_s() -> u64 {
    3_600
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            group: default_group(),
            topics: SinkTopics::default(),
            batch_rows: default_batch_rows(),
            batch_interval_ms: default_batch_interval_ms(),
            max_buffered_rows: default_max_buffered_rows(),
            poll_max: default_poll_max(),
            retry: RetryPolicy::default(),
            retention_every_s: default_retention_every_s(),
        }
    }
}

impl SinkConfig {
    /// Checks the bounds without touching the network.
    pub fn validate(&self) -> Result<()> {
        if self.batch_rows == 0 || self.poll_max == 0 {
            return Err(SinkError::config(
                "batch_rows and poll_max must be positive",
                format!("batch_rows={} poll_max={}", self.batch_rows, self.poll_max),
                "use thousands of rows per batch",
            ));
        }
        if self.max_buffered_rows < self.batch_rows {
            return Err(SinkError::config(
                "max_buffered_rows is smaller than batch_rows",
                format!("{} < {}", self.max_buffered_rows, self.batch_rows),
                "raise max_buffered_rows to at least batch_rows",
            ));
        }
        if self.topics.all().is_empty() {
            return Err(SinkError::config(
                "the sink reads no topic",
                "",
                "name at least one topic",
            ));
        }
        Ok(())
    }
}
