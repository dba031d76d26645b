//! Exactly-once window results and alerts under SIGKILL: `helios up --spec` with an
//! aggregate and a threshold rule is killed at random moments while events stream in and
//! restarted; after deduplicating as the sinks do (window results by id keeping the
//! highest version, alerts by id and state), the final window results and the alerts
//! equal those of a run without a crash: nothing missing, nothing counted twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Helios;
use helios_log::ConsumerConfig;
use helios_log::embedded::EmbeddedLog;
use helios_schemas::{Alert, AlertState, RecordCodec, Registry, WindowResult};
use rand::Rng;
use serde_json::json;

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "per_second"
window = { type = "tumbling", size = "1s" }
group_by = ["subject"]
measures = { n = "count(*)", seqs = "count_distinct(attrs['seq'])", top = "max(value)" }

# Values run 0..96 with the sequence number, so every 97 events (about 2 s of event time)
# a burst of 27 matches gives every subject three or four within a second: each subject
# fires once per burst and resolves when the burst has aged out.
[[rule]]
name = "high_values"
type = "threshold"
where = "value >= 70"
per = ["subject"]
count = 3
within = "1s"
severity = "warning"
"#;

const SUBJECTS: usize = 8;
const BATCH: usize = 50;
const BATCHES: usize = 40;

pub(crate) fn time(ms: i64) -> String {
    // 2026-01-01T00:01:00Z + ms (ms > -60 s), RFC 3339 with milliseconds.
    let base = 1_767_225_660_000i64 + ms;
    let secs = base / 1000;
    // The stream spans under a day, so only the time of day changes.
    let rem = secs % 86_400;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        base % 1000
    )
}

fn batch(b: usize) -> serde_json::Value {
    let events: Vec<_> = (b * BATCH..(b + 1) * BATCH)
        .map(|s| {
            // Slightly out of order (within the allowed second), 20 ms apart.
            let ms = s as i64 * 20 - (s as i64 % 7) * 30;
            json!({"specversion": "1.0", "id": format!("e{s}"), "source": "crash-test",
                   "type": "test.event", "subject": format!("subject-{}", s % SUBJECTS),
                   "time": time(ms), "seq": s.to_string(), "value": (s % 97).to_string()})
        })
        .collect();
    json!(events)
}

/// One event per subject an hour later: moves every partition's watermark past all
/// windows of the stream.
fn flush() -> serde_json::Value {
    json!(
        (0..SUBJECTS)
            .map(
                |i| json!({"specversion": "1.0", "id": format!("flush{i}"), "source": "crash-test",
                "type": "test.flush", "subject": format!("subject-{i}"), "time": time(3_600_000)})
            )
            .collect::<Vec<_>>()
    )
}

pub(crate) async fn post(
    client: &reqwest::Client,
    server: &Helios,
    body: &serde_json::Value,
) -> bool {
    matches!(
        client
            .post(server.url("/v1/events"))
            .bearer_auth(&server.key)
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await,
        Ok(r) if r.status() == 202
    )
}

/// Final results in `helios.aggregates` by id: the highest version of each, and every
/// record seen (id, version) -> bytes, checking repeats are identical.
pub(crate) async fn finals(data: &Path) -> BTreeMap<String, WindowResult> {
    let log = EmbeddedLog::open_read_only(data.join("log")).unwrap().log();
    let registry = Arc::new(Registry::open_read_only(&data.join("registry")).unwrap());
    let codec = RecordCodec::<WindowResult>::with_source(0, registry);
    let mut consumer = log
        .consumer(&["helios.aggregates"], ConsumerConfig::new("verify"))
        .await
        .unwrap();
    let mut seen: BTreeMap<(String, i32), bytes::Bytes> = BTreeMap::new();
    let mut best: BTreeMap<String, WindowResult> = BTreeMap::new();
    loop {
        let batch = consumer
            .poll(10_000, Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            return best;
        }
        for r in batch {
            let w = codec.decode_async(&r.value).await.unwrap();
            if let Some(prev) = seen.insert((w.id.clone(), w.version), r.value.clone()) {
                assert_eq!(prev, r.value, "a repeated result {} differs", w.id);
            }
            if w.is_final && best.get(&w.id).is_none_or(|b| b.version < w.version) {
                best.insert(w.id.clone(), w);
            }
        }
    }
}

/// Alerts in `helios.alerts` deduplicated as the alerts table does: one record per alert
/// id and state (firing, resolved), checking that repeats are identical.
pub(crate) async fn alerts(data: &Path) -> BTreeMap<(String, bool), Alert> {
    let log = EmbeddedLog::open_read_only(data.join("log")).unwrap().log();
    let registry = Arc::new(Registry::open_read_only(&data.join("registry")).unwrap());
    let codec = RecordCodec::<Alert>::with_source(0, registry);
    let mut consumer = log
        .consumer(&["helios.alerts"], ConsumerConfig::new("verify-alerts"))
        .await
        .unwrap();
    let mut seen: BTreeMap<(String, bool), (bytes::Bytes, Alert)> = BTreeMap::new();
    loop {
        let batch = consumer
            .poll(10_000, Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            return seen.into_iter().map(|(k, (_, a))| (k, a)).collect();
        }
        for r in batch {
            let a = codec.decode_async(&r.value).await.unwrap();
            let key = (a.id.clone(), a.state == AlertState::Resolved);
            if let Some((prev, _)) = seen.get(&key) {
                assert_eq!(prev, &r.value, "a repeated alert {key:?} differs");
            } else {
                seen.insert(key, (r.value.clone(), a));
            }
        }
    }
}

/// What a run leaves on the output topics, deduplicated.
struct Outputs {
    windows: BTreeMap<String, WindowResult>,
    alerts: BTreeMap<(String, bool), Alert>,
}

/// Streams every batch (killing and restarting the server before the batches in
/// `kills`), then the flush events, waits until the results account for every event,
/// stops the server cleanly and returns the results and alerts.
async fn run(dir: &Path, kills: &[usize]) -> Outputs {
    let data = dir.join("data");
    std::fs::create_dir_all(dir).unwrap();
    let spec = dir.join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let args = [
        "--spec",
        spec.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
    ];
    let client = crate::common::http();
    let mut server = Helios::up(&data, &args).await;
    for b in 0..BATCHES {
        if kills.contains(&b) {
            // The processor is somewhere in its work on earlier batches: kill it there.
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..150))).await;
            server.kill();
            server = Helios::up(&data, &args).await;
        }
        // Sequential and acknowledged: every event is in the log exactly once.
        assert!(post(&client, &server, &batch(b)).await, "batch {b} refused");
    }
    assert!(post(&client, &server, &flush()).await);
    let total = (BATCHES * BATCH) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let results = finals(&data).await;
        let counted: i64 = results.values().map(|w| w.count).sum();
        assert!(counted <= total, "counted {counted} of {total}: some twice");
        if counted == total {
            // The alerts of the last events come from the same processing step as their
            // final windows; a clean stop lets that step finish writing.
            server.stop();
            return Outputs {
                windows: results,
                alerts: alerts(&data).await,
            };
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {total} events counted; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn final_window_results_and_alerts_survive_sigkill_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = run(&tmp.path().join("clean"), &[]).await;
    let mut rng = rand::rng();
    let mut kills: Vec<usize> = (0..4).map(|_| rng.random_range(1..BATCHES)).collect();
    kills.sort_unstable();
    kills.dedup();
    let crashed = run(&tmp.path().join("crashed"), &kills).await;
    assert!(
        clean.windows.len() >= SUBJECTS * 30,
        "too few windows: {}",
        clean.windows.len()
    );
    let strip = |m: &BTreeMap<String, WindowResult>| -> BTreeMap<String, (WindowResult, i32)> {
        m.iter()
            .map(|(k, w)| {
                (
                    k.clone(),
                    (
                        WindowResult {
                            version: 0,
                            ..w.clone()
                        },
                        w.version,
                    ),
                )
            })
            .collect()
    };
    let (clean_windows, crashed_windows) = (strip(&clean.windows), strip(&crashed.windows));
    for (id, (w, _)) in &clean_windows {
        assert_eq!(
            crashed_windows.get(id).map(|c| &c.0),
            Some(w),
            "window {id} after kills {kills:?}"
        );
    }
    assert_eq!(
        clean_windows.len(),
        crashed_windows.len(),
        "extra windows after kills {kills:?}"
    );

    // The rule fired and resolved for every subject in most bursts (about 20 bursts);
    // every alert that fired also resolved (the flush events age every burst out).
    let firing = clean
        .alerts
        .keys()
        .filter(|(_, resolved)| !resolved)
        .count();
    assert!(
        firing >= SUBJECTS * 10,
        "too few alerts in the run without a crash: {firing} fired"
    );
    for (id, resolved) in clean.alerts.keys() {
        assert!(
            clean.alerts.contains_key(&(id.clone(), !resolved)),
            "alert {id} has only one state"
        );
    }
    for (key, alert) in &clean.alerts {
        assert_eq!(
            crashed.alerts.get(key),
            Some(alert),
            "alert {key:?} after kills {kills:?}"
        );
    }
    let extra: Vec<_> = crashed
        .alerts
        .keys()
        .filter(|k| !clean.alerts.contains_key(*k))
        .collect();
    assert!(
        extra.is_empty(),
        "extra alerts after kills {kills:?}: {extra:?}"
    );
}

/// The final windows a batch computation over the unique events gives: (subject, window
/// start µs) -> count.
fn expected_counts() -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for s in 0..BATCHES * BATCH {
        let ms = 1_767_225_660_000i64 + s as i64 * 20 - (s as i64 % 7) * 30;
        let start = ms.div_euclid(1000) * 1_000_000;
        *out.entry((format!("subject-{}", s % SUBJECTS), start))
            .or_default() += 1;
    }
    out
}

/// What [`stream_with_kills`] did, and the server running at its end.
pub(crate) struct Streamed {
    pub server: Helios,
    /// The batches before which the server was killed, with that batch in flight.
    pub kills: Vec<usize>,
    /// Batches sent a second time on purpose although accepted.
    pub resent: usize,
    /// Sends that got no `202` and were repeated.
    pub unacknowledged: usize,
}

/// Streams `batches` bodies (`batch(b)`) to `helios up` on `data` with `args`, as a
/// producer that retries: up to four times, at random batches, the server is SIGKILLed
/// while that batch is in flight and started again; every batch without a `202` is sent
/// again; and every fifth one (`b % 5 == 3`) is sent twice on purpose.
pub(crate) async fn stream_with_kills(
    data: &Path,
    args: &[&str],
    batches: usize,
    batch: impl Fn(usize) -> serde_json::Value,
) -> Streamed {
    let client = crate::common::http();
    let mut server = Helios::up(data, args).await;
    let mut rng = rand::rng();
    let mut kills: Vec<usize> = (0..4).map(|_| rng.random_range(1..batches)).collect();
    kills.sort_unstable();
    kills.dedup();
    let (mut resent, mut unacknowledged) = (0, 0);
    for b in 0..batches {
        let body = batch(b);
        let mut acked = if kills.contains(&b) {
            // Kill while this batch is in flight: it may or may not have been accepted.
            let (c, url, key, sent) = (
                client.clone(),
                server.url("/v1/events"),
                server.key.clone(),
                body.clone(),
            );
            let inflight = tokio::spawn(async move {
                matches!(
                    c.post(url)
                        .bearer_auth(key)
                        .header("content-type", "application/cloudevents-batch+json")
                        .body(serde_json::to_vec(&sent).unwrap())
                        .send()
                        .await,
                    Ok(r) if r.status() == 202
                )
            });
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
            server.kill();
            let acked = inflight.await.unwrap();
            server = Helios::up(data, args).await;
            acked
        } else {
            post(&client, &server, &body).await
        };
        // No 202: send it again (it may be in the log already).
        while !acked {
            unacknowledged += 1;
            acked = post(&client, &server, &body).await;
        }
        if b % 5 == 3 {
            // A producer retry although the first one was accepted.
            assert!(post(&client, &server, &body).await, "batch {b} refused");
            resent += 1;
        }
    }
    Streamed {
        server,
        kills,
        resent,
        unacknowledged,
    }
}

/// Issue 13, done-when 1 on the embedded log: `helios up` is SIGKILLed while a batch is in
/// flight, the client resends every batch it has no `202` for, and it also resends one
/// batch in five on purpose. The log then holds repeats; the processor drops them, so
/// every final window equals the count over the unique events, and the `events` table
/// holds each `(source, id)` once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resent_batches_count_once_under_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let spec = dir.join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let args = [
        "--spec",
        spec.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
    ];
    let client = crate::common::http();
    let Streamed {
        server,
        kills,
        resent,
        unacknowledged,
    } = stream_with_kills(&data, &args, BATCHES, batch).await;
    assert!(post(&client, &server, &flush()).await);
    assert!(resent >= BATCHES / 5, "the test resends on purpose");

    let total = (BATCHES * BATCH) as i64;
    let expected = expected_counts();
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let results = finals(&data).await;
        let got: BTreeMap<(String, i64), i64> = results
            .values()
            .map(|w| ((w.group["subject"].clone(), w.window_start), w.count))
            .collect();
        let counted: i64 = got.values().sum();
        assert!(
            counted <= total,
            "counted {counted} of {total} unique events: repeats were counted"
        );
        if counted == total {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {total} events counted; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        got, expected,
        "kills {kills:?}, {unacknowledged} unacknowledged"
    );

    // The events table: every (source, id) once, the repeats counted by source.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server
            .post("/v1/sql")
            .json(&json!({"sql": "SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events WHERE source = 'crash-test'"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rows: serde_json::Value = r.json().await.unwrap();
        let (n, ids) = (rows["rows"][0][0].as_i64(), rows["rows"][0][1].as_i64());
        // The stream and one flush event per subject.
        let all = total + SUBJECTS as i64;
        if ids == Some(all) {
            assert_eq!(n, Some(all), "each event once in `events`");
            break;
        }
        assert!(Instant::now() < deadline, "events table: {rows}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sources: serde_json::Value = server
        .get("/v1/sources")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The process running now counts the repeats it dropped itself: at least the
    // on-purpose resends after the last kill.
    let last_kill = kills.last().copied().unwrap_or(0);
    let resent_since = (last_kill..BATCHES).filter(|b| b % 5 == 3).count();
    let dropped = sources["duplicates"]["crash-test"].as_u64().unwrap_or(0);
    assert!(
        dropped >= (resent_since * BATCH) as u64,
        "repeats dropped since the last restart ({resent_since} batches resent): {sources}"
    );
    server.stop();
}
