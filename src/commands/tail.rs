//! `helios tail`: print a topic's records as JSON lines, decoded with the registry: events
//! as events (payload inlined), any other record generically with its writer schema.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use clap::Args;
use helios_log::{ConsumedRecord, ConsumerConfig, OffsetReset};
use helios_schemas::{AvroRecord, Event, EventCodec, SchemaSource, watermark_mark, wire};
use serde_json::{Value, json};

use crate::backend::LogArgs;

/// Print a topic's records as JSON lines, one per record, decoded with the schema registry.
///
/// Without --from-beginning, only records appended from now on are printed (and tail keeps
/// following). With --from-beginning, everything retained is printed; add --follow to keep
/// waiting for new records afterwards.
///
/// Examples:
///   helios tail helios.events --from-beginning
///   helios tail helios.events --follow
///   helios tail helios.alerts --from-beginning
///   helios tail helios.events --kafka 127.0.0.1:9092 --registry http://127.0.0.1:8081
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TailArgs {
    /// The topic to read, e.g. `helios.events`.
    pub topic: String,

    /// Start at the oldest retained record instead of the end.
    #[arg(long)]
    pub from_beginning: bool,

    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short = 'f')]
    pub follow: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let log = args.log.open_log().await?;
    let source = args.log.open_registry()?;
    // Id 0 is never assigned by a registry, so every writer id is looked up; the built-in
    // Event schema still takes the fast path once recognised.
    let codec = EventCodec::with_source(0, source.clone());
    let follow = args.follow || !args.from_beginning;
    let reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };

    // Where "the end" is for a non-following tail: the end offsets as of now.
    let info = log
        .admin()
        .describe_topic(&args.topic)
        .await
        .with_context(|| format!("describing topic `{}` (see `helios topics`)", args.topic))?;
    let mut remaining: BTreeMap<u32, u64> = info
        .partitions
        .iter()
        .filter(|p| p.end_offset > p.start_offset)
        .map(|p| (p.partition, p.end_offset))
        .collect();
    if !follow && remaining.is_empty() {
        return Ok(());
    }

    let group = format!("helios-tail-{}-{}", std::process::id(), unique_suffix());
    let mut consumer = log
        .consumer(
            &[args.topic.as_str()],
            ConsumerConfig::new(group).offset_reset(reset),
        )
        .await?;
    let stdout = std::io::stdout();
    loop {
        let records = consumer.poll(1000, Duration::from_millis(500)).await?;
        let mut out = stdout.lock();
        for r in &records {
            let line = render(&codec, source.as_ref(), r).await;
            if writeln!(out, "{line}").is_err() {
                // The reader went away (`helios tail ... | head`): stop quietly.
                return Ok(());
            }
            if remaining
                .get(&r.partition)
                .is_some_and(|end| r.offset + 1 >= *end)
            {
                remaining.remove(&r.partition);
            }
        }
        out.flush().ok();
        if !follow && remaining.is_empty() {
            return Ok(());
        }
    }
}

async fn render(codec: &EventCodec, source: &dyn SchemaSource, r: &ConsumedRecord) -> Value {
    let mut line = json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp_ms,
        "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
    });
    if let Some(mark) = watermark_mark::read(&r.headers) {
        // Control records of the events topic: shown, so a window closed or an alert
        // fired on a quiet stream can be traced to the mark that moved it.
        match mark {
            Ok(us) => line["watermark_mark"] = json!(us),
            Err(e) => line["error"] = Value::String(e),
        }
        return line;
    }
    match decode(codec, source, &r.value).await {
        Ok(value) => line["value"] = value,
        Err(e) => {
            line["error"] = Value::String(format!("could not decode the value: {e}"));
            line["value_len"] = json!(r.value.len());
        }
    }
    line
}

/// A record as JSON: an `Event` through the event codec, anything else with its writer
/// schema (Confluent framing: the schema id, then the Avro body).
async fn decode(
    codec: &EventCodec,
    source: &dyn SchemaSource,
    bytes: &[u8],
) -> anyhow::Result<Value> {
    let (id, body) = wire::split(bytes)?;
    let schema = source.schema_by_id(id).await?;
    // By name, so that events written with an evolved Event schema still take the event
    // path (and its payload inlining).
    let is_event = match (schema.as_ref(), Event::schema()) {
        (Schema::Record(w), Schema::Record(e)) => w.name == e.name,
        _ => false,
    };
    if is_event {
        return Ok(event_json(codec.decode_async(bytes).await?));
    }
    let reader = GenericDatumReader::builder(schema.as_ref()).build()?;
    let mut input = body;
    let value = reader.read_value(&mut input)?;
    Ok(Value::try_from(value)?)
}

/// The event as JSON, with its payload inlined as JSON rather than as a string.
fn event_json(event: Event) -> Value {
    let payload = event
        .payload
        .as_deref()
        .map(|p| serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.to_string())));
    let mut v = serde_json::to_value(&event).unwrap_or(Value::Null);
    if let (Some(obj), Some(payload)) = (v.as_object_mut(), payload) {
        obj.insert("payload".into(), payload);
    }
    v
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
