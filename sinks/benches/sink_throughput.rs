//! Sink throughput for `events` (done-when 6 of issue 5).
//!
//! 1. ClickHouse: N events in an embedded log, the sink loads them into `events` (RowBinary
//!    inserts, commit after ack); rows/s from sink start to the last commit.
//! 2. The same rows as TabSeparated, inserted by `clickhouse-client` in one run into a
//!    table of the same schema; rows/s of that run. The report prints the ratio.
//! 3. Parquet: the same N events through the same sink loop into the embedded store.
//!
//! Each round (`HELIOS_BENCH_ROUNDS`, default 3) uses fresh tables and runs 1 and 2 in
//! alternating order, each once the server has no merge running; medians are printed.
//! `HELIOS_BENCH_BATCH_ROWS` sets the sink's batch (default 100 000 rows, the bulk setting
//! of `--sink-batch-rows`; the buffer bound is twice that, as the flag's default makes it).
//!
//! Run by `bench/sinks.sh` (starts ClickHouse, passes the URL and native port):
//! `HELIOS_TEST_CLICKHOUSE=... HELIOS_BENCH_CH_NATIVE_PORT=... cargo bench -p helios-sinks --bench sink_throughput`

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::{Record, TopicSpec};
use helios_schemas::{AvroRecord, Event, EventCodec, Registry};
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, ClickHouseStore, migrations};
use helios_sinks::parquet::{ParquetConfig, ParquetStore};
use helios_sinks::rows::EventRow;
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

/// The environment variable `name` parsed, or `default` when unset.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn count(ch: &ClickHouse, sql: &str) -> u64 {
    ch.client().query(sql).fetch_one().await.unwrap()
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Waits until the server merges no parts (of this or an earlier round).
async fn settle(ch: &ClickHouse) {
    loop {
        if count(ch, "SELECT count() FROM system.merges").await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_sink(
    store: Arc<dyn Store>,
    log: &helios_log::Log,
    registry: Arc<Registry>,
    group: String,
    n: u64,
    batch_rows: usize,
) -> Duration {
    let config = SinkConfig {
        group,
        topics: SinkTopics {
            events: Some("helios.events".into()),
            aggregates: None,
            alerts: None,
            insights: None,
            dead_letters: None,
            late: None,
        },
        batch_rows,
        max_buffered_rows: 2 * batch_rows,
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
    let n: usize = env_or("HELIOS_BENCH_ROWS", 1_000_000);
    let batch_rows: usize = env_or("HELIOS_BENCH_BATCH_ROWS", 100_000);
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

    let mut tsv = String::with_capacity(n * 160);
    for e in &events {
        tsv_row(&EventRow::from(e.clone()), &mut tsv);
    }
    let file = tmp.path().join("events.tsv");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(tsv.as_bytes())
        .unwrap();

    let rounds: usize = env_or("HELIOS_BENCH_ROUNDS", 3);
    let (mut sink_rates, mut cli_rates, mut ratios, mut pq_rates) =
        (vec![], vec![], vec![], vec![]);
    println!("rows: {n}, {rounds} rounds");
    for round in 0..rounds {
        // A database per round, so every round inserts into empty tables.
        let db = format!("helios_bench_{}_{round}", std::process::id());
        let ch = ClickHouse::new(&ClickHouseConfig::new(&url).database(&db)).unwrap();
        migrations::migrate(&ch, &StoreSpec::default())
            .await
            .unwrap();
        ch.execute("creating events_cli", "CREATE TABLE events_cli AS events")
            .await
            .unwrap();
        // 1. The ClickHouse sink, and 2. clickhouse-client with the same rows in one run,
        // in alternating order, each after the server's merges of earlier parts are done
        // (they would otherwise slow whichever runs second).
        let sink = || {
            let store = Arc::new(ClickHouseStore::new(ch.clone(), StoreSpec::default()).unwrap());
            run_sink(
                store,
                &log,
                registry.clone(),
                format!("bench-ch-{round}"),
                n as u64,
                batch_rows,
            )
        };
        let cli = || {
            let started = Instant::now();
            let status = std::process::Command::new("clickhouse-client")
                .args(["--host", "127.0.0.1", "--port", &native, "--database", &db])
                .args(["--query", "INSERT INTO events_cli FORMAT TabSeparated"])
                .stdin(std::fs::File::open(&file).unwrap())
                .status()
                .unwrap();
            assert!(status.success(), "clickhouse-client failed");
            started.elapsed()
        };
        let (sink_took, cli_took) = if round % 2 == 0 {
            settle(&ch).await;
            let s = sink().await;
            settle(&ch).await;
            (s, cli())
        } else {
            settle(&ch).await;
            let c = cli();
            settle(&ch).await;
            (sink().await, c)
        };
        let counted = count(&ch, "SELECT count() FROM events_cli").await;
        let stored = count(&ch, "SELECT count() FROM events FINAL").await;
        assert_eq!((counted, stored), (n as u64, n as u64));
        ch.drop_database().await.unwrap();

        // 3. The Parquet sink.
        let store = Arc::new(
            ParquetStore::open(
                ParquetConfig::new(tmp.path().join(format!("store-{round}"))),
                StoreSpec::default(),
            )
            .unwrap(),
        );
        let pq_took = run_sink(
            store,
            &log,
            registry.clone(),
            format!("bench-pq-{round}"),
            n as u64,
            batch_rows,
        )
        .await;

        let rate = |took: Duration| n as f64 / took.as_secs_f64();
        println!(
            "round {round}: clickhouse sink {:>8.0} rows/s ({:.2} s), clickhouse-client {:>8.0} rows/s \
             ({:.2} s), ratio {:.2}, parquet sink {:>8.0} rows/s ({:.2} s)",
            rate(sink_took),
            sink_took.as_secs_f64(),
            rate(cli_took),
            cli_took.as_secs_f64(),
            rate(sink_took) / rate(cli_took),
            rate(pq_took),
            pq_took.as_secs_f64()
        );
        sink_rates.push(rate(sink_took));
        cli_rates.push(rate(cli_took));
        ratios.push(rate(sink_took) / rate(cli_took));
        pq_rates.push(rate(pq_took));
    }
    println!("medians over {rounds} rounds:");
    println!(
        "clickhouse sink:   {:>10.0} rows/s",
        median(&mut sink_rates)
    );
    println!(
        "clickhouse-client: {:>10.0} rows/s (TabSeparated, one run)",
        median(&mut cli_rates)
    );
    println!("ratio sink/client: {:.2}", median(&mut ratios));
    println!("parquet sink:      {:>10.0} rows/s", median(&mut pq_rates));
    embedded.close().unwrap();
}
