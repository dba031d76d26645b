//! The seam between the sink loop ([`crate::sink`]) and a store: ClickHouse
//! ([`crate::clickhouse::ClickHouseStore`]) or Parquet files queried with DataFusion
//! ([`crate::parquet::ParquetStore`]).
//!
//! The loop owns consuming, decoding, batching, backoff and committing; a store only has to
//! make a batch of rows durable and say so. Both stores keep the same tables with the same
//! columns, and both deduplicate on read by id (and version), so the loop's at-least-once
//! delivery shows up as exactly once in queries.

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::rows::{AggregateRows, AlertRow, DeadLetterRow, EventRow, InsightRow, LateEventRow};
use crate::spec::StoreSpec;

/// Rows waiting to be stored, per table.
#[derive(Debug, Default)]
pub struct Rows {
    /// `events`.
    pub events: Vec<EventRow>,
    /// `agg_<name>`, by aggregate name.
    pub aggregates: BTreeMap<String, AggregateRows>,
    /// `alerts`.
    pub alerts: Vec<AlertRow>,
    /// `insights`.
    pub insights: Vec<InsightRow>,
    /// `dead_letters`.
    pub dead_letters: Vec<DeadLetterRow>,
    /// `late_events`.
    pub late_events: Vec<LateEventRow>,
}

impl Rows {
    /// Rows held, over all tables.
    pub fn len(&self) -> usize {
        self.events.len()
            + self.alerts.len()
            + self.insights.len()
            + self.dead_letters.len()
            + self.late_events.len()
            + self
                .aggregates
                .values()
                .map(AggregateRows::len)
                .sum::<usize>()
    }

    /// True when no table has rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A place the sink loop can store rows in.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// The stage name written into the dead letters the sink makes, e.g. `sink/clickhouse`.
    fn stage(&self) -> &'static str;

    /// Where the store is, for logs.
    fn describe(&self) -> String;

    /// The aggregates and retention the store keeps.
    fn spec(&self) -> &StoreSpec;

    /// Makes `rows` durable. Tables whose rows were acknowledged are emptied, so after an
    /// error `rows` holds only what is still missing and a retry sends just that. Writing
    /// the same rows twice must be harmless (reads deduplicate by id and version).
    async fn write(&self, rows: &mut Rows) -> Result<()>;

    /// Periodic upkeep (retention, compaction). Errors are logged by the caller and the
    /// upkeep tried again later; they never stop the sink.
    async fn maintain(&self) -> Result<()>;
}
