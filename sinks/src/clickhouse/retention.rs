//! Retention per table ([`crate::spec::Retention`]).
//!
//! ClickHouse 19.6 and newer enforce it themselves: [`apply`] sets a table `TTL` on the
//! row's time column. Older servers (18.16, the Debian version) have no `TTL`; there
//! [`apply`] drops the monthly partitions that lie wholly before the cut-off, so data leaves
//! at most a month later than asked. The sink calls [`apply`] at start and periodically.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::info;

use super::ClickHouse;
use crate::error::{Result, SinkError};
use crate::spec::StoreSpec;

/// Tables with retention and the column their age is measured by (µs since the epoch).
pub fn retained_tables(spec: &StoreSpec) -> Vec<(String, &'static str, Option<Duration>)> {
    let r = &spec.retention;
    let mut out = vec![
        ("events".to_owned(), "time", r.events),
        ("alerts".to_owned(), "since", r.alerts),
        ("insights".to_owned(), "window_start", r.insights),
        ("dead_letters".to_owned(), "at", r.dead_letters),
        // Late events are events: they age with them, by event time.
        ("late_events".to_owned(), "time", r.events),
    ];
    out.extend(
        spec.aggregates
            .iter()
            .map(|a| (a.table(), "window_start", r.aggregates)),
    );
    out
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Tables whose TTL was set (servers with TTL).
    pub ttl_set: Vec<String>,
    /// Partitions dropped, as `table/partition` (servers without TTL).
    pub dropped: Vec<String>,
}

/// Enforces `spec.retention` on the server, by TTL where the server has it and by dropping
/// whole expired monthly partitions where it does not.
pub async fn apply(ch: &ClickHouse, spec: &StoreSpec) -> Result<RetentionReport> {
    let (major, minor) = ch.server_version().await?;
    let has_ttl = (major, minor) >= (19, 6);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut report = RetentionReport::default();
    for (table, column, keep) in retained_tables(spec) {
        let Some(keep) = keep else { continue };
        if has_ttl {
            let sql = format!(
                "ALTER TABLE `{table}` MODIFY TTL toDateTime(intDiv({column}, 1000000)) + INTERVAL {} SECOND",
                keep.as_secs()
            );
            ch.execute(&format!("setting the TTL of {table}"), &sql)
                .await?;
            report.ttl_set.push(table);
            continue;
        }
        let cutoff = now.saturating_sub(keep).as_secs() as i64;
        let partitions: Vec<String> = ch
            .client()
            .query("SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active")
            .bind(ch.database())
            .bind(&table)
            .fetch_all()
            .await
            .map_err(|e| SinkError::clickhouse(ch.url(), format!("listing the partitions of {table}"), e))?;
        for p in partitions {
            let Some(end) = month_partition_end(&p) else {
                continue;
            };
            if end > cutoff {
                continue;
            }
            ch.execute(
                &format!("dropping expired partition {p} of {table}"),
                &format!("ALTER TABLE `{table}` DROP PARTITION {p}"),
            )
            .await?;
            info!(database = ch.database(), table, partition = %p, "Dropped expired partition.");
            report.dropped.push(format!("{table}/{p}"));
        }
    }
    Ok(report)
}

/// For a `toYYYYMM` partition id, the first second after the month (UTC), in seconds since
/// the epoch.
fn month_partition_end(p: &str) -> Option<i64> {
    if p.len() != 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = p.parse().ok()?;
    let (mut y, mut m) = (n / 100, n % 100);
    if !(1..=12).contains(&m) {
        return None;
    }
    m += 1;
    if m == 13 {
        m = 1;
        y += 1;
    }
    Some(days_from_civil(y, m, 1) * 86_400)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ends() {
        assert_eq!(month_partition_end("197001"), Some(31 * 86_400));
        assert_eq!(month_partition_end("202312"), Some(1_704_067_200)); // 2024-01-01
        assert_eq!(month_partition_end("202402"), Some(1_709_251_200)); // 2024-03-01
        assert_eq!(month_partition_end("202413"), None);
        assert_eq!(month_partition_end("tuple()"), None);
    }
}
