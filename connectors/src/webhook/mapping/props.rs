//! Property tests of webhook mappings: mapping configs (generated, and as TOML text,
//! mutated) compile or are refused without a panic, and compiled mappings (and the
//! Alertmanager preset) map arbitrary JSON bodies without a panic, to events that carry
//! the source, the receive time and a payload.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::{FieldSpec, FieldTable, Input, Mapper, MappingSpec, Preset, TimeUnit, body_id};

#[path = "../../../../schemas/tests/it/props.rs"]
mod support;

use support::{check, json, mutate_text, mutations};

const RECEIVED: i64 = 1_700_000_000_000_000;

fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&[
            "/id", "/kind", "/type", "/time", "/value", "/subject", "/attrs", "/items",
            "/items/0", "/a/0/id", "/labels", "/status", "", "/", "/~0", "/~1", "/~", "/a~2",
        ][..])
        .prop_map(String::from),
        1 => "(/[a-z0-9~]{0,4}){0,3}",
        1 => "\\PC{0,8}",
    ]
}

fn field() -> impl Strategy<Value = FieldSpec> {
    prop_oneof![
        pointer().prop_map(FieldSpec::Short),
        "[a-z.]{0,10}".prop_map(FieldSpec::Short),
        (
            proptest::option::of(pointer()),
            proptest::option::of(prop_oneof!["\\PC{0,10}", "-?[0-9]{1,12}(\\.[0-9]{1,4})?"]),
            any::<bool>()
        )
            .prop_map(|(pointer, default, required)| FieldSpec::Full(FieldTable {
                pointer,
                default,
                required,
            })),
    ]
}

fn spec() -> impl Strategy<Value = MappingSpec> {
    let opt = || proptest::option::of(field());
    (
        proptest::option::of(pointer()),
        (opt(), opt(), opt(), opt(), opt()),
        proptest::sample::select(&[TimeUnit::Seconds, TimeUnit::Millis, TimeUnit::Micros][..]),
        proptest::option::of(pointer()),
        proptest::collection::btree_map("[a-z]{1,6}", field(), 0..3),
    )
        .prop_map(
            |(items, (id, time, kind, subject, value), time_unit, attrs_from, attrs)| MappingSpec {
                items,
                id,
                time,
                time_unit,
                kind,
                subject,
                value,
                attrs_from,
                attrs,
            },
        )
}

/// A document shaped like what the mappings read, and sometimes an Alertmanager payload.
fn document() -> impl Strategy<Value = Value> {
    let alert = (
        proptest::option::of(prop_oneof![
            Just(Value::from("firing")),
            Just(Value::from("resolved")),
            json()
        ]),
        proptest::option::of(prop_oneof![
            Just(Value::from("2024-05-01T10:00:00Z")),
            "[0-9]{1,12}(\\.[0-9]{1,6})?".prop_map(Value::from),
            json()
        ]),
        proptest::option::of(json()),
        proptest::option::of(proptest::collection::btree_map("[a-z]{1,5}", json(), 0..3)),
        proptest::option::of("[0-9a-f]{0,16}"),
    )
        .prop_map(|(status, starts, ends, labels, fingerprint)| {
            let mut a = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    a.insert(k.to_string(), v);
                }
            };
            put("status", status);
            put("startsAt", starts);
            put("endsAt", ends);
            put(
                "labels",
                labels.map(|l| Value::Object(l.into_iter().collect())),
            );
            put("fingerprint", fingerprint.map(Value::from));
            Value::Object(a)
        });
    prop_oneof![
        3 => json(),
        2 => (proptest::collection::vec(alert, 0..4), proptest::option::of("[a-z]{0,6}"))
            .prop_map(|(alerts, receiver)| {
                let mut doc = serde_json::json!({ "alerts": alerts, "status": "firing" });
                if let Some(r) = receiver {
                    doc["receiver"] = Value::from(r);
                }
                doc
            }),
        2 => proptest::collection::vec(json(), 0..4)
            .prop_map(|items| serde_json::json!({ "items": items, "kind": "k", "id": 7 })),
    ]
}

fn map_checked(mapper: &Mapper, doc: &Value, raw: &str) -> Result<(), TestCaseError> {
    let seed = body_id("hooks", raw.as_bytes());
    let input = Input {
        raw,
        id_seed: &seed,
        received_at: RECEIVED,
        default_time: RECEIVED,
    };
    if let Ok(events) = mapper.map(doc, &input) {
        for e in &events {
            prop_assert_eq!(&e.source, "hooks");
            prop_assert_eq!(e.received_at, RECEIVED);
            prop_assert!(e.payload.is_some());
            prop_assert!(e.value.is_none_or(f64::is_finite));
        }
    }
    Ok(())
}

#[test]
fn generated_mappings_map_generated_documents_without_panic() {
    check(
        "webhook_mapping.generated",
        (
            spec(),
            proptest::option::of(Just(Preset::Alertmanager)),
            document(),
        ),
        |(spec, preset, doc)| {
            let raw = doc.to_string();
            // A mapping with a preset is refused; the preset alone and the spec alone compile
            // or are refused with an error.
            let _ = Mapper::new("hooks", preset, Some(&spec));
            for mapper in [
                Mapper::new("hooks", None, Some(&spec)),
                Mapper::new("hooks", Some(Preset::Alertmanager), None),
                Mapper::new("hooks", None, None),
            ]
            .into_iter()
            .flatten()
            {
                map_checked(&mapper, &doc, &raw)?;
            }
            Ok(())
        },
    );
}

/// `spec` as the `[mapping]` table of a source, in TOML.
fn toml_text(spec: &MappingSpec) -> String {
    toml::to_string(spec).unwrap_or_default()
}

#[test]
fn mapping_config_text_and_bodies_never_panic() {
    check(
        "webhook_mapping.config_text_and_raw_bodies",
        (
            spec(),
            mutations(4),
            proptest::collection::vec(any::<u8>(), 0..200),
            document(),
            mutations(4),
        ),
        |(spec, edits, raw_body, doc, body_edits)| {
            let text = mutate_text(&toml_text(&spec), &edits);
            let parsed: Option<MappingSpec> = toml::from_str(&text).ok();
            let mapper = parsed
                .as_ref()
                .and_then(|m| Mapper::new("hooks", None, Some(m)).ok());
            let mutated_doc = mutate_text(&doc.to_string(), &body_edits);
            // What the webhook route does with a body: parse as JSON, then map.
            for body in [&raw_body[..], mutated_doc.as_bytes()] {
                let Ok(value) = serde_json::from_slice::<Value>(body) else {
                    continue;
                };
                let raw = String::from_utf8_lossy(body);
                if let Some(m) = &mapper {
                    map_checked(m, &value, &raw)?;
                }
                let preset = Mapper::new("hooks", Some(Preset::Alertmanager), None)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                map_checked(&preset, &value, &raw)?;
            }
            Ok(())
        },
    );
}

#[test]
fn mapping_specs_survive_toml() {
    // The TOML rendering used by the property above is the config a user writes.
    let spec = MappingSpec {
        attrs: BTreeMap::from([("env".to_string(), FieldSpec::Short("/env".into()))]),
        ..MappingSpec::default()
    };
    let back: MappingSpec = toml::from_str(&toml_text(&spec)).unwrap();
    assert_eq!(back, spec);
}
