//! `GET /v1/alerts`, `GET /v1/insights` and `GET /v1/events`: stored records with filters,
//! newest first. Every filter value is a bound parameter; group filters (`subject`) are
//! applied to the rows read, since the stores spell array functions differently.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::params::{Params, rfc3339};
use crate::error::{ApiError, Result};
use crate::state::ApiState;
use crate::store::{Param, Sql, Table, cell};

/// An alert's current state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertOut {
    pub id: String,
    pub rule: String,
    /// Group key → value, e.g. `{"subject": "helios"}`.
    pub group: BTreeMap<String, String>,
    /// `firing` or `resolved`.
    pub state: String,
    pub since: String,
    pub at: String,
    pub severity: String,
    pub summary: String,
    pub evidence: Vec<String>,
}

/// An insight (anomaly, trend, streak).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InsightOut {
    pub id: String,
    pub kind: String,
    pub aggregate: String,
    pub group: BTreeMap<String, String>,
    pub measure: String,
    pub window_start: String,
    pub window_end: String,
    pub value: f64,
    pub score: f64,
    pub summary: String,
    pub at: String,
}

/// A stored event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventOut {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub subject: String,
    pub time: String,
    pub received_at: String,
    pub attrs: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub payload: Option<String>,
}

/// `GET /v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alerts {
    pub alerts: Vec<AlertOut>,
}

/// `GET /v1/insights`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Insights {
    pub insights: Vec<InsightOut>,
}

/// `GET /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Events {
    pub events: Vec<EventOut>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn zip(keys: &serde_json::Value, values: &serde_json::Value) -> BTreeMap<String, String> {
    cell::strings(keys)
        .into_iter()
        .zip(cell::strings(values))
        .collect()
}

/// With a subject filter the rows are filtered here (the stores spell array functions
/// differently), so the SQL may only limit rows when there is none.
fn limit_unless_by_subject(sql: &mut Sql, subject: Option<&String>, limit: usize) {
    if subject.is_none() {
        sql.push(&format!(" LIMIT {limit}"));
    }
}

/// The first `limit` of `items` whose `subject` group value is `subject` (all without one).
fn by_subject<T>(
    items: impl Iterator<Item = T>,
    group: impl Fn(&T) -> &BTreeMap<String, String>,
    subject: Option<&String>,
    limit: usize,
) -> Vec<T> {
    items
        .filter(|item| subject.is_none_or(|s| group(item).get("subject") == Some(s)))
        .take(limit)
        .collect()
}

/// Which alerts to read.
#[derive(Debug, Default)]
pub struct AlertFilter {
    pub state: Option<String>,
    pub rule: Option<String>,
    pub subject: Option<String>,
    /// Alerts active at some time in `[from, to)`.
    pub range: Option<(i64, i64)>,
}

/// Alerts matching `filter`, newest first, at most `limit`.
pub async fn read_alerts(
    state: &ApiState,
    filter: &AlertFilter,
    limit: usize,
) -> Result<Vec<AlertOut>> {
    let mut sql = Sql::new(
        "SELECT id, rule, group_keys, group_values, state, since, at, severity, summary, evidence FROM ",
    );
    sql.table("alerts").push(" WHERE 1 = 1");
    if let Some(s) = &filter.state {
        sql.push(" AND state = ").bind(Param::Text(s.clone()));
    }
    if let Some(r) = &filter.rule {
        sql.push(" AND rule = ").bind(Param::Text(r.clone()));
    }
    if let Some((from, to)) = filter.range {
        // Began before the range ends, and still firing or resolved after it began.
        sql.push(" AND since < ")
            .bind(Param::Int(to))
            .push(" AND (state = 'firing' OR at >= ")
            .bind(Param::Int(from))
            .push(")");
    }
    sql.push(" ORDER BY since DESC, id DESC");
    limit_unless_by_subject(&mut sql, filter.subject.as_ref(), limit);
    let t = state.store.query(&sql, state.insight_limits).await?;
    let c = Cols::new(
        &t,
        &[
            "id",
            "rule",
            "group_keys",
            "group_values",
            "state",
            "since",
            "at",
            "severity",
            "summary",
            "evidence",
        ],
    )?;
    let rows = t.rows.iter().map(|r| AlertOut {
        id: cell::string(&r[c.0[0]]),
        rule: cell::string(&r[c.0[1]]),
        group: zip(&r[c.0[2]], &r[c.0[3]]),
        state: cell::string(&r[c.0[4]]),
        since: rfc3339(cell::i64(&r[c.0[5]]).unwrap_or_default()),
        at: rfc3339(cell::i64(&r[c.0[6]]).unwrap_or_default()),
        severity: cell::string(&r[c.0[7]]),
        summary: cell::string(&r[c.0[8]]),
        evidence: cell::strings(&r[c.0[9]]),
    });
    Ok(by_subject(
        rows,
        |x: &AlertOut| &x.group,
        filter.subject.as_ref(),
        limit,
    ))
}

/// Which insights to read.
#[derive(Debug, Default)]
pub struct InsightFilter {
    pub kind: Option<String>,
    pub aggregate: Option<String>,
    pub subject: Option<String>,
    /// Insights whose window starts in `[from, to)`.
    pub range: Option<(i64, i64)>,
}

/// Insights matching `filter`, newest window first, at most `limit`.
pub async fn read_insights(
    state: &ApiState,
    filter: &InsightFilter,
    limit: usize,
) -> Result<Vec<InsightOut>> {
    let mut sql = Sql::new(
        "SELECT id, kind, aggregate, group_keys, group_values, measure, window_start, window_end, value, score, summary, at FROM ",
    );
    sql.table("insights").push(" WHERE 1 = 1");
    if let Some(k) = &filter.kind {
        sql.push(" AND kind = ").bind(Param::Text(k.clone()));
    }
    if let Some(a) = &filter.aggregate {
        sql.push(" AND aggregate = ").bind(Param::Text(a.clone()));
    }
    if let Some((from, to)) = filter.range {
        sql.push(" AND window_start >= ")
            .bind(Param::Int(from))
            .push(" AND window_start < ")
            .bind(Param::Int(to));
    }
    sql.push(" ORDER BY window_start DESC, id DESC");
    limit_unless_by_subject(&mut sql, filter.subject.as_ref(), limit);
    let t = state.store.query(&sql, state.insight_limits).await?;
    let c = Cols::new(
        &t,
        &[
            "id",
            "kind",
            "aggregate",
            "group_keys",
            "group_values",
            "measure",
            "window_start",
            "window_end",
            "value",
            "score",
            "summary",
            "at",
        ],
    )?;
    let rows = t.rows.iter().map(|r| InsightOut {
        id: cell::string(&r[c.0[0]]),
        kind: cell::string(&r[c.0[1]]),
        aggregate: cell::string(&r[c.0[2]]),
        group: zip(&r[c.0[3]], &r[c.0[4]]),
        measure: cell::string(&r[c.0[5]]),
        window_start: rfc3339(cell::i64(&r[c.0[6]]).unwrap_or_default()),
        window_end: rfc3339(cell::i64(&r[c.0[7]]).unwrap_or_default()),
        value: cell::f64(&r[c.0[8]]).unwrap_or(f64::NAN),
        score: cell::f64(&r[c.0[9]]).unwrap_or(f64::NAN),
        summary: cell::string(&r[c.0[10]]),
        at: rfc3339(cell::i64(&r[c.0[11]]).unwrap_or_default()),
    });
    Ok(by_subject(
        rows,
        |x: &InsightOut| &x.group,
        filter.subject.as_ref(),
        limit,
    ))
}

/// Which events to read.
#[derive(Debug, Default)]
pub struct EventFilter {
    pub source: Option<String>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub range: Option<(i64, i64)>,
    /// Only events after this `(time, id, source)` in the listing's order (newest
    /// first): the previous page's last. An event is identified by `(source, id)`, so two
    /// sources' events with one id and one time are both listed, on either side of a
    /// page boundary.
    pub before: Option<(i64, String, String)>,
}

/// Events matching `filter`, newest first: at most `limit`, and when there are more, the
/// `(time, id, source)` of the last one returned (the next page starts after it).
pub async fn read_events(
    state: &ApiState,
    filter: &EventFilter,
    limit: usize,
) -> Result<(Vec<EventOut>, Option<(i64, String, String)>)> {
    let mut sql = Sql::new(
        "SELECT id, source, kind, subject, time, received_at, attr_keys, attr_values, value, payload FROM ",
    );
    sql.table("events").push(" WHERE 1 = 1");
    for (column, value) in [
        ("source", &filter.source),
        ("kind", &filter.kind),
        ("subject", &filter.subject),
    ] {
        if let Some(v) = value {
            sql.push(" AND ")
                .ident(column)
                .push(" = ")
                .bind(Param::Text(v.clone()));
        }
    }
    if let Some((from, to)) = filter.range {
        sql.push(" AND time >= ")
            .bind(Param::Int(from))
            .push(" AND time < ")
            .bind(Param::Int(to));
    }
    if let Some((time, id, source)) = &filter.before {
        sql.push(" AND (time < ")
            .bind(Param::Int(*time))
            .push(" OR (time = ")
            .bind(Param::Int(*time))
            .push(" AND (id < ")
            .bind(Param::Text(id.clone()))
            .push(" OR (id = ")
            .bind(Param::Text(id.clone()))
            .push(" AND source < ")
            .bind(Param::Text(source.clone()))
            .push("))))");
    }
    // One more than asked tells whether there is a next page.
    sql.push(&format!(
        " ORDER BY time DESC, id DESC, source DESC LIMIT {}",
        limit + 1
    ));
    let t = state.store.query(&sql, state.insight_limits).await?;
    let c = Cols::new(
        &t,
        &[
            "id",
            "source",
            "kind",
            "subject",
            "time",
            "received_at",
            "attr_keys",
            "attr_values",
            "value",
            "payload",
        ],
    )?;
    let next = (t.rows.len() > limit)
        .then(|| t.rows.get(limit - 1))
        .flatten()
        .map(|r| {
            (
                cell::i64(&r[c.0[4]]).unwrap_or_default(),
                cell::string(&r[c.0[0]]),
                cell::string(&r[c.0[1]]),
            )
        });
    let events = t
        .rows
        .iter()
        .take(limit)
        .map(|r| EventOut {
            id: cell::string(&r[c.0[0]]),
            source: cell::string(&r[c.0[1]]),
            kind: cell::string(&r[c.0[2]]),
            subject: cell::string(&r[c.0[3]]),
            time: rfc3339(cell::i64(&r[c.0[4]]).unwrap_or_default()),
            received_at: rfc3339(cell::i64(&r[c.0[5]]).unwrap_or_default()),
            attrs: zip(&r[c.0[6]], &r[c.0[7]]),
            value: cell::f64(&r[c.0[8]]),
            payload: r[c.0[9]].as_str().map(str::to_owned),
        })
        .collect();
    Ok((events, next))
}

/// Column indexes of a result, looked up once.
struct Cols(Vec<usize>);

impl Cols {
    fn new(t: &Table, names: &[&str]) -> Result<Self> {
        names
            .iter()
            .map(|n| t.col(n))
            .collect::<Result<_>>()
            .map(Cols)
    }
}

/// `GET /v1/alerts`.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "insights",
    params(
        ("state" = Option<String>, Query, description = "`firing` or `resolved`"),
        ("rule" = Option<String>, Query, description = "Rule name"),
        ("subject" = Option<String>, Query, description = "The alert's `subject` group value"),
        ("from" = Option<String>, Query, description = "Alerts active after this time; RFC 3339, `now` or relative. Default: all time"),
        ("to" = Option<String>, Query, description = "Alerts that began before this time; default now"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "Alerts, newest first", body = Alerts),
        (status = 400, description = "A bad parameter, with a hint"),
    ),
    security(("api_key" = []))
)]
pub async fn alerts(
    State(state): State<ApiState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Alerts>> {
    let mut params = Params::new(query);
    let filter = AlertFilter {
        state: match params.take("state") {
            Some(s) if s == "firing" || s == "resolved" => Some(s),
            Some(other) => {
                return Err(ApiError::bad(
                    format!("`state` is `firing` or `resolved`, not `{other}`"),
                    "e.g. state=firing",
                ));
            }
            None => None,
        },
        rule: params.take("rule"),
        subject: params.take("subject"),
        range: optional_range(&mut params)?,
    };
    let limit = params.number("limit", 100, 1000)?;
    params.finish()?;
    Ok(Json(Alerts {
        alerts: read_alerts(&state, &filter, limit).await?,
    }))
}

/// `from`/`to` when either is given; otherwise no time filter.
fn optional_range(params: &mut Params) -> Result<Option<(i64, i64)>> {
    let from = params.take("from");
    let to = params.take("to");
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let mut values = BTreeMap::new();
    values.insert(
        "from".to_owned(),
        from.unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned()),
    );
    if let Some(to) = to {
        values.insert("to".to_owned(), to);
    }
    Params::new(values).range(Utc::now()).map(Some)
}

/// `GET /v1/insights`.
#[utoipa::path(
    get,
    path = "/v1/insights",
    tag = "insights",
    params(
        ("kind" = Option<String>, Query, description = "`anomaly`, `trend` or `streak`"),
        ("aggregate" = Option<String>, Query, description = "Aggregate the insight was found in"),
        ("subject" = Option<String>, Query, description = "The insight's `subject` group value"),
        ("from" = Option<String>, Query, description = "Window start at or after; default all time"),
        ("to" = Option<String>, Query, description = "Window start before; default now"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "Insights, newest window first", body = Insights),
        (status = 400, description = "A bad parameter, with a hint"),
    ),
    security(("api_key" = []))
)]
pub async fn insights(
    State(state): State<ApiState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Insights>> {
    let mut params = Params::new(query);
    let filter = InsightFilter {
        kind: match params.take("kind") {
            Some(k) if ["anomaly", "trend", "streak"].contains(&k.as_str()) => Some(k),
            Some(other) => {
                return Err(ApiError::bad(
                    format!("`kind` is `anomaly`, `trend` or `streak`, not `{other}`"),
                    "e.g. kind=anomaly",
                ));
            }
            None => None,
        },
        aggregate: match params.take("aggregate") {
            Some(a) => Some(state.catalog.aggregate(&a)?.name.clone()),
            None => None,
        },
        subject: params.take("subject"),
        range: optional_range(&mut params)?,
    };
    let limit = params.number("limit", 100, 1000)?;
    params.finish()?;
    Ok(Json(Insights {
        insights: read_insights(&state, &filter, limit).await?,
    }))
}

/// `GET /v1/events`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "insights",
    params(
        ("source" = Option<String>, Query, description = "Source name"),
        ("kind" = Option<String>, Query, description = "Event kind, e.g. ci.run"),
        ("subject" = Option<String>, Query, description = "Subject, e.g. a repository or host"),
        ("from" = Option<String>, Query, description = "Event time at or after; default all time"),
        ("to" = Option<String>, Query, description = "Event time before; default now"),
        ("limit" = Option<usize>, Query, description = "Page size (default 50, at most 1000)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "Events, newest first", body = Events),
        (status = 400, description = "A bad parameter or cursor, with a hint"),
    ),
    security(("api_key" = []))
)]
pub async fn events(
    State(state): State<ApiState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Events>> {
    let mut params = Params::new(query);
    let mut filter = EventFilter {
        source: params.take("source"),
        kind: params.take("kind"),
        subject: params.take("subject"),
        range: optional_range(&mut params)?,
        before: None,
    };
    if let Some(cursor) = params.take("cursor") {
        filter.before = Some(decode_cursor(&cursor)?);
    }
    let limit = params.number("limit", 50, 1000)?;
    params.finish()?;
    let (events, next) = read_events(&state, &filter, limit).await?;
    let next_cursor = next.map(|(time, id, source)| encode_cursor(time, &id, &source));
    Ok(Json(Events {
        events,
        next_cursor,
    }))
}

/// `<time µs>.<id as hex>.<source as hex>`: opaque to callers, and free of characters URLs
/// must escape.
fn encode_cursor(time: i64, id: &str, source: &str) -> String {
    let hex = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
    format!("{time}.{}.{}", hex(id), hex(source))
}

/// A cursor of [`encode_cursor`]; one without a source (given out before events were
/// identified by source and id) continues after every event with that time and id.
fn decode_cursor(raw: &str) -> Result<(i64, String, String)> {
    let bad = || {
        ApiError::bad(
            format!("`cursor` is not one this API gave out: `{raw}`"),
            "pass the `next_cursor` of the previous page unchanged, or leave it out for the first page",
        )
    };
    let text = |hex: &str| -> Result<String> {
        if !hex.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        String::from_utf8(bytes).map_err(|_| bad())
    };
    let mut parts = raw.split('.');
    let time: i64 = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
    let id = text(parts.next().ok_or_else(bad)?)?;
    // No source: sorts before every source, so the page continues after them all.
    let source = parts.next().map(text).transpose()?.unwrap_or_default();
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((time, id, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(1_700_000_000_000_000, "gh:delivery/1 ' OR 1=1", "src.a");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (
                1_700_000_000_000_000,
                "gh:delivery/1 ' OR 1=1".to_owned(),
                "src.a".to_owned()
            )
        );
        // A cursor from before sources were part of it.
        assert_eq!(
            decode_cursor("12.6964").unwrap(),
            (12, "id".to_owned(), String::new())
        );
        for bad in ["", "x", "12.zz", "12.abc", "x.00", "12.00.0", "12.00.00.00"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
