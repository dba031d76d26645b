//! Scripted store contents written to both stores, and the read API over each.
//!
//! Six hours of CI runs and pushes for three subjects, an aggregate of hourly windows (one
//! of them written twice, an early and a final version; another one's final version
//! written twice, as a replay does), alerts, insights, a dead letter and three late events
//! (one stored twice); one event is written twice. Every answer below is known by
//! construction.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use helios_query_api::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use helios_query_api::store::{ClickHouseReader, DataFusionReader, Limits, ReadStore};
use helios_query_api::{ApiState, read_router};
use helios_schemas::WindowResult;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseStore};
use helios_sinks::parquet::{ParquetConfig, ParquetStore};
use helios_sinks::rows::{
    AggregateRows, AlertRow, DeadLetterRow, EventRow, InsightRow, LateEventRow,
};
use helios_sinks::{Rows, Store, StoreSpec};
use serde_json::Value;
use tower::ServiceExt;

/// 2026-11-20T00:00:00Z in µs.
pub const T0: i64 = 1_795_132_800_000_000;
pub const HOUR: i64 = 3_600_000_000;
pub const SUBJECTS: [(&str, i64); 3] = [("helios", 3), ("atlas", 2), ("zephyr", 1)];

pub fn catalog() -> Catalog {
    let m = |name: &str, function| MeasureInfo {
        name: name.to_owned(),
        function,
    };
    Catalog {
        aggregates: vec![AggregateInfo {
            name: "ci_runs".to_owned(),
            group_by: vec!["subject".to_owned(), "branch".to_owned()],
            measures: vec![
                m("runs", MeasureFunction::Count),
                m("duration", MeasureFunction::Sum),
                m("slowest", MeasureFunction::Max),
                m("p95", MeasureFunction::Quantile),
                m("mean", MeasureFunction::Avg),
            ],
            window: WindowInfo {
                kind: WindowKind::Tumbling,
                size_seconds: 3600,
                slide_seconds: 3600,
            },
        }],
    }
}

pub fn store_spec() -> StoreSpec {
    StoreSpec {
        aggregates: catalog().store_tables(),
        ..StoreSpec::default()
    }
}

/// Duration of run `i` of `subject` in hour `h`, in seconds.
pub fn duration(subject_index: usize, h: i64, i: i64) -> f64 {
    10.0 * (subject_index as f64 + 1.0) + h as f64 + i as f64 * 0.5
}

pub fn rows() -> Rows {
    let mut rows = Rows::default();
    let mut n = 0;
    let mut event = |kind: &str, subject: &str, time: i64, value: Option<f64>| {
        n += 1;
        EventRow {
            id: format!("e-{n:03}"),
            source: "github".to_owned(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            time,
            received_at: time + 1_000,
            attr_keys: vec!["branch".to_owned()],
            attr_values: vec!["main".to_owned()],
            value,
            payload: Some(format!("{{\"n\":{n}}}")),
        }
    };
    let mut agg = AggregateRows::new(store_spec().aggregates[0].clone());
    for h in 0..6 {
        for (s, (subject, per_hour)) in SUBJECTS.iter().enumerate() {
            let mut durations = Vec::new();
            for i in 0..*per_hour {
                let d = duration(s, h, i);
                durations.push(d);
                let t = T0 + h * HOUR + (i + 1) * 60_000_000 + s as i64 * 1_000_000;
                rows.events.push(event("ci.run", subject, t, Some(d)));
            }
            if *subject == "helios" {
                rows.events.push(event(
                    "git.push",
                    subject,
                    T0 + h * HOUR + 30 * 60_000_000,
                    Some(1.0),
                ));
            }
            let sum: f64 = durations.iter().sum();
            let max = durations.iter().cloned().fold(f64::MIN, f64::max);
            let window = |version: i32, runs: f64, is_final: bool| WindowResult {
                id: format!("ci_runs/{subject}/main/{h}"),
                aggregate: "ci_runs".to_owned(),
                window_start: T0 + h * HOUR,
                window_end: T0 + (h + 1) * HOUR,
                group: BTreeMap::from([
                    ("subject".to_owned(), subject.to_string()),
                    ("branch".to_owned(), "main".to_owned()),
                ]),
                measures: BTreeMap::from([
                    ("runs".to_owned(), runs),
                    ("duration".to_owned(), sum),
                    ("slowest".to_owned(), max),
                    ("p95".to_owned(), max),
                    ("mean".to_owned(), sum / runs),
                ]),
                count: runs as i64,
                version,
                is_final,
            };
            if h == 0 && *subject == "helios" {
                // An early result, superseded by the final one below.
                agg.push(&window(0, 1.0, false)).unwrap();
            }
            agg.push(&window(1, *per_hour as f64, true)).unwrap();
            if h == 1 && *subject == "atlas" {
                // The final result again, as a replay after a crash writes it: counted once.
                agg.push(&window(1, *per_hour as f64, true)).unwrap();
            }
        }
    }
    // Delivered twice (a replay): stored once.
    let again = rows.events[0].clone();
    rows.events.push(again);
    rows.aggregates.insert("ci_runs".to_owned(), agg);

    let alert =
        |id: &str, subject: &str, state: &str, since: i64, at: i64, version: u64| AlertRow {
            id: id.to_owned(),
            rule: "slow_ci".to_owned(),
            group_keys: vec!["subject".to_owned()],
            group_values: vec![subject.to_owned()],
            state: state.to_owned(),
            since,
            at,
            severity: "warning".to_owned(),
            summary: format!("CI of {subject} is slow"),
            evidence: vec![format!("{subject}: slowest run above 30 s")],
            version,
        };
    rows.alerts = vec![
        alert("a-helios", "helios", "firing", T0 + HOUR, T0 + HOUR, 1),
        alert(
            "a-atlas",
            "atlas",
            "firing",
            T0 + 2 * HOUR,
            T0 + 2 * HOUR,
            1,
        ),
        // The atlas alert resolved later: the newer version wins.
        alert(
            "a-atlas",
            "atlas",
            "resolved",
            T0 + 2 * HOUR,
            T0 + 4 * HOUR,
            2,
        ),
    ];
    let insight = |id: &str, kind: &str, subject: &str, h: i64, score: f64| InsightRow {
        id: id.to_owned(),
        kind: kind.to_owned(),
        aggregate: "ci_runs".to_owned(),
        group_keys: vec!["branch".to_owned(), "subject".to_owned()],
        group_values: vec!["main".to_owned(), subject.to_owned()],
        measure: "runs".to_owned(),
        window_start: T0 + h * HOUR,
        window_end: T0 + (h + 1) * HOUR,
        value: 3.0,
        score,
        summary: format!("{kind} in {subject}"),
        at: T0 + (h + 1) * HOUR,
    };
    rows.insights = vec![
        insight("i-1", "anomaly", "helios", 2, 3.5),
        insight("i-2", "streak", "helios", 5, 6.0),
        insight("i-3", "trend", "atlas", 4, 0.8),
    ];
    rows.dead_letters = vec![DeadLetterRow {
        id: "d-1".to_owned(),
        stage: "ingest".to_owned(),
        reason: "not JSON".to_owned(),
        original: b"{oops".to_vec(),
        topic: Some("helios.events".to_owned()),
        partition: Some(0),
        offset: Some(7),
        at: T0,
    }];
    // Two events late for `ci_runs` (the second stored twice, as a replay does) and one
    // behind the `slow_ci` rule's watermark.
    let mut late = |aggregate: &str, offset: u64, time: i64, late_by: i64| {
        let window = (!aggregate.starts_with("rule/")).then(|| time - time.rem_euclid(HOUR));
        let e = event("ci.run", "helios", time, Some(1.0));
        LateEventRow {
            id: e.id,
            source: e.source,
            kind: e.kind,
            subject: e.subject,
            time,
            received_at: e.received_at,
            attr_keys: e.attr_keys,
            attr_values: e.attr_values,
            value: e.value,
            payload: e.payload,
            aggregate: aggregate.to_owned(),
            window_start: window,
            window_end: window.map(|w| w + HOUR),
            late_by: Some(late_by),
            late_id: format!("pipeline/late/{aggregate}/helios.events/0/{offset}"),
        }
    };
    let replayed = late("ci_runs", 101, T0 + HOUR + 60_000_000, 90_000_000);
    rows.late_events = vec![
        late("ci_runs", 100, T0 + 10 * 60_000_000, 2 * HOUR),
        replayed.clone(),
        replayed,
        late("rule/slow_ci", 102, T0 + 2 * HOUR, 1_500_000),
    ];
    rows
}

/// Distinct events written.
pub const EVENTS: usize = 42;

pub fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need a real clickhouse-server.\n\
             Run them through scripts/test, which starts one, or start one with \
             `eval \"$(scripts/services/clickhouse.sh start)\"` and rerun."
        )
    })
}

/// Whether the tests connect over HTTPS as the password user
/// (`HELIOS_TEST_CLICKHOUSE_CONNECTION=https`; `scripts/test` runs the ClickHouse tests
/// both ways) or over plain HTTP as `default` (unset, or `http`).
pub fn over_https() -> bool {
    match std::env::var("HELIOS_TEST_CLICKHOUSE_CONNECTION").as_deref() {
        Ok("https") => true,
        Ok("http") | Err(_) => false,
        Ok(other) => panic!("HELIOS_TEST_CLICKHOUSE_CONNECTION is `{other}`; use http or https"),
    }
}

/// The ClickHouse under test: `HELIOS_TEST_CLICKHOUSE`, or `HELIOS_TEST_CLICKHOUSE_HTTPS`
/// as the password user trusting the test CA (see [`over_https`]).
pub fn clickhouse_config() -> ClickHouseConfig {
    if over_https() {
        ClickHouseConfig::new(test_var("HELIOS_TEST_CLICKHOUSE_HTTPS"))
            .credentials(
                Some(test_var("HELIOS_TEST_CLICKHOUSE_USER")),
                Some(test_var("HELIOS_TEST_CLICKHOUSE_PASSWORD")),
            )
            .ca_file(Some(test_var("HELIOS_TEST_CLICKHOUSE_CA").into()))
            .client_certificate(
                Some(test_var("HELIOS_TEST_CLICKHOUSE_CLIENT_CERT").into()),
                Some(test_var("HELIOS_TEST_CLICKHOUSE_CLIENT_KEY").into()),
            )
    } else {
        ClickHouseConfig::new(test_var("HELIOS_TEST_CLICKHOUSE"))
    }
}

/// The scripted rows in a fresh ClickHouse database; the reader over it.
pub async fn clickhouse_store(case: &str) -> Arc<dyn ReadStore> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let config =
        clickhouse_config().database(format!("helios_api_{case}_{}_{nanos}", std::process::id()));
    let ch = ClickHouse::new(&config).unwrap();
    helios_sinks::clickhouse::migrations::migrate(&ch, &store_spec())
        .await
        .unwrap();
    let store = ClickHouseStore::new(ch, store_spec()).unwrap();
    let mut rows = rows();
    store.write(&mut rows).await.unwrap();
    Arc::new(ClickHouseReader::new(&config).unwrap())
}

/// The scripted rows in a Parquet store in `dir`; the reader over it.
pub async fn parquet_store(dir: &std::path::Path) -> Arc<dyn ReadStore> {
    let store = ParquetStore::open(ParquetConfig::new(dir), store_spec()).unwrap();
    let mut rows = rows();
    store.write(&mut rows).await.unwrap();
    Arc::new(DataFusionReader::open(dir, store_spec()).await.unwrap())
}

pub fn app(store: Arc<dyn ReadStore>, sql: Limits) -> Router {
    let mut state = ApiState::new(store, catalog());
    state.sql_limits = sql;
    read_router(state)
}

/// Both stores' apps: `[ClickHouse, embedded]`.
pub struct Both {
    pub apps: [Router; 2],
    _dir: tempfile::TempDir,
}

impl Both {
    pub async fn new(case: &str) -> Both {
        Both::with_limits(case, Limits::default()).await
    }

    pub async fn with_limits(case: &str, sql: Limits) -> Both {
        let dir = tempfile::tempdir().unwrap();
        let ch = clickhouse_store(case).await;
        let pq = parquet_store(dir.path()).await;
        Both {
            apps: [app(ch, sql), app(pq, sql)],
            _dir: dir,
        }
    }

    /// Sends the request to both; asserts both answer the same status and body, with
    /// `elapsed_ms` (a timing) left out; returns the answer.
    pub async fn same(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut answers = Vec::new();
        for app in &self.apps {
            let (status, mut value) = call(app, method, uri, body.clone()).await;
            if let Some(obj) = value.as_object_mut() {
                obj.remove("elapsed_ms");
            }
            answers.push((status, value));
        }
        assert_eq!(
            answers[0], answers[1],
            "{method} {uri}: ClickHouse (left) and the embedded store (right) differ"
        );
        answers.remove(0)
    }
}

impl Both {
    /// Sends the request to both; asserts the same status (error texts name each store's
    /// own parser, so they differ) and, for errors, an `error` and a `hint` from both.
    /// Returns the ClickHouse answer.
    pub async fn same_status(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let ch = call(&self.apps[0], method, uri, body.clone()).await;
        let pq = call(&self.apps[1], method, uri, body).await;
        assert_eq!(
            ch.0, pq.0,
            "{method} {uri}: ClickHouse answered {} ({}), the embedded store {} ({})",
            ch.0, ch.1, pq.0, pq.1
        );
        if !ch.0.is_success() {
            for (store, answer) in [("ClickHouse", &ch.1), ("embedded", &pq.1)] {
                assert!(
                    answer["error"].is_string() && answer["hint"].is_string(),
                    "{method} {uri} on {store}: {answer}"
                );
            }
        }
        ch
    }
}

/// One request to `app`; the body as JSON (text bodies as a JSON string).
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            request = request.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// `?a=b&c=d` with values percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}
