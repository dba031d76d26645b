//! Where a backtest's events come from: the records of a log topic copied as they are,
//! or a file of events encoded as ingest would, into the scratch events topic.

use std::collections::BTreeMap;
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
pub const FILE_EVENT_ID: u32 = 1_000_000;
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
    /// Whether a file's events were fed to the processors as they were read (no scratch
    /// log); `seconds` and `cpu_seconds` are then the reading alone.
    pub direct: bool,
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

/// Where the events of a file go, a chunk at a time, in file order.
pub enum Sink<'a> {
    /// Encoded as ingest would and appended to `topic` of the scratch log, keyed by
    /// subject (`--via-log`); [`Processor::run_to_end`] reads them back.
    ///
    /// [`Processor::run_to_end`]: helios_pipeline::runtime::Processor::run_to_end
    Log { log: &'a Log, topic: &'a str },
    /// Fed to each spec's processor as they are (see [`helios_pipeline::runtime::Direct`]).
    Direct(&'a mut [super::DirectRun]),
}

/// Events parsed from a file and handed to the sink together: small enough that the
/// processor finds them still in the cache the parser left them in.
const FILE_CHUNK: usize = 4096;
/// Events fed to a processor between writes of its outputs (each write has a fixed cost).
const DIRECT_FLUSH: usize = 65_536;

/// A sink with its buffers.
struct Delivery<'a> {
    sink: Sink<'a>,
    codec: EventCodec,
    /// `Sink::Log`: encoded events not yet appended.
    encoded: Encoded,
    /// `Sink::Direct`: events fed since the processors' outputs were last written.
    unflushed: usize,
    /// `Sink::Direct`: wall time in the processors (the rest is reading the file).
    busy: Duration,
}

impl Delivery<'_> {
    async fn deliver(&mut self, events: &[Event], last: bool) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Log { log, topic } => {
                for event in events {
                    self.encoded.push(&self.codec, event);
                }
                if self.encoded.len() >= FILE_BATCH || (last && self.encoded.len() > 0) {
                    log.producer()
                        .append(topic, self.encoded.take())
                        .await
                        .context("writing events into the scratch log")?;
                }
            }
            Sink::Direct(runs) => {
                let started = Instant::now();
                self.unflushed += events.len();
                let flush = self.unflushed >= DIRECT_FLUSH;
                if flush {
                    self.unflushed = 0;
                }
                // Each run's CPU time: the operators, and encoding and writing their
                // outputs, all on this thread (the backtest runs on the runtime's own).
                let mut mark = thread_cpu();
                for run in runs.iter_mut() {
                    run.direct.process(events);
                    if flush {
                        run.direct
                            .flush()
                            .await
                            .with_context(|| format!("writing the {} spec's outputs", run.role))?;
                    }
                    let now = thread_cpu();
                    run.cpu += now.saturating_sub(mark);
                    mark = now;
                }
                self.busy += started.elapsed();
            }
        }
        Ok(())
    }
}

/// CPU time of the calling thread (0 where the OS does not tell it).
pub fn thread_cpu() -> Duration {
    // The first field: time on a CPU, ns. Read where it is cheap and precise (clock ticks
    // of /proc/self/stat are 10 ms, longer than a chunk of events takes).
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split(' ').next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Reads events from `file` (`.ndjson` CloudEvents or `.csv`) dated from `from` to `to`
/// (ms), and gives them to `sink` in file order.
pub async fn from_file(
    file: &Path,
    from: Option<i64>,
    to: Option<i64>,
    progress: &Progress,
    sink: Sink<'_>,
) -> anyhow::Result<Copied> {
    let started = Instant::now();
    let cpu_started = thread_cpu();
    let name = file.display().to_string();
    let csv = match file.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => true,
        Some(e) if e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl") => false,
        _ => bail!("{name}: name the file .ndjson (CloudEvents, one per line) or .csv"),
    };
    let handle = std::fs::File::open(file).with_context(|| format!("opening {name}"))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress.bar("reading", size);
    let direct = matches!(sink, Sink::Direct(_));
    let mut out = Delivery {
        sink,
        codec: EventCodec::new(FILE_EVENT_ID),
        encoded: Encoded::default(),
        unflushed: 0,
        busy: Duration::ZERO,
    };
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let (from_us, to_us) = (
        from.map(|f| f.saturating_mul(1000)),
        to.map(|t| t.saturating_mul(1000)),
    );
    let in_range = |event: &Event| {
        !(from_us.is_some_and(|f| event.time < f) || to_us.is_some_and(|t| event.time > t))
    };
    let mut info = SourceInfo {
        what: name.clone(),
        copied: !direct,
        direct,
        ..SourceInfo::default()
    };
    let problem = |info: &mut SourceInfo, line: usize, why: &str| {
        info.rejected += 1;
        if info.rejected as usize <= SHOWN_PROBLEMS {
            warn!(file = %name, line, reason = why, "Skipping a line that is not an event.");
        }
    };
    // The chunk's events; their allocations are reused from chunk to chunk.
    let mut chunk: Vec<Event> = Vec::with_capacity(FILE_CHUNK);
    let mut filled = 0usize;
    let mut columns: Option<Csv> = None;
    // NDJSON lines are parsed a chunk at a time by the ingest parser: (line number, body).
    let mut json = Vec::new();
    let mut json_lines: Vec<usize> = Vec::new();
    let mut lines = Lines::new(handle);
    let mut unreported = 0u64;
    loop {
        let block = lines
            .next_block()
            .with_context(|| format!("reading {name}"))?;
        let at_end = block.is_none();
        if let Some((first, text, bytes)) = block {
            unreported += bytes as u64;
            for (i, line) in text.split('\n').enumerate() {
                let number = first + i;
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() {
                    // Blank lines carry nothing.
                    continue;
                }
                if !csv {
                    json.extend_from_slice(line.as_bytes());
                    json.push(b'\n');
                    json_lines.push(number);
                    continue;
                }
                let Some(cols) = &columns else {
                    columns = Some(Csv::header(line).with_context(|| format!("{name}:{number}"))?);
                    continue;
                };
                if filled == chunk.len() {
                    chunk.push(Event::default());
                }
                let event = &mut chunk[filled];
                match cols.fill(line, received_at, event) {
                    Ok(()) if in_range(event) => {
                        info.events += 1;
                        filled += 1;
                    }
                    Ok(()) => info.skipped += 1,
                    Err(why) => problem(&mut info, number, &why),
                }
                if filled == FILE_CHUNK {
                    out.deliver(&chunk[..filled], false).await?;
                    filled = 0;
                }
            }
        }
        if !csv && (json_lines.len() >= FILE_CHUNK || (at_end && !json_lines.is_empty())) {
            let items = helios_schemas::cloudevents::parse_body(
                Some("application/x-ndjson"),
                &json,
                received_at,
            )
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Ok(event) if in_range(&event) => {
                        info.events += 1;
                        if filled == chunk.len() {
                            chunk.push(event);
                        } else {
                            chunk[filled] = event;
                        }
                        filled += 1;
                    }
                    Ok(_) => info.skipped += 1,
                    Err(e) => problem(
                        &mut info,
                        json_lines
                            .get(e.index)
                            .or(json_lines.get(i))
                            .copied()
                            .unwrap_or(0),
                        &e.to_string(),
                    ),
                }
            }
            json.clear();
            json_lines.clear();
            for part in chunk[..filled].chunks(FILE_CHUNK) {
                out.deliver(part, false).await?;
            }
            filled = 0;
        }
        // The bar is moved per block: per line, its clock read costs more than the line.
        bar.inc(std::mem::take(&mut unreported));
        if at_end {
            out.deliver(&chunk[..filled], true).await?;
            break;
        }
    }
    bar.finish_and_clear();
    if info.rejected > SHOWN_PROBLEMS as u64 {
        warn!(file = %name, skipped = info.rejected, "Lines that are not events were skipped.");
    }
    // What the processors took (their own CPU time is reported per run) is not reading.
    info.seconds = started.elapsed().saturating_sub(out.busy).as_secs_f64();
    if let Sink::Direct(runs) = &out.sink {
        let processing: Duration = runs.iter().map(|r| r.cpu).sum();
        let cpu = thread_cpu().saturating_sub(cpu_started);
        info.cpu_seconds = (!cpu.is_zero()).then(|| cpu.saturating_sub(processing).as_secs_f64());
    }
    Ok(Copied {
        codec: Arc::new(EventCodec::new(FILE_EVENT_ID)),
        info,
    })
}

/// A file's lines, read a large block at a time (no copy per line): each block is whole
/// lines, checked as UTF-8 at once.
struct Lines {
    file: std::fs::File,
    buf: Vec<u8>,
    /// Bytes of `buf` read and not yet returned (a partial last line).
    held: usize,
    /// Line number of the first line of the next block (1-based).
    next_line: usize,
    /// The last block returned, `buf[..consumed]`, moved out on the next call.
    consumed: usize,
    eof: bool,
    /// The longest line read ([`MAX_LINE`]): a file without newlines must not take all
    /// memory.
    max_line: usize,
}

/// Bytes read from the file at once.
const BLOCK: usize = 1 << 20;
/// The longest line of an events file: far more than any event ingest accepts.
const MAX_LINE: usize = 16 << 20;

impl Lines {
    fn new(file: std::fs::File) -> Self {
        Lines {
            file,
            buf: vec![0; BLOCK],
            held: 0,
            next_line: 1,
            consumed: 0,
            eof: false,
            max_line: MAX_LINE,
        }
    }

    /// The next block of whole lines: (number of its first line, text, bytes), without
    /// the last line's `\n`; `None` at the end. A line that is not UTF-8 is an error
    /// that names it.
    fn next_block(&mut self) -> std::io::Result<Option<(usize, &str, usize)>> {
        use std::io::Read;
        // Drop what was returned last time.
        self.buf.copy_within(self.consumed..self.held, 0);
        self.held -= self.consumed;
        self.consumed = 0;
        loop {
            if let Some(end) = memrchr_newline(&self.buf[..self.held]) {
                // Whole lines up to the last newline.
                return self.block(end, end + 1).map(Some);
            }
            if self.eof {
                if self.held == 0 {
                    return Ok(None);
                }
                let n = self.held;
                return self.block(n, n).map(Some);
            }
            if self.held > self.max_line {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "line {} is longer than {} bytes: is this an NDJSON or CSV file, one event per line?",
                        self.next_line, self.max_line
                    ),
                ));
            }
            if self.held == self.buf.len() {
                // A line longer than the buffer: make room.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.file.read(&mut self.buf[self.held..])?;
            if n == 0 {
                self.eof = true;
            }
            self.held += n;
        }
    }

    /// `buf[..text]` as the block, `buf[..consumed]` gone on the next call.
    fn block(&mut self, text: usize, consumed: usize) -> std::io::Result<(usize, &str, usize)> {
        self.consumed = consumed;
        let first = self.next_line;
        let bytes = &self.buf[..text];
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = first
                + bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {line} is not UTF-8"),
            )
        })?;
        self.next_line += bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        Ok((first, text, consumed))
    }
}

/// The position of the last `\n` of `bytes`.
fn memrchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&b| b == b'\n')
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

/// The columns of a CSV file of events. A line is read into an event whose strings keep
/// their buffers from chunk to chunk, so an unquoted line costs no allocation.
struct Csv {
    columns: Vec<Column>,
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
        Ok(Csv { columns })
    }

    /// Reads one line into `event` (all of it: nothing of its previous line is left).
    fn fill(&self, line: &str, received_at: i64, event: &mut Event) -> Result<(), String> {
        if line.as_bytes().contains(&b'"') {
            let fields = split_csv(line);
            self.fill_fields(fields.iter().map(String::as_str), received_at, event)
        } else {
            self.fill_fields(line.split(','), received_at, event)
        }
    }

    fn fill_fields<'a>(
        &self,
        mut fields: impl Iterator<Item = &'a str>,
        received_at: i64,
        event: &mut Event,
    ) -> Result<(), String> {
        event.id.clear();
        event.source.clear();
        event.kind.clear();
        event.subject.clear();
        event.attrs.clear();
        event.value = None;
        event.payload = None;
        event.received_at = received_at;
        let mut time = None;
        let mut count = 0;
        // A field's problem is told after the field count's.
        let mut bad = None;
        for (column, value) in self.columns.iter().zip(&mut fields) {
            count += 1;
            match column {
                Column::Id => set(&mut event.id, value),
                Column::Source => set(&mut event.source, value),
                Column::Kind => set(&mut event.kind, value),
                Column::Subject => set(&mut event.subject, value),
                Column::Time => match parse_event_time(value) {
                    Ok(t) => time = Some(t),
                    Err(why) => bad = bad.or(Some(why)),
                },
                Column::Value if value.is_empty() => event.value = None,
                Column::Value => match value.parse() {
                    Ok(v) => event.value = Some(v),
                    Err(_) => {
                        bad = bad.or_else(|| Some(format!("value `{value}` is not a number")))
                    }
                },
                Column::Attr(_) if value.is_empty() => {}
                Column::Attr(name) => {
                    event.attrs.insert(name.clone(), value.to_string());
                }
            }
        }
        let count = count + fields.count();
        if count != self.columns.len() {
            return Err(format!(
                "{count} fields where the header has {}",
                self.columns.len()
            ));
        }
        if let Some(why) = bad {
            return Err(why);
        }
        if event.id.is_empty() || event.source.is_empty() || event.kind.is_empty() {
            return Err("id, source and type must not be empty".into());
        }
        event.time = time.ok_or("no time")?;
        Ok(())
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
        let csv = Csv::header("id,source,type,subject,time,value,branch").unwrap();
        let mut e = Event::default();
        csv.fill(
            "1,ci,ci.run,helios,2024-01-01T00:00:01Z,2.5,main",
            7,
            &mut e,
        )
        .unwrap();
        assert_eq!(
            (e.id.as_str(), e.kind.as_str(), e.subject.as_str()),
            ("1", "ci.run", "helios")
        );
        assert_eq!(e.time, 1_704_067_201_000_000);
        assert_eq!(e.value, Some(2.5));
        assert_eq!(e.attrs["branch"], "main");
        assert_eq!(e.received_at, 7);
        // The next line reuses the event: nothing of the first one is left over.
        csv.fill("2,ci,ci.run,,1704067201000,,", 7, &mut e).unwrap();
        assert_eq!(
            (e.time, e.value, e.attrs.len(), e.subject.as_str()),
            (1_704_067_201_000_000, None, 0, "")
        );
        // Quoted fields take the other path and read the same.
        csv.fill(
            r#""3","ci","ci.run","a,b",1704067201000,"1","x""y""#,
            7,
            &mut e,
        )
        .unwrap();
        assert_eq!(
            (
                e.id.as_str(),
                e.subject.as_str(),
                e.value,
                e.attrs["branch"].as_str()
            ),
            ("3", "a,b", Some(1.0), "x\"y")
        );
        let err = |line: &str| csv.fill(line, 7, &mut Event::default()).unwrap_err();
        assert_eq!(
            err("4,ci,ci.run,x,1704067201000,,main,extra"),
            "8 fields where the header has 7"
        );
        // The field count is told first, then a field's problem.
        assert_eq!(
            err("4,ci,ci.run,x,yesterday"),
            "5 fields where the header has 7"
        );
        assert!(err("3,ci,ci.run,x,yesterday,,").contains("time `yesterday`"));
        assert!(err("3,ci,ci.run,x,1,ten,").contains("value `ten`"));
        assert_eq!(err("3,ci"), "2 fields where the header has 7");
        assert!(err(",ci,ci.run,x,1,,").contains("must not be empty"));
        assert!(Csv::header("id,type,time").is_err());
    }

    /// Blocks hold whole lines whatever the buffer's size and number their lines; a line
    /// that is not UTF-8 is an error that names it.
    #[test]
    fn a_file_is_read_in_blocks_of_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let mut body = Vec::new();
        for i in 0..5000 {
            body.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 300)).as_bytes());
        }
        body.extend_from_slice(b"last without newline");
        std::fs::write(&path, &body).unwrap();
        for size in [7, 64, 1000, BLOCK] {
            let mut lines = Lines::new(std::fs::File::open(&path).unwrap());
            lines.buf = vec![0; size];
            let mut seen = Vec::new();
            let mut bytes = 0;
            while let Some((first, text, n)) = lines.next_block().unwrap() {
                bytes += n;
                for (i, line) in text.split('\n').enumerate() {
                    seen.push((first + i, line.to_string()));
                }
            }
            assert_eq!(bytes, body.len(), "buffer of {size}");
            assert_eq!(seen.len(), 5001, "buffer of {size}");
            for (i, (number, line)) in seen.iter().take(5000).enumerate() {
                assert_eq!(*number, i + 1);
                assert!(line.starts_with(&format!("line {i} ")), "{line}");
            }
            assert_eq!(seen[5000], (5001, "last without newline".to_string()));
        }
        std::fs::write(&path, b"a\nb\nc \xff\nd\n").unwrap();
        let mut lines = Lines::new(std::fs::File::open(&path).unwrap());
        let err = lines.next_block().unwrap_err();
        assert_eq!(err.to_string(), "line 3 is not UTF-8");
        // A line past the limit (a file without newlines) is an error naming it, read
        // with a buffer of at most twice the limit.
        let mut long = b"a\nb\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 1000));
        std::fs::write(&path, &long).unwrap();
        let mut lines = Lines::new(std::fs::File::open(&path).unwrap());
        (lines.buf, lines.max_line) = (vec![0; 8], 100);
        let (first, text, _) = lines.next_block().unwrap().unwrap();
        assert_eq!((first, text), (1, "a\nb"));
        let err = lines.next_block().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 3 is longer than 100 bytes"),
            "{err}"
        );
        assert!(lines.buf.len() <= 256, "{}", lines.buf.len());
    }
}
