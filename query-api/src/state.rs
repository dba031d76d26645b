//! What the read routes share: the store, the catalog of aggregates and the query limits.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::store::{Limits, ReadStore};

/// Shared state of the insights and SQL routes.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<dyn ReadStore>,
    pub catalog: Arc<Catalog>,
    /// Limits of `POST /v1/sql`.
    pub sql_limits: Limits,
    /// Limits of the queries the insights routes build (generous on rows: they read
    /// aggregate windows and combine them; the time limit is the same).
    pub insight_limits: Limits,
}

impl ApiState {
    /// State over `store` and `catalog` with the default limits: SQL answers at most
    /// 10 000 rows in 10 s; the insights routes read at most 1 000 000 rows in 10 s.
    pub fn new(store: Arc<dyn ReadStore>, catalog: Catalog) -> Self {
        ApiState {
            store,
            catalog: Arc::new(catalog),
            sql_limits: Limits::default(),
            insight_limits: Limits {
                max_rows: 1_000_000,
                timeout: Duration::from_secs(10),
            },
        }
    }
}
