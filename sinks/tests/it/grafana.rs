//! The Grafana provisioning and dashboards in `deploy/grafana/` against a real
//! clickhouse-server (done-when 6): every panel's SQL, with the ClickHouse plugin's macros
//! expanded for a fixed range, runs without error on the scripted data and returns rows.
//!
//! Two sets of the same dashboards: `dashboards/` buckets time series with the plugin's
//! `$__timeInterval` (`toStartOfInterval`, which current ClickHouse has), and
//! `dashboards-clickhouse-18/` with the arithmetic form 18.16 runs. The second must be the
//! first with exactly that substitution, and the server gets the set it can run.
//!
//! The macros are expanded as the plugin does it (`grafana_macros.rs`). The server comes from `HELIOS_TEST_CLICKHOUSE`, as for the other ClickHouse
//! tests; the data is written through the real sink into a fresh database, which stands in
//! for the data source's `defaultDatabase`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use crate::grafana_macros::{QueryWindow, interpolate};
use helios_sinks::clickhouse::{ClickHouse, ClickHouseStore, migrations};
use serde_json::Value;

/// The data source uid the dashboards must use.
const DATASOURCE_UID: &str = "helios-clickhouse";
const PLUGIN: &str = "grafana-clickhouse-datasource";
/// The dashboards the issue asks for; any other file in the folder is checked too.
const DASHBOARDS: [&str; 4] = ["overview", "ci-health", "hosts", "alerts"];

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana")
}

/// The dashboards for current ClickHouse (`$__timeInterval`).
const CURRENT: &str = "dashboards";
/// The same dashboards for servers without `toStartOfInterval` (ClickHouse 18).
const LEGACY: &str = "dashboards-clickhouse-18";
/// How a legacy time series buckets, and what the current one writes instead.
const LEGACY_BUCKET: &str = "toDateTime(intDiv(toUInt32(t), $__interval_s) * $__interval_s)";
const CURRENT_BUCKET: &str = "$__timeInterval(t)";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

// ------------------------------------------------------------------------------------
// Provisioning and dashboard files.

/// One query of one panel.
#[derive(Debug, Clone)]
struct PanelQuery {
    dashboard: String,
    panel_id: u64,
    title: String,
    kind: String,
    /// The bar chart's category column, when the panel names one.
    x_field: Option<String>,
    ref_id: String,
    /// Grafana's `format`: 0 time series, 1 table.
    format: i64,
    raw_sql: String,
}

impl PanelQuery {
    fn name(&self) -> String {
        format!(
            "dashboard `{}`, panel {} `{}` (query {})",
            self.dashboard, self.panel_id, self.title, self.ref_id
        )
    }
}

fn panels(list: &Value, out: &mut Vec<Value>) {
    for p in list.as_array().into_iter().flatten() {
        if p["type"] == "row" {
            panels(&p["panels"], out);
        } else {
            out.push(p.clone());
        }
    }
}

/// The dashboard files the provider loads, checked to include the four of the issue.
fn dashboard_files(set: &str) -> Vec<PathBuf> {
    let dir = grafana_dir().join(set);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for name in DASHBOARDS {
        assert!(
            files.iter().any(|f| f.ends_with(format!("{name}.json"))),
            "dashboards/{name}.json is missing"
        );
    }
    files
}

/// Every query of every panel of every dashboard, checked for what Grafana and the
/// plugin need: the provisioned data source on panel and target, raw SQL, a format that
/// matches the panel. Problems are collected, named by dashboard and panel.
fn dashboard_queries(set: &str, uid: &str) -> (Vec<PanelQuery>, Vec<String>) {
    let mut queries = Vec::new();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for path in dashboard_files(set) {
        let doc: Value = serde_json::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        match doc["uid"].as_str() {
            Some(u) if uids.insert(u.to_owned()) => {}
            other => problems.push(format!("{file}: uid {other:?} is missing or not unique")),
        }
        if doc["title"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{file}: no title"));
        }
        let mut list = Vec::new();
        panels(&doc["panels"], &mut list);
        if list.is_empty() {
            problems.push(format!("{file}: no panels"));
        }
        let mut ids = BTreeSet::new();
        for p in list {
            let id = p["id"].as_u64().unwrap_or(0);
            let title = p["title"].as_str().unwrap_or("").to_owned();
            let kind = p["type"].as_str().unwrap_or("").to_owned();
            let at = format!("dashboard `{file}`, panel {id} `{title}`");
            if !ids.insert(id) {
                problems.push(format!("{at}: id {id} is used twice"));
            }
            if p["datasource"]["uid"] != uid || p["datasource"]["type"] != PLUGIN {
                problems.push(format!(
                    "{at}: datasource is {}, not the provisioned {{type: {PLUGIN}, uid: {uid}}}",
                    p["datasource"]
                ));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no targets"));
            }
            for t in targets {
                let ref_id = t["refId"].as_str().unwrap_or("?").to_owned();
                let at = format!("{at} (query {ref_id})");
                if t["datasource"]["uid"] != uid {
                    problems.push(format!(
                        "{at}: target datasource is {}, not uid {uid}",
                        t["datasource"]
                    ));
                }
                if t["editorType"] != "sql" {
                    problems.push(format!("{at}: editorType is {}, not sql", t["editorType"]));
                }
                let format = t["format"].as_i64().unwrap_or(-1);
                let wanted = if kind == "timeseries" { 0 } else { 1 };
                let query_type = if wanted == 0 { "timeseries" } else { "table" };
                if format != wanted || t["queryType"] != query_type {
                    problems.push(format!(
                        "{at}: a {kind} panel needs format {wanted} and queryType {query_type}, \
                         has {format} and {}",
                        t["queryType"]
                    ));
                }
                let raw_sql = t["rawSql"].as_str().unwrap_or("").to_owned();
                if raw_sql.trim().is_empty() {
                    problems.push(format!("{at}: no rawSql"));
                    continue;
                }
                if raw_sql.contains("helios.") {
                    problems.push(format!(
                        "{at}: names the database; tables must resolve through the data \
                         source's defaultDatabase"
                    ));
                }
                queries.push(PanelQuery {
                    dashboard: file.clone(),
                    panel_id: id,
                    title: title.clone(),
                    kind: kind.clone(),
                    x_field: p["options"]["xField"].as_str().map(str::to_owned),
                    ref_id,
                    format,
                    raw_sql,
                });
            }
        }
    }
    (queries, problems)
}

/// The provisioned data source's uid and default database, after checking the file.
fn provisioned_datasource() -> (String, String) {
    let path = grafana_dir().join("provisioning/datasources/clickhouse.yaml");
    let doc = yaml(&path);
    assert_eq!(doc["apiVersion"], 1, "{}", path.display());
    let list = doc["datasources"].as_array().expect("a datasources list");
    let ds: Vec<&Value> = list.iter().filter(|d| d["type"] == PLUGIN).collect();
    assert_eq!(
        ds.len(),
        1,
        "one {PLUGIN} data source in {}",
        path.display()
    );
    let ds = ds[0];
    let json = &ds["jsonData"];
    assert_eq!(
        json["protocol"], "http",
        "the plugin talks HTTP to ClickHouse"
    );
    for key in ["host", "port", "username", "defaultDatabase"] {
        assert!(
            json[key].as_str().is_some_and(|s| !s.is_empty()) || json[key].is_u64(),
            "jsonData.{key} is missing in {}",
            path.display()
        );
    }
    let password = ds["secureJsonData"]["password"].as_str().unwrap_or("");
    assert!(
        password.starts_with("${") && password.ends_with('}'),
        "the password must come from Grafana's environment (${{VAR}}), not the file: {password:?}"
    );
    (
        ds["uid"].as_str().expect("a uid").to_owned(),
        json["defaultDatabase"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn provisioning_and_dashboards_fit_together() {
    let (uid, database) = provisioned_datasource();
    assert_eq!(uid, DATASOURCE_UID);
    assert_eq!(database, "helios", "the database `helios migrate` creates");

    let path = grafana_dir().join("provisioning/dashboards/helios.yaml");
    let doc = yaml(&path);
    let providers = doc["providers"].as_array().expect("a providers list");
    assert_eq!(providers.len(), 1, "{}", path.display());
    assert_eq!(providers[0]["type"], "file");
    assert!(
        providers[0]["options"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/')),
        "the provider needs the absolute path the dashboards are mounted at"
    );

    let (queries, problems) = dashboard_queries(CURRENT, &uid);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let (legacy, problems) = dashboard_queries(LEGACY, &uid);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let kinds: BTreeSet<&str> = queries.iter().map(|q| q.kind.as_str()).collect();
    for kind in ["timeseries", "stat", "table", "barchart"] {
        assert!(kinds.contains(kind), "no {kind} panel in {kinds:?}");
    }
    for q in &queries {
        assert!(
            ["$__timeFilter(", "$__fromTime", "$__toTime"]
                .iter()
                .any(|m| q.raw_sql.contains(m)),
            "{}: the query ignores the dashboard's time range",
            q.name()
        );
        if q.format == 0 {
            assert!(
                q.raw_sql.contains(CURRENT_BUCKET) && !q.raw_sql.contains(LEGACY_BUCKET),
                "{}: a time series buckets by the panel's interval with {CURRENT_BUCKET}",
                q.name()
            );
        }
    }
    // The legacy set is the current one with only the bucket written out: same files, same
    // panels, the same SQL but for that.
    let names = |set: &str| -> Vec<String> {
        dashboard_files(set)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(CURRENT), names(LEGACY), "{CURRENT}/ and {LEGACY}/");
    for (current, old) in dashboard_files(CURRENT).iter().zip(dashboard_files(LEGACY)) {
        assert_eq!(
            read(current).replace(CURRENT_BUCKET, LEGACY_BUCKET),
            read(&old),
            "{} must be {} with {CURRENT_BUCKET} written as {LEGACY_BUCKET}, nothing else",
            old.display(),
            current.display()
        );
    }
    assert_eq!(queries.len(), legacy.len());
}

/// The dashboard set `url`'s server can run: the current one where it has
/// `toStartOfInterval`, else the legacy one.
async fn dashboards_for(url: &str) -> &'static str {
    let has = run_sql(
        url,
        "system",
        "SELECT count() AS n FROM system.functions WHERE name = 'toStartOfInterval'",
    )
    .await
    .unwrap();
    if has
        .rows
        .first()
        .is_some_and(|r| r.get("n").is_some_and(nonzero))
    {
        CURRENT
    } else {
        LEGACY
    }
}

// ------------------------------------------------------------------------------------
// Against ClickHouse.

/// A query's answer in ClickHouse's JSON format: column names and types, rows.
#[derive(Debug)]
struct Answer {
    columns: Vec<(String, String)>,
    rows: Vec<serde_json::Map<String, Value>>,
}

async fn run_sql(url: &str, database: &str, sql: &str) -> Result<Answer, String> {
    // Over HTTPS as the password user when the tests run that way (common::connect).
    let (client, credentials) = raw_client();
    let mut request = client
        .post(format!("{url}/?database={database}"))
        .body(format!("{sql}\nFORMAT JSON"));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach ClickHouse at {url}: {e}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("ClickHouse answered {status}: {}", body.trim()));
    }
    let doc: Value =
        serde_json::from_str(&body).map_err(|e| format!("answer is not JSON ({e}): {body}"))?;
    let columns = doc["meta"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_owned(),
                m["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let rows = doc["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_object().cloned())
        .collect();
    Ok(Answer { columns, rows })
}

fn is_numeric(ty: &str) -> bool {
    let inner = ty
        .trim_start_matches("LowCardinality(")
        .trim_start_matches("Nullable(");
    ["Int", "UInt", "Float", "Decimal"]
        .iter()
        .any(|p| inner.starts_with(p))
}

fn nonzero(v: &Value) -> bool {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    n.is_some_and(|n| n != 0.0 && !n.is_nan())
}

/// Why a panel's answer would show nothing useful, if it would.
fn check_answer(q: &PanelQuery, a: &Answer) -> Option<String> {
    if a.rows.is_empty() {
        return Some("returned no rows for the scripted data".to_owned());
    }
    // An aggregate over nothing still returns one row, of zeros: that is no data either.
    let numeric: Vec<&str> = a
        .columns
        .iter()
        .filter(|(_, ty)| is_numeric(ty))
        .map(|(name, _)| name.as_str())
        .collect();
    if !numeric.is_empty()
        && !a
            .rows
            .iter()
            .any(|r| numeric.iter().any(|c| r.get(*c).is_some_and(nonzero)))
    {
        return Some(format!(
            "returned only zeros in {numeric:?}: the filter matched none of the scripted data"
        ));
    }
    if q.format == 0 && a.columns.first().is_none_or(|(_, ty)| ty != "DateTime") {
        return Some(format!(
            "a time series needs a DateTime first column, got {:?}",
            a.columns
        ));
    }
    if let Some(x) = &q.x_field
        && !a.columns.iter().any(|(name, _)| name == x)
    {
        return Some(format!(
            "the bar chart's xField `{x}` is not a column of {:?}",
            a.columns
        ));
    }
    None
}

/// The range the panels are queried with: the hour around the scripted data, and the
/// interval Grafana would pick for a panel about 60 points wide.
fn scripted_window() -> QueryWindow {
    let t0_ms = T0 / 1000;
    QueryWindow {
        from_ms: t0_ms - 30 * 60_000,
        to_ms: t0_ms + 30 * 60_000,
        interval_ms: 60_000,
    }
}

async fn write_scripted_data(ch: &ClickHouse) {
    migrations::migrate(ch, &spec()).await.unwrap();
    let stage = Stage::new().await;
    let mut script = scripted_stream();
    script.events.extend(signal_events());
    stage.write(&script).await;
    let sink = start_sink(
        &stage,
        Arc::new(ClickHouseStore::new(ch.clone(), spec()).unwrap()),
        sink_config("grafana"),
    );
    flushed(&sink.metrics, script_rows(&script)).await;
    sink.stop().await;
}

/// Done-when 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_and_returns_rows_for_the_scripted_data() {
    let url = clickhouse_url();
    let (uid, _) = provisioned_datasource();
    let set = dashboards_for(&url).await;
    let (queries, problems) = dashboard_queries(set, &uid);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let ch = fresh_db(&url, "grafana");
    write_scripted_data(&ch).await;

    let window = scripted_window();
    let mut failures = Vec::new();
    for q in &queries {
        let sql = match interpolate(&q.raw_sql, &window) {
            Ok(sql) => sql,
            Err(e) => {
                failures.push(format!("{}: {e}", q.name()));
                continue;
            }
        };
        let problem = match run_sql(&url, ch.database(), &sql).await {
            Ok(answer) => check_answer(q, &answer),
            Err(e) => Some(e),
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}\n--- SQL as sent:\n{sql}\n---", q.name()));
        }
    }
    ch.drop_database().await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} panel queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
    assert!(queries.len() >= 30, "only {} panel queries", queries.len());
}

/// Why there is a legacy set: `$__timeInterval` expands to `toStartOfInterval`, which
/// ClickHouse 18.16 (Debian's, the test server) does not have. Where the server has it,
/// both forms give the same buckets (and `query-api/tests/it/chdb.rs` compares the current
/// set's answers on chDB with the legacy set's on 18.16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_buckets_match_the_time_interval_macro_where_the_server_has_it() {
    let url = clickhouse_url();
    let window = scripted_window();
    let has = run_sql(
        &url,
        "system",
        "SELECT count() AS n FROM system.functions WHERE name = 'toStartOfInterval'",
    )
    .await
    .unwrap();
    let has = has
        .rows
        .first()
        .is_some_and(|r| r.get("n").is_some_and(nonzero));
    let sql = interpolate(
        "WITH toDateTime(1767225000 + number * 7) AS t \
         SELECT count() AS n, \
                countIf($__timeInterval(t) != \
                        toDateTime(intDiv(toUInt32(t), $__interval_s) * $__interval_s)) AS differ \
         FROM (SELECT number FROM system.numbers LIMIT 1000)",
        &window,
    )
    .unwrap();
    match run_sql(&url, "system", &sql).await {
        Ok(a) => {
            assert!(has, "toStartOfInterval ran but system.functions lacks it");
            let row = &a.rows[0];
            assert!(nonzero(&row["n"]));
            assert_eq!(row["differ"].to_string().trim_matches('"'), "0", "{row:?}");
        }
        Err(e) => {
            assert!(!has, "toStartOfInterval exists but the query failed: {e}");
            assert!(
                e.contains("Unknown function toStartOfInterval"),
                "unexpected error: {e}"
            );
        }
    }
}
