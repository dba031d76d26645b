//! `GET /v1/subjects/{subject}`: one project's or host's summary — its activity in the
//! range, its recent events, open alerts, recent insights, the latest window of every
//! aggregate grouped by subject, and its newest streak.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::params::{Params, rfc3339};
use super::records::{
    AlertFilter, AlertOut, EventFilter, EventOut, InsightFilter, InsightOut, read_alerts,
    read_events, read_insights,
};
use crate::error::{ApiError, Result};
use crate::state::ApiState;
use crate::store::{Param, Sql, cell};

/// A subject's summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subject {
    pub subject: String,
    pub from: String,
    pub to: String,
    pub events: Activity,
    /// The ten newest events in the range.
    pub recent_events: Vec<EventOut>,
    pub open_alerts: Vec<AlertOut>,
    /// The ten newest insights in the range.
    pub insights: Vec<InsightOut>,
    /// The newest window of each aggregate grouped by `subject`, every measure.
    pub measures: Vec<MeasureNow>,
    /// The newest streak insight, if any.
    pub streak: Option<InsightOut>,
}

/// Events of the subject in the range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Activity {
    pub count: i64,
    pub last_time: Option<String>,
    pub by_kind: Vec<KindCount>,
}

/// Events of one kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindCount {
    pub kind: String,
    pub count: i64,
}

/// One measure's newest value.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeasureNow {
    pub aggregate: String,
    pub measure: String,
    pub value: Option<f64>,
    pub window_start: String,
}

/// `GET /v1/subjects/{subject}`.
#[utoipa::path(
    get,
    path = "/v1/subjects/{subject}",
    tag = "insights",
    params(
        ("subject" = String, Path, description = "A subject: repository, host, service…"),
        ("from" = Option<String>, Query, description = "RFC 3339, `now` or relative; default -24h"),
        ("to" = Option<String>, Query, description = "RFC 3339, `now` or relative; default now"),
    ),
    responses(
        (status = 200, description = "The subject's summary", body = Subject),
        (status = 400, description = "A bad parameter, with a hint"),
        (status = 404, description = "Nothing is known about the subject"),
    ),
    security(("api_key" = []))
)]
pub async fn subject(
    State(state): State<ApiState>,
    Path(subject): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Subject>> {
    let mut params = Params::new(query);
    let (from, to) = params.range(Utc::now())?;
    params.finish()?;

    let mut sql = Sql::new("SELECT kind, count(*) AS n, max(time) AS last FROM ");
    sql.table("events")
        .push(" WHERE subject = ")
        .bind(Param::Text(subject.clone()))
        .push(" AND time >= ")
        .bind(Param::Int(from))
        .push(" AND time < ")
        .bind(Param::Int(to))
        .push(" GROUP BY kind");
    let t = state.store.query(&sql, state.insight_limits).await?;
    let (kind, n, last) = (t.col("kind")?, t.col("n")?, t.col("last")?);
    let mut by_kind: Vec<KindCount> = t
        .rows
        .iter()
        .map(|r| KindCount {
            kind: cell::string(&r[kind]),
            count: cell::i64(&r[n]).unwrap_or_default(),
        })
        .collect();
    by_kind.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
    let last_time = t.rows.iter().filter_map(|r| cell::i64(&r[last])).max();

    let recent_events = read_events(
        &state,
        &EventFilter {
            subject: Some(subject.clone()),
            range: Some((from, to)),
            ..EventFilter::default()
        },
        10,
    )
    .await?
    .0;
    let open_alerts = read_alerts(
        &state,
        &AlertFilter {
            state: Some("firing".to_owned()),
            subject: Some(subject.clone()),
            ..AlertFilter::default()
        },
        100,
    )
    .await?;
    let insights = read_insights(
        &state,
        &InsightFilter {
            subject: Some(subject.clone()),
            range: Some((from, to)),
            ..InsightFilter::default()
        },
        10,
    )
    .await?;
    let streak = read_insights(
        &state,
        &InsightFilter {
            kind: Some("streak".to_owned()),
            subject: Some(subject.clone()),
            ..InsightFilter::default()
        },
        1,
    )
    .await?
    .into_iter()
    .next();

    let mut measures = Vec::new();
    for agg in state
        .catalog
        .aggregates
        .iter()
        .filter(|a| a.group_by.iter().any(|k| k == "subject"))
    {
        let mut sql = Sql::new("SELECT window_start");
        for m in &agg.measures {
            sql.push(", ").ident(&m.name);
        }
        sql.push(" FROM ")
            .table(&agg.table())
            .push(" WHERE ")
            .ident("subject")
            .push(" = ")
            .bind(Param::Text(subject.clone()))
            .push(" ORDER BY window_start DESC, id DESC LIMIT 1");
        let t = state.store.query(&sql, state.insight_limits).await?;
        let Some(row) = t.rows.first() else { continue };
        let start = cell::i64(&row[t.col("window_start")?]).unwrap_or_default();
        for m in &agg.measures {
            measures.push(MeasureNow {
                aggregate: agg.name.clone(),
                measure: m.name.clone(),
                value: cell::f64(&row[t.col(&m.name)?]),
                window_start: rfc3339(start),
            });
        }
    }

    let count = by_kind.iter().map(|k| k.count).sum();
    if count == 0 && open_alerts.is_empty() && measures.is_empty() && streak.is_none() {
        return Err(ApiError::not_found(
            format!(
                "nothing is known about subject `{subject}` between {} and {}",
                rfc3339(from),
                rfc3339(to)
            ),
            "check the spelling (GET /v1/events lists subjects), or widen the range with from=-7d",
        ));
    }
    Ok(Json(Subject {
        subject,
        from: rfc3339(from),
        to: rfc3339(to),
        events: Activity {
            count,
            last_time: last_time.map(rfc3339),
            by_kind,
        },
        recent_events,
        open_alerts,
        insights,
        measures,
        streak,
    }))
}
