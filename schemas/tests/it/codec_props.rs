//! Property tests of the Avro `Event` codec: the hand-written fast path
//! (`codec::event_binary`) and the schema-resolution path (apache-avro) on arbitrary and
//! mutated bytes. Decoding never panics, never sizes an allocation from a length prefix
//! beyond what the input could hold, and valid events round-trip byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::writer::datum::GenericDatumWriter;
use async_trait::async_trait;
use helios_schemas::codec::event_binary::{
    decode_event_body, decode_event_body_into, encode_event_body,
};
use helios_schemas::{Error, Event, EventCodec, Result, SchemaSource, wire};
use proptest::prelude::*;

use crate::alloc::track;
use crate::props::{check, mutate, mutations};

/// Allocation a decode may make beyond the input's own size: fixed-size map nodes and
/// error messages, never anything sized by a length prefix.
const SLACK: usize = 4096;

fn any_string(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect()),
        "[a-z0-9._-]{0,16}",
    ]
}

/// Any `Event` the encoder can be handed: every string, every time, NaN and infinities.
fn event() -> impl Strategy<Value = Event> {
    (
        (
            any_string(24),
            any_string(24),
            any_string(24),
            any_string(24),
        ),
        (any::<i64>(), any::<i64>()),
        proptest::collection::btree_map(any_string(12), any_string(12), 0..6),
        proptest::option::of(any::<f64>()),
        proptest::option::of(any_string(64)),
    )
        .prop_map(
            |((id, source, kind, subject), (time, received_at), attrs, value, payload)| Event {
                id,
                source,
                kind,
                subject,
                time,
                received_at,
                attrs,
                value,
                payload,
            },
        )
}

fn encode(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    encode_event_body(e, &mut out);
    out
}

/// Equality that holds for NaN values too: the same bytes when encoded.
fn same(a: &Event, b: &Event) -> bool {
    encode(a) == encode(b)
}

/// Decodes `body` both ways and checks they agree and allocate within bounds.
fn decode_both(body: &[u8], reused: &mut Event) -> Result<Option<Event>, TestCaseError> {
    let (fresh, largest) = track(|| decode_event_body(body));
    prop_assert!(
        largest <= body.len() + SLACK,
        "decode allocated {largest} bytes at once for a {}-byte input",
        body.len()
    );
    let (into, largest) = track(|| decode_event_body_into(body, reused));
    prop_assert!(
        largest <= body.len() + SLACK,
        "decode_into allocated {largest} bytes at once for a {}-byte input",
        body.len()
    );
    match (fresh, into) {
        (Ok(e), Ok(())) => {
            prop_assert!(same(&e, reused), "decode and decode_into disagree");
            Ok(Some(e))
        }
        (Err(a), Err(b)) => {
            prop_assert_eq!(a.to_string(), b.to_string());
            Ok(None)
        }
        (a, b) => Err(TestCaseError::fail(format!(
            "decode gave {a:?}, decode_into gave {b:?}"
        ))),
    }
}

#[test]
fn arbitrary_bytes_decode_without_panic_or_large_allocation() {
    let codec = EventCodec::new(7);
    check(
        "avro_event.arbitrary_bytes",
        (proptest::collection::vec(any::<u8>(), 0..256), event()),
        |(body, start)| {
            let mut reused = start;
            if let Some(e) = decode_both(&body, &mut reused)? {
                // What decodes re-encodes to bytes that decode to the same event.
                let again = decode_event_body(&encode(&e))
                    .map_err(|err| TestCaseError::fail(err.to_string()))?;
                prop_assert!(same(&again, &e));
            }
            // The framed path: header checks, then the same decoder.
            let framed = wire::frame(7, &body);
            let _ = codec.decode(&framed);
            let _ = codec.decode(&body);
            Ok(())
        },
    );
}

#[test]
fn generated_events_roundtrip_byte_for_byte() {
    let codec = EventCodec::new(3);
    check("avro_event.roundtrip", (event(), event()), |(e, start)| {
        let bytes = encode(&e);
        let mut reused = start;
        let decoded = decode_both(&bytes, &mut reused)?
            .ok_or_else(|| TestCaseError::fail("a valid encoding did not decode"))?;
        // encode(decode(x)) == x for every encoder output.
        prop_assert_eq!(encode(&decoded), bytes);
        if e.value.is_none_or(|v| !v.is_nan()) {
            prop_assert_eq!(&decoded, &e);
        }
        let framed = codec.encode(&e);
        let via_codec = codec
            .decode(&framed)
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert!(same(&via_codec, &e));
        Ok(())
    });
}

#[test]
fn mutated_encodings_decode_without_panic_or_large_allocation() {
    check(
        "avro_event.mutated",
        (event(), mutations(6), event()),
        |(e, edits, start)| {
            let body = mutate(encode(&e), &edits);
            let mut reused = start;
            if let Some(d) = decode_both(&body, &mut reused)? {
                let again = decode_event_body(&encode(&d))
                    .map_err(|err| TestCaseError::fail(err.to_string()))?;
                prop_assert!(same(&again, &d));
            }
            Ok(())
        },
    );
}

/// A source serving one foreign writer schema, to reach apache-avro's resolution path.
#[derive(Debug)]
struct Fixed(HashMap<u32, Arc<Schema>>);

#[async_trait]
impl SchemaSource for Fixed {
    async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>> {
        self.0
            .get(&id)
            .cloned()
            .ok_or(Error::SchemaIdNotFound { id })
    }
}

/// The Event schema as it was before `payload` existed, with fields since removed; the
/// last one is recursive, so the nesting depth of a body is up to its writer.
const OLD_EVENT: &str = r#"{"type":"record","name":"Event","namespace":"io.helios","fields":[
    {"name":"id","type":"string"},{"name":"source","type":"string"},
    {"name":"kind","type":"string"},{"name":"subject","type":"string"},
    {"name":"time","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"received_at","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"host","type":"string"},
    {"name":"attrs","type":{"type":"map","values":"string"}},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"value","type":["null","double"],"default":null},
    {"name":"chain","type":["null",{"type":"record","name":"Link","fields":[
        {"name":"next","type":["null","Link"]}]}],"default":null}]}"#;

/// `e` written with `OLD_EVENT`, its chain `depth` links long.
fn old_body(e: &Event, schema: &Schema, tags: &[String], depth: usize) -> Vec<u8> {
    use apache_avro::types::Value;
    let record = Value::Record(vec![
        ("id".into(), e.id.clone().into()),
        ("source".into(), e.source.clone().into()),
        ("kind".into(), e.kind.clone().into()),
        ("subject".into(), e.subject.clone().into()),
        ("time".into(), Value::TimestampMicros(e.time)),
        ("received_at".into(), Value::TimestampMicros(e.received_at)),
        ("host".into(), "box".into()),
        (
            "attrs".into(),
            Value::Map(
                e.attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect::<HashMap<_, _>>(),
            ),
        ),
        (
            "tags".into(),
            Value::Array(tags.iter().map(|t| t.clone().into()).collect()),
        ),
        (
            "value".into(),
            match e.value {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(v) => Value::Union(1, Box::new(v.into())),
            },
        ),
        ("chain".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    let mut body = GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(record))
        .unwrap_or_default();
    // The empty chain is the last byte (branch 0); each link is branch 1 of `next`.
    body.pop();
    body.extend(std::iter::repeat_n(2u8, depth));
    body.push(0);
    body
}

#[test]
fn foreign_writer_schema_path_survives_arbitrary_and_mutated_bodies() {
    let old = Arc::new(Schema::parse_str(OLD_EVENT).expect("the old schema parses"));
    let codec = EventCodec::with_source(1, Arc::new(Fixed(HashMap::from([(99, old.clone())]))));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(codec.prefetch(99))
        .expect("schema 99 is served");
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256).prop_map(|b| (b, None)),
        (
            event(),
            proptest::collection::vec(any_string(8), 0..4),
            prop_oneof![3 => 0usize..8, 1 => 0usize..100, 1 => Just(100_000usize)],
            mutations(6)
        )
            .prop_map(move |(e, tags, depth, edits)| {
                let clean = old_body(&e, &old, &tags, depth);
                (mutate(clean, &edits), Some((e, depth, edits.is_empty())))
            }),
    ];
    check("avro_event.foreign_schema", body, |(body, origin)| {
        let framed = wire::frame(99, &body);
        let (got, largest) = track(|| codec.decode(&framed));
        prop_assert!(
            largest <= framed.len() + SLACK,
            "resolution allocated {largest} bytes at once for a {}-byte input",
            framed.len()
        );
        if let Some((e, depth, true)) = origin {
            // Each link nests two to three levels (union, record, reference): short chains
            // decode, long ones are refused before apache-avro recurses into them.
            if depth >= helios_schemas::codec::MAX_DEPTH {
                match got {
                    Ok(_) => return Err(TestCaseError::fail("a 100k-deep chain decoded")),
                    Err(err) => prop_assert!(err.to_string().contains("deeper than"), "{}", err),
                }
                return Ok(());
            }
            if depth > 5 {
                return Ok(());
            }
            let got = got.map_err(|err| TestCaseError::fail(err.to_string()))?;
            let want = Event {
                payload: None,
                attrs: e.attrs.clone().into_iter().collect::<BTreeMap<_, _>>(),
                ..e
            };
            prop_assert!(same(&got, &want));
        }
        Ok(())
    });
}
