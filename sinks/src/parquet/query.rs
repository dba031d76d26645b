//! Reading the embedded store with DataFusion.
//!
//! [`session`] registers each table's files as `raw.<table>` (every copy of every row) and,
//! under the table's own name, a view that keeps one row per record (per `(source, id)` for
//! events, per `id` for the rest): the one with the highest `version` where the table has
//! one. That is what ClickHouse's `FINAL` returns, so the same
//! SQL gives the same answer on both stores, and a replayed or retried write never shows up
//! twice. It also registers [`argMax`](super::arg_max), as ClickHouse has it.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use super::tables::{self, Table};
use crate::error::{Result, SinkError};
use crate::spec::StoreSpec;

/// A session over the tables of `spec` in `dir`: `raw.<table>` and the deduplicating view
/// `<table>`. Only reads; safe while a sink writes. Files are listed when a query runs.
pub async fn session(dir: &Path, spec: &StoreSpec) -> Result<SessionContext> {
    spec.validate()?;
    // DataFusion keeps a table's file listing for the session's life by default; the sink
    // adds and compacts files all the time, so list them on every query instead.
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()
        .map_err(|e| SinkError::Query {
            sql: "a DataFusion runtime without the file listing cache".to_owned(),
            reason: e.to_string(),
        })?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    ctx.register_udaf(super::arg_max::udaf());
    collect(&ctx, "CREATE SCHEMA raw").await?;
    for table in tables::all(spec) {
        let raw = format!("raw.{}", table.name);
        let folder = dir.join(&table.name);
        let registered = if folder.is_dir() {
            let url = format!("{}/", folder.display());
            let options = ParquetReadOptions::default()
                .schema(table.schema.as_ref())
                .file_extension(".parquet");
            ctx.register_parquet(raw.as_str(), &url, options).await
        } else {
            MemTable::try_new(table.schema.clone(), vec![vec![]])
                .and_then(|t| ctx.register_table(raw.as_str(), Arc::new(t)).map(|_| ()))
        };
        registered.map_err(|e| SinkError::Query {
            sql: format!("register {raw} at {}", folder.display()),
            reason: e.to_string(),
        })?;
        collect(&ctx, &view_sql(&table)).await?;
    }
    Ok(ctx)
}

/// `CREATE VIEW <table>`: one row per record (its key columns), the newest version where
/// there are versions.
fn view_sql(table: &Table) -> String {
    let columns: Vec<String> = table
        .schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let order = match table.version_column {
        Some(v) => format!("\"{v}\" DESC"),
        None => "\"id\"".to_owned(),
    };
    let key: Vec<String> = table
        .key_columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect();
    format!(
        "CREATE VIEW \"{name}\" AS SELECT {cols} FROM (SELECT *, row_number() OVER \
         (PARTITION BY {key} ORDER BY {order}) AS helios_copy FROM raw.\"{name}\") \
         WHERE helios_copy = 1",
        name = table.name,
        cols = columns.join(", "),
        key = key.join(", "),
    )
}

/// Runs `sql` and returns every batch. A file removed by compaction between listing and
/// reading fails the query; it is run again (up to three times), since the merged file is
/// in place by then.
pub async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = match ctx.sql(sql).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(batches) => return Ok(batches),
            Err(e) => {
                let reason = e.to_string();
                let vanished = reason.contains("No such file") || reason.contains("not found");
                if !vanished || attempt >= 3 {
                    return Err(SinkError::Query {
                        sql: sql.to_owned(),
                        reason,
                    });
                }
            }
        }
    }
}

/// Runs `sql` and renders the result as a text table (for tests, benchmarks and the CLI).
pub async fn pretty(ctx: &SessionContext, sql: &str) -> Result<String> {
    let batches = collect(ctx, sql).await?;
    pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(|e| SinkError::Query {
            sql: sql.to_owned(),
            reason: e.to_string(),
        })
}

/// Runs a query returning one `BIGINT`/`BIGINT UNSIGNED` value (e.g. `SELECT count(*) ...`).
pub async fn scalar_u64(ctx: &SessionContext, sql: &str) -> Result<u64> {
    use datafusion::arrow::array::{Array, Int64Array, UInt64Array};
    let batches = collect(ctx, sql).await?;
    let bad = |why: &str| SinkError::Query {
        sql: sql.to_owned(),
        reason: why.to_owned(),
    };
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| bad("the query returned no row"))?;
    let col = batch.column(0);
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return u64::try_from(a.value(0)).map_err(|_| bad("the value is negative"));
    }
    if let Some(a) = col.as_any().downcast_ref::<UInt64Array>() {
        return Ok(a.value(0));
    }
    Err(bad("the first column is not an integer"))
}
