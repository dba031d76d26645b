//! `POST /v1/sql`: read-only SQL over the store's tables. The statement passes
//! [`guard::check_with`] first (one bounded SELECT over the Helios tables, nothing else),
//! then runs with the store's row, byte, memory and time limits; going over a limit is a
//! 422, never a cut answer. Checking, planning, running and encoding the answer all
//! happen in the query compartment ([`crate::store::compartment`]), never on the threads
//! that serve ingest and health.

pub mod guard;

use std::collections::BTreeSet;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, Result};
use crate::state::ApiState;
use crate::store::{Column, Table, byte_limit};

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT statement over the tables `events`, `alerts`, `insights`,
    /// `dead_letters`, `late_events` and `agg_<aggregate>`.
    pub sql: String,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A JSON answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SqlAnswer {
    pub columns: Vec<Column>,
    /// Rows as arrays, in column order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    pub row_count: usize,
    pub elapsed_ms: u64,
}

/// `?format=csv` also chooses the format.
#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    format: Option<String>,
}

/// `POST /v1/sql`.
#[utoipa::path(
    post,
    path = "/v1/sql",
    tag = "sql",
    request_body = SqlRequest,
    params(("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses(
        (status = 200, description = "The rows: JSON, or CSV with a header line", body = SqlAnswer),
        (status = 400, description = "Not one parseable statement, or a query the store rejects"),
        (status = 403, description = "Not a query, or reads something other than the Helios tables"),
        (status = 422, description = "Over the row, byte, memory or time limit"),
        (status = 429, description = "Too many queries running and waiting; see Retry-After"),
    ),
    security(("api_key" = []))
)]
pub async fn run(
    State(state): State<ApiState>,
    Query(query): Query<FormatQuery>,
    body: std::result::Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response> {
    let Json(request) = body.map_err(|e| {
        ApiError::bad(
            format!("the body is not a SQL request: {}", e.body_text()),
            r#"send {"sql": "SELECT ...", "format": "json"} with content-type application/json"#,
        )
    })?;
    let format = match request.format.or(query.format).as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(ApiError::bad(
                format!("unknown format `{other}`"),
                "use json or csv",
            ));
        }
    };
    let tables = readable_tables(&state);
    let reader = state.reader().clone();
    let (limits, guard_limits) = (state.sql_limits, state.guard_limits);
    let sql = request.sql;
    let body = state
        .compartment()
        .run(limits.timeout, move || async move {
            let text = guard::check_with(&sql, reader.dialect(), &tables, &guard_limits)?;
            let started = Instant::now();
            let table = reader.query_text(&text, limits).await?;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(rows = table.rows.len(), elapsed_ms, "SQL query answered");
            let body = match format {
                Format::Json => serde_json::to_vec(&SqlAnswer {
                    row_count: table.rows.len(),
                    columns: table.columns,
                    rows: table.rows,
                    elapsed_ms,
                })
                .map_err(|e| ApiError::Store {
                    reason: format!("encoding the answer: {e}"),
                })?,
                Format::Csv => csv(&table).into_bytes(),
            };
            if body.len() > limits.max_bytes {
                return Err(byte_limit(limits.max_bytes));
            }
            Ok(body)
        })
        .await?;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Csv,
}

/// The fixed tables and one per aggregate.
pub fn readable_tables(state: &ApiState) -> BTreeSet<String> {
    [
        "events",
        "alerts",
        "insights",
        "dead_letters",
        "late_events",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(state.catalog.aggregates.iter().map(|a| a.table()))
    .collect()
}

/// RFC 4180 CSV with a header line; arrays as JSON text, `null` as an empty field.
fn csv(table: &Table) -> String {
    fn field(out: &mut String, text: &str) {
        if text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(text);
        }
    }
    let mut out = String::new();
    for (i, c) in table.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, &c.name);
    }
    out.push_str("\r\n");
    for row in &table.rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match v {
                Value::Null => {}
                Value::String(s) => field(&mut out, s),
                other => field(&mut out, &other.to_string()),
            }
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let t = Table {
            columns: vec![
                Column {
                    name: "a".into(),
                    ty: "string".into(),
                },
                Column {
                    name: "b".into(),
                    ty: "array".into(),
                },
            ],
            rows: vec![vec![Value::from("x, \"y\""), serde_json::json!(["p", "q"])]],
        };
        assert_eq!(
            csv(&t),
            "a,b\r\n\"x, \"\"y\"\"\",\"[\"\"p\"\",\"\"q\"\"]\"\r\n"
        );
    }
}
