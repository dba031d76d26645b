//! The seam between the API and a store: [`ReadStore`] runs one read-only query and answers
//! a [`Table`] of JSON cells. Two stores sit behind it: ClickHouse ([`ClickHouseReader`])
//! and the embedded Parquet files read by DataFusion ([`DataFusionReader`]).
//!
//! Queries the API builds itself are [`Sql`] values: text, parameters and table references
//! kept apart, so each store renders them its own way (`?` bound by the ClickHouse client
//! or `$n` bound by DataFusion; `t FINAL` or the deduplicating view `t`). Nothing that comes
//! from a request is ever pasted into SQL text.
//!
//! Cells are normalised so both stores give the same JSON: integers as numbers, floats as
//! numbers (NaN and infinities as `null`), strings, arrays, `null`.

mod bounded;
mod clickhouse;
pub mod compartment;
mod datafusion;

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

pub use self::clickhouse::ClickHouseReader;
pub use self::compartment::{Compartment, CompartmentConfig, CompartmentStore};
pub use self::datafusion::DataFusionReader;
use crate::error::{ApiError, Result};

/// Which SQL a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    ClickHouse,
    DataFusion,
}

/// A value bound into a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Param(Param),
    /// A table of the store, read deduplicated (one row per id, newest version).
    Table(String),
    /// A column name from the catalog, quoted.
    Ident(String),
    /// A versioned table read without deduplicating on the embedded store (so filters
    /// reach the Parquet scan); the caller keeps the newest version of each id.
    Versioned(String),
}

/// SQL built by the API: text, bound parameters and deduplicated table references.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sql {
    parts: Vec<Part>,
}

impl Sql {
    /// Starts with `text`.
    pub fn new(text: &str) -> Self {
        let mut sql = Sql::default();
        sql.push(text);
        sql
    }

    /// Appends SQL text written by the API (never request data).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.parts.push(Part::Text(text.to_owned()));
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: Param) -> &mut Self {
        self.parts.push(Part::Param(value));
        self
    }

    /// Appends a reference to a store table, read deduplicated.
    pub fn table(&mut self, name: &str) -> &mut Self {
        self.parts.push(Part::Table(name.to_owned()));
        self
    }

    /// Appends a reference to a table with `id` and `version` columns, for callers that
    /// keep the newest version of each id themselves: ClickHouse reads it `FINAL`; the
    /// embedded store reads every copy, with the query's filters pushed into the scan
    /// instead of running its deduplicating view over the whole table.
    pub fn versioned_table(&mut self, name: &str) -> &mut Self {
        self.parts.push(Part::Versioned(name.to_owned()));
        self
    }

    /// Appends a quoted column name (from the catalog, never from a request).
    pub fn ident(&mut self, name: &str) -> &mut Self {
        self.parts.push(Part::Ident(name.to_owned()));
        self
    }

    /// The text for `dialect` and the parameters in order.
    fn render(&self, dialect: Dialect) -> (String, Vec<Param>) {
        let mut text = String::new();
        let mut params = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => match dialect {
                    // The ClickHouse client reads `?` as a placeholder; `??` is a literal one.
                    Dialect::ClickHouse => text.push_str(&t.replace('?', "??")),
                    Dialect::DataFusion => text.push_str(t),
                },
                Part::Param(p) => {
                    params.push(p.clone());
                    match dialect {
                        Dialect::ClickHouse => text.push('?'),
                        Dialect::DataFusion => text.push_str(&format!("${}", params.len())),
                    }
                }
                Part::Table(name) => match dialect {
                    Dialect::ClickHouse => text.push_str(&format!("`{name}` FINAL")),
                    Dialect::DataFusion => text.push_str(&format!("\"{name}\"")),
                },
                Part::Versioned(name) => match dialect {
                    Dialect::ClickHouse => text.push_str(&format!("`{name}` FINAL")),
                    Dialect::DataFusion => text.push_str(&format!("raw.\"{name}\"")),
                },
                Part::Ident(name) => match dialect {
                    Dialect::ClickHouse => text.push_str(&format!("`{}`", name.replace('`', ""))),
                    Dialect::DataFusion => {
                        text.push_str(&format!("\"{}\"", name.replace('"', "")));
                    }
                },
            }
        }
        (text, params)
    }
}

/// How much one query may return, hold and build, and how long it may run. Going over
/// any of them is an error naming the limit, never a silently cut answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows in the answer.
    pub max_rows: usize,
    /// Bytes of the answer (as the store sends it, and as the API encodes it).
    pub max_bytes: usize,
    /// Memory the query may hold while it runs (DataFusion's memory pool of the query;
    /// ClickHouse's `max_memory_usage`).
    pub max_memory: usize,
    /// Bytes of one value a function may build (`repeat`, `lpad`, `replace`, ...).
    pub max_value_bytes: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 10_000,
            max_bytes: 16 * 1024 * 1024,
            max_memory: 512 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// About the bytes `v` takes as JSON (strings without their escapes).
pub fn json_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 3,
        Value::Array(items) => 2 + items.iter().map(json_len).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_len(v))
                .sum::<usize>()
        }
    }
}

/// The answer to an answer larger than `max` bytes.
pub fn byte_limit(max: usize) -> ApiError {
    ApiError::over_limit(
        format!("the answer is larger than {max} bytes (--sql-max-bytes)"),
        "select fewer or shorter columns, add a LIMIT, or aggregate more",
    )
}

/// A column of a result: its name and a store-independent type name (`integer`, `float`,
/// `string`, `boolean`, `array`, `binary`, or the store's own name for anything else).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A query result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// The index of column `name`; a missing column is a bug in the API's own SQL.
    pub fn col(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| ApiError::Store {
                reason: format!(
                    "the store's answer has no column `{name}` (columns: {})",
                    self.columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// Typed reads of a JSON cell, lenient about how a store spells a number.
pub mod cell {
    use serde_json::Value;

    /// An integer cell (also a float with no fraction, a numeric string).
    pub fn i64(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A float cell; `null` (and NaN from a store) is `None`.
    pub fn f64(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A string cell; other scalars are rendered.
    pub fn string(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// An array-of-strings cell.
    pub fn strings(v: &Value) -> Vec<String> {
        match v {
            Value::Array(items) => items.iter().map(string).collect(),
            _ => Vec::new(),
        }
    }
}

/// A store the API can read.
#[async_trait]
pub trait ReadStore: Send + Sync + Debug {
    /// The SQL the store speaks (for `POST /v1/sql`, which runs the caller's text).
    fn dialect(&self) -> Dialect;

    /// Where the store is, for logs and `/readyz`.
    fn describe(&self) -> String;

    /// Runs SQL the API built.
    async fn query(&self, sql: &Sql, limits: Limits) -> Result<Table>;

    /// Runs a caller's SELECT that [`crate::sql`] has checked and rewritten for this store.
    async fn query_text(&self, sql: &str, limits: Limits) -> Result<Table>;

    /// Answers `Ok` when the store can be queried.
    async fn ready(&self) -> Result<()>;
}

/// Maps a store type name to the API's: `integer`, `float`, `string`, `boolean`, `array`,
/// `binary`, or the store's own name.
fn normalise_type(store_type: &str) -> String {
    let mut t = store_type.trim();
    for wrapper in ["Nullable(", "LowCardinality("] {
        while let Some(inner) = t.strip_prefix(wrapper).and_then(|r| r.strip_suffix(')')) {
            t = inner;
        }
    }
    let lower = t.to_ascii_lowercase();
    let name = if lower.starts_with("int") || lower.starts_with("uint") {
        "integer"
    } else if lower.starts_with("float") || lower.starts_with("double") {
        "float"
    } else if lower == "string"
        || lower.starts_with("fixedstring")
        || lower.starts_with("enum")
        || lower.starts_with("utf8")
        || lower.starts_with("largeutf8")
    {
        "string"
    } else if lower.starts_with("bool") {
        "boolean"
    } else if lower.starts_with("array")
        || lower.starts_with("list")
        || lower.starts_with("largelist")
    {
        "array"
    } else if lower.starts_with("binary") || lower.starts_with("largebinary") {
        "binary"
    } else {
        return t.to_owned();
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_tables_render_per_dialect() {
        let mut sql = Sql::new("SELECT id FROM ");
        sql.table("events")
            .push(" WHERE subject = ")
            .bind(Param::Text("x' OR 1=1 --".into()))
            .push(" AND time >= ")
            .bind(Param::Int(5))
            .push(" AND kind <> '?'");
        let (ch, ch_params) = sql.render(Dialect::ClickHouse);
        assert_eq!(
            ch,
            "SELECT id FROM `events` FINAL WHERE subject = ? AND time >= ? AND kind <> '??'"
        );
        let (df, df_params) = sql.render(Dialect::DataFusion);
        assert_eq!(
            df,
            "SELECT id FROM \"events\" WHERE subject = $1 AND time >= $2 AND kind <> '?'"
        );
        assert_eq!(ch_params, df_params);
        assert_eq!(ch_params[0], Param::Text("x' OR 1=1 --".into()));
    }

    #[test]
    fn types_are_named_the_same_on_both_stores() {
        for (store, api) in [
            ("Int64", "integer"),
            ("UInt8", "integer"),
            ("Nullable(Float64)", "float"),
            ("Float64", "float"),
            ("LowCardinality(String)", "string"),
            ("Utf8", "string"),
            ("Array(String)", "array"),
            ("List(Field { name: \"item\" })", "array"),
            ("Boolean", "boolean"),
            ("DateTime", "DateTime"),
        ] {
            assert_eq!(normalise_type(store), api, "{store}");
        }
    }
}
