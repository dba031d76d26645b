//! `helios-pipeline` owns the deterministic business logic: the pipeline spec and its
//! validation, SQL expressions over events, and (growing) windows, aggregates, rules and
//! the processor runtime.

pub mod checkpoint;
mod error;
pub mod expr;
pub mod ids;
pub mod insights;
pub mod rules;
pub mod runtime;
pub mod spec;
pub mod window;

pub use error::{PipelineError, Result};
