//! Reading the embedded store: the Parquet tables under `<data dir>/store`, through the
//! DataFusion session of [`helios_sinks::parquet::query`] (each table name is a view that
//! keeps one row per id). Statements other than queries are refused by the session itself
//! as well as by the SQL guard; the row limit is a `LIMIT max + 1` on the plan and the time
//! limit a timeout around execution.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, LargeBinaryArray, RecordBatch,
};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;
use helios_sinks::StoreSpec;
use serde_json::Value;
use tokio::sync::RwLock;

use super::clickhouse::row_limit;
use super::{Column, Dialect, Limits, Param, ReadStore, Sql, Table, byte_limit, normalise_type};
use crate::error::{ApiError, Result};

/// Reads the Parquet store in a data dir.
pub struct DataFusionReader {
    dir: PathBuf,
    spec: StoreSpec,
    /// The session, and the table folders that did not exist when it was made: a table
    /// first written after that is picked up by making the session again.
    session: RwLock<(SessionContext, Vec<PathBuf>)>,
}

impl std::fmt::Debug for DataFusionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFusionReader")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DataFusionReader {
    /// A reader of the store in `dir` holding the tables of `spec`.
    pub async fn open(dir: impl Into<PathBuf>, spec: StoreSpec) -> Result<Self> {
        let dir = dir.into();
        let session = Self::session(&dir, &spec).await?;
        Ok(DataFusionReader {
            dir,
            spec,
            session: RwLock::new(session),
        })
    }

    async fn session(
        dir: &std::path::Path,
        spec: &StoreSpec,
    ) -> Result<(SessionContext, Vec<PathBuf>)> {
        let missing = helios_sinks::parquet::tables::all(spec)
            .into_iter()
            .map(|t| dir.join(&t.name))
            .filter(|p| !p.is_dir())
            .collect();
        let ctx = helios_sinks::parquet::query::session(dir, spec)
            .await
            .map_err(|e| ApiError::Store {
                reason: format!("opening the store in {}: {e}", dir.display()),
            })?;
        Ok((ctx, missing))
    }

    async fn context(&self) -> Result<SessionContext> {
        {
            let guard = self.session.read().await;
            if guard.1.iter().all(|p| !p.is_dir()) {
                return Ok(guard.0.clone());
            }
        }
        let mut guard = self.session.write().await;
        if guard.1.iter().any(|p| p.is_dir()) {
            *guard = Self::session(&self.dir, &self.spec).await?;
        }
        Ok(guard.0.clone())
    }

    /// A session for one query: the store's tables, a memory pool of its own of
    /// `limits.max_memory` bytes, and the value-building functions bounded.
    async fn query_context(&self, limits: Limits) -> Result<SessionContext> {
        let shared = self.context().await?;
        let state = shared.state();
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(limits.max_memory)))
            .build_arc()
            .map_err(classify)?;
        let ctx = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build(),
        );
        super::bounded::install(&ctx, limits.max_value_bytes);
        Ok(ctx)
    }

    async fn run(&self, sql: &str, params: Vec<ScalarValue>, limits: Limits) -> Result<Table> {
        let ctx = self.query_context(limits).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = async {
                let mut df = ctx.sql_with_options(sql, options).await?;
                if !params.is_empty() {
                    df = df.with_param_values(ParamValues::from(params.clone()))?;
                }
                let df = df.limit(0, Some(limits.max_rows + 1))?;
                let schema = df.schema().as_arrow().clone();
                let batches = df.collect().await?;
                Ok::<_, DataFusionError>((schema, batches))
            };
            let outcome = tokio::time::timeout(limits.timeout, run)
                .await
                .map_err(|_| {
                    ApiError::over_limit(
                        format!(
                            "the query ran longer than {} s",
                            limits.timeout.as_secs_f64()
                        ),
                        "narrow the time range or the tables read, or aggregate more",
                    )
                })?;
            match outcome {
                Ok((schema, batches)) => return to_table(&schema, &batches, limits),
                Err(e) => {
                    let reason = e.to_string();
                    // Compaction may replace a file between listing and reading; the
                    // merged file is in place by the next attempt.
                    let vanished = reason.contains("No such file") || reason.contains("not found");
                    if vanished && attempt < 3 {
                        continue;
                    }
                    return Err(classify(e));
                }
            }
        }
    }
}

#[async_trait]
impl ReadStore for DataFusionReader {
    fn dialect(&self) -> Dialect {
        Dialect::DataFusion
    }

    fn describe(&self) -> String {
        format!("the embedded Parquet store in {}", self.dir.display())
    }

    async fn query(&self, sql: &Sql, limits: Limits) -> Result<Table> {
        let (text, params) = sql.render(Dialect::DataFusion);
        let params = params
            .into_iter()
            .map(|p| match p {
                Param::Int(v) => ScalarValue::Int64(Some(v)),
                Param::Text(v) => ScalarValue::Utf8(Some(v)),
            })
            .collect();
        self.run(&text, params, limits).await
    }

    async fn query_text(&self, sql: &str, limits: Limits) -> Result<Table> {
        self.run(sql, Vec::new(), limits)
            .await
            .map_err(caller_error)
    }

    async fn ready(&self) -> Result<()> {
        self.run("SELECT 1", Vec::new(), Limits::default())
            .await
            .map(|_| ())
    }
}

/// A failure of a caller's statement that is not the store's (reading its files) is the
/// statement's: a `400`, not a `502`.
fn caller_error(e: ApiError) -> ApiError {
    match e {
        ApiError::Store { reason } if !reason.starts_with(STORE_FAILURE) => ApiError::bad(
            format!("the query failed: {reason}"),
            "fix the SQL; the tables are events, alerts, insights, dead_letters, late_events and agg_<name>",
        ),
        other => other,
    }
}

const STORE_FAILURE: &str = "reading the store: ";

fn classify(e: DataFusionError) -> ApiError {
    let root = e.find_root();
    let message = root.to_string();
    match root {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => ApiError::bad(
            format!("the query is not valid: {message}"),
            "fix the SQL; the tables are events, alerts, insights, dead_letters, late_events and agg_<name>",
        ),
        DataFusionError::ResourcesExhausted(_) => ApiError::over_limit(
            format!(
                "the query went over a limit (memory: --sql-max-memory; values: --sql-max-value-bytes): {message}"
            ),
            "add a LIMIT, narrow the time range, or aggregate more",
        ),
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_) => ApiError::Store {
            reason: format!("{STORE_FAILURE}{message}"),
        },
        _ => ApiError::Store {
            reason: format!("DataFusion: {message}"),
        },
    }
}

fn to_table(
    schema: &datafusion::arrow::datatypes::Schema,
    batches: &[RecordBatch],
    limits: Limits,
) -> Result<Table> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > limits.max_rows {
        return Err(row_limit(limits.max_rows));
    }

    let columns = schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            ty: normalise_type(&f.data_type().to_string()),
        })
        .collect();
    let mut out = Vec::with_capacity(rows);
    // The answer's size, counted as it is made so an oversized one stops early.
    let mut size = 0;
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<Value> = batch
                .columns()
                .iter()
                .map(|c| cell(c.as_ref(), row))
                .collect();
            size += cells.iter().map(super::json_len).sum::<usize>();
            if size > limits.max_bytes {
                return Err(byte_limit(limits.max_bytes));
            }
            out.push(cells);
        }
    }
    Ok(Table { columns, rows: out })
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// One cell as JSON, the way ClickHouse's `JSONCompact` spells it.
fn cell(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(
            array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .is_some_and(|a| a.value(row)),
        ),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::from(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::from(array.as_string_view().value(row)),
        DataType::Binary => bytes(
            array
                .as_any()
                .downcast_ref::<BinaryArray>()
                .map(|a| a.value(row)),
        ),
        DataType::LargeBinary => bytes(
            array
                .as_any()
                .downcast_ref::<LargeBinaryArray>()
                .map(|a| a.value(row)),
        ),
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref()),
        _ => ArrayFormatter::try_new(array, &FormatOptions::default())
            .map(|f| Value::from(f.value(row).to_string()))
            .unwrap_or(Value::Null),
    }
}

/// Binary cells as text, like ClickHouse's `String` (the stores keep UTF-8 payloads).
fn bytes(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| {
        Value::from(String::from_utf8_lossy(b).into_owned())
    })
}

fn list(values: &dyn Array) -> Value {
    Value::Array((0..values.len()).map(|i| cell(values, i)).collect())
}
