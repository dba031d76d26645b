//! Rules end to end: `helios up --spec` with a threshold rule; failing CI runs posted over
//! HTTP (two before a restart, the third after it) make the rule fire, and the `Alert`
//! appears on `helios.alerts`, printed as JSON by `helios tail`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Helios;
use serde_json::{Value, json};

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "1h"
severity = "critical"
"#;

fn run(id: &str, subject: &str, time: &str, conclusion: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "ci", "type": "ci.run",
           "subject": subject, "time": time, "conclusion": conclusion})
}

async fn post(server: &Helios, events: Value) {
    let resp = crate::common::http()
        .post(server.url("/v1/events"))
        .bearer_auth(&server.key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(events.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

/// `helios tail helios.alerts --from-beginning`, parsed.
fn alerts(data: &Path) -> Vec<Value> {
    crate::common::tail_records("helios.alerts", &["--data-dir", data.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_rule_fires_an_alert_on_helios_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let args = [
        "--spec",
        spec.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
    ];

    let server = Helios::up(&data, &args).await;
    post(
        &server,
        json!([
            run("f1", "helios", "2026-11-23T10:00:00Z", "failure"),
            run("ok1", "helios", "2026-11-23T10:01:00Z", "success"),
            run("f2", "helios", "2026-11-23T10:02:00Z", "failure"),
            // Another subject: one failure is not enough.
            run("g1", "other", "2026-11-23T10:02:30Z", "failure"),
        ]),
    )
    .await;
    // The rule's state (two matches held for `helios`) goes into the checkpoint.
    server.stop();

    let server = Helios::up(&data, &args).await;
    post(
        &server,
        json!([
            run("f3", "helios", "2026-11-23T10:03:00Z", "failure"),
            // Later events of the same subject (same partition) move its watermark past f3.
            run("ok2", "helios", "2026-11-23T10:10:00Z", "success"),
        ]),
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = alerts(&data);
        if !lines.is_empty() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no alert on helios.alerts; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    server.stop();
    // Nothing more came after the stop's final checkpoint.
    assert_eq!(alerts(&data), lines);

    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert!(line.get("error").is_none(), "{line}");
    let alert = &line["value"];
    assert_eq!(line["key"], alert["id"], "keyed by the alert id");
    assert_eq!(alert["rule"], "ci_failing");
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["group"], json!({"subject": "helios"}));
    // 2026-11-23T10:03:00Z, the third failure, in µs.
    assert_eq!(alert["at"], 1_795_428_180_000_000i64);
    assert_eq!(alert["evidence"], json!(["f1", "f2", "f3"]));
    assert!(
        alert["summary"].as_str().is_some_and(|s| s.contains('3')),
        "{alert}"
    );
}
