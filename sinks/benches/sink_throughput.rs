//! Sink throughput for `events` (done-when 6 of issue 5).
//!
//! 1. ClickHouse: N events in an embedded log, the sink loads them into `events` (RowBinary
//!    inserts, commit after ack); rows/s from sink start to the last commit.
//! 2. The same rows as TabSeparated, inserted by `clickhouse-client` in one run into a
//!    table of the same schema; rows/s of that run. The report prints the ratio.
//! 3. Parquet: the same N events through the same sink loop into the embedded store.
//!
//! Run by `bench/sinks.sh` (starts ClickHouse, passes the URL and native port):
//! `HELIOS_TEST_CLICKHOUSE=... HELIOS_BENCH_CH_NATIVE_PORT=... cargo bench -p helios-sinks --bench sink_throughput`

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::{Record, TopicSpec};
use helios_schemas::{AvroRecord, Event, EventCodec, Registry};
use helios_sinks::clickhouse::rows::EventRow;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseStore, migrations};
use helios_sinks::parquet::{ParquetConfig, ParquetStore};
use helios_sinks::{Decoders, Sink, SinkConfig, SinkTopics, Store, StoreSpec};
use tokio::sync::watch;

const T0: i64 = 1_767_225_600_000_000;

fn event(i: usize) -> Event {
    Event {
        id: format!("bench-{i:09}"),
        source: ["github", "ci", "host", "probe"][i % 4].to_owned(),
        kind: ["git.push", "ci.run", "host.cpu", "probe.http"][i % 4].to_owned(),
        subject: format!("repo-{}", i % 50),
        time: T0 + i as i64 * 1_000,
        received_at: T0 + i as i64 * 1_000 + 7,
        attrs: [
            ("branch".to_owned(), "main".to_owned()),
            (
                "conclusion".to_owned(),
                ["success", "failure"][i % 2].to_owned(),
            ),
        ]
        .into(),
        value: Some(i as f64 * 0.5),
        payload: None,
    }
}

fn tsv_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
}

fn tsv_array(items: &[String], out: &mut String) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('\'');
        tsv_escape(s, out);
        out.push('\'');
    }
    out.push(']');
}

fn tsv_row(r: &EventRow, out: &mut String) {
    for s in [&r.id, &r.source, &r.kind, &r.subject] {
        tsv_escape(s, out);
        out.push('\t');
    }
    out.push_str(&format!("{}\t{}\t", r.time, r.received_at));
    tsv_array(&r.attr_keys, out);
    out.push('\t');
    tsv_array(&r.attr_values, out);
    out.push('\t');
    match r.value {
        Some(v) => out.push_str(&v.to_string()),
        None => out.push_str("\\N"),
    }
    out.push('\t');
    match &r.payload {
        Some(p) => tsv_escape(p, out),
        None => out.push_str("\\N"),
    }
    out.push('\n');
}

async fn run_sink(
    store: Arc<dyn Store>,
    log: &helios_log::Log,
    registry: Arc<Registry>,
    group: &str,
    n: u64,
) -> Duration {
    let config = SinkConfig {
        group: group.to_owned(),
        topics: SinkTopics {
            events: Some("helios.events".into()),
            aggregates: None,
            alerts: None,
            insights: None,
            dead_letters: None,
        },
        batch_rows: 20_000,
        max_buffered_rows: 40_000,
        poll_max: 10_000,
        ..SinkConfig::default()
    };
    let sink = Sink::new(store, config, Decoders::new(registry)).unwrap();
    let metrics = sink.metrics();
    let (stop, rx) = watch::channel(false);
    let log = log.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move { sink.run(&log, rx).await });
    while metrics.snapshot().rows_out < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("HELIOS_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let url = std::env::var("HELIOS_TEST_CLICKHOUSE")
        .expect("HELIOS_TEST_CLICKHOUSE (run bench/sinks.sh)");
    let native = std::env::var("HELIOS_BENCH_CH_NATIVE_PORT")
        .expect("HELIOS_BENCH_CH_NATIVE_PORT (run bench/sinks.sh)");
    let tmp = tempfile::tempdir().unwrap();
    let embedded = EmbeddedLog::open(tmp.path().join("log"), EmbeddedConfig::default()).unwrap();
    let log = embedded.log();
    std::fs::create_dir_all(tmp.path().join("registry")).unwrap();
    let registry = Arc::new(Registry::open(&tmp.path().join("registry")).unwrap());
    let id = registry
        .register("helios.events-value", Event::SCHEMA_JSON)
        .unwrap()
        .id;
    let codec = EventCodec::new(id);
    log.admin()
        .create_topic(&TopicSpec::new("helios.events", 4))
        .await
        .unwrap();
    let events: Vec<Event> = (0..n).map(event).collect();
    for chunk in events.chunks(10_000) {
        let records = chunk
            .iter()
            .map(|e| Record::keyed(e.subject.clone(), codec.encode(e)))
            .collect();
        log.producer()
            .append("helios.events", records)
            .await
            .unwrap();
    }

    // 1. The ClickHouse sink.
    let db = format!("helios_bench_{}", std::process::id());
    let ch = ClickHouse::new(&ClickHouseConfig::new(&url).database(&db)).unwrap();
    migrations::migrate(&ch, &StoreSpec::default())
        .await
        .unwrap();
    let store = Arc::new(ClickHouseStore::new(ch.clone(), StoreSpec::default()).unwrap());
    let sink_took = run_sink(store, &log, registry.clone(), "bench-ch", n as u64).await;
    let sink_rate = n as f64 / sink_took.as_secs_f64();

    // 2. clickhouse-client, same rows, one run.
    ch.execute("creating events_cli", "CREATE TABLE events_cli AS events")
        .await
        .unwrap();
    let mut tsv = String::with_capacity(n * 160);
    for e in &events {
        tsv_row(&EventRow::from(e.clone()), &mut tsv);
    }
    let file = tmp.path().join("events.tsv");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(tsv.as_bytes())
        .unwrap();
    let started = Instant::now();
    let status = std::process::Command::new("clickhouse-client")
        .args(["--host", "127.0.0.1", "--port", &native, "--database", &db])
        .args(["--query", "INSERT INTO events_cli FORMAT TabSeparated"])
        .stdin(std::fs::File::open(&file).unwrap())
        .status()
        .unwrap();
    let cli_took = started.elapsed();
    assert!(status.success(), "clickhouse-client failed");
    let cli_rate = n as f64 / cli_took.as_secs_f64();
    let counted: u64 = ch
        .client()
        .query("SELECT count() FROM events_cli")
        .fetch_one()
        .await
        .unwrap();
    let stored: u64 = ch
        .client()
        .query("SELECT count() FROM events FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((counted, stored), (n as u64, n as u64));
    ch.drop_database().await.unwrap();

    // 3. The Parquet sink.
    let store = Arc::new(
        ParquetStore::open(
            ParquetConfig::new(tmp.path().join("store")),
            StoreSpec::default(),
        )
        .unwrap(),
    );
    let pq_took = run_sink(store, &log, registry, "bench-pq", n as u64).await;
    let pq_rate = n as f64 / pq_took.as_secs_f64();

    println!("rows: {n}");
    println!(
        "clickhouse sink:   {:>10.0} rows/s ({:.2} s)",
        sink_rate,
        sink_took.as_secs_f64()
    );
    println!(
        "clickhouse-client: {:>10.0} rows/s ({:.2} s, TabSeparated, one run)",
        cli_rate,
        cli_took.as_secs_f64()
    );
    println!("ratio sink/client: {:.2}", sink_rate / cli_rate);
    println!(
        "parquet sink:      {:>10.0} rows/s ({:.2} s)",
        pq_rate,
        pq_took.as_secs_f64()
    );
    embedded.close().unwrap();
}
