//! Turning one line into the parts of an event, for JSON lines and regex-matched text.
//! A line that cannot be turned into an event yields the reason, for the dead letter.

use std::collections::BTreeMap;

use chrono::DateTime;
use regex::Regex;
use serde_json::Value;

use super::config::{FileTailConfig, LineFormat, TimeUnit};

/// What a line says; missing parts get defaults from the tailer.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Parsed {
    pub time: Option<i64>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub value: Option<f64>,
    pub attrs: BTreeMap<String, String>,
    pub payload: Option<String>,
}

/// A compiled line parser.
#[derive(Debug)]
pub(super) enum LineParser {
    Json {
        time: String,
        kind: String,
        subject: String,
        value: String,
        unit: TimeUnit,
    },
    Text {
        regex: Regex,
        unit: TimeUnit,
    },
}

impl LineParser {
    /// Compiles the parser; `config` must have passed `validate()`.
    pub fn new(config: &FileTailConfig) -> Result<Self, String> {
        Ok(match config.format {
            LineFormat::Json => LineParser::Json {
                time: config.time_key.clone(),
                kind: config.kind_key.clone(),
                subject: config.subject_key.clone(),
                value: config.value_key.clone(),
                unit: config.time_unit,
            },
            LineFormat::Text => {
                let pattern = config
                    .pattern
                    .as_deref()
                    .ok_or("`format = \"text\"` needs a `pattern`")?;
                LineParser::Text {
                    regex: Regex::new(pattern)
                        .map_err(|e| format!("`pattern` is not a valid regex: {e}"))?,
                    unit: config.time_unit,
                }
            }
        })
    }

    /// Parses one line (without its line break).
    pub fn parse(&self, line: &[u8]) -> Result<Parsed, String> {
        let text =
            std::str::from_utf8(line).map_err(|e| format!("the line is not UTF-8 text ({e})"))?;
        match self {
            LineParser::Json {
                time,
                kind,
                subject,
                value,
                unit,
            } => {
                let json: Value =
                    serde_json::from_str(text).map_err(|e| format!("the line is not JSON: {e}"))?;
                let Value::Object(map) = json else {
                    return Err("the line is JSON but not an object".to_string());
                };
                let mut parsed = Parsed {
                    payload: Some(text.to_string()),
                    ..Parsed::default()
                };
                for (key, v) in &map {
                    if key == time {
                        parsed.time = Some(json_time(key, v, *unit)?);
                    } else if key == kind {
                        parsed.kind = Some(json_text(key, v)?);
                    } else if key == subject {
                        parsed.subject = Some(json_text(key, v)?);
                    } else if key == value {
                        parsed.value = Some(json_number(key, v)?);
                    } else {
                        match v {
                            Value::String(s) => {
                                parsed.attrs.insert(key.clone(), s.clone());
                            }
                            Value::Number(_) | Value::Bool(_) => {
                                parsed.attrs.insert(key.clone(), v.to_string());
                            }
                            // Nested data stays in the payload only.
                            Value::Null | Value::Array(_) | Value::Object(_) => {}
                        }
                    }
                }
                Ok(parsed)
            }
            LineParser::Text { regex, unit } => {
                let caps = regex
                    .captures(text)
                    .ok_or_else(|| format!("the line does not match the pattern `{regex}`"))?;
                let mut parsed = Parsed {
                    payload: Some(serde_json::json!({ "line": text }).to_string()),
                    ..Parsed::default()
                };
                for name in regex.capture_names().flatten() {
                    let Some(m) = caps.name(name) else { continue };
                    let s = m.as_str();
                    match name {
                        "time" => parsed.time = Some(text_time(s, *unit)?),
                        "kind" => parsed.kind = Some(s.to_string()),
                        "subject" => parsed.subject = Some(s.to_string()),
                        "value" => {
                            parsed.value = Some(s.trim().parse().map_err(|_| {
                                format!("the `value` capture `{s}` is not a number")
                            })?);
                        }
                        _ => {
                            parsed.attrs.insert(name.to_string(), s.to_string());
                        }
                    }
                }
                Ok(parsed)
            }
        }
    }
}

fn json_text(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("field `{key}` must be text, found {v}")),
    }
}

fn json_number(key: &str, v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("field `{key}` is out of range: {n}")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("field `{key}` must be a number, found {v}")),
        _ => Err(format!("field `{key}` must be a number, found {v}")),
    }
}

fn json_time(key: &str, v: &Value, unit: TimeUnit) -> Result<i64, String> {
    match v {
        Value::String(s) => text_time(s, unit),
        Value::Number(n) => n
            .as_f64()
            .and_then(|n| number_time(n, unit))
            .ok_or_else(|| format!("field `{key}` is not a usable time: {n}")),
        _ => Err(format!(
            "field `{key}` must be an RFC 3339 time or a number, found {v}"
        )),
    }
}

/// RFC 3339 text, or a number in `unit`.
fn text_time(s: &str, unit: TimeUnit) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return number_time(n, unit).ok_or_else(|| format!("`{s}` is not a usable time"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}) nor a number"))
}

fn number_time(n: f64, unit: TimeUnit) -> Option<i64> {
    let micros = match unit {
        TimeUnit::S => n * 1e6,
        TimeUnit::Ms => n * 1e3,
        TimeUnit::Us => n,
    };
    (micros.is_finite() && micros.abs() < 9.0e18).then(|| micros.round() as i64)
}
