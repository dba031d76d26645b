use std::sync::Arc;

use helios_connectors::runtime::{Emitter, EmitterConfig, RequestOutcome, Supervisor};
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::{Record, TopicSpec};
use helios_query_api::metrics::Exposition;
use helios_query_api::metrics::parse::parse;
use helios_schemas::{EventCodec, RecordCodec};

use super::*;

fn embedded(dir: &std::path::Path) -> EmbeddedLog {
    EmbeddedLog::open(dir.join("log"), EmbeddedConfig::default()).unwrap()
}

#[tokio::test]
async fn sources_report_state_counters_and_push_requests_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let log = embedded(dir.path()).log();
    let emitter = Emitter::new(
        EmitterConfig::default(),
        log.producer(),
        EventCodec::new(1),
        RecordCodec::new(2),
    );
    let supervisor = Supervisor::new(emitter, dir.path().join("sources"));
    let http = supervisor.register("events \"main\"", "http").unwrap();
    let host = supervisor.register("host", "host").unwrap();
    http.set_state(SourceState::Running);
    http.record_events(5, Some(1_700_000_000_500_000));
    http.requests().record(RequestOutcome::Accepted);
    http.requests().record(RequestOutcome::Accepted);
    http.requests().record(RequestOutcome::Busy);
    http.requests().record(RequestOutcome::TooLarge);
    http.requests().record_events(5, 2);
    host.set_state(SourceState::Backoff);
    host.record_error("no /proc");
    host.record_restart();

    let mut out = Exposition::new();
    SourcesCollector::new(supervisor).collect(&mut out);
    let text = out.render();
    let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let http_name = "events \"main\"";
    assert_eq!(
        scrape.sum(
            "helios_source_up",
            &[("source", http_name), ("state", "running")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum("helios_source_up", &[("source", http_name)]),
        1.0,
        "one-hot"
    );
    assert_eq!(
        scrape.sum(
            "helios_source_up",
            &[("source", "host"), ("state", "backoff")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum(
            "helios_source_events_total",
            &[("source", http_name), ("type", "http")]
        ),
        5.0
    );
    assert_eq!(
        scrape.sum(
            "helios_source_last_event_timestamp_seconds",
            &[("source", http_name)]
        ),
        1_700_000_000.5
    );
    assert_eq!(
        scrape.sum("helios_source_errors_total", &[("source", "host")]),
        1.0
    );
    assert_eq!(
        scrape.sum("helios_source_restarts_total", &[("source", "host")]),
        1.0
    );
    let req = |outcome| {
        scrape.sum(
            "helios_ingest_requests_total",
            &[("source", http_name), ("outcome", outcome)],
        )
    };
    assert_eq!(req("accepted"), 2.0);
    assert_eq!(req("busy"), 1.0);
    assert_eq!(req("too_large"), 1.0);
    assert_eq!(req("log_error"), 0.0);
    assert_eq!(
        scrape.sum("helios_ingest_events_total", &[("outcome", "rejected")]),
        2.0
    );
    assert_eq!(
        scrape
            .find("helios_ingest_requests_total", &[("source", "host")])
            .count(),
        0,
        "pull sources have no request counters"
    );
    let errors =
        |stage, kind| scrape.sum("helios_errors_total", &[("stage", stage), ("kind", kind)]);
    assert_eq!(errors("ingest", "invalid_request"), 1.0);
    assert_eq!(errors("ingest", "unavailable"), 1.0);
    assert_eq!(errors("source", "source_error"), 1.0);
}

#[tokio::test]
async fn lag_is_the_log_end_minus_the_position_once_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let log = embedded(dir.path()).log();
    log.admin()
        .create_topic(&TopicSpec::new("t", 2))
        .await
        .unwrap();
    let records = (0..7)
        .map(|i| Record {
            partition: Some(1),
            ..Record::keyed(bytes::Bytes::from("k"), bytes::Bytes::from(vec![i]))
        })
        .collect();
    log.producer().append("t", records).await.unwrap();
    let ends = EndOffsets::new(log.clone(), vec!["t".into(), "not-created".into()]);
    assert_eq!(ends.lag("t", 1, 3), None, "unknown before a refresh");
    ends.refresh().await;
    assert_eq!(ends.lag("t", 1, 3), Some(4));
    assert_eq!(ends.lag("t", 1, 9), Some(0), "never negative");
    assert_eq!(ends.lag("t", 0, 0), Some(0));
    assert_eq!(ends.lag("not-created", 0, 0), None);
}

#[tokio::test]
async fn processor_topics_label_records_out() {
    let config = ProcessorConfig::new("g", Default::default());
    let dir = tempfile::tempdir().unwrap();
    let log = embedded(dir.path()).log();
    let c = PipelineCollector::new(Arc::new(Metrics::default()), config, log, Vec::new());
    let mut out = Exposition::new();
    c.collect(&mut out);
    let scrape = parse(&out.render()).unwrap();
    let topics: Vec<&str> = scrape
        .find("helios_pipeline_records_out_total", &[])
        .map(|s| s.labels["topic"].as_str())
        .collect();
    assert_eq!(
        topics,
        [
            "helios.aggregates",
            "helios.alerts",
            "helios.insights",
            "helios.late",
            "helios.dlq"
        ]
    );
}
