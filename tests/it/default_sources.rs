//! Issue 3, done-when 4: `helios up` with no spec runs host metrics and a probe of its own
//! health route, so `helios tail helios.events --from-beginning` shows live events within
//! seconds of the first start.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::Helios;
use serde_json::Value;

fn tail(data: &str) -> Vec<Value> {
    crate::common::tail_records("helios.events", &["--data-dir", data])
}

#[tokio::test]
async fn up_without_a_spec_shows_host_metrics_and_its_own_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &[]).await;
    let data_arg = data.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = tail(data_arg);
        let kinds: BTreeSet<&str> = lines
            .iter()
            .filter_map(|l| l["value"]["kind"].as_str())
            .collect();
        if kinds.contains("probe.http") && kinds.contains("host.memory_used") {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "no host and probe events within 30 s; kinds so far: {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let probe = lines
        .iter()
        .find(|l| l["value"]["kind"] == "probe.http")
        .unwrap();
    assert_eq!(probe["value"]["source"], "self");
    assert_eq!(probe["value"]["subject"], "helios");
    assert_eq!(probe["key"], "helios");
    assert_eq!(probe["value"]["attrs"]["ok"], "true", "{probe}");
    assert_eq!(probe["value"]["attrs"]["status"], "200");
    assert_eq!(
        probe["value"]["attrs"]["url"],
        format!("http://{}/healthz", server.addr)
    );
    assert!(probe["value"]["value"].as_f64().unwrap() > 0.0);

    let host: Vec<&Value> = lines
        .iter()
        .filter(|l| l["value"]["source"] == "host")
        .collect();
    assert!(
        host.iter()
            .all(|l| l["value"]["kind"].as_str().unwrap().starts_with("host."))
    );
    let memory = host
        .iter()
        .find(|l| l["value"]["kind"] == "host.memory_total")
        .expect("memory total");
    assert!(memory["value"]["value"].as_f64().unwrap() > 0.0);

    // Both show up in the sources' status.
    let status: Value = server
        .get("/v1/sources")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: BTreeSet<&str> = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains("host") && names.contains("self"), "{status}");
    server.stop();
}
