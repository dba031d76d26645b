//! Late events are data (issue 13, done-when 4): events sent to `helios up --spec` after
//! their window closed, or behind a rule's watermark, land in the `late_events` table of
//! the store, on the embedded store and on ClickHouse, with the aggregate (or rule) they
//! missed, the window they belonged to and how late they were; `GET /v1/late` (what the
//! dashboard shows) and `/metrics` count them per aggregate.
//!
//! The stream is fixed, so every expected row is known: one event a minute from 10:00 to
//! 10:19 and one at 10:20 move the watermark to 10:19:59 (one second of allowed disorder);
//! then four more events come, three of them late.

use std::time::{Duration, Instant};

use crate::common::Helios;
use helios_query_api::metrics::parse::parse;
use serde_json::{Value, json};

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

# The stream is dated 2026-01-01: kept whatever day the test runs (the embedded store
# drops days past its default retention, ADR-016).
[retention]
events = "50y"
aggregates = "50y"
alerts = "50y"
insights = "50y"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)" }

[[aggregate]]
name = "sliding"
where = "kind = 'ci.run'"
window = { type = "hopping", size = "10m", slide = "5m" }
group_by = ["subject"]
measures = { n = "count(*)" }

[[rule]]
name = "failures"
type = "threshold"
where = "kind = 'ci.failed'"
per = ["subject"]
count = 3
within = "1h"
"#;

/// 2026-01-01T10:00:00Z in µs.
const T10: i64 = 1_767_261_600_000_000;
const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
/// The watermark once the 10:20 event is read: 10:20:00 minus a second.
const WATERMARK: i64 = T10 + 20 * MIN - SEC;

/// `at` µs after 10:00 as RFC 3339 (within the hour, whole seconds).
fn time(at: i64) -> String {
    let secs = at / SEC;
    format!("2026-01-01T10:{:02}:{:02}Z", secs / 60, secs % 60)
}

fn event(id: &str, kind: &str, at: i64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "ci", "type": kind,
           "subject": "helios", "time": time(at), "value": 1, "branch": "main"})
}

async fn post(server: &Helios, batch: Vec<Value>) {
    let resp = server.post_events(&Value::Array(batch)).await;
    let status = resp.status();
    assert_eq!(status, 202, "{}", resp.text().await.unwrap());
}

/// `POST /v1/sql`, the rows of the answer.
async fn sql(server: &Helios, query: &str) -> Vec<Value> {
    let resp = server
        .post("/v1/sql")
        .json(&json!({"sql": query}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {body}");
    body["rows"].as_array().unwrap().clone()
}

/// Sends the stream, then checks the table, the count route and the metrics.
async fn late_events_land_and_are_counted(server: &Helios) {
    // On time: one event a minute, then 10:20, which moves the watermark to 10:19:59.
    let mut stream: Vec<Value> = (0..20)
        .map(|m| event(&format!("run-{m}"), "ci.run", m * MIN))
        .collect();
    stream.push(event("run-20", "ci.run", 20 * MIN));
    post(server, stream).await;
    post(
        server,
        vec![
            // Its minute and both of its ten-minute windows closed long ago.
            event("late-1", "ci.run", 2 * MIN + 30 * SEC),
            // Late for its minute and for the rule; `sliding` does not take failures.
            event("late-2", "ci.failed", 5 * MIN),
            // Its minute closed at 10:19, but the sliding window 10:10-10:20 is open.
            event("late-3", "ci.run", 18 * MIN + 30 * SEC),
            // Behind the newest event, yet its minute (10:19-10:20) is open: not late.
            event("on-time", "ci.run", 19 * MIN + 30 * SEC),
        ],
    )
    .await;

    let query = "SELECT aggregate, id, kind, subject, time, window_start, window_end, late_by \
                 FROM late_events ORDER BY aggregate, time";
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = sql(server, query).await;
        if rows.len() >= 5 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 5 late events in late_events: {rows:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let row = |aggregate: &str, id: &str, kind: &str, at: i64, window: Option<(i64, i64)>| {
        let (start, end) = window.map_or((Value::Null, Value::Null), |(s, e)| {
            (json!(T10 + s), json!(T10 + e))
        });
        json!([
            aggregate,
            id,
            kind,
            "helios",
            T10 + at,
            start,
            end,
            WATERMARK - (T10 + at)
        ])
    };
    assert_eq!(
        rows,
        [
            row(
                "per_minute",
                "late-1",
                "ci.run",
                150 * SEC,
                Some((2 * MIN, 3 * MIN))
            ),
            row(
                "per_minute",
                "late-2",
                "ci.failed",
                5 * MIN,
                Some((5 * MIN, 6 * MIN))
            ),
            row(
                "per_minute",
                "late-3",
                "ci.run",
                1110 * SEC,
                Some((18 * MIN, 19 * MIN))
            ),
            row("rule/failures", "late-2", "ci.failed", 5 * MIN, None),
            // The latest of the event's hopping windows.
            row(
                "sliding",
                "late-1",
                "ci.run",
                150 * SEC,
                Some((0, 10 * MIN))
            ),
        ]
    );
    // `late_by` in µs: 10:19:59 minus 10:02:30.
    assert_eq!(rows[0][7], json!(1_049 * SEC));
    // Late events are events too: every one is in `events`.
    let events = sql(server, "SELECT count(*) FROM events").await;
    assert_eq!(events, [json!([25])]);

    // What the dashboard shows: per aggregate of the spec (in its order), then the rule.
    let late: Value = server
        .get("/v1/late")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        late,
        json!({"aggregates": [
            {"aggregate": "per_minute", "late_events": 3, "last_time": "2026-01-01T10:18:30Z",
             "max_late_by_seconds": 1049.0},
            {"aggregate": "sliding", "late_events": 1, "last_time": "2026-01-01T10:02:30Z",
             "max_late_by_seconds": 1049.0},
            {"aggregate": "rule/failures", "late_events": 1, "last_time": "2026-01-01T10:05:00Z",
             "max_late_by_seconds": 899.0},
        ]})
    );

    // `/metrics`: the sink's count per aggregate, next to the processor's total. The sink
    // counts a batch once its write is acknowledged, which can come a moment after the
    // rows are visible to a query: poll.
    let expected = [
        ("per_minute", 3.0),
        ("sliding", 1.0),
        ("rule/failures", 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = server
            .get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let late_total = scrape.sum(
            "helios_pipeline_records_out_total",
            &[("topic", "helios.late")],
        );
        let counted: Vec<f64> = expected
            .iter()
            .map(|(aggregate, _)| {
                scrape.sum("helios_sink_late_events_total", &[("aggregate", aggregate)])
            })
            .collect();
        if late_total == 5.0 && counted.iter().zip(&expected).all(|(got, (_, n))| got == n) {
            break;
        }
        for (got, (aggregate, n)) in counted.iter().zip(&expected) {
            assert!(got <= n, "{aggregate}: {got} > {n}\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "late counts {counted:?}, helios.late {late_total}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_land_in_the_embedded_store_and_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Helios::up(&data, &["--spec", spec.to_str().unwrap()]).await;
    late_events_land_and_are_counted(&server).await;
    // The rows are Parquet files in the data dir, in the day of their event time.
    assert!(data.join("store/late_events/day=2026-01-01").is_dir());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_land_in_clickhouse_and_are_counted() {
    let url = std::env::var("HELIOS_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!("HELIOS_TEST_CLICKHOUSE is not set: start scripts/services/clickhouse.sh")
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let database = format!("helios_late_{}_{nanos}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Helios::up(
        &data,
        &[
            "--spec",
            spec.to_str().unwrap(),
            "--clickhouse",
            &url,
            "--clickhouse-database",
            &database,
            // A database of its own, read as the user that writes it.
            "--allow-shared-clickhouse-user",
        ],
    )
    .await;
    late_events_land_and_are_counted(&server).await;
    server.stop();
    crate::common::clickhouse::query(&url, "default", &format!("DROP DATABASE {database}"))
        .await
        .unwrap();
}
