//! Issue 12, done-when 3: one event dated 9999-01-01 cannot hijack event time. Sent through
//! HTTP ingest it is refused (per item, with the reason); through a generic webhook and a
//! pull source (file tail) it is a dead letter with the reason. The ordinary events of the
//! next minutes, all on the same partition as the refused ones, still close their windows
//! from event time alone, with nothing late.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Helios;
use serde_json::{Value, json};

const SPEC: &str = r#"
[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)" }

[[source]]
type = "http"

[[source]]
type = "webhook"
name = "hooks"
token = "hook-t0ken"

[[source]]
type = "file"
name = "applog"
paths = ["LOGS/*.log"]
poll_interval = "50ms"
"#;

const YEAR_9999: &str = "9999-01-01T00:00:00Z";

fn event(id: &str, time: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "e2e", "type": "ci.run",
           "subject": "helios", "time": time})
}

/// `helios tail <topic> --from-beginning`, the records' values.
fn tail(data: &Path, topic: &str) -> Vec<Value> {
    crate::common::tail_values(data, topic)
}

/// Polls `topic` until `done` holds for its records (at most 60 s).
async fn wait_for(
    data: &Path,
    topic: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = tail(data, topic);
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what} on {topic}; got {records:#?}; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The dead letter of `stage` dated in the year 9999, if written.
fn future_letter<'a>(letters: &'a [Value], stage: &str) -> Option<&'a Value> {
    letters.iter().find(|d| {
        d["stage"] == stage
            && d["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("event time 9999-01-01T00:00:00Z is "))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dated_9999_is_refused_and_the_next_windows_close() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC.replace("LOGS", logs.to_str().unwrap())).unwrap();
    let server = Helios::up(
        &data,
        &[
            "--spec",
            spec.to_str().unwrap(),
            "--checkpoint-interval",
            "100ms",
        ],
    )
    .await;

    // HTTP ingest: the item is rejected with its index, the field and the reason.
    let resp = server
        .post_events(&json!([
            event("a1", "2026-11-23T10:00:05Z"),
            event("http-bomb", YEAR_9999)
        ]))
        .await;
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["index"], 1, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "time", "{answer}");
    let reason = answer["rejected"][0]["error"].as_str().unwrap();
    assert!(
        reason.starts_with("event time 9999-01-01T00:00:00Z is ")
            && reason.contains(" years ahead of the time Helios received it")
            && reason.contains("the limit is 15m (max_future)"),
        "{reason}"
    );
    // Alone in a request it is a 400.
    let resp = server
        .post_events(&json!([event("http-bomb-2", YEAR_9999)]))
        .await;
    assert_eq!(resp.status(), 400);

    // A generic webhook: a dead letter, named in the answer.
    let resp = crate::common::http()
        .post(server.url("/v1/webhooks/hooks"))
        .bearer_auth("hook-t0ken")
        .json(&json!({"id": "hook-bomb", "time": YEAR_9999, "subject": "helios", "kind": "deploy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["dead_lettered"][0]["id"], "hook-bomb", "{answer}");

    // A pull source: a line of a tailed file.
    let mut file = std::fs::File::create(logs.join("app.log")).unwrap();
    writeln!(
        file,
        r#"{{"time":"{YEAR_9999}","subject":"helios","kind":"log.line"}}"#
    )
    .unwrap();
    file.flush().unwrap();
    let letters = wait_for(&data, "helios.dlq", "both dead letters", |d| {
        future_letter(d, "source/hooks").is_some() && future_letter(d, "source/applog").is_some()
    })
    .await;
    for stage in ["source/hooks", "source/applog"] {
        let reason = future_letter(&letters, stage).unwrap()["reason"]
            .as_str()
            .unwrap();
        assert!(reason.contains("the limit is 15m (max_future)"), "{reason}");
    }

    // The next minutes, in event time, on the same subject (partition).
    let resp = server
        .post_events(&json!([
            event("a2", "2026-11-23T10:00:30Z"),
            event("b1", "2026-11-23T10:01:10Z"),
            event("b2", "2026-11-23T10:01:40Z"),
            event("c1", "2026-11-23T10:02:10Z"),
            event("d1", "2026-11-23T10:03:10Z"),
        ]))
        .await;
    assert_eq!(resp.status(), 202);
    let minute = |m: i64| 1_795_428_000_000_000i64 + m * 60_000_000; // 2026-11-23T10:00Z + m min
    let finals = |results: &[Value]| -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = results
            .iter()
            .filter(|r| r["aggregate"] == "per_minute" && r["final"] == true)
            .map(|r| {
                (
                    r["window_start"].as_i64().unwrap(),
                    r["count"].as_i64().unwrap(),
                )
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    let results = wait_for(&data, "helios.aggregates", "three closed windows", |r| {
        finals(r).len() >= 3
    })
    .await;
    assert_eq!(
        finals(&results),
        [(minute(0), 2), (minute(1), 2), (minute(2), 1)],
        "every minute closed with all its events"
    );
    assert!(
        tail(&data, "helios.late").is_empty(),
        "no event was late after the refused ones"
    );
    // Nothing dated 9999 reached the events topic.
    let events = tail(&data, "helios.events");
    assert!(
        events
            .iter()
            .all(|e| e["time"].as_i64().unwrap() < minute(10)),
        "{events:#?}"
    );
    server.stop();
}
