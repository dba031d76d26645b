//! Issue 13, done-when 2: the ways a producer repeats itself count once. A GitHub delivery
//! redelivered with the same `X-GitHub-Delivery`, a generic webhook retried with the same
//! id, and Kafka records the bridge reads again after a restart (its consumer group
//! changed, so it starts over from the earliest offset) each reach the log twice; the
//! processor drops the repeats, so each subject's events count once in the aggregate and
//! its threshold rule fires once, with the distinct events as evidence.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use helios_log::kafka::{KafkaConfig, KafkaLog};
use helios_log::{Record, TopicSpec};
use serde_json::{Value, json};

use crate::common::roles::service;
use crate::common::{Helios, rfc3339};

const GITHUB_SECRET: &str = "redelivery-s3cret";
const HOOK_TOKEN: &str = "redelivery-t0ken";

fn spec(kafka: &str, topic: &str, group: &str) -> String {
    format!(
        r#"
[watermark]
max_out_of_orderness = "1s"
idle_timeout = "2s"

[[source]]
type = "github"
name = "gh"
secret = "{GITHUB_SECRET}"

[[source]]
type = "webhook"
name = "hooks"
token = "{HOOK_TOKEN}"

[[source]]
type = "kafka_bridge"
name = "bridge"
bootstrap_servers = "{kafka}"
topics = ["{topic}"]
group = "{group}"

[[aggregate]]
name = "per_10s"
window = {{ type = "tumbling", size = "10s" }}
group_by = ["subject"]
measures = {{ n = "count(*)" }}

[[rule]]
name = "twice"
type = "threshold"
where = "true"
per = ["subject"]
count = 2
within = "10m"
"#
    )
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn github(server: &Helios, delivery: &str, time: &str) {
    let body = json!({
        "ref": "refs/heads/main", "after": delivery, "commits": [],
        "head_commit": {"timestamp": time},
        "repository": {"full_name": "octo/redelivered"},
    })
    .to_string();
    let resp = crate::common::http()
        .post(server.url("/v1/webhooks/github/gh"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            crate::common::github_signature(GITHUB_SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
}

async fn hook(server: &Helios, id: &str, time: &str) {
    let resp = crate::common::http()
        .post(server.url("/v1/webhooks/hooks"))
        .bearer_auth(HOOK_TOKEN)
        .json(&json!({"id": id, "time": time, "subject": "hooked", "kind": "deploy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
}

/// `helios tail <topic> --from-beginning`, the records' values.
fn tail(data: &Path, topic: &str) -> Vec<Value> {
    crate::common::tail_records(topic, &["--data-dir", data.to_str().unwrap()])
        .into_iter()
        .filter(|l| l.get("watermark_mark").is_none())
        .map(|l| l["value"].clone())
        .collect()
}

/// Waits until `helios.events` holds `n` records of `subject` (repeats included). The bound
/// is generous: the Kafka bridge joins its consumer group first, which on a loaded machine
/// (a release build on both cores) took longer than a minute.
async fn wait_events(data: &Path, subject: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = tail(data, "helios.events")
            .iter()
            .filter(|e| e["subject"] == subject)
            .count();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} records of {subject} in helios.events; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_retries_and_rereads_count_once_and_fire_once() {
    let kafka = service("HELIOS_TEST_KAFKA", "a Kafka-protocol broker (tansu)");
    let topic = format!("helios-test.redelivery.{}-{}", std::process::id(), now_us());
    let external =
        KafkaLog::connect(KafkaConfig::new(&kafka).request_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
    external
        .admin()
        .create_topic(&TopicSpec::new(topic.clone(), 1))
        .await
        .unwrap();
    let produce = |n: usize, time: String| {
        let value = json!({"subject": "bridged", "kind": "ci.run", "time": time, "n": n});
        Record {
            value: Bytes::from(value.to_string()),
            ..Record::default()
        }
    };

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec_path = tmp.path().join("helios.toml");
    let args = [
        "--spec",
        spec_path.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
    ];
    let t = |offset_s: i64| rfc3339(now_us() + offset_s * 1_000_000);

    // First run: each producer's first event and its repeat; the bridge reads record 0.
    std::fs::write(&spec_path, spec(&kafka, &topic, "bridge-1")).unwrap();
    let server = Helios::up(&data, &args).await;
    let (t_a, t_b) = (t(0), t(1));
    github(&server, "delivery-a", &t_a).await;
    github(&server, "delivery-a", &t_a).await; // GitHub's "Redeliver"
    hook(&server, "hook-a", &t_a).await;
    hook(&server, "hook-a", &t_a).await; // the sender's retry
    external
        .producer()
        .append(&topic, vec![produce(0, t_a.clone())])
        .await
        .unwrap();
    wait_events(&data, "bridged", 1).await;
    server.stop();

    // Second run: the bridge's group changed, so it reads record 0 again, then record 1.
    external
        .producer()
        .append(&topic, vec![produce(1, t_b.clone())])
        .await
        .unwrap();
    std::fs::write(&spec_path, spec(&kafka, &topic, "bridge-2")).unwrap();
    let server = Helios::up(&data, &args).await;
    wait_events(&data, "bridged", 3).await;
    github(&server, "delivery-b", &t_b).await;
    hook(&server, "hook-b", &t_b).await;
    wait_events(&data, "octo/redelivered", 3).await;
    wait_events(&data, "hooked", 3).await;

    // Each subject: its two distinct events counted once each, one alert with both.
    let subjects = ["octo/redelivered", "hooked", "bridged"];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut counted: BTreeMap<String, i64> = BTreeMap::new();
        for r in tail(&data, "helios.aggregates") {
            if r["final"] == true {
                *counted
                    .entry(r["group"]["subject"].as_str().unwrap().to_owned())
                    .or_default() += r["count"].as_i64().unwrap();
            }
        }
        let alerts: Vec<Value> = tail(&data, "helios.alerts")
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect();
        let done = subjects.iter().all(|s| counted.get(*s) == Some(&2))
            && subjects
                .iter()
                .all(|s| alerts.iter().any(|a| a["group"]["subject"] == *s));
        if done {
            for s in subjects {
                let fired: Vec<&Value> = alerts
                    .iter()
                    .filter(|a| a["group"]["subject"] == s)
                    .collect();
                assert_eq!(fired.len(), 1, "{s}: {fired:#?}");
                assert_eq!(fired[0]["evidence"].as_array().unwrap().len(), 2, "{s}");
            }
            let ids: Vec<&Value> = alerts
                .iter()
                .filter(|a| a["group"]["subject"] == "octo/redelivered")
                .map(|a| &a["evidence"])
                .collect();
            assert_eq!(ids[0], &json!(["delivery-a", "delivery-b"]));
            break;
        }
        assert!(
            counted.values().all(|n| *n <= 2),
            "a repeat was counted: {counted:?}"
        );
        assert!(
            Instant::now() < deadline,
            "counted {counted:?}, alerts {alerts:#?}; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sources: Value = server
        .get("/v1/sources")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The bridge's re-read record was dropped by this process.
    assert_eq!(sources["duplicates"]["bridge"], 1, "{sources}");
    server.stop();
}
