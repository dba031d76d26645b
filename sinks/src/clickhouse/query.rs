//! Read helpers that deduplicate: every query reads with `FINAL`, so a record written twice
//! (a replay after a crash, a retried insert) shows up once, at its newest version, even
//! before ClickHouse has merged the parts. The query API builds on these.

use std::collections::BTreeMap;

use clickhouse::Row;
use helios_schemas::WindowResult;
use serde::Deserialize;

use super::ClickHouse;
use crate::error::{Result, SinkError};
use crate::rows::{AlertRow, DeadLetterRow, EventRow, InsightRow, LateEventRow, zip_map};
use crate::spec::AggregateSpec;

/// A time range in µs since the epoch, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    /// All of time.
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };
}

/// The deduplicated view of a table, for hand-written SQL: `(SELECT * FROM t FINAL)`.
pub fn deduplicated(table: &str) -> String {
    format!("(SELECT * FROM `{table}` FINAL)")
}

/// Events in `range`, optionally of one source, ordered by time then id.
pub async fn events(
    ch: &ClickHouse,
    source: Option<&str>,
    range: TimeRange,
) -> Result<Vec<EventRow>> {
    let mut sql = "SELECT ?fields FROM events FINAL WHERE time >= ? AND time < ?".to_owned();
    if source.is_some() {
        sql.push_str(" AND source = ?");
    }
    sql.push_str(" ORDER BY time, id");
    let mut q = ch.client().query(&sql).bind(range.start).bind(range.end);
    if let Some(s) = source {
        q = q.bind(s);
    }
    q.fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "reading events", e))
}

/// Number of distinct events in `range`.
pub async fn count_events(ch: &ClickHouse, range: TimeRange) -> Result<u64> {
    ch.client()
        .query("SELECT count() FROM events FINAL WHERE time >= ? AND time < ?")
        .bind(range.start)
        .bind(range.end)
        .fetch_one()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "counting events", e))
}

#[derive(Debug, Row, Deserialize)]
struct AggRow {
    id: String,
    window_start: i64,
    window_end: i64,
    group_values: Vec<String>,
    measure_values: Vec<Option<f64>>,
    count: i64,
    version: u32,
    is_final: u8,
}

/// The newest version of each result of `agg` whose window starts in `range`, ordered by
/// window start then id. Measures that are `NULL` are left out of the map.
pub async fn aggregate_results(
    ch: &ClickHouse,
    agg: &AggregateSpec,
    range: TimeRange,
) -> Result<Vec<WindowResult>> {
    let list = |cols: &[String], cast: &str| {
        let items: Vec<String> = cols.iter().map(|c| format!("{cast}(`{c}`)")).collect();
        format!("[{}]", items.join(", "))
    };
    // Typed arrays even when empty, so the row shape is the same for every aggregate.
    let sql = format!(
        "SELECT id, window_start, window_end, {groups} AS group_values, \
         {measures} AS measure_values, `count`, `version`, `final` AS is_final \
         FROM `{table}` FINAL WHERE window_start >= ? AND window_start < ? ORDER BY window_start, id",
        groups = if agg.group_by.is_empty() {
            "emptyArrayString()".to_owned()
        } else {
            list(&agg.group_by, "toString")
        },
        measures = if agg.measures.is_empty() {
            "arrayMap(x -> toNullable(toFloat64(x)), emptyArrayUInt8())".to_owned()
        } else {
            list(&agg.measures, "toNullable")
        },
        table = agg.table(),
    );
    let rows: Vec<AggRow> = ch
        .client()
        .query(&sql)
        .bind(range.start)
        .bind(range.end)
        .fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), format!("reading {}", agg.table()), e))?;
    Ok(rows
        .into_iter()
        .map(|r| WindowResult {
            id: r.id,
            aggregate: agg.name.clone(),
            window_start: r.window_start,
            window_end: r.window_end,
            group: zip_map(&agg.group_by, &r.group_values),
            measures: agg
                .measures
                .iter()
                .zip(r.measure_values)
                .filter_map(|(m, v)| v.map(|v| (m.clone(), v)))
                .collect::<BTreeMap<_, _>>(),
            count: r.count,
            version: r.version as i32,
            is_final: r.is_final != 0,
        })
        .collect())
}

/// The current state of every alert, ordered by start time then id.
pub async fn alerts(ch: &ClickHouse) -> Result<Vec<AlertRow>> {
    ch.client()
        .query("SELECT ?fields FROM alerts FINAL ORDER BY since, id")
        .fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "reading alerts", e))
}

/// Every insight, ordered by window start then id.
pub async fn insights(ch: &ClickHouse) -> Result<Vec<InsightRow>> {
    ch.client()
        .query("SELECT ?fields FROM insights FINAL ORDER BY window_start, id")
        .fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "reading insights", e))
}

/// Every dead letter, ordered by time then id.
pub async fn dead_letters(ch: &ClickHouse) -> Result<Vec<DeadLetterRow>> {
    ch.client()
        .query("SELECT ?fields FROM dead_letters FINAL ORDER BY at, id")
        .fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "reading dead letters", e))
}

/// Every late event, ordered by aggregate, event time and late record id.
pub async fn late_events(ch: &ClickHouse) -> Result<Vec<LateEventRow>> {
    ch.client()
        .query("SELECT ?fields FROM late_events FINAL ORDER BY aggregate, time, late_id")
        .fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "reading late events", e))
}
