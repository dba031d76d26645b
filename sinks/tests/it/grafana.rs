//! The Grafana provisioning and dashboards in `deploy/grafana/` against a real
//! clickhouse-server (done-when 6): every panel's SQL, with the ClickHouse plugin's macros
//! expanded for a fixed range, runs without error on the scripted data and returns rows.
//!
//! The macros are expanded the way `grafana-clickhouse-datasource` v4.13.0 does it:
//! the macro functions of its `pkg/macros/macros.go`, applied by
//! `grafana-plugin-sdk-go`'s `data/sqlutil.Interpolate` (longer names first; a macro takes
//! arguments only when `(` follows its name at once; arguments are split at top-level
//! commas). The server comes from `HELIOS_TEST_CLICKHOUSE`, as for the other ClickHouse
//! tests; the data is written through the real sink into a fresh database, which stands in
//! for the data source's `defaultDatabase`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
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

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

// ------------------------------------------------------------------------------------
// Macro expansion, as the plugin does it.

/// The query's time range and interval, as Grafana hands them to the plugin.
#[derive(Debug, Clone, Copy)]
struct QueryWindow {
    /// Range start, ms since the epoch.
    from_ms: i64,
    /// Range end, ms since the epoch.
    to_ms: i64,
    /// `query.Interval`, ms.
    interval_ms: i64,
}

impl QueryWindow {
    fn start_s(self) -> i64 {
        self.from_ms.div_euclid(1000)
    }

    fn end_s(self) -> i64 {
        self.to_ms.div_euclid(1000)
    }

    /// `math.Max(query.Interval.Seconds(), 1)` truncated to an integer, as the plugin does.
    fn interval_s(self) -> i64 {
        (self.interval_ms / 1000).max(1)
    }
}

/// The macros of `pkg/macros/macros.go`, name and expansion. Each returns an error, as the
/// plugin does, when it gets the wrong number of arguments.
fn expand_macro(name: &str, args: &[String], w: &QueryWindow) -> Result<String, String> {
    let one = || match args {
        [a] => Ok(a.as_str()),
        _ => Err(format!(
            "$__{name}: expected 1 argument, received {}",
            args.len()
        )),
    };
    let date_time = |s: i64| format!("toDateTime({s})");
    let date_time64 = |ms: i64| format!("fromUnixTimestamp64Milli({ms})");
    Ok(match name {
        "fromTime" => date_time(w.start_s()),
        "toTime" => date_time(w.end_s()),
        "fromTime_ms" => date_time64(w.from_ms),
        "toTime_ms" => date_time64(w.to_ms),
        "timeFilter" => {
            let c = one()?;
            format!(
                "{c} >= {} AND {c} <= {}",
                date_time(w.start_s()),
                date_time(w.end_s())
            )
        }
        "timeFilter_ms" => {
            let c = one()?;
            format!(
                "{c} >= {} AND {c} <= {}",
                date_time64(w.from_ms),
                date_time64(w.to_ms)
            )
        }
        "timeInterval" => format!(
            "toStartOfInterval(toDateTime({}), INTERVAL {} second)",
            one()?,
            w.interval_s()
        ),
        "timeInterval_ms" => format!(
            "toStartOfInterval(toDateTime64({}, 3), INTERVAL {} millisecond)",
            one()?,
            w.interval_ms.max(1)
        ),
        "interval_s" => w.interval_s().to_string(),
        other => {
            return Err(format!(
                "macro $__{other} is not one this test expands; add it here as the plugin's \
                 pkg/macros/macros.go defines it"
            ));
        }
    })
}

/// The macro names this test knows, longest first (the order `sqlutil.Interpolate` applies
/// them in, so `$__timeFilter_ms` is never read as `$__timeFilter`).
const MACROS: [&str; 9] = [
    "timeInterval_ms",
    "timeFilter_ms",
    "timeInterval",
    "fromTime_ms",
    "interval_s",
    "timeFilter",
    "toTime_ms",
    "fromTime",
    "toTime",
];

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `parseArgs`: an argument list right after the name, split at top-level commas and
/// trimmed. Returns the arguments and the length of the list, or an error for a missing
/// closing bracket.
fn parse_args(rest: &str) -> Result<(Vec<String>, usize), String> {
    if !rest.starts_with('(') {
        return Ok((Vec::new(), 0));
    }
    let mut args = Vec::new();
    let mut depth = 0;
    let mut arg = String::new();
    for (i, c) in rest.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    args.push(arg.trim().to_owned());
                    return Ok((args, i + 1));
                }
            }
            ',' if depth == 1 => {
                args.push(arg.trim().to_owned());
                arg.clear();
                continue;
            }
            _ => {}
        }
        arg.push(c);
    }
    Err("failed to parse macro arguments (missing close bracket?)".to_owned())
}

/// `sqlutil.Interpolate` with the plugin's macros: every `$__name` (not followed by a word
/// character) with its arguments is replaced by the expansion, everywhere it occurs.
/// Anything left that looks like a Grafana macro or variable is an error: the server would
/// get SQL Grafana never sends.
fn interpolate(sql: &str, w: &QueryWindow) -> Result<String, String> {
    let mut out = sql.to_owned();
    for name in MACROS {
        let token = format!("$__{name}");
        let mut matches = Vec::new();
        let mut from = 0;
        while let Some(pos) = out[from..].find(&token) {
            let start = from + pos;
            let end = start + token.len();
            from = end;
            if out[end..].chars().next().is_some_and(is_word) {
                continue;
            }
            let (args, len) = parse_args(&out[end..])?;
            matches.push((out[start..end + len].to_owned(), args));
        }
        for (full, args) in matches {
            let expanded = expand_macro(name, &args, w)?;
            out = out.replace(&full, &expanded);
        }
    }
    if let Some(pos) = out.find('$') {
        let rest: String = out[pos..].chars().take(30).collect();
        return Err(format!(
            "`{rest}` is left after expanding the macros: not a macro this test knows, or a \
             dashboard variable (the dashboards define none)"
        ));
    }
    Ok(out)
}

#[test]
fn macros_expand_as_the_plugin_documents() {
    // The plugin README's examples: from 1415792726 to 1447328726, interval 20 s.
    let w = QueryWindow {
        from_ms: 1_415_792_726_123,
        to_ms: 1_447_328_726_456,
        interval_ms: 20_000,
    };
    let x = |sql: &str| interpolate(sql, &w).unwrap();
    assert_eq!(
        x("$__timeFilter(time)"),
        "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    );
    assert_eq!(
        x("$__timeFilter_ms(time)"),
        "time >= fromUnixTimestamp64Milli(1415792726123) AND time <= fromUnixTimestamp64Milli(1447328726456)"
    );
    assert_eq!(x("$__fromTime"), "toDateTime(1415792726)");
    assert_eq!(x("$__toTime"), "toDateTime(1447328726)");
    assert_eq!(
        x("$__fromTime_ms"),
        "fromUnixTimestamp64Milli(1415792726123)"
    );
    assert_eq!(x("$__interval_s"), "20");
    assert_eq!(
        x("$__timeInterval(column)"),
        "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"
    );
    assert_eq!(
        x("$__timeInterval_ms(column)"),
        "toStartOfInterval(toDateTime64(column, 3), INTERVAL 20000 millisecond)"
    );
    // Nested calls and their commas stay inside one argument.
    assert_eq!(
        x("$__timeFilter(toDateTime(intDiv(t, 1000000)))"),
        "toDateTime(intDiv(t, 1000000)) >= toDateTime(1415792726) AND \
         toDateTime(intDiv(t, 1000000)) <= toDateTime(1447328726)"
    );
    // A macro without arguments does not swallow a later bracket.
    assert_eq!(
        x("a <= $__toTime AND b IN (1, 2)"),
        "a <= toDateTime(1447328726) AND b IN (1, 2)"
    );
    // Interval below a second counts as one second.
    let fast = QueryWindow {
        interval_ms: 200,
        ..w
    };
    assert_eq!(interpolate("$__interval_s", &fast).unwrap(), "1");
    // What the plugin refuses, and what it would pass through unexpanded.
    assert!(interpolate("$__timeFilter(a, b)", &w).is_err());
    assert!(interpolate("$__timeFilter(a", &w).is_err());
    assert!(interpolate("SELECT $__conditionalAll(x, $v)", &w).is_err());
    assert!(interpolate("WHERE host = '$host'", &w).is_err());
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
fn dashboard_files() -> Vec<PathBuf> {
    let dir = grafana_dir().join("dashboards");
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
fn dashboard_queries(uid: &str) -> (Vec<PanelQuery>, Vec<String>) {
    let mut queries = Vec::new();
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for path in dashboard_files() {
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

    let (queries, problems) = dashboard_queries(&uid);
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
                q.raw_sql.contains("$__interval_s"),
                "{}: a time series buckets by the panel's interval",
                q.name()
            );
        }
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
    let (queries, problems) = dashboard_queries(&uid);
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

/// Why the dashboards bucket with `$__interval_s` and not `$__timeInterval`: the latter
/// expands to `toStartOfInterval`, which ClickHouse 18.16 (Debian's, the test server) does
/// not have. Where the server has it, both give the same buckets.
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
