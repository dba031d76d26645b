//! `helios-sinks` owns the stage after the processors: loading output topics into the
//! store, and telling people about alerts.
//!
//! - [`sink`]: the sink loop, a consumer group on the output topics that commits only after
//!   the store acknowledged; shared by every store through the [`store::Store`] trait.
//! - [`clickhouse`]: the ClickHouse store: migrations, retention, inserts and the
//!   deduplicating read helpers.
//! - [`parquet`]: the embedded store: the same tables as Parquet files in the data dir,
//!   partitioned by day, compacted in the background, queried with DataFusion.
//! - [`notify`]: alert notifications to webhooks (generic JSON and Slack), sent once per
//!   alert state change, with the delivery record kept in the data dir.
//! - [`spec`]: the sink's own description of the aggregates and retention it stores.
//! - [`store`] and [`rows`]: the seam every store implements, and the row model of its
//!   tables (the same columns on ClickHouse and in Parquet).
//!
//! Architecture invariant: a sink never commits an offset before the store (or the webhook
//! receiver) acknowledged what the offset covers, and never drops a record: what cannot be
//! stored becomes a dead letter.

mod backoff;
pub mod clickhouse;
mod error;
pub mod notify;
pub mod parquet;
pub mod rows;
pub mod sink;
pub mod spec;
pub mod store;

pub use backoff::{Backoff, RetryPolicy};
pub use error::{Fault, Result, SinkError};
pub use sink::{Decoders, Sink, SinkConfig, SinkMetrics, SinkStats, SinkTopics};
pub use spec::{AggregateSpec, Retention, StoreSpec, WindowSpec};
pub use store::{Rows, Store};
