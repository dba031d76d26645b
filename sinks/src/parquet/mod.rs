//! The embedded store: the ClickHouse tables as Parquet files in the data dir, queried
//! with DataFusion ([`query`]).
//!
//! Layout: `<dir>/<table>/day=YYYY-MM-DD/part-<nanos>-<pid>-<seq>.parquet`, one folder per
//! UTC day of the table's time column. Every file is written whole to a `.tmp` name,
//! fsynced, renamed into place and the folder fsynced, so a reader (or a restart after a
//! crash) sees a file completely or not at all; leftover `.tmp` files are removed when the
//! store opens. Files are never changed in place. Writing the same rows twice leaves two
//! copies on disk; reads keep one per record (`(source, id)` for events, `id` for the rest;
//! the newest version), exactly like ClickHouse's
//! `ReplacingMergeTree` read with `FINAL`.
//!
//! Upkeep ([`Store::maintain`]) runs in the background: days with many small files are
//! compacted into one file (the new file is renamed into place before the old ones are
//! removed, so a reader in between sees both copies and deduplicates them), day folders
//! wholly older than the table's retention are removed, and with a size cap the oldest
//! days go until the store fits (also after every write).

pub mod arg_max;
mod compact;
pub mod query;
pub mod tables;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::error::{Result, SinkError};
use crate::spec::StoreSpec;
use crate::store::{Rows, Store};

/// Stage name written into the dead letters a sink on this store makes.
pub const STAGE: &str = "sink/parquet";

/// The embedded store's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Folder of the tables (in the data dir: `<data dir>/store`).
    pub dir: PathBuf,
    /// A day with at least this many small files is compacted.
    #[serde(default = "default_compact_min_files")]
    pub compact_min_files: usize,
    /// Files of this size or larger count as compacted and are left alone, bytes.
    #[serde(default = "default_compact_max_bytes")]
    pub compact_max_bytes: u64,
    /// Most bytes the store's files take: past it, whole days go, oldest first across
    /// tables (each table keeps its newest day), after every write and at every upkeep.
    /// `None`: no cap, only each table's retention.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

fn default_compact_min_files() -> usize {
    8
}
fn default_compact_max_bytes() -> u64 {
    64 << 20
}

impl ParquetConfig {
    /// Defaults, tables in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ParquetConfig {
            dir: dir.into(),
            compact_min_files: default_compact_min_files(),
            compact_max_bytes: default_compact_max_bytes(),
            max_bytes: None,
        }
    }

    /// With a size cap of `max_bytes`.
    pub fn max_bytes(mut self, max_bytes: Option<u64>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Checks the bounds without touching the disk.
    pub fn validate(&self) -> Result<()> {
        if self.compact_min_files < 2 {
            return Err(SinkError::config(
                "compact_min_files must be at least 2",
                self.compact_min_files.to_string(),
                "use the default (8)",
            ));
        }
        Ok(())
    }
}

/// The Parquet tables as a [`Store`]. Cheap to clone; clones share the file counter and
/// the compaction guard.
#[derive(Debug, Clone)]
pub struct ParquetStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ParquetConfig,
    spec: StoreSpec,
    seq: AtomicU64,
    upkeep_running: AtomicBool,
    /// Held by whatever removes or merges files: the upkeep, and a write's cap check.
    upkeep: std::sync::Mutex<()>,
}

impl ParquetStore {
    /// Opens (creating) the store in `config.dir` for `spec`'s tables, and removes the
    /// `.tmp` files a crash left behind. One writer per folder: `helios up` or
    /// `helios run sink`, not both; readers ([`query::session`]) may come and go.
    pub fn open(config: ParquetConfig, spec: StoreSpec) -> Result<Self> {
        config.validate()?;
        spec.validate()?;
        for table in tables::all(&spec) {
            let dir = config.dir.join(&table.name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| SinkError::parquet(&dir, "creating the table folder", e))?;
            for day in day_dirs(&dir)? {
                for entry in read_dir(&day.1)? {
                    if entry.extension().is_some_and(|x| x == "tmp") {
                        warn!(file = %entry.display(), "Removing an unfinished file left by a crash.");
                        std::fs::remove_file(&entry).map_err(|e| {
                            SinkError::parquet(&entry, "removing an unfinished file", e)
                        })?;
                    }
                }
            }
        }
        Ok(ParquetStore {
            inner: Arc::new(Inner {
                config,
                spec,
                seq: AtomicU64::new(0),
                upkeep_running: AtomicBool::new(false),
                upkeep: std::sync::Mutex::new(()),
            }),
        })
    }

    /// The folder of the tables.
    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// A DataFusion session over this store's tables (see [`query::session`]).
    pub async fn session(&self) -> Result<datafusion::prelude::SessionContext> {
        query::session(self.dir(), &self.inner.spec).await
    }

    /// Runs compaction now, in the caller's task; returns how many files it merged.
    pub async fn compact_now(&self) -> Result<usize> {
        let inner = self.inner.clone();
        blocking(self.dir(), "compacting", move || {
            compact::compact_all(&inner.config, &inner.spec)
        })
        .await
    }

    /// Removes the day folders past retention now; returns the folders removed.
    pub async fn expire_now(&self) -> Result<Vec<PathBuf>> {
        let inner = self.inner.clone();
        blocking(self.dir(), "enforcing retention", move || {
            compact::expire(&inner.config.dir, &inner.spec, now_us())
        })
        .await
    }
}

/// Bytes on disk per table folder of the store in `dir` (every folder there, also tables
/// the current spec no longer has), by name. Reads sizes only, so any process may ask
/// while the store is written.
pub fn usage(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for path in read_dir(dir)? {
        if !path.is_dir() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        out.push((name.to_owned(), compact::bytes_under(&path)?));
    }
    Ok(out)
}

#[async_trait]
impl Store for ParquetStore {
    fn stage(&self) -> &'static str {
        STAGE
    }

    fn describe(&self) -> String {
        format!("Parquet files in {}", self.dir().display())
    }

    fn spec(&self) -> &StoreSpec {
        &self.inner.spec
    }

    async fn write(&self, rows: &mut Rows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let taken = std::mem::take(rows);
        let inner = self.inner.clone();
        let dir = self.dir().to_path_buf();
        let (left, outcome) = tokio::task::spawn_blocking(move || {
            let written = inner.write_all(taken);
            // Keep to the cap as rows arrive rather than at the next upkeep: a write
            // returns with the store within its cap.
            if inner.config.max_bytes.is_some() {
                let _upkeep = inner.upkeep.lock().unwrap_or_else(|p| p.into_inner());
                inner.keep_within_cap();
            }
            written
        })
        .await
        .map_err(|e| SinkError::parquet(&dir, "writing a batch", e))?;
        *rows = left;
        outcome
    }

    /// Starts compaction and retention in a background task unless one is still running;
    /// returns at once.
    async fn maintain(&self) -> Result<()> {
        if self.inner.upkeep_running.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Compaction, retention and the cap never run beside each other: one may
            // remove a day folder the other is merging.
            let _upkeep = inner.upkeep.lock().unwrap_or_else(|p| p.into_inner());
            let config = &inner.config;
            match compact::compact_all(config, &inner.spec) {
                Ok(n) if n > 0 => debug!(files = n, "Compacted small Parquet files."),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "Compaction failed; trying again later."),
            }
            if let Err(e) = compact::expire(&config.dir, &inner.spec, now_us()) {
                warn!(error = %e, "Retention failed; trying again later.");
            }
            inner.keep_within_cap();
            inner.upkeep_running.store(false, Ordering::Release);
        });
        Ok(())
    }
}

impl Inner {
    /// Removes the oldest days while the store is over its size cap (the caller holds
    /// `upkeep`).
    fn keep_within_cap(&self) {
        let Some(max_bytes) = self.config.max_bytes else {
            return;
        };
        if let Err(e) = compact::cap(&self.config.dir, &self.spec, max_bytes) {
            warn!(error = %e, "Keeping the store within its size cap failed; trying again later.");
        }
    }

    /// Writes every table of `rows`; returns what is still unwritten with the outcome.
    fn write_all(&self, mut rows: Rows) -> (Rows, Result<()>) {
        let outcome = self.write_tables(&mut rows);
        (rows, outcome)
    }

    fn write_tables(&self, rows: &mut Rows) -> Result<()> {
        if !rows.events.is_empty() {
            self.write_by_day("events", &rows.events, |e| e.time, tables::events_batch)?;
            rows.events.clear();
        }
        if !rows.alerts.is_empty() {
            self.write_by_day("alerts", &rows.alerts, |a| a.since, tables::alerts_batch)?;
            rows.alerts.clear();
        }
        if !rows.insights.is_empty() {
            self.write_by_day(
                "insights",
                &rows.insights,
                |i| i.window_start,
                tables::insights_batch,
            )?;
            rows.insights.clear();
        }
        if !rows.dead_letters.is_empty() {
            self.write_by_day(
                "dead_letters",
                &rows.dead_letters,
                |d| d.at,
                tables::dead_letters_batch,
            )?;
            rows.dead_letters.clear();
        }
        if !rows.late_events.is_empty() {
            self.write_by_day(
                "late_events",
                &rows.late_events,
                |l| l.time,
                tables::late_events_batch,
            )?;
            rows.late_events.clear();
        }
        while let Some((name, aggregate)) = rows.aggregates.pop_first() {
            let spec = aggregate.spec().clone();
            let outcome = self.write_by_day(
                &spec.table(),
                aggregate.results(),
                |w| w.window_start,
                |r| tables::aggregate_batch(&spec, r),
            );
            if let Err(e) = outcome {
                rows.aggregates.insert(name, aggregate);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Splits `rows` by UTC day of `time` and writes one file per day.
    fn write_by_day<T>(
        &self,
        table: &str,
        rows: &[T],
        time: impl Fn(&T) -> i64,
        batch: impl Fn(&[&T]) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>,
    ) -> Result<()> {
        let mut days: BTreeMap<i64, Vec<&T>> = BTreeMap::new();
        for r in rows {
            days.entry(day_of(time(r))).or_default().push(r);
        }
        for (day, rows) in days {
            let dir = self.config.dir.join(table).join(day_dir_name(day));
            let b = batch(&rows)
                .map_err(|e| SinkError::parquet(&dir, format!("building a {table} batch"), e))?;
            let name = self.file_name();
            write_file(&dir, &name, &[b])?;
        }
        Ok(())
    }

    fn file_name(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("part-{nanos:020}-{}-{seq:06}.parquet", std::process::id())
    }
}

async fn blocking<T: Send + 'static>(
    dir: &Path,
    action: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::parquet(dir, action, e))?
}

/// Writes `batches` to `dir/name` atomically: temp file, fsync, rename, fsync of `dir`.
pub(crate) fn write_file(dir: &Path, name: &str, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| SinkError::parquet(dir, "creating the day folder", e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = File::create(&tmp).map_err(|e| SinkError::parquet(&tmp, "creating", e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let fail = |e: &dyn std::fmt::Display| {
        let _ = std::fs::remove_file(&tmp);
        SinkError::parquet(&tmp, "writing", e)
    };
    let mut writer =
        ArrowWriter::try_new(file, first.schema(), Some(props)).map_err(|e| fail(&e))?;
    for b in batches {
        writer.write(b).map_err(|e| fail(&e))?;
    }
    let file = writer.into_inner().map_err(|e| fail(&e))?;
    file.sync_all().map_err(|e| fail(&e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| fail(&e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SinkError::parquet(dir, "syncing the folder", e))
}

pub(crate) fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(SinkError::parquet(dir, "listing", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SinkError::parquet(dir, "listing", e))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// The `day=YYYY-MM-DD` folders of a table folder, with their day numbers.
pub(crate) fn day_dirs(table_dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    Ok(read_dir(table_dir)?
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let day = parse_day_dir_name(name)?;
            p.is_dir().then_some((day, p))
        })
        .collect())
}

const US_PER_DAY: i64 = 86_400_000_000;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Days since 1970-01-01 (UTC) of a time in µs.
pub(crate) fn day_of(time_us: i64) -> i64 {
    time_us.div_euclid(US_PER_DAY)
}

/// `day=YYYY-MM-DD` of a day number.
pub(crate) fn day_dir_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("day={y:04}-{m:02}-{d:02}")
}

fn parse_day_dir_name(name: &str) -> Option<i64> {
    let date = name.strip_prefix("day=")?;
    let (y, rest) = date.rsplit_once('-').and_then(|(ym, d)| {
        let (y, m) = ym.rsplit_once('-')?;
        Some((y, (m, d)))
    })?;
    let y: i64 = y.parse().ok()?;
    let m: u32 = rest.0.parse().ok()?;
    let d: u32 = rest.1.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// Gregorian (year, month, day) of a day number (days since 1970-01-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to a 400-year era that starts on 0000-03-01, so leap days end each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Day number of a Gregorian date; the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_folders_name_utc_dates_and_parse_back() {
        let check = |us: i64, name: &str| {
            let day = day_of(us);
            assert_eq!(day_dir_name(day), name);
            assert_eq!(parse_day_dir_name(name), Some(day));
        };
        check(0, "day=1970-01-01");
        check(-1, "day=1969-12-31");
        check(1_767_225_600_000_000, "day=2026-01-01");
        check(951_782_400_000_000, "day=2000-02-29");
        check(4_107_542_400_000_000 - 1, "day=2100-02-28");
        check(4_107_542_400_000_000, "day=2100-03-01");
        for day in -800_000..800_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(parse_day_dir_name("day=2026-13-01"), None);
        assert_eq!(parse_day_dir_name("x"), None);
        // Extreme times do not panic.
        let _ = day_dir_name(day_of(i64::MIN));
        let _ = day_dir_name(day_of(i64::MAX));
    }
}
