//! `GET /v1/late`: how many events came too late, per aggregate and per rule, from the
//! store's `late_events` table (each late record once, however often it was stored), so
//! the count survives restarts and is the same in every process that serves the API.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::params::{Params, rfc3339};
use crate::error::Result;
use crate::state::ApiState;
use crate::store::{Sql, cell};

/// Late events of one aggregate or rule.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LateCount {
    /// The aggregate's name, or `rule/<name>` for a rule.
    pub aggregate: String,
    /// Events that arrived after their window closed (or behind the rule's watermark),
    /// each counted once.
    pub late_events: u64,
    /// Event time of the newest of them; `null` with none.
    pub last_time: Option<String>,
    /// The latest any of them arrived: the watermark at its arrival minus its event time,
    /// seconds; `null` with none.
    pub max_late_by_seconds: Option<f64>,
}

/// `GET /v1/late`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Late {
    /// Every aggregate of the spec (with 0 when none of its events was late), then every
    /// other name with late events (rules, aggregates no longer in the spec), by name.
    pub aggregates: Vec<LateCount>,
}

/// `GET /v1/late`.
#[utoipa::path(
    get,
    path = "/v1/late",
    tag = "insights",
    responses(
        (status = 200, description = "Late events per aggregate and rule; the events themselves are in the `late_events` table (POST /v1/sql)", body = Late),
        (status = 400, description = "A parameter the route does not take"),
    ),
    security(("api_key" = []))
)]
pub async fn late(
    State(state): State<ApiState>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Late>> {
    Params::new(query).finish()?;
    let mut sql =
        Sql::new("SELECT aggregate, count(*) AS n, max(time) AS last, max(late_by) AS worst FROM ");
    sql.table("late_events").push(" GROUP BY aggregate");
    let t = state.store.query(&sql, state.insight_limits).await?;
    let (aggregate, n, last, worst) = (
        t.col("aggregate")?,
        t.col("n")?,
        t.col("last")?,
        t.col("worst")?,
    );
    let stored = t.rows.iter().map(|r| LateCount {
        aggregate: cell::string(&r[aggregate]),
        late_events: cell::i64(&r[n]).map_or(0, |n| n.max(0) as u64),
        last_time: cell::i64(&r[last]).map(rfc3339),
        max_late_by_seconds: cell::i64(&r[worst]).map(|us| us as f64 / 1e6),
    });
    let names = state.catalog.aggregates.iter().map(|a| a.name.as_str());
    Ok(Json(Late {
        aggregates: counts(names, stored),
    }))
}

/// The catalog's aggregates in their order (0 where nothing was late), then the other
/// names found in the store, by name.
fn counts<'a>(
    catalog: impl Iterator<Item = &'a str>,
    stored: impl Iterator<Item = LateCount>,
) -> Vec<LateCount> {
    let mut found: BTreeMap<String, LateCount> = stored.map(|c| (c.aggregate.clone(), c)).collect();
    let mut out: Vec<LateCount> = catalog
        .map(|name| {
            found.remove(name).unwrap_or_else(|| LateCount {
                aggregate: name.to_owned(),
                late_events: 0,
                last_time: None,
                max_late_by_seconds: None,
            })
        })
        .collect();
    out.extend(found.into_values());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(name: &str, n: u64) -> LateCount {
        LateCount {
            aggregate: name.to_owned(),
            late_events: n,
            last_time: Some("2026-01-01T00:00:00Z".to_owned()),
            max_late_by_seconds: Some(1.5),
        }
    }

    #[test]
    fn every_aggregate_is_listed_and_rules_follow_by_name() {
        let stored = vec![count("rule/b", 1), count("runs", 4), count("rule/a", 2)];
        let out = counts(["deploys", "runs"].into_iter(), stored.into_iter());
        let names: Vec<(&str, u64)> = out
            .iter()
            .map(|c| (c.aggregate.as_str(), c.late_events))
            .collect();
        assert_eq!(
            names,
            [("deploys", 0), ("runs", 4), ("rule/a", 2), ("rule/b", 1)]
        );
        assert_eq!(
            (out[0].last_time.as_deref(), out[0].max_late_by_seconds),
            (None, None)
        );
        assert_eq!(out[1], count("runs", 4));
    }
}
