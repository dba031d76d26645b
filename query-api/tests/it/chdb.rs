//! ClickHouse of today (issue 14): every statement Helios sends to ClickHouse also runs on a
//! current engine, chDB (PyPI `chdb-core`, ClickHouse 26 in process), on the same scripted
//! data, and the answers are compared with ClickHouse 18.16's (the test server).
//!
//! How: Helios' own code paths talk to the test server through a recording proxy
//! ([`Recorder`]): the migrations (from an empty database, in two steps so migration 3
//! copies real rows and the aggregate table gains columns), the sink's inserts (RowBinary
//! bodies kept byte for byte), the sink's read helpers, every insights route and a set of
//! `POST /v1/sql` queries (so the SQL guard's rewritten text is what is recorded), and
//! every Grafana panel with the plugin's macros expanded (`grafana_macros.rs`, shared with
//! the sinks' Grafana test). For each read the proxy also asks 18.16 for the same query as
//! `JSONCompact` (column names, types and values). `tests/it/python/chdb_replay.py` then
//! replays the statements in order in one chDB session — each with its URL settings,
//! inserts reading the recorded bodies — and answers the same comparison queries.
//!
//! Where Helios chooses SQL by server version, the modern branch is recorded too: the proxy
//! answers `SELECT version()` with chDB's version and records the statements that follow
//! without sending them to 18.16 (which would refuse them); they must succeed on chDB. The
//! current Grafana dashboards (`$__timeInterval`) are recorded that way, and each panel's
//! chDB answer must equal its legacy twin's answer on 18.16.
//!
//! Differences between the versions, and how Helios handles each: `docs/clickhouse-versions.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use helios_query_api::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use helios_query_api::store::ClickHouseReader;
use helios_query_api::{ApiState, read_router};
use helios_schemas::WindowResult;
use helios_sinks::clickhouse::query::{self as ch_query, TimeRange};
use helios_sinks::clickhouse::{
    ClickHouse, ClickHouseConfig, ClickHouseStore, migrations, retention,
};
use helios_sinks::rows::{AggregateRows, EventRow};
use helios_sinks::{Retention, Rows, Store, StoreSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::{HOUR, T0, call, catalog, query, rows, store_spec, test_var};

#[path = "../../../sinks/tests/it/grafana_macros.rs"]
mod grafana_macros;
use grafana_macros::{QueryWindow, interpolate};

// ------------------------------------------------------------------------------------
// The recording proxy.

/// A column of a `JSONCompact` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

/// A `JSONCompact` answer: columns and rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    meta: Vec<Meta>,
    data: Vec<Vec<Value>>,
}

/// What a server did with a statement.
#[derive(Debug, Clone)]
enum Outcome {
    /// Ran; for a read, the comparison query's answer.
    Ok(Option<Answer>),
    /// Refused, with the server's message.
    Err(String),
}

/// One statement as Helios sent it, and 18.16's outcome.
#[derive(Debug, Clone, Serialize)]
struct Statement {
    /// The code path that sent it.
    label: String,
    sql: String,
    database: Option<String>,
    default_format: Option<String>,
    /// Every other URL parameter: ClickHouse settings for this statement.
    settings: BTreeMap<String, String>,
    /// For an insert, the file holding the body (RowBinary).
    data: Option<String>,
    /// For a read, the query whose `JSONCompact` answer is compared.
    compare: Option<String>,
    compare_settings: BTreeMap<String, String>,
    /// 18.16's outcome; `None` for a statement of the modern branch, not sent to 18.16.
    #[serde(skip)]
    old: Option<Outcome>,
    /// A modern-branch read whose chDB answer must equal this statement's answer on 18.16.
    #[serde(skip)]
    same_as: Option<usize>,
}

#[derive(Default)]
struct Recording {
    label: String,
    /// Answer `SELECT version()` with this and record without sending (the modern branch).
    pretend: Option<String>,
    same_as: Option<usize>,
    statements: Vec<Statement>,
}

/// A proxy in front of the test server that records every statement.
struct Recorder {
    upstream: String,
    url: String,
    http: reqwest::Client,
    dir: PathBuf,
    state: Mutex<Recording>,
}

/// URL parameters that are not settings (the HTTP interface's own).
const RESERVED: [&str; 8] = [
    "database",
    "default_format",
    "query",
    "compress",
    "decompress",
    "user",
    "password",
    "query_id",
];

/// Output settings of every comparison query: numbers as JSON numbers on both servers.
fn compare_settings() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "output_format_json_quote_64bit_integers".to_owned(),
        "0".to_owned(),
    )])
}

/// Whether a statement reads (and so has an answer to compare).
fn is_read(sql: &str) -> bool {
    let word: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(
        word.as_str(),
        "SELECT" | "WITH" | "SHOW" | "DESCRIBE" | "EXISTS"
    )
}

impl Recorder {
    async fn start(upstream: String, dir: PathBuf) -> Arc<Recorder> {
        // reqwest is built without a crypto provider of its own (ADR-018).
        helios_schemas::tls::install_default_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rec = Arc::new(Recorder {
            upstream,
            url,
            http: reqwest::Client::new(),
            dir,
            state: Mutex::new(Recording::default()),
        });
        let router = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(rec.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        rec
    }

    /// Names the code path the next statements come from.
    fn step(&self, label: impl Into<String>) {
        let mut s = self.state.lock().unwrap();
        s.label = label.into();
        s.same_as = None;
    }

    /// From now on, pretend to be `version` and record without sending (or stop, `None`).
    fn pretend(&self, version: Option<&str>) {
        self.state.lock().unwrap().pretend = version.map(str::to_owned);
    }

    fn last(&self) -> usize {
        self.state.lock().unwrap().statements.len() - 1
    }

    fn expect_same_as(&self, index: usize) {
        self.state.lock().unwrap().same_as = Some(index);
    }

    fn statements(&self) -> Vec<Statement> {
        self.state.lock().unwrap().statements.clone()
    }

    /// Runs `sql` on the test server the way the comparison does: `JSONCompact`.
    async fn ask_upstream(
        &self,
        sql: &str,
        database: Option<&str>,
        settings: &BTreeMap<String, String>,
    ) -> Outcome {
        let mut url = reqwest::Url::parse(&self.upstream).unwrap();
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("default_format", "JSONCompact");
            if let Some(db) = database {
                pairs.append_pair("database", db);
            }
            for (k, v) in settings {
                pairs.append_pair(k, v);
            }
        }
        let response = self
            .http
            .post(url)
            .body(sql.to_owned())
            .send()
            .await
            .unwrap();
        let ok = response.status().is_success();
        let text = response.text().await.unwrap();
        if !ok {
            return Outcome::Err(text.trim().to_owned());
        }
        if text.trim().is_empty() {
            return Outcome::Ok(Some(Answer {
                meta: Vec::new(),
                data: Vec::new(),
            }));
        }
        let answer: Answer = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("18.16 answered no JSONCompact ({e}): {text}"));
        Outcome::Ok(Some(answer))
    }
}

async fn handle(
    State(rec): State<Arc<Recorder>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = reqwest::Url::parse(&format!("http://proxy{uri}")).unwrap();
    let (mut database, mut default_format, mut query_param) = (None, None, None);
    let mut settings = BTreeMap::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "database" => database = Some(v.into_owned()),
            "default_format" => default_format = Some(v.into_owned()),
            "query" => query_param = Some(v.into_owned()),
            other if RESERVED.contains(&other) => {}
            other => {
                settings.insert(other.to_owned(), v.into_owned());
            }
        }
    }
    let (sql, data) = match query_param {
        Some(q) => (q, Some(body.clone())),
        None => (String::from_utf8_lossy(&body).into_owned(), None),
    };
    let (label, pretend, same_as) = {
        let s = rec.state.lock().unwrap();
        (s.label.clone(), s.pretend.clone(), s.same_as)
    };
    let compare = is_read(&sql).then(|| sql.clone());
    let mut statement = Statement {
        label,
        sql: sql.clone(),
        database: database.clone(),
        default_format,
        settings: settings.clone(),
        data: None,
        compare: compare.clone(),
        compare_settings: compare_settings(),
        old: None,
        same_as,
    };
    let answer = if let Some(version) = pretend {
        if sql.trim() == "SELECT version()" {
            // RowBinary String: length (one varint byte), bytes.
            let mut b = vec![u8::try_from(version.len()).unwrap()];
            b.extend_from_slice(version.as_bytes());
            (StatusCode::OK, b).into_response()
        } else {
            (StatusCode::OK, Vec::new()).into_response()
        }
    } else {
        let mut request = rec
            .http
            .post(format!("{}{uri}", rec.upstream))
            .body(body.clone());
        for (name, value) in &headers {
            let n = name.as_str();
            if n.starts_with("x-clickhouse") || n == "authorization" {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response.headers().get("content-type").cloned();
        let bytes = response.bytes().await.unwrap();
        statement.old = Some(if !status.is_success() {
            Outcome::Err(String::from_utf8_lossy(&bytes).trim().to_owned())
        } else if let Some(c) = &compare {
            let mut all = settings.clone();
            all.extend(compare_settings());
            rec.ask_upstream(c, database.as_deref(), &all).await
        } else {
            Outcome::Ok(None)
        });
        let mut out = (
            StatusCode::from_u16(status.as_u16()).unwrap(),
            bytes.to_vec(),
        )
            .into_response();
        if let Some(ct) = content_type {
            out.headers_mut().insert("content-type", ct);
        }
        out
    };
    if sql.trim() == "SELECT version()" && statement.old.is_none() {
        // The pretended version is the proxy's own answer, not a statement of the run.
        return answer;
    }
    let mut s = rec.state.lock().unwrap();
    if let Some(data) = data {
        let path = rec.dir.join(format!("{:04}.bin", s.statements.len()));
        std::fs::write(&path, &data).unwrap();
        statement.data = Some(path.to_string_lossy().into_owned());
    }
    s.statements.push(statement);
    answer
}

// ------------------------------------------------------------------------------------
// chDB.

/// The tools venv's Python with `chdb` (scripts/test installs `chdb-core`).
fn python() -> String {
    std::env::var("HELIOS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "HELIOS_PYTHON is not set: this test runs chDB (PyPI chdb-core) in the tools venv's \
             Python. Run it through scripts/test, which installs it, or set HELIOS_PYTHON to a \
             Python with `pip install 'chdb-core==26.9.*'`."
        )
    })
}

#[derive(Debug, Deserialize)]
struct ChdbAnswer {
    ok: bool,
    error: Option<String>,
    answer: Option<Answer>,
}

#[derive(Debug, Deserialize)]
struct ChdbRun {
    engine: String,
    version: String,
    answers: Vec<ChdbAnswer>,
}

fn replay_on_chdb(python: &str, statements: &[Statement], dir: &Path) -> ChdbRun {
    let input = dir.join("statements.json");
    let output = dir.join("answers.json");
    std::fs::write(&input, serde_json::to_vec_pretty(statements).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/it/python/chdb_replay.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{} failed ({}); is chdb-core installed in HELIOS_PYTHON's venv?\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let run: ChdbRun = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(run.answers.len(), statements.len());
    run
}

// ------------------------------------------------------------------------------------
// Comparing answers.

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

/// The answer's columns a query's last `ORDER BY` names, when every item is one: rows
/// equal in those may come in any order (ClickHouse promises none for ties).
fn order_key(sql: &str, meta: &[Meta]) -> Option<Vec<usize>> {
    let upper = sql.to_ascii_uppercase();
    let at = upper.rfind("ORDER BY")? + "ORDER BY".len();
    let end = upper[at..].find("LIMIT").map_or(sql.len(), |e| at + e);
    sql[at..end]
        .split(',')
        .map(|item| {
            let item = item.trim();
            let item = ["DESC", "ASC", "desc", "asc"]
                .iter()
                .find_map(|d| item.strip_suffix(d))
                .unwrap_or(item)
                .trim()
                .trim_matches('`');
            meta.iter().position(|m| m.name == item)
        })
        .collect()
}

/// Why two answers differ, if they do. Rows are compared in order where the query orders
/// them (ties, rows equal in the ordering columns, in any order), as sets otherwise.
fn differ(sql: &str, old: &Answer, new: &Answer) -> Option<String> {
    if old.meta != new.meta {
        return Some(format!(
            "columns differ: 18.16 {:?}, chDB {:?}",
            old.meta, new.meta
        ));
    }
    let ordered = sql.to_ascii_uppercase().contains("ORDER BY");
    let key = if ordered {
        order_key(sql, &old.meta)
    } else {
        None
    };
    let sorted = |a: &Answer| {
        let mut r = a.data.clone();
        r.sort_by_key(|row| serde_json::to_string(row).unwrap());
        r
    };
    let (a, b) = if ordered && key.is_none() {
        (old.data.clone(), new.data.clone())
    } else {
        (sorted(old), sorted(new))
    };
    if a.len() != b.len() {
        return Some(format!(
            "{} rows on 18.16, {} on chDB: {a:?} vs {b:?}",
            a.len(),
            b.len()
        ));
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if x.len() != y.len() || !x.iter().zip(y).all(|(p, q)| same_value(p, q)) {
            return Some(format!("row {i}: 18.16 {x:?}, chDB {y:?}"));
        }
    }
    if let Some(key) = key {
        let keys = |a: &Answer| -> Vec<Vec<Value>> {
            a.data
                .iter()
                .map(|row| key.iter().map(|&i| row[i].clone()).collect())
                .collect()
        };
        let (ka, kb) = (keys(old), keys(new));
        if let Some(i) =
            (0..ka.len()).find(|&i| !ka[i].iter().zip(&kb[i]).all(|(p, q)| same_value(p, q)))
        {
            return Some(format!(
                "ordered differently at row {i}: 18.16 {:?}, chDB {:?}",
                ka[i], kb[i]
            ));
        }
    }
    None
}

/// Statements whose answers differ by nature: only that both ran is compared.
fn volatile(sql: &str) -> bool {
    sql.trim() == "SELECT version()"
}

// ------------------------------------------------------------------------------------
// The scripted data and the code paths.

/// The spec before its aggregate gained the `branch` key and the `mean` measure: the
/// second migration adds them as columns.
fn earlier_spec() -> StoreSpec {
    let mut spec = store_spec();
    let agg = &mut spec.aggregates[0];
    agg.group_by.retain(|k| k != "branch");
    agg.measures.retain(|m| m != "mean");
    spec
}

/// The API's catalog and a hopping aggregate with `min`, `first` and `last` measures: the
/// read shapes `ci_runs` (tumbling) does not reach, such as the filter that tiles
/// overlapping windows.
fn full_catalog() -> Catalog {
    let m = |name: &str, function| MeasureInfo {
        name: name.to_owned(),
        function,
    };
    let mut c = catalog();
    c.aggregates.push(AggregateInfo {
        name: "host_load".to_owned(),
        group_by: vec!["host".to_owned()],
        measures: vec![
            m("low", MeasureFunction::Min),
            m("first_seen", MeasureFunction::First),
            m("last_seen", MeasureFunction::Last),
        ],
        window: WindowInfo {
            kind: WindowKind::Hopping,
            size_seconds: 3600,
            slide_seconds: 1800,
        },
    });
    c
}

fn full_spec() -> StoreSpec {
    StoreSpec {
        aggregates: full_catalog().store_tables(),
        ..StoreSpec::default()
    }
}

/// Hour-long `host_load` windows every half hour for two hosts.
fn host_load_rows() -> AggregateRows {
    let spec = full_spec();
    let mut rows = AggregateRows::new(spec.aggregate("host_load").unwrap().clone());
    for h in 0..12 {
        for (i, host) in ["web-1", "db-1"].iter().enumerate() {
            let base = h as f64 * 0.25 + i as f64;
            rows.push(&WindowResult {
                id: format!("host_load/{host}/{h}"),
                aggregate: "host_load".to_owned(),
                window_start: T0 + h * HOUR / 2,
                window_end: T0 + h * HOUR / 2 + HOUR,
                group: BTreeMap::from([("host".to_owned(), host.to_string())]),
                measures: BTreeMap::from([
                    ("low".to_owned(), base),
                    ("first_seen".to_owned(), base + 0.5),
                    ("last_seen".to_owned(), base + 0.75),
                ]),
                count: 30,
                version: 1,
                is_final: true,
            })
            .unwrap();
        }
    }
    rows
}

/// Events the Grafana panels filter on (hosts, probes, deployments, CI conclusions), on
/// top of the API's scripted rows, so that every panel has rows to compare.
fn panel_events() -> Vec<EventRow> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut event =
        |source: &str, kind: &str, subject: &str, time: i64, value: f64, attrs: &[(&str, &str)]| {
            n += 1;
            out.push(EventRow {
                id: format!("p-{n:03}"),
                source: source.to_owned(),
                kind: kind.to_owned(),
                subject: subject.to_owned(),
                time,
                received_at: time + 500,
                attr_keys: attrs.iter().map(|(k, _)| (*k).to_owned()).collect(),
                attr_values: attrs.iter().map(|(_, v)| (*v).to_owned()).collect(),
                value: Some(value),
                payload: None,
            });
        };
    for h in 0..6 {
        let t = T0 + h * HOUR + 17 * 60_000_000;
        for (i, host) in ["web-1", "db-1"].iter().enumerate() {
            let f = h as f64 + i as f64 * 10.0;
            event("host", "host.cpu", host, t, 0.1 + f / 100.0, &[]);
            event("host", "host.load1", host, t, 0.5 + f / 10.0, &[]);
            event("host", "host.memory_used_pct", host, t, 40.0 + f, &[]);
            event(
                "host",
                "host.net_rx_bytes",
                host,
                t,
                1000.0 * (f + 1.0),
                &[],
            );
            event("host", "host.net_tx_bytes", host, t, 500.0 * (f + 1.0), &[]);
            event(
                "host",
                "host.disk_used_pct",
                host,
                t,
                60.0 + f,
                &[("mount", "/")],
            );
        }
        let ok = if h == 3 { "false" } else { "true" };
        event(
            "probe",
            "probe.http",
            "site",
            t + 60_000_000,
            120.0 + h as f64 * 7.5,
            &[
                ("ok", ok),
                ("url", "https://example.org/"),
                ("status", "200"),
                ("error", ""),
            ],
        );
        let (conclusion, workflow) = if h % 2 == 0 {
            ("success", "build")
        } else {
            ("failure", "test")
        };
        event(
            "github",
            "ci.run",
            "helios",
            t + 120_000_000,
            30.0 + h as f64,
            &[
                ("conclusion", conclusion),
                ("workflow", workflow),
                ("branch", "main"),
            ],
        );
        let state = if h == 4 { "failure" } else { "success" };
        event(
            "github",
            "deploy.status",
            "helios",
            t + 180_000_000,
            90.0,
            &[
                ("environment", if h < 3 { "staging" } else { "production" }),
                ("state", state),
            ],
        );
    }
    out
}

/// The insights routes, each shape once or more.
fn insights_requests() -> Vec<String> {
    let (from, to) = ("2026-11-20T00:00:00Z", "2026-11-20T06:00:00Z");
    let ts = |extra: &[(&str, &str)]| {
        let mut p = vec![("aggregate", "ci_runs"), ("from", from), ("to", to)];
        p.extend_from_slice(extra);
        format!("/v1/insights/timeseries{}", query(&p))
    };
    let top = |extra: &[(&str, &str)]| {
        let mut p = vec![("aggregate", "ci_runs"), ("from", from), ("to", to)];
        p.extend_from_slice(extra);
        format!("/v1/insights/top{}", query(&p))
    };
    vec![
        ts(&[("measure", "runs")]),
        ts(&[("measure", "runs"), ("step", "2h")]),
        ts(&[("measure", "runs"), ("group_by", "subject"), ("top", "2")]),
        ts(&[("measure", "runs"), ("subject", "atlas")]),
        ts(&[("measure", "mean"), ("step", "6h"), ("subject", "helios")]),
        ts(&[("measure", "slowest"), ("step", "6h")]),
        ts(&[("measure", "duration"), ("group_by", "branch")]),
        ts(&[("measure", "p95"), ("group_by", "subject")]),
        format!(
            "/v1/insights/timeseries{}",
            query(&[
                ("aggregate", "ci_runs"),
                ("measure", "runs"),
                ("from", "2026-11-21T00:00:00Z"),
                ("to", "2026-11-21T02:00:00Z"),
            ])
        ),
        top(&[("measure", "duration"), ("by", "subject"), ("n", "2")]),
        top(&[("measure", "runs"), ("branch", "main")]),
        top(&[("measure", "mean"), ("by", "subject")]),
        top(&[("measure", "slowest"), ("by", "subject"), ("n", "1")]),
        "/v1/alerts".to_owned(),
        "/v1/alerts?state=firing".to_owned(),
        "/v1/alerts?subject=atlas&rule=slow_ci".to_owned(),
        "/v1/alerts?from=2026-11-20T05:00:00Z".to_owned(),
        "/v1/insights".to_owned(),
        "/v1/insights?kind=streak".to_owned(),
        "/v1/insights?subject=atlas".to_owned(),
        format!(
            "/v1/insights{}",
            query(&[
                ("aggregate", "ci_runs"),
                ("from", "2026-11-20T03:00:00Z"),
                ("to", "2026-11-20T05:00:00Z")
            ])
        ),
        "/v1/insights?limit=1".to_owned(),
        "/v1/events?limit=10".to_owned(),
        "/v1/events?kind=git.push".to_owned(),
        format!(
            "/v1/events{}",
            query(&[
                ("subject", "zephyr"),
                ("source", "github"),
                ("from", "2026-11-20T02:00:00Z"),
                ("to", "2026-11-20T04:00:00Z"),
            ])
        ),
        format!(
            "/v1/subjects/helios{}",
            query(&[("from", from), ("to", to)])
        ),
        format!(
            "/v1/subjects/nobody{}",
            query(&[("from", from), ("to", to)])
        ),
        "/v1/late".to_owned(),
        format!(
            "/v1/insights/timeseries{}",
            query(&[
                ("aggregate", "host_load"),
                ("measure", "low"),
                ("from", from),
                ("to", to),
                ("step", "2h")
            ])
        ),
        format!(
            "/v1/insights/timeseries{}",
            query(&[
                ("aggregate", "host_load"),
                ("measure", "first_seen"),
                ("group_by", "host"),
                ("from", from),
                ("to", to)
            ])
        ),
        format!(
            "/v1/insights/top{}",
            query(&[
                ("aggregate", "host_load"),
                ("measure", "last_seen"),
                ("by", "host"),
                ("from", from),
                ("to", to)
            ])
        ),
        format!(
            "/v1/insights/top{}",
            query(&[
                ("aggregate", "host_load"),
                ("measure", "low"),
                ("host", "web-1"),
                ("from", from),
                ("to", to)
            ])
        ),
        "/readyz".to_owned(),
    ]
}

/// `POST /v1/sql` queries: what the guard admits, rewritten by it, and one the server
/// refuses (an unknown column), whose refusal both versions must share.
const SQL_QUERIES: &[&str] = &[
    "SELECT kind, count(*) AS n, sum(value) AS total FROM events GROUP BY kind ORDER BY kind",
    "SELECT * FROM events ORDER BY source, id",
    "SELECT subject, runs, version FROM agg_ci_runs WHERE window_start = 1795132800000000 ORDER BY subject",
    "SELECT count(*) AS n FROM (SELECT id FROM events WHERE time >= 1795132800000000) recent",
    "SELECT id, state, evidence FROM alerts ORDER BY id",
    "SELECT aggregate, subject, window_start, window_end, late_by FROM late_events ORDER BY late_id",
    "SELECT subject, avg(value) AS mean, quantile(0.5)(value) AS p50 FROM events WHERE kind = 'ci.run' GROUP BY subject ORDER BY subject",
    "SELECT toDate(toDateTime(intDiv(time, 1000000))) AS day, uniqExact(subject) AS subjects FROM events GROUP BY day ORDER BY day",
    "SELECT attr_values[indexOf(attr_keys, 'branch')] AS branch, count() AS n FROM events GROUP BY branch ORDER BY branch",
    "SELECT 1 AS one FROM events t0 CROSS JOIN dead_letters t1 LIMIT 3",
    "SELECT stage, reason, original, topic, partition, offset FROM dead_letters",
    "SELECT kind, measure, round(value, 2) AS v, score FROM insights ORDER BY id",
    "SELECT no_such_column FROM events",
];

/// The hour around the API's scripted data, in 10-minute panel intervals.
fn panel_window() -> QueryWindow {
    QueryWindow {
        from_ms: T0 / 1000 - 30 * 60_000,
        to_ms: T0 / 1000 + 7 * 3_600_000,
        interval_ms: 600_000,
    }
}

/// Every panel query of a dashboard set, named, in file and panel order.
fn panel_queries(set: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/grafana")
        .join(set);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    fn walk(list: &Value, file: &str, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            if p["type"] == "row" {
                walk(&p["panels"], file, out);
                continue;
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let name = format!(
                    "{file} panel {} `{}`",
                    p["id"],
                    p["title"].as_str().unwrap_or("")
                );
                out.push((name, t["rawSql"].as_str().unwrap_or("").to_owned()));
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        walk(&doc["panels"], &file, &mut out);
    }
    out
}

/// Sends one panel's SQL to the proxy as the plugin would: one statement, the data source's
/// default database.
async fn run_panel(rec: &Recorder, database: &str, sql: &str) {
    let response = rec
        .http
        .post(format!("{}/?database={database}", rec.url))
        .body(sql.to_owned())
        .send()
        .await
        .unwrap();
    // The answer is compared from the recording; only the transport must work here.
    let _ = response.bytes().await.unwrap();
}

/// The version chDB (`chdb-core` 26.9, as scripts/test pins it) reports; the proxy answers
/// it to Helios for the current server's branch.
const CURRENT_VERSION: &str = "26.9.2.1";

/// (major, minor) of a version string, as `ClickHouse::server_version` reads it.
fn ch_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The test server's version, asked the way Helios asks.
async fn ch_query_version(ch: &ClickHouse) -> String {
    let (major, minor) = ch.server_version().await.unwrap();
    format!("{major}.{minor}")
}

/// Tables whose whole contents are compared at the end.
const TABLES: [&str; 8] = [
    "events",
    "events_v1",
    "alerts",
    "insights",
    "dead_letters",
    "late_events",
    "agg_ci_runs",
    "agg_host_load",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_helios_sends_answers_the_same_on_clickhouse_18_16_and_chdb() {
    // The recorder speaks plain HTTP to the test server as `default` (the comparison is
    // of statements and answers; HTTPS and passwords have their own tests).
    let upstream = test_var("HELIOS_TEST_CLICKHOUSE");
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(upstream, dir.path().to_owned()).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let database = format!("helios_chdb_{}_{nanos}", std::process::id());
    let config = ClickHouseConfig::new(&rec.url).database(&database);
    let ch = ClickHouse::new(&config).unwrap();
    let old_version = ch_query_version(&ch).await;

    // Schema: migrations 1-2 and the aggregate table of an earlier spec, events written
    // at that schema, then migrations 3-4 (3 copies the events) and the new columns.
    rec.step("migrate to 2 (earlier spec)");
    migrations::migrate_to(&ch, &earlier_spec(), 2)
        .await
        .unwrap();
    let mut all = rows();
    all.events.extend(panel_events());
    let mut early = Rows {
        events: all.events.drain(..20).collect(),
        ..Rows::default()
    };
    rec.step("insert events at schema 2");
    ClickHouseStore::new(ch.clone(), earlier_spec())
        .unwrap()
        .write(&mut early)
        .await
        .unwrap();
    rec.step("migrate to latest (new aggregate columns)");
    let report = migrations::migrate(&ch, &full_spec()).await.unwrap();
    assert_eq!(report.version, migrations::latest_version());
    // agg_host_load created, agg_ci_runs' new key and measure added.
    assert_eq!(report.spec_changes.len(), 3, "{report:?}");
    rec.step("migrate again (nothing to do)");
    assert!(
        migrations::migrate(&ch, &full_spec())
            .await
            .unwrap()
            .is_noop()
    );

    rec.step("sink inserts");
    let store = ClickHouseStore::new(ch.clone(), full_spec()).unwrap();
    all.aggregates
        .insert("host_load".to_owned(), host_load_rows());
    store.write(&mut all).await.unwrap();

    rec.step("sink read helpers");
    let agg = &store_spec().aggregates[0];
    ch_query::events(&ch, None, TimeRange::ALL).await.unwrap();
    let window = TimeRange {
        start: T0 + HOUR,
        end: T0 + 3 * HOUR,
    };
    ch_query::events(&ch, Some("github"), window).await.unwrap();
    ch_query::count_events(&ch, window).await.unwrap();
    ch_query::aggregate_results(&ch, agg, TimeRange::ALL)
        .await
        .unwrap();
    ch_query::aggregate_results(&ch, &earlier_spec().aggregates[0], window)
        .await
        .unwrap();
    ch_query::alerts(&ch).await.unwrap();
    ch_query::insights(&ch).await.unwrap();
    ch_query::dead_letters(&ch).await.unwrap();
    ch_query::late_events(&ch).await.unwrap();
    migrations::table_columns(&ch, "agg_ci_runs").await.unwrap();

    // The read API as the sink's user (settings sent with each query).
    let reader = Arc::new(ClickHouseReader::new(&config).unwrap());
    let api = read_router(ApiState::new(reader, full_catalog()));
    let mut api_calls = 0;
    for uri in insights_requests() {
        rec.step(format!("GET {uri}"));
        let (status, body) = call(&api, "GET", &uri, None).await;
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "GET {uri} on 18.16: {status} {body}"
        );
        api_calls += 1;
        if let Some(cursor) = body["next_cursor"].as_str() {
            let next = format!("/v1/events?limit=10&cursor={cursor}");
            rec.step(format!("GET {next}"));
            let (status, body) = call(&api, "GET", &next, None).await;
            assert!(status.is_success(), "GET {next}: {status} {body}");
            api_calls += 1;
        }
    }
    for sql in SQL_QUERIES {
        rec.step(format!("POST /v1/sql {sql}"));
        let (status, body) = call(&api, "POST", "/v1/sql", Some(json!({ "sql": sql }))).await;
        let refused = sql.contains("no_such_column");
        assert_eq!(
            status.is_success(),
            !refused,
            "POST /v1/sql {sql} on 18.16: {status} {body}"
        );
        api_calls += 1;
    }

    // Grafana: the legacy set on 18.16 (and on chDB), then the current set on chDB only,
    // each panel's answer against its legacy twin's on 18.16.
    let window = panel_window();
    let legacy = panel_queries("dashboards-clickhouse-18");
    let current = panel_queries("dashboards");
    assert_eq!(legacy.len(), current.len());
    let mut twins = Vec::new();
    for (name, raw) in &legacy {
        rec.step(format!("grafana (18.16 set): {name}"));
        run_panel(&rec, &database, &interpolate(raw, &window).unwrap()).await;
        twins.push(rec.last());
    }
    rec.pretend(Some(CURRENT_VERSION));
    for ((name, raw), twin) in current.iter().zip(&twins) {
        rec.step(format!("grafana (current set): {name}"));
        rec.expect_same_as(*twin);
        run_panel(&rec, &database, &interpolate(raw, &window).unwrap()).await;
    }
    rec.pretend(None);

    // What the tables hold after all of it: schema and contents.
    rec.step("state: tables");
    let state = |sql: String| {
        let rec = rec.clone();
        let database = database.clone();
        async move { run_panel(&rec, &database, &sql).await }
    };
    state(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"
            .to_owned(),
    )
    .await;
    rec.step("state: columns");
    state("SELECT table, name, type, default_kind, default_expression FROM system.columns WHERE database = currentDatabase() ORDER BY table, name".to_owned()).await;
    rec.step("state: schema_migrations");
    state(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version, name".to_owned(),
    )
    .await;
    for table in TABLES {
        rec.step(format!("state: {table}"));
        state(format!("SELECT * FROM `{table}` FINAL")).await;
    }

    // Retention on 18.16 (no TTL: expired monthly partitions are dropped), then the
    // current servers' branch (a TTL per table) and the read user made over SQL.
    let keep = |days: u64| Some(Duration::from_secs(days * 86_400));
    let retention_spec = StoreSpec {
        retention: Retention {
            events: keep(36_500),
            aggregates: keep(36_500),
            alerts: keep(36_500),
            insights: keep(36_500),
            dead_letters: keep(1),
        },
        ..full_spec()
    };
    rec.step("retention (18.16: drop expired partitions)");
    let dropped = retention::apply(&ch, &retention_spec).await.unwrap();
    assert_eq!(dropped.dropped.len(), 1, "{dropped:?}");
    rec.step("state: dead_letters after retention");
    state("SELECT count() AS n FROM dead_letters FINAL".to_owned()).await;
    rec.pretend(Some(CURRENT_VERSION));
    rec.step("retention (current: TTL)");
    let ttl = retention::apply(&ch, &retention_spec).await.unwrap();
    assert_eq!(ttl.ttl_set.len(), TABLES.len() - 1, "{ttl:?}");
    rec.step("migrate on a current server");
    let fresh = ClickHouse::new(&config.clone().database(format!("{database}_current"))).unwrap();
    migrations::migrate(&fresh, &full_spec()).await.unwrap();
    rec.pretend(None);
    rec.step("drop the database");
    ch.drop_database().await.unwrap();

    // Replay on chDB and compare. The settings Helios adds for the old server only
    // (`ddl_settings`) are left out: to a current server Helios does not send them, which
    // the "migrate on a current server" step shows (checked below).
    let old_version = ch_version(&old_version);
    let mut statements = rec.statements();
    let current_only = migrations::ddl_settings(ch_version(CURRENT_VERSION));
    for s in statements.iter_mut().filter(|s| s.old.is_some()) {
        for (name, _) in migrations::ddl_settings(old_version) {
            if !current_only.iter().any(|(n, _)| n == name) {
                s.settings.remove(*name);
            }
        }
    }
    let chdb = replay_on_chdb(&python, &statements, dir.path());
    let mut problems = Vec::new();
    let (mut reads, mut modern) = (0, 0);
    for (i, (s, new)) in statements.iter().zip(&chdb.answers).enumerate() {
        let at = format!(
            "#{i} [{}] {}",
            s.label,
            s.sql.chars().take(300).collect::<String>()
        );
        let Some(old) = &s.old else {
            modern += 1;
            if !new.ok {
                problems.push(format!(
                    "{at}\n  fails on chDB: {}",
                    new.error.as_deref().unwrap_or("")
                ));
                continue;
            }
            if let Some(twin) = s.same_as {
                match (&statements[twin].old, &new.answer) {
                    (Some(Outcome::Ok(Some(a))), Some(b)) => {
                        if let Some(d) = differ(&s.sql, a, b) {
                            problems.push(format!("{at}\n  differs from its 18.16 twin #{twin}: {d}"));
                        }
                    }
                    (other, b) => problems.push(format!(
                        "{at}\n  no answers to compare with twin #{twin}: 18.16 {other:?}, chDB {b:?}"
                    )),
                }
            }
            continue;
        };
        match (old, new.ok) {
            (Outcome::Err(e), true) => {
                problems.push(format!("{at}\n  fails on 18.16 ({e}) but runs on chDB"))
            }
            (Outcome::Err(_), false) => {}
            (Outcome::Ok(_), false) => problems.push(format!(
                "{at}\n  runs on 18.16, fails on chDB: {}",
                new.error.as_deref().unwrap_or("")
            )),
            (Outcome::Ok(None), true) => {}
            (Outcome::Ok(Some(a)), true) => {
                reads += 1;
                if volatile(&s.sql) {
                    continue;
                }
                match &new.answer {
                    Some(b) => {
                        if let Some(d) = differ(&s.sql, a, b) {
                            problems.push(format!("{at}\n  {d}"));
                        }
                    }
                    None => problems.push(format!("{at}\n  chDB gave no comparison answer")),
                }
            }
        }
    }
    // On 18.16 the schema statements carry the LowCardinality setting; on a current server
    // (the modern branch) no statement carries it, since that server would refuse it.
    let lc = "allow_experimental_low_cardinality_type";
    for s in &rec.statements() {
        let low_cardinality =
            s.sql.trim_start().starts_with("CREATE TABLE") && s.sql.contains("LowCardinality(");
        if s.old.is_some() && low_cardinality && !s.settings.contains_key(lc) {
            problems.push(format!(
                "[{}] sent to 18.16 without {lc}: {}",
                s.label, s.sql
            ));
        }
        if s.old.is_none() && s.settings.contains_key(lc) {
            problems.push(format!(
                "[{}] sent {lc} to a current server: {}",
                s.label, s.sql
            ));
        }
    }
    assert!(
        chdb.version.starts_with(CURRENT_VERSION),
        "chDB is ClickHouse {}, the modern branch was recorded as {CURRENT_VERSION}: update \
         CURRENT_VERSION with the chdb-core pin in scripts/test",
        chdb.version
    );
    let inserts = statements.iter().filter(|s| s.data.is_some()).count();
    eprintln!(
        "chdb: {} statements recorded ({} RowBinary inserts, {reads} reads compared, {modern} of \
         the current-server branch run on chDB only), {api_calls} API requests, {} panels per \
         dashboard set; {} ({})",
        statements.len(),
        inserts,
        legacy.len(),
        chdb.engine,
        chdb.version
    );
    assert!(
        problems.is_empty(),
        "{} of {} statements differ between ClickHouse 18.16 and {} ({}):\n{}",
        problems.len(),
        statements.len(),
        chdb.engine,
        chdb.version,
        problems.join("\n")
    );
    // The events at schema 2, then one insert per table: events, alerts, insights,
    // dead_letters, late_events, agg_ci_runs and agg_host_load.
    assert_eq!(inserts, 8, "RowBinary inserts recorded");
    assert!(reads >= 100, "only {reads} reads compared");
    // The hopping aggregate's reads carry the filter that tiles overlapping windows.
    assert!(
        statements
            .iter()
            .any(|s| s.sql.contains("window_start % 3600000000 = 0")),
        "no statement read the hopping aggregate's tiling windows"
    );
}
