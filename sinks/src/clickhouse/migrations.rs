//! The ClickHouse schema: numbered migrations for the fixed tables, and the tables and
//! columns the spec's aggregates need.
//!
//! Applied versions are recorded in `schema_migrations` (version, name, checksum of the
//! SQL, time). [`migrate`] is idempotent: statements use `IF NOT EXISTS`, applied versions
//! are skipped, and a database at a version newer than this build knows is refused.
//! Spec-driven changes (a new `agg_<name>` table, a new group key or measure column) are
//! derived by comparing the spec with `system.columns` and recorded with version 0. Columns
//! are never dropped: a measure removed from the spec keeps its data.
//!
//! Every table is a `ReplacingMergeTree` partitioned by month of its time column, keyed so
//! that one record is one row after merges; reads use `FINAL` ([`super::query`]). Derived
//! records are keyed by their deterministic id; `events` by `(source, id)`, the event's
//! identity in CloudEvents (migration 3), so a replayed or retried event collapses into
//! the original and one source cannot hide another's events by reusing an id. Rows merge
//! only within a month partition: a retry whose time moved to another month stays twice.

use clickhouse::Row;
use serde::Deserialize;
use tracing::info;

use super::ClickHouse;
use crate::error::{Result, SinkError};
use crate::spec::{AggregateSpec, StoreSpec};

/// One numbered schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, from 1, without gaps.
    pub version: u32,
    /// Short name.
    pub name: &'static str,
    /// Statements, run in order.
    pub statements: &'static [&'static str],
}

/// The migrations this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        statements: &["CREATE TABLE IF NOT EXISTS events (
    id String,
    source LowCardinality(String),
    kind LowCardinality(String),
    subject String,
    time Int64,
    received_at Int64,
    attr_keys Array(String),
    attr_values Array(String),
    value Nullable(Float64),
    payload Nullable(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(time, 1000000)))
ORDER BY (source, kind, subject, time, id)"],
    },
    Migration {
        version: 2,
        name: "alerts, insights, dead_letters",
        statements: &[
            "CREATE TABLE IF NOT EXISTS alerts (
    id String,
    rule LowCardinality(String),
    group_keys Array(String),
    group_values Array(String),
    state LowCardinality(String),
    since Int64,
    at Int64,
    severity LowCardinality(String),
    summary String,
    evidence Array(String),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(since, 1000000)))
ORDER BY (rule, id)",
            "CREATE TABLE IF NOT EXISTS insights (
    id String,
    kind LowCardinality(String),
    aggregate LowCardinality(String),
    group_keys Array(String),
    group_values Array(String),
    measure String,
    window_start Int64,
    window_end Int64,
    value Float64,
    score Float64,
    summary String,
    at Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(window_start, 1000000)))
ORDER BY (aggregate, window_start, id)",
            "CREATE TABLE IF NOT EXISTS dead_letters (
    id String,
    stage LowCardinality(String),
    reason String,
    original String,
    topic Nullable(String),
    partition Nullable(Int32),
    offset Nullable(Int64),
    at Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(at, 1000000)))
ORDER BY (stage, id)",
        ],
    },
    // An event is identified by (source, id), as CloudEvents defines: the sorting key,
    // which is what ReplacingMergeTree and FINAL collapse by, is exactly that, so a
    // delivery repeated with a different time (a retry of an event without `time`) is
    // one row and two sources reusing an id are two. A sorting key cannot drop columns,
    // so the table is rebuilt: copied, then swapped in. The old table stays as
    // `events_v1` for the operator to check and drop.
    Migration {
        version: 3,
        name: "events keyed by (source, id)",
        statements: &[
            "CREATE TABLE IF NOT EXISTS events_by_source_id (
    id String,
    source LowCardinality(String),
    kind LowCardinality(String),
    subject String,
    time Int64,
    received_at Int64,
    attr_keys Array(String),
    attr_values Array(String),
    value Nullable(Float64),
    payload Nullable(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(time, 1000000)))
ORDER BY (source, id)",
            "INSERT INTO events_by_source_id (id, source, kind, subject, time, received_at, attr_keys, attr_values, value, payload)
SELECT id, source, kind, subject, time, received_at, attr_keys, attr_values, value, payload FROM events",
            "RENAME TABLE events TO events_v1, events_by_source_id TO events",
        ],
    },
    // Events too late for a window or behind a rule's watermark (ADR-015): the columns of
    // `events`, then what they were late for. One row per late record: `late_id` (which
    // starts with the aggregate) is what a replay collapses by.
    Migration {
        version: 4,
        name: "late_events",
        statements: &["CREATE TABLE IF NOT EXISTS late_events (
    id String,
    source LowCardinality(String),
    kind LowCardinality(String),
    subject String,
    time Int64,
    received_at Int64,
    attr_keys Array(String),
    attr_values Array(String),
    value Nullable(Float64),
    payload Nullable(String),
    aggregate LowCardinality(String),
    window_start Nullable(Int64),
    window_end Nullable(Int64),
    late_by Nullable(Int64),
    late_id String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(time, 1000000)))
ORDER BY (aggregate, late_id)"],
    },
];

/// The newest version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime
) ENGINE = MergeTree()
ORDER BY version";

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Numbered migrations applied by this call (version, name).
    pub applied: Vec<(u32, String)>,
    /// Spec-driven changes made by this call, e.g. `create agg_ci_runs`.
    pub spec_changes: Vec<String>,
    /// Schema version after the call.
    pub version: u32,
}

impl MigrationReport {
    /// True when nothing had to change.
    pub fn is_noop(&self) -> bool {
        self.applied.is_empty() && self.spec_changes.is_empty()
    }
}

#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksum: String,
}

/// Brings the database to this build's schema and to `spec`: creates the database and
/// `schema_migrations`, applies missing migrations in order, then the spec's aggregate
/// tables and columns.
pub async fn migrate(ch: &ClickHouse, spec: &StoreSpec) -> Result<MigrationReport> {
    migrate_to(ch, spec, latest_version()).await
}

/// [`migrate`], applying the numbered migrations only up to `target` (tests of a
/// migration start from the schema before it).
pub async fn migrate_to(ch: &ClickHouse, spec: &StoreSpec, target: u32) -> Result<MigrationReport> {
    spec.validate()?;
    ch.ensure_database().await?;
    let settings = ddl_settings(ch.server_version().await?);
    ch.execute("creating schema_migrations", CREATE_SCHEMA_MIGRATIONS)
        .await?;
    let applied: Vec<Applied> = ch
        .client()
        .query("SELECT version, any(name), any(checksum) FROM schema_migrations WHERE version > 0 GROUP BY version ORDER BY version")
        .fetch_all()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "reading schema_migrations", e))?;
    let known = latest_version();
    if let Some(newest) = applied.iter().map(|a| a.version).max()
        && newest > known
    {
        return Err(SinkError::SchemaTooNew {
            database: ch.database().to_owned(),
            found: newest,
            known,
        });
    }
    let mut report = MigrationReport::default();
    for m in MIGRATIONS.iter().filter(|m| m.version <= target) {
        let checksum = checksum(m.statements);
        if let Some(done) = applied.iter().find(|a| a.version == m.version) {
            if done.checksum != checksum {
                return Err(SinkError::MigrationChanged {
                    database: ch.database().to_owned(),
                    version: m.version,
                    name: done.name.clone(),
                    recorded: done.checksum.clone(),
                    current: checksum,
                });
            }
            continue;
        }
        for sql in m.statements {
            ch.execute_with(
                &format!("applying migration {} ({})", m.version, m.name),
                sql,
                settings,
            )
            .await?;
        }
        record(ch, m.version, m.name, &checksum).await?;
        info!(
            database = ch.database(),
            version = m.version,
            name = m.name,
            "Applied migration."
        );
        report.applied.push((m.version, m.name.to_owned()));
    }
    report.version = known.min(target);
    for agg in &spec.aggregates {
        ensure_aggregate(ch, agg, settings, &mut report.spec_changes).await?;
    }
    Ok(report)
}

/// The settings the schema statements need on a server of `version` (major, minor).
///
/// Before ClickHouse 19, `LowCardinality` columns are experimental: creating a table with
/// one needs `allow_experimental_low_cardinality_type = 1`. Current servers no longer know
/// that setting and refuse any request that carries it (`Unknown setting`), so it is sent
/// with the schema statements of old servers only, not with every request.
pub fn ddl_settings(version: (u32, u32)) -> &'static [(&'static str, &'static str)] {
    if version.0 < 20 {
        &[("allow_experimental_low_cardinality_type", "1")]
    } else {
        &[]
    }
}

/// The `CREATE TABLE` of an aggregate's table.
pub fn aggregate_table_sql(agg: &AggregateSpec) -> String {
    let mut cols = vec![
        "id String".to_owned(),
        "window_start Int64".to_owned(),
        "window_end Int64".to_owned(),
    ];
    cols.extend(agg.group_by.iter().map(|k| format!("`{k}` String")));
    cols.extend(
        agg.measures
            .iter()
            .map(|m| format!("`{m}` Nullable(Float64)")),
    );
    cols.extend([
        "`count` Int64".to_owned(),
        "`version` UInt32".to_owned(),
        "`final` UInt8".to_owned(),
    ]);
    format!(
        "CREATE TABLE IF NOT EXISTS `{}` (\n    {}\n) ENGINE = ReplacingMergeTree(version)\n\
         PARTITION BY toYYYYMM(toDateTime(intDiv(window_start, 1000000)))\n\
         ORDER BY (window_start, id)",
        agg.table(),
        cols.join(",\n    ")
    )
}

async fn ensure_aggregate(
    ch: &ClickHouse,
    agg: &AggregateSpec,
    settings: &[(&str, &str)],
    changes: &mut Vec<String>,
) -> Result<()> {
    let table = agg.table();
    let existing = table_columns(ch, &table).await?;
    if existing.is_empty() {
        ch.execute_with(
            &format!("creating {table}"),
            &aggregate_table_sql(agg),
            settings,
        )
        .await?;
        let change = format!("create {table}");
        record(ch, 0, &change, "").await?;
        info!(database = ch.database(), table, "Created aggregate table.");
        changes.push(change);
        return Ok(());
    }
    let wanted = agg
        .group_by
        .iter()
        .map(|k| (k, "String DEFAULT ''"))
        .chain(agg.measures.iter().map(|m| (m, "Nullable(Float64)")));
    for (col, ty) in wanted {
        if existing.iter().any(|c| c == col) {
            continue;
        }
        ch.execute(
            &format!("adding column {col} to {table}"),
            &format!("ALTER TABLE `{table}` ADD COLUMN `{col}` {ty}"),
        )
        .await?;
        let change = format!("add column {table}.{col}");
        record(ch, 0, &change, "").await?;
        info!(database = ch.database(), table, column = %col, "Added aggregate column.");
        changes.push(change);
    }
    Ok(())
}

/// Column names of `table` in the Helios database; empty when the table does not exist.
pub async fn table_columns(ch: &ClickHouse, table: &str) -> Result<Vec<String>> {
    ch.client()
        .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
        .bind(ch.database())
        .bind(table)
        .fetch_all::<String>()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), format!("reading the columns of {table}"), e))
}

async fn record(ch: &ClickHouse, version: u32, name: &str, checksum: &str) -> Result<()> {
    ch.client()
        .query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now())")
        .bind(version)
        .bind(name)
        .bind(checksum)
        .execute()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), "recording a migration", e))
}

/// FNV-1a 64 over the statements, hex: detects a migration edited after release.
fn checksum(statements: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in statements {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn only_old_servers_get_the_low_cardinality_setting() {
        assert_eq!(
            ddl_settings((18, 16)),
            &[("allow_experimental_low_cardinality_type", "1")]
        );
        assert_eq!(ddl_settings((19, 3)).len(), 1);
        assert!(ddl_settings((20, 5)).is_empty());
        assert!(ddl_settings((26, 9)).is_empty());
    }

    #[test]
    fn checksums_differ_with_sql() {
        assert_ne!(checksum(&["a", "b"]), checksum(&["ab"]));
        assert_eq!(checksum(&["x"]), checksum(&["x"]));
    }
}

/// The least-privilege user the read API connects as, and the limits of its profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadUser {
    /// User name (letters, digits and `_`); its settings profile has the same name.
    pub name: String,
    /// Its password; without one the user is not created, only described.
    pub password: Option<String>,
    /// `max_memory_usage`, bytes.
    pub max_memory: u64,
    /// `max_execution_time`, seconds.
    pub max_execution_secs: u64,
    /// `max_result_rows` (the insights routes read up to 1 000 000 rows).
    pub max_result_rows: u64,
    /// `max_result_bytes`.
    pub max_result_bytes: u64,
}

impl ReadUser {
    /// `name` with the read API's default limits.
    pub fn new(name: impl Into<String>, password: Option<String>) -> Self {
        ReadUser {
            name: name.into(),
            password,
            max_memory: 512 * 1024 * 1024,
            max_execution_secs: 10,
            max_result_rows: 1_000_000,
            max_result_bytes: 1024 * 1024 * 1024,
        }
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("readonly", "1".to_owned()),
            ("allow_ddl", "0".to_owned()),
            ("max_memory_usage", self.max_memory.to_string()),
            ("max_execution_time", self.max_execution_secs.to_string()),
            ("max_result_rows", self.max_result_rows.to_string()),
            ("max_result_bytes", self.max_result_bytes.to_string()),
            ("result_overflow_mode", "'throw'".to_owned()),
            ("output_format_json_quote_64bit_integers", "0".to_owned()),
            ("output_format_json_quote_denormals", "0".to_owned()),
        ]
    }

    /// What an operator adds to `users.xml` on a server without SQL user management
    /// (ClickHouse before 20.5): a profile and a user of the same name, limited to
    /// `database`. ClickHouse of that age lets every user read the `system` database.
    pub fn users_xml(&self, database: &str) -> String {
        let profile: String = self
            .settings()
            .into_iter()
            .map(|(k, v)| format!("            <{k}>{}</{k}>\n", v.trim_matches('\'')))
            .collect();
        let name = &self.name;
        format!(
            "<!-- in users.xml (or a file in users.d/), inside <yandex> -->\n\
             <profiles>\n        <{name}>\n{profile}        </{name}>\n</profiles>\n\
             <users>\n        <{name}>\n\
             \x20           <password_sha256_hex><!-- echo -n 'PASSWORD' | sha256sum --></password_sha256_hex>\n\
             \x20           <networks><ip>::/0</ip></networks>\n\
             \x20           <profile>{name}</profile>\n\
             \x20           <quota>default</quota>\n\
             \x20           <allow_databases><database>{database}</database></allow_databases>\n\
             \x20       </{name}>\n</users>\n"
        )
    }
}

/// What [`ensure_read_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadUserOutcome {
    /// The profile and user exist (created now or before), with SELECT on the database.
    Created,
    /// The server cannot create users over SQL (or the password is missing): the operator
    /// must add this `users.xml` snippet.
    Manual { why: String, users_xml: String },
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Creates the read API's user on servers with SQL user management (ClickHouse 20.5+):
/// a settings profile with its limits, the user with that profile, and `SELECT` on the
/// Helios database only. Elsewhere, says what to add to `users.xml`.
pub async fn ensure_read_user(ch: &ClickHouse, user: &ReadUser) -> Result<ReadUserOutcome> {
    if user.name.is_empty()
        || !user
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(SinkError::Config {
            what: "the read user's name must be letters, digits and _".to_owned(),
            value: user.name.clone(),
            hint: "pick a plain name such as helios_reader",
        });
    }
    let manual = |why: String| ReadUserOutcome::Manual {
        why,
        users_xml: user.users_xml(ch.database()),
    };
    let (major, minor) = ch.server_version().await?;
    if (major, minor) < (20, 5) {
        return Ok(manual(format!(
            "ClickHouse {major}.{minor} has no SQL user management"
        )));
    }
    let Some(password) = &user.password else {
        return Ok(manual(
            "no password for the read user was given (HELIOS_CLICKHOUSE_READ_PASSWORD)".to_owned(),
        ));
    };
    let settings = user
        .settings()
        .into_iter()
        .map(|(k, v)| format!("{k} = {v} READONLY"))
        .collect::<Vec<_>>()
        .join(", ");
    let name = &user.name;
    let statements = [
        format!("CREATE SETTINGS PROFILE OR REPLACE `{name}` SETTINGS {settings}"),
        format!(
            "CREATE USER OR REPLACE `{name}` IDENTIFIED WITH sha256_password BY {} SETTINGS PROFILE `{name}`",
            sql_string(password)
        ),
        format!("GRANT SELECT ON `{}`.* TO `{name}`", ch.database()),
    ];
    for sql in &statements {
        if let Err(e) = ch.execute("creating the read API's user", sql).await {
            return Ok(manual(format!(
                "creating it over SQL failed ({e}); is access_management on for this user?"
            )));
        }
    }
    info!(user = %name, database = %ch.database(), "read API user created");
    Ok(ReadUserOutcome::Created)
}
