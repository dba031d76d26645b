//! Issue 15, done-when 1 on the embedded log: aggregates and a rule grouped by anything
//! but the subject (a branch attribute, nothing at all, the event kind) run through
//! repartition topics, and give exactly what a batch computation over the unique events
//! gives, although `helios up` is SIGKILLed while batches are in flight and the client
//! resends every batch it has no `202` for, and one in five on purpose. (The same on Kafka
//! with two pipeline processes: `scale_out.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::pipeline_crash::{Streamed, alerts, finals, post, stream_with_kills, time};

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "by_branch"
window = { type = "tumbling", size = "1s" }
group_by = ["attrs['branch'] AS branch"]
measures = { n = "count(*)", total = "sum(value)" }

[[aggregate]]
name = "everything"
where = "kind <> 'test.flush'"
window = { type = "tumbling", size = "1s" }
measures = { n = "count(*)" }

[[rule]]
name = "hot_kind"
type = "threshold"
where = "value >= 70"
per = ["kind"]
count = 3
within = "1s"
"#;

/// Twelve subjects: every one of the four partitions holds some.
const SUBJECTS: usize = 12;
const BATCH: usize = 50;
const BATCHES: usize = 40;
/// 2026-01-01T00:01:00Z, µs (`pipeline_crash::time`'s origin).
const ORIGIN_US: i64 = 1_767_225_660_000_000;

/// Event `s`: 20 ms apart, slightly out of order, on one of three branches and two kinds;
/// values run 0..96, so every 97 events a burst of matches makes each kind fire.
fn event(s: usize) -> (i64, String, String, f64) {
    let ms = s as i64 * 20 - (s as i64 % 7) * 30;
    let branch = ["main", "dev", "feature-x"][s % 3].to_string();
    let kind = ["test.build", "test.deploy"][(s / 3) % 2].to_string();
    (ms, branch, kind, (s % 97) as f64)
}

fn batch(b: usize) -> serde_json::Value {
    json!(
        (b * BATCH..(b + 1) * BATCH)
            .map(|s| {
                let (ms, branch, kind, value) = event(s);
                json!({"specversion": "1.0", "id": format!("e{s}"), "source": "any-key-test",
                       "type": kind, "subject": format!("subject-{}", s % SUBJECTS),
                       "time": time(ms), "branch": branch, "value": value.to_string()})
            })
            .collect::<Vec<_>>()
    )
}

/// One event per subject an hour later: every partition's watermark passes the stream.
fn flush() -> serde_json::Value {
    json!(
        (0..SUBJECTS)
            .map(|i| json!({"specversion": "1.0", "id": format!("flush{i}"), "source": "any-key-test",
                            "type": "test.flush", "subject": format!("subject-{i}"),
                            "time": time(3_600_000)}))
            .collect::<Vec<_>>()
    )
}

/// The threshold alerts a batch computation gives, per key, applying the matches in time
/// order one by one as the rule documents: a match at t counts the matches so far in
/// (t − W, t]; the alert fires when that reaches `n`, and resolves when it falls below
/// `n`: at a match (several aged out at once) or when the `n`-th newest match ages out.
/// `matches`: key -> match times (µs). Returns (key, since, resolved at).
pub(crate) fn threshold_alerts(
    matches: &BTreeMap<String, Vec<i64>>,
    n: usize,
    w: i64,
) -> BTreeSet<(String, i64, Option<i64>)> {
    let mut out = BTreeSet::new();
    for (key, times) in matches {
        let mut times = times.clone();
        times.sort_unstable();
        let mut window: std::collections::VecDeque<i64> = Default::default();
        let mut firing: Option<i64> = None;
        let mut resolve = |since: i64, at: i64, firing: &mut Option<i64>| {
            out.insert((key.clone(), since, Some(at)));
            *firing = None;
        };
        for t in times {
            // A due resolution before this match (a match at the same time comes first).
            if let Some(since) = firing {
                let drops_at = window[window.len() - n] + w;
                if drops_at < t {
                    resolve(since, drops_at, &mut firing);
                }
            }
            while window.front().is_some_and(|&m| m <= t - w) {
                window.pop_front();
            }
            window.push_back(t);
            match firing {
                None if window.len() >= n => firing = Some(t),
                Some(since) if window.len() < n => resolve(since, t, &mut firing),
                _ => {}
            }
        }
        if let Some(since) = firing {
            let drops_at = window[window.len() - n] + w;
            resolve(since, drops_at, &mut firing);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_by_branch_globally_and_by_kind_count_once_under_sigkill_and_resends() {
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
    let Streamed { server, kills, .. } = stream_with_kills(&data, &args, BATCHES, batch).await;
    assert!(post(&client, &server, &flush()).await);

    // The batch computation over the unique events.
    let total = BATCHES * BATCH;
    let window = |ms: i64| (ORIGIN_US + ms * 1000).div_euclid(1_000_000) * 1_000_000;
    let mut by_branch: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
    let mut everything: BTreeMap<i64, i64> = BTreeMap::new();
    let mut hot: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in 0..total {
        let (ms, branch, kind, value) = event(s);
        let slot = by_branch.entry((branch, window(ms))).or_default();
        slot.0 += 1;
        slot.1 += value;
        *everything.entry(window(ms)).or_default() += 1;
        if value >= 70.0 {
            hot.entry(kind).or_default().push(ORIGIN_US + ms * 1000);
        }
    }
    let want_alerts = threshold_alerts(&hot, 3, 1_000_000);
    assert!(want_alerts.len() >= 20, "{want_alerts:?}");

    let deadline = Instant::now() + Duration::from_secs(90);
    let results = loop {
        let results = finals(&data).await;
        let counted: i64 = results
            .values()
            .filter(|w| w.aggregate == "everything")
            .map(|w| w.count)
            .sum();
        assert!(
            counted <= total as i64,
            "counted {counted} of {total} unique events: repeats were counted (kills {kills:?})"
        );
        if counted == total as i64 {
            break results;
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {total} events counted; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got_everything: BTreeMap<i64, i64> = results
        .values()
        .filter(|w| w.aggregate == "everything")
        .map(|w| (w.window_start, w.count))
        .collect();
    assert_eq!(got_everything, everything, "kills {kills:?}");
    let got_branch: BTreeMap<(String, i64), (i64, f64)> = results
        .values()
        .filter(|w| w.aggregate == "by_branch")
        .map(|w| {
            (
                (w.group["branch"].clone(), w.window_start),
                (w.count, w.measures["total"]),
            )
        })
        .collect();
    assert_eq!(got_branch, by_branch, "kills {kills:?}");

    // The rule's alerts: the same moment the batch computation gives, each once. The
    // last ones resolve in the same step as the last windows close; wait for them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<(String, i64, Option<i64>)> = {
            let all = alerts(&data).await;
            let resolved: BTreeMap<String, i64> = all
                .iter()
                .filter(|((_, r), _)| *r)
                .map(|((id, _), a)| (id.clone(), a.at))
                .collect();
            all.iter()
                .filter(|((_, r), _)| !r)
                .map(|((id, _), a)| {
                    assert_eq!(a.rule, "hot_kind");
                    (a.group["kind"].clone(), a.since, resolved.get(id).copied())
                })
                .collect()
        };
        if got == want_alerts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alerts differ from the batch computation (kills {kills:?}):\n\
             missing {:?}\nextra {:?}",
            want_alerts.difference(&got).take(5).collect::<Vec<_>>(),
            got.difference(&want_alerts).take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The store holds them as the API reads them: a global aggregate is a table without
    // key columns.
    let per_branch: BTreeMap<String, i64> =
        by_branch
            .iter()
            .fold(BTreeMap::new(), |mut m, ((branch, _), (n, _))| {
                *m.entry(branch.clone()).or_default() += n;
                m
            });
    let want = json!([[
        everything.len(),
        total,
        per_branch["dev"],
        per_branch["feature-x"],
        per_branch["main"]
    ]]);
    let sql = "SELECT (SELECT count(*) FROM agg_everything WHERE \"final\" = 1) AS windows, \
               (SELECT sum(\"count\") FROM agg_everything WHERE \"final\" = 1) AS events, \
               (SELECT sum(\"count\") FROM agg_by_branch WHERE \"final\" = 1 AND branch = 'dev') AS dev, \
               (SELECT sum(\"count\") FROM agg_by_branch WHERE \"final\" = 1 AND branch = 'feature-x') AS fx, \
               (SELECT sum(\"count\") FROM agg_by_branch WHERE \"final\" = 1 AND branch = 'main') AS main";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server
            .post("/v1/sql")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        if body["rows"] == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store holds {body}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The forwarding is visible to an operator.
    let metrics = server
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("helios_pipeline_repartitioned_total{direction=\"out\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "helios_consumer_lag_records{stage=\"pipeline\",topic=\"helios.repartition.everything\""
        ),
        "the repartition stages' lag is exposed: {metrics}"
    );
    server.stop();
}
