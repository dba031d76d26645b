//! `helios-connectors` owns Helios' sources: everything that turns outside signals into
//! `Event` records on `helios.events`, and bad input into `DeadLetter` records.
//!
//! [`runtime`] is what every source runs in (status, emitter, supervisor, the
//! `/v1/sources` routes); each source lives in its own folder.

mod error;

pub mod http_ingest;
pub mod runtime;
pub mod spec;

pub use error::{ConnectorError, Fault, Result};
