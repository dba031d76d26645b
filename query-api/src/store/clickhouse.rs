//! Reading ClickHouse: every query runs with the server's own guards (`readonly`,
//! `max_execution_time`, `max_memory_usage`, `max_result_rows` and `max_result_bytes` with
//! `result_overflow_mode = throw`), values are bound by the client, and the answer comes
//! back as `JSONCompact` with its column types, read up to the byte limit.
//!
//! Connected as the sink's user, the reader sends those settings with every query
//! (`readonly = 2`). Connected as a read-only user ([`ClickHouseReader::read_only_user`]),
//! it sends none: a `readonly = 1` user may not change settings, so they come from the
//! user's profile (see `helios migrate`, which creates or prints it).

use async_trait::async_trait;
use clickhouse::Client;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig};
use serde::Deserialize;
use serde_json::Value;

use super::{Column, Dialect, Limits, Param, ReadStore, Sql, Table, normalise_type};
use crate::error::{ApiError, Result};

/// Reads the Helios database on a ClickHouse server.
#[derive(Clone)]
pub struct ClickHouseReader {
    client: Client,
    url: String,
    database: String,
    /// Send the limits with each query (the sink's user); `false` for a read-only user
    /// whose profile carries them.
    send_settings: bool,
}

impl std::fmt::Debug for ClickHouseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseReader")
            .field("url", &self.url)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl ClickHouseReader {
    /// A reader for `config`'s server and database; connects on the first query.
    pub fn new(config: &ClickHouseConfig) -> Result<Self> {
        let ch = ClickHouse::new(config).map_err(|e| ApiError::Store {
            reason: e.to_string(),
        })?;
        Ok(ClickHouseReader {
            client: ch
                .client()
                .clone()
                // Numbers as JSON numbers, not strings, so both stores answer alike.
                .with_option("output_format_json_quote_64bit_integers", "0")
                .with_option("output_format_json_quote_denormals", "0"),
            url: ch.url().to_owned(),
            database: ch.database().to_owned(),
            send_settings: true,
        })
    }

    /// A reader connected as a `readonly = 1` user (`config`'s user), which may not change
    /// any setting: the limits and output settings come from the user's profile, and the
    /// API only checks rows and bytes of the answer itself.
    pub fn read_only_user(config: &ClickHouseConfig) -> Result<Self> {
        let ch = ClickHouse::new(config).map_err(|e| ApiError::Store {
            reason: e.to_string(),
        })?;
        Ok(ClickHouseReader {
            client: ch.client().clone(),
            url: ch.url().to_owned(),
            database: ch.database().to_owned(),
            send_settings: false,
        })
    }

    async fn run(&self, query: clickhouse::query::Query, limits: Limits) -> Result<Table> {
        let secs = limits.timeout.as_secs().max(1);
        let query = if self.send_settings {
            query
                // 2: reads only, but the settings below may still be set for this query.
                // Callers cannot set any themselves: the SQL guard refuses SETTINGS and SET.
                .with_option("readonly", "2")
                .with_option("max_execution_time", secs.to_string())
                .with_option("max_memory_usage", limits.max_memory.to_string())
                .with_option("max_result_rows", limits.max_rows.to_string())
                .with_option("max_result_bytes", limits.max_bytes.to_string())
                .with_option("result_overflow_mode", "throw")
        } else {
            query
        };
        // JSONCompact adds its column list and statistics to the cells.
        let max_bytes = limits.max_bytes.saturating_add(64 * 1024);
        let fetch = async {
            let mut cursor = query
                .fetch_bytes("JSONCompact")
                .map_err(|e| self.error(e))?;
            let mut bytes = Vec::new();
            while let Some(chunk) = cursor.next().await.map_err(|e| self.error(e))? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > max_bytes {
                    return Err(super::byte_limit(limits.max_bytes));
                }
            }
            Ok(bytes)
        };
        // The server stops at max_execution_time; this covers a server that stopped answering.
        let bytes = tokio::time::timeout(limits.timeout + std::time::Duration::from_secs(2), fetch)
            .await
            .map_err(|_| {
                ApiError::over_limit(
                    format!("the query ran longer than {} s", secs),
                    "narrow the time range or the tables read, or aggregate more",
                )
            })??;
        parse_json_compact(&bytes, limits)
    }

    fn error(&self, e: clickhouse::error::Error) -> ApiError {
        classify(&self.url, e)
    }
}

#[async_trait]
impl ReadStore for ClickHouseReader {
    fn dialect(&self) -> Dialect {
        Dialect::ClickHouse
    }

    fn describe(&self) -> String {
        format!("ClickHouse at {} (database {})", self.url, self.database)
    }

    async fn query(&self, sql: &Sql, limits: Limits) -> Result<Table> {
        let (text, params) = sql.render(Dialect::ClickHouse);
        let mut query = self.client.query(&text);
        for p in params {
            query = match p {
                Param::Int(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
            };
        }
        self.run(query, limits).await
    }

    async fn query_text(&self, sql: &str, limits: Limits) -> Result<Table> {
        // No placeholders in a caller's text: every `?` is literal.
        self.run(self.client.query(&sql.replace('?', "??")), limits)
            .await
            .map_err(|e| match e {
                // The server refused the caller's statement: the statement's fault.
                ApiError::Store { reason } if reason.starts_with(REFUSED) => ApiError::bad(
                    format!("ClickHouse rejected the query: {reason}"),
                    "fix the SQL; the tables are events, alerts, insights, dead_letters, late_events and agg_<name>",
                ),
                other => other,
            })
    }

    async fn ready(&self) -> Result<()> {
        self.run(self.client.query("SELECT 1"), Limits::default())
            .await
            .map(|_| ())
    }
}

#[derive(Debug, Deserialize)]
struct JsonCompact {
    meta: Vec<Meta>,
    data: Vec<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

fn parse_json_compact(bytes: &[u8], limits: Limits) -> Result<Table> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Table::default());
    }
    let parsed: JsonCompact = serde_json::from_slice(bytes).map_err(|e| ApiError::Store {
        reason: format!("ClickHouse answered something that is not JSONCompact: {e}"),
    })?;
    if parsed.data.len() > limits.max_rows {
        return Err(row_limit(limits.max_rows));
    }
    let columns: Vec<Column> = parsed
        .meta
        .into_iter()
        .map(|m| Column {
            ty: normalise_type(&m.ty),
            name: m.name,
        })
        .collect();
    // ClickHouse writes a whole float without its fraction (`702`); keep floats floats,
    // as the embedded store does.
    let floats: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i].ty == "float")
        .collect();
    let mut rows = parsed.data;
    if !floats.is_empty() {
        for row in &mut rows {
            for &i in &floats {
                if let Some(cell) = row.get_mut(i)
                    && let Some(f) = cell.as_f64()
                {
                    *cell = serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
                }
            }
        }
    }
    Ok(Table { columns, rows })
}

pub(super) fn row_limit(max: usize) -> ApiError {
    ApiError::over_limit(
        format!("the query returns more than {max} rows"),
        "add a LIMIT, a narrower WHERE, or aggregate with GROUP BY",
    )
}

/// Server error codes that mean the query is wrong, not the server.
const CALLER_ERRORS: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    36,  // BAD_ARGUMENTS
    41,  // CANNOT_PARSE_DATETIME
    42,  // NUMBER_OF_ARGUMENTS_DOESNT_MATCH
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    46,  // UNKNOWN_FUNCTION
    47,  // UNKNOWN_IDENTIFIER
    48,  // NOT_IMPLEMENTED
    53,  // TYPE_MISMATCH
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    153, // ILLEGAL_DIVISION
    179, // MULTIPLE_EXPRESSIONS_FOR_ALIAS
    184, // ILLEGAL_AGGREGATION
    215, // NOT_AN_AGGREGATE
];
/// TIMEOUT_EXCEEDED, TOO_MANY_ROWS_OR_BYTES, TOO_MANY_ROWS, TOO_MANY_BYTES,
/// MEMORY_LIMIT_EXCEEDED, TOO_DEEP_AST, TOO_BIG_AST, TOO_DEEP_RECURSION,
/// TOO_MANY_ROWS_OR_BYTES (old code), TOO_SLOW.
const LIMIT_ERRORS: &[u32] = &[159, 396, 158, 307, 241, 167, 168, 306, 160];
/// READONLY, DATABASE_ACCESS_DENIED, ACCESS_DENIED, UNKNOWN_DATABASE.
const FORBIDDEN_ERRORS: &[u32] = &[164, 291, 497, 81];

/// How an error the server answered with starts.
const REFUSED: &str = "the server answered: ";

fn classify(url: &str, e: clickhouse::error::Error) -> ApiError {
    use clickhouse::error::Error;
    // Our user or password refused, or the server's certificate not trusted: a setting of
    // this deployment, said as such (never the caller's SQL).
    if let Some(reason) = helios_sinks::clickhouse::access_problem(&e) {
        return ApiError::Store {
            reason: format!("cannot connect to ClickHouse at {url}: {reason}"),
        };
    }
    match e {
        Error::BadResponse(text) => {
            let code = text
                .trim_start()
                .strip_prefix("Code: ")
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|c| c.parse::<u32>().ok());
            // The first line carries the message; the rest is server detail.
            let message = text.lines().next().unwrap_or_default().trim().to_owned();
            match code {
                Some(c) if LIMIT_ERRORS.contains(&c) => ApiError::over_limit(
                    format!("the query went over a limit: {message}"),
                    "add a LIMIT, narrow the time range, or aggregate more",
                ),
                Some(c) if FORBIDDEN_ERRORS.contains(&c) => ApiError::forbidden(
                    format!("ClickHouse refused: {message}"),
                    "only reads are allowed",
                ),
                Some(c) if CALLER_ERRORS.contains(&c) => ApiError::bad(
                    format!("ClickHouse rejected the query: {message}"),
                    "fix the SQL; the tables are events, alerts, insights, dead_letters, late_events and agg_<name>",
                ),
                _ => ApiError::Store {
                    reason: format!("{REFUSED}{message} (ClickHouse at {url})"),
                },
            }
        }
        Error::Network(_) | Error::TimedOut => ApiError::Unavailable {
            reason: format!("ClickHouse at {url} did not answer: {e}"),
        },
        other => ApiError::Store {
            reason: format!("ClickHouse at {url}: {other}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_become_caller_errors_or_limits() {
        let e = classify(
            "x",
            clickhouse::error::Error::BadResponse(
                "Code: 62, e.displayText() = DB::Exception: Syntax error\nstack".into(),
            ),
        );
        assert!(matches!(e, ApiError::BadRequest { .. }), "{e:?}");
        let e = classify(
            "x",
            clickhouse::error::Error::BadResponse("Code: 159, Timeout exceeded".into()),
        );
        assert!(matches!(e, ApiError::OverLimit { .. }), "{e:?}");
        let e = classify(
            "x",
            clickhouse::error::Error::BadResponse("Code: 999, odd".into()),
        );
        assert!(matches!(e, ApiError::Store { .. }), "{e:?}");
    }

    #[test]
    fn json_compact_keeps_names_types_and_cells() {
        let body =
            br#"{"meta":[{"name":"n","type":"UInt64"},{"name":"s","type":"Nullable(String)"}],
            "data":[[3,"a"],[4,null]],"rows":2}"#;
        let t = parse_json_compact(body, Limits::default()).unwrap();
        assert_eq!(t.columns[0].ty, "integer");
        assert_eq!(t.columns[1].ty, "string");
        assert_eq!(t.rows[1], vec![Value::from(4), Value::Null]);
    }
}
