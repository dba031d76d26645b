//! The Arrow schemas of the embedded tables (the same names, columns and types as the
//! ClickHouse tables) and how rows become record batches.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Float64Array, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, UInt8Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use helios_schemas::WindowResult;

use crate::rows::{AlertRow, DeadLetterRow, EventRow, InsightRow, LateEventRow};
use crate::spec::{AggregateSpec, StoreSpec};

/// One table of the store: its name, schema, the column its day partition and retention
/// go by, the columns that identify a record, and the column that orders versions of one
/// record (`None`: every copy is the same).
#[derive(Debug, Clone)]
pub struct Table {
    /// Table name, as in ClickHouse.
    pub name: String,
    /// Columns, as in ClickHouse.
    pub schema: SchemaRef,
    /// Time column (µs since the epoch) for partitions and retention.
    pub time_column: &'static str,
    /// What identifies one record: reads keep one row per value of these. `id` for
    /// records Helios derives (unique by construction); `(source, id)` for events, as
    /// CloudEvents defines, so one source cannot hide another's events by reusing ids.
    pub key_columns: &'static [&'static str],
    /// Newest version wins on read.
    pub version_column: Option<&'static str>,
}

/// The identity of Helios' own records.
const BY_ID: &[&str] = &["id"];

fn list_of_strings() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn field(name: &str, t: DataType, nullable: bool) -> Field {
    Field::new(name, t, nullable)
}

/// `events`.
pub fn events() -> Table {
    let s = Schema::new(vec![
        field("id", DataType::Utf8, false),
        field("source", DataType::Utf8, false),
        field("kind", DataType::Utf8, false),
        field("subject", DataType::Utf8, false),
        field("time", DataType::Int64, false),
        field("received_at", DataType::Int64, false),
        field("attr_keys", list_of_strings(), false),
        field("attr_values", list_of_strings(), false),
        field("value", DataType::Float64, true),
        field("payload", DataType::Utf8, true),
    ]);
    Table {
        name: "events".into(),
        schema: Arc::new(s),
        time_column: "time",
        key_columns: &["source", "id"],
        // Of two deliveries of one event (a retry without a `time` gets a new one), the
        // last received wins, as ClickHouse keeps the last inserted.
        version_column: Some("received_at"),
    }
}

/// `alerts`.
pub fn alerts() -> Table {
    let s = Schema::new(vec![
        field("id", DataType::Utf8, false),
        field("rule", DataType::Utf8, false),
        field("group_keys", list_of_strings(), false),
        field("group_values", list_of_strings(), false),
        field("state", DataType::Utf8, false),
        field("since", DataType::Int64, false),
        field("at", DataType::Int64, false),
        field("severity", DataType::Utf8, false),
        field("summary", DataType::Utf8, false),
        field("evidence", list_of_strings(), false),
        field("version", DataType::UInt64, false),
    ]);
    Table {
        name: "alerts".into(),
        schema: Arc::new(s),
        time_column: "since",
        key_columns: BY_ID,
        version_column: Some("version"),
    }
}

/// `insights`.
pub fn insights() -> Table {
    let s = Schema::new(vec![
        field("id", DataType::Utf8, false),
        field("kind", DataType::Utf8, false),
        field("aggregate", DataType::Utf8, false),
        field("group_keys", list_of_strings(), false),
        field("group_values", list_of_strings(), false),
        field("measure", DataType::Utf8, false),
        field("window_start", DataType::Int64, false),
        field("window_end", DataType::Int64, false),
        field("value", DataType::Float64, false),
        field("score", DataType::Float64, false),
        field("summary", DataType::Utf8, false),
        field("at", DataType::Int64, false),
    ]);
    Table {
        name: "insights".into(),
        schema: Arc::new(s),
        time_column: "window_start",
        key_columns: BY_ID,
        version_column: None,
    }
}

/// `dead_letters`.
pub fn dead_letters() -> Table {
    let s = Schema::new(vec![
        field("id", DataType::Utf8, false),
        field("stage", DataType::Utf8, false),
        field("reason", DataType::Utf8, false),
        field("original", DataType::Binary, false),
        field("topic", DataType::Utf8, true),
        field("partition", DataType::Int32, true),
        field("offset", DataType::Int64, true),
        field("at", DataType::Int64, false),
    ]);
    Table {
        name: "dead_letters".into(),
        schema: Arc::new(s),
        time_column: "at",
        key_columns: BY_ID,
        version_column: None,
    }
}

/// `late_events`: the columns of `events`, then what the event was late for. One row per
/// late record (`late_id`): an event late for two aggregates is two rows.
pub fn late_events() -> Table {
    let mut fields: Vec<Field> = events()
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend([
        field("aggregate", DataType::Utf8, false),
        field("window_start", DataType::Int64, true),
        field("window_end", DataType::Int64, true),
        field("late_by", DataType::Int64, true),
        field("late_id", DataType::Utf8, false),
    ]);
    Table {
        name: "late_events".into(),
        schema: Arc::new(Schema::new(fields)),
        time_column: "time",
        key_columns: &["late_id"],
        version_column: None,
    }
}

/// `agg_<name>`: window, one `Utf8` column per group key, one nullable `Float64` per
/// measure, count, version, final.
pub fn aggregate(spec: &AggregateSpec) -> Table {
    let mut fields = vec![
        field("id", DataType::Utf8, false),
        field("window_start", DataType::Int64, false),
        field("window_end", DataType::Int64, false),
    ];
    fields.extend(spec.group_by.iter().map(|k| field(k, DataType::Utf8, true)));
    fields.extend(
        spec.measures
            .iter()
            .map(|m| field(m, DataType::Float64, true)),
    );
    fields.extend([
        field("count", DataType::Int64, false),
        field("version", DataType::UInt32, false),
        field("final", DataType::UInt8, false),
    ]);
    Table {
        name: spec.table(),
        schema: Arc::new(Schema::new(fields)),
        time_column: "window_start",
        key_columns: BY_ID,
        version_column: Some("version"),
    }
}

/// Every table of `spec`: the five fixed ones and one per aggregate.
pub fn all(spec: &StoreSpec) -> Vec<Table> {
    let mut out = vec![
        events(),
        alerts(),
        insights(),
        dead_letters(),
        late_events(),
    ];
    out.extend(spec.aggregates.iter().map(aggregate));
    out
}

fn strings<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(it))
}

fn opt_strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}

fn i64s(it: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(it))
}

fn f64s(it: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(it))
}

fn opt_f64s(it: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from_iter(it))
}

fn lists<'a>(it: impl Iterator<Item = &'a [String]>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for list in it {
        for s in list {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

/// `rows` as one batch of `events`.
pub fn events_batch(rows: &[&EventRow]) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    RecordBatch::try_new(
        events().schema,
        vec![
            strings(r().map(|e| e.id.as_str())),
            strings(r().map(|e| e.source.as_str())),
            strings(r().map(|e| e.kind.as_str())),
            strings(r().map(|e| e.subject.as_str())),
            i64s(r().map(|e| e.time)),
            i64s(r().map(|e| e.received_at)),
            lists(r().map(|e| e.attr_keys.as_slice())),
            lists(r().map(|e| e.attr_values.as_slice())),
            opt_f64s(r().map(|e| e.value)),
            opt_strings(r().map(|e| e.payload.as_deref())),
        ],
    )
}

/// `rows` as one batch of `alerts`.
pub fn alerts_batch(rows: &[&AlertRow]) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    RecordBatch::try_new(
        alerts().schema,
        vec![
            strings(r().map(|a| a.id.as_str())),
            strings(r().map(|a| a.rule.as_str())),
            lists(r().map(|a| a.group_keys.as_slice())),
            lists(r().map(|a| a.group_values.as_slice())),
            strings(r().map(|a| a.state.as_str())),
            i64s(r().map(|a| a.since)),
            i64s(r().map(|a| a.at)),
            strings(r().map(|a| a.severity.as_str())),
            strings(r().map(|a| a.summary.as_str())),
            lists(r().map(|a| a.evidence.as_slice())),
            Arc::new(UInt64Array::from_iter_values(r().map(|a| a.version))),
        ],
    )
}

/// `rows` as one batch of `insights`.
pub fn insights_batch(rows: &[&InsightRow]) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    RecordBatch::try_new(
        insights().schema,
        vec![
            strings(r().map(|i| i.id.as_str())),
            strings(r().map(|i| i.kind.as_str())),
            strings(r().map(|i| i.aggregate.as_str())),
            lists(r().map(|i| i.group_keys.as_slice())),
            lists(r().map(|i| i.group_values.as_slice())),
            strings(r().map(|i| i.measure.as_str())),
            i64s(r().map(|i| i.window_start)),
            i64s(r().map(|i| i.window_end)),
            f64s(r().map(|i| i.value)),
            f64s(r().map(|i| i.score)),
            strings(r().map(|i| i.summary.as_str())),
            i64s(r().map(|i| i.at)),
        ],
    )
}

/// `rows` as one batch of `dead_letters`.
pub fn dead_letters_batch(rows: &[&DeadLetterRow]) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    RecordBatch::try_new(
        dead_letters().schema,
        vec![
            strings(r().map(|d| d.id.as_str())),
            strings(r().map(|d| d.stage.as_str())),
            strings(r().map(|d| d.reason.as_str())),
            Arc::new(BinaryArray::from_iter_values(
                r().map(|d| d.original.as_slice()),
            )),
            opt_strings(r().map(|d| d.topic.as_deref())),
            Arc::new(Int32Array::from_iter(r().map(|d| d.partition))),
            Arc::new(Int64Array::from_iter(r().map(|d| d.offset))),
            i64s(r().map(|d| d.at)),
        ],
    )
}

/// `rows` as one batch of `late_events`.
pub fn late_events_batch(rows: &[&LateEventRow]) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    RecordBatch::try_new(
        late_events().schema,
        vec![
            strings(r().map(|e| e.id.as_str())),
            strings(r().map(|e| e.source.as_str())),
            strings(r().map(|e| e.kind.as_str())),
            strings(r().map(|e| e.subject.as_str())),
            i64s(r().map(|e| e.time)),
            i64s(r().map(|e| e.received_at)),
            lists(r().map(|e| e.attr_keys.as_slice())),
            lists(r().map(|e| e.attr_values.as_slice())),
            opt_f64s(r().map(|e| e.value)),
            opt_strings(r().map(|e| e.payload.as_deref())),
            strings(r().map(|e| e.aggregate.as_str())),
            Arc::new(Int64Array::from_iter(r().map(|e| e.window_start))),
            Arc::new(Int64Array::from_iter(r().map(|e| e.window_end))),
            Arc::new(Int64Array::from_iter(r().map(|e| e.late_by))),
            strings(r().map(|e| e.late_id.as_str())),
        ],
    )
}

/// `results` as one batch of `spec`'s table.
pub fn aggregate_batch(
    spec: &AggregateSpec,
    results: &[&WindowResult],
) -> Result<RecordBatch, ArrowError> {
    let r = || results.iter();
    let mut columns = vec![
        strings(r().map(|w| w.id.as_str())),
        i64s(r().map(|w| w.window_start)),
        i64s(r().map(|w| w.window_end)),
    ];
    for k in &spec.group_by {
        columns.push(strings(
            r().map(|w| w.group.get(k).map_or("", String::as_str)),
        ));
    }
    for m in &spec.measures {
        columns.push(opt_f64s(r().map(|w| w.measures.get(m).copied())));
    }
    columns.push(i64s(r().map(|w| w.count)));
    columns.push(Arc::new(UInt32Array::from_iter_values(
        r().map(|w| w.version.max(0) as u32),
    )));
    columns.push(Arc::new(UInt8Array::from_iter_values(
        r().map(|w| u8::from(w.is_final)),
    )));
    RecordBatch::try_new(aggregate(spec).schema, columns)
}
