//! The notifier's durable record of deliveries: one JSON line per finished delivery
//! (delivered or given up) in `<dir>/deliveries.jsonl`, fsynced before the alert's offset
//! is committed. On start the file is read back, so a state change already delivered is
//! never sent again, also after a restart or a replay of the alerts topic.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Result, SinkError};

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver refused it for good (4xx) or kept failing past the attempt limit.
    GaveUp,
}

/// One finished delivery of one alert state change to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Webhook name.
    pub webhook: String,
    /// Alert id.
    pub alert: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// How it ended.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last status or error seen.
    pub last: String,
    /// Wall-clock time it ended, ms since the epoch.
    pub at_ms: i64,
}

/// The delivery record, in memory and on disk.
#[derive(Debug)]
pub struct DeliveryLog {
    path: PathBuf,
    file: File,
    done: HashMap<(String, String, String), Delivery>,
    /// Deliveries older than this (by `at_ms`) are forgotten.
    horizon_ms: i64,
    /// Lines in the file, forgotten ones included.
    lines: usize,
    /// The oldest `at_ms` remembered (`i64::MAX` when none).
    oldest_ms: i64,
}

impl DeliveryLog {
    /// Opens (or creates) the record in `dir`, remembering deliveries that ended within
    /// `horizon` of now: a replay of the alerts topic reaches back as far as the topic
    /// keeps alerts, so older deliveries cannot be asked for again, and forgetting them
    /// keeps the record (and the memory it takes) bounded on a process that runs for
    /// months. A torn last line (a crash mid-write) is ignored; that delivery is then sent
    /// again, which receivers see as a repeat with the same `Idempotency-Key`.
    pub fn open(dir: &Path, horizon: Duration) -> Result<Self> {
        let err = |path: &Path, e: std::io::Error| SinkError::NotifyState {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let path = dir.join("deliveries.jsonl");
        let mut done = HashMap::new();
        let mut lines = 0;
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(|e| err(&path, e))?);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| err(&path, e))?;
                lines += 1;
                match serde_json::from_str::<Delivery>(&line) {
                    Ok(d) => {
                        done.insert((d.webhook.clone(), d.alert.clone(), d.state.clone()), d);
                    }
                    Err(e) => warn!(path = %path.display(), line = n + 1, error = %e,
                        "Skipping an unreadable delivery record line."),
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| err(&path, e))?;
        let mut log = DeliveryLog {
            path,
            file,
            done,
            horizon_ms: i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX),
            lines,
            oldest_ms: i64::MAX,
        };
        // Also sets `oldest_ms`.
        log.forget_before(now_ms())?;
        Ok(log)
    }

    /// The finished delivery of `state` of `alert` to `webhook`, if any.
    pub fn get(&self, webhook: &str, alert: &str, state: &str) -> Option<&Delivery> {
        self.done
            .get(&(webhook.to_owned(), alert.to_owned(), state.to_owned()))
    }

    /// Every finished delivery remembered.
    pub fn all(&self) -> impl Iterator<Item = &Delivery> {
        self.done.values()
    }

    /// Lines in the record's file (remembered deliveries and any not yet compacted away).
    pub fn file_lines(&self) -> usize {
        self.lines
    }

    /// Records a finished delivery durably (written and fsynced). Once the oldest one
    /// remembered is a quarter past the horizon, those past it are forgotten and the file
    /// is rewritten without them (so at most every quarter of the horizon).
    pub fn record(&mut self, d: Delivery) -> Result<()> {
        let mut line = serde_json::to_string(&d).map_err(|e| self.error(e))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.error(e))?;
        self.lines += 1;
        let now = d.at_ms;
        self.oldest_ms = self.oldest_ms.min(d.at_ms);
        self.done
            .insert((d.webhook.clone(), d.alert.clone(), d.state.clone()), d);
        let slack = self.horizon_ms / 4;
        if now.saturating_sub(self.oldest_ms) > self.horizon_ms.saturating_add(slack) {
            self.forget_before(now)?;
        }
        Ok(())
    }

    /// Forgets deliveries that ended more than the horizon before `now`, and rewrites the
    /// file when it holds lines the record no longer has (a new file, fsynced, renamed
    /// over the old one, so a crash leaves one or the other whole).
    fn forget_before(&mut self, now: i64) -> Result<()> {
        let cutoff = now.saturating_sub(self.horizon_ms);
        self.done.retain(|_, d| d.at_ms >= cutoff);
        self.oldest_ms = self
            .done
            .values()
            .map(|d| d.at_ms)
            .min()
            .unwrap_or(i64::MAX);
        if self.lines == self.done.len() {
            return Ok(());
        }
        let fresh = self.path.with_extension("jsonl.new");
        let mut text = String::new();
        let mut kept: Vec<&Delivery> = self.done.values().collect();
        kept.sort_by_key(|d| d.at_ms);
        for d in kept {
            text.push_str(&serde_json::to_string(d).map_err(|e| self.error(e))?);
            text.push('\n');
        }
        let written = File::create(&fresh)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&fresh, &self.path))
            .and_then(|()| match self.path.parent() {
                Some(dir) => File::open(dir).and_then(|d| d.sync_all()),
                None => Ok(()),
            });
        written.map_err(|e| self.error(e))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        self.lines = self.done.len();
        Ok(())
    }

    fn error(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::NotifyState {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Delivery, DeliveryLog, DeliveryStatus, now_ms};

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn delivery(alert: &str, at_ms: i64) -> Delivery {
        Delivery {
            webhook: "ops".into(),
            alert: alert.into(),
            state: "firing".into(),
            status: DeliveryStatus::Delivered,
            attempts: 1,
            last: "200 OK".into(),
            at_ms,
        }
    }

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 86_400)
    }

    #[test]
    fn deliveries_past_the_horizon_are_forgotten_when_the_record_opens() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        {
            let mut log = DeliveryLog::open(dir.path(), days(365)).unwrap();
            for i in 0..100 {
                log.record(delivery(&format!("old-{i}"), now - 40 * DAY))
                    .unwrap();
            }
            for i in 0..5 {
                log.record(delivery(&format!("new-{i}"), now - DAY))
                    .unwrap();
            }
            assert_eq!(log.file_lines(), 105);
        }
        let log = DeliveryLog::open(dir.path(), days(30)).unwrap();
        assert_eq!(log.all().count(), 5);
        assert!(log.get("ops", "new-0", "firing").is_some());
        assert!(log.get("ops", "old-0", "firing").is_none());
        let text = std::fs::read_to_string(dir.path().join("deliveries.jsonl")).unwrap();
        assert_eq!(
            text.lines().count(),
            5,
            "the file is rewritten without them"
        );
        assert_eq!(log.file_lines(), 5);
    }

    #[test]
    fn a_long_run_keeps_the_record_within_a_quarter_past_its_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeliveryLog::open(dir.path(), days(4)).unwrap();
        // One delivery an hour for 20 days.
        let start = now_ms() - 20 * DAY;
        let mut most_lines = 0;
        let mut last = start;
        for h in 0..20 * 24 {
            last = start + h * HOUR;
            log.record(delivery(&format!("a{h}"), last)).unwrap();
            most_lines = most_lines.max(log.file_lines());
        }
        assert!(
            log.all().all(|d| d.at_ms >= last - 5 * DAY),
            "nothing older than the horizon and its quarter is kept"
        );
        assert!(
            log.get("ops", &format!("a{}", 20 * 24 - 1), "firing")
                .is_some()
        );
        assert!(most_lines <= 5 * 24 + 1, "the file held {most_lines} lines");
        assert!(
            most_lines >= 4 * 24,
            "it kept the horizon: {most_lines} lines"
        );
        // What it kept survives a restart.
        let kept = log.all().count();
        drop(log);
        let log = DeliveryLog::open(dir.path(), days(30)).unwrap();
        assert_eq!(log.all().count(), kept);
    }
}
