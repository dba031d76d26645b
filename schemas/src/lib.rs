//! Helios records: the Avro schemas (`avro/*.avsc`), their Rust types, the Confluent
//! wire format, the codecs every stage uses, the embedded and remote schema registries,
//! the CloudEvents 1.0 JSON mapping, and the one TLS setup of every outbound HTTPS client
//! ([`tls`]).
//!
//! Architecture invariant: apart from the registry's own data-dir log (and the remote
//! registry's HTTP, and reading a CA file for TLS), this crate does no I/O; the HTTP routes
//! over the registry live in `helios-query-api`.

pub mod cloudevents;
pub mod codec;
mod error;
pub mod event_time;
mod fault;
pub mod records;
pub mod registry;
pub mod tls;
pub mod watermark_mark;
pub mod wire;

pub use codec::{EventCodec, RecordCodec, SchemaSource};
pub use error::{Error, Result};
pub use fault::Fault;
pub use records::{
    Alert, AlertState, AvroRecord, DeadLetter, Event, Insight, InsightKind, Severity, WindowResult,
};
pub use registry::{CompatibilityLevel, Registry, RemoteRegistry};
