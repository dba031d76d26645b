//! `/metrics` end to end: the real `helios up` with an HTTP source, an aggregate and the
//! embedded store; events posted over HTTP show up in the ingest, source, pipeline and
//! sink counters of a scrape, the lag drains to zero, and every scrape is well-formed
//! Prometheus text naming only documented families. Then `helios run pipeline` and
//! `helios run sink --metrics-listen` over the same data dir serve their own `/metrics`.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Helios};
use helios_query_api::metrics::CONTENT_TYPE;
use helios_query_api::metrics::names;
use helios_query_api::metrics::parse::{Scrape, parse};
use serde_json::{Value, json};

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "runs"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { runs = "count(*)" }
"#;

/// Events in the first batch; five subjects, all in the minute after 2020-01-01T00:00.
const N: usize = 60;
const SUBJECTS: usize = 5;

fn event(id: &str, subject: &str, time: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "ci", "type": "ci.run",
           "subject": subject, "time": time})
}

async fn post(server: &Helios, content_type: &str, body: String) -> reqwest::StatusCode {
    server
        .post("/v1/events")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// One scrape, without an API key (`/metrics` is public by default), checked: 200, the
/// 0.0.4 content type, strict grammar, known families.
async fn scrape(url: &str) -> Scrape {
    let resp = crate::common::http().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);
    let text = resp.text().await.unwrap();
    let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for s in &scrape.samples {
        let family = names::family(&s.name)
            .unwrap_or_else(|| panic!("{} is not a documented family", s.name));
        assert_eq!(
            scrape.types[family.name],
            family.kind.as_str(),
            "{}",
            s.name
        );
    }
    scrape
}

/// Scrapes until `done` holds (generous deadline: the stages run at their own pace).
async fn scrape_until(url: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = scrape(url).await;
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held; last scrape: {:#?}",
            s.samples
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sink reports lag for the partitions it committed (those that had records).
fn sink_drained(s: &Scrape) -> bool {
    let (series, lag) = lag(s, "sink");
    series >= 1 && lag == 0.0
}

fn lag(s: &Scrape, stage: &str) -> (usize, f64) {
    let series: Vec<f64> = s
        .find(
            "helios_consumer_lag_records",
            &[("stage", stage), ("topic", "helios.events")],
        )
        .map(|x| x.value)
        .collect();
    (series.len(), series.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_events_through_ingest_pipeline_and_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Helios::up(&data, &["--spec", spec.to_str().unwrap()]).await;
    let metrics = server.url("/metrics");

    let before = scrape(&metrics).await;
    assert_eq!(
        before.sum(
            "helios_source_up",
            &[("source", "ingest"), ("state", "running")]
        ),
        1.0
    );
    assert_eq!(before.sum("helios_ingest_events_total", &[]), 0.0);
    assert_eq!(before.sum("helios_pipeline_events_in_total", &[]), 0.0);

    // One batch with one invalid item, one request of a type the route does not read.
    let mut batch: Vec<Value> = (0..N)
        .map(|i| {
            event(
                &format!("m-{i}"),
                &format!("repo-{}", i % SUBJECTS),
                &format!("2020-01-01T00:00:{:02}Z", i % 60),
            )
        })
        .collect();
    batch.push(json!({"specversion": "1.0", "id": "bad", "source": "ci"}));
    let status = post(
        &server,
        "application/cloudevents-batch+json",
        Value::Array(batch).to_string(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(post(&server, "text/csv", "a,b".into()).await, 415);
    // An hour later on every subject: each partition's watermark passes the first
    // minute, so its windows close and their results reach the sink.
    let closers: Vec<Value> = (0..SUBJECTS)
        .map(|i| {
            event(
                &format!("close-{i}"),
                &format!("repo-{i}"),
                "2020-01-01T01:00:00Z",
            )
        })
        .collect();
    let status = post(
        &server,
        "application/cloudevents-batch+json",
        Value::Array(closers).to_string(),
    )
    .await;
    assert_eq!(status, 202);
    let total = (N + SUBJECTS) as f64;

    let s = scrape_until(&metrics, "every stage counted every event", |s| {
        s.sum("helios_pipeline_events_in_total", &[]) == total
            && s.sum("helios_sink_rows_total", &[("table", "events")]) == total
            && s.sum("helios_sink_rows_total", &[("table", "agg_runs")]) >= SUBJECTS as f64
            && lag(s, "pipeline").1 == 0.0
            && sink_drained(s)
    })
    .await;

    // Ingest: two accepted requests, one 415; the invalid item is counted as rejected.
    let req = |outcome| {
        s.sum(
            "helios_ingest_requests_total",
            &[("source", "ingest"), ("outcome", outcome)],
        )
    };
    assert_eq!(req("accepted"), 2.0);
    assert_eq!(req("unsupported_media_type"), 1.0);
    assert_eq!(req("busy"), 0.0);
    let events = |outcome| {
        s.sum(
            "helios_ingest_events_total",
            &[("source", "ingest"), ("outcome", outcome)],
        )
    };
    assert_eq!(events("accepted"), total);
    assert_eq!(events("rejected"), 1.0);
    assert_eq!(
        s.sum(
            "helios_errors_total",
            &[("stage", "ingest"), ("kind", "invalid_request")]
        ),
        1.0
    );
    assert_eq!(
        s.sum(
            "helios_source_events_total",
            &[("source", "ingest"), ("type", "http")]
        ),
        total
    );
    // Pipeline: every partition of helios.events reported; results written; the
    // watermark is years behind the wall clock (the events are from 2020).
    assert_eq!(lag(&s, "pipeline"), (4, 0.0));
    assert!(
        s.sum(
            "helios_pipeline_records_out_total",
            &[("topic", "helios.aggregates")]
        ) >= SUBJECTS as f64
    );
    let delays: Vec<f64> = s
        .find("helios_pipeline_watermark_delay_seconds", &[])
        .map(|x| x.value)
        .collect();
    assert!(!delays.is_empty());
    assert!(delays.iter().all(|d| *d > 86_400.0 * 365.0), "{delays:?}");
    assert!(s.sum("helios_pipeline_batch_latency_seconds_count", &[]) >= 1.0);
    // Sink: batch latency histogram consistent with its count.
    let flushes = s.sum("helios_sink_batch_latency_seconds_count", &[]);
    assert!(flushes >= 1.0);
    assert_eq!(
        s.sum(
            "helios_sink_batch_latency_seconds_bucket",
            &[("le", "+Inf")]
        ),
        flushes
    );
    assert!(s.sum("helios_sink_records_in_total", &[]) >= total);
    assert_eq!(s.sum("helios_errors_total", &[("stage", "sink")]), 0.0);

    server.stop();

    // The stages on their own over the same data dir, in new groups so they read
    // everything again: each serves /metrics on --metrics-listen.
    let data_dir = data.to_str().unwrap();
    let spec_path = spec.to_str().unwrap();
    let checkpoints = tmp.path().join("replay-state");
    let pipeline = Stage::start(
        &[
            "run",
            "pipeline",
            "--spec",
            spec_path,
            "--data-dir",
            data_dir,
            "--group",
            "metrics-replay",
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ],
        &tmp.path().join("pipeline.log"),
    )
    .await;
    let s = scrape_until(
        &pipeline.url("/metrics"),
        "the replayed pipeline read every event",
        |s| {
            s.sum("helios_pipeline_events_in_total", &[]) == total && lag(s, "pipeline") == (4, 0.0)
        },
    )
    .await;
    assert!(
        s.find("helios_sink_rows_total", &[]).next().is_none(),
        "pipeline only"
    );
    pipeline.stop();

    let sink = Stage::start(
        &[
            "run",
            "sink",
            "--spec",
            spec_path,
            "--data-dir",
            data_dir,
            "--group",
            "metrics-replay-sink",
        ],
        &tmp.path().join("sink.log"),
    )
    .await;
    scrape_until(
        &sink.url("/metrics"),
        "the replayed sink stored every event",
        |s| s.sum("helios_sink_rows_total", &[("table", "events")]) == total && sink_drained(s),
    )
    .await;
    sink.stop();
}

/// A `helios run ...` child serving `/metrics` on a free port.
struct Stage {
    child: Child,
    addr: SocketAddr,
}

impl Stage {
    async fn start(args: &[&str], log: &std::path::Path) -> Stage {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(BIN)
            .args(args)
            .arg("--metrics-listen")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stage = Stage { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = crate::common::http()
                .get(stage.url("/healthz"))
                .send()
                .await
                && r.status().is_success()
            {
                return stage;
            }
            assert!(
                Instant::now() < deadline,
                "{args:?} did not serve /healthz; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exited with {status} on SIGTERM");
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
