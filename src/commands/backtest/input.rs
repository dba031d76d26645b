//! Where a backtest's events come from: the records of a log topic copied as they are,
//! or a file of events encoded as ingest would, into the scratch events topic.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use helios_log::{ConsumerConfig, Log, OffsetReset, Record, TopicInfo, TopicSpec};
use helios_schemas::{AvroRecord, Event, EventCodec, SchemaSource, watermark_mark, wire};
use tracing::warn;

use super::Progress;

/// Records appended to the scratch log per append.
const COPY_BATCH: usize = 8192;
/// Events of a file encoded and appended to the scratch log per append: an append is
/// split by partition, and each part has a fixed cost (20M events: 8192 took 11.6
/// CPU-seconds to read, encode and append, 65536 with the CSV reader reusing its event 6.8).
const FILE_BATCH: usize = 65_536;
/// The schema id events read from a file are written with (scratch only).
const FILE_EVENT_ID: u32 = 1_000_000;
/// Problems of a file's lines shown on stderr before the rest are only counted.
const SHOWN_PROBLEMS: usize = 5;

/// What was read, for the report.
#[derive(Debug, Clone, Default)]
pub struct SourceInfo {
    /// e.g. `helios.events (4 partitions)` or `events.ndjson`.
    pub what: String,
    /// Events copied into the scratch log.
    pub events: u64,
    /// Watermark marks copied (the live processor's, replayed as they were).
    pub marks: u64,
    /// File lines that are not events (skipped).
    pub rejected: u64,
    /// Records of the source before --from or after --to (not copied).
    pub skipped: u64,
    /// Time spent reading and copying.
    pub seconds: f64,
    /// CPU time of this process spent reading and copying, where the OS tells it.
    pub cpu_seconds: Option<f64>,
    /// Whether the events were copied into the scratch log (else read in place).
    pub copied: bool,
}

/// The copied events and the codec the processor decodes them with.
pub struct Copied {
    pub codec: Arc<EventCodec>,
    pub info: SourceInfo,
}

/// The codec for the events of `topic`, read in place: the schema id of its first event.
/// A throw-away consumer that never commits looks; `None` when the topic is empty.
pub async fn peek(
    source: &Log,
    registry: Arc<dyn SchemaSource>,
    topic: &str,
) -> anyhow::Result<(Arc<EventCodec>, SourceInfo)> {
    let started = Instant::now();
    let described = source
        .admin()
        .describe_topic(topic)
        .await
        .with_context(|| format!("describing the topic `{topic}` (see `helios topics`)"))?;
    let (mut remaining, records) = ends(&described);
    let info = SourceInfo {
        what: format!(
            "{topic} ({} partitions, read in place)",
            described.partitions.len()
        ),
        events: records,
        ..SourceInfo::default()
    };
    let mut consumer = source
        .consumer(
            &[topic],
            ConsumerConfig::new(unique_group("peek")).offset_reset(OffsetReset::Earliest),
        )
        .await
        .with_context(|| format!("reading `{topic}`"))?;
    let mut id = None;
    while id.is_none() && !remaining.is_empty() {
        for rec in consumer
            .poll(64, Duration::from_millis(200))
            .await
            .with_context(|| format!("reading `{topic}`"))?
        {
            if rec.offset + 1 >= remaining.get(&rec.partition).copied().unwrap_or(0) {
                remaining.remove(&rec.partition);
            }
            if watermark_mark::read(&rec.headers).is_none()
                && let Ok((found, _)) = wire::split(&rec.value)
            {
                id = Some(found);
                break;
            }
        }
    }
    let codec = match id {
        Some(id) => event_codec(id, registry).await?,
        None => EventCodec::with_source(0, registry),
    };
    let mut info = info;
    info.seconds = started.elapsed().as_secs_f64();
    Ok((Arc::new(codec), info))
}

/// The end offset of each non-empty partition of a described topic (what a backtest reads
/// up to), and the records held in all.
fn ends(described: &TopicInfo) -> (BTreeMap<u32, u64>, u64) {
    let ends = described
        .partitions
        .iter()
        .filter(|p| p.end_offset > p.start_offset)
        .map(|p| (p.partition, p.end_offset))
        .collect();
    let records = described
        .partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum();
    (ends, records)
}

/// A consumer group name no other reader has: the live log's groups stay as they are.
pub fn unique_group(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("helios-backtest-{what}-{}-{nanos}", std::process::id())
}

/// Copies the records of `topic` on `source` (stored from `from` to `to`, ms) into
/// `dest_topic` of the scratch log, partition by partition, bytes, keys, headers and
/// timestamps unchanged. Reads with a consumer group of its own that never commits.
#[allow(clippy::too_many_arguments)]
pub async fn from_log(
    source: &Log,
    registry: Arc<dyn SchemaSource>,
    topic: &str,
    from: Option<i64>,
    to: Option<i64>,
    dest: &Log,
    dest_topic: &str,
    progress: &Progress,
) -> anyhow::Result<Copied> {
    let started = Instant::now();
    let described = source
        .admin()
        .describe_topic(topic)
        .await
        .with_context(|| format!("describing the topic `{topic}` (see `helios topics`)"))?;
    let partitions = described.partitions.len() as u32;
    dest.admin()
        .create_topic(&TopicSpec::new(dest_topic, partitions.max(1)))
        .await
        .context("creating the scratch events topic")?;
    // The end of each partition as the backtest starts: what is appended meanwhile waits
    // for the next backtest.
    let (mut remaining, total) = ends(&described);
    let bar = progress.bar("reading", total);
    let mut consumer = source
        .consumer(
            &[topic],
            ConsumerConfig::new(unique_group("copy")).offset_reset(OffsetReset::Earliest),
        )
        .await
        .with_context(|| format!("reading `{topic}`"))?;
    let producer = dest.producer();
    let mut info = SourceInfo {
        what: format!("{topic} ({partitions} partitions)"),
        copied: true,
        ..SourceInfo::default()
    };
    let mut event_id = None;
    let mut batch = Vec::with_capacity(COPY_BATCH);
    while !remaining.is_empty() {
        let records = consumer
            .poll(COPY_BATCH, Duration::from_millis(200))
            .await
            .with_context(|| format!("reading `{topic}`"))?;
        bar.inc(records.len() as u64);
        for rec in records {
            let Some(&end) = remaining.get(&rec.partition) else {
                continue;
            };
            if rec.offset >= end {
                remaining.remove(&rec.partition);
                continue;
            }
            if rec.offset + 1 >= end {
                remaining.remove(&rec.partition);
            }
            if from.is_some_and(|f| rec.timestamp_ms < f) {
                info.skipped += 1;
                continue;
            }
            if to.is_some_and(|t| rec.timestamp_ms > t) {
                // Timestamps grow along a partition: the rest is later still.
                info.skipped += end - rec.offset;
                remaining.remove(&rec.partition);
                continue;
            }
            if watermark_mark::read(&rec.headers).is_some() {
                info.marks += 1;
            } else {
                info.events += 1;
                if event_id.is_none()
                    && let Ok((id, _)) = wire::split(&rec.value)
                {
                    event_id = Some(id);
                }
            }
            batch.push(Record {
                key: rec.key,
                value: rec.value,
                timestamp_ms: Some(rec.timestamp_ms),
                headers: rec.headers,
                partition: Some(rec.partition),
            });
        }
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(COPY_BATCH));
            producer
                .append(dest_topic, full)
                .await
                .context("copying events into the scratch log")?;
        }
    }
    bar.finish_and_clear();
    info.seconds = started.elapsed().as_secs_f64();
    let codec = match event_id {
        Some(id) => event_codec(id, registry).await?,
        None => EventCodec::with_source(0, registry),
    };
    Ok(Copied {
        codec: Arc::new(codec),
        info,
    })
}

/// The codec for events written with schema `id`: the fast built-in path when `id` is the
/// Event schema Helios writes, the registry's writer schema otherwise.
async fn event_codec(id: u32, registry: Arc<dyn SchemaSource>) -> anyhow::Result<EventCodec> {
    let writer = registry
        .schema_by_id(id)
        .await
        .with_context(|| format!("looking up the events' schema id {id} in the registry"))?;
    if writer.canonical_form() == Event::schema().canonical_form() {
        Ok(EventCodec::with_source(id, registry))
    } else {
        warn!(
            schema_id = id,
            "The events were written with another Event schema; decoding them through it (slower)."
        );
        // Id 0 is never assigned: every id is resolved through the registry.
        Ok(EventCodec::with_source(0, registry))
    }
}

/// Reads events from `file` (`.ndjson` CloudEvents or `.csv`) dated from `from` to `to`
/// (ms), and appends them to `dest_topic`, keyed by subject as ingest does.
pub async fn from_file(
    file: &Path,
    dest: &Log,
    dest_topic: &str,
    from: Option<i64>,
    to: Option<i64>,
    progress: &Progress,
) -> anyhow::Result<Copied> {
    let started = Instant::now();
    let name = file.display().to_string();
    let csv = match file.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => true,
        Some(e) if e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl") => false,
        _ => bail!("{name}: name the file .ndjson (CloudEvents, one per line) or .csv"),
    };
    let handle = std::fs::File::open(file).with_context(|| format!("opening {name}"))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress.bar("reading", size);
    let mut reader = BufReader::with_capacity(1 << 20, handle);
    let codec = EventCodec::new(FILE_EVENT_ID);
    let producer = dest.producer();
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let (from_us, to_us) = (
        from.map(|f| f.saturating_mul(1000)),
        to.map(|t| t.saturating_mul(1000)),
    );
    let mut info = SourceInfo {
        what: name.clone(),
        copied: true,
        ..SourceInfo::default()
    };
    let mut batch = Encoded::default();
    let problem = |info: &mut SourceInfo, line: usize, why: &str| {
        info.rejected += 1;
        if info.rejected as usize <= SHOWN_PROBLEMS {
            warn!(file = %name, line, reason = why, "Skipping a line that is not an event.");
        }
    };
    let accept = |event: &Event, info: &mut SourceInfo, batch: &mut Encoded| {
        if from_us.is_some_and(|f| event.time < f) || to_us.is_some_and(|t| event.time > t) {
            info.skipped += 1;
            return;
        }
        info.events += 1;
        batch.push(&codec, event);
    };
    let mut line = String::new();
    let mut unreported = 0u64;
    let mut number = 0usize;
    let mut columns: Option<Csv> = None;
    // NDJSON lines are parsed in chunks by the ingest parser: (first line number, body).
    let mut chunk = Vec::new();
    let mut chunk_lines: Vec<usize> = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("reading {name}"))?;
        // The bar is moved per batch: per line, its clock read costs more than the line.
        unreported += n as u64;
        let at_end = n == 0;
        if !at_end {
            number += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                // Blank lines carry nothing.
            } else if csv {
                match &mut columns {
                    None => columns = Some(Csv::header(text).with_context(|| format!("{name}:1"))?),
                    Some(cols) => match cols.event(text, received_at) {
                        Ok(event) => accept(event, &mut info, &mut batch),
                        Err(why) => problem(&mut info, number, &why),
                    },
                }
            } else {
                chunk.extend_from_slice(text.as_bytes());
                chunk.push(b'\n');
                chunk_lines.push(number);
            }
        }
        if !csv && (chunk_lines.len() >= FILE_BATCH || (at_end && !chunk_lines.is_empty())) {
            let items = helios_schemas::cloudevents::parse_body(
                Some("application/x-ndjson"),
                &chunk,
                received_at,
            )
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Ok(event) => accept(&event, &mut info, &mut batch),
                    Err(e) => problem(
                        &mut info,
                        chunk_lines
                            .get(e.index)
                            .or(chunk_lines.get(i))
                            .copied()
                            .unwrap_or(0),
                        &e.to_string(),
                    ),
                }
            }
            chunk.clear();
            chunk_lines.clear();
        }
        if batch.len() >= FILE_BATCH || (at_end && batch.len() > 0) {
            bar.inc(std::mem::take(&mut unreported));
            let full = batch.take();
            producer
                .append(dest_topic, full)
                .await
                .context("writing events into the scratch log")?;
        }
        if at_end {
            break;
        }
    }
    bar.finish_and_clear();
    if info.rejected > SHOWN_PROBLEMS as u64 {
        warn!(file = %name, skipped = info.rejected, "Lines that are not events were skipped.");
    }
    info.seconds = started.elapsed().as_secs_f64();
    Ok(Copied {
        codec: Arc::new(EventCodec::new(FILE_EVENT_ID)),
        info,
    })
}

/// Encoded events of one append: their keys (subjects) and values in two buffers, so a
/// batch costs two allocations, not two per event.
#[derive(Default)]
struct Encoded {
    keys: Vec<u8>,
    values: Vec<u8>,
    /// (end of the key, end of the value) of each event.
    ends: Vec<(usize, usize)>,
}

impl Encoded {
    fn push(&mut self, codec: &EventCodec, event: &Event) {
        self.keys.extend_from_slice(event.subject.as_bytes());
        codec.encode_into(event, &mut self.values);
        self.ends.push((self.keys.len(), self.values.len()));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The records, keyed by subject; empties the batch.
    fn take(&mut self) -> Vec<Record> {
        let keys = Bytes::from(std::mem::take(&mut self.keys));
        let values = Bytes::from(std::mem::take(&mut self.values));
        let mut out = Vec::with_capacity(self.ends.len());
        let (mut key, mut value) = (0, 0);
        for (k, v) in self.ends.drain(..) {
            out.push(Record::keyed(keys.slice(key..k), values.slice(value..v)));
            (key, value) = (k, v);
        }
        out
    }
}

/// The columns of a CSV file of events, and the event its lines are read into: the
/// event's strings keep their buffers from line to line, so an unquoted line costs no
/// allocation (a file of millions of lines is read at the speed of the encoder).
struct Csv {
    columns: Vec<Column>,
    event: Event,
}

/// What a CSV column holds.
enum Column {
    Id,
    Source,
    Kind,
    Subject,
    Time,
    Value,
    Attr(String),
}

impl Csv {
    fn header(line: &str) -> anyhow::Result<Csv> {
        let names: Vec<String> = split_csv(line)
            .into_iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        for needed in ["id", "source", "time"] {
            if !names.iter().any(|n| n == needed) {
                bail!(
                    "the CSV header has no `{needed}` column; it needs id, source, type (or kind) and time, and may have subject, value and attributes"
                );
            }
        }
        if !names.iter().any(|n| n == "type" || n == "kind") {
            bail!("the CSV header has no `type` (or `kind`) column");
        }
        let columns = names
            .into_iter()
            .map(|name| match name.as_str() {
                "id" => Column::Id,
                "source" => Column::Source,
                "type" | "kind" => Column::Kind,
                "subject" => Column::Subject,
                "time" => Column::Time,
                "value" => Column::Value,
                _ => Column::Attr(name),
            })
            .collect();
        Ok(Csv {
            columns,
            event: Event::default(),
        })
    }

    /// The event of one line (valid until the next line is read).
    fn event(&mut self, line: &str, received_at: i64) -> Result<&Event, String> {
        if line.contains('"') {
            let fields = split_csv(line);
            self.fill(fields.iter().map(String::as_str), fields.len(), received_at)
        } else {
            let count = line.bytes().filter(|&b| b == b',').count() + 1;
            self.fill(line.split(','), count, received_at)
        }
    }

    fn fill<'a>(
        &mut self,
        fields: impl Iterator<Item = &'a str>,
        count: usize,
        received_at: i64,
    ) -> Result<&Event, String> {
        if count != self.columns.len() {
            return Err(format!(
                "{count} fields where the header has {}",
                self.columns.len()
            ));
        }
        let event = &mut self.event;
        event.id.clear();
        event.source.clear();
        event.kind.clear();
        event.subject.clear();
        event.attrs.clear();
        event.value = None;
        event.payload = None;
        event.received_at = received_at;
        let mut time = None;
        for (column, value) in self.columns.iter().zip(fields) {
            match column {
                Column::Id => set(&mut event.id, value),
                Column::Source => set(&mut event.source, value),
                Column::Kind => set(&mut event.kind, value),
                Column::Subject => set(&mut event.subject, value),
                Column::Time => time = Some(parse_event_time(value)?),
                Column::Value if value.is_empty() => event.value = None,
                Column::Value => {
                    event.value = Some(
                        value
                            .parse()
                            .map_err(|_| format!("value `{value}` is not a number"))?,
                    )
                }
                Column::Attr(_) if value.is_empty() => {}
                Column::Attr(name) => {
                    event.attrs.insert(name.clone(), value.to_string());
                }
            }
        }
        if event.id.is_empty() || event.source.is_empty() || event.kind.is_empty() {
            return Err("id, source and type must not be empty".into());
        }
        event.time = time.ok_or("no time")?;
        Ok(&self.event)
    }
}

/// `to = from`, in `to`'s buffer.
fn set(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

/// An event time: RFC 3339 (a space for the `T` and no offset mean UTC), or an integer
/// of milliseconds since the epoch. µs.
fn parse_event_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms.saturating_mul(1000));
    }
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .or_else(|_| humantime::parse_rfc3339(s))
        .map_err(|_| format!("time `{s}` is neither RFC 3339 nor milliseconds since 1970"))?;
    let us = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("time `{s}` is before 1970"))?
        .as_micros();
    i64::try_from(us).map_err(|_| format!("time `{s}` is out of range"))
}

/// Splits one CSV line: commas, fields optionally in double quotes (`""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_become_events() {
        assert_eq!(
            split_csv(r#"a,"b,c","d""e",,"#),
            ["a", "b,c", "d\"e", "", ""]
        );
        let mut csv = Csv::header("id,source,type,subject,time,value,branch").unwrap();
        let e = csv
            .event("1,ci,ci.run,helios,2024-01-01T00:00:01Z,2.5,main", 7)
            .unwrap()
            .clone();
        assert_eq!(
            (e.id.as_str(), e.kind.as_str(), e.subject.as_str()),
            ("1", "ci.run", "helios")
        );
        assert_eq!(e.time, 1_704_067_201_000_000);
        assert_eq!(e.value, Some(2.5));
        assert_eq!(e.attrs["branch"], "main");
        assert_eq!(e.received_at, 7);
        // The next line reuses the event: nothing of the first one is left over.
        let ms = csv.event("2,ci,ci.run,,1704067201000,,", 7).unwrap();
        assert_eq!(
            (ms.time, ms.value, ms.attrs.len(), ms.subject.as_str()),
            (1_704_067_201_000_000, None, 0, "")
        );
        // Quoted fields take the other path and read the same.
        let q = csv
            .event(r#""3","ci","ci.run","a,b",1704067201000,"1","x""y""#, 7)
            .unwrap();
        assert_eq!(
            (
                q.id.as_str(),
                q.subject.as_str(),
                q.value,
                q.attrs["branch"].as_str()
            ),
            ("3", "a,b", Some(1.0), "x\"y")
        );
        assert!(
            csv.event("4,ci,ci.run,x,1704067201000,,main,extra", 7)
                .is_err()
        );
        assert!(csv.event("3,ci,ci.run,x,yesterday,,", 7).is_err());
        assert!(csv.event("3,ci", 7).is_err());
        assert!(Csv::header("id,type,time").is_err());
    }
}
