//! The Rust types of Helios records and their built-in Avro schemas.
//!
//! Maps are `BTreeMap` on purpose: Avro writes map entries in iteration order, and
//! processors must produce byte-identical output on replay, so the order must not depend
//! on a hasher seed.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// The envelope every source produces. Times are microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Event {
    /// Dedup key, unique per source.
    pub id: String,
    /// Who produced the event (CloudEvents `source`).
    pub source: String,
    /// What happened (CloudEvents `type`).
    pub kind: String,
    /// The project, repo, host or service it is about; empty when unknown.
    pub subject: String,
    /// Event time, µs.
    pub time: i64,
    /// When Helios received the event, µs.
    pub received_at: i64,
    /// Dimensions (CloudEvents extension attributes).
    pub attrs: BTreeMap<String, String>,
    /// The measure, if any.
    pub value: Option<f64>,
    /// Raw JSON text of the data, if any.
    pub payload: Option<String>,
}

/// One aggregate for one window and one group.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowResult {
    /// Deterministic id (aggregate, group, window), identical on replay.
    pub id: String,
    /// Aggregate name from the pipeline spec.
    pub aggregate: String,
    /// Window start, µs, inclusive.
    pub window_start: i64,
    /// Window end, µs, exclusive.
    pub window_end: i64,
    /// Group key: key name -> value.
    pub group: BTreeMap<String, String>,
    /// Measure name -> value.
    pub measures: BTreeMap<String, f64>,
    /// Number of events in the window and group.
    pub count: i64,
    /// 1 for the first emission, +1 for each update of the same window.
    pub version: i32,
    /// True once the window can no longer change.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// Lifecycle state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The rule matches.
    Firing,
    /// The rule stopped matching.
    Resolved,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Look at it soon.
    Warning,
    /// Look at it now.
    Critical,
}

/// A rule's alert. `evidence` lists the ids of the events that made the rule match
/// (oldest first), so the events can be fetched from the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id (rule, group, since).
    pub id: String,
    /// Rule name from the pipeline spec.
    pub rule: String,
    /// Group key: key name -> value.
    pub group: BTreeMap<String, String>,
    /// Firing or resolved.
    pub state: AlertState,
    /// When the alert started firing, µs.
    pub since: i64,
    /// Event time of this state change, µs.
    pub at: i64,
    /// How urgent.
    pub severity: Severity,
    /// One human sentence.
    pub summary: String,
    /// Ids of the events that made the rule match.
    pub evidence: Vec<String>,
}

/// What kind of insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsightKind {
    /// A value far from its recent distribution.
    Anomaly,
    /// A sustained slope.
    Trend,
    /// A run of consecutive windows with the same property.
    Streak,
}

/// An anomaly, trend or streak found over aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    /// Deterministic id.
    pub id: String,
    /// Anomaly, trend or streak.
    pub kind: InsightKind,
    /// Aggregate it was found in.
    pub aggregate: String,
    /// Group key: key name -> value.
    pub group: BTreeMap<String, String>,
    /// Measure it concerns.
    pub measure: String,
    /// Window start, µs.
    pub window_start: i64,
    /// Window end, µs.
    pub window_end: i64,
    /// Observed value.
    pub value: f64,
    /// How unusual (z-score, slope or streak length).
    pub score: f64,
    /// One human sentence.
    pub summary: String,
    /// Event time it was found at, µs.
    pub at: i64,
}

/// A record a stage could not process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Deterministic id (stage + original position or hash).
    pub id: String,
    /// Stage that rejected it (e.g. `ingest`, `pipeline/windows`).
    pub stage: String,
    /// Why.
    pub reason: String,
    /// The original bytes, untouched.
    #[serde(with = "avro_bytes")]
    pub original: Vec<u8>,
    /// Topic of the original record, when it came from a topic.
    pub topic: Option<String>,
    /// Partition of the original record.
    pub partition: Option<i32>,
    /// Offset of the original record.
    pub offset: Option<i64>,
    /// When it was dead-lettered, µs.
    pub at: i64,
}

impl DeadLetter {
    /// The id of the dead letter `stage` writes for the record at `topic`/`partition`/
    /// `offset` (`scope` narrows it when a stage writes one per aggregate or rule): the one
    /// id format of every stage that dead-letters a record read from a topic, the same for
    /// a replay of that record, so stores keep it once.
    pub fn position_id(
        stage: &str,
        scope: Option<&str>,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> String {
        match scope {
            Some(scope) => format!("{stage}/{scope}/{topic}/{partition}/{offset}"),
            None => format!("{stage}/{topic}/{partition}/{offset}"),
        }
    }
}

/// A record type with a built-in Avro schema.
pub trait AvroRecord: Serialize + for<'de> Deserialize<'de> {
    /// Short record name for error messages.
    const NAME: &'static str;
    /// The `.avsc` text.
    const SCHEMA_JSON: &'static str;
    /// The parsed built-in schema (the reader schema for resolution).
    fn schema() -> &'static Schema;
}

macro_rules! avro_record {
    ($ty:ty, $name:literal, $file:literal) => {
        impl AvroRecord for $ty {
            const NAME: &'static str = $name;
            const SCHEMA_JSON: &'static str = include_str!(concat!("../avro/", $file));
            fn schema() -> &'static Schema {
                static SCHEMA: OnceLock<Schema> = OnceLock::new();
                SCHEMA.get_or_init(|| {
                    // The text is compiled in and parsed by a unit test, so failing here is a
                    // build defect, not bad input.
                    Schema::parse_str(Self::SCHEMA_JSON).expect(concat!(
                        "built-in schema ",
                        $file,
                        " parses"
                    ))
                })
            }
        }
    };
}

avro_record!(Event, "Event", "Event.avsc");
avro_record!(WindowResult, "WindowResult", "WindowResult.avsc");
avro_record!(Alert, "Alert", "Alert.avsc");
avro_record!(Insight, "Insight", "Insight.avsc");
avro_record!(DeadLetter, "DeadLetter", "DeadLetter.avsc");

/// `Vec<u8>` as Avro `bytes` (serde `bytes`), read back from bytes or a sequence (JSON).
mod avro_bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes or an array of byte values")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_str<E>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_schemas_parse_with_the_helios_namespace() {
        let names = [
            (Event::schema(), "io.helios.Event"),
            (WindowResult::schema(), "io.helios.WindowResult"),
            (Alert::schema(), "io.helios.Alert"),
            (Insight::schema(), "io.helios.Insight"),
            (DeadLetter::schema(), "io.helios.DeadLetter"),
        ];
        for (schema, expected) in names {
            match schema {
                Schema::Record(r) => assert_eq!(r.name.fullname(None), expected),
                other => panic!("{expected} is not a record: {other:?}"),
            }
        }
    }

    #[test]
    fn dead_letter_json_roundtrip_keeps_bytes() {
        let dl = DeadLetter {
            id: "d1".into(),
            stage: "ingest".into(),
            reason: "bad".into(),
            original: vec![0, 1, 255],
            topic: Some("helios.events".into()),
            partition: Some(3),
            offset: None,
            at: 5,
        };
        let json = serde_json::to_string(&dl).unwrap();
        let back: DeadLetter = serde_json::from_str(&json).unwrap();
        assert_eq!(back, dl);
    }
}
