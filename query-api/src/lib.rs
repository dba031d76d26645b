//! Helios HTTP API (axum). This crate speaks HTTP; the crates it serves do not.
//!
//! - [`insights`]: time series, top-N, alerts, insights, events and subject summaries over
//!   the store, the same answers on ClickHouse and on the embedded store.
//! - [`sql`]: read-only SQL, behind a guard on the parsed statement.
//! - [`store`]: the [`store::ReadStore`] seam and its two readers.
//! - [`catalog`]: the aggregates the API may be asked about, from the pipeline spec.
//! - [`openapi`]: the OpenAPI document, generated from the handlers.
//! - [`registry`]: the Confluent-compatible schema registry routes over the embedded
//!   [`helios_schemas::Registry`].
//! - [`storage`]: `GET /v1/storage`, the data dir's usage per topic and table.
//! - [`server`]: the accept loop every listener runs: header-read and idle timeouts, a
//!   connection cap and the `Host` check of public routes.

mod app;
pub mod auth;
pub mod catalog;
pub mod dashboard;
pub mod error;
mod health;
pub mod insights;
pub mod metrics;
pub mod openapi;
pub mod registry;
pub mod server;
pub mod sql;
pub mod state;
pub mod storage;
pub mod store;

pub use app::{api_router, read_router, router};
pub use error::ApiError;
pub use state::ApiState;
