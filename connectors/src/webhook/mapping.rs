//! JSON documents to `Event`s: the mapping rules shared by the generic webhooks and the
//! Kafka topic bridge.
//!
//! A [`MappingSpec`] names, with JSON pointers (RFC 6901) or literal defaults, where an
//! event's id, time, kind, subject, value and attrs come from; `items` splits an array
//! into one event per element. A [`Preset`] maps a known format (Prometheus
//! Alertmanager) instead. [`Mapper`] is the compiled, checked form.

use std::collections::BTreeMap;

use chrono::DateTime;
use helios_schemas::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::secret::hex;
use crate::{ConnectorError, Result};

/// Where one event field comes from.
///
/// Written as a string, it is a JSON pointer when it starts with `/` (`"/alert/id"`) and a
/// literal otherwise (`"deploy.finished"`); as a table, `{ pointer = "/status", default =
/// "unknown", required = false }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    /// A pointer (starting with `/`) or a literal.
    Short(String),
    /// The long form.
    Full(FieldTable),
}

/// The long form of a [`FieldSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTable {
    /// JSON pointer into the document (or into the item, with `items`).
    pub pointer: Option<String>,
    /// Literal used when the pointer is absent from the document (or when there is no
    /// pointer). For `value`, a number written as a string.
    pub default: Option<String>,
    /// When false, an absent field is left out (id: derived from the input; time:
    /// receive time; subject: empty; value and attrs: none) instead of refusing the
    /// input. Default true.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// Unit of numeric times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds since the epoch (may be fractional).
    #[default]
    Seconds,
    /// Milliseconds since the epoch.
    Millis,
    /// Microseconds since the epoch.
    Micros,
}

/// How JSON fields become an event. Unmapped fields: id derived from the input (so a
/// retried delivery gets the same id), time = receive time, subject empty, no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingSpec {
    /// Pointer to an array; each element becomes one event and the other pointers are
    /// read from the element. Unset: the whole document is one event.
    pub items: Option<String>,
    /// The event id (dedup key).
    pub id: Option<FieldSpec>,
    /// Event time: an RFC 3339 string, or a number in `time_unit`.
    pub time: Option<FieldSpec>,
    /// Unit of numeric times. Default `seconds`.
    pub time_unit: TimeUnit,
    /// The event kind (required: a pointer or a literal). Default: pointer `/kind`,
    /// literal `webhook` when absent.
    pub kind: Option<FieldSpec>,
    /// What the event is about (repository, service, host).
    pub subject: Option<FieldSpec>,
    /// The measure: a number or a numeric string.
    pub value: Option<FieldSpec>,
    /// Pointer to an object whose scalar members become attrs (for example `/labels`);
    /// ignored when absent from the document. Default `""`, the whole document (or item):
    /// its top-level strings, numbers and booleans become attrs, except the members the
    /// mapping reads as id, time, kind, subject or value, as a CloudEvent's extension
    /// attributes do. Nested objects and arrays stay in the payload only.
    pub attrs_from: Option<String>,
    /// Attr name -> field; these win over `attrs_from`.
    pub attrs: BTreeMap<String, FieldSpec>,
}

impl Default for MappingSpec {
    /// A CloudEvents-like document: `/id`, `/time`, `/kind`, `/subject`, `/value`, all
    /// optional except the kind (literal `webhook` when absent), and every other top-level
    /// scalar member as an attr (ADR-011).
    fn default() -> Self {
        let optional = |p: &str| {
            Some(FieldSpec::Full(FieldTable {
                pointer: Some(p.to_string()),
                default: None,
                required: false,
            }))
        };
        MappingSpec {
            items: None,
            id: optional("/id"),
            time: optional("/time"),
            time_unit: TimeUnit::Seconds,
            kind: Some(FieldSpec::Full(FieldTable {
                pointer: Some("/kind".to_string()),
                default: Some("webhook".to_string()),
                required: true,
            })),
            subject: optional("/subject"),
            value: optional("/value"),
            attrs_from: Some(String::new()),
            attrs: BTreeMap::new(),
        }
    }
}

/// Formats with a built-in mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Prometheus Alertmanager's webhook (version 4): one event per alert, kind
    /// `alert.firing` or `alert.resolved`, subject = label `job` (else `instance`),
    /// attrs = the alert's labels, id from fingerprint, start time and status.
    Alertmanager,
}

/// Why a document could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// Index of the item, with `items`.
    pub item: Option<usize>,
    /// The event field concerned (`kind`, `attrs.env`, ...).
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(i) = self.item {
            write!(f, "item {i}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A field after checking: where to read it, what to use when absent.
#[derive(Debug, Clone)]
struct Field {
    pointer: Option<String>,
    default: Option<String>,
    required: bool,
}

impl Field {
    fn compile(source: &str, name: &str, spec: &FieldSpec) -> Result<Field> {
        let field = match spec {
            FieldSpec::Short(s) if s.starts_with('/') => Field {
                pointer: Some(s.clone()),
                default: None,
                required: true,
            },
            FieldSpec::Short(s) => Field {
                pointer: None,
                default: Some(s.clone()),
                required: true,
            },
            FieldSpec::Full(t) => Field {
                pointer: t.pointer.clone(),
                default: t.default.clone(),
                required: t.required,
            },
        };
        if let Some(p) = &field.pointer {
            check_pointer(source, name, p)?;
        }
        if field.pointer.is_none() && field.default.is_none() {
            return Err(ConnectorError::config(
                source,
                format!("mapping.{name} has neither a pointer nor a default"),
            ));
        }
        Ok(field)
    }

    /// The JSON value at the pointer, or the default as a string, or `None` (absent and
    /// optional); an error when absent and required.
    fn read<'a>(
        &'a self,
        doc: &'a Value,
        name: &str,
        item: Option<usize>,
    ) -> Result<Option<Found<'a>>, MappingError> {
        if let Some(p) = &self.pointer {
            match doc.pointer(p) {
                Some(Value::Null) | None => {}
                Some(v) => return Ok(Some(Found::Json(v))),
            }
        }
        if let Some(d) = &self.default {
            return Ok(Some(Found::Literal(d)));
        }
        if self.required {
            return Err(MappingError {
                item,
                field: name.to_string(),
                message: format!(
                    "pointer {} is missing or null in the payload",
                    self.pointer.as_deref().unwrap_or_default()
                ),
            });
        }
        Ok(None)
    }
}

enum Found<'a> {
    Json(&'a Value),
    Literal(&'a str),
}

impl Found<'_> {
    fn text(&self, name: &str, item: Option<usize>) -> Result<String, MappingError> {
        match self {
            Found::Literal(s) => Ok((*s).to_string()),
            Found::Json(v) => scalar_text(v).ok_or_else(|| MappingError {
                item,
                field: name.to_string(),
                message: format!(
                    "expected a string, number or boolean, found {}",
                    type_name(v)
                ),
            }),
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_pointer(source: &str, name: &str, p: &str) -> Result<()> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(ConnectorError::config(
            source,
            format!(
                "mapping.{name} = {p:?} is not a JSON pointer; pointers start with `/` (RFC 6901), e.g. \"/alert/id\""
            ),
        ))
    }
}

/// The member a pointer names when it has one reference token (`/conclusion`, `/a~1b`).
fn top_level_member(pointer: &str) -> Option<String> {
    let token = pointer.strip_prefix('/')?;
    (!token.contains('/')).then(|| token.replace("~1", "/").replace("~0", "~"))
}

/// The compiled field mapping.
#[derive(Debug, Clone)]
struct Fields {
    items: Option<String>,
    id: Option<Field>,
    time: Option<Field>,
    time_unit: TimeUnit,
    kind: Field,
    subject: Option<Field>,
    value: Option<Field>,
    attrs_from: Option<String>,
    /// With `attrs_from` at the document root: the members already read as id, time,
    /// kind, subject or value, which are not repeated as attrs.
    mapped_members: Vec<String>,
    attrs: Vec<(String, Field)>,
}

#[derive(Debug, Clone)]
enum Rules {
    Fields(Box<Fields>),
    Alertmanager,
}

/// A checked mapping, ready to map documents of one source.
#[derive(Debug, Clone)]
pub struct Mapper {
    source: String,
    rules: Rules,
}

/// What the caller knows about the input besides the document.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The raw bytes (kept as the payload when the document is one event).
    pub raw: &'a str,
    /// Seed of derived ids: the same input must give the same seed (a hash of the body
    /// for webhooks, `topic/partition/offset` for the Kafka bridge).
    pub id_seed: &'a str,
    /// Receive time, µs.
    pub received_at: i64,
    /// Event time when none is mapped or found, µs (the receive time for webhooks, the
    /// record timestamp for the Kafka bridge).
    pub default_time: i64,
}

impl Mapper {
    /// Compiles `preset` or `mapping` (not both) for the source `source`; neither means
    /// [`MappingSpec::default`].
    pub fn new(
        source: &str,
        preset: Option<Preset>,
        mapping: Option<&MappingSpec>,
    ) -> Result<Self> {
        let rules = match (preset, mapping) {
            (Some(_), Some(_)) => {
                return Err(ConnectorError::config(
                    source,
                    "set either `preset` or `[mapping]`, not both",
                ));
            }
            (Some(Preset::Alertmanager), None) => Rules::Alertmanager,
            (None, m) => {
                let default = MappingSpec::default();
                let m = m.unwrap_or(&default);
                let opt = |name: &str, f: &Option<FieldSpec>| {
                    f.as_ref()
                        .map(|f| Field::compile(source, name, f))
                        .transpose()
                };
                if let Some(p) = &m.items {
                    check_pointer(source, "items", p)?;
                }
                if let Some(p) = &m.attrs_from {
                    check_pointer(source, "attrs_from", p)?;
                }
                let kind = opt("kind", &m.kind)?.ok_or_else(|| {
                    ConnectorError::config(
                        source,
                        "mapping.kind is required: a pointer such as \"/type\" or a literal such as \"deploy.finished\"",
                    )
                })?;
                if kind.default.is_none() && !kind.required {
                    return Err(ConnectorError::config(
                        source,
                        "mapping.kind cannot be optional without a default: every event needs a kind",
                    ));
                }
                let attrs = m
                    .attrs
                    .iter()
                    .map(|(k, f)| {
                        Ok((k.clone(), Field::compile(source, &format!("attrs.{k}"), f)?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let id = opt("id", &m.id)?;
                let time = opt("time", &m.time)?;
                let subject = opt("subject", &m.subject)?;
                let value = opt("value", &m.value)?;
                let mapped_members = if m.attrs_from.as_deref() == Some("") {
                    [
                        id.as_ref(),
                        time.as_ref(),
                        Some(&kind),
                        subject.as_ref(),
                        value.as_ref(),
                    ]
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.pointer.as_deref().and_then(top_level_member))
                    .collect()
                } else {
                    Vec::new()
                };
                Rules::Fields(Box::new(Fields {
                    items: m.items.clone(),
                    id,
                    time,
                    time_unit: m.time_unit,
                    kind,
                    subject,
                    value,
                    attrs_from: m.attrs_from.clone(),
                    mapped_members,
                    attrs,
                }))
            }
        };
        Ok(Mapper {
            source: source.to_string(),
            rules,
        })
    }

    /// Maps one document to its events (all or nothing: the first error refuses the
    /// whole input).
    pub fn map(&self, doc: &Value, input: &Input<'_>) -> Result<Vec<Event>, MappingError> {
        match &self.rules {
            Rules::Fields(f) => self.map_fields(f, doc, input),
            Rules::Alertmanager => self.map_alertmanager(doc, input),
        }
    }

    fn map_fields(
        &self,
        f: &Fields,
        doc: &Value,
        input: &Input<'_>,
    ) -> Result<Vec<Event>, MappingError> {
        let Some(items) = &f.items else {
            return Ok(vec![self.map_one(
                f,
                doc,
                None,
                input,
                input.raw.to_string(),
            )?]);
        };
        let array = match doc.pointer(items) {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(MappingError {
                    item: None,
                    field: "items".into(),
                    message: format!("pointer {items} holds {}, not an array", type_name(other)),
                });
            }
            None => {
                return Err(MappingError {
                    item: None,
                    field: "items".into(),
                    message: format!("pointer {items} is missing in the payload"),
                });
            }
        };
        array
            .iter()
            .enumerate()
            .map(|(i, item)| self.map_one(f, item, Some(i), input, item.to_string()))
            .collect()
    }

    fn map_one(
        &self,
        f: &Fields,
        doc: &Value,
        item: Option<usize>,
        input: &Input<'_>,
        payload: String,
    ) -> Result<Event, MappingError> {
        let text = |field: &Option<Field>, name: &str| -> Result<Option<String>, MappingError> {
            match field {
                Some(field) => field
                    .read(doc, name, item)?
                    .map(|v| v.text(name, item))
                    .transpose(),
                None => Ok(None),
            }
        };
        let id = match text(&f.id, "id")? {
            Some(id) => id,
            None => derived_id(input.id_seed, item),
        };
        let kind = f
            .kind
            .read(doc, "kind", item)?
            .map(|v| v.text("kind", item))
            .transpose()?
            .unwrap_or_default();
        let subject = text(&f.subject, "subject")?.unwrap_or_default();
        let time = match &f.time {
            Some(field) => match field.read(doc, "time", item)? {
                Some(v) => Some(parse_time(&v, f.time_unit, item)?),
                None => None,
            },
            None => None,
        };
        let value = match &f.value {
            Some(field) => match field.read(doc, "value", item)? {
                Some(v) => Some(parse_number(&v, item)?),
                None => None,
            },
            None => None,
        };
        let mut attrs = BTreeMap::new();
        if let Some(Value::Object(members)) = f.attrs_from.as_deref().and_then(|p| doc.pointer(p)) {
            for (k, v) in members {
                if f.mapped_members.contains(k) {
                    continue;
                }
                if let Some(s) = scalar_text(v) {
                    attrs.insert(k.clone(), s);
                }
            }
        }
        for (name, field) in &f.attrs {
            let label = format!("attrs.{name}");
            if let Some(v) = field.read(doc, &label, item)? {
                attrs.insert(name.clone(), v.text(&label, item)?);
            }
        }
        Ok(Event {
            id,
            source: self.source.clone(),
            kind,
            subject,
            time: time.unwrap_or(input.default_time),
            received_at: input.received_at,
            attrs,
            value,
            payload: Some(payload),
        })
    }

    fn map_alertmanager(&self, doc: &Value, input: &Input<'_>) -> Result<Vec<Event>, MappingError> {
        let err = |item: Option<usize>, field: &str, message: String| MappingError {
            item,
            field: field.to_string(),
            message,
        };
        let Some(Value::Array(alerts)) = doc.pointer("/alerts") else {
            return Err(err(
                None,
                "alerts",
                "pointer /alerts is missing or not an array; is this an Alertmanager webhook (version 4)?".into(),
            ));
        };
        let receiver = doc.pointer("/receiver").and_then(Value::as_str);
        alerts
            .iter()
            .enumerate()
            .map(|(i, alert)| {
                let item = Some(i);
                let str_at = |p: &str| alert.pointer(p).and_then(Value::as_str);
                let status = str_at("/status")
                    .or_else(|| doc.pointer("/status").and_then(Value::as_str))
                    .ok_or_else(|| err(item, "kind", "pointer /status is missing".into()))?;
                let starts_at = str_at("/startsAt")
                    .ok_or_else(|| err(item, "time", "pointer /startsAt is missing".into()))?;
                let labels = match alert.pointer("/labels") {
                    Some(Value::Object(l)) => l
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
                        .collect::<BTreeMap<_, _>>(),
                    _ => BTreeMap::new(),
                };
                let id = match str_at("/fingerprint") {
                    Some(fp) => format!("{fp}:{starts_at}:{status}"),
                    None => derived_id(input.id_seed, item),
                };
                // A resolved alert happened when it ended; a firing one when it started.
                let when = match (status, str_at("/endsAt")) {
                    ("resolved", Some(end)) => end,
                    _ => starts_at,
                };
                let time = parse_time(&Found::Literal(when), TimeUnit::Seconds, item)?;
                let subject = labels
                    .get("job")
                    .or_else(|| labels.get("instance"))
                    .cloned()
                    .unwrap_or_default();
                let mut attrs = labels;
                if let Some(r) = receiver {
                    attrs
                        .entry("receiver".to_string())
                        .or_insert_with(|| r.to_string());
                }
                Ok(Event {
                    id,
                    source: self.source.clone(),
                    kind: format!("alert.{status}"),
                    subject,
                    time,
                    received_at: input.received_at,
                    attrs,
                    value: None,
                    payload: Some(alert.to_string()),
                })
            })
            .collect()
    }
}

fn parse_time(v: &Found<'_>, unit: TimeUnit, item: Option<usize>) -> Result<i64, MappingError> {
    let err = |message: String| MappingError {
        item,
        field: "time".into(),
        message,
    };
    let number = match v {
        Found::Json(Value::Number(n)) => n.as_f64(),
        Found::Json(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Found::Literal(s) => s.parse::<f64>().ok(),
        Found::Json(other) => {
            return Err(err(format!(
                "expected an RFC 3339 string or a number, found {}",
                type_name(other)
            )));
        }
    };
    if let Some(n) = number {
        let scale = match unit {
            TimeUnit::Seconds => 1e6,
            TimeUnit::Millis => 1e3,
            TimeUnit::Micros => 1.0,
        };
        let us = n * scale;
        if !us.is_finite() || us.abs() > 9.0e18 {
            return Err(err(format!("{n} is out of range as a time")));
        }
        return Ok(us.round() as i64);
    }
    let s = match v {
        Found::Json(Value::String(s)) => s.as_str(),
        Found::Literal(s) => s,
        Found::Json(_) => "",
    };
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_micros())
        .map_err(|e| {
            err(format!(
                "{s:?} is neither an RFC 3339 time nor a number: {e}"
            ))
        })
}

fn parse_number(v: &Found<'_>, item: Option<usize>) -> Result<f64, MappingError> {
    let parsed = match v {
        Found::Json(Value::Number(n)) => n.as_f64(),
        Found::Json(Value::String(s)) => s.trim().parse().ok(),
        Found::Literal(s) => s.trim().parse().ok(),
        Found::Json(_) => None,
    };
    parsed
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| MappingError {
            item,
            field: "value".into(),
            message: match v {
                Found::Json(v) => format!("expected a number, found {}", type_name(v)),
                Found::Literal(s) => format!("{s:?} is not a number"),
            },
        })
}

/// Id of an input without a mapped id: the seed plus the item index.
fn derived_id(seed: &str, item: Option<usize>) -> String {
    match item {
        Some(i) => format!("{seed}:{i}"),
        None => seed.to_string(),
    }
}

/// A deterministic id for a request body: SHA-256 of the source name and the body, so a
/// retried delivery gets the same id and is deduplicated downstream.
pub fn body_id(source: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0u8]);
    h.update(body);
    hex(&h.finalize()[..16])
}

#[cfg(test)]
mod props;
