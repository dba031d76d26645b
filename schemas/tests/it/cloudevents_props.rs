//! Property tests of the CloudEvents JSON decoder (`cloudevents::parse_body`): structured,
//! batch and NDJSON bodies, raw and generated, never panic, report every item, and what
//! `to_cloudevent_string` writes parses back to the same event.

use std::collections::BTreeMap;

use helios_schemas::Event;
use helios_schemas::cloudevents::{DATA_BASE64_ATTR, parse_body, to_cloudevent_string};
use proptest::prelude::*;
use serde_json::Value;

use crate::props::{check, json, mutate_text, mutations};

const RECEIVED: i64 = 1_700_000_000_000_000;

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/cloudevents+json".to_string())),
        Just(Some("application/cloudevents-batch+json".to_string())),
        Just(Some("application/x-ndjson".to_string())),
        Just(Some("application/json; charset=utf-8".to_string())),
        Just(Some("APPLICATION/NDJSON".to_string())),
        "[ -~]{0,40}".prop_map(Some),
    ]
}

fn rfc3339() -> impl Strategy<Value = String> {
    prop_oneof![
        (-62_135_596_800_000_000i64..253_402_300_799_999_999).prop_map(|us| {
            chrono::DateTime::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        }),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "\\PC{0,20}",
    ]
}

/// One attribute of a CloudEvent object: mostly well-formed, sometimes not.
fn attribute() -> impl Strategy<Value = (String, Value)> {
    let text = || "\\PC{0,16}".prop_map(Value::from);
    prop_oneof![
        4 => prop_oneof![Just(Value::from("1.0")), json()].prop_map(|v| ("specversion".into(), v)),
        4 => prop_oneof![3 => text(), 1 => json()].prop_map(|v| ("id".into(), v)),
        4 => prop_oneof![3 => text(), 1 => json()].prop_map(|v| ("source".into(), v)),
        4 => prop_oneof![3 => text(), 1 => json()].prop_map(|v| ("type".into(), v)),
        2 => prop_oneof![text(), json()].prop_map(|v| ("subject".into(), v)),
        2 => prop_oneof![rfc3339().prop_map(Value::from), json()].prop_map(|v| ("time".into(), v)),
        2 => json().prop_map(|v| ("data".into(), v)),
        1 => prop_oneof![text(), json()].prop_map(|v| ("data_base64".into(), v)),
        1 => text().prop_map(|v| ("datacontenttype".into(), v)),
        2 => prop_oneof![
            any::<f64>().prop_map(Value::from),
            "[-+ ]?[0-9.eE]{1,10}( )?".prop_map(Value::from),
            json(),
        ]
        .prop_map(|v| ("value".into(), v)),
        3 => ("[a-z0-9]{1,10}", json()),
        1 => ("\\PC{0,8}", json()),
    ]
}

/// A JSON object as text, keys possibly repeated (JSON allows it; the decoder must cope).
fn object_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(attribute(), 0..12).prop_map(|pairs| {
        let fields: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        format!("{{{}}}", fields.join(","))
    })
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Single,
    Batch,
    NdJson,
}

fn body() -> impl Strategy<Value = (Shape, Vec<String>)> {
    prop_oneof![
        object_text().prop_map(|o| (Shape::Single, vec![o])),
        proptest::collection::vec(
            prop_oneof![6 => object_text(), 1 => json().prop_map(|v| v.to_string())],
            0..6
        )
        .prop_map(|items| (Shape::Batch, items)),
        proptest::collection::vec(
            prop_oneof![6 => object_text(), 1 => "\\PC{0,20}", 1 => Just(String::new())],
            0..6
        )
        .prop_map(|lines| (Shape::NdJson, lines)),
    ]
}

fn render(shape: Shape, parts: &[String]) -> (&'static str, String) {
    match shape {
        Shape::Single => ("application/cloudevents+json", parts.join("")),
        Shape::Batch => (
            "application/cloudevents-batch+json",
            format!("[{}]", parts.join(",")),
        ),
        Shape::NdJson => ("application/x-ndjson", parts.join("\n")),
    }
}

/// What every answer of `parse_body` must satisfy, whatever the input.
fn invariants(
    body: &[u8],
    items: &[Result<Event, helios_schemas::cloudevents::ItemError>],
) -> Result<(), TestCaseError> {
    let lines = body.split(|&b| b == b'\n').count();
    for item in items {
        match item {
            Ok(e) => {
                prop_assert!(!e.id.is_empty() && !e.source.is_empty() && !e.kind.is_empty());
                prop_assert_eq!(e.received_at, RECEIVED);
                prop_assert!(e.value.is_none_or(f64::is_finite));
                let names_ok = e.attrs.keys().all(|k| {
                    k == DATA_BASE64_ATTR
                        || k.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                });
                prop_assert!(names_ok, "extension names are lowercase a-z0-9");
            }
            Err(err) => {
                prop_assert!(!err.message.is_empty());
                prop_assert!(err.index < items.len().max(lines));
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_bytes_never_panic() {
    check(
        "cloudevents.arbitrary_bytes",
        (
            content_type(),
            proptest::collection::vec(any::<u8>(), 0..256),
        ),
        |(ct, body)| {
            if let Ok(items) = parse_body(ct.as_deref(), &body, RECEIVED) {
                invariants(&body, &items)?;
            }
            Ok(())
        },
    );
}

#[test]
fn generated_and_mutated_bodies_never_panic() {
    check(
        "cloudevents.generated_bodies",
        (body(), mutations(4)),
        |((shape, parts), edits)| {
            let (ct, text) = render(shape, &parts);
            let mutated = mutate_text(&text, &edits);
            for body in [&text, &mutated] {
                let got = parse_body(Some(ct), body.as_bytes(), RECEIVED);
                if let Ok(items) = &got {
                    invariants(body.as_bytes(), items)?;
                }
                // Unmutated, the body's framing is valid: one answer per item or line.
                if std::ptr::eq(body, &text) {
                    match shape {
                        Shape::Single => prop_assert_eq!(got.map(|i| i.len()).ok(), Some(1)),
                        Shape::Batch => {
                            prop_assert_eq!(got.map(|i| i.len()).ok(), Some(parts.len()))
                        }
                        Shape::NdJson => {
                            let non_blank = parts
                                .iter()
                                .flat_map(|p| p.split('\n'))
                                .filter(|l| !l.bytes().all(|b| b.is_ascii_whitespace()))
                                .count();
                            prop_assert_eq!(got.map(|i| i.len()).ok(), Some(non_blank));
                        }
                    }
                }
            }
            Ok(())
        },
    );
}

/// Events as `parse_body` makes them: required attributes non-empty, times a CloudEvent
/// can carry, extension names CloudEvents allows, payload compact JSON.
pub fn parsed_event() -> impl Strategy<Value = Event> {
    const RESERVED: &[&str] = &[
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "data",
        "value",
    ];
    let attr_name = "[a-z0-9]{1,10}".prop_filter("reserved", |k| !RESERVED.contains(&k.as_str()));
    (
        ("\\PC{1,20}", "\\PC{1,20}", "\\PC{1,20}", "\\PC{0,20}"),
        -62_135_596_800_000_000i64..253_402_300_799_999_999,
        proptest::collection::btree_map(attr_name, "\\PC{0,12}", 0..5),
        proptest::option::of(any::<f64>().prop_filter("finite", |v| v.is_finite())),
        proptest::option::of(json().prop_filter("null", |v| !v.is_null())),
        any::<bool>(),
    )
        .prop_map(
            |((id, source, kind, subject), time, mut attrs, value, data, base64)| {
                let payload = match data {
                    Some(_) if base64 => {
                        attrs.insert(DATA_BASE64_ATTR.to_string(), "true".to_string());
                        Some("\"aGVsaW9z\"".to_string())
                    }
                    d => d.map(|v| v.to_string()),
                };
                Event {
                    id,
                    source,
                    kind,
                    subject,
                    time,
                    received_at: RECEIVED,
                    attrs: attrs.into_iter().collect::<BTreeMap<_, _>>(),
                    value,
                    payload,
                }
            },
        )
}

#[test]
fn written_cloudevents_parse_back_in_every_mode() {
    check(
        "cloudevents.roundtrip",
        proptest::collection::vec(parsed_event(), 1..4),
        |events| {
            let texts: Vec<String> = events.iter().map(to_cloudevent_string).collect();
            for (shape, parts) in [
                (Shape::Single, &texts[..1]),
                (Shape::Batch, &texts[..]),
                (Shape::NdJson, &texts[..]),
            ] {
                let (ct, body) = render(shape, parts);
                let items = parse_body(Some(ct), body.as_bytes(), RECEIVED)
                    .map_err(|e| TestCaseError::fail(format!("{shape:?}: {e}")))?;
                prop_assert_eq!(items.len(), parts.len());
                for (got, want) in items.into_iter().zip(&events) {
                    let got = got.map_err(|e| TestCaseError::fail(format!("{shape:?}: {e}")))?;
                    prop_assert_eq!(&got, want);
                }
            }
            Ok(())
        },
    );
}
