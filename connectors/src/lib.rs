//! `helios-connectors` owns Helios' sources: everything that turns outside signals into
//! `Event` records on `helios.events`, and bad input into `DeadLetter` records.
//!
//! [`runtime`] is what every source runs in (status, emitter, supervisor, the
//! `/v1/sources` routes); each source lives in its own folder.

pub mod body;
mod duration;
mod error;
mod push;
pub mod secret;

pub mod file_tail;
pub mod git;
pub mod github;
pub mod host;
pub mod http_ingest;
pub mod kafka_bridge;
pub mod openapi;
pub mod probe;
pub mod runtime;
pub mod spec;
pub mod webhook;

#[cfg(test)]
mod test_support;

pub use error::{ConnectorError, Fault, Result};
