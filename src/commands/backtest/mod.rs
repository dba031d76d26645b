//! `helios backtest`: runs a spec (and optionally the baseline it would replace) over
//! stored events in a scratch area and reports what it would have said.
//!
//! Stored events are read in place, or copied as they are (bytes, keys, partitions,
//! timestamps and watermark marks) from the live events topic (embedded data dir opened
//! read-only, or a Kafka topic read by a throw-away consumer that never commits) into an
//! embedded log in a temporary directory. Each spec then runs through the pipeline's own
//! deterministic replay ([`Processor::run_to_end`]) with its own output topics in that
//! scratch log. A file's events (`--events`) are parsed and fed to each spec's processor
//! as they are read ([`Processor::direct`]: the same operators, partitioned by subject as
//! the log would, no copy to encode and decode again); `--via-log` copies them into the
//! scratch log first instead. The report is built by reading the output topics once.
//! Nothing is written to the live log, its consumer groups or the store.

mod input;
mod report;
mod results;
mod split;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog, FsyncPolicy};
use helios_log::{Log, TopicSpec};
use helios_pipeline::checkpoint::CheckpointStore;
use helios_pipeline::runtime::{
    Codecs, DerivedCodecs, Direct, Processor, ProcessorConfig, RunSummary,
};
use helios_schemas::{EventCodec, RecordCodec};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::LogArgs;
use crate::spec::{Limits, ProcessorSpec};
use crate::stages::sources::EventTimeArgs;

pub use report::Report;

/// Try a changed spec on stored events before switching it on: what its rules would have
/// fired and resolved, its aggregates' windows, what its insight detectors would have
/// said, and with --baseline the difference from the spec that runs today.
///
/// Reads the events of a data dir's embedded log (read-only, also while `helios up`
/// runs), of a Kafka topic (--kafka, --topic; offsets are never committed), or of a file
/// (--events: CloudEvents as NDJSON, one per line, or CSV with a header line of
/// id,source,type,subject,time,value and any other column as an attribute). Each spec
/// runs through the same processor as `helios up`, in a scratch directory that is removed
/// afterwards; live topics, offsets, checkpoints and the store are not touched.
///
/// The report goes to stdout (text, or --format json); progress and logs go to stderr.
/// Alerts are matched with the baseline's by rule, group and the time they started
/// firing: `+` added, `-` removed, `~` changed (resolved at another time). Windows are
/// matched by aggregate, window and group; windows still open when the events end are
/// not reported. --from/--to pick the records stored in that time range (for --events:
/// the events' own time), as RFC 3339 times or durations before now (`7d`).
///
/// Examples:
///   helios backtest --spec new.toml --baseline helios.toml --data-dir ./helios-data
///   helios backtest --spec new.toml --baseline helios.toml --from 7d --format json
///   helios backtest --spec new.toml --events events.ndjson
///   helios backtest --spec new.toml --kafka 127.0.0.1:9092 --topic helios.events
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BacktestArgs {
    /// The spec to try (its aggregates, rules and insight settings run).
    #[arg(long)]
    pub spec: PathBuf,

    /// The spec it would replace; the report shows what changes (alerts added, removed
    /// and changed, windows that differ, insights added and removed).
    #[arg(long)]
    pub baseline: Option<PathBuf>,

    /// Only records stored at or after this time: RFC 3339 (`2026-01-01T00:00:00Z`) or a
    /// duration before now (`7d`). With --events: the events' own time.
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,

    /// Only records stored at or before this time (as --from).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,

    /// The topic of stored events [default: helios.events, with the topic prefix].
    #[arg(long)]
    pub topic: Option<String>,

    /// Read events from this file instead of a log: `.ndjson` (CloudEvents, one per
    /// line) or `.csv` (a header line; id, source, type, subject, time, value; other
    /// columns are attributes). No running Helios needed.
    #[arg(long, conflicts_with = "topic")]
    pub events: Option<PathBuf>,

    /// Partitions of the scratch events topic for --events (events are spread by subject,
    /// as ingest does).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,

    /// With --events: copy the file's events into the scratch log and replay that, as a
    /// stored log is read, instead of feeding them to the processors as they are read.
    /// The same report, more work: for checking the two paths against each other and
    /// measuring the processor's decoding.
    #[arg(long, requires = "events")]
    pub via_log: bool,

    /// Report format: `text` for reading, `json` for tools.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Alerts, window changes and insights listed per rule, aggregate and detector (the
    /// counts are always complete).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// Records the processor takes per batch (a replay reads a stored log as fast as it
    /// can: larger batches than `helios up`'s cost less per record).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,

    /// Where the scratch log and checkpoints go [default: a new directory in the system's
    /// temporary directory]; removed afterwards either way.
    #[arg(long, env = "HELIOS_BACKTEST_DIR")]
    pub scratch_dir: Option<PathBuf>,

    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,

    #[command(flatten)]
    pub event_time: EventTimeArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `--from`/`--to`: ms since the epoch.
fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        t
    } else if let Ok(ago) = humantime::parse_duration(s.trim_start_matches('-')) {
        std::time::SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("`{s}` reaches before the epoch"))?
    } else {
        return Err(format!(
            "`{s}` is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a duration before now (7d)"
        ));
    };
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("`{s}` is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("`{s}` is too far in the future"))
}

/// The scratch directory; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn create(base: Option<&Path>) -> anyhow::Result<Scratch> {
        let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("helios-backtest-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch directory {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The scratch events topic.
const EVENTS: &str = "helios.events";

/// Registry ids of the output records inside the scratch area. They never leave it: the
/// report decodes them with the same codecs.
const RESULT_ID: u32 = 1_000_001;
const DEAD_LETTER_ID: u32 = 1_000_002;
const ALERT_ID: u32 = 1_000_003;
const INSIGHT_ID: u32 = 1_000_004;

pub async fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let cpu_before = report::cpu_seconds();
    let spec = load(&args.spec)?;
    let baseline = args.baseline.as_deref().map(load).transpose()?;
    let scratch = Scratch::create(args.scratch_dir.as_deref())?;
    let embedded = EmbeddedLog::open(
        scratch.0.join("log"),
        EmbeddedConfig {
            // Scratch data: written once, read back after a flush; no fsync per batch.
            fsync: FsyncPolicy::Interval(Duration::from_millis(200)),
            ..EmbeddedConfig::default()
        },
    )
    .context("opening the scratch log")?;
    let scratch_log = embedded.log();
    let progress = Progress::new(args.quiet);
    let state = scratch.0.join("state");

    let sides: Vec<(&'static str, Loaded)> = [("new", Some(spec)), ("baseline", baseline)]
        .into_iter()
        .filter_map(|(role, spec)| Some((role, spec?)))
        .collect();
    let (info, sides) = match &args.events {
        Some(file) if !args.via_log => {
            run_direct(file, &args, sides, &scratch_log, &state, &progress).await?
        }
        _ => run_logged(&args, sides, &embedded, &scratch_log, &state, &progress).await?,
    };
    embedded.flush().context("flushing the scratch log")?;

    let mut report = Report::new(args.limit, info);
    for (role, summary, cpu) in &sides {
        report.add_run(role, summary, *cpu);
    }
    let codecs = report::Decoders::new();
    let has_baseline = sides.iter().any(|(r, _, _)| *r == "baseline");
    if has_baseline {
        report
            .read(&scratch_log, &topics("baseline"), true, &codecs)
            .await?;
    }
    report
        .read(&scratch_log, &topics("new"), false, &codecs)
        .await?;
    report.finish(
        started.elapsed(),
        report::cpu_seconds().zip(cpu_before).map(|(a, b)| a - b),
        &args.spec,
        args.baseline.as_deref(),
    );
    embedded.close().context("closing the scratch log")?;
    drop(scratch);
    let out = match args.format {
        Format::Text => report.text(),
        Format::Json => serde_json::to_string_pretty(&report.json())? + "\n",
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// What each spec's run did: (role, summary, CPU-seconds of the run).
type Runs = Vec<(&'static str, RunSummary, Option<f64>)>;

/// The events of a log (in place or copied) or of a file copied into the scratch log,
/// replayed by each spec's processor.
async fn run_logged(
    args: &BacktestArgs,
    sides: Vec<(&'static str, Loaded)>,
    embedded: &EmbeddedLog,
    scratch_log: &helios_log::Log,
    state: &Path,
    progress: &Progress,
) -> anyhow::Result<(input::SourceInfo, Runs)> {
    // Where the processors read: the scratch log (events copied there), or the live
    // topic in place (no copy) when every stored record is wanted.
    let read_cpu = report::cpu_seconds();
    let (log, topic, codec, mut info) = match &args.events {
        Some(file) => {
            scratch_log
                .admin()
                .create_topic(&TopicSpec::new(EVENTS, args.partitions))
                .await
                .context("creating the scratch events topic")?;
            let sink = input::Sink::Log {
                log: scratch_log,
                topic: EVENTS,
            };
            let copied = input::from_file(file, args.from, args.to, progress, sink).await?;
            (
                scratch_log.clone(),
                EVENTS.to_string(),
                copied.codec,
                copied.info,
            )
        }
        None => {
            let backend = args.log.resolve()?;
            let topic = args
                .topic
                .clone()
                .unwrap_or_else(|| backend.topics.name(EVENTS));
            let source = backend.open_log().await?;
            let registry = backend.open_registry()?;
            if args.from.is_some() || args.to.is_some() {
                let copied = input::from_log(
                    &source,
                    registry,
                    &topic,
                    args.from,
                    args.to,
                    scratch_log,
                    EVENTS,
                    progress,
                )
                .await?;
                (
                    scratch_log.clone(),
                    EVENTS.to_string(),
                    copied.codec,
                    copied.info,
                )
            } else {
                let (codec, info) = input::peek(&source, registry, &topic).await?;
                let log = split::split(source, &topic, scratch_log.clone());
                (log, topic, codec, info)
            }
        }
    };
    embedded.flush().context("flushing the scratch log")?;
    info.cpu_seconds = report::cpu_seconds().zip(read_cpu).map(|(a, b)| a - b);

    let mut runs = Vec::new();
    for (role, spec) in sides {
        let max_future = args.event_time.max_future.max(spec.max_future);
        // The processor's own CPU time (decode, dedupe, operators, emit): what a run
        // costs apart from reading the input and building the report.
        let cpu_before = report::cpu_seconds();
        let processor = processor(
            role,
            spec.processor,
            Input {
                log: &log,
                topic: &topic,
                codec: codec.clone(),
            },
            state,
            max_future,
            args.batch as usize,
        )
        .await?;
        let summary = run_to_end(role, processor, &log, &topic, progress).await?;
        let cpu = report::cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
        runs.push((role, summary, cpu));
    }
    Ok((info, runs))
}

/// One spec's processor fed with a file's events as they are read.
pub struct DirectRun {
    pub role: &'static str,
    pub direct: Direct,
    /// CPU time spent in it (operators, and encoding and writing outputs).
    pub cpu: Duration,
}

/// The events of a file, parsed once and fed to every spec's processor as they are read.
async fn run_direct(
    file: &Path,
    args: &BacktestArgs,
    sides: Vec<(&'static str, Loaded)>,
    scratch_log: &helios_log::Log,
    state: &Path,
    progress: &Progress,
) -> anyhow::Result<(input::SourceInfo, Runs)> {
    // Empty: it only gives the output topics their partitions, as in the log path.
    scratch_log
        .admin()
        .create_topic(&TopicSpec::new(EVENTS, args.partitions))
        .await
        .context("creating the scratch events topic")?;
    let codec = Arc::new(EventCodec::new(input::FILE_EVENT_ID));
    let mut runs = Vec::new();
    for (role, spec) in sides {
        let max_future = args.event_time.max_future.max(spec.max_future);
        let processor = processor(
            role,
            spec.processor,
            Input {
                log: scratch_log,
                topic: EVENTS,
                codec: codec.clone(),
            },
            state,
            max_future,
            args.batch as usize,
        )
        .await?;
        runs.push(DirectRun {
            role,
            direct: processor.direct(args.partitions),
            cpu: Duration::ZERO,
        });
    }
    let read = input::from_file(
        file,
        args.from,
        args.to,
        progress,
        input::Sink::Direct(&mut runs),
    )
    .await?;
    let mut out = Vec::new();
    for run in runs {
        let before = input::thread_cpu();
        let summary = run
            .direct
            .finish()
            .await
            .with_context(|| format!("running the {} spec", run.role))?;
        let cpu = run.cpu + input::thread_cpu().saturating_sub(before);
        let cpu = (!cpu.is_zero()).then_some(cpu.as_secs_f64());
        out.push((run.role, summary, cpu));
    }
    Ok((read.info, out))
}

/// A checked spec and the largest `max_future` of its sources.
struct Loaded {
    processor: ProcessorSpec,
    max_future: Duration,
}

fn load(path: &Path) -> anyhow::Result<Loaded> {
    let spec = crate::spec::load_or_report(path, Limits::default())?;
    let max_future = spec
        .sources
        .iter()
        .filter_map(|s| s.value.max_future())
        .max()
        .unwrap_or_default();
    Ok(Loaded {
        max_future,
        processor: ProcessorSpec {
            watermark: spec.watermark,
            dedupe: spec.dedupe,
            aggregates: spec.aggregates,
            rules: spec.rules,
        },
    })
}

/// Output topics of one side in the scratch log.
pub struct SideTopics {
    pub aggregates: String,
    pub alerts: String,
    pub insights: String,
    pub late: String,
    pub dead_letters: String,
}

fn topics(role: &str) -> SideTopics {
    SideTopics {
        aggregates: format!("backtest.{role}.aggregates"),
        alerts: format!("backtest.{role}.alerts"),
        insights: format!("backtest.{role}.insights"),
        late: format!("backtest.{role}.late"),
        dead_letters: format!("backtest.{role}.dlq"),
    }
}

/// Where a processor reads its events, and how it decodes them.
struct Input<'a> {
    log: &'a Log,
    topic: &'a str,
    codec: Arc<EventCodec>,
}

/// The processor of one spec, reading `input`, its outputs in the scratch log.
async fn processor(
    role: &str,
    spec: ProcessorSpec,
    input: Input<'_>,
    state: &Path,
    max_future: Duration,
    batch: usize,
) -> anyhow::Result<Processor> {
    // Unique: on Kafka the live topic is read under this group (never committed).
    let group = input::unique_group(role);
    let log = input.log;
    let t = topics(role);
    let mut config = ProcessorConfig::new(group.clone(), spec.watermark);
    config.events_topic = input.topic.to_string();
    config.aggregates_topic = t.aggregates;
    config.alerts_topic = t.alerts;
    config.insights_topic = t.insights;
    config.late_topic = t.late;
    config.dead_letter_topic = t.dead_letters;
    config.max_future = max_future;
    config.dedupe = spec.dedupe;
    config.max_batch = batch;
    // One checkpoint at the end: nothing resumes a backtest.
    config.checkpoint_interval = Duration::from_secs(24 * 3600);
    let codecs = Codecs {
        events: input.codec,
        results: RecordCodec::new(RESULT_ID),
        dead_letters: RecordCodec::new(DEAD_LETTER_ID),
    };
    let derived = DerivedCodecs {
        alerts: RecordCodec::new(ALERT_ID),
        insights: RecordCodec::new(INSIGHT_ID),
    };
    let store = CheckpointStore::local(state, &group).context("opening scratch checkpoints")?;
    let processor = Processor::new(config, spec.aggregates, log.clone(), codecs, store)
        .with_context(|| format!("the {role} spec"))?
        .with_rules_and_insights(spec.rules, derived)
        .with_context(|| format!("the {role} spec"))?;
    processor
        .ensure_topics()
        .await
        .context("creating the scratch output topics")?;
    Ok(processor)
}

/// Runs one spec's processor over the events of `topic` to their end.
async fn run_to_end(
    role: &str,
    processor: Processor,
    log: &helios_log::Log,
    topic: &str,
    progress: &Progress,
) -> anyhow::Result<RunSummary> {
    let total = log
        .admin()
        .describe_topic(topic)
        .await?
        .partitions
        .iter()
        .map(|p| p.end_offset - p.start_offset)
        .sum();
    let bar = progress.bar(&format!("{role} spec"), total);
    let metrics = processor.metrics();
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(metrics.snapshot().events_in);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let summary = processor.run_to_end().await;
    ticker.abort();
    bar.finish_and_clear();
    summary.with_context(|| format!("running the {role} spec"))
}

/// The progress bars on stderr (hidden when it is not a terminal, or with --quiet).
pub struct Progress {
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        Progress {
            quiet: quiet || !std::io::stderr().is_terminal(),
        }
    }

    /// A bar of `total` records named `what`.
    pub fn bar(&self, what: &str, total: u64) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what:>14} {{bar:40}} {{human_pos}}/{{human_len}} records {{per_sec}} eta {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    }
}
