//! README's first steps, end to end: `helios up`, post a CloudEvents batch with HTTP,
//! `helios tail helios.events --from-beginning` prints those events.

use crate::common::{Helios, helios};
use serde_json::{Value, json};

#[tokio::test]
async fn posted_batch_is_acknowledged_and_tailed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &[]).await;
    let batch = json!([
        {"specversion": "1.0", "id": "e1", "source": "github", "type": "git.push", "subject": "helios",
         "time": "2026-11-23T10:00:00Z", "value": 3, "ref": "main", "data": {"commits": 3}},
        {"specversion": "1.0", "id": "e2", "source": "ci", "type": "ci.run", "subject": "helios",
         "conclusion": "failure"},
        {"specversion": "1.0", "source": "ci", "type": "ci.run"}
    ]);
    let resp = server.post_events(&batch).await;
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["index"], 2);

    // While `helios up` keeps running.
    let lines: Vec<Value> =
        crate::common::tail_records("helios.events", &["--data-dir", data.to_str().unwrap()])
            .into_iter()
            // The default host metrics and self probe write events of their own.
            .filter(|l: &Value| {
                !["host", "self"].contains(&l["value"]["source"].as_str().unwrap_or(""))
            })
            .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let e1 = lines
        .iter()
        .find(|l| l["value"]["id"] == "e1")
        .expect("e1 tailed");
    assert_eq!(e1["key"], "helios");
    assert_eq!(e1["value"]["kind"], "git.push");
    assert_eq!(e1["value"]["value"], 3.0);
    assert_eq!(e1["value"]["attrs"]["ref"], "main");
    assert_eq!(e1["value"]["payload"]["commits"], 3);
    assert_eq!(e1["value"]["time"], 1_795_428_000_000_000i64);
    let e2 = lines
        .iter()
        .find(|l| l["value"]["id"] == "e2")
        .expect("e2 tailed");
    assert_eq!(e2["value"]["attrs"]["conclusion"], "failure");

    let topics = helios(&["topics", "--data-dir", data.to_str().unwrap()]);
    let table = String::from_utf8(topics.stdout).unwrap();
    assert!(table.contains("helios.events"), "{table}");
    server.stop();
}
