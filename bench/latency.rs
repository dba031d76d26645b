//! End-to-end latency of a running `helios up` (issue 5, done-when 6), driven by
//! `bench/latency.sh` (`cargo bench --workspace --bench latency -- --url ...`). A bench
//! target of the root package, so the same `cargo bench --workspace` build that makes the
//! other benchmarks also makes the release `helios` it measures.
//!
//! Sends batches of CloudEvents to `POST /v1/events` at a steady rate (one request every
//! `batch / rate` seconds, at most `--max-in-flight` at once) and, for every
//! `--sample-every`-th event, measures the time from the start of its POST until
//! `POST /v1/sql` (`SELECT id FROM events WHERE id IN (...)`) first returns its row. One
//! poller asks for every sample still pending, one query at a time and at most once per
//! `--poll-ms`, so a figure is an upper bound: it includes up to one poll interval and
//! the query's own time (both reported). Samples from the first `--warmup` seconds are
//! checked for arrival but left out of the percentiles.
//!
//! Prints one JSON object with the figures on stdout and a readable summary on stderr.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Measure the time from `POST /v1/events` to the row being queryable with `POST /v1/sql`.
///
/// Example:
///   cargo bench --workspace --bench latency -- --url http://127.0.0.1:8080 --ingest-key "$INGEST" --read-key "$READ" \
///     --rate 20000 --seconds 60 --label embedded
#[derive(Debug, Parser)]
#[command(verbatim_doc_comment)]
struct Args {
    /// Base URL of `helios up`.
    #[arg(long)]
    url: String,
    /// API key with the `ingest` scope, for `POST /v1/events`.
    #[arg(long, env = "HELIOS_LATENCY_INGEST_KEY")]
    ingest_key: String,
    /// API key with the `read` scope, for `POST /v1/sql` (its own key, so polling does
    /// not spend the ingest key's rate limit).
    #[arg(long, env = "HELIOS_LATENCY_READ_KEY")]
    read_key: String,
    /// Events per second to send.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// How long to send, seconds.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Events per request.
    #[arg(long, default_value_t = 200)]
    batch: u64,
    /// Measure every N-th event.
    #[arg(long, default_value_t = 100)]
    sample_every: u64,
    /// Seconds at the start whose samples are not in the percentiles (the store's first
    /// files, connection set-up).
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Shortest spacing of the poller's queries, ms.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Most ids asked for in one query (the oldest pending first).
    #[arg(long, default_value_t = 1_000)]
    ids_per_query: usize,
    /// Requests in flight at most; the sender falls behind its schedule beyond that.
    #[arg(long, default_value_t = 32)]
    max_in_flight: usize,
    /// After the last POST, how long to wait for the last samples, seconds.
    #[arg(long, default_value_t = 60.0)]
    drain: f64,
    /// Name of this run in the output (e.g. the store).
    #[arg(long, default_value = "helios")]
    label: String,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A sampled event waiting to be found.
#[derive(Debug)]
struct Sample {
    sent: Instant,
    /// False during the warm-up.
    counted: bool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Sampled events by sequence number (oldest first).
    pending: BTreeMap<u64, Sample>,
    latencies_ms: Vec<f64>,
    warmup_found: u64,
    acks_ms: Vec<f64>,
    events_sent: u64,
    failed_requests: u64,
    last_failure: Option<String>,
}

fn event_id(run: &str, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// One request body: events `from .. from + n` as a CloudEvents batch. No `time`: the
/// server stamps them with their arrival.
fn body(run: &str, from: u64, n: u64) -> Vec<u8> {
    let events: Vec<Value> = (from..from + n)
        .map(|seq| {
            json!({"specversion": "1.0", "id": event_id(run, seq), "source": "bench/latency",
                   "type": "bench.event", "subject": format!("project-{}", seq % 50),
                   "value": seq % 97, "conclusion": if seq % 5 == 0 { "failure" } else { "success" }})
        })
        .collect();
    serde_json::to_vec(&events).expect("JSON of plain values")
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panicking task has already failed the run; the figures are still worth printing.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends every batch on schedule; returns the time it took.
async fn send(
    args: &Args,
    run: &str,
    client: &reqwest::Client,
    shared: &Arc<Mutex<Shared>>,
) -> anyhow::Result<Duration> {
    let period = Duration::from_secs_f64(args.batch as f64 / args.rate as f64);
    let batches = (args.rate as f64 * args.seconds / args.batch as f64).round() as u64;
    let warmup = Duration::from_secs_f64(args.warmup);
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let mut tick = tokio::time::interval(period);
    // Behind schedule (a slow answer, a full in-flight window): catch up, so the average
    // rate over the run stays the one asked for.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let slots = Arc::new(Semaphore::new(args.max_in_flight));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for b in 0..batches {
        tick.tick().await;
        let slot = slots.clone().acquire_owned().await?;
        let from = b * args.batch;
        let body = body(run, from, args.batch);
        let sampled: Vec<u64> = (from..from + args.batch)
            .filter(|s| s % args.sample_every == 0)
            .collect();
        let (client, shared, url, key) = (
            client.clone(),
            shared.clone(),
            url.clone(),
            args.ingest_key.clone(),
        );
        let events = args.batch;
        tasks.spawn(async move {
            let sent = Instant::now();
            let counted = sent.duration_since(start) >= warmup;
            {
                let mut s = lock(&shared);
                for &seq in &sampled {
                    s.pending.insert(seq, Sample { sent, counted });
                }
            }
            let answer = client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/cloudevents-batch+json")
                .body(body)
                .send()
                .await;
            let acked = sent.elapsed();
            drop(slot);
            let failure = match answer {
                Ok(r) if r.status() == 202 => None,
                Ok(r) => {
                    let status = r.status();
                    Some(format!("{status}: {}", r.text().await.unwrap_or_default()))
                }
                Err(e) => Some(e.to_string()),
            };
            let mut s = lock(&shared);
            match failure {
                None => {
                    s.events_sent += events;
                    s.acks_ms.push(acked.as_secs_f64() * 1e3);
                }
                Some(why) => {
                    // Never stored: nothing to wait for.
                    for seq in &sampled {
                        s.pending.remove(seq);
                    }
                    s.failed_requests += 1;
                    s.last_failure = Some(why);
                }
            }
        });
        // Reap finished requests as we go, so the set stays small.
        while let Some(done) = tasks.try_join_next() {
            done.context("a request task panicked")?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a request task panicked")?;
    }
    Ok(start.elapsed())
}

/// What the poller saw.
#[derive(Debug, Default)]
struct Polls {
    queries_ms: Vec<f64>,
    errors: u64,
    last_error: Option<String>,
}

/// Asks for pending samples until none is left after sending ended, or the drain time
/// is over.
async fn poll(
    args: &Args,
    run: &str,
    client: &reqwest::Client,
    shared: &Arc<Mutex<Shared>>,
    sending: &AtomicBool,
) -> Polls {
    let url = format!("{}/v1/sql", args.url.trim_end_matches('/'));
    let spacing = Duration::from_millis(args.poll_ms);
    let mut polls = Polls::default();
    let mut drain_until: Option<Instant> = None;
    loop {
        let began = Instant::now();
        let done_sending = !sending.load(Ordering::SeqCst);
        if done_sending {
            let until = *drain_until.get_or_insert(began + Duration::from_secs_f64(args.drain));
            if began >= until {
                return polls;
            }
        }
        let seqs: Vec<u64> = lock(shared)
            .pending
            .keys()
            .take(args.ids_per_query)
            .copied()
            .collect();
        if seqs.is_empty() {
            if done_sending {
                return polls;
            }
            tokio::time::sleep(spacing).await;
            continue;
        }
        let list: Vec<String> = seqs
            .iter()
            .map(|&s| format!("'{}'", event_id(run, s)))
            .collect();
        let sql = format!("SELECT id FROM events WHERE id IN ({})", list.join(", "));
        let answer = client
            .post(&url)
            .bearer_auth(&args.read_key)
            .json(&json!({ "sql": sql }))
            .send()
            .await;
        let found = match answer {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.map_err(|e| e.to_string()),
            Ok(r) => {
                let status = r.status();
                Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        };
        let answered = Instant::now();
        polls
            .queries_ms
            .push(answered.duration_since(began).as_secs_f64() * 1e3);
        match found {
            Ok(v) => {
                let rows = v["rows"].as_array().cloned().unwrap_or_default();
                let prefix = format!("{run}-");
                let mut s = lock(shared);
                for row in rows {
                    let Some(seq) = row[0]
                        .as_str()
                        .and_then(|id| id.strip_prefix(&prefix))
                        .and_then(|n| n.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    if let Some(sample) = s.pending.remove(&seq) {
                        if sample.counted {
                            let ms = answered.duration_since(sample.sent).as_secs_f64() * 1e3;
                            s.latencies_ms.push(ms);
                        } else {
                            s.warmup_found += 1;
                        }
                    }
                }
            }
            Err(why) => {
                polls.errors += 1;
                polls.last_error = Some(why);
            }
        }
        if let Some(rest) = spacing.checked_sub(began.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.batch == 0 || args.sample_every == 0 || args.seconds <= 0.0 {
        bail!(
            "--rate, --batch, --sample-every and --seconds must be above zero (got {}, {}, {}, {})",
            args.rate,
            args.batch,
            args.sample_every,
            args.seconds
        );
    }
    let run = format!(
        "lat{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    // reqwest has rustls without a provider of its own (ADR-018): ring, process-wide.
    helios_schemas::tls::install_default_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let sending = AtomicBool::new(true);
    let sender = async {
        let took = send(&args, &run, &client, &shared).await;
        sending.store(false, Ordering::SeqCst);
        took
    };
    let (took, polls) = tokio::join!(sender, poll(&args, &run, &client, &shared, &sending));
    let took = took?;

    let s = lock(&shared);
    let latencies = sorted(s.latencies_ms.clone());
    let acks = sorted(s.acks_ms.clone());
    let queries = sorted(polls.queries_ms.clone());
    let missing = s.pending.len();
    let report = json!({
        "label": args.label,
        "rate_target": args.rate,
        "rate_achieved": (s.events_sent as f64 / took.as_secs_f64()).round(),
        "seconds": took.as_secs_f64(),
        "events_sent": s.events_sent,
        "failed_requests": s.failed_requests,
        "samples_measured": latencies.len(),
        "samples_warmup": s.warmup_found,
        "samples_missing": missing,
        "p50_ms": percentile(&latencies, 0.50).round(),
        "p90_ms": percentile(&latencies, 0.90).round(),
        "p99_ms": percentile(&latencies, 0.99).round(),
        "max_ms": latencies.last().copied().unwrap_or(0.0).round(),
        "ack_p50_ms": percentile(&acks, 0.50),
        "ack_p99_ms": percentile(&acks, 0.99),
        "queries": queries.len(),
        "query_p50_ms": percentile(&queries, 0.50).round(),
        "query_p99_ms": percentile(&queries, 0.99).round(),
        "query_errors": polls.errors,
        "poll_ms": args.poll_ms,
    });
    eprintln!(
        "{}: {} events in {:.1} s ({} failed requests); POST -> queryable over {} samples: \
         p50 {} ms, p99 {} ms, max {} ms; {} missing; SQL polls: {} (p50 {} ms, {} errors)",
        args.label,
        s.events_sent,
        took.as_secs_f64(),
        s.failed_requests,
        latencies.len(),
        report["p50_ms"],
        report["p99_ms"],
        report["max_ms"],
        missing,
        queries.len(),
        report["query_p50_ms"],
        polls.errors,
    );
    if let Some(why) = &s.last_failure {
        eprintln!("last failed POST /v1/events: {why}");
    }
    if let Some(why) = &polls.last_error {
        eprintln!("last failed POST /v1/sql: {why}");
    }
    println!("{report}");
    Ok(())
}
