//! Processor throughput and memory, through the real read path: the processor runtime
//! (`helios_pipeline::runtime::Processor::run_to_end`) consuming Avro `Event` records from
//! an embedded log (4 partitions keyed by subject), decoding them, running the windowed
//! aggregates and writing their results and checkpoints.
//!
//! Run: `cargo bench -p helios-pipeline --bench processor -- SCENARIO [EVENTS] [DIR]`
//! with SCENARIO one of `tumbling`, `hopping`, `memory` (`bench/processor.sh` runs each
//! pinned to one core and prints Markdown rows for `bench/RESULTS.md`). Prints one JSON
//! object on stdout.
//!
//! - `tumbling`: 1-minute tumbling window, `count(*)` and `sum(value)` per subject, 1000
//!   subjects, one event per ms of event time.
//! - `hopping`: 10-minute window sliding by 1 minute, `count_distinct(attrs['user'])` and
//!   `quantile(value, 0.95)` per subject, 1000 subjects.
//! - `memory`: the tumbling aggregate over 1M distinct subjects, all within one open
//!   window at the end; the peak RSS (VmHWM, reset after the log is filled) is the figure.
//!
//! - `identities`: not the runtime: one partition's de-duplication state
//!   (`helios_pipeline::dedupe::Seen`) remembering EVENTS distinct identities; the RSS it
//!   adds and its checkpoint bytes per million identities (parts and payload of a first
//!   checkpoint; later ones write only what is new) are the figures.
//!
//! - `lines`: not Helios: the floor of any set that answers "seen?" exactly and does not
//!   fit the caches. Four plain open-addressing tables of 64-bit keys in 2^21 slots
//!   (16 MiB each, what each partition of the `on` run holds), filled from 750 000 to
//!   1 250 000 keys by EVENTS new random keys (2M at most), a run of 64 at a time into one
//!   table (as the runtime's runs mostly hold one partition), each run's lines read first
//!   (the runtime's prefetch): one random 64-byte line read and written per new identity,
//!   and nothing else. Compared with the time per
//!   event without de-duplication, it shows how much of the 10 % budget the memory system
//!   alone takes on this machine.
//!
//! - `pages`: not Helios: what fresh memory costs this machine. EVENTS MiB (default 256)
//!   allocated and each 4 KiB page written once (the first touch: a page fault, the kernel
//!   zeroing the page, and on a VM the host backing it) and then again (mapped already);
//!   the median of three allocations, in CPU-µs per page. The runtime scenarios report
//!   their `minor_faults` (pages first touched during the run), so the share of a run's
//!   time that went to fresh memory is their product.
//!
//! Every runtime scenario reports the final checkpoint (all partitions, written by the
//! runtime on its way out): its size and how long it took. De-duplication runs as the
//! spec's default (`[dedupe] horizon` a day); `BENCH_DEDUPE=off` turns it off, for the
//! comparison in bench/RESULTS.md, and `BENCH_MAX_IDS` sets `[dedupe] max_ids` per
//! partition. Checkpoints come every 5 s as in `helios up`; `BENCH_CHECKPOINT_S` sets
//! another interval (to see what they cost).

#![allow(clippy::disallowed_methods)] // a benchmark times things: it reads the clock

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helios_log::embedded::{EmbeddedConfig, EmbeddedLog, FsyncPolicy};
use helios_log::{Log, Record, TopicSpec};
use helios_pipeline::checkpoint::CheckpointStore;
use helios_pipeline::runtime::{Codecs, Processor, ProcessorConfig};
use helios_pipeline::spec::{Spec, parse};
use helios_schemas::{DeadLetter, Event, EventCodec, RecordCodec, WindowResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARTITIONS: u32 = 4;
/// Event times start 5 s after a minute boundary (2023-11-14T22:13:00Z), so even the most
/// delayed first events fall in the first window.
const BASE_US: i64 = 1_699_999_980_000_000 + 5_000_000;
/// Events of one subject arrive up to this much out of order (the spec allows 5 s).
const DISORDER_US: i64 = 2_000_000;

const TUMBLING: &str = r#"
[watermark]
max_out_of_orderness = "5s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)" }
"#;

const HOPPING: &str = r#"
[watermark]
max_out_of_orderness = "5s"
idle_timeout = "1h"

[[aggregate]]
name = "ten_minutes"
window = { type = "hopping", size = "10m", slide = "1m" }
group_by = ["subject"]
measures = { users = "count_distinct(attrs['user'])", p95 = "quantile(value, 0.95)" }
"#;

struct Scenario {
    spec: &'static str,
    subjects: u64,
    /// Event-time distance between consecutive events, µs.
    step_us: i64,
    default_events: u64,
}

fn scenario(name: &str) -> Scenario {
    match name {
        "tumbling" => Scenario {
            spec: TUMBLING,
            subjects: 1000,
            step_us: 1000,
            default_events: 5_000_000,
        },
        "hopping" => Scenario {
            spec: HOPPING,
            subjects: 1000,
            step_us: 1000,
            default_events: 1_000_000,
        },
        // 1M subjects, each seen once, 50 µs apart: 50 s of event time, one open window.
        "memory" => Scenario {
            spec: TUMBLING,
            subjects: 1_000_000,
            step_us: 50,
            default_events: 1_000_000,
        },
        other => panic!("unknown scenario {other:?}: tumbling, hopping or memory"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; positional arguments are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let name = args.first().map_or("tumbling", String::as_str).to_string();
    if name == "admit" {
        admit(
            args.get(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(5_000_000),
        );
        return;
    }
    if name == "lines" {
        lines(
            args.get(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(5_000_000),
        );
        return;
    }
    if name == "pages" {
        pages(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(256));
        return;
    }
    if name == "identities" {
        let n = args
            .get(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        identities(n);
        return;
    }
    let sc = scenario(&name);
    let events: u64 = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(sc.default_events);
    let dir = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&dir).expect("temp dir in the bench dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Fill without fsync (not what is measured), then reopen as `helios up` runs it
    // (fsync per batch for the outputs).
    runtime.block_on(async {
        let config = EmbeddedConfig {
            fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
            ..EmbeddedConfig::default()
        };
        let log = EmbeddedLog::open(tmp.path().join("log"), config)
            .unwrap()
            .log();
        fill(&log, &sc, events).await;
    });
    let log_bytes = dir_bytes(&tmp.path().join("log"));

    let spec: Spec<toml::Value> = parse(sc.spec, "bench.toml", |_| Ok(())).expect("valid spec");
    let log = EmbeddedLog::open(tmp.path().join("log"), EmbeddedConfig::default())
        .unwrap()
        .log();
    let checkpoints = CheckpointStore::local(&tmp.path().join("checkpoints"), "bench").unwrap();
    let mut config = ProcessorConfig::new("bench", spec.watermark);
    config.dedupe = spec.dedupe;
    // `helios up`'s interval by default; longer to see what the checkpoints cost.
    if let Some(secs) = std::env::var("BENCH_CHECKPOINT_S")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.checkpoint_interval = Duration::from_secs(secs);
    }
    // `[dedupe] max_ids` per partition (the spec's default otherwise): above the run's
    // identities, nothing is evicted, to see what forgetting costs.
    if let Some(n) = std::env::var("BENCH_MAX_IDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        config.dedupe.max_ids = n;
    }
    let dedupe = std::env::var("BENCH_DEDUPE").unwrap_or_default() != "off";
    if !dedupe {
        config.dedupe.horizon = Duration::ZERO;
    }
    let processor = Processor::new(
        config,
        spec.aggregates,
        log,
        Codecs {
            events: Arc::new(EventCodec::new(1)),
            results: RecordCodec::<WindowResult>::new(2),
            dead_letters: RecordCodec::<DeadLetter>::new(3),
        },
        checkpoints,
    )
    .unwrap();
    runtime.block_on(processor.ensure_topics()).unwrap();

    reset_peak_rss();
    let before = rss();
    let cpu_before = cpu_seconds();
    let faults_before = minor_faults();
    let started = Instant::now();
    let summary = runtime.block_on(processor.run_to_end()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let faults = minor_faults() - faults_before;
    let after = rss();
    let m = summary.metrics;
    assert_eq!(m.events_in, events, "every event read");
    assert_eq!(
        m.late_events + m.dead_letters,
        0,
        "no event late or undecodable"
    );
    println!(
        "{{\"scenario\":\"{name}\",\"events\":{events},\"subjects\":{},\"partitions\":{PARTITIONS},\
         \"log_bytes\":{log_bytes},\"seconds\":{secs:.3},\"events_per_s\":{:.0},\
         \"cpu_seconds\":{cpu:.2},\"events_per_cpu_s\":{:.0},\
         \"results\":{},\"rss_before_mib\":{:.1},\"rss_after_mib\":{:.1},\"hwm_before_mib\":{:.1},\
         \"hwm_mib\":{:.1},\"checkpoint_bytes\":{},\"checkpoint_ms\":{:.1},\"dedupe\":{dedupe},\
         \"identities\":{},\"minor_faults\":{faults}}}",
        sc.subjects,
        events as f64 / secs,
        events as f64 / cpu,
        m.results_out,
        before.rss_mib,
        after.rss_mib,
        before.hwm_mib,
        after.hwm_mib,
        m.checkpoint_bytes_last,
        m.checkpoint_us_last as f64 / 1000.0,
        m.dedupe_ids,
    );
}

/// Memory and checkpoint bytes of one partition remembering `n` identities (ids like the
/// ingest's, a few sources, times spread over a day).
/// Time per `Seen::admit` alone: four partitions' states, every identity new, one per ms.
fn admit(n: u64) {
    use helios_pipeline::dedupe::Seen;
    let ids: Vec<String> = (0..n).map(|i| format!("{i:016x}-{i}")).collect();
    let mut seen: Vec<Seen> = (0..4)
        .map(|_| Seen::new(Duration::from_secs(86_400), 1_000_000))
        .collect();
    let started = Instant::now();
    let mut fresh = 0u64;
    let cpu = cpu_seconds();
    let prefetch = std::env::var("BENCH_PREFETCH").is_ok_and(|v| v == "on");
    let mut hashes = Vec::with_capacity(64);
    for (r, run) in ids.chunks(64).enumerate() {
        hashes.clear();
        hashes.extend(
            run.iter()
                .map(|id| helios_pipeline::dedupe::identity("bench", id)),
        );
        if prefetch {
            let mut lines = helios_pipeline::dedupe::Prefetch::with_capacity(run.len());
            for (j, &h) in hashes.iter().enumerate() {
                lines.add(&seen[(r * 64 + j) % 4], h);
            }
            lines.fetch();
        }
        for (j, &h) in hashes.iter().enumerate() {
            let i = r * 64 + j;
            let time = BASE_US + i as i64 * 1000;
            fresh += u64::from(seen[i % 4].admit_identity(h, time));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let started = Instant::now();
    let mut h = 0u64;
    for id in &ids {
        h ^= helios_pipeline::dedupe::identity("bench", id);
    }
    let hash_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(h);
    println!(
        "{{\"scenario\":\"admit\",\"events\":{n},\"fresh\":{fresh},\"ns_per_admit\":{:.1},\"cpu_ns_per_admit\":{:.1},\"ns_per_hash\":{:.1}}}",
        secs * 1e9 / n as f64,
        cpu * 1e9 / n as f64,
        hash_secs * 1e9 / n as f64
    );
}

/// See `lines` in the module docs. Keys are SplitMix64 outputs, as well mixed as
/// identity hashes; the tables are the layout of `dedupe/table.rs` at its simplest.
fn lines(n: u64) {
    // Each table ends at most 60 % full, as the runtime's grows at 75 %.
    let n = n.min(2_000_000);
    const SLOTS: usize = 1 << 21;
    const RUN: usize = 64;
    fn mix(mut h: u64) -> u64 {
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (h ^ (h >> 31)) | 1
    }
    fn home(k: u64) -> usize {
        (k as usize) & (SLOTS - 1) & !7
    }
    fn insert(table: &mut [u64], k: u64) -> bool {
        let mut i = home(k);
        loop {
            match table[i] {
                0 => {
                    table[i] = k;
                    return true;
                }
                s if s == k => return false,
                _ => i = (i + 1) & (SLOTS - 1),
            }
        }
    }
    let mut tables: Vec<Vec<u64>> = (0..4u64)
        .map(|t| {
            let mut table = vec![0u64; SLOTS];
            for i in 0..750_000u64 {
                insert(&mut table, mix((i << 2) | t));
            }
            table
        })
        .collect();
    let keys: Vec<u64> = (0..n).map(|i| mix(u64::MAX / 2 + i)).collect();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut fresh = 0u64;
    for (r, run) in keys.chunks(RUN).enumerate() {
        let table = &mut tables[r % 4];
        let mut acc = 0u64;
        for &k in run {
            acc ^= table[home(k)];
        }
        std::hint::black_box(acc);
        for &k in run {
            fresh += u64::from(insert(table, k));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    assert_eq!(fresh, n, "every key new");
    println!(
        "{{\"scenario\":\"lines\",\"keys\":{n},\"ns_per_key\":{:.1},\"cpu_ns_per_key\":{:.1}}}",
        secs * 1e9 / n as f64,
        cpu * 1e9 / n as f64
    );
}

fn identities(n: u64) {
    use helios_pipeline::dedupe::Seen;
    let before = rss();
    let mut seen = Seen::new(Duration::from_secs(86_400), usize::MAX);
    let day_us = 86_400_000_000i64;
    for i in 0..n {
        let source = ["github", "ci", "deploy", "hosts"][(i % 4) as usize];
        let time = BASE_US + (i as i64 * 7919) % day_us;
        seen.admit(
            source,
            &format!("{:016x}-{i}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            time,
        );
    }
    let after = rss();
    let checkpoint = seen.checkpoint_bytes();
    let per_million = |x: f64| x * 1_000_000.0 / n as f64;
    println!(
        "{{\"scenario\":\"identities\",\"identities\":{},\"rss_added_mib\":{:.1},\
         \"rss_mib_per_million\":{:.1},\"checkpoint_bytes\":{},\"checkpoint_mib_per_million\":{:.2}}}",
        seen.len(),
        after.rss_mib - before.rss_mib,
        per_million(after.rss_mib - before.rss_mib),
        checkpoint,
        per_million(checkpoint as f64 / 1_048_576.0),
    );
}

/// Appends `n` events in batches of 1000 (encoded chunk by chunk, so the fill itself
/// holds little memory), keyed by subject as the ingest writes them.
async fn fill(log: &Log, sc: &Scenario, n: u64) {
    log.admin()
        .create_topic(&TopicSpec::new("helios.events", PARTITIONS))
        .await
        .unwrap();
    let codec = EventCodec::new(1);
    let producer = log.producer();
    let mut rng = StdRng::seed_from_u64(42);
    let kinds = ["ci.run", "push", "deploy", "probe.http"];
    let branches = ["main", "dev", "release"];
    let mut i = 0u64;
    while i < n {
        let chunk = (n - i).min(1000);
        let mut records = Vec::with_capacity(chunk as usize);
        for _ in 0..chunk {
            // Subjects in a shuffled-looking but fixed order; each seen once in `memory`.
            let subject = format!("github.com/acme/repo-{:07}", (i * 7919) % sc.subjects);
            let time = BASE_US + i as i64 * sc.step_us - rng.random_range(0..DISORDER_US);
            let e = Event {
                id: format!("evt-{i:012}"),
                source: "bench".into(),
                kind: kinds[(i % 4) as usize].into(),
                subject: subject.clone(),
                time,
                received_at: time + 150_000,
                attrs: [
                    (
                        "user".to_string(),
                        format!("user-{}", rng.random_range(0..50)),
                    ),
                    (
                        "branch".to_string(),
                        branches[rng.random_range(0..3)].to_string(),
                    ),
                    (
                        "conclusion".to_string(),
                        if rng.random_range(0..10) == 0 {
                            "failure"
                        } else {
                            "success"
                        }
                        .to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
                // CI-run seconds: 30 s to 10 min, skewed towards short runs.
                value: Some(30.0 * (rng.random_range(0.0f64..3.0)).exp()),
                payload: None,
            };
            records.push(Record {
                timestamp_ms: Some(time / 1000),
                ..Record::keyed(subject, codec.encode(&e))
            });
            i += 1;
        }
        producer.append("helios.events", records).await.unwrap();
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

struct Rss {
    rss_mib: f64,
    hwm_mib: f64,
}

/// CPU time (user + system, all threads) of this process so far, from `/proc/self/stat`
/// (clock ticks of 10 ms): the figure that other work on the machine does not inflate.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// Minor page faults of this process so far (`minflt`, field 10 of `/proc/self/stat`): each
/// is a page of memory the process touched for the first time (or again after giving it
/// back), mapped and, for anonymous memory, zeroed by the kernel.
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // `rest` starts at field 3.
    rest.split_whitespace()
        .nth(7)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// See `pages` in the module docs: what a page of fresh memory costs this machine, the
/// first touch against a second, in CPU time.
fn pages(mib: usize) {
    const PAGE: usize = 4096;
    let bytes = mib << 20;
    let mut fresh_us = Vec::new();
    let mut mapped_us = Vec::new();
    for _ in 0..3 {
        // A zeroed allocation this large is mapped, not touched: the first write to each
        // page faults it in.
        let mut memory = vec![0u8; bytes];
        for round in 0..2 {
            let cpu = cpu_seconds();
            let started = Instant::now();
            for i in (0..bytes).step_by(PAGE) {
                memory[i] = memory[i].wrapping_add(1);
            }
            std::hint::black_box(&memory);
            let secs = (cpu_seconds() - cpu).max(started.elapsed().as_secs_f64());
            let us = secs * 1e6 / (bytes / PAGE) as f64;
            if round == 0 {
                fresh_us.push(us);
            } else {
                mapped_us.push(us);
            }
        }
    }
    fresh_us.sort_by(f64::total_cmp);
    mapped_us.sort_by(f64::total_cmp);
    println!(
        "{{\"scenario\":\"pages\",\"mib\":{mib},\"us_per_fresh_page\":{:.2},\"us_per_mapped_page\":{:.3}}}",
        fresh_us[1], mapped_us[1]
    );
}

/// VmRSS and VmHWM (peak) of this process from `/proc/self/status`.
fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    Rss {
        rss_mib: field("VmRSS:"),
        hwm_mib: field("VmHWM:"),
    }
}

/// Resets VmHWM to the current RSS (Linux: `5` to `/proc/self/clear_refs`), so the peak
/// after the run is the run's own, not the fill's.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset VmHWM ({e}); the peak includes the fill");
    }
}
