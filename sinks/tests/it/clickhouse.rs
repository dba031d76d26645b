//! The ClickHouse sink against a real clickhouse-server.
//!
//! The server comes from `HELIOS_TEST_CLICKHOUSE` (set by `scripts/test`, or by hand with
//! `eval "$(scripts/services/clickhouse.sh start)"`); each test uses a fresh database. The
//! outage test starts and stops a server of its own through the same script. With
//! `HELIOS_TEST_CLICKHOUSE_CONNECTION=https` every test on the shared server connects over
//! HTTPS as the password user instead (`common::connect`; `scripts/test` runs both).

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use helios_log::Record;
use helios_schemas::AlertState;
use helios_sinks::SinkConfig;
use helios_sinks::clickhouse::ClickHouseStore;
use helios_sinks::clickhouse::migrations::{self, latest_version};
use helios_sinks::clickhouse::query::{self, TimeRange};
use helios_sinks::clickhouse::retention;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig};
use helios_sinks::rows::EventRow;
use helios_sinks::{AggregateSpec, SinkError, StoreSpec};

fn start_clickhouse_sink(
    stage: &Stage,
    ch: &ClickHouse,
    spec: StoreSpec,
    config: SinkConfig,
) -> Running {
    start_sink(
        stage,
        Arc::new(ClickHouseStore::new(ch.clone(), spec).unwrap()),
        config,
    )
}

/// Everything the read helpers return, to compare before and after a replay.
#[derive(Debug, PartialEq)]
struct Snapshot {
    events: Vec<EventRow>,
    windows: Vec<helios_schemas::WindowResult>,
    alerts: Vec<helios_sinks::rows::AlertRow>,
    insights: Vec<helios_sinks::rows::InsightRow>,
    dead_letters: Vec<helios_sinks::rows::DeadLetterRow>,
    late_events: Vec<helios_sinks::rows::LateEventRow>,
}

async fn snapshot(ch: &ClickHouse) -> Snapshot {
    Snapshot {
        events: query::events(ch, None, TimeRange::ALL).await.unwrap(),
        windows: query::aggregate_results(ch, &spec().aggregates[0], TimeRange::ALL)
            .await
            .unwrap(),
        alerts: query::alerts(ch).await.unwrap(),
        insights: query::insights(ch).await.unwrap(),
        dead_letters: query::dead_letters(ch).await.unwrap(),
        late_events: query::late_events(ch).await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_stream_lands_with_expected_rows() {
    let ch = fresh_db(&clickhouse_url(), "landing");
    migrations::migrate(&ch, &spec()).await.unwrap();
    let stage = Stage::new().await;
    let s = scripted_stream();
    stage.write(&s).await;
    // Three records the sink cannot store: garbage on the events topic, a late record
    // whose event is garbage, and a result of an aggregate the spec does not have. All
    // must end up in dead_letters, not vanish.
    stage
        .append(EVENTS, vec![Record::keyed("bad", b"not avro".to_vec())])
        .await;
    let mut bad_late = late("ci_runs", &event(9, "ci"), 1, 109).0;
    bad_late.original = b"not avro".to_vec();
    stage
        .append(
            LATE,
            vec![Record::keyed("bl", stage.late.encode(&bad_late).unwrap())],
        )
        .await;
    let mut unknown = window("helios", 0, 1, 1.0, 1);
    unknown.aggregate = "deploys".to_owned();
    stage
        .append(
            AGGREGATES,
            vec![Record::keyed("u", stage.windows.encode(&unknown).unwrap())],
        )
        .await;

    let sink = start_clickhouse_sink(&stage, &ch, spec(), sink_config("landing"));
    flushed(&sink.metrics, script_rows(&s) + 3).await;
    let got = snapshot(&ch).await;

    // Events: all 30, every field intact.
    let mut expected: Vec<EventRow> = s.events.iter().cloned().map(EventRow::from).collect();
    expected.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    assert_eq!(got.events, expected);
    let github = query::events(&ch, Some("github"), TimeRange::ALL)
        .await
        .unwrap();
    assert_eq!(github.len(), 15);
    assert_eq!(
        query::count_events(
            &ch,
            TimeRange {
                start: T0,
                end: T0 + 10_000_000
            }
        )
        .await
        .unwrap(),
        10
    );

    // Aggregates: one row per window, the newest version.
    assert_eq!(
        got.windows,
        vec![
            s.windows[2].clone(),
            s.windows[1].clone(),
            s.windows[3].clone()
        ]
    );

    // Alerts: the latest state of each alert.
    let states: Vec<(&str, &str, Vec<String>)> = got
        .alerts
        .iter()
        .map(|a| (a.id.as_str(), a.state.as_str(), a.evidence.clone()))
        .collect();
    assert_eq!(
        states,
        vec![
            (
                "ci_failing|repo=atlas|1",
                "firing",
                s.alerts[2].evidence.clone()
            ),
            (
                "ci_failing|repo=helios|1",
                "resolved",
                s.alerts[1].evidence.clone()
            ),
        ]
    );
    assert_eq!(got.alerts[1].group(), group(&[("repo", "helios")]));
    assert_eq!(got.alerts[1].severity, "critical");

    // Insights.
    assert_eq!(got.insights.len(), 3);
    assert_eq!(got.insights[0].kind, "anomaly");
    assert_eq!(got.insights[0].value, 42.0);

    // Late events: the event's columns, the aggregate (or rule), the window of the
    // aggregate's spec and the lateness from the watermark in the record.
    let late_rows: Vec<(&str, &str, [Option<i64>; 3])> = got
        .late_events
        .iter()
        .map(|l| {
            let (agg, id) = (l.aggregate.as_str(), l.id.as_str());
            (agg, id, [l.window_start, l.window_end, l.late_by])
        })
        .collect();
    let (start, end) = (Some(T0), Some(T0 + MINUTE));
    assert_eq!(
        late_rows,
        [
            ("ci_runs", "ev-ci-7", [start, end, Some(3 * MINUTE)]),
            ("ci_runs", "ev-github-8", [start, end, Some(5 * MINUTE)]),
            ("rule/ci_failing", "ev-ci-7", [None, None, Some(2 * MINUTE)]),
        ]
    );
    let seven = EventRow::from(event(7, "ci"));
    let l = &got.late_events[0];
    assert_eq!(
        (
            &l.source,
            &l.subject,
            l.time,
            &l.attr_keys,
            &l.attr_values,
            l.value,
            &l.payload
        ),
        (
            &seven.source,
            &seven.subject,
            seven.time,
            &seven.attr_keys,
            &seven.attr_values,
            seven.value,
            &seven.payload
        )
    );
    assert_eq!(l.late_id, "pipeline/late/ci_runs/helios.events/0/107");
    assert_eq!(
        sink.metrics.late_by_aggregate(),
        [("ci_runs".to_owned(), 2), ("rule/ci_failing".to_owned(), 1)]
    );

    // Dead letters: the one from the topic, and the three the sink made.
    let dl: Vec<(&str, &str)> = got
        .dead_letters
        .iter()
        .map(|d| (d.stage.as_str(), d.id.as_str()))
        .collect();
    assert_eq!(dl.len(), 4, "{dl:?}");
    let bad_event = got
        .dead_letters
        .iter()
        .find(|d| d.topic.as_deref() == Some(LATE))
        .unwrap();
    assert_eq!(bad_event.stage, "sink/clickhouse");
    let from_topic = got
        .dead_letters
        .iter()
        .find(|d| d.id == "ingest:1")
        .unwrap();
    assert_eq!(from_topic.original, vec![0xff, 0x00, 1]);
    let garbage = got
        .dead_letters
        .iter()
        .find(|d| d.original == b"not avro")
        .unwrap();
    assert_eq!(garbage.stage, "sink/clickhouse");
    assert_eq!(garbage.topic.as_deref(), Some(EVENTS));
    let unfit = got
        .dead_letters
        .iter()
        .find(|d| d.reason.contains("deploys"))
        .unwrap();
    assert!(
        unfit.reason.contains("not in the sink spec"),
        "{}",
        unfit.reason
    );

    let stats = sink.metrics.snapshot();
    assert_eq!(stats.dead_lettered, 3);
    assert_eq!(stats.records_in, script_rows(&s) + 3);
    sink.stop().await;
    ch.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_same_records_leaves_results_unchanged() {
    let ch = fresh_db(&clickhouse_url(), "replay");
    migrations::migrate(&ch, &spec()).await.unwrap();
    let stage = Stage::new().await;
    let s = scripted_stream();
    stage.write(&s).await;
    let first = start_clickhouse_sink(&stage, &ch, spec(), sink_config("replay-1"));
    flushed(&first.metrics, script_rows(&s)).await;
    first.stop().await;
    let before = snapshot(&ch).await;

    // As after a crash: the same records appended again, and a member of a new group
    // re-reading the topics from the beginning (everything twice more).
    stage.write(&s).await;
    let second = start_clickhouse_sink(&stage, &ch, spec(), sink_config("replay-2"));
    flushed(&second.metrics, 2 * script_rows(&s)).await;
    second.stop().await;

    let after = snapshot(&ch).await;
    assert_eq!(after, before);
    assert_eq!(after.events.len(), 30);
    assert_eq!(after.late_events.len(), 3);
    ch.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_reapply_and_follow_the_spec() {
    let ch = fresh_db(&clickhouse_url(), "migrations");
    let first = migrations::migrate(&ch, &spec()).await.unwrap();
    assert_eq!(
        first.applied,
        vec![
            (1, "events".to_owned()),
            (2, "alerts, insights, dead_letters".to_owned()),
            (3, "events keyed by (source, id)".to_owned()),
            (4, "late_events".to_owned())
        ]
    );
    assert_eq!(first.spec_changes, vec!["create agg_ci_runs".to_owned()]);
    assert_eq!(first.version, latest_version());
    for table in [
        "events",
        "alerts",
        "insights",
        "dead_letters",
        "late_events",
        "agg_ci_runs",
        "schema_migrations",
    ] {
        assert!(
            !migrations::table_columns(&ch, table)
                .await
                .unwrap()
                .is_empty(),
            "{table} missing"
        );
    }

    let again = migrations::migrate(&ch, &spec()).await.unwrap();
    assert!(again.is_noop(), "{again:?}");

    // The spec grows: a new aggregate, a new measure and a new group key on the old one.
    let mut grown = spec();
    grown.aggregates[0].measures.push("duration_p99".to_owned());
    grown.aggregates[0].group_by.push("branch".to_owned());
    grown.aggregates.push(AggregateSpec::new(
        "deploys",
        &["service", "env"],
        &["count_failed"],
    ));
    let changes = migrations::migrate(&ch, &grown).await.unwrap();
    assert!(changes.applied.is_empty());
    assert_eq!(
        changes.spec_changes,
        vec![
            "add column agg_ci_runs.branch".to_owned(),
            "add column agg_ci_runs.duration_p99".to_owned(),
            "create agg_deploys".to_owned(),
        ]
    );
    let cols = migrations::table_columns(&ch, "agg_deploys").await.unwrap();
    assert_eq!(
        cols,
        [
            "id",
            "window_start",
            "window_end",
            "service",
            "env",
            "count_failed",
            "count",
            "version",
            "final"
        ]
    );
    assert!(migrations::migrate(&ch, &grown).await.unwrap().is_noop());

    // A database migrated by a newer helios is refused.
    ch.execute("faking a newer schema", "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (99, 'future', '', now())")
        .await
        .unwrap();
    match migrations::migrate(&ch, &grown).await {
        Err(SinkError::SchemaTooNew { found: 99, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    ch.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_expired_rows() {
    let ch = fresh_db(&clickhouse_url(), "retention");
    let mut spec = spec();
    migrations::migrate(&ch, &spec).await.unwrap();
    let stage = Stage::new().await;
    let old = Script {
        events: vec![{
            let mut e = event(1, "old");
            e.time = 1_577_836_800_000_000;
            e
        }],
        ..Script::default()
    }; // 2020-01-01
    let recent_time = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()) as i64;
    let recent = Script {
        events: vec![{
            let mut e = event(2, "new");
            e.time = recent_time;
            e
        }],
        ..Script::default()
    };
    stage.write(&old).await;
    stage.write(&recent).await;
    let sink = start_clickhouse_sink(&stage, &ch, spec.clone(), sink_config("retention"));
    flushed(&sink.metrics, 2).await;
    sink.stop().await;

    spec.retention.events = Some(Duration::from_secs(90 * 86_400));
    let report = retention::apply(&ch, &spec).await.unwrap();
    let (major, minor) = ch.server_version().await.unwrap();
    if (major, minor) >= (19, 6) {
        assert!(report.ttl_set.contains(&"events".to_owned()), "{report:?}");
        ch.execute("merging", "OPTIMIZE TABLE events FINAL")
            .await
            .unwrap();
    } else {
        assert_eq!(report.dropped, vec!["events/202001".to_owned()]);
    }
    let left: Vec<String> = query::events(&ch, None, TimeRange::ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec!["ev-new-2".to_owned()]);
    ch.drop_database().await.unwrap();
}

/// Done-when 2: ClickHouse goes away for a while (default 30 s, `HELIOS_TEST_OUTAGE_SECS`)
/// while records keep arriving; the sink holds a bounded buffer, stops polling, and after
/// the restart every result is there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_then_restart_every_result_arrives_once() {
    let outage = std::env::var("HELIOS_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30u64);
    let tmp = tempfile::tempdir().unwrap();
    let mut server = OwnServer::start(tmp.path());
    let ch = fresh_db(&server.url, "outage");
    migrations::migrate(&ch, &spec()).await.unwrap();
    let stage = Stage::new().await;
    let config = SinkConfig {
        batch_rows: 50,
        max_buffered_rows: 100,
        poll_max: 25,
        ..sink_config("outage")
    };
    let sink = start_clickhouse_sink(&stage, &ch, spec(), config);

    let first = Script {
        events: (0..40).map(|i| event(i, "before")).collect(),
        ..Script::default()
    };
    stage.write(&first).await;
    flushed(&sink.metrics, 40).await;

    server.stop();
    // Records keep arriving while the server is down: far more than the buffer may hold.
    let during = Script {
        events: (0..500).map(|i| event(i, "during")).collect(),
        windows: (0..20)
            .map(|m| window("helios", m, 1, m as f64, 1))
            .collect(),
        alerts: vec![alert("a|1", AlertState::Firing, T0 + MINUTE)],
        insights: vec![insight(7)],
        ..Script::default()
    };
    let step = Duration::from_secs(outage) / 10;
    let mut max_buffered = 0;
    for chunk in 0..10 {
        let part = Script {
            events: during.events[chunk * 50..(chunk + 1) * 50].to_vec(),
            windows: during.windows[chunk * 2..(chunk + 1) * 2].to_vec(),
            alerts: if chunk == 0 {
                during.alerts.clone()
            } else {
                vec![]
            },
            insights: if chunk == 9 {
                during.insights.clone()
            } else {
                vec![]
            },
            ..Script::default()
        };
        stage.write(&part).await;
        tokio::time::sleep(step).await;
        max_buffered = max_buffered.max(sink.metrics.snapshot().buffered_rows);
    }
    let stats = sink.metrics.snapshot();
    assert_eq!(
        stats.rows_out, 40,
        "nothing can be acknowledged while the server is down"
    );
    assert!(stats.errors > 0 && stats.retries > 0, "{stats:?}");
    assert!(
        max_buffered <= 100,
        "buffer grew past its bound: {max_buffered}"
    );
    assert!(
        stats.records_in <= 40 + 100,
        "the sink kept polling while ClickHouse was down: {stats:?}"
    );

    server.restart();
    let total = 40 + script_rows(&during);
    flushed(&sink.metrics, total).await;
    sink.stop().await;

    let events = query::events(&ch, None, TimeRange::ALL).await.unwrap();
    assert_eq!(events.len(), 540);
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 540, "an event shows up twice");
    let windows = query::aggregate_results(&ch, &spec().aggregates[0], TimeRange::ALL)
        .await
        .unwrap();
    assert_eq!(windows, during.windows);
    assert_eq!(query::alerts(&ch).await.unwrap().len(), 1);
    assert_eq!(query::insights(&ch).await.unwrap().len(), 1);
    ch.drop_database().await.unwrap();
    server.stop();
}

/// Issue 12: an event is `(source, id)`. Two sources using one id both show; one source's
/// repeated delivery of it (another time: a retry without `time`) is one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_identified_by_source_and_id() {
    let ch = fresh_db(&clickhouse_url(), "identity");
    migrations::migrate(&ch, &spec()).await.unwrap();
    let stage = Stage::new().await;
    let s = shared_id_events();
    stage.write(&s).await;
    let sink = start_clickhouse_sink(&stage, &ch, spec(), sink_config("identity"));
    flushed(&sink.metrics, script_rows(&s)).await;
    sink.stop().await;
    let rows: Vec<(String, String)> = query::events(&ch, None, TimeRange::ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.source, e.id))
        .collect();
    assert_eq!(
        rows,
        [
            ("github".to_owned(), "shared-1".to_owned()),
            ("ci".to_owned(), "shared-1".to_owned())
        ]
    );
    ch.drop_database().await.unwrap();
}

/// Migration 3 rebuilds `events` keyed by `(source, id)` and keeps every stored event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_3_keeps_the_events_and_keys_them_by_source_and_id() {
    let ch = fresh_db(&clickhouse_url(), "migration3");
    let before = migrations::migrate_to(&ch, &spec(), 2).await.unwrap();
    assert_eq!(before.applied.len(), 2);
    let stage = Stage::new().await;
    let s = Script {
        events: (0..20).map(|i| event(i, "github")).collect(),
        ..Script::default()
    };
    stage.write(&s).await;
    let sink = start_clickhouse_sink(&stage, &ch, spec(), sink_config("migration3"));
    flushed(&sink.metrics, script_rows(&s)).await;
    sink.stop().await;
    let stored = query::events(&ch, None, TimeRange::ALL).await.unwrap();
    assert_eq!(stored.len(), 20);

    let report = migrations::migrate(&ch, &spec()).await.unwrap();
    assert_eq!(
        report.applied,
        [
            (3, "events keyed by (source, id)".to_owned()),
            (4, "late_events".to_owned())
        ]
    );
    assert_eq!(
        query::events(&ch, None, TimeRange::ALL).await.unwrap(),
        stored
    );
    let engine: String = ch
        .client()
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = 'events'")
        .bind(ch.database())
        .fetch_one()
        .await
        .unwrap();
    assert!(engine.contains("ORDER BY (source, id)"), "{engine}");
    assert!(migrations::migrate(&ch, &spec()).await.unwrap().is_noop());
    ch.drop_database().await.unwrap();
}

/// Issue 14, done-when 2: over HTTPS, a wrong password and a certificate we do not trust
/// each fail at once (no retrying), with an error that says which and names the setting;
/// so does a client certificate the server (which requires mutual TLS) refuses, or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_untrusted_certificate_fails_saying_which() {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: start scripts/services/clickhouse.sh"))
    };
    let https = var("HELIOS_TEST_CLICKHOUSE_HTTPS");
    let user = var("HELIOS_TEST_CLICKHOUSE_USER");
    let password = var("HELIOS_TEST_CLICKHOUSE_PASSWORD");
    let ca = std::path::PathBuf::from(var("HELIOS_TEST_CLICKHOUSE_CA"));
    let untrusted = std::path::PathBuf::from(var("HELIOS_TEST_CLICKHOUSE_UNTRUSTED_CA"));
    let client = |name: &str| Some(std::path::PathBuf::from(var(name)));
    let (cert, key) = (
        client("HELIOS_TEST_CLICKHOUSE_CLIENT_CERT"),
        client("HELIOS_TEST_CLICKHOUSE_CLIENT_KEY"),
    );
    let try_connect = |password: &str, ca: Option<std::path::PathBuf>| {
        let config = ClickHouseConfig::new(&https)
            .credentials(Some(user.clone()), Some(password.to_owned()))
            .ca_file(ca)
            .client_certificate(cert.clone(), key.clone());
        async move { ClickHouse::new(&config).unwrap().server_version().await }
    };

    let (major, _) = try_connect(&password, Some(ca.clone())).await.unwrap();
    assert!(major >= 18, "{major}");

    let err = try_connect("wrong-password", Some(ca.clone()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SinkError::ClickHouseAccess { .. }), "{err:?}");
    assert!(!err.retryable(), "{text}");
    assert!(
        text.contains("authentication failed") && text.contains("password"),
        "{text}"
    );
    assert!(!text.contains("certificate"), "{text}");
    assert!(
        !text.contains("wrong-password"),
        "the password is in the error: {text}"
    );

    // Mozilla's roots alone, or a CA that signed something else: not trusted.
    for ca in [None, Some(untrusted)] {
        let err = try_connect(&password, ca.clone()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, SinkError::ClickHouseAccess { .. }),
            "{ca:?}: {err:?}"
        );
        assert!(!err.retryable(), "{text}");
        assert!(
            text.contains("certificate is not trusted")
                && text.contains("UnknownIssuer")
                && text.contains("--clickhouse-ca-file"),
            "{ca:?}: {text}"
        );
        assert!(!text.contains("authentication"), "{text}");
    }

    // The server requires a client certificate its CA signed: none, or one another CA
    // signed, is refused at once, naming the settings to give.
    let others = (
        client("HELIOS_TEST_CLICKHOUSE_OTHER_CLIENT_CERT"),
        client("HELIOS_TEST_CLICKHOUSE_OTHER_CLIENT_KEY"),
    );
    for (cert, key) in [(None, None), others] {
        let config = ClickHouseConfig::new(&https)
            .credentials(Some(user.clone()), Some(password.clone()))
            .ca_file(Some(ca.clone()))
            .client_certificate(cert.clone(), key);
        let err = ClickHouse::new(&config)
            .unwrap()
            .server_version()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, SinkError::ClickHouseAccess { .. }),
            "{cert:?}: {err:?}"
        );
        assert!(!err.retryable(), "{text}");
        assert!(
            text.contains("refused the client certificate")
                && text.contains("--clickhouse-cert-file"),
            "{cert:?}: {text}"
        );
    }
    // A key that is not the certificate's, or a file that is no key: refused before any
    // connection, naming the file.
    let wrong_key = ClickHouseConfig::new(&https)
        .ca_file(Some(ca.clone()))
        .client_certificate(
            cert.clone(),
            client("HELIOS_TEST_CLICKHOUSE_OTHER_CLIENT_KEY"),
        );
    let text = ClickHouse::new(&wrong_key).unwrap_err().to_string();
    assert!(text.contains("other-client.key"), "{text}");
    let not_a_key = ClickHouseConfig::new(&https)
        .ca_file(Some(ca.clone()))
        .client_certificate(cert.clone(), cert.clone());
    let text = ClickHouse::new(&not_a_key).unwrap_err().to_string();
    assert!(text.contains("holds no PEM private key"), "{text}");

    // Plain HTTP to the HTTPS port is a handshake problem of its own, not a retry forever.
    let plain = ClickHouseConfig::new(https.replace("https://", "http://"))
        .credentials(Some(user.clone()), Some(password.clone()));
    let err = ClickHouse::new(&plain).unwrap().server_version().await;
    assert!(err.is_err(), "plain HTTP on the HTTPS port answered");
}
