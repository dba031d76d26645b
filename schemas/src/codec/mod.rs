//! Codecs every stage uses to put records on and take them off topics.
//!
//! [`EventCodec`] owns the hot path: events written with the built-in schema (under the
//! id the registry gave it) go through the hand-written [`event_binary`] codec; events
//! written with any other schema are decoded by apache-avro with schema resolution
//! (writer schema fetched from a [`SchemaSource`], reader = built-in) and converted.
//! [`RecordCodec`] does the same for the other records, always through apache-avro.

mod bounds;
pub mod event_binary;

pub use bounds::MAX_DEPTH;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use async_trait::async_trait;
use bytes::Bytes;

use crate::records::{AvroRecord, Event};
use crate::{Error, Result, wire};

/// Where writer schemas come from: the embedded registry or a remote one.
#[async_trait]
pub trait SchemaSource: Send + Sync + fmt::Debug {
    /// The schema registered under `id`.
    async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>>;
}

/// How a writer schema id is decoded.
#[derive(Debug, Clone)]
enum Writer {
    /// Same schema as the built-in one: the record can be read without resolution.
    BuiltIn,
    /// Another schema: resolve against the built-in reader schema.
    Other(Arc<Schema>),
}

/// Writer schemas by id, filled from a [`SchemaSource`] on first sight of an id.
#[derive(Debug)]
struct Writers {
    builtin_id: u32,
    builtin: &'static Schema,
    source: Option<Arc<dyn SchemaSource>>,
    known: RwLock<HashMap<u32, Writer>>,
}

impl Writers {
    fn new(
        builtin_id: u32,
        builtin: &'static Schema,
        source: Option<Arc<dyn SchemaSource>>,
    ) -> Self {
        Self {
            builtin_id,
            builtin,
            source,
            known: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, id: u32) -> Result<Writer> {
        if id == self.builtin_id {
            return Ok(Writer::BuiltIn);
        }
        let known = self.known.read().unwrap_or_else(|p| p.into_inner());
        known.get(&id).cloned().ok_or(Error::UnknownSchemaId { id })
    }

    async fn fetch(&self, id: u32) -> Result<Writer> {
        if let Ok(w) = self.get(id) {
            return Ok(w);
        }
        let Some(source) = &self.source else {
            return Err(Error::UnknownSchemaId { id });
        };
        let schema = source.schema_by_id(id).await?;
        // The same schema registered elsewhere (another registry, another id) still takes
        // the fast path.
        let writer = if same_schema(&schema, self.builtin) {
            Writer::BuiltIn
        } else {
            Writer::Other(schema)
        };
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        known.insert(id, writer.clone());
        Ok(writer)
    }
}

/// Two schemas are the same for decoding when their full JSON forms (defaults included) match.
fn same_schema(a: &Schema, b: &Schema) -> bool {
    matches!((serde_json::to_string(a), serde_json::to_string(b)), (Ok(x), Ok(y)) if x == y)
}

/// Reads `body` written with `writer`, resolved to the built-in reader schema of `T`.
/// The body is checked against the writer schema first (see [`bounds`]).
fn resolve_decode<T: AvroRecord>(writer: &Schema, body: &[u8]) -> Result<T> {
    // apache-avro trusts length prefixes and recurses per nesting level: bound both first.
    bounds::check(writer, body, T::NAME)?;
    let reader = GenericDatumReader::builder(writer)
        .reader_schema(T::schema())
        .build()
        .map_err(|e| Error::avro("resolve", T::NAME, e))?;
    let mut input = body;
    let value = reader
        .read_value(&mut input)
        .map_err(|e| Error::avro("decode", T::NAME, e))?;
    apache_avro::from_value::<T>(&value).map_err(|e| Error::avro("decode", T::NAME, e))
}

/// Encodes and decodes framed [`Event`]s. Cheap to share (`Arc`) between tasks.
#[derive(Debug)]
pub struct EventCodec {
    writers: Writers,
}

impl EventCodec {
    /// A codec that writes with `schema_id` (the id the registry gave the built-in Event
    /// schema) and decodes only that id plus ids it was told about.
    pub fn new(schema_id: u32) -> Self {
        Self {
            writers: Writers::new(schema_id, Event::schema(), None),
        }
    }

    /// Like [`EventCodec::new`], and fetches unknown writer schemas from `source`.
    pub fn with_source(schema_id: u32, source: Arc<dyn SchemaSource>) -> Self {
        Self {
            writers: Writers::new(schema_id, Event::schema(), Some(source)),
        }
    }

    /// The schema id this codec writes with.
    pub fn schema_id(&self) -> u32 {
        self.writers.builtin_id
    }

    /// Encodes `event` in the Confluent wire format.
    pub fn encode(&self, event: &Event) -> Bytes {
        let mut out = Vec::new();
        self.encode_into(event, &mut out);
        Bytes::from(out)
    }

    /// Appends the framed `event` to `out` (reuse `out` to avoid an allocation per event).
    pub fn encode_into(&self, event: &Event, out: &mut Vec<u8>) {
        wire::write_header(self.writers.builtin_id, out);
        event_binary::encode_event_body(event, out);
    }

    /// Decodes a framed event. Ids other than the built-in one must have been seen by
    /// [`EventCodec::decode_async`] or [`EventCodec::prefetch`] before; otherwise this
    /// returns [`Error::UnknownSchemaId`].
    pub fn decode(&self, bytes: &[u8]) -> Result<Event> {
        let (id, body) = wire::split(bytes)?;
        Self::decode_with(self.writers.get(id)?, body)
    }

    /// Like [`EventCodec::decode`], into `event`, reusing its allocations (see
    /// [`event_binary::decode_event_body_into`]); the hot path of a processor.
    pub fn decode_into(&self, bytes: &[u8], event: &mut Event) -> Result<()> {
        let (id, body) = wire::split(bytes)?;
        match self.writers.get(id)? {
            Writer::BuiltIn => event_binary::decode_event_body_into(body, event),
            Writer::Other(schema) => {
                *event = resolve_decode::<Event>(&schema, body)?;
                Ok(())
            }
        }
    }

    /// The `source` and `id` bytes of a framed event, read without decoding it (see
    /// [`event_binary::peek_source_and_id`]). Only for the built-in writer schema, whose
    /// fields [`EventCodec::decode_into`] reads from the same bytes: when it decodes the
    /// record, its event's `source` and `id` are these. `None` for any other writer.
    pub fn peek_source_and_id<'a>(&self, bytes: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let (id, body) = wire::split(bytes).ok()?;
        if id != self.writers.builtin_id {
            return None;
        }
        event_binary::peek_source_and_id(body)
    }

    /// Decodes a framed event, fetching an unknown writer schema from the source first.
    pub async fn decode_async(&self, bytes: &[u8]) -> Result<Event> {
        let (id, body) = wire::split(bytes)?;
        let writer = self.writers.fetch(id).await?;
        Self::decode_with(writer, body)
    }

    /// Fetches and caches the writer schema `id` so that [`EventCodec::decode`] accepts it.
    pub async fn prefetch(&self, id: u32) -> Result<()> {
        self.writers.fetch(id).await.map(drop)
    }

    fn decode_with(writer: Writer, body: &[u8]) -> Result<Event> {
        match writer {
            Writer::BuiltIn => event_binary::decode_event_body(body),
            Writer::Other(schema) => resolve_decode::<Event>(&schema, body),
        }
    }
}

/// Encodes and decodes framed records other than [`Event`] through apache-avro.
pub struct RecordCodec<T> {
    writers: Writers,
    _record: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for RecordCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordCodec")
            .field("writers", &self.writers)
            .finish()
    }
}

impl<T: AvroRecord> RecordCodec<T> {
    /// A codec writing with `schema_id`, the registry id of `T`'s built-in schema.
    pub fn new(schema_id: u32) -> Self {
        Self {
            writers: Writers::new(schema_id, T::schema(), None),
            _record: PhantomData,
        }
    }

    /// Like [`RecordCodec::new`], and fetches unknown writer schemas from `source`.
    pub fn with_source(schema_id: u32, source: Arc<dyn SchemaSource>) -> Self {
        Self {
            writers: Writers::new(schema_id, T::schema(), Some(source)),
            _record: PhantomData,
        }
    }

    /// Encodes `record` in the Confluent wire format. Maps are written in key order, so
    /// equal records give equal bytes.
    pub fn encode(&self, record: &T) -> Result<Bytes> {
        let mut out = Vec::with_capacity(128);
        wire::write_header(self.writers.builtin_id, &mut out);
        let writer = GenericDatumWriter::builder(T::schema())
            .build()
            .map_err(|e| Error::avro("encode", T::NAME, e))?;
        writer
            .write_ser(&mut out, record)
            .map_err(|e| Error::avro("encode", T::NAME, e))?;
        Ok(Bytes::from(out))
    }

    /// Decodes a framed record whose writer schema is known (see [`EventCodec::decode`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<T> {
        let (id, body) = wire::split(bytes)?;
        Self::decode_with(self.writers.get(id)?, body)
    }

    /// Decodes a framed record, fetching an unknown writer schema first.
    pub async fn decode_async(&self, bytes: &[u8]) -> Result<T> {
        let (id, body) = wire::split(bytes)?;
        let writer = self.writers.fetch(id).await?;
        Self::decode_with(writer, body)
    }

    fn decode_with(writer: Writer, body: &[u8]) -> Result<T> {
        let schema = match &writer {
            Writer::BuiltIn => T::schema(),
            Writer::Other(s) => s.as_ref(),
        };
        resolve_decode::<T>(schema, body)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::records::{
        Alert, AlertState, DeadLetter, Insight, InsightKind, Severity, WindowResult,
    };

    /// A source serving fixed schemas, to exercise the resolution path without a registry.
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

    fn event() -> Event {
        Event {
            id: "e-1".into(),
            source: "github".into(),
            kind: "push".into(),
            subject: "helios".into(),
            time: 1_700_000_000_000_000,
            received_at: 1_700_000_000_000_123,
            attrs: BTreeMap::from([("branch".into(), "main".into())]),
            value: Some(3.5),
            payload: Some("{\"a\":1}".into()),
        }
    }

    /// The Event schema as it was before `payload` existed, with an extra field since removed.
    const OLD_EVENT: &str = r#"{"type":"record","name":"Event","namespace":"io.helios","fields":[
        {"name":"id","type":"string"},{"name":"source","type":"string"},
        {"name":"kind","type":"string"},{"name":"subject","type":"string"},
        {"name":"time","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"received_at","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"host","type":"string"},
        {"name":"attrs","type":{"type":"map","values":"string"}},
        {"name":"value","type":["null","double"],"default":null}]}"#;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn event_codec_roundtrips_on_the_fast_path() {
        let codec = EventCodec::new(12);
        let bytes = codec.encode(&event());
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 12]);
        assert_eq!(codec.decode(&bytes).unwrap(), event());
    }

    #[test]
    fn foreign_writer_schema_is_resolved_against_the_built_in_one() {
        let old = Arc::new(Schema::parse_str(OLD_EVENT).unwrap());
        let mut e = event();
        e.payload = None;
        let record = apache_avro::types::Value::Record(vec![
            ("id".into(), e.id.clone().into()),
            ("source".into(), e.source.clone().into()),
            ("kind".into(), e.kind.clone().into()),
            ("subject".into(), e.subject.clone().into()),
            (
                "time".into(),
                apache_avro::types::Value::TimestampMicros(e.time),
            ),
            (
                "received_at".into(),
                apache_avro::types::Value::TimestampMicros(e.received_at),
            ),
            ("host".into(), "box".into()),
            (
                "attrs".into(),
                apache_avro::types::Value::Map(
                    e.attrs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect(),
                ),
            ),
            (
                "value".into(),
                apache_avro::types::Value::Union(1, Box::new(3.5.into())),
            ),
        ]);
        let body = GenericDatumWriter::builder(&old)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap();
        let framed = wire::frame(99, &body);

        let source = Arc::new(Fixed(HashMap::from([
            (99, old),
            (1, Arc::new(Event::schema().clone())),
        ])));
        let codec = EventCodec::with_source(1, source);
        let msg = codec.decode(&framed).unwrap_err().to_string();
        assert!(msg.contains("schema id 99 is not known"), "{msg}");
        assert_eq!(block_on(codec.decode_async(&framed)).unwrap(), e);
        // Cached now, so the sync path accepts it too.
        assert_eq!(codec.decode(&framed).unwrap(), e);
        // Its bytes are not laid out as the built-in schema's: no peeked identity (the
        // processor then hashes the decoded fields).
        assert_eq!(codec.peek_source_and_id(&framed), None);
        // A codec without a source cannot learn the id.
        let msg = block_on(EventCodec::new(1).decode_async(&framed))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("99"), "{msg}");
    }

    #[test]
    fn the_peeked_identity_is_the_decoded_events() {
        let codec = EventCodec::new(12);
        let mut e = event();
        for (source, id) in [
            ("github", "e-1"),
            ("", ""),
            ("ci", "ü\u{0}x"),
            ("s", &"i".repeat(300)),
        ] {
            e.source = source.into();
            e.id = id.into();
            let bytes = codec.encode(&e);
            let decoded = codec.decode(&bytes).unwrap();
            assert_eq!(
                codec.peek_source_and_id(&bytes),
                Some((decoded.source.as_bytes(), decoded.id.as_bytes()))
            );
        }
        // Framed under another writer id: not assumed to be the built-in layout.
        let other = EventCodec::new(13).encode(&e);
        assert_eq!(codec.peek_source_and_id(&other), None);
    }

    #[test]
    fn built_in_schema_under_another_id_takes_the_fast_path() {
        let source = Arc::new(Fixed(HashMap::from([(
            5,
            Arc::new(Event::schema().clone()),
        )])));
        let codec = EventCodec::with_source(1, source);
        let framed = EventCodec::new(5).encode(&event());
        block_on(codec.prefetch(5)).unwrap();
        assert!(matches!(codec.writers.get(5), Ok(Writer::BuiltIn)));
        assert_eq!(codec.decode(&framed).unwrap(), event());
    }

    fn check_record<T: AvroRecord + PartialEq + fmt::Debug>(record: T) {
        let codec = RecordCodec::<T>::new(3);
        let bytes = codec.encode(&record).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), record);
        // Deterministic: same record, same bytes.
        assert_eq!(codec.encode(&record).unwrap(), bytes);
    }

    #[test]
    fn every_record_roundtrips_through_avro() {
        let group = BTreeMap::from([
            ("repo".to_string(), "helios".to_string()),
            ("a".into(), "b".into()),
        ]);
        check_record(WindowResult {
            id: "w".into(),
            aggregate: "pushes".into(),
            window_start: 0,
            window_end: 60_000_000,
            group: group.clone(),
            measures: BTreeMap::from([("sum".to_string(), 4.0), ("max".into(), 2.0)]),
            count: 3,
            version: 2,
            is_final: true,
        });
        check_record(Alert {
            id: "a".into(),
            rule: "too-many-failures".into(),
            group: group.clone(),
            state: AlertState::Resolved,
            since: 10,
            at: 20,
            severity: Severity::Critical,
            summary: "3 failures in 5m".into(),
            evidence: vec!["e1".into(), "e2".into()],
        });
        check_record(Insight {
            id: "i".into(),
            kind: InsightKind::Streak,
            aggregate: "builds".into(),
            group,
            measure: "failures".into(),
            window_start: 1,
            window_end: 2,
            value: 7.0,
            score: 4.0,
            summary: "4 windows in a row".into(),
            at: 3,
        });
        check_record(DeadLetter {
            id: "d".into(),
            stage: "ingest".into(),
            reason: "not JSON".into(),
            original: vec![0, 159, 146, 150],
            topic: Some("helios.events".into()),
            partition: Some(1),
            offset: Some(77),
            at: 9,
        });
        check_record(DeadLetter {
            id: "d".into(),
            stage: "ingest".into(),
            reason: "not JSON".into(),
            original: vec![],
            topic: None,
            partition: None,
            offset: None,
            at: 9,
        });
    }
}
