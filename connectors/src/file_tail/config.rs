//! Settings of the file tail source.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[[source]] type = "file"` in the spec: lines appended to files become events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTailConfig {
    /// Name of the source in `/v1/sources` and the `source` of its events. Default `file`.
    pub name: String,
    /// Glob patterns of the files to tail, such as `/var/log/app/*.log`. At least one.
    pub paths: Vec<String>,
    /// How a line is read: `json` (one JSON object per line, fields mapped by the `*_key`
    /// settings) or `text` (matched by the regex in `pattern`). Default `json`.
    pub format: LineFormat,
    /// For `format = "text"`: a regex with named captures. The captures `time`, `kind`,
    /// `subject` and `value` fill those fields; every other named capture becomes an attr.
    /// A line that does not match goes to the dead-letter topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For JSON lines: the field with the event time (RFC 3339 text, or a number in
    /// `time_unit`). Default `time`; lines without it get the time they were read.
    pub time_key: String,
    /// For JSON lines: the field with the event kind. Default `kind`.
    pub kind_key: String,
    /// For JSON lines: the field with the subject. Default `subject`.
    pub subject_key: String,
    /// For JSON lines: the field with the numeric value. Default `value`.
    pub value_key: String,
    /// Kind of events whose line names none. Default `log.line`.
    pub default_kind: String,
    /// Subject of events whose line names none. Default: the path of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_subject: Option<String>,
    /// Unit of numeric times: `s`, `ms` or `us`. Default `s`.
    pub time_unit: TimeUnit,
    /// Where to start in the files found at the very first start (no checkpoint yet):
    /// `beginning` or `end`. Files appearing later are always read from their start.
    /// Default `beginning`.
    pub start_at: StartAt,
    /// How often the globs are expanded and the files checked for new lines. Default `500ms`.
    #[serde(with = "crate::duration")]
    pub poll_interval: Duration,
    /// How long a file that was renamed away (rotated) or deleted keeps being read, since
    /// its writer may still append to it before reopening. Default `5s`.
    #[serde(with = "crate::duration")]
    pub rotate_wait: Duration,
    /// Longest line in bytes; a longer line is cut there and the pieces go to the
    /// dead-letter topic. Default 1 MiB.
    pub max_line_bytes: usize,
    /// Refuse events dated more than this after Helios received them (they go to the
    /// dead-letter topic with the reason; `POST /v1/events` rejects the item instead), so
    /// one event from the far future cannot move the watermark. Default: the process's
    /// `--max-future` (`HELIOS_MAX_FUTURE`, 15m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_future: Option<std::time::Duration>,
}

/// How lines are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// One JSON object per line.
    Json,
    /// Plain text matched by a regex with named captures.
    Text,
}

/// Unit of numeric event times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds since the epoch (fractions allowed).
    S,
    /// Milliseconds since the epoch.
    Ms,
    /// Microseconds since the epoch.
    Us,
}

/// Where reading starts in files found at the first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read what the files already hold.
    Beginning,
    /// Only lines appended from now on.
    End,
}

impl Default for FileTailConfig {
    fn default() -> Self {
        FileTailConfig {
            name: "file".to_string(),
            paths: Vec::new(),
            format: LineFormat::Json,
            pattern: None,
            time_key: "time".to_string(),
            kind_key: "kind".to_string(),
            subject_key: "subject".to_string(),
            value_key: "value".to_string(),
            default_kind: "log.line".to_string(),
            default_subject: None,
            time_unit: TimeUnit::S,
            start_at: StartAt::Beginning,
            poll_interval: Duration::from_millis(500),
            rotate_wait: Duration::from_secs(5),
            max_line_bytes: 1 << 20,
            max_future: None,
        }
    }
}

impl FileTailConfig {
    /// Checks the settings without touching any file; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.paths.is_empty() {
            return Err("`paths` needs at least one glob, such as `/var/log/app/*.log`".into());
        }
        for p in &self.paths {
            glob::Pattern::new(p)
                .map_err(|e| format!("`paths` entry `{p}` is not a valid glob: {e}"))?;
        }
        match (self.format, &self.pattern) {
            (LineFormat::Text, None) => {
                return Err(
                    "`format = \"text\"` needs a `pattern`: a regex with named captures".into(),
                );
            }
            (LineFormat::Text, Some(p)) => {
                regex::Regex::new(p).map_err(|e| format!("`pattern` is not a valid regex: {e}"))?;
            }
            (LineFormat::Json, Some(_)) => {
                return Err(
                    "`pattern` is only used with `format = \"text\"`; remove it or set the format"
                        .into(),
                );
            }
            (LineFormat::Json, None) => {}
        }
        if self.poll_interval.is_zero() {
            return Err("`poll_interval` must be positive, such as `500ms`".into());
        }
        if self.max_line_bytes == 0 {
            return Err("`max_line_bytes` must be positive".into());
        }
        Ok(())
    }
}
