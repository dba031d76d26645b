//! Helios HTTP API (axum). This crate speaks HTTP; the crates it serves do not.
//!
//! - [`registry`]: the Confluent-compatible schema registry routes over the embedded
//!   [`helios_schemas::Registry`].

mod app;
pub mod auth;
pub mod dashboard;
pub mod registry;

pub use app::router;
