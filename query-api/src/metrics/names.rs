//! Every metric family Helios exposes, by name. `docs/METRICS.md` lists the same
//! families (a test keeps the two in step), and runbooks cite these names.
//!
//! Names follow `helios_<stage>_<what>_<unit>`: counters end in `_total`, durations are
//! seconds, sizes bytes.

use super::text::{Family, Kind};

/// Requests to a push route (`POST /v1/events`, the webhook routes) by how they ended:
/// `accepted`, `invalid` (400), `too_large` (413), `unsupported_media_type` (415),
/// `paused` (503), `busy` (503, at capacity), `log_error` (503, append failed),
/// `disk_full` (507, the data dir's disk is nearly full).
pub const INGEST_REQUESTS: Family = Family {
    name: "helios_ingest_requests_total",
    kind: Kind::Counter,
    labels: &["source", "outcome"],
    help: "Requests to a push route (HTTP ingest, webhooks) by outcome.",
};

/// Events in requests to a push route: `accepted` (durable on the log) or `rejected`
/// (an invalid item of a batch, listed in the answer).
pub const INGEST_EVENTS: Family = Family {
    name: "helios_ingest_events_total",
    kind: Kind::Counter,
    labels: &["source", "outcome"],
    help: "Events received by a push route, accepted (durable) or rejected (invalid item).",
};

/// 1 for the state a source is in, 0 for the others (`starting`, `running`, `paused`,
/// `backoff`, `stopped`).
pub const SOURCE_UP: Family = Family {
    name: "helios_source_up",
    kind: Kind::Gauge,
    labels: &["source", "type", "state"],
    help: "1 for the state the source is in now, 0 for the other states.",
};

pub const SOURCE_EVENTS: Family = Family {
    name: "helios_source_events_total",
    kind: Kind::Counter,
    labels: &["source", "type"],
    help: "Events a source appended to the events topic.",
};

pub const SOURCE_ERRORS: Family = Family {
    name: "helios_source_errors_total",
    kind: Kind::Counter,
    labels: &["source", "type"],
    help: "Errors a source reported (failed polls, failed appends); the last one is in GET /v1/sources.",
};

pub const SOURCE_DEAD_LETTERS: Family = Family {
    name: "helios_source_dead_letters_total",
    kind: Kind::Counter,
    labels: &["source", "type"],
    help: "Inputs a source could not map to an event and wrote to the dead-letter topic.",
};

pub const SOURCE_RESTARTS: Family = Family {
    name: "helios_source_restarts_total",
    kind: Kind::Counter,
    labels: &["source", "type"],
    help: "Times the supervisor restarted a failed source.",
};

pub const SOURCE_LAST_EVENT: Family = Family {
    name: "helios_source_last_event_timestamp_seconds",
    kind: Kind::Gauge,
    labels: &["source", "type"],
    help: "Event time of the newest event a source emitted, seconds since the epoch.",
};

pub const PIPELINE_EVENTS_IN: Family = Family {
    name: "helios_pipeline_events_in_total",
    kind: Kind::Counter,
    labels: &["partition"],
    help: "Records the processor read from the events topic (decoded or not), per partition.",
};

/// Records written per output topic: results, alerts, insights, late events, dead letters.
pub const PIPELINE_RECORDS_OUT: Family = Family {
    name: "helios_pipeline_records_out_total",
    kind: Kind::Counter,
    labels: &["topic"],
    help: "Records the processor wrote, per output topic (results, alerts, insights, late events, dead letters).",
};

pub const PIPELINE_WATERMARK_DELAY: Family = Family {
    name: "helios_pipeline_watermark_delay_seconds",
    kind: Kind::Gauge,
    labels: &["partition"],
    help: "Wall clock minus the partition's event-time watermark at its last batch, seconds.",
};

pub const PIPELINE_BATCH_LATENCY: Family = Family {
    name: "helios_pipeline_batch_latency_seconds",
    kind: Kind::Summary,
    labels: &[],
    help: "Time from a poll's return to the batch's outputs being durable, seconds.",
};

pub const PIPELINE_CHECKPOINTS: Family = Family {
    name: "helios_pipeline_checkpoints_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Partition checkpoints written.",
};

pub const PIPELINE_WATERMARK_MARKS: Family = Family {
    name: "helios_pipeline_watermark_marks_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Watermark marks the processor wrote into quiet partitions of the events topic, so their windows close and rules fire without further events.",
};

pub const PIPELINE_DUPLICATES: Family = Family {
    name: "helios_pipeline_duplicates_total",
    kind: Kind::Counter,
    labels: &["source"],
    help: "Events the processor dropped as repeats of one it had applied (same source and id within the [dedupe] horizon), per source.",
};

pub const PIPELINE_REFUSED: Family = Family {
    name: "helios_pipeline_refused_total",
    kind: Kind::Counter,
    labels: &["operator"],
    help: "What an operator refused at its bounds: events an aggregate or rule did not apply (each also a pipeline/limit dead letter), final results of groups the insight detectors do not follow.",
};

pub const PIPELINE_DEDUPE_IDENTITIES: Family = Family {
    name: "helios_pipeline_dedupe_identities",
    kind: Kind::Gauge,
    labels: &[],
    help: "Event identities the processor remembers for de-duplication, all assigned partitions.",
};

pub const PIPELINE_OPERATOR_STATE: Family = Family {
    name: "helios_pipeline_operator_state",
    kind: Kind::Gauge,
    labels: &["operator"],
    help: "State of an aggregate (open windows) or rule (keys) in its fullest assigned partition; at helios_pipeline_operator_state_limit it refuses what would grow it.",
};

pub const PIPELINE_OPERATOR_STATE_LIMIT: Family = Family {
    name: "helios_pipeline_operator_state_limit",
    kind: Kind::Gauge,
    labels: &["operator"],
    help: "The bound of an operator's state per partition: max_open_windows of an aggregate, max_keys of a rule.",
};

pub const PIPELINE_DEDUPE_EVICTED: Family = Family {
    name: "helios_pipeline_dedupe_evicted_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Buckets of identities forgotten before their horizon because [dedupe] max_ids was reached; repeats of those events are no longer recognised.",
};

pub const PIPELINE_REPARTITIONED: Family = Family {
    name: "helios_pipeline_repartitioned_total",
    kind: Kind::Counter,
    labels: &["direction"],
    help: "Events forwarded to repartition topics (direction=\"out\") for aggregates and rules not grouped by subject, and applied from them (direction=\"in\").",
};

pub const PIPELINE_REPARTITION_REPEATS: Family = Family {
    name: "helios_pipeline_repartition_repeats_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Forwarded events written again to a repartition topic after a restart of the events stage, recognised by their source position and dropped.",
};

pub const PIPELINE_CHECKPOINT_BYTES: Family = Family {
    name: "helios_pipeline_checkpoint_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "Bytes written by the last checkpoint round (all partitions).",
};

pub const PIPELINE_CHECKPOINT_DURATION: Family = Family {
    name: "helios_pipeline_checkpoint_duration_seconds",
    kind: Kind::Gauge,
    labels: &[],
    help: "Duration of the last checkpoint round, seconds.",
};

/// Records behind the log end, per consumer stage (`pipeline`, `sink`) and partition.
pub const CONSUMER_LAG: Family = Family {
    name: "helios_consumer_lag_records",
    kind: Kind::Gauge,
    labels: &["stage", "topic", "partition"],
    help: "Records between a stage's position (processed by the pipeline, stored and committed by the sink) and the log end.",
};

pub const SINK_RECORDS_IN: Family = Family {
    name: "helios_sink_records_in_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Records the sink read from the log.",
};

pub const SINK_ROWS: Family = Family {
    name: "helios_sink_rows_total",
    kind: Kind::Counter,
    labels: &["table"],
    help: "Rows the store acknowledged, per table.",
};

/// `late_events` rows the store acknowledged per aggregate (`rule/<name>` for a rule).
pub const SINK_LATE_EVENTS: Family = Family {
    name: "helios_sink_late_events_total",
    kind: Kind::Counter,
    labels: &["aggregate"],
    help: "Late events the store acknowledged into late_events, per aggregate (rule/<name> for a rule).",
};

pub const SINK_BATCH_LATENCY: Family = Family {
    name: "helios_sink_batch_latency_seconds",
    kind: Kind::Histogram,
    labels: &[],
    help: "Time to store a batch and commit its offsets, retries included, seconds.",
};

pub const SINK_BUFFERED_ROWS: Family = Family {
    name: "helios_sink_buffered_rows",
    kind: Kind::Gauge,
    labels: &[],
    help: "Rows the sink holds for its next flush.",
};

pub const SINK_RETRIES: Family = Family {
    name: "helios_sink_retries_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Retries of failed writes, commits and schema lookups.",
};

/// The free space of the data dir's file system, as ingest's guard sees it.
pub const DISK_FREE: Family = Family {
    name: "helios_disk_free_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "Bytes an unprivileged process may still write on the file system of the data dir.",
};

pub const DISK_TOTAL: Family = Family {
    name: "helios_disk_total_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "Size of the file system of the data dir.",
};

/// The reserve: below it, ingest answers `507` (`--min-free-disk`).
pub const DISK_MIN_FREE: Family = Family {
    name: "helios_disk_min_free_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "Free bytes ingest keeps on the data dir's disk: below it new events are refused (507).",
};

pub const LOG_SIZE: Family = Family {
    name: "helios_log_size_bytes",
    kind: Kind::Gauge,
    labels: &["topic"],
    help: "Bytes a topic of the embedded log takes on disk (segments and indexes).",
};

pub const LOG_RETENTION_BYTES: Family = Family {
    name: "helios_log_retention_bytes",
    kind: Kind::Gauge,
    labels: &["topic"],
    help: "The size cap of a topic of the embedded log, all partitions together (absent: none).",
};

pub const LOG_RETENTION_SECONDS: Family = Family {
    name: "helios_log_retention_seconds",
    kind: Kind::Gauge,
    labels: &["topic"],
    help: "How long a topic of the embedded log keeps records, seconds (absent: no age limit).",
};

pub const STORE_SIZE: Family = Family {
    name: "helios_store_size_bytes",
    kind: Kind::Gauge,
    labels: &["table"],
    help: "Bytes a table of the embedded Parquet store takes on disk.",
};

pub const STORE_MAX_SIZE: Family = Family {
    name: "helios_store_max_size_bytes",
    kind: Kind::Gauge,
    labels: &[],
    help: "The size cap of the embedded Parquet store, all tables together (absent: none).",
};

/// Errors per stage and kind: `ingest` (`invalid_request`, `unavailable`, `disk_full`), `source`
/// (`source_error`, `dead_letter`), `pipeline` (`dead_letter`, `commit`, `fatal`),
/// `sink` (`poll`, `flush`, `dead_letter`).
pub const ERRORS: Family = Family {
    name: "helios_errors_total",
    kind: Kind::Counter,
    labels: &["stage", "kind"],
    help: "Errors per stage and kind.",
};

/// Every family, in the order of `docs/METRICS.md`.
pub const ALL: &[&Family] = &[
    &INGEST_REQUESTS,
    &INGEST_EVENTS,
    &SOURCE_UP,
    &SOURCE_EVENTS,
    &SOURCE_ERRORS,
    &SOURCE_DEAD_LETTERS,
    &SOURCE_RESTARTS,
    &SOURCE_LAST_EVENT,
    &PIPELINE_EVENTS_IN,
    &PIPELINE_RECORDS_OUT,
    &PIPELINE_WATERMARK_DELAY,
    &PIPELINE_BATCH_LATENCY,
    &PIPELINE_CHECKPOINTS,
    &PIPELINE_WATERMARK_MARKS,
    &PIPELINE_DUPLICATES,
    &PIPELINE_REFUSED,
    &PIPELINE_DEDUPE_IDENTITIES,
    &PIPELINE_DEDUPE_EVICTED,
    &PIPELINE_OPERATOR_STATE,
    &PIPELINE_OPERATOR_STATE_LIMIT,
    &PIPELINE_REPARTITIONED,
    &PIPELINE_REPARTITION_REPEATS,
    &PIPELINE_CHECKPOINT_BYTES,
    &PIPELINE_CHECKPOINT_DURATION,
    &CONSUMER_LAG,
    &SINK_RECORDS_IN,
    &SINK_ROWS,
    &SINK_LATE_EVENTS,
    &SINK_BATCH_LATENCY,
    &SINK_BUFFERED_ROWS,
    &SINK_RETRIES,
    &DISK_FREE,
    &DISK_TOTAL,
    &DISK_MIN_FREE,
    &LOG_SIZE,
    &LOG_RETENTION_BYTES,
    &LOG_RETENTION_SECONDS,
    &STORE_SIZE,
    &STORE_MAX_SIZE,
    &ERRORS,
];

/// The family named `name`, if Helios exposes one (`_bucket`, `_sum` and `_count`
/// sample names resolve to their histogram or summary).
pub fn family(name: &str) -> Option<&'static Family> {
    ALL.iter().copied().find(|f| {
        f.name == name
            || match f.kind {
                Kind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.name)),
                Kind::Summary => ["_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.name)),
                _ => false,
            }
    })
}
