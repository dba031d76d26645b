//! The row model of every store's tables, and how records become rows: ClickHouse and
//! the Parquet store hold the same tables with the same columns.
//!
//! `events`, `alerts`, `insights` and `dead_letters` have fixed columns: typed
//! [`clickhouse::Row`] structs (RowBinary for the ClickHouse client, Arrow columns for
//! Parquet). `agg_<name>` tables get
//! their columns from the spec, so their rows are encoded here by hand ([`AggregateRows`]),
//! in the same RowBinary format, and sent with an explicit column list.
//!
//! Maps (attributes, group keys) are two parallel arrays of keys and values: ClickHouse
//! 18.16 has no `Map` type, and arrays read the same on every version.

use std::collections::BTreeMap;

use clickhouse::Row;
use helios_schemas::{
    Alert, AlertState, DeadLetter, Event, Insight, InsightKind, Severity, WindowResult,
};
use serde::{Deserialize, Serialize};

use crate::spec::{AggregateSpec, StoreSpec};

/// One row of `events`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub subject: String,
    /// Event time, µs since the epoch.
    pub time: i64,
    /// Receive time, µs since the epoch.
    pub received_at: i64,
    pub attr_keys: Vec<String>,
    pub attr_values: Vec<String>,
    pub value: Option<f64>,
    pub payload: Option<String>,
}

impl From<Event> for EventRow {
    fn from(e: Event) -> Self {
        let (attr_keys, attr_values) = e.attrs.into_iter().unzip();
        EventRow {
            id: e.id,
            source: e.source,
            kind: e.kind,
            subject: e.subject,
            time: e.time,
            received_at: e.received_at,
            attr_keys,
            attr_values,
            value: e.value,
            payload: e.payload,
        }
    }
}

/// One row of `alerts`: the latest state of each alert (`id`), kept by `version`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub group_keys: Vec<String>,
    pub group_values: Vec<String>,
    /// `firing` or `resolved`.
    pub state: String,
    pub since: i64,
    pub at: i64,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub summary: String,
    pub evidence: Vec<String>,
    /// Orders the states of one alert: later `at` wins, and at the same `at` resolved wins.
    pub version: u64,
}

impl From<Alert> for AlertRow {
    fn from(a: Alert) -> Self {
        let (group_keys, group_values) = a.group.into_iter().unzip();
        let resolved = u64::from(a.state == AlertState::Resolved);
        AlertRow {
            version: (a.at.max(0) as u64)
                .saturating_mul(2)
                .saturating_add(resolved),
            id: a.id,
            rule: a.rule,
            group_keys,
            group_values,
            state: alert_state_name(a.state).to_owned(),
            since: a.since,
            at: a.at,
            severity: severity_name(a.severity).to_owned(),
            summary: a.summary,
            evidence: a.evidence,
        }
    }
}

impl AlertRow {
    /// The group key as a map.
    pub fn group(&self) -> BTreeMap<String, String> {
        zip_map(&self.group_keys, &self.group_values)
    }
}

/// The lowercase name of an alert state, as stored.
pub fn alert_state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

/// The lowercase name of a severity, as stored.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// One row of `insights`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct InsightRow {
    pub id: String,
    /// `anomaly`, `trend` or `streak`.
    pub kind: String,
    pub aggregate: String,
    pub group_keys: Vec<String>,
    pub group_values: Vec<String>,
    pub measure: String,
    pub window_start: i64,
    pub window_end: i64,
    pub value: f64,
    pub score: f64,
    pub summary: String,
    pub at: i64,
}

impl From<Insight> for InsightRow {
    fn from(i: Insight) -> Self {
        let (group_keys, group_values) = i.group.into_iter().unzip();
        InsightRow {
            id: i.id,
            kind: match i.kind {
                InsightKind::Anomaly => "anomaly",
                InsightKind::Trend => "trend",
                InsightKind::Streak => "streak",
            }
            .to_owned(),
            aggregate: i.aggregate,
            group_keys,
            group_values,
            measure: i.measure,
            window_start: i.window_start,
            window_end: i.window_end,
            value: i.value,
            score: i.score,
            summary: i.summary,
            at: i.at,
        }
    }
}

/// One row of `dead_letters`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    pub id: String,
    pub stage: String,
    pub reason: String,
    /// The original bytes (a ClickHouse `String` holds any bytes).
    #[serde(with = "string_bytes")]
    pub original: Vec<u8>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub at: i64,
}

impl From<DeadLetter> for DeadLetterRow {
    fn from(d: DeadLetter) -> Self {
        DeadLetterRow {
            id: d.id,
            stage: d.stage,
            reason: d.reason,
            original: d.original,
            topic: d.topic,
            partition: d.partition,
            offset: d.offset,
            at: d.at,
        }
    }
}

/// One row of `late_events`: an event that came too late for an aggregate's window or
/// behind a rule's watermark, with the columns of `events` and what it was late for.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LateEventRow {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub subject: String,
    /// Event time, µs since the epoch.
    pub time: i64,
    /// Receive time, µs since the epoch.
    pub received_at: i64,
    pub attr_keys: Vec<String>,
    pub attr_values: Vec<String>,
    pub value: Option<f64>,
    pub payload: Option<String>,
    /// The aggregate's name, or `rule/<name>` for a rule.
    pub aggregate: String,
    /// The window the event belonged to (an aggregate with a known window), µs.
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    /// The watermark when the event arrived minus its event time, µs.
    pub late_by: Option<i64>,
    /// The late record's id, `<stage>/<aggregate>/<topic>/<partition>/<offset>`: what
    /// identifies the row (one event can be late for several aggregates).
    pub late_id: String,
}

impl LateEventRow {
    /// The row of a late record (`late`, read from the late topic) whose `original` bytes
    /// decoded to `event`. The aggregate comes from the record's id, the window from the
    /// aggregate's window in `spec` and the event time, and `late_by` from the watermark
    /// the processor wrote into the reason; all of them are functions of the record, so a
    /// replay writes the same row. A record whose id is not a late record's is refused.
    pub fn from_late(late: &DeadLetter, event: Event, spec: &StoreSpec) -> Result<Self, Mismatch> {
        let aggregate = late_scope(late).ok_or_else(|| {
            Mismatch(format!(
                "record `{}` on the late topic has no `<stage>/<aggregate>/<topic>/<partition>/<offset>` id",
                late.id
            ))
        })?;
        let window = match aggregate.strip_prefix("rule/") {
            Some(_) => None,
            None => spec
                .aggregate(aggregate)
                .and_then(|a| a.window)
                .and_then(|w| w.window_of(event.time)),
        };
        let late_by = reason_watermark(&late.reason).map(|w| w.saturating_sub(event.time));
        let aggregate = aggregate.to_owned();
        let row = EventRow::from(event);
        Ok(LateEventRow {
            id: row.id,
            source: row.source,
            kind: row.kind,
            subject: row.subject,
            time: row.time,
            received_at: row.received_at,
            attr_keys: row.attr_keys,
            attr_values: row.attr_values,
            value: row.value,
            payload: row.payload,
            aggregate,
            window_start: window.map(|w| w.0),
            window_end: window.map(|w| w.1),
            late_by,
            late_id: late.id.clone(),
        })
    }
}

/// The `<aggregate>` of a late record's id (`DeadLetter::position_id` with a scope):
/// what lies between `<stage>/` and `/<topic>/<partition>/<offset>`, read from the
/// record's own fields so neither the stage nor the topic name is assumed.
fn late_scope(late: &DeadLetter) -> Option<&str> {
    let topic = late.topic.as_deref()?;
    let suffix = format!("/{topic}/{}/{}", late.partition?, late.offset?);
    let scope = late
        .id
        .strip_prefix(late.stage.as_str())?
        .strip_prefix('/')?
        .strip_suffix(suffix.as_str())?;
    (!scope.is_empty()).then_some(scope)
}

/// The watermark in a late record's reason. The processor writes it as `the watermark
/// <µs>` (an aggregate: "... is behind the watermark W by more than ..."; a rule: "...
/// arrived after the watermark W: ..."); the last occurrence counts, because an event id
/// quoted earlier in a rule's reason could contain the same words.
fn reason_watermark(reason: &str) -> Option<i64> {
    const MARK: &str = "the watermark ";
    let rest = &reason[reason.rfind(MARK)? + MARK.len()..];
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

/// Results for one `agg_<name>` table, checked against the aggregate's spec. The
/// ClickHouse store encodes them as RowBinary in the column order of
/// [`AggregateRows::columns`]; the Parquet store builds Arrow columns from them.
#[derive(Debug, Clone)]
pub struct AggregateRows {
    spec: AggregateSpec,
    results: Vec<WindowResult>,
}

/// Why a window result does not fit its aggregate's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl AggregateRows {
    /// An empty batch for `spec`'s table.
    pub fn new(spec: AggregateSpec) -> Self {
        AggregateRows {
            spec,
            results: Vec::new(),
        }
    }

    /// The aggregate's spec.
    pub fn spec(&self) -> &AggregateSpec {
        &self.spec
    }

    /// Column list of the insert, quoted, in encoding order.
    pub fn columns(&self) -> String {
        let mut cols: Vec<String> = ["id", "window_start", "window_end"]
            .iter()
            .map(|c| format!("`{c}`"))
            .collect();
        cols.extend(self.spec.group_by.iter().map(|c| format!("`{c}`")));
        cols.extend(self.spec.measures.iter().map(|c| format!("`{c}`")));
        cols.extend(["`count`", "`version`", "`final`"].map(str::to_owned));
        cols.join(", ")
    }

    /// Appends one result. A result naming a group key or measure the spec lacks does not
    /// fit the table and is refused (the caller dead-letters it); keys or measures the
    /// result lacks are written as `''` and `NULL`.
    pub fn push(&mut self, r: &WindowResult) -> Result<(), Mismatch> {
        if let Some(k) = r.group.keys().find(|k| !self.spec.group_by.contains(k)) {
            return Err(Mismatch(format!(
                "group key `{k}` is not in aggregate `{}` of the sink spec",
                self.spec.name
            )));
        }
        if let Some(m) = r.measures.keys().find(|m| !self.spec.measures.contains(m)) {
            return Err(Mismatch(format!(
                "measure `{m}` is not in aggregate `{}` of the sink spec",
                self.spec.name
            )));
        }
        self.results.push(r.clone());
        Ok(())
    }

    /// The results appended, in order.
    pub fn results(&self) -> &[WindowResult] {
        &self.results
    }

    /// Rows appended.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// True when nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The rows as RowBinary, in the column order of [`AggregateRows::columns`].
    pub fn row_binary(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.results.len() * 64);
        for r in &self.results {
            put_string(&mut b, &r.id);
            b.extend_from_slice(&r.window_start.to_le_bytes());
            b.extend_from_slice(&r.window_end.to_le_bytes());
            for k in &self.spec.group_by {
                put_string(&mut b, r.group.get(k).map_or("", String::as_str));
            }
            for m in &self.spec.measures {
                match r.measures.get(m) {
                    Some(v) => {
                        b.push(0);
                        b.extend_from_slice(&v.to_le_bytes());
                    }
                    None => b.push(1),
                }
            }
            b.extend_from_slice(&r.count.to_le_bytes());
            b.extend_from_slice(&(r.version.max(0) as u32).to_le_bytes());
            b.push(u8::from(r.is_final));
        }
        b
    }
}

fn put_string(b: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b.extend_from_slice(s.as_bytes());
}

pub(crate) fn zip_map(keys: &[String], values: &[String]) -> BTreeMap<String, String> {
    keys.iter().cloned().zip(values.iter().cloned()).collect()
}

/// `Vec<u8>` as a ClickHouse `String`: written as bytes, read back from bytes or text.
mod string_bytes {
    use serde::de::Visitor;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(BytesVisitor)
    }

    struct BytesVisitor;

    impl Visitor<'_> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
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

        fn visit_string<E>(self, v: String) -> Result<Vec<u8>, E> {
            Ok(v.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_rows_encode_spec_columns_and_refuse_unknown_ones() {
        let mut rows = AggregateRows::new(AggregateSpec::new("a", &["repo"], &["sum", "max"]));
        assert_eq!(
            rows.columns(),
            "`id`, `window_start`, `window_end`, `repo`, `sum`, `max`, `count`, `version`, `final`"
        );
        let mut r = WindowResult {
            id: "x".into(),
            aggregate: "a".into(),
            window_start: 1,
            window_end: 2,
            group: [("repo".to_owned(), "h".to_owned())].into(),
            measures: [("sum".to_owned(), 1.5)].into(),
            count: 3,
            version: 1,
            is_final: true,
        };
        rows.push(&r).unwrap();
        let mut expected = vec![1, b'x'];
        expected.extend(1i64.to_le_bytes());
        expected.extend(2i64.to_le_bytes());
        expected.extend([1, b'h', 0]);
        expected.extend(1.5f64.to_le_bytes());
        expected.push(1); // max: NULL
        expected.extend(3i64.to_le_bytes());
        expected.extend(1u32.to_le_bytes());
        expected.push(1);
        assert_eq!(rows.row_binary(), expected);
        r.measures.insert("p99".into(), 1.0);
        assert!(rows.push(&r).is_err());
        assert_eq!(rows.len(), 1);
    }

    fn late_event(time: i64) -> Event {
        Event {
            id: "ev-1".into(),
            source: "ci".into(),
            kind: "ci.run".into(),
            subject: "helios".into(),
            time,
            received_at: time + 7,
            attrs: [("branch".to_owned(), "main".to_owned())].into(),
            value: Some(2.5),
            payload: None,
        }
    }

    fn late_record(scope: &str, reason: &str) -> DeadLetter {
        DeadLetter {
            id: DeadLetter::position_id("pipeline/late", Some(scope), "helios.events", 3, 42),
            stage: "pipeline/late".into(),
            reason: reason.into(),
            original: vec![],
            topic: Some("helios.events".into()),
            partition: Some(3),
            offset: Some(42),
            at: 1,
        }
    }

    const MIN: i64 = 60_000_000;

    #[test]
    fn late_rows_name_the_aggregate_its_window_and_how_late() {
        use crate::spec::WindowSpec;
        let spec = StoreSpec {
            aggregates: vec![
                AggregateSpec::new("per_minute", &[], &[])
                    .with_window(WindowSpec::Tumbling { size_us: MIN }),
                AggregateSpec::new("hopping", &[], &[]).with_window(WindowSpec::Hopping {
                    size_us: 3 * MIN,
                    slide_us: MIN,
                }),
                AggregateSpec::new("sessions", &[], &[])
                    .with_window(WindowSpec::Session { gap_us: 5 * MIN }),
                AggregateSpec::new("no_window", &[], &[]),
            ],
            ..StoreSpec::default()
        };
        // As the processor words it (pipeline/src/window and pipeline/src/rules).
        let time = 10 * MIN + 30_000_000;
        let watermark = 20 * MIN;
        let aggregate_reason = format!(
            "aggregate `x`: event time {time} is behind the watermark {watermark} by more than the allowed lateness of 0ns: its window is closed"
        );
        let row = |scope: &str, reason: &str| {
            LateEventRow::from_late(&late_record(scope, reason), late_event(time), &spec).unwrap()
        };
        let r = row("per_minute", &aggregate_reason);
        assert_eq!(r.aggregate, "per_minute");
        assert_eq!(
            (r.window_start, r.window_end),
            (Some(10 * MIN), Some(11 * MIN))
        );
        assert_eq!(r.late_by, Some(watermark - time));
        assert_eq!(r.late_id, "pipeline/late/per_minute/helios.events/3/42");
        // The event's columns are those of `events`.
        let e = EventRow::from(late_event(time));
        assert_eq!(
            (&r.id, &r.source, &r.kind, &r.subject, r.time, r.received_at),
            (&e.id, &e.source, &e.kind, &e.subject, e.time, e.received_at)
        );
        assert_eq!(
            (&r.attr_keys, &r.attr_values, r.value, &r.payload),
            (&e.attr_keys, &e.attr_values, e.value, &e.payload)
        );
        // Hopping: the latest of the event's windows; session: the one it would open.
        let r = row("hopping", &aggregate_reason);
        assert_eq!(
            (r.window_start, r.window_end),
            (Some(10 * MIN), Some(13 * MIN))
        );
        let r = row("sessions", &aggregate_reason);
        assert_eq!(
            (r.window_start, r.window_end),
            (Some(time), Some(time + 5 * MIN))
        );
        // No window known: the row still says which aggregate and how late.
        let r = row("no_window", &aggregate_reason);
        assert_eq!(
            (&*r.aggregate, r.window_start, r.late_by),
            ("no_window", None, Some(watermark - time))
        );
        // A rule: no window; an event id quoting "the watermark" does not fool the parse.
        let rule_reason = format!(
            "rule `r`: event the watermark 1 at time {time} matched rule `r` but arrived after the watermark {watermark}: it is later than the allowed out-of-orderness"
        );
        let r = row("rule/r", &rule_reason);
        assert_eq!(
            (&*r.aggregate, r.window_start, r.window_end),
            ("rule/r", None, None)
        );
        assert_eq!(r.late_by, Some(watermark - time));
        // A reason without a watermark (another writer) leaves only `late_by` unknown.
        assert_eq!(row("per_minute", "late").late_by, None);
        // Negative watermarks (before 1970) parse too.
        assert_eq!(reason_watermark("behind the watermark -5 by"), Some(-5));
    }

    #[test]
    fn late_records_without_a_scoped_id_are_refused_with_the_id() {
        let spec = StoreSpec::default();
        let mut unscoped = late_record("x", "");
        unscoped.id = DeadLetter::position_id("pipeline/late", None, "helios.events", 3, 42);
        let mut elsewhere = late_record("x", "");
        elsewhere.offset = Some(43);
        let mut no_position = late_record("x", "");
        no_position.topic = None;
        for bad in [unscoped, elsewhere, no_position] {
            let err = LateEventRow::from_late(&bad, late_event(0), &spec).unwrap_err();
            assert!(err.0.contains(&bad.id), "{}", err.0);
        }
    }

    #[test]
    fn long_strings_use_leb128_lengths() {
        let mut b = Vec::new();
        put_string(&mut b, &"a".repeat(300));
        assert_eq!(&b[..2], &[0xac, 0x02]);
    }

    #[test]
    fn alert_versions_order_states() {
        let alert = |state, at| Alert {
            id: "a".into(),
            rule: "r".into(),
            group: BTreeMap::new(),
            state,
            since: 1,
            at,
            severity: Severity::Warning,
            summary: String::new(),
            evidence: vec![],
        };
        let firing = AlertRow::from(alert(AlertState::Firing, 10));
        let resolved_same_time = AlertRow::from(alert(AlertState::Resolved, 10));
        assert!(resolved_same_time.version > firing.version);
    }
}
