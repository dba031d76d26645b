//! `GET /metrics`: the Prometheus text exposition of every stage a process runs.
//!
//! This module owns the format ([`text`]), the names of the families ([`names`]), the
//! [`Collect`] seam and the [`MetricsRegistry`] that a scrape walks. It knows no stage:
//! stages keep their own counters (atomics) and the binary adapts each to [`Collect`],
//! so the stage crates do not depend on this one.

pub mod names;
pub mod parse;
pub mod text;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tracing::warn;

pub use text::{Exposition, Family, Kind, Value};

/// The content type of the text format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape waits for one collector's [`Collect::refresh`]; past it, the
/// collector reports what it knew before, so one slow broker cannot hang the scrape.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// The future [`Collect::refresh`] returns.
pub type RefreshFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Something that writes samples into a scrape.
pub trait Collect: Send + Sync + std::fmt::Debug {
    /// Writes the current values. Called on every scrape; reads atomics, no I/O.
    fn collect(&self, out: &mut Exposition);

    /// Fetches what `collect` needs from elsewhere (e.g. the log end offsets for consumer
    /// lag) before a scrape. Nothing by default.
    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(std::future::ready(()))
    }
}

/// The collectors of one process; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct MetricsRegistry {
    collectors: Arc<RwLock<Vec<Arc<dyn Collect>>>>,
}

impl MetricsRegistry {
    pub fn new() -> Self {
        MetricsRegistry::default()
    }

    /// Adds a collector; it is part of every scrape from now on.
    pub fn register(&self, collector: Arc<dyn Collect>) {
        self.collectors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(collector);
    }

    /// Writes every collector's samples, without refreshing.
    pub fn collect(&self) -> String {
        let mut out = Exposition::new();
        for c in self.snapshot() {
            c.collect(&mut out);
        }
        out.render()
    }

    /// Refreshes every collector (each bounded by a timeout), then collects.
    pub async fn scrape(&self) -> String {
        for c in self.snapshot() {
            if tokio::time::timeout(REFRESH_TIMEOUT, c.refresh())
                .await
                .is_err()
            {
                warn!(
                    timeout_ms = REFRESH_TIMEOUT.as_millis() as u64,
                    "Refreshing metrics timed out; the scrape shows the values from before."
                );
            }
        }
        self.collect()
    }

    fn snapshot(&self) -> Vec<Arc<dyn Collect>> {
        self.collectors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// `GET /metrics` over `registry`.
pub fn router(registry: MetricsRegistry) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
}

async fn scrape(State(registry): State<MetricsRegistry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        registry.scrape().await,
    )
}

#[cfg(test)]
mod tests;
