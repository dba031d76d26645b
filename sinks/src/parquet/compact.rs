//! Background upkeep of the Parquet store: compaction of small files and retention.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tracing::{info, warn};

use super::tables::{self, Table};
use super::{ParquetConfig, US_PER_DAY, day_dirs, read_dir, sync_dir, write_file};
use crate::error::{Result, SinkError};
use crate::spec::StoreSpec;

/// Compacts every day of every table that has at least `compact_min_files` files smaller
/// than `compact_max_bytes`; returns the number of files merged away.
pub(super) fn compact_all(config: &ParquetConfig, spec: &StoreSpec) -> Result<usize> {
    let mut merged = 0;
    for table in tables::all(spec) {
        for (_, day) in day_dirs(&config.dir.join(&table.name))? {
            merged += compact_day(config, &table, &day)?;
        }
    }
    Ok(merged)
}

fn compact_day(config: &ParquetConfig, table: &Table, day: &Path) -> Result<usize> {
    let mut small = Vec::new();
    for path in read_dir(day)? {
        if path.extension().is_none_or(|x| x != "parquet") {
            continue;
        }
        let len = std::fs::metadata(&path)
            .map_err(|e| SinkError::parquet(&path, "reading the size", e))?
            .len();
        if len < config.compact_max_bytes {
            small.push(path);
        }
    }
    if small.len() < config.compact_min_files {
        return Ok(0);
    }
    let mut batches = Vec::new();
    for path in &small {
        batches.extend(read_file(path, &table.schema)?);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("part-{nanos:020}-{}-compacted.parquet", std::process::id());
    // The merged file is in place before the small ones go: a reader in between sees both
    // copies of each row, and reads deduplicate.
    write_file(day, &name, &batches)?;
    for path in &small {
        std::fs::remove_file(path)
            .map_err(|e| SinkError::parquet(path, "removing a compacted file", e))?;
    }
    sync_dir(day)?;
    info!(table = %table.name, day = %day.display(), files = small.len(), "Compacted small files.");
    Ok(small.len())
}

/// Reads a whole file, shaped to `schema`: columns the file lacks (a measure added to the
/// spec later) are filled with nulls.
fn read_file(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).map_err(|e| SinkError::parquet(path, "opening", e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| SinkError::parquet(path, "reading", e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| SinkError::parquet(path, "reading", e))?;
        let rows = batch.num_rows();
        let columns = schema
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => cast(c, f.data_type()),
                None => Ok(new_null_array(f.data_type(), rows)),
            })
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()
            .map_err(|e| SinkError::parquet(path, "shaping to the table's columns", e))?;
        out.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| SinkError::parquet(path, "shaping to the table's columns", e))?,
        );
    }
    Ok(out)
}

/// Removes the day folders that lie wholly before each table's retention cut-off (rows are
/// kept at most a day longer than asked); returns the folders removed.
pub(super) fn expire(dir: &Path, spec: &StoreSpec, now_us: i64) -> Result<Vec<PathBuf>> {
    let r = &spec.retention;
    let mut removed = Vec::new();
    for table in tables::all(spec) {
        let keep = match table.name.as_str() {
            "events" => r.events,
            "alerts" => r.alerts,
            "insights" => r.insights,
            "dead_letters" => r.dead_letters,
            // Late events are events: they age with them, by event time.
            "late_events" => r.events,
            _ => r.aggregates,
        };
        let Some(keep) = keep else { continue };
        let cutoff = now_us.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
        for (day, path) in day_dirs(&dir.join(&table.name))? {
            let day_end = (day + 1).saturating_mul(US_PER_DAY);
            if day_end <= cutoff {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| SinkError::parquet(&path, "removing an expired day", e))?;
                info!(table = %table.name, day = %path.display(), "Removed an expired day.");
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

/// Removes whole days, oldest first across tables, until the store's files take at most
/// `max_bytes`. A table's newest day stays (rows are still written there, and a small
/// table is not emptied to make room for a big one). Returns the folders removed and
/// whether the store is still over the cap.
pub(super) fn cap(dir: &Path, spec: &StoreSpec, max_bytes: u64) -> Result<(Vec<PathBuf>, bool)> {
    let mut candidates = Vec::new();
    let mut total = 0u64;
    for table in tables::all(spec) {
        let days = day_dirs(&dir.join(&table.name))?;
        let newest = days.iter().map(|(day, _)| *day).max();
        for (day, path) in days {
            let bytes = bytes_under(&path)?;
            total += bytes;
            if Some(day) != newest {
                candidates.push((day, table.name.clone(), path, bytes));
            }
        }
    }
    candidates.sort();
    let mut removed = Vec::new();
    for (_, table, path, bytes) in candidates {
        if total <= max_bytes {
            break;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SinkError::parquet(&path, "removing the oldest day", e)),
        }
        info!(
            table = %table, day = %path.display(), bytes, max_bytes,
            "Removed the oldest day to keep the store within its size cap."
        );
        total = total.saturating_sub(bytes);
        removed.push(path);
    }
    let over = total > max_bytes;
    if over && !removed.is_empty() {
        warn!(
            bytes = total,
            max_bytes,
            "The store is over its size cap with only each table's newest day left; raise the cap or shorten retention."
        );
    }
    Ok((removed, over))
}

/// Bytes of the files under `path`, recursively (0 when it is gone).
pub(crate) fn bytes_under(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in read_dir(path)? {
        let meta = match std::fs::symlink_metadata(&entry) {
            Ok(m) => m,
            // Removed meanwhile (compaction, retention): it takes no space.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SinkError::parquet(&entry, "reading the size", e)),
        };
        total += if meta.is_dir() {
            bytes_under(&entry)?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
