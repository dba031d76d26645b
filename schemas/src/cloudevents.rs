//! The CloudEvents 1.0 JSON mapping: HTTP bodies in structured, batch and NDJSON mode to
//! [`Event`]s, and back.
//!
//! Mapping (CloudEvents attribute → `Event`):
//! - `id` → `id`, `source` → `source`, `type` → `kind`: required non-empty strings.
//! - `specversion`: required, must be `"1.0"`; not stored.
//! - `subject` → `subject`: optional; absent means the empty string.
//! - `time` → `time`: optional RFC 3339; absent means `received_at`.
//! - `data` → `payload`: the JSON text exactly as sent (no re-serialization); `null` or
//!   absent means no payload.
//! - `data_base64` → `payload` as a JSON string literal (the base64 text in quotes), and
//!   the marker attr `data_base64` = `"true"` (an underscore name no extension can use),
//!   so [`to_cloudevent`] writes it back as `data_base64`. `data` and `data_base64`
//!   together are an item error.
//! - `datacontenttype`, `dataschema` and every extension attribute → `attrs`, as strings
//!   (numbers keep their JSON text, booleans become `true`/`false`; `null` means absent;
//!   objects and arrays are item errors). Extension names must be lowercase `a-z0-9`.
//! - The extension `value`, when a JSON number or a string holding a finite float,
//!   becomes `Event.value` and is not copied to `attrs`.
//!
//! Binary content mode (`ce-*` headers, the data as the body) is [`parse_binary`]: it
//! rewrites a request into the equivalent structured event's attributes and maps them
//! with the same code, so both modes give the same `Event` and errors (see [`binary`]).
//!
//! Speed: items are scanned once by serde_json into borrowed `(name, raw JSON)` pairs;
//! strings without escapes are never copied before they land in the `Event`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::records::Event;

pub mod binary;
pub use binary::{is_binary_mode, parse_binary};

/// Marker attr for a payload that arrived as `data_base64`.
pub const DATA_BASE64_ATTR: &str = "data_base64";

/// The whole body is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The content type is not one this module reads (HTTP 415).
    #[error(
        "content type {content_type:?} is not supported; send application/cloudevents+json, application/cloudevents-batch+json, application/json or application/x-ndjson, or a binary-mode CloudEvent (attributes in ce-* headers, ce-specversion among them)"
    )]
    UnsupportedContentType {
        /// What the request said.
        content_type: String,
    },
    /// The body is not the JSON its content type promises (HTTP 400).
    #[error("malformed {mode} body: {reason}")]
    Malformed {
        /// `structured` or `batch`.
        mode: &'static str,
        /// What was wrong, with line and column.
        reason: String,
    },
}

impl BodyError {
    /// The HTTP status the ingest should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnsupportedContentType { .. } => 415,
            Self::Malformed { .. } => 400,
        }
    }
}

/// One item of a body is unusable; the others are still processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// Position in the batch, or 0-based line number in NDJSON.
    pub index: usize,
    /// The attribute at fault, if one is.
    pub field: Option<String>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(
                f,
                "item {}: attribute {field:?}: {}",
                self.index, self.message
            ),
            None => write!(f, "item {}: {}", self.index, self.message),
        }
    }
}

impl std::error::Error for ItemError {}

/// Parses an HTTP body into events. `content_type` is the raw header value (parameters
/// like `charset` are ignored). Without a content type the body is read as structured
/// (an object) or batch (an array) by its first character.
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
    received_at_us: i64,
) -> Result<Vec<Result<Event, ItemError>>, BodyError> {
    parse_body_indexed(content_type, body, received_at_us)
        .map(|items| items.into_iter().map(|(_, item)| item).collect())
}

/// One item of a body with its index: the event, or why it is unusable.
pub type IndexedItem = (usize, Result<Event, ItemError>);

/// [`parse_body`] with each item's index (position in the batch, 0-based line number in
/// NDJSON, where blank lines are skipped), so a check made after parsing can name the item
/// the way [`ItemError::index`] does.
pub fn parse_body_indexed(
    content_type: Option<&str>,
    body: &[u8],
    received_at_us: i64,
) -> Result<Vec<IndexedItem>, BodyError> {
    let mode = match content_type {
        None => sniff(body),
        Some(ct) => {
            let media = ct.split(';').next().unwrap_or_default().trim();
            if media.eq_ignore_ascii_case("application/cloudevents+json") {
                Mode::Structured
            } else if media.eq_ignore_ascii_case("application/json") {
                sniff(body)
            } else if media.eq_ignore_ascii_case("application/cloudevents-batch+json") {
                Mode::Batch
            } else if media.eq_ignore_ascii_case("application/x-ndjson")
                || media.eq_ignore_ascii_case("application/ndjson")
            {
                Mode::NdJson
            } else {
                return Err(BodyError::UnsupportedContentType {
                    content_type: ct.to_string(),
                });
            }
        }
    };
    match mode {
        Mode::Structured => {
            let slot: Slot<'_> =
                serde_json::from_slice(body).map_err(|e| BodyError::Malformed {
                    mode: "structured",
                    reason: e.to_string(),
                })?;
            match slot {
                Slot::Object(attrs) => Ok(vec![(0, convert(0, &attrs, received_at_us))]),
                Slot::Other(kind) => Err(BodyError::Malformed {
                    mode: "structured",
                    reason: format!(
                        "expected one JSON object, got {kind}; send arrays as application/cloudevents-batch+json"
                    ),
                }),
            }
        }
        Mode::Batch => {
            let slots: Vec<Slot<'_>> =
                serde_json::from_slice(body).map_err(|e| BodyError::Malformed {
                    mode: "batch",
                    reason: e.to_string(),
                })?;
            Ok(slots
                .iter()
                .enumerate()
                .map(|(i, slot)| (i, convert_slot(i, slot, received_at_us)))
                .collect())
        }
        Mode::NdJson => Ok(body
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| match serde_json::from_slice::<Slot<'_>>(line) {
                Ok(slot) => (i, convert_slot(i, &slot, received_at_us)),
                Err(e) => (
                    i,
                    Err(ItemError {
                        index: i,
                        field: None,
                        message: format!("line is not JSON: {e}"),
                    }),
                ),
            })
            .collect()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Structured,
    Batch,
    NdJson,
}

fn sniff(body: &[u8]) -> Mode {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Mode::Batch,
        _ => Mode::Structured,
    }
}

/// A string that borrows from the input when it has no escapes.
#[derive(Debug)]
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One JSON value in a body: an object as borrowed `(name, raw value)` pairs, or the
/// kind of whatever else it was (so a batch can report it as an item error).
#[derive(Debug)]
enum Slot<'a> {
    Object(Vec<(Key<'a>, &'a RawValue)>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Slot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Slot<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CloudEvent object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot<'de>, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(10));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value = map.next_value::<&'de RawValue>()?;
                    pairs.push((key, value));
                }
                Ok(Slot::Object(pairs))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Slot::Other("an array"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Slot<'de>, E> {
                Ok(Slot::Other("a string"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Slot<'de>, E> {
                Ok(Slot::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Slot<'de>, E> {
                Ok(Slot::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Slot<'de>, E> {
                Ok(Slot::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Slot<'de>, E> {
                Ok(Slot::Other("a number"))
            }
            fn visit_unit<E>(self) -> Result<Slot<'de>, E> {
                Ok(Slot::Other("null"))
            }
        }
        d.deserialize_any(V)
    }
}

fn convert_slot(index: usize, slot: &Slot<'_>, received_at_us: i64) -> Result<Event, ItemError> {
    match slot {
        Slot::Object(attrs) => convert(index, attrs, received_at_us),
        Slot::Other(kind) => Err(ItemError {
            index,
            field: None,
            message: format!("expected a CloudEvent object, got {kind}"),
        }),
    }
}

/// A scalar attribute value, borrowed where possible.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    /// A number, as its JSON text.
    Num(&'a str),
    Bool(bool),
    Null,
}

fn scalar<'a>(raw: &'a RawValue) -> Result<Scalar<'a>, &'static str> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            if !text.contains('\\') {
                // No escapes: the content is the text between the quotes.
                Ok(Scalar::Str(Cow::Borrowed(&text[1..text.len() - 1])))
            } else {
                serde_json::from_str::<String>(text)
                    .map(|s| Scalar::Str(Cow::Owned(s)))
                    .map_err(|_| "is not a valid JSON string")
            }
        }
        Some(b't') => Ok(Scalar::Bool(true)),
        Some(b'f') => Ok(Scalar::Bool(false)),
        Some(b'n') => Ok(Scalar::Null),
        Some(b'{') | Some(b'[') => {
            Err("must be a string, number or boolean, not an object or array")
        }
        _ => Ok(Scalar::Num(text)),
    }
}

fn item_err(index: usize, field: &str, message: impl Into<String>) -> ItemError {
    ItemError {
        index,
        field: Some(field.to_string()),
        message: message.into(),
    }
}

/// A required or optional string attribute.
fn string_attr<'a>(
    index: usize,
    field: &str,
    raw: &'a RawValue,
) -> Result<Option<Cow<'a, str>>, ItemError> {
    match scalar(raw).map_err(|m| item_err(index, field, m))? {
        Scalar::Str(s) => Ok(Some(s)),
        Scalar::Null => Ok(None),
        _ => Err(item_err(
            index,
            field,
            format!("must be a string, got {}", raw.get()),
        )),
    }
}

fn valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn convert(
    index: usize,
    pairs: &[(Key<'_>, &RawValue)],
    received_at_us: i64,
) -> Result<Event, ItemError> {
    let mut specversion = None;
    let mut id = None;
    let mut source = None;
    let mut kind = None;
    let mut subject = None;
    let mut time = None;
    let mut data: Option<&RawValue> = None;
    let mut data_base64: Option<&RawValue> = None;
    let mut value = None;
    let mut attrs = BTreeMap::new();

    for (Key(name), raw) in pairs {
        let name = name.as_ref();
        match name {
            "specversion" => specversion = string_attr(index, name, raw)?,
            "id" => id = string_attr(index, name, raw)?,
            "source" => source = string_attr(index, name, raw)?,
            "type" => kind = string_attr(index, name, raw)?,
            "subject" => subject = string_attr(index, name, raw)?,
            "time" => time = string_attr(index, name, raw)?,
            "data" => data = Some(raw),
            "data_base64" => data_base64 = Some(raw),
            "datacontenttype" | "dataschema" => {
                if let Some(s) = string_attr(index, name, raw)? {
                    attrs.insert(name.to_string(), s.into_owned());
                }
            }
            _ => {
                if !valid_extension_name(name) {
                    return Err(item_err(
                        index,
                        name,
                        "extension attribute names must be lowercase letters a-z and digits 0-9 (CloudEvents naming)",
                    ));
                }
                let text = match scalar(raw).map_err(|m| item_err(index, name, m))? {
                    Scalar::Null => continue,
                    Scalar::Str(s) => s,
                    Scalar::Num(n) => Cow::Borrowed(n),
                    Scalar::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
                };
                if name == "value"
                    && let Ok(v) = text.trim().parse::<f64>()
                    && v.is_finite()
                {
                    value = Some(v);
                    continue;
                }
                attrs.insert(name.to_string(), text.into_owned());
            }
        }
    }

    let required = |v: Option<Cow<'_, str>>, field: &str| -> Result<String, ItemError> {
        match v {
            Some(s) if !s.is_empty() => Ok(s.into_owned()),
            Some(_) => Err(item_err(index, field, "must not be empty")),
            None => Err(item_err(index, field, "is required and missing")),
        }
    };
    match specversion.as_deref() {
        Some("1.0") => {}
        Some(other) => {
            return Err(item_err(
                index,
                "specversion",
                format!("must be \"1.0\", got {other:?}"),
            ));
        }
        None => return Err(item_err(index, "specversion", "is required and missing")),
    }
    let id = required(id, "id")?;
    let source = required(source, "source")?;
    let kind = required(kind, "type")?;
    let time = match time {
        None => received_at_us,
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map_err(|e| {
                item_err(
                    index,
                    "time",
                    format!("{t:?} is not an RFC 3339 timestamp ({e})"),
                )
            })?
            .timestamp_micros(),
    };
    let payload = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(item_err(
                index,
                "data_base64",
                "data and data_base64 are mutually exclusive",
            ));
        }
        (Some(d), None) if d.get() != "null" => Some(d.get().to_string()),
        (None, Some(b)) => match scalar(b) {
            Ok(Scalar::Str(_)) => {
                attrs.insert(DATA_BASE64_ATTR.to_string(), "true".to_string());
                Some(b.get().to_string())
            }
            Ok(Scalar::Null) => None,
            _ => return Err(item_err(index, "data_base64", "must be a base64 string")),
        },
        _ => None,
    };
    Ok(Event {
        id,
        source,
        kind,
        subject: subject.map(Cow::into_owned).unwrap_or_default(),
        time,
        received_at: received_at_us,
        attrs,
        value,
        payload,
    })
}

/// The CloudEvent for `event` as a JSON value. `parse_body` of it gives `event` back for
/// every event `parse_body` produces, provided the payload is compact JSON with sorted
/// object keys (a `serde_json::Value` re-serializes the payload); use
/// [`to_cloudevent_string`] to keep the payload text byte-exact.
pub fn to_cloudevent(event: &Event) -> serde_json::Value {
    use serde_json::Value;
    let mut obj = serde_json::Map::new();
    obj.insert("specversion".into(), Value::from("1.0"));
    obj.insert("id".into(), Value::from(event.id.as_str()));
    obj.insert("source".into(), Value::from(event.source.as_str()));
    obj.insert("type".into(), Value::from(event.kind.as_str()));
    if !event.subject.is_empty() {
        obj.insert("subject".into(), Value::from(event.subject.as_str()));
    }
    if let Some(t) = DateTime::from_timestamp_micros(event.time) {
        obj.insert(
            "time".into(),
            Value::from(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
    }
    let base64 = event
        .attrs
        .get(DATA_BASE64_ATTR)
        .is_some_and(|v| v == "true");
    for (k, v) in &event.attrs {
        if k != DATA_BASE64_ATTR {
            obj.insert(k.clone(), Value::from(v.as_str()));
        }
    }
    if let Some(v) = event.value.and_then(serde_json::Number::from_f64) {
        obj.insert("value".into(), Value::Number(v));
    }
    if let Some(p) = &event.payload {
        let data = serde_json::from_str::<Value>(p).unwrap_or_else(|_| Value::from(p.as_str()));
        obj.insert((if base64 { "data_base64" } else { "data" }).into(), data);
    }
    Value::Object(obj)
}

/// The CloudEvent for `event` as JSON text, payload copied verbatim (when it is JSON;
/// otherwise it is written as a JSON string).
pub fn to_cloudevent_string(event: &Event) -> String {
    use serde_json::to_string as js;
    // `to_string` of a `&str` cannot fail.
    let q = |s: &str| js(s).unwrap_or_default();
    let mut out = String::with_capacity(256);
    out.push_str("{\"specversion\":\"1.0\",\"id\":");
    out.push_str(&q(&event.id));
    out.push_str(",\"source\":");
    out.push_str(&q(&event.source));
    out.push_str(",\"type\":");
    out.push_str(&q(&event.kind));
    if !event.subject.is_empty() {
        out.push_str(",\"subject\":");
        out.push_str(&q(&event.subject));
    }
    if let Some(t) = DateTime::from_timestamp_micros(event.time) {
        out.push_str(",\"time\":");
        out.push_str(&q(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
    }
    let base64 = event
        .attrs
        .get(DATA_BASE64_ATTR)
        .is_some_and(|v| v == "true");
    for (k, v) in &event.attrs {
        if k == DATA_BASE64_ATTR {
            continue;
        }
        out.push(',');
        out.push_str(&q(k));
        out.push(':');
        out.push_str(&q(v));
    }
    if let Some(v) = event.value
        && let Ok(n) = js(&v)
    {
        out.push_str(",\"value\":");
        out.push_str(&n);
    }
    if let Some(p) = &event.payload {
        out.push_str(if base64 {
            ",\"data_base64\":"
        } else {
            ",\"data\":"
        });
        if serde_json::from_str::<&RawValue>(p).is_ok() {
            out.push_str(p.trim());
        } else {
            out.push_str(&q(p));
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const RECEIVED: i64 = 1_763_900_000_000_000;

    fn parse_one(json: &str) -> Result<Event, ItemError> {
        let mut items = parse_body(
            Some("application/cloudevents+json"),
            json.as_bytes(),
            RECEIVED,
        )
        .unwrap();
        assert_eq!(items.len(), 1);
        items.remove(0)
    }

    #[test]
    fn structured_event_maps_every_attribute() {
        let e = parse_one(
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done","subject":"helios",
               "time":"2026-11-23T10:00:00.123456+01:00","datacontenttype":"application/json",
               "branch":"main","attempt":3,"flaky":false,"gone":null,"value":"12.5",
               "data":{"b": [1, 2], "a": "x"}}"#,
        )
        .unwrap();
        assert_eq!(e.id, "x1");
        assert_eq!(e.source, "/ci");
        assert_eq!(e.kind, "build.done");
        assert_eq!(e.subject, "helios");
        assert_eq!(e.time, 1_795_424_400_123_456);
        assert_eq!(e.received_at, RECEIVED);
        assert_eq!(e.value, Some(12.5));
        assert_eq!(e.payload.as_deref(), Some(r#"{"b": [1, 2], "a": "x"}"#));
        let attrs: Vec<(&str, &str)> = e
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            vec![
                ("attempt", "3"),
                ("branch", "main"),
                ("datacontenttype", "application/json"),
                ("flaky", "false")
            ]
        );
    }

    #[test]
    fn defaults_apply_for_optional_attributes() {
        let e = parse_one(r#"{"specversion":"1.0","id":"a","source":"s","type":"t"}"#).unwrap();
        assert_eq!(
            (e.subject.as_str(), e.time, e.value, e.payload),
            ("", RECEIVED, None, None)
        );
        let e =
            parse_one(r#"{"specversion":"1.0","id":"a","source":"s","type":"t","value":"high"}"#)
                .unwrap();
        assert_eq!(
            (e.value, e.attrs.get("value").map(String::as_str)),
            (None, Some("high"))
        );
        let e = parse_one(
            r#"{"specversion":"1.0","id":"a","source":"s","type":"t","data_base64":"aGk="}"#,
        )
        .unwrap();
        assert_eq!(e.payload.as_deref(), Some("\"aGk=\""));
        assert_eq!(
            e.attrs.get(DATA_BASE64_ATTR).map(String::as_str),
            Some("true")
        );
        let e = parse_one(r#"{"specversion":"1.0","id":"a\u00e9","source":"s\"q","type":"t"}"#)
            .unwrap();
        assert_eq!((e.id.as_str(), e.source.as_str()), ("aé", "s\"q"));
    }

    #[test]
    fn bad_items_name_the_attribute() {
        let base = r#""specversion":"1.0","id":"a","source":"s","type":"t""#;
        // (extra or replaced attributes, field named, message fragment)
        let cases = [
            (
                r#"{"specversion":"1.0","source":"s","type":"t"}"#.to_string(),
                "id",
                "missing",
            ),
            (
                r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#.to_string(),
                "id",
                "empty",
            ),
            (
                r#"{"specversion":"1.0","id":7,"source":"s","type":"t"}"#.to_string(),
                "id",
                "must be a string",
            ),
            (
                r#"{"specversion":"1.0","id":"a","type":"t"}"#.to_string(),
                "source",
                "missing",
            ),
            (
                r#"{"specversion":"1.0","id":"a","source":"s"}"#.to_string(),
                "type",
                "missing",
            ),
            (
                r#"{"id":"a","source":"s","type":"t"}"#.to_string(),
                "specversion",
                "missing",
            ),
            (
                r#"{"specversion":"0.3","id":"a","source":"s","type":"t"}"#.to_string(),
                "specversion",
                "\"1.0\"",
            ),
            (
                format!(r#"{{{base},"time":"yesterday"}}"#),
                "time",
                "RFC 3339",
            ),
            (
                format!(r#"{{{base},"Branch":"main"}}"#),
                "Branch",
                "lowercase",
            ),
            (
                format!(r#"{{{base},"build_id":"1"}}"#),
                "build_id",
                "lowercase",
            ),
            (
                format!(r#"{{{base},"labels":{{"a":1}}}}"#),
                "labels",
                "not an object",
            ),
            (
                format!(r#"{{{base},"data":1,"data_base64":"AA=="}}"#),
                "data_base64",
                "mutually exclusive",
            ),
            (
                format!(r#"{{{base},"data_base64":5}}"#),
                "data_base64",
                "base64 string",
            ),
        ];
        for (json, field, fragment) in cases {
            let err = parse_one(&json).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{json}: {err}");
            assert!(err.message.contains(fragment), "{json}: {err}");
        }
    }

    #[test]
    fn body_modes_and_errors() {
        let good = r#"{"specversion":"1.0","id":"a","source":"s","type":"t"}"#;
        let batch = format!(r#"[{good}, {{"specversion":"1.0"}}, 5, {good}]"#);
        let items = parse_body(
            Some("application/cloudevents-batch+json; charset=utf-8"),
            batch.as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(items.len(), 4);
        assert!(items[0].is_ok() && items[3].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().index, 1);
        assert!(
            items[2]
                .as_ref()
                .unwrap_err()
                .message
                .contains("got a number")
        );
        // application/json and no content type accept both shapes.
        for ct in [Some("application/json"), None] {
            assert_eq!(parse_body(ct, batch.as_bytes(), 0).unwrap().len(), 4);
            assert_eq!(parse_body(ct, good.as_bytes(), 0).unwrap().len(), 1);
        }
        let nd = format!("{good}\n\nnot json\r\n{good}\r\n[1]\n");
        let items = parse_body(Some("application/x-ndjson"), nd.as_bytes(), 0).unwrap();
        let summary: Vec<Result<(), usize>> = items
            .iter()
            .map(|r| r.as_ref().map(drop).map_err(|e| e.index))
            .collect();
        assert_eq!(summary, vec![Ok(()), Err(2), Ok(()), Err(4)]);

        let cases: [(Option<&str>, &str, u16); 5] = [
            (Some("text/plain"), good, 415),
            (Some("application/cloudevents+json"), "[1]", 400),
            (Some("application/cloudevents+json"), "{\"id\":", 400),
            (Some("application/cloudevents-batch+json"), good, 400),
            (Some("application/json"), "", 400),
        ];
        for (ct, body, status) in cases {
            let err = parse_body(ct, body.as_bytes(), 0).unwrap_err();
            assert_eq!(err.http_status(), status, "{ct:?} {body:?}: {err}");
        }
    }

    fn random_token(rng: &mut StdRng, alphabet: &[u8], max: usize) -> String {
        let len = rng.random_range(1..=max);
        (0..len)
            .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
            .collect()
    }

    #[test]
    fn to_cloudevent_roundtrips_through_parse() {
        const TEXT: &[u8] = b"abcXYZ019 -_/.:\"\\\t";
        const NAME: &[u8] = b"abcdefxyz0129";
        let mut rng = StdRng::seed_from_u64(5);
        for i in 0..500 {
            let mut attrs: BTreeMap<String, String> = (0..rng.random_range(0..4))
                .map(|_| {
                    (
                        random_token(&mut rng, NAME, 8),
                        random_token(&mut rng, TEXT, 20),
                    )
                })
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "id" | "source" | "subject" | "time" | "data" | "value"
                    )
                })
                .collect();
            let payload = match rng.random_range(0..3) {
                0 => None,
                1 => Some(format!(
                    "{{\"a\":{},\"b\":[true,null]}}",
                    rng.random_range(0..100)
                )),
                _ => {
                    attrs.insert(DATA_BASE64_ATTR.to_string(), "true".to_string());
                    Some("\"aGVsbG8=\"".to_string())
                }
            };
            let e = Event {
                id: random_token(&mut rng, TEXT, 30),
                source: random_token(&mut rng, TEXT, 30),
                kind: random_token(&mut rng, TEXT, 30),
                subject: if rng.random_bool(0.3) {
                    String::new()
                } else {
                    random_token(&mut rng, TEXT, 10)
                },
                time: rng.random_range(0..4_000_000_000_000_000),
                received_at: 17,
                attrs,
                value: rng.random_bool(0.5).then(|| rng.random_range(-1e9..1e9)),
                payload,
            };
            let text = to_cloudevent_string(&e);
            let back = parse_body(None, text.as_bytes(), 17)
                .unwrap()
                .remove(0)
                .unwrap_or_else(|err| panic!("#{i} {text}: {err}"));
            assert_eq!(back, e, "#{i} {text}");
            let value = serde_json::to_vec(&to_cloudevent(&e)).unwrap();
            let back = parse_body(None, &value, 17).unwrap().remove(0).unwrap();
            assert_eq!(back, e, "#{i} via Value");
        }
    }
}
