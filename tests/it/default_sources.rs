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

/// `--listen 127.0.0.1:0` lets the system pick the port: the self probe checks the port
/// actually bound, not port 0.
#[tokio::test]
async fn the_self_probe_checks_the_port_bound_when_the_system_picks_it() {
    self_probe_of_a_system_picked_port(&["up"]).await;
}

/// [`the_self_probe_checks_the_port_bound_when_the_system_picks_it`] for the ingest stage
/// alone (embedded log), which names itself the same way.
#[tokio::test]
async fn the_ingest_stage_probes_the_port_it_bound_too() {
    self_probe_of_a_system_picked_port(&["run", "ingest"]).await;
}

async fn self_probe_of_a_system_picked_port(command: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = std::fs::File::create(tmp.path().join("up.log")).unwrap();
    let child = crate::common::Running(
        std::process::Command::new(crate::common::BIN)
            .args(command)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let data_arg = data.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = loop {
        // Not `tail`, which fails the test: the log may not exist yet right after the
        // spawn (this test does not wait for /healthz, whose port it does not know).
        let out = crate::common::helios(&[
            "tail",
            "helios.events",
            "--from-beginning",
            "--data-dir",
            data_arg,
        ]);
        let probe = out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .and_then(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|l| l["value"]["kind"] == "probe.http")
            });
        if let Some(probe) = probe {
            break probe;
        }
        assert!(
            Instant::now() < deadline,
            "no probe event within 60 s; see {}",
            tmp.path().join("up.log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(child);
    let url = probe["value"]["attrs"]["url"].as_str().unwrap();
    assert!(!url.starts_with("http://127.0.0.1:0/"), "{probe}");
    assert_eq!(probe["value"]["attrs"]["ok"], "true", "{probe}");
}
