//! The notifier's durable record of deliveries: one JSON line per finished delivery
//! (delivered or given up) in `<dir>/deliveries.jsonl`, fsynced before the alert's offset
//! is committed. On start the file is read back, so a state change already delivered is
//! never sent again, also after a restart or a replay of the alerts topic.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

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
}

impl DeliveryLog {
    /// Opens (or creates) the record in `dir`. A torn last line (a crash mid-write) is
    /// ignored; that delivery is then sent again, which receivers see as a repeat with the
    /// same `Idempotency-Key`.
    pub fn open(dir: &Path) -> Result<Self> {
        let err = |path: &Path, e: std::io::Error| SinkError::NotifyState {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let path = dir.join("deliveries.jsonl");
        let mut done = HashMap::new();
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(|e| err(&path, e))?);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| err(&path, e))?;
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
        Ok(DeliveryLog { path, file, done })
    }

    /// The finished delivery of `state` of `alert` to `webhook`, if any.
    pub fn get(&self, webhook: &str, alert: &str, state: &str) -> Option<&Delivery> {
        self.done
            .get(&(webhook.to_owned(), alert.to_owned(), state.to_owned()))
    }

    /// Every finished delivery.
    pub fn all(&self) -> impl Iterator<Item = &Delivery> {
        self.done.values()
    }

    /// Records a finished delivery durably (written and fsynced).
    pub fn record(&mut self, d: Delivery) -> Result<()> {
        let mut line = serde_json::to_string(&d).map_err(|e| SinkError::NotifyState {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| SinkError::NotifyState {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })?;
        self.done
            .insert((d.webhook.clone(), d.alert.clone(), d.state.clone()), d);
        Ok(())
    }
}
