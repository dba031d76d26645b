//! The stages of Helios and how each is built and run. A command composes stages; this
//! layer owns everything between the flags and the library crates.
//!
//! - [`sources`]: the sources (HTTP ingest, webhooks, pull sources) writing
//!   `helios.events` and `helios.dlq`.
//! - [`pipeline`]: the processor (aggregates, rules, insights) over `helios.events`.
//! - [`sinks`]: the store loader and the alert notifier over the output topics.
//! - [`read_api`]: the insights and SQL API over the store.
//! - [`schemas`]: schema registration, embedded or remote, for every stage.
//! - [`http`]: binding and serving listeners, health and stage metrics routes.
//! - [`supervision`]: what stops a process (a signal, or a stage failing).
//! - [`disk`]: the data dir's limits (retention, size caps, the free-space reserve of
//!   ingest) and what it holds.
//!
//! How the commands compose them:
//! - `helios up`: embedded log and registry in the data dir; sources, pipeline, sinks and
//!   read API in one process behind one listener.
//! - `helios run ingest`: sources (and the embedded registry, when no remote one is
//!   given) behind a listener.
//! - `helios run pipeline`: the pipeline, with an optional metrics listener.
//! - `helios run sink`: the sinks, with an optional metrics listener.
//! - `helios serve api`: the read API behind a listener.

pub mod disk;
pub mod http;
pub mod pipeline;
pub mod read_api;
pub mod schemas;
pub mod sinks;
pub mod sources;
pub mod supervision;
