//! The read API stage: the catalog of aggregates from the pipeline spec, and the reader
//! of whichever store this deployment writes (ClickHouse, or Parquet in the data dir).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use helios_pipeline::expr::AggregateFn;
use helios_pipeline::spec::{Aggregate, Window};
use helios_query_api::ApiState;
use helios_query_api::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use helios_query_api::sql::guard::GuardLimits;
use helios_query_api::store::{
    ClickHouseReader, CompartmentConfig, DataFusionReader, Limits, ReadStore,
};
use helios_sinks::StoreSpec;
use helios_sinks::clickhouse::ClickHouseConfig;

use crate::backend::Password;

/// What the API may be asked about: the spec's aggregates, their group keys, measures and
/// windows.
pub fn catalog(aggregates: &[Aggregate]) -> Catalog {
    Catalog {
        aggregates: aggregates
            .iter()
            .map(|a| AggregateInfo {
                name: a.name.clone(),
                group_by: a.group_by.iter().map(|k| k.name.clone()).collect(),
                measures: a
                    .measures
                    .iter()
                    .map(|m| MeasureInfo {
                        name: m.name.clone(),
                        function: match m.function {
                            AggregateFn::Count => MeasureFunction::Count,
                            AggregateFn::Sum => MeasureFunction::Sum,
                            AggregateFn::Min => MeasureFunction::Min,
                            AggregateFn::Max => MeasureFunction::Max,
                            AggregateFn::Avg => MeasureFunction::Avg,
                            AggregateFn::CountDistinct => MeasureFunction::CountDistinct,
                            AggregateFn::Quantile(_) => MeasureFunction::Quantile,
                            AggregateFn::First => MeasureFunction::First,
                            AggregateFn::Last => MeasureFunction::Last,
                        },
                    })
                    .collect(),
                window: match a.window {
                    Window::Tumbling { size } => WindowInfo {
                        kind: WindowKind::Tumbling,
                        size_seconds: size.as_secs(),
                        slide_seconds: size.as_secs(),
                    },
                    Window::Hopping { size, slide } => WindowInfo {
                        kind: WindowKind::Hopping,
                        size_seconds: size.as_secs(),
                        slide_seconds: slide.as_secs(),
                    },
                    Window::Session { gap } => WindowInfo {
                        kind: WindowKind::Session,
                        size_seconds: gap.as_secs(),
                        slide_seconds: gap.as_secs(),
                    },
                },
            })
            .collect(),
    }
}

/// The limits of the read API's queries and how they reach ClickHouse; flattened into
/// `helios up` and `helios serve api`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Worker threads of the query compartment: every SQL and insights query is parsed,
    /// planned and run there, never on the threads serving ingest, webhooks and health.
    #[arg(long, env = "HELIOS_SQL_THREADS", default_value_t = 4)]
    pub sql_threads: usize,

    /// Stack of each query thread, in MiB (deep statements need deep stacks).
    #[arg(long, env = "HELIOS_SQL_THREAD_STACK_MIB", default_value_t = 64)]
    pub sql_thread_stack_mib: usize,

    /// Queries (SQL and insights) running at once.
    #[arg(long, env = "HELIOS_SQL_MAX_CONCURRENT", default_value_t = 4)]
    pub sql_max_concurrent: usize,

    /// Queries waiting for a slot; beyond this a query is a 429 with Retry-After.
    #[arg(long, env = "HELIOS_SQL_MAX_QUEUED", default_value_t = 16)]
    pub sql_max_queued: usize,

    /// Time limit of one query (waiting included); past it the query is cancelled and the
    /// caller gets a 422.
    #[arg(long, env = "HELIOS_SQL_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub sql_timeout: std::time::Duration,

    /// Rows in one POST /v1/sql answer (more is a 422, never a cut answer).
    #[arg(long, env = "HELIOS_SQL_MAX_ROWS", default_value_t = 10_000)]
    pub sql_max_rows: usize,

    /// Bytes in one POST /v1/sql answer.
    #[arg(long, env = "HELIOS_SQL_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub sql_max_bytes: usize,

    /// Memory one query may hold, in bytes (DataFusion memory pool per query;
    /// ClickHouse max_memory_usage when the API connects as the sink's user).
    #[arg(long, env = "HELIOS_SQL_MAX_MEMORY", default_value_t = 512 * 1024 * 1024)]
    pub sql_max_memory: usize,

    /// Bytes of one value built by repeat, lpad, rpad, replace, regexp_replace,
    /// array_repeat, range, generate_series (embedded store).
    #[arg(long, env = "HELIOS_SQL_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    pub sql_max_value_bytes: usize,

    /// Bytes of SQL text in one POST /v1/sql.
    #[arg(long, env = "HELIOS_SQL_MAX_TEXT_BYTES", default_value_t = 64 * 1024)]
    pub sql_max_text_bytes: usize,

    /// Nesting of a statement (parentheses, subqueries): the SQL parser's recursion limit.
    #[arg(long, env = "HELIOS_SQL_MAX_NESTING", default_value_t = 50)]
    pub sql_max_nesting: usize,

    /// Depth of one expression, e.g. the terms of `1+1+...+1`.
    #[arg(long, env = "HELIOS_SQL_MAX_EXPRESSION_DEPTH", default_value_t = 200)]
    pub sql_max_expression_depth: usize,

    /// Expressions in one statement.
    #[arg(long, env = "HELIOS_SQL_MAX_EXPRESSIONS", default_value_t = 10_000)]
    pub sql_max_expressions: usize,

    /// UNION / INTERSECT / EXCEPT operators in one statement.
    #[arg(long, env = "HELIOS_SQL_MAX_SET_OPERATIONS", default_value_t = 16)]
    pub sql_max_set_operations: usize,

    /// Tables, subqueries and joins in one statement's FROM clauses.
    #[arg(long, env = "HELIOS_SQL_MAX_TABLES", default_value_t = 16)]
    pub sql_max_tables: usize,

    /// ClickHouse user the read API connects as: a read-only user (`helios migrate`
    /// creates it or prints the users.xml profile to add). Its password comes from
    /// HELIOS_CLICKHOUSE_READ_PASSWORD or --clickhouse-read-password-file.
    #[arg(long, env = "HELIOS_CLICKHOUSE_READ_USER")]
    pub clickhouse_read_user: Option<String>,

    /// The read user's password. Set it in the environment rather than on the command
    /// line, where other users of the machine can read it, or use
    /// --clickhouse-read-password-file.
    #[arg(
        long,
        env = "HELIOS_CLICKHOUSE_READ_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub clickhouse_read_password: Option<Password>,

    /// File holding the read user's password (one line).
    #[arg(
        long,
        env = "HELIOS_CLICKHOUSE_READ_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub clickhouse_read_password_file: Option<std::path::PathBuf>,

    /// Let the read API connect to ClickHouse as the sink's user (with every grant it
    /// has) when no --clickhouse-read-user is given. Not recommended.
    #[arg(long, env = "HELIOS_ALLOW_SHARED_CLICKHOUSE_USER")]
    pub allow_shared_clickhouse_user: bool,
}

impl QueryArgs {
    /// The read user and its password file from the settings file's `[clickhouse]` where
    /// the flags and environment name none.
    pub fn with_settings_file(mut self, file: &crate::backend::ClickHouseFile) -> Self {
        if self.clickhouse_read_user.is_none() {
            self.clickhouse_read_user = file.read_user.clone();
        }
        if self.clickhouse_read_password.is_none() && self.clickhouse_read_password_file.is_none() {
            self.clickhouse_read_password_file = file.read_password_file.clone();
        }
        self
    }

    fn compartment(&self) -> CompartmentConfig {
        CompartmentConfig {
            threads: self.sql_threads,
            stack_bytes: self.sql_thread_stack_mib.saturating_mul(1024 * 1024),
            max_concurrent: self.sql_max_concurrent,
            max_queued: self.sql_max_queued,
        }
    }

    fn limits(&self) -> (Limits, GuardLimits) {
        (
            Limits {
                max_rows: self.sql_max_rows,
                max_bytes: self.sql_max_bytes,
                max_memory: self.sql_max_memory,
                max_value_bytes: self.sql_max_value_bytes,
                timeout: self.sql_timeout,
            },
            GuardLimits {
                max_text_bytes: self.sql_max_text_bytes,
                max_nesting: self.sql_max_nesting,
                max_expression_depth: self.sql_max_expression_depth,
                max_expressions: self.sql_max_expressions,
                max_set_operations: self.sql_max_set_operations,
                max_tables: self.sql_max_tables,
            },
        )
    }

    /// The ClickHouse reader: as the read user, or as the sink's user when allowed.
    fn clickhouse_reader(&self, sink: &ClickHouseConfig) -> anyhow::Result<ClickHouseReader> {
        let Some(user) = &self.clickhouse_read_user else {
            anyhow::ensure!(
                self.allow_shared_clickhouse_user,
                "the read API would connect to ClickHouse at {} as the sink's user, with every \
                 grant it has. Give it a read-only user: --clickhouse-read-user (and \
                 HELIOS_CLICKHOUSE_READ_PASSWORD or --clickhouse-read-password-file); \
                 `helios migrate` creates one or prints what to add to users.xml. Or pass \
                 --allow-shared-clickhouse-user to accept the risk.",
                sink.url
            );
            return ClickHouseReader::new(sink)
                .with_context(|| format!("configuring the ClickHouse reader for {}", sink.url));
        };
        let sink_user = sink.user.as_deref().unwrap_or("default");
        anyhow::ensure!(
            user != sink_user || self.allow_shared_clickhouse_user,
            "--clickhouse-read-user is `{user}`, the sink's own user; give the read API a \
             read-only user of its own, or pass --allow-shared-clickhouse-user"
        );
        let password = match (
            &self.clickhouse_read_password_file,
            &self.clickhouse_read_password,
        ) {
            (Some(path), _) => Some(crate::backend::read_password_file(
                path,
                "ClickHouse read password",
            )?),
            (None, Some(p)) => Some(p.0.clone()),
            (None, None) => None,
        };
        let mut config = sink.clone();
        config.user = Some(user.clone());
        config.password = password;
        ClickHouseReader::read_only_user(&config)
            .with_context(|| format!("configuring the ClickHouse reader for {}", sink.url))
    }
}

/// The read API's state over ClickHouse (`clickhouse` given) or the Parquet store under
/// `data_dir`, with `query`'s limits and compartment.
pub async fn read_state(
    catalog: Catalog,
    store: &StoreSpec,
    clickhouse: Option<ClickHouseConfig>,
    data_dir: &Path,
    query: &QueryArgs,
) -> anyhow::Result<ApiState> {
    let reader: Arc<dyn ReadStore> = match clickhouse {
        Some(config) => Arc::new(query.clickhouse_reader(&config)?),
        None => {
            let dir = crate::stages::sinks::store_dir(data_dir);
            Arc::new(
                DataFusionReader::open(&dir, store.clone())
                    .await
                    .with_context(|| format!("opening the Parquet store in {}", dir.display()))?,
            )
        }
    };
    let (limits, guard) = query.limits();
    Ok(
        ApiState::with_compartment(reader, catalog, query.compartment())
            .context("starting the query compartment")?
            .with_limits(limits, guard),
    )
}
