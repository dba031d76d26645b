//! `GET /v1/insights/timeseries` and `GET /v1/insights/top`: an aggregate's windows read
//! from the store (range and group filters bound as parameters) and combined in Rust by
//! [`super::combine`], so both stores give the same answer.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::combine::{Combined, NotCombinable};
use super::params::{Params, parse_duration, rfc3339};
use crate::catalog::{AggregateInfo, MeasureFunction, MeasureInfo, WindowKind};
use crate::error::{ApiError, Result};
use crate::state::ApiState;
use crate::store::{Dialect, Param, Sql, cell};

/// Most points a series may have.
const MAX_POINTS: i64 = 5_000;

/// A measure over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeseries {
    pub aggregate: String,
    pub measure: String,
    /// Start of the first bucket (`from` aligned down to the step).
    pub from: String,
    pub to: String,
    pub step_seconds: u64,
    /// One series without `group_by`; with it, the top groups and then `other`.
    pub series: Vec<Series>,
}

/// One line of a chart.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    /// The group value, `other` for the rest, `null` when not broken down.
    pub key: Option<String>,
    /// Every bucket from `from` to `to`; `value` is `null` where no window had one.
    pub points: Vec<Point>,
}

/// One bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Point {
    pub time: String,
    pub value: Option<f64>,
}

/// Groups ranked by a measure over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Top {
    pub aggregate: String,
    pub measure: String,
    pub by: String,
    pub from: String,
    pub to: String,
    pub rows: Vec<TopRow>,
    /// The rest combined; `null` when there is no rest or the measure cannot combine.
    pub other: Option<f64>,
}

/// One ranked group.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopRow {
    pub key: String,
    pub value: f64,
}

/// The measure combined over one bucket of one series.
struct Cell {
    /// Bucket index from the first bucket; 0 without buckets.
    bucket: i64,
    key: Option<String>,
    value: Combined,
}

/// One window of one group, as read.
struct Window {
    id: String,
    start: i64,
    groups: Vec<String>,
    value: Option<f64>,
    count: i64,
}

/// What both routes ask: an aggregate's measure over a range, filtered by group keys.
struct Selection<'a> {
    aggregate: &'a AggregateInfo,
    measure: &'a MeasureInfo,
    from: i64,
    to: i64,
    filters: BTreeMap<String, String>,
}

impl<'a> Selection<'a> {
    fn take(state: &'a ApiState, params: &mut Params) -> Result<Self> {
        let aggregate = state.catalog.aggregate(&params.require("aggregate")?)?;
        let measure = aggregate.measure(&params.require("measure")?)?;
        let (from, to) = params.range(Utc::now())?;
        Ok(Selection {
            aggregate,
            measure,
            from,
            to,
            filters: BTreeMap::new(),
        })
    }

    /// Every parameter left must name a group key; it filters on equality.
    fn take_filters(&mut self, params: &mut Params) -> Result<()> {
        for (key, value) in params.rest() {
            if !self.aggregate.group_by.contains(&key) {
                return Err(ApiError::bad(
                    format!("unknown parameter `{key}`"),
                    format!(
                        "besides the route's own parameters, only group keys of `{}` filter: {}",
                        self.aggregate.name,
                        self.aggregate.group_by.join(", ")
                    ),
                ));
            }
            self.filters.insert(key, value);
        }
        Ok(())
    }

    /// The windows in range, newest version of each, in a fixed order (start, then id).
    /// `keys` are the group keys the caller needs; `Window::groups` holds them in order.
    async fn read(&self, state: &ApiState, keys: &[&str]) -> Result<Vec<Window>> {
        let agg = self.aggregate;
        let mut sql = Sql::new("SELECT id, ");
        sql.ident("version")
            .push(" AS helios_version, window_start, ");
        for key in keys {
            sql.ident(key).push(", ");
        }
        sql.ident(&self.measure.name)
            .push(" AS helios_value, ")
            .ident("count")
            .push(" AS helios_count FROM ")
            .versioned_table(&agg.table());
        self.push_filters(&mut sql);
        let table = state.store.query(&sql, state.insight_limits).await?;
        let (id, version) = (table.col("id")?, table.col("helios_version")?);
        let start = table.col("window_start")?;
        let value = table.col("helios_value")?;
        let count = table.col("helios_count")?;
        let groups: Vec<usize> = keys.iter().map(|k| table.col(k)).collect::<Result<_>>()?;
        // The newest version of each id (ClickHouse has done this already with FINAL).
        let mut newest: HashMap<&str, (i64, usize)> = HashMap::with_capacity(table.rows.len());
        for (i, r) in table.rows.iter().enumerate() {
            let v = cell::i64(&r[version]).unwrap_or_default();
            let slot = newest
                .entry(r[id].as_str().unwrap_or_default())
                .or_insert((v, i));
            if v > slot.0 {
                *slot = (v, i);
            }
        }
        let mut windows: Vec<Window> = newest
            .into_iter()
            .map(|(id, (_, i))| {
                let r = &table.rows[i];
                Window {
                    id: id.to_owned(),
                    start: cell::i64(&r[start]).unwrap_or_default(),
                    groups: groups.iter().map(|&g| cell::string(&r[g])).collect(),
                    value: cell::f64(&r[value]),
                    count: cell::i64(&r[count]).unwrap_or_default(),
                }
            })
            .collect();
        windows.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        Ok(windows)
    }

    /// The measure combined per (bucket, group value): by the store (`GROUP BY` over the
    /// deduplicated windows) for the functions that combine by sums and extremes, so only
    /// one row per cell travels; window by window here for the others. `key` is the group
    /// key of the series (none: one series); `buckets` is `(first bucket start, step)` in
    /// µs (none: one cell per key over the whole range).
    async fn cells(
        &self,
        state: &ApiState,
        key: Option<&str>,
        buckets: Option<(i64, i64)>,
    ) -> Result<Vec<Cell>> {
        use MeasureFunction::{Avg, Count, Max, Min, Sum};
        let function = self.measure.function;
        if !matches!(function, Count | Sum | Min | Max | Avg) {
            let keys: Vec<&str> = key.into_iter().collect();
            let windows = self.read(state, &keys).await?;
            let mut cells = Vec::with_capacity(windows.len());
            for w in windows {
                let Some(v) = w.value else { continue };
                let mut value = Combined::new(function);
                // A fresh combination takes any one window.
                let _ = value.add(w.start, v, w.count);
                cells.push(Cell {
                    bucket: buckets.map_or(0, |(first, step)| (w.start - first) / step),
                    key: key.map(|_| w.groups[0].clone()),
                    value,
                });
            }
            return Ok(cells);
        }
        let agg = self.aggregate;
        let dialect = state.store.dialect();
        let bucket_expr = match (buckets, dialect) {
            (None, _) => None,
            (Some((first, step)), Dialect::ClickHouse) => {
                Some(format!("intDiv(window_start - {first}, {step})"))
            }
            (Some((first, step)), Dialect::DataFusion) => {
                Some(format!("(window_start - {first}) / {step}"))
            }
        };
        let mut sql = Sql::new("SELECT ");
        sql.push(bucket_expr.as_deref().unwrap_or("0"))
            .push(" AS helios_bucket, ");
        match key {
            Some(k) => sql.ident(k),
            None => sql.push("''"),
        };
        sql.push(
            " AS helios_key, count(helios_value) AS helios_n, sum(helios_value) AS helios_sum, \
             min(helios_value) AS helios_min, max(helios_value) AS helios_max, \
             sum(helios_value * helios_count) AS helios_weighted, \
             sum(CASE WHEN helios_value IS NULL THEN 0 ELSE helios_count END) AS helios_weight \
             FROM (SELECT ",
        );
        // The newest version of each window: FINAL on ClickHouse; on the embedded store one
        // hash aggregate per id taking the values of its highest version (`argMax`), over
        // the rows the Parquet scan kept (every version of an id has the same start and
        // group, so filtering first is the same as filtering the newest). Grouping by id
        // also folds exact copies of a version (a replay writes the same row again) into
        // one window; no join, no sort.
        sql.push("window_start, ");
        if let Some(k) = key {
            sql.ident(k).push(", ");
        }
        let newest = |sql: &mut Sql, column: &str| {
            if dialect == Dialect::DataFusion {
                sql.push("argMax(")
                    .ident(column)
                    .push(", ")
                    .ident("version")
                    .push(")");
            } else {
                sql.ident(column);
            }
        };
        newest(&mut sql, &self.measure.name);
        sql.push(" AS helios_value, ");
        // Only an average weighs windows by their event count; the others skip reading it.
        if function == Avg {
            newest(&mut sql, "count");
        } else {
            sql.push("0");
        }
        sql.push(" AS helios_count FROM ")
            .versioned_table(&agg.table());
        self.push_filters(&mut sql);
        if dialect == Dialect::DataFusion {
            sql.push(" GROUP BY id, window_start");
            if let Some(k) = key {
                sql.push(", ").ident(k);
            }
        }
        sql.push(") helios_windows");
        let mut group = Vec::new();
        if let Some(b) = &bucket_expr {
            group.push(b.clone());
        }
        if let Some(k) = key {
            group.push(match dialect {
                Dialect::ClickHouse => format!("`{k}`"),
                Dialect::DataFusion => format!("\"{k}\""),
            });
        }
        if !group.is_empty() {
            sql.push(" GROUP BY ").push(&group.join(", "));
        }
        let t = state.store.query(&sql, state.insight_limits).await?;
        let c = |name: &str| t.col(name);
        let (b, k, n) = (c("helios_bucket")?, c("helios_key")?, c("helios_n")?);
        let (sum, lo, hi) = (c("helios_sum")?, c("helios_min")?, c("helios_max")?);
        let (sw, w) = (c("helios_weighted")?, c("helios_weight")?);
        Ok(t.rows
            .iter()
            .filter_map(|r| {
                let windows = cell::i64(&r[n]).unwrap_or_default();
                (windows > 0).then(|| Cell {
                    bucket: cell::i64(&r[b]).unwrap_or_default(),
                    key: key.map(|_| cell::string(&r[k])),
                    value: Combined::from_parts(
                        function,
                        windows as usize,
                        cell::f64(&r[sum]).unwrap_or_default(),
                        cell::f64(&r[lo]).unwrap_or(f64::INFINITY),
                        cell::f64(&r[hi]).unwrap_or(f64::NEG_INFINITY),
                        cell::f64(&r[sw]).unwrap_or_default(),
                        cell::f64(&r[w]).unwrap_or_default(),
                    ),
                })
            })
            .collect())
    }

    /// ` WHERE` range, group filters and, for hopping windows, the tiling ones.
    fn push_filters(&self, sql: &mut Sql) {
        sql.push(" WHERE window_start >= ")
            .bind(Param::Int(self.from))
            .push(" AND window_start < ")
            .bind(Param::Int(self.to));
        for (key, value) in &self.filters {
            sql.push(" AND ")
                .ident(key)
                .push(" = ")
                .bind(Param::Text(value.clone()));
        }
        // Hopping windows overlap; only the ones starting on a multiple of the size tile
        // the timeline, so a coarser step combines those alone.
        if self.aggregate.window.kind == WindowKind::Hopping {
            let size = self.aggregate.window.size_seconds as i64 * 1_000_000;
            if size > 0 {
                sql.push(&format!(" AND window_start % {size} = 0"));
            }
        }
    }

    fn not_combinable(&self, e: NotCombinable) -> ApiError {
        e.error(
            &self.aggregate.name,
            &self.measure.name,
            self.measure.function,
        )
    }
}

/// The step of a time series: given, or the aggregate's own; checked against the window.
fn step_of(agg: &AggregateInfo, raw: Option<String>) -> Result<u64> {
    let window = agg.window;
    let own = match window.kind {
        WindowKind::Tumbling | WindowKind::Session => window.size_seconds,
        WindowKind::Hopping => window.slide_seconds,
    };
    let Some(raw) = raw else {
        return Ok(if window.kind == WindowKind::Session {
            3_600
        } else {
            own.max(1)
        });
    };
    let step = parse_duration(&raw).ok_or_else(|| {
        ApiError::bad(
            format!("`step` is not a duration: `{raw}`"),
            "use e.g. 30s, 15m, 1h, 1d",
        )
    })?;
    let fits = match window.kind {
        WindowKind::Session => true,
        WindowKind::Tumbling => step % window.size_seconds.max(1) == 0,
        // One window per point (step = slide), or whole windows that tile the step.
        WindowKind::Hopping => {
            step == window.slide_seconds || step % window.size_seconds.max(1) == 0
        }
    };
    if !fits {
        return Err(ApiError::bad(
            format!(
                "a step of {step} s cuts the {} s windows of `{}`",
                window.size_seconds, agg.name
            ),
            format!(
                "use a multiple of {} s{}",
                window.size_seconds,
                if window.kind == WindowKind::Hopping {
                    format!(", or the slide ({} s)", window.slide_seconds)
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(step)
}

/// `GET /v1/insights/timeseries`.
#[utoipa::path(
    get,
    path = "/v1/insights/timeseries",
    tag = "insights",
    params(
        ("aggregate" = String, Query, description = "Aggregate name (GET /v1/aggregates)"),
        ("measure" = String, Query, description = "Measure of the aggregate"),
        ("from" = Option<String>, Query, description = "RFC 3339, `now` or relative (-24h); default -24h"),
        ("to" = Option<String>, Query, description = "RFC 3339, `now` or relative; default now"),
        ("step" = Option<String>, Query, description = "Bucket size (e.g. 1h); a multiple of the window size; default the window size"),
        ("group_by" = Option<String>, Query, description = "Group key to break down by"),
        ("top" = Option<usize>, Query, description = "With group_by: series for the top N groups (default 5), the rest as `other`"),
    ),
    responses(
        (status = 200, description = "The series", body = Timeseries),
        (status = 400, description = "A bad parameter, with a hint"),
        (status = 404, description = "No such aggregate or measure"),
    ),
    security(("api_key" = []))
)]
pub async fn timeseries(
    State(state): State<ApiState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Timeseries>> {
    let mut params = Params::new(query);
    let mut sel = Selection::take(&state, &mut params)?;
    let step = step_of(sel.aggregate, params.take("step"))?;
    let group_by = match params.take("group_by") {
        Some(k) => Some(sel.aggregate.group_key(&k)?.to_owned()),
        None => None,
    };
    let top = params.number("top", 5, 100)?;
    sel.take_filters(&mut params)?;
    params.finish()?;

    let step_us = step as i64 * 1_000_000;
    let first = sel.from.div_euclid(step_us) * step_us;
    let buckets = (sel.to - first + step_us - 1) / step_us;
    if buckets > MAX_POINTS {
        return Err(ApiError::bad(
            format!("{buckets} points of {step} s each are too many (at most {MAX_POINTS})"),
            "use a larger step or a shorter range",
        ));
    }
    let cells = sel
        .cells(&state, group_by.as_deref(), Some((first, step_us)))
        .await?;
    let function = sel.measure.function;

    // Per series key, per bucket.
    let mut per_key: BTreeMap<Option<String>, Vec<Combined>> = BTreeMap::new();
    // Rank of each key: its combined value over the range; for a measure that cannot
    // combine, its largest window.
    let mut ranks: BTreeMap<Option<String>, f64> = BTreeMap::new();
    let mut totals: BTreeMap<Option<String>, Combined> = BTreeMap::new();
    for c in cells {
        let Ok(bucket) = usize::try_from(c.bucket) else {
            continue;
        };
        let series = per_key
            .entry(c.key.clone())
            .or_insert_with(|| vec![Combined::new(function); buckets as usize]);
        let Some(slot) = series.get_mut(bucket) else {
            continue;
        };
        slot.merge(&c.value).map_err(|e| sel.not_combinable(e))?;
        if function.combines() {
            totals
                .entry(c.key)
                .or_insert_with(|| Combined::new(function))
                .merge(&c.value)
                .map_err(|e| sel.not_combinable(e))?;
        } else if let Some(v) = c.value.value() {
            let rank = ranks.entry(c.key).or_insert(f64::NEG_INFINITY);
            *rank = rank.max(v);
        }
    }
    for (key, total) in totals {
        ranks.insert(key, total.value().unwrap_or(f64::NEG_INFINITY));
    }

    let point_times: Vec<String> = (0..buckets).map(|i| rfc3339(first + i * step_us)).collect();
    let to_series = |key: Option<String>, values: &[Combined]| Series {
        key,
        points: values
            .iter()
            .zip(&point_times)
            .map(|(c, t)| Point {
                time: t.clone(),
                value: c.value(),
            })
            .collect(),
    };
    let mut series = Vec::new();
    if group_by.is_none() {
        let values = per_key
            .remove(&None)
            .unwrap_or_else(|| vec![Combined::new(function); buckets as usize]);
        series.push(to_series(None, &values));
    } else {
        let mut ranked: Vec<(Option<String>, f64)> = ranks.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut other: Option<Vec<Combined>> = None;
        for (i, (key, _)) in ranked.into_iter().enumerate() {
            let values = per_key.remove(&key).unwrap_or_default();
            if i < top {
                series.push(to_series(key, &values));
            } else if function.combines() {
                let acc =
                    other.get_or_insert_with(|| vec![Combined::new(function); buckets as usize]);
                for (a, v) in acc.iter_mut().zip(&values) {
                    a.merge(v).map_err(|e| sel.not_combinable(e))?;
                }
            }
        }
        if let Some(values) = other {
            series.push(to_series(Some("other".to_owned()), &values));
        }
    }
    Ok(Json(Timeseries {
        aggregate: sel.aggregate.name.clone(),
        measure: sel.measure.name.clone(),
        from: rfc3339(first),
        to: rfc3339(sel.to),
        step_seconds: step,
        series,
    }))
}

/// `GET /v1/insights/top`.
#[utoipa::path(
    get,
    path = "/v1/insights/top",
    tag = "insights",
    params(
        ("aggregate" = String, Query, description = "Aggregate name"),
        ("measure" = String, Query, description = "Measure to rank by"),
        ("by" = Option<String>, Query, description = "Group key to rank; default the aggregate's first group key"),
        ("n" = Option<usize>, Query, description = "How many groups (default 10, at most 1000)"),
        ("from" = Option<String>, Query, description = "RFC 3339, `now` or relative; default -24h"),
        ("to" = Option<String>, Query, description = "RFC 3339, `now` or relative; default now"),
    ),
    responses(
        (status = 200, description = "Groups ranked, largest first", body = Top),
        (status = 400, description = "A bad parameter, with a hint"),
        (status = 404, description = "No such aggregate or measure"),
    ),
    security(("api_key" = []))
)]
pub async fn top(
    State(state): State<ApiState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Top>> {
    let mut params = Params::new(query);
    let mut sel = Selection::take(&state, &mut params)?;
    let by = match params.take("by") {
        Some(k) => sel.aggregate.group_key(&k)?.to_owned(),
        None => sel.aggregate.group_by.first().cloned().ok_or_else(|| {
            ApiError::bad(
                format!(
                    "aggregate `{}` has no group keys to rank",
                    sel.aggregate.name
                ),
                "use /v1/insights/timeseries for an ungrouped aggregate",
            )
        })?,
    };
    let n = params.number("n", 10, 1000)?;
    sel.take_filters(&mut params)?;
    params.finish()?;

    let function = sel.measure.function;
    let mut per_key: BTreeMap<String, Combined> = BTreeMap::new();
    for c in sel.cells(&state, Some(by.as_str()), None).await? {
        per_key
            .entry(c.key.unwrap_or_default())
            .or_insert_with(|| Combined::new(function))
            .merge(&c.value)
            .map_err(|e| sel.not_combinable(e))?;
    }
    let mut ranked: Vec<(String, Combined)> = per_key.into_iter().collect();
    ranked.sort_by(|a, b| {
        let (va, vb) = (
            a.1.value().unwrap_or(f64::NEG_INFINITY),
            b.1.value().unwrap_or(f64::NEG_INFINITY),
        );
        vb.total_cmp(&va).then_with(|| a.0.cmp(&b.0))
    });
    let rest = if ranked.len() > n {
        ranked.split_off(n)
    } else {
        Vec::new()
    };
    let other = if rest.is_empty() || !function.combines() {
        None
    } else {
        let mut acc = Combined::new(function);
        for (_, c) in &rest {
            acc.merge(c).map_err(|e| sel.not_combinable(e))?;
        }
        acc.value()
    };
    Ok(Json(Top {
        aggregate: sel.aggregate.name.clone(),
        measure: sel.measure.name.clone(),
        by,
        from: rfc3339(sel.from),
        to: rfc3339(sel.to),
        rows: ranked
            .into_iter()
            .filter_map(|(key, c)| c.value().map(|value| TopRow { key, value }))
            .collect(),
        other,
    }))
}
