//! `helios-pipeline` owns the deterministic business logic: the pipeline spec and its
//! validation, SQL expressions over events, the repeats of an event it drops, windows,
//! aggregates, rules, insights and the processor runtime.

pub mod checkpoint;
pub mod dedupe;
mod error;
pub mod expr;
pub mod ids;
pub mod insights;
pub mod rules;
pub mod runtime;
pub mod spec;
pub mod window;

pub use error::{PipelineError, Result};
