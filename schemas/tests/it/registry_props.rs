//! Property tests of the embedded registry's schema documents: arbitrary text, generated
//! Avro schemas (valid and not) and mutations of them are registered, looked up and
//! compatibility-checked without a panic, and an accepted schema is found again.

use helios_schemas::registry::VersionSelector;
use helios_schemas::{CompatibilityLevel, Registry};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::props::{check, mutate_text, mutations};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[A-Za-z_][A-Za-z0-9_]{0,6}",
        1 => "[a-z]{1,4}(\\.[a-z]{1,4}){1,2}",
        1 => "\\PC{0,6}",
    ]
}

/// An Avro schema as JSON, from Avro's grammar, with some wrong turns (bad names,
/// duplicate fields, wrong defaults) so both the accepting and refusing paths run.
fn schema() -> impl Strategy<Value = Value> {
    let primitive = prop_oneof![
        Just(json!("null")),
        Just(json!("boolean")),
        Just(json!("int")),
        Just(json!("long")),
        Just(json!("float")),
        Just(json!("double")),
        Just(json!("bytes")),
        Just(json!("string")),
        Just(json!({"type": "long", "logicalType": "timestamp-micros"})),
        Just(json!({"type": "int", "logicalType": "date"})),
        Just(json!({"type": "string", "logicalType": "uuid"})),
        (1usize..20, 0usize..10).prop_map(
            |(p, s)| json!({"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s})
        ),
        (name(), 0usize..40)
            .prop_map(|(n, size)| json!({"type": "fixed", "name": n, "size": size})),
        (name(), proptest::collection::vec(name(), 0..5))
            .prop_map(|(n, symbols)| json!({"type": "enum", "name": n, "symbols": symbols})),
        name().prop_map(Value::from),
    ];
    primitive.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|t| json!({"type": "array", "items": t})),
            inner
                .clone()
                .prop_map(|t| json!({"type": "map", "values": t})),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            (
                name(),
                proptest::option::of("[a-z]{1,5}(\\.[a-z]{1,5})?"),
                proptest::collection::vec(
                    (name(), inner, proptest::option::of(crate::props::json())),
                    0..5
                )
            )
                .prop_map(|(n, ns, fields)| {
                    let fields: Vec<Value> = fields
                        .into_iter()
                        .map(|(f, t, default)| {
                            let mut field = json!({"name": f, "type": t});
                            if let Some(d) = default {
                                field["default"] = d;
                            }
                            field
                        })
                        .collect();
                    let mut record = json!({"type": "record", "name": n, "fields": fields});
                    if let Some(ns) = ns {
                        record["namespace"] = Value::from(ns);
                    }
                    record
                }),
        ]
    })
}

fn level() -> impl Strategy<Value = CompatibilityLevel> {
    proptest::sample::select(&CompatibilityLevel::ALL[..])
}

fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => "\\PC{0,64}",
        1 => proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        6 => (schema(), mutations(3)).prop_map(|(s, edits)| mutate_text(&s.to_string(), &edits)),
    ]
}

#[test]
fn schema_documents_register_and_check_without_panic() {
    check(
        "registry.schema_documents",
        (
            proptest::collection::vec(document(), 1..4),
            level(),
            document(),
        ),
        |(docs, level, probe)| {
            let registry = Registry::in_memory();
            registry
                .set_subject_level("s", level)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for doc in &docs {
                if let Ok(reg) = registry.register("s", doc) {
                    // Accepted: registering it again is a no-op answering the same id and
                    // version, and lookup finds it.
                    let again = registry
                        .register("s", doc)
                        .map_err(|e| TestCaseError::fail(format!("re-register: {e}")))?;
                    prop_assert_eq!(again, reg);
                    let found = registry
                        .lookup("s", doc)
                        .map_err(|e| TestCaseError::fail(format!("lookup: {e}")))?;
                    prop_assert_eq!((found.id, found.version), (reg.id, reg.version));
                    let by_id = registry
                        .schema(reg.id)
                        .map_err(|e| TestCaseError::fail(format!("by id: {e}")))?;
                    prop_assert_eq!(by_id.id, reg.id);
                }
            }
            let _ = registry.test_compatibility("s", VersionSelector::Latest, &probe);
            let _ = registry.test_compatibility("s", VersionSelector::Number(1), &probe);
            let _ = registry.lookup("s", &probe);
            Ok(())
        },
    );
}
