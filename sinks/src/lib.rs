//! `helios-sinks` owns the stage after the processors: loading output topics into the
//! store, and telling people about alerts.
//!
//! - [`clickhouse`]: the ClickHouse store: migrations, retention, the sink (a consumer
//!   group on the output topics that commits only after ClickHouse acknowledged) and the
//!   deduplicating read helpers.
//! - [`notify`]: alert notifications to webhooks (generic JSON and Slack), sent once per
//!   alert state change, with the delivery record kept in the data dir.
//! - [`spec`]: the sink's own description of the aggregates and retention it stores.
//!
//! Architecture invariant: a sink never commits an offset before the store (or the webhook
//! receiver) acknowledged what the offset covers, and never drops a record: what cannot be
//! stored becomes a dead letter.

mod backoff;
pub mod clickhouse;
mod error;
pub mod notify;
pub mod spec;

pub use backoff::{Backoff, RetryPolicy};
pub use error::{Fault, Result, SinkError};
pub use spec::{AggregateSpec, Retention, StoreSpec};
