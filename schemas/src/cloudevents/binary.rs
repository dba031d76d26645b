//! The HTTP binding's binary content mode: attributes in `ce-*` headers, the data as the
//! body, its media type in `Content-Type`.
//!
//! A binary-mode request is rewritten into the attributes of the equivalent structured
//! event (JSON format) and mapped by the structured mode's own code, so both modes give
//! the same [`Event`] and the same item errors, field names included:
//! - `ce-<name>` → attribute `<name>`, a string (header values are strings in this mode:
//!   extensions keep their text, and a `ce-value` holding a number becomes `Event.value`
//!   as the string `"12.5"` does in structured mode). Each value is first unquoted when
//!   it is one RFC 7230 quoted-string, then percent-decoded once; the bytes must be UTF-8
//!   (an overlong or broken sequence is refused).
//! - `Content-Type` → `datacontenttype`, verbatim. `ce-datacontenttype` (the binding
//!   forbids it), `ce-data` and `ce-data_base64` are item errors.
//! - The body → the data:
//!   - empty: no data;
//!   - a JSON media type (no `Content-Type`, `application/json`, `text/json`, any
//!     `+json` suffix; the JSON format's rule): the body must be JSON, and is `data`
//!     verbatim;
//!   - `text/*` with a UTF-8 body: `data` is the text, as a JSON string;
//!   - anything else (or text that is not UTF-8): `data_base64`, the body in base64, so
//!     bytes survive exactly.

use std::borrow::Cow;
use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::value::RawValue;

use super::{ItemError, Key, convert, item_err};
use crate::records::Event;

/// The prefix of the attribute headers.
pub const HEADER_PREFIX: &str = "ce-";

/// The one item of a binary-mode request.
const INDEX: usize = 0;

/// Whether a request is a binary-mode CloudEvent: it carries a `ce-specversion` header
/// and its `Content-Type` is not an event format Helios reads as a whole body (anything
/// starting `application/cloudevents`, which the binding reserves for structured and
/// batched mode, and NDJSON). Everything else, `application/json` and no content type
/// included, is the event's data.
pub fn is_binary_mode(content_type: Option<&str>, has_specversion_header: bool) -> bool {
    has_specversion_header && !content_type.is_some_and(is_event_format)
}

fn is_event_format(content_type: &str) -> bool {
    let media = media_type(content_type);
    media.starts_with("application/cloudevents")
        || media == "application/x-ndjson"
        || media == "application/ndjson"
}

/// The media type without parameters, lowercase.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Maps a binary-mode request to its event. `headers` are all of the request's headers
/// (name, raw value); those not starting with `ce-` are ignored. `content_type` is the
/// `Content-Type` header, if any.
pub fn parse_binary<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    content_type: Option<&str>,
    body: &[u8],
    received_at_us: i64,
) -> Result<Event, ItemError> {
    let mut attrs: Vec<(String, Box<RawValue>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, value) in headers {
        let Some(attr) = strip_prefix_ignore_case(name, HEADER_PREFIX) else {
            continue;
        };
        // Header names are case-insensitive; attribute names are lowercase.
        let attr = attr.to_ascii_lowercase();
        match attr.as_str() {
            "datacontenttype" => {
                return Err(item_err(
                    INDEX,
                    "datacontenttype",
                    "in binary content mode the data's media type is the Content-Type header; remove the ce-datacontenttype header",
                ));
            }
            "data" | "data_base64" => {
                return Err(item_err(
                    INDEX,
                    &attr,
                    format!(
                        "in binary content mode the data is the request body; remove the ce-{attr} header"
                    ),
                ));
            }
            _ => {}
        }
        if !seen.insert(attr.clone()) {
            return Err(item_err(
                INDEX,
                &attr,
                format!("the ce-{attr} header is sent more than once; send each attribute once"),
            ));
        }
        let text = decode_header_value(value)
            .map_err(|why| item_err(INDEX, &attr, format!("the ce-{attr} header {why}")))?;
        attrs.push((attr, json_string(&text)));
    }
    if let Some(ct) = content_type {
        attrs.push(("datacontenttype".to_owned(), json_string(ct.trim())));
    }
    let data = data(content_type, body)?;

    let mut pairs: Vec<(Key<'_>, &RawValue)> = attrs
        .iter()
        .map(|(name, value)| (Key(Cow::Borrowed(name.as_str())), &**value))
        .collect();
    match &data {
        Data::None => {}
        Data::Json(raw) => pairs.push((Key(Cow::Borrowed("data")), raw)),
        Data::Text(raw) => pairs.push((Key(Cow::Borrowed("data")), raw)),
        Data::Base64(raw) => pairs.push((Key(Cow::Borrowed("data_base64")), raw)),
    }
    convert(INDEX, &pairs, received_at_us)
}

/// The body as the structured event's `data` or `data_base64` member.
enum Data<'a> {
    None,
    Json(&'a RawValue),
    Text(Box<RawValue>),
    Base64(Box<RawValue>),
}

fn data<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<Data<'a>, ItemError> {
    if body.is_empty() {
        return Ok(Data::None);
    }
    let media = content_type.map(media_type);
    let json = media
        .as_deref()
        .is_none_or(|m| m == "application/json" || m == "text/json" || m.ends_with("+json"));
    if json {
        let described = content_type.map_or_else(
            || "no Content-Type (which means JSON)".to_owned(),
            |ct| format!("Content-Type {ct:?}"),
        );
        return serde_json::from_slice::<&RawValue>(body)
            .map(Data::Json)
            .map_err(|e| {
                item_err(
                    INDEX,
                    "data",
                    format!(
                        "the request has {described} but its body is not JSON ({e}); send the data's real media type as Content-Type"
                    ),
                )
            });
    }
    if media.as_deref().is_some_and(|m| m.starts_with("text/"))
        && let Ok(text) = std::str::from_utf8(body)
    {
        return Ok(Data::Text(json_string(text)));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    Ok(Data::Base64(json_string(&encoded)))
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> Box<RawValue> {
    let literal = serde_json::to_string(text).expect("a string always serializes to JSON");
    RawValue::from_string(literal).expect("a serialized string is valid JSON")
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Decodes one header value as the binding says: surrounding whitespace is not part of
/// it; a value that is one double-quoted string is unquoted first (older senders quoted
/// values with spaces); then one round of percent-decoding, and the bytes must be UTF-8.
/// A `%` not followed by two hex digits is kept as it is, as older senders did not
/// encode `%`. The error completes "the ce-<name> header …".
fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    let raw = raw.trim_ascii();
    let unquoted: Cow<'_, [u8]> = match raw {
        [b'"', ..] => Cow::Owned(unquote(raw)?),
        _ => Cow::Borrowed(raw),
    };
    let mut bytes = Vec::with_capacity(unquoted.len());
    let mut rest = &unquoted[..];
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%'
            && let [hi, lo, after @ ..] = tail
            && let (Some(hi), Some(lo)) = (hex_digit(*hi), hex_digit(*lo))
        {
            bytes.push(hi << 4 | lo);
            rest = after;
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 text once percent-decoded (invalid byte at {}); percent-encode the UTF-8 bytes of the value",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The content of an RFC 7230 quoted-string that spans the whole value.
fn unquote(raw: &[u8]) -> Result<Vec<u8>, String> {
    let inner = match raw {
        [b'"', inner @ .., b'"'] if raw.len() >= 2 => inner,
        _ => {
            return Err(
                "starts a double-quoted string that does not end; percent-encode the value instead"
                    .to_owned(),
            );
        }
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter();
    while let Some(&b) = it.next() {
        match b {
            b'\\' => match it.next() {
                Some(&escaped) => out.push(escaped),
                None => {
                    return Err(
                        "starts a double-quoted string that does not end (its last quote is escaped by a backslash); percent-encode the value instead"
                            .to_owned(),
                    );
                }
            },
            b'"' => {
                return Err(
                    "has an unescaped double quote inside its double-quoted string; percent-encode the value instead"
                        .to_owned(),
                );
            }
            _ => out.push(b),
        }
    }
    Ok(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
