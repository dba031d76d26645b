//! Insights latency (issue 6, done-when 7): `GET /v1/insights/timeseries` and
//! `GET /v1/insights/top` over 10M raw events and their hourly aggregate, on the embedded
//! store and on ClickHouse, answered through the real router (query parsing, store query,
//! combining, JSON). Prints p50/p99 per query and store.
//!
//! Settings (environment):
//! - `HELIOS_BENCH_EVENTS` raw events (default 10 000 000), over 30 days and 100 subjects;
//! - `HELIOS_BENCH_CLICKHOUSE` a ClickHouse HTTP URL: also load and measure ClickHouse;
//! - `HELIOS_BENCH_REQUESTS` requests per query (default 200, after 20 warm-up requests);
//! - `HELIOS_BENCH_STORE_DIR` keep the embedded store there and reuse it in later runs
//!   (default a temp dir, loaded every run);
//! - `HELIOS_BENCH_SQL_FILE` instead of the routes, time the statements in this file
//!   (separated by lines of `---`) on the embedded store, to try query shapes.
//!
//! Run it with `bench/insights.sh`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use helios_query_api::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use helios_query_api::store::{ClickHouseReader, DataFusionReader, ReadStore};
use helios_query_api::{ApiState, read_router};
use helios_schemas::WindowResult;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseStore};
use helios_sinks::parquet::{ParquetConfig, ParquetStore};
use helios_sinks::rows::{AggregateRows, EventRow};
use helios_sinks::{Rows, Store, StoreSpec};
use tower::ServiceExt;

const DAYS: i64 = 30;
const SUBJECTS: usize = 100;
const KINDS: [&str; 4] = ["ci.run", "git.push", "deploy.finished", "probe.http"];
const HOUR: i64 = 3_600_000_000;
/// 2026-10-24T00:00:00Z: 30 days ending 2026-11-23.
const START: i64 = 1_792_800_000_000_000;

fn catalog() -> Catalog {
    let m = |name: &str, function| MeasureInfo {
        name: name.to_owned(),
        function,
    };
    Catalog {
        aggregates: vec![AggregateInfo {
            name: "activity".to_owned(),
            group_by: vec!["subject".to_owned(), "kind".to_owned()],
            measures: vec![
                m("events", MeasureFunction::Count),
                m("total", MeasureFunction::Sum),
                m("slowest", MeasureFunction::Max),
            ],
            window: WindowInfo {
                kind: WindowKind::Tumbling,
                size_seconds: 3600,
                slide_seconds: 3600,
            },
        }],
    }
}

fn spec() -> StoreSpec {
    StoreSpec {
        aggregates: catalog().store_tables(),
        ..StoreSpec::default()
    }
}

/// Writes the events of each day, and that day's hourly windows, through `store`.
async fn load(store: &dyn Store, events: usize) {
    let per_day = events / DAYS as usize;
    let step = (24 * HOUR) / per_day as i64;
    let mut written = 0;
    let started = Instant::now();
    for day in 0..DAYS {
        let mut rows = Rows::default();
        // (hour, subject, kind) -> (count, sum, max)
        let mut windows: BTreeMap<(i64, usize, usize), (i64, f64, f64)> = BTreeMap::new();
        for i in 0..per_day {
            let n = day as usize * per_day + i;
            let time = START + day * 24 * HOUR + i as i64 * step;
            // A skewed mix: a few busy subjects, many quiet ones.
            let subject = (n * 7919 % 1009) % SUBJECTS * (n % 3) / 2 % SUBJECTS;
            let kind = n % 7 % KINDS.len();
            let value = ((n * 31) % 600) as f64 / 10.0;
            rows.events.push(EventRow {
                id: format!("ev-{n}"),
                source: "bench".to_owned(),
                kind: KINDS[kind].to_owned(),
                subject: format!("repo-{subject:03}"),
                time,
                received_at: time + 1_000,
                attr_keys: vec!["branch".to_owned()],
                attr_values: vec!["main".to_owned()],
                value: Some(value),
                payload: None,
            });
            let w = windows
                .entry(((time - START) / HOUR, subject, kind))
                .or_insert((0, 0.0, f64::MIN));
            w.0 += 1;
            w.1 += value;
            w.2 = w.2.max(value);
        }
        let mut agg = AggregateRows::new(spec().aggregates[0].clone());
        for ((hour, subject, kind), (count, sum, max)) in windows {
            let start = START + hour * HOUR;
            agg.push(&WindowResult {
                id: format!("activity/{hour}/{subject}/{kind}"),
                aggregate: "activity".to_owned(),
                window_start: start,
                window_end: start + HOUR,
                group: BTreeMap::from([
                    ("subject".to_owned(), format!("repo-{subject:03}")),
                    ("kind".to_owned(), KINDS[kind].to_owned()),
                ]),
                measures: BTreeMap::from([
                    ("events".to_owned(), count as f64),
                    ("total".to_owned(), sum),
                    ("slowest".to_owned(), max),
                ]),
                count,
                version: 1,
                is_final: true,
            })
            .unwrap();
        }
        rows.aggregates.insert("activity".to_owned(), agg);
        written += rows.len();
        // Retries what a busy store refused, as the sink loop does.
        while !rows.is_empty() {
            if let Err(e) = store.write(&mut rows).await {
                eprintln!("write failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    eprintln!(
        "loaded {written} rows ({events} events and their windows) into {} in {:.0} s",
        store.describe(),
        started.elapsed().as_secs_f64()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn measure(name: &str, store: Arc<dyn ReadStore>, requests: usize) {
    let app = read_router(ApiState::new(store, catalog()));
    let end = "2026-11-23T00:00:00Z";
    let queries = [
        (
            "timeseries 7d step 1h, top 5 subjects + other",
            format!(
                "/v1/insights/timeseries?aggregate=activity&measure=events&from=2026-11-16T00:00:00Z&to={end}&step=1h&group_by=subject&top=5"
            ),
        ),
        (
            "timeseries 30d step 1d, one subject",
            format!(
                "/v1/insights/timeseries?aggregate=activity&measure=total&from=2026-10-24T00:00:00Z&to={end}&step=1d&subject=repo-007"
            ),
        ),
        (
            "top 10 subjects by events over 30d",
            format!(
                "/v1/insights/top?aggregate=activity&measure=events&by=subject&n=10&from=2026-10-24T00:00:00Z&to={end}"
            ),
        ),
        (
            "top 10 subjects by max over 24h, kind ci.run",
            format!(
                "/v1/insights/top?aggregate=activity&measure=slowest&by=subject&n=10&from=2026-11-22T00:00:00Z&to={end}&kind=ci.run"
            ),
        ),
    ];
    for (label, uri) in &queries {
        let mut times = Vec::with_capacity(requests);
        for i in 0..requests + 20 {
            let started = Instant::now();
            let response = app
                .clone()
                .oneshot(Request::get(uri.as_str()).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .unwrap();
            assert!(
                status.is_success(),
                "{uri}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            if i >= 20 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        println!(
            "{name:<10} {label:<48} p50 {:>7.1} ms   p99 {:>7.1} ms   ({requests} requests)",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}

/// Times each statement of `text` (separated by lines of `---`) on the embedded store:
/// for trying a query shape against the loaded data without going through a route.
async fn time_sql(reader: &DataFusionReader, text: &str, requests: usize) {
    let limits = helios_query_api::store::Limits {
        max_rows: 1_000_000,
        max_bytes: usize::MAX,
        timeout: Duration::from_secs(60),
        ..Default::default()
    };
    for (i, sql) in text.split("\n---\n").enumerate() {
        let sql = sql.trim();
        if sql.is_empty() {
            continue;
        }
        let mut times = Vec::with_capacity(requests);
        let mut rows = 0;
        for n in 0..requests + 5 {
            let started = Instant::now();
            let table = reader.query_text(sql, limits).await.unwrap();
            if n >= 5 {
                times.push(started.elapsed());
            }
            rows = table.rows.len();
        }
        times.sort();
        println!(
            "statement {i}: p50 {:>7.1} ms   p99 {:>7.1} ms   {rows} rows",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}

fn main() {
    let events: usize = std::env::var("HELIOS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let requests: usize = std::env::var("HELIOS_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tmp = tempfile::tempdir().unwrap();
        // A kept store is loaded once and measured again by later runs (e.g. after a
        // change to the queries).
        let dir = std::env::var_os("HELIOS_BENCH_STORE_DIR")
            .map_or_else(|| tmp.path().to_owned(), std::path::PathBuf::from);
        let loaded = dir.join("loaded");
        if !loaded.exists() {
            let parquet = ParquetStore::open(ParquetConfig::new(&dir), spec()).unwrap();
            load(&parquet, events).await;
            let merged = parquet.compact_now().await.unwrap();
            eprintln!("compacted {merged} files");
            std::fs::write(&loaded, events.to_string()).unwrap();
        }
        let reader = DataFusionReader::open(&dir, spec()).await.unwrap();
        if let Some(file) = std::env::var_os("HELIOS_BENCH_SQL_FILE") {
            time_sql(&reader, &std::fs::read_to_string(file).unwrap(), requests).await;
            return;
        }
        measure("embedded", Arc::new(reader), requests).await;

        if let Ok(url) = std::env::var("HELIOS_BENCH_CLICKHOUSE") {
            let config = ClickHouseConfig::new(url)
                .database(format!("helios_bench_insights_{}", std::process::id()));
            let ch = ClickHouse::new(&config).unwrap();
            helios_sinks::clickhouse::migrations::migrate(&ch, &spec())
                .await
                .unwrap();
            let store = ClickHouseStore::new(ch, spec()).unwrap();
            load(&store, events).await;
            let reader = ClickHouseReader::new(&config).unwrap();
            measure("clickhouse", Arc::new(reader), requests).await;
            ClickHouse::new(&config)
                .unwrap()
                .drop_database()
                .await
                .unwrap();
        }
    });
}
