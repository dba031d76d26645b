//! What the read routes share: the store, the catalog of aggregates, the query limits and
//! the query compartment every query runs in.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::sql::guard::GuardLimits;
use crate::store::{Compartment, CompartmentConfig, CompartmentStore, Limits, ReadStore};

/// Shared state of the insights and SQL routes.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The store, every query of which runs in the compartment.
    pub store: Arc<dyn ReadStore>,
    pub catalog: Arc<Catalog>,
    /// Limits of `POST /v1/sql`.
    pub sql_limits: Limits,
    /// Size limits of the statements `POST /v1/sql` accepts.
    pub guard_limits: GuardLimits,
    /// Limits of the queries the insights routes build (generous on rows and bytes: they
    /// read aggregate windows and combine them; memory and time are the SQL ones).
    pub insight_limits: Limits,
    reader: Arc<dyn ReadStore>,
    compartment: Arc<Compartment>,
}

impl ApiState {
    /// State over `store` and `catalog` with the default limits and compartment: SQL
    /// answers at most 10 000 rows in 10 s; the insights routes read at most 1 000 000 rows
    /// in 10 s.
    ///
    /// # Panics
    /// When the compartment's threads cannot be started (see [`ApiState::with_compartment`]
    /// for the fallible form).
    pub fn new(store: Arc<dyn ReadStore>, catalog: Catalog) -> Self {
        Self::with_compartment(store, catalog, CompartmentConfig::default())
            .expect("starting the query compartment's threads")
    }

    /// State over `store` and `catalog` whose queries run in a compartment of `config`.
    pub fn with_compartment(
        store: Arc<dyn ReadStore>,
        catalog: Catalog,
        config: CompartmentConfig,
    ) -> Result<Self> {
        let compartment = Arc::new(Compartment::new(config)?);
        Ok(ApiState {
            store: Arc::new(CompartmentStore::new(store.clone(), compartment.clone())),
            catalog: Arc::new(catalog),
            sql_limits: Limits::default(),
            guard_limits: GuardLimits::default(),
            insight_limits: Limits {
                max_rows: 1_000_000,
                max_bytes: 1024 * 1024 * 1024,
                timeout: Duration::from_secs(10),
                ..Limits::default()
            },
            reader: store,
            compartment,
        })
    }

    /// Sets the SQL limits, and the memory, value and time limits of the insights queries.
    pub fn with_limits(mut self, sql: Limits, guard: GuardLimits) -> Self {
        self.sql_limits = sql;
        self.guard_limits = guard;
        self.insight_limits.max_memory = sql.max_memory;
        self.insight_limits.max_value_bytes = sql.max_value_bytes;
        self.insight_limits.timeout = sql.timeout;
        self
    }

    /// The store itself, for work already running in the compartment.
    pub fn reader(&self) -> &Arc<dyn ReadStore> {
        &self.reader
    }

    /// The compartment queries run in.
    pub fn compartment(&self) -> &Arc<Compartment> {
        &self.compartment
    }
}
