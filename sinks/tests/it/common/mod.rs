//! Helpers shared by the sink tests: the ClickHouse under test, a fresh database per test,
//! an embedded log and registry in a temp dir, and scripted records.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::{Log, Record, TopicSpec};
use helios_schemas::{
    Alert, AlertState, AvroRecord, DeadLetter, Event, EventCodec, Insight, InsightKind,
    RecordCodec, Registry, Severity, WindowResult,
};
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig};
use helios_sinks::{
    AggregateSpec, Decoders, RetryPolicy, Sink, SinkConfig, SinkMetrics, Store, StoreSpec,
    WindowSpec,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const EVENTS: &str = "helios.events";
pub const AGGREGATES: &str = "helios.aggregates";
pub const ALERTS: &str = "helios.alerts";
pub const INSIGHTS: &str = "helios.insights";
pub const DLQ: &str = "helios.dlq";
pub const LATE: &str = "helios.late";

fn test_var(name: &str) -> String {
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

/// The URL of the ClickHouse under test: `HELIOS_TEST_CLICKHOUSE`, or over HTTPS
/// `HELIOS_TEST_CLICKHOUSE_HTTPS` (see [`over_https`]).
pub fn clickhouse_url() -> String {
    if over_https() {
        test_var("HELIOS_TEST_CLICKHOUSE_HTTPS")
    } else {
        test_var("HELIOS_TEST_CLICKHOUSE")
    }
}

/// `config` as the tests connect: over HTTPS (to the shared server's HTTPS URL) as the
/// password user, trusting the test CA; otherwise unchanged (a test's own server is HTTP).
pub fn connect(config: ClickHouseConfig) -> ClickHouseConfig {
    if over_https() && config.url == clickhouse_url() {
        config
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
        config
    }
}

/// A plain HTTP client for the server under test, set up as [`connect`] sets up the store:
/// the test CA and the password user over HTTPS.
pub fn raw_client() -> (reqwest::Client, Option<(String, String)>) {
    let ca = over_https().then(|| PathBuf::from(test_var("HELIOS_TEST_CLICKHOUSE_CA")));
    let files = over_https().then(|| {
        (
            PathBuf::from(test_var("HELIOS_TEST_CLICKHOUSE_CLIENT_CERT")),
            PathBuf::from(test_var("HELIOS_TEST_CLICKHOUSE_CLIENT_KEY")),
        )
    });
    let identity = files
        .as_ref()
        .map(|(cert, key)| helios_schemas::tls::ClientIdentity {
            cert_file: cert,
            key_file: key,
        });
    let client = helios_schemas::tls::http_client_builder_with(ca.as_deref(), identity)
        .unwrap()
        .build()
        .unwrap();
    let credentials = over_https().then(|| {
        (
            test_var("HELIOS_TEST_CLICKHOUSE_USER"),
            test_var("HELIOS_TEST_CLICKHOUSE_PASSWORD"),
        )
    });
    (client, credentials)
}

/// A name unique to this test and run.
pub fn unique(case: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("helios_test_{case}_{}_{nanos}", std::process::id())
}

/// A client on a fresh database (not created yet: the migrations create it).
pub fn fresh_db(url: &str, case: &str) -> ClickHouse {
    ClickHouse::new(&connect(ClickHouseConfig::new(url).database(unique(case)))).unwrap()
}

/// An embedded log and a registry in a temp dir, with the six topics and their schemas.
pub struct Stage {
    pub dir: tempfile::TempDir,
    pub embedded: EmbeddedLog,
    pub log: Log,
    pub registry: Arc<Registry>,
    pub events: EventCodec,
    pub windows: RecordCodec<WindowResult>,
    pub alerts: RecordCodec<Alert>,
    pub insights: RecordCodec<Insight>,
    pub dead_letters: RecordCodec<DeadLetter>,
    pub late: RecordCodec<DeadLetter>,
}

impl Stage {
    pub async fn new() -> Stage {
        let dir = tempfile::tempdir().unwrap();
        let embedded =
            EmbeddedLog::open(dir.path().join("log"), EmbeddedConfig::default()).unwrap();
        let log = embedded.log();
        std::fs::create_dir_all(dir.path().join("registry")).unwrap();
        let registry = Arc::new(Registry::open(&dir.path().join("registry")).unwrap());
        let reg = |topic: &str, schema: &str| {
            registry
                .register(&format!("{topic}-value"), schema)
                .unwrap()
                .id
        };
        let events = EventCodec::new(reg(EVENTS, Event::SCHEMA_JSON));
        let windows = RecordCodec::new(reg(AGGREGATES, WindowResult::SCHEMA_JSON));
        let alerts = RecordCodec::new(reg(ALERTS, Alert::SCHEMA_JSON));
        let insights = RecordCodec::new(reg(INSIGHTS, Insight::SCHEMA_JSON));
        let dead_letters = RecordCodec::new(reg(DLQ, DeadLetter::SCHEMA_JSON));
        let late = RecordCodec::new(reg(LATE, DeadLetter::SCHEMA_JSON));
        for (topic, partitions) in [
            (EVENTS, 4),
            (AGGREGATES, 2),
            (ALERTS, 1),
            (INSIGHTS, 1),
            (DLQ, 1),
            (LATE, 4),
        ] {
            log.admin()
                .create_topic(&TopicSpec::new(topic, partitions))
                .await
                .unwrap();
        }
        Stage {
            dir,
            embedded,
            log,
            registry,
            events,
            windows,
            alerts,
            insights,
            dead_letters,
            late,
        }
    }

    pub async fn append(&self, topic: &str, records: Vec<Record>) {
        self.log.producer().append(topic, records).await.unwrap();
    }

    /// Appends `script` to the topics, each record keyed by its id.
    pub async fn write(&self, script: &Script) {
        let keyed = |id: &str, value: bytes::Bytes| Record::keyed(id.to_owned(), value);
        self.append(
            EVENTS,
            script
                .events
                .iter()
                .map(|e| keyed(&e.id, self.events.encode(e)))
                .collect(),
        )
        .await;
        self.append(
            AGGREGATES,
            script
                .windows
                .iter()
                .map(|w| keyed(&w.id, self.windows.encode(w).unwrap()))
                .collect(),
        )
        .await;
        self.append(
            ALERTS,
            script
                .alerts
                .iter()
                .map(|a| keyed(&a.id, self.alerts.encode(a).unwrap()))
                .collect(),
        )
        .await;
        self.append(
            INSIGHTS,
            script
                .insights
                .iter()
                .map(|i| keyed(&i.id, self.insights.encode(i).unwrap()))
                .collect(),
        )
        .await;
        self.append(
            DLQ,
            script
                .dead_letters
                .iter()
                .map(|d| keyed(&d.id, self.dead_letters.encode(d).unwrap()))
                .collect(),
        )
        .await;
        self.append(
            LATE,
            script
                .late
                .iter()
                .map(|(late, event)| {
                    let mut late = late.clone();
                    // As the processor writes it: the event's own bytes.
                    late.original = self.events.encode(event).to_vec();
                    keyed(&late.id, self.late.encode(&late).unwrap())
                })
                .collect(),
        )
        .await;
    }
}

/// A scripted output stream, as the pipeline would write it.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub events: Vec<Event>,
    pub windows: Vec<WindowResult>,
    pub alerts: Vec<Alert>,
    pub insights: Vec<Insight>,
    pub dead_letters: Vec<DeadLetter>,
    /// Late records (their `original` is filled with the event's bytes when written).
    pub late: Vec<(DeadLetter, Event)>,
}

pub const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z, µs
pub const MINUTE: i64 = 60_000_000;

pub fn event(i: usize, source: &str) -> Event {
    Event {
        id: format!("ev-{source}-{i}"),
        source: source.to_owned(),
        kind: "ci.run".to_owned(),
        subject: format!("repo-{}", i % 3),
        time: T0 + i as i64 * 1_000_000,
        received_at: T0 + i as i64 * 1_000_000 + 5,
        attrs: [
            ("branch".to_owned(), "main".to_owned()),
            ("n".to_owned(), i.to_string()),
        ]
        .into(),
        value: i.is_multiple_of(2).then_some(i as f64 * 1.5),
        payload: i.is_multiple_of(3).then(|| format!("{{\"i\":{i}}}")),
    }
}

pub fn window(repo: &str, minute: i64, version: i32, sum: f64, count: i64) -> WindowResult {
    WindowResult {
        id: format!("ci_runs|repo={repo}|{minute}"),
        aggregate: "ci_runs".to_owned(),
        window_start: T0 + minute * MINUTE,
        window_end: T0 + (minute + 1) * MINUTE,
        group: [("repo".to_owned(), repo.to_owned())].into(),
        measures: [
            ("duration_sum".to_owned(), sum),
            ("duration_max".to_owned(), sum / 2.0),
        ]
        .into(),
        count,
        version,
        is_final: version >= 2,
    }
}

pub fn alert(id: &str, state: AlertState, at: i64) -> Alert {
    Alert {
        id: id.to_owned(),
        rule: "ci_failing".to_owned(),
        group: [("repo".to_owned(), "helios".to_owned())].into(),
        state,
        since: T0,
        at,
        severity: Severity::Critical,
        summary: format!("CI failing on helios ({state:?})"),
        evidence: vec!["ev-ci-1".to_owned(), "ev-ci-2".to_owned()],
    }
}

pub fn insight(i: usize) -> Insight {
    Insight {
        id: format!("insight-{i}"),
        kind: InsightKind::Anomaly,
        aggregate: "ci_runs".to_owned(),
        group: [("repo".to_owned(), "helios".to_owned())].into(),
        measure: "duration_sum".to_owned(),
        window_start: T0 + i as i64 * MINUTE,
        window_end: T0 + (i as i64 + 1) * MINUTE,
        value: 42.0,
        score: 4.5,
        summary: "CI took far longer than usual".to_owned(),
        at: T0 + (i as i64 + 1) * MINUTE,
    }
}

pub fn dead_letter(i: usize) -> DeadLetter {
    DeadLetter {
        id: format!("ingest:{i}"),
        stage: "ingest".to_owned(),
        reason: "not a CloudEvent".to_owned(),
        original: vec![0xff, 0x00, i as u8],
        topic: None,
        partition: None,
        offset: None,
        at: T0,
    }
}

/// A late record as the processor writes it: `event` (taken `minutes_late` minutes after
/// its time) missed a window of `scope` (an aggregate, or `rule/<name>`); read from
/// partition 0 of the events topic at `offset`.
pub fn late(scope: &str, event: &Event, minutes_late: i64, offset: u64) -> (DeadLetter, Event) {
    let watermark = event.time + minutes_late * MINUTE;
    let reason = match scope.strip_prefix("rule/") {
        Some(rule) => format!(
            "rule `{rule}`: event {} at time {} matched rule `{rule}` but arrived after the watermark {watermark}: it is later than the allowed out-of-orderness",
            event.id, event.time
        ),
        None => format!(
            "aggregate `{scope}`: event time {} is behind the watermark {watermark} by more than the allowed lateness of 0ns: its window is closed",
            event.time
        ),
    };
    let record = DeadLetter {
        id: DeadLetter::position_id("pipeline/late", Some(scope), EVENTS, 0, offset),
        stage: "pipeline/late".to_owned(),
        reason,
        original: Vec::new(),
        topic: Some(EVENTS.to_owned()),
        partition: Some(0),
        offset: Some(offset as i64),
        at: event.received_at,
    };
    (record, event.clone())
}

/// Waits until `check` returns `Some`, up to `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn group(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A clickhouse-server of the test's own, started and stopped with the project script.
pub struct OwnServer {
    pub url: String,
    pub pid: String,
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/clickhouse.sh")
}

fn parse_exports(out: &str) -> (String, String, PathBuf) {
    let get = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("clickhouse.sh printed no {name}: {out}"))
            .to_owned()
    };
    (
        get("HELIOS_TEST_CLICKHOUSE"),
        get("HELIOS_CLICKHOUSE_PID"),
        PathBuf::from(get("HELIOS_CLICKHOUSE_DIR")),
    )
}

impl OwnServer {
    pub fn start(parent: &Path) -> OwnServer {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .env("HELIOS_TEST_TMP", parent)
            .env_remove("HELIOS_TEST_CLICKHOUSE_PORT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "clickhouse.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (url, pid, dir) = parse_exports(&String::from_utf8_lossy(&out.stdout));
        OwnServer { url, pid, dir }
    }

    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("HELIOS_CLICKHOUSE_PID", &self.pid)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "clickhouse.sh stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn restart(&mut self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("restart")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "clickhouse.sh restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (url, pid, _) = parse_exports(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(url, self.url, "restarted on another port");
        self.pid = pid;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("HELIOS_CLICKHOUSE_PID", &self.pid)
            .output();
    }
}

/// The store spec of the scripted stream: one aggregate, `ci_runs`, of one-minute windows.
pub fn spec() -> StoreSpec {
    StoreSpec {
        aggregates: vec![
            AggregateSpec::new("ci_runs", &["repo"], &["duration_sum", "duration_max"])
                .with_window(WindowSpec::Tumbling { size_us: MINUTE }),
        ],
        ..StoreSpec::default()
    }
}

/// A sink config that flushes and retries quickly, for tests.
pub fn sink_config(group: &str) -> SinkConfig {
    SinkConfig {
        group: group.to_owned(),
        batch_interval_ms: 100,
        retry: RetryPolicy {
            initial_ms: 50,
            max_ms: 500,
        },
        ..SinkConfig::default()
    }
}

/// A sink running in a task.
pub struct Running {
    pub handle: JoinHandle<helios_sinks::Result<()>>,
    pub stop: watch::Sender<bool>,
    pub metrics: Arc<SinkMetrics>,
}

impl Running {
    /// Stops the sink (it flushes and commits) and checks it ended without error.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("sink stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

/// Starts the sink loop over `store`, reading the stage's log.
pub fn start_sink(stage: &Stage, store: Arc<dyn Store>, config: SinkConfig) -> Running {
    let sink = Sink::new(store, config, Decoders::new(stage.registry.clone())).unwrap();
    let metrics = sink.metrics();
    let (stop, rx) = watch::channel(false);
    let log = stage.log.clone();
    let handle = tokio::spawn(async move { sink.run(&log, rx).await });
    Running {
        handle,
        stop,
        metrics,
    }
}

/// Waits until the sink has flushed at least `rows` rows.
pub async fn flushed(metrics: &SinkMetrics, rows: u64) {
    wait_for(
        &format!("{rows} rows flushed"),
        Duration::from_secs(60),
        || async { (metrics.snapshot().rows_out >= rows).then_some(()) },
    )
    .await
}

/// The scripted stream of the landing and replay tests, on both stores.
pub fn scripted_stream() -> Script {
    Script {
        events: (0..30)
            .map(|i| event(i, if i.is_multiple_of(2) { "github" } else { "ci" }))
            .collect(),
        windows: vec![
            window("helios", 0, 1, 10.0, 2),
            window("helios", 0, 2, 30.0, 3), // update of the same window: replaces version 1
            window("atlas", 0, 1, 5.0, 1),
            window("helios", 1, 1, 7.0, 1),
        ],
        alerts: vec![
            alert("ci_failing|repo=helios|1", AlertState::Firing, T0 + MINUTE),
            alert(
                "ci_failing|repo=helios|1",
                AlertState::Resolved,
                T0 + 5 * MINUTE,
            ),
            alert(
                "ci_failing|repo=atlas|1",
                AlertState::Firing,
                T0 + 2 * MINUTE,
            ),
        ],
        insights: (0..3).map(insight).collect(),
        dead_letters: vec![dead_letter(1)],
        // Event 7 missed a `ci_runs` window and the rule; event 8 a `ci_runs` window.
        late: vec![
            late("ci_runs", &event(7, "ci"), 3, 107),
            late("rule/ci_failing", &event(7, "ci"), 2, 107),
            late("ci_runs", &event(8, "github"), 5, 108),
        ],
    }
}

/// One event of a source's kind, as the connectors write it, `offset_secs` after `T0`;
/// `key` makes the id unique among events of the same kind and subject.
fn signal(
    source: &str,
    kind: &str,
    subject: &str,
    key: impl std::fmt::Display,
    offset_secs: i64,
    value: Option<f64>,
    attrs: &[(&str, &str)],
) -> Event {
    let time = T0 + offset_secs * 1_000_000;
    Event {
        id: format!("{source}-{kind}-{subject}-{key}"),
        source: source.to_owned(),
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        time,
        received_at: time + 5,
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        payload: None,
    }
}

/// Events of the kinds the sources produce (host metrics, HTTP probes, CI runs with a
/// conclusion, deployments, pushes and pull requests), over the first ten minutes after
/// `T0`, for the dashboards. Two hosts, two repositories and two probes, with failures
/// among them so every panel has something to show.
pub fn signal_events() -> Vec<Event> {
    let mut out = Vec::new();
    for (h, host) in ["alpha", "beta"].into_iter().enumerate() {
        for i in 0..20 {
            let at = i as i64 * 30;
            let wave = (i % 5) as f64;
            let h = h as f64;
            out.push(signal(
                "host",
                "host.cpu",
                host,
                i,
                at,
                Some(20.0 + 10.0 * wave + h),
                &[],
            ));
            out.push(signal(
                "host",
                "host.load1",
                host,
                i,
                at,
                Some(0.5 + wave / 4.0 + h),
                &[],
            ));
            out.push(signal(
                "host",
                "host.memory_used_pct",
                host,
                i,
                at,
                Some(40.0 + wave + 20.0 * h),
                &[],
            ));
            for (mount, base) in [("/", 50.0), ("/data", 80.0)] {
                out.push(signal(
                    "host",
                    "host.disk_used_pct",
                    host,
                    format!("{mount}-{i}"),
                    at,
                    Some(base + i as f64 / 10.0),
                    &[("mount", mount)],
                ));
            }
            for kind in ["host.net_rx_bytes", "host.net_tx_bytes"] {
                out.push(signal(
                    "host",
                    kind,
                    host,
                    i,
                    at,
                    Some(1_000_000.0 * (1.0 + wave)),
                    &[("interface", "eth0")],
                ));
            }
        }
    }
    for i in 0..20 {
        let at = i as i64 * 30 + 7;
        let down = i % 7 == 3;
        let (ok, status) = if down {
            ("false", "503")
        } else {
            ("true", "200")
        };
        out.push(signal(
            "probe",
            "probe.http",
            "shop",
            i,
            at,
            Some(40.0 + (i % 4) as f64 * 15.0),
            &[
                ("url", "https://shop.example/healthz"),
                ("ok", ok),
                ("status", status),
            ],
        ));
        out.push(signal(
            "probe",
            "probe.http",
            "127.0.0.1",
            i,
            at,
            (i % 9 != 4).then_some(2.0),
            &if i % 9 == 4 {
                vec![
                    ("url", "http://127.0.0.1:8080/healthz"),
                    ("ok", "false"),
                    ("error", "Connection refused"),
                ]
            } else {
                vec![
                    ("url", "http://127.0.0.1:8080/healthz"),
                    ("ok", "true"),
                    ("status", "200"),
                ]
            },
        ));
    }
    for i in 0..12 {
        let repo = if i % 3 == 0 { "atlas" } else { "helios" };
        let conclusion = if i % 4 == 1 { "failure" } else { "success" };
        let workflow = if i % 2 == 0 { "ci" } else { "release" };
        let at = 60 + i as i64 * 45;
        out.push(signal(
            "github",
            "ci.run",
            repo,
            i,
            at,
            Some(90.0 + (i * 17 % 60) as f64),
            &[
                ("workflow", workflow),
                ("branch", "main"),
                ("conclusion", conclusion),
            ],
        ));
        if i % 3 == 2 {
            let (kind, state) = if i == 5 {
                ("deploy.failure", "failure")
            } else {
                ("deploy.success", "success")
            };
            let environment = if i % 2 == 0 { "production" } else { "staging" };
            out.push(signal(
                "github",
                kind,
                repo,
                i,
                at + 30,
                Some(40.0),
                &[("environment", environment), ("state", state)],
            ));
        }
        out.push(signal(
            "github",
            "git.push",
            repo,
            i,
            at - 30,
            Some(1.0),
            &[("branch", "main")],
        ));
    }
    out.push(signal(
        "github",
        "pr.opened",
        "helios",
        0,
        100,
        None,
        &[("number", "7")],
    ));
    out.push(signal(
        "github",
        "pr.merged",
        "helios",
        0,
        400,
        None,
        &[("number", "7")],
    ));
    out
}

/// Rows the scripted stream becomes.
pub fn script_rows(s: &Script) -> u64 {
    (s.events.len()
        + s.windows.len()
        + s.alerts.len()
        + s.insights.len()
        + s.dead_letters.len()
        + s.late.len()) as u64
}

/// Events sharing the id `shared-1`: two sources using it (two events), one of them
/// delivering it twice with different times (a retry of an event without `time`: one
/// event), and the other's written twice over (a replay: one event).
pub fn shared_id_events() -> Script {
    let mut github = event(1, "github");
    github.id = "shared-1".to_owned();
    let mut ci = event(2, "ci");
    ci.id = "shared-1".to_owned();
    let mut ci_retry = ci.clone();
    ci_retry.time += 1_000_000;
    ci_retry.received_at += 1_000_000;
    Script {
        events: vec![github.clone(), ci, ci_retry, github],
        ..Script::default()
    }
}
