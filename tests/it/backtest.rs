//! `helios backtest` end to end: failing CI runs stored by `helios up` under a threshold
//! rule of 3, backtested with a threshold of 2 against it. The alerts, and the difference
//! from the baseline, are exactly what a batch computation over the same runs predicts;
//! the data dir (live topics, offsets, checkpoints, store) is byte-identical afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::{Helios, helios_ok};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const W_US: i64 = 3_600_000_000;
/// 2024-01-01T00:00:00Z, µs.
const START_US: i64 = 1_704_067_200_000_000;

fn spec(count: u32) -> String {
    format!(
        r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "runs"
where = "kind = 'ci.run'"
window = {{ type = "tumbling", size = "1h" }}
group_by = ["subject"]
measures = {{ failures = "count(*)" }}

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = {count}
within = "1h"
"#
    )
}

/// RFC 3339 of µs (whole seconds).
fn rfc3339(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The threshold rule's definition, computed over all matches at once: per subject, at
/// every match time and every time a match ages out (t + W), the matches in (x − W, x];
/// it fires at the first x where they reach `n` and resolves at the first x after that
/// where they are below `n`. (subject, since) -> resolved.
fn predict(failures: &BTreeMap<String, Vec<i64>>, n: usize) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for (subject, times) in failures {
        let instants: BTreeSet<i64> = times.iter().flat_map(|&t| [t, t + W_US]).collect();
        let mut since = None;
        for x in instants {
            let count = times.iter().filter(|&&t| x - W_US < t && t <= x).count();
            match since {
                None if count >= n => since = Some(x),
                Some(s) if count < n => {
                    out.insert((subject.clone(), s), x);
                    since = None;
                }
                _ => {}
            }
        }
        assert!(since.is_none(), "the closing events resolve every alert");
    }
    out
}

/// Every file of `dir` with its contents' hash.
fn hash_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, format!("{:x}", Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// (subject, since, resolved) of a report's alert list.
fn alerts(list: &Value) -> BTreeMap<(String, i64), i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| {
            (
                (
                    a["group"]["subject"].as_str().unwrap().to_string(),
                    a["since_us"].as_i64().unwrap(),
                ),
                a["resolved_us"].as_i64().expect("resolved"),
            )
        })
        .collect()
}

/// Six hours of CI runs of three projects, about half of them failing, at distinct
/// seconds (no run exactly an hour after a failure, so no two rule instants coincide), in
/// time order, then a later event per project that moves each partition's watermark past
/// every alert. The failures' times per project.
fn ci_runs() -> (Vec<Value>, BTreeMap<String, Vec<i64>>) {
    let mut rng = StdRng::seed_from_u64(15);
    let mut events = Vec::new();
    let mut failures: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut all_times = BTreeSet::new();
    for subject in ["api", "web", "worker"] {
        let mut t = START_US;
        let mut times = Vec::new();
        for i in 0..60 {
            t += rng.random_range(60..900) * 1_000_000;
            let failed = rng.random_bool(0.5);
            if failed && (all_times.contains(&(t - W_US)) || all_times.contains(&(t + W_US))) {
                continue;
            }
            all_times.insert(t);
            if failed {
                times.push(t);
            }
            events.push((
                t,
                json!({"specversion": "1.0", "id": format!("{subject}-{i}"), "source": "ci",
                "type": "ci.run", "subject": subject, "time": rfc3339(t),
                "conclusion": if failed { "failure" } else { "success" }}),
            ));
        }
        failures.insert(subject.to_string(), times);
    }
    // In time order (projects share partitions), then a later event per project moves
    // each partition's watermark past every alert.
    events.sort_by_key(|(t, _)| *t);
    let mut events: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    for subject in ["api", "web", "worker"] {
        events.push(
            json!({"specversion": "1.0", "id": format!("{subject}-end"), "source": "ci",
            "type": "deploy", "subject": subject, "time": rfc3339(START_US + 48 * W_US)}),
        );
    }
    (events, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_threshold_backtests_to_the_predicted_alerts_and_leaves_the_data_dir_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let current = tmp.path().join("current.toml");
    let new = tmp.path().join("new.toml");
    std::fs::write(&current, spec(3)).unwrap();
    std::fs::write(&new, spec(2)).unwrap();

    let (events, failures) = ci_runs();
    let server = Helios::up(&data, &["--spec", current.to_str().unwrap()]).await;
    let resp = server.post_events(&Value::Array(events.clone())).await;
    assert_eq!(resp.status(), 202);
    server.stop();

    let before = hash_tree(&data);
    let stdout = helios_ok(&[
        "backtest",
        "--spec",
        new.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        "json",
        "--limit",
        "1000",
    ]);
    // Nothing but the report on stdout.
    let report: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stdout)));

    assert_eq!(
        report["source"]["events"],
        events.len() as u64,
        "{report:#}"
    );
    assert_eq!(report["runs"]["new"]["events"], events.len() as u64);
    assert_eq!(report["runs"]["new"]["late_events"], 0);
    let rules = report["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{report:#}");
    let rule = &rules[0];
    assert_eq!(rule["rule"], "ci_failing");

    let with_two = predict(&failures, 2);
    let with_three = predict(&failures, 3);
    assert!(with_two != with_three && !with_three.is_empty());
    assert_eq!(alerts(&rule["alerts"]), with_two);
    assert_eq!(rule["fired"], with_two.len());
    assert_eq!(rule["resolved"], with_two.len());
    assert_eq!(rule["baseline"]["fired"], with_three.len());
    let added: BTreeMap<_, _> = with_two
        .iter()
        .filter(|(k, _)| !with_three.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let removed: BTreeMap<_, _> = with_three
        .iter()
        .filter(|(k, _)| !with_two.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(!added.is_empty() && !removed.is_empty());
    assert_eq!(alerts(&rule["added"]), added);
    assert_eq!(alerts(&rule["removed"]), removed);
    // Alerts that start at the same failure under both thresholds end when the second
    // newest (not the third) ages out, so they are changed, not equal.
    let changed = rule["changed"].as_array().unwrap();
    let common: Vec<_> = with_two
        .iter()
        .filter(|(k, v)| with_three.get(*k).is_some_and(|r| r != *v))
        .collect();
    assert_eq!(changed.len(), common.len(), "{rule:#}");

    // The aggregate is the same in both specs: every window matches.
    let aggregate = &report["aggregates"][0];
    assert_eq!(aggregate["aggregate"], "runs");
    assert_eq!(aggregate["baseline"]["differing"], 0);
    assert_eq!(aggregate["baseline"]["added"], 0);
    assert_eq!(aggregate["baseline"]["removed"], 0);
    assert_eq!(
        aggregate["events"],
        events.len() as u64 - 3,
        "every run is in a final window"
    );

    assert_eq!(
        hash_tree(&data),
        before,
        "the backtest changed the data dir"
    );

    // The text report says the same to a reader.
    let text = String::from_utf8(helios_ok(&[
        "backtest",
        "--spec",
        new.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(
        text.contains(&format!(
            "ci_failing: {} fired, {} resolved (baseline: {} fired",
            with_two.len(),
            with_two.len(),
            with_three.len()
        )),
        "{text}"
    );
    let ((subject, since), _) = added.iter().next().unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("    + ")
            && l.contains(&format!("subject={subject}"))
            && l.contains(
                &humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_micros(*since as u64)
                )
                .to_string()
            )),
        "{text}"
    );

    // With --from the records are copied into the scratch log first: the same alerts.
    // With --to before anything was stored, nothing is read.
    let backtest = |range: &[&str]| -> Value {
        let mut args = vec!["backtest", "--spec", new.to_str().unwrap()];
        args.extend(["--data-dir", data.to_str().unwrap()]);
        args.extend(["--format", "json", "--limit", "1000"]);
        args.extend_from_slice(range);
        serde_json::from_slice(&helios_ok(&args)).unwrap()
    };
    let copied = backtest(&["--from", "2000-01-01T00:00:00Z"]);
    assert_eq!(copied["source"]["copied"], true);
    assert_eq!(copied["source"]["events"], events.len() as u64);
    assert_eq!(alerts(&copied["rules"][0]["alerts"]), with_two);
    let none = backtest(&["--to", "2000-01-01T00:00:00Z"]);
    assert_eq!(none["source"]["events"], 0, "{none:#}");
    assert_eq!(none["source"]["skipped"], events.len() as u64);
    assert_eq!(none["rules"], json!([]));
    assert_eq!(hash_tree(&data), before);
}

/// The same backtest from a file of events, without any data dir.
#[test]
fn a_file_of_events_backtests_without_a_running_helios() {
    let tmp = tempfile::tempdir().unwrap();
    let new = tmp.path().join("new.toml");
    std::fs::write(&new, spec(2)).unwrap();
    let csv = tmp.path().join("events.csv");
    std::fs::write(
        &csv,
        "id,source,type,subject,time,conclusion\n\
         1,ci,ci.run,api,2024-01-01T00:00:00Z,failure\n\
         2,ci,ci.run,api,2024-01-01T00:10:00Z,failure\n\
         3,ci,ci.run,api,2024-01-01T00:20:00Z,success\n\
         4,ci,deploy,api,2024-01-02T00:00:00Z,\n\
         not,a,line\n",
    )
    .unwrap();
    let report: Value = backtest_json(&[
        "--spec",
        new.to_str().unwrap(),
        "--events",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(report["source"]["events"], 4);
    assert_eq!(report["source"]["rejected"], 1);
    let alerts = alerts(&report["rules"][0]["alerts"]);
    // Fired at the second failure, resolved when the first ages out, an hour after it.
    assert_eq!(
        alerts,
        BTreeMap::from([(("api".to_string(), START_US + 600_000_000), START_US + W_US)])
    );
    assert_eq!(report["aggregates"][0]["windows"], 1);
    assert_eq!(report["aggregates"][0]["events"], 3);
}

/// Insight settings change what a backtest sees: the baseline's detectors find the spike,
/// the new spec's higher anomaly threshold does not, and the report says it is removed.
#[test]
fn a_higher_anomaly_threshold_removes_the_anomaly_in_a_backtest() {
    let tmp = tempfile::tempdir().unwrap();
    let aggregate = |insights: &str| {
        format!(
            "[[aggregate]]\nname = \"hourly\"\nwindow = {{ type = \"tumbling\", size = \"1h\" }}\n\
             group_by = [\"subject\"]\nmeasures = {{ n = \"count(*)\" }}\n{insights}\n"
        )
    };
    let current = tmp.path().join("current.toml");
    let new = tmp.path().join("new.toml");
    std::fs::write(&current, aggregate("")).unwrap();
    std::fs::write(
        &new,
        aggregate("[aggregate.insights]\nanomaly = { threshold = 50 }"),
    )
    .unwrap();
    // 20 hours of about 10 events an hour, 40 in hour 15, then one event hours later that
    // closes every window.
    let mut lines = String::new();
    let noise = [0, 1, -1, 2, -2, 1];
    for hour in 0..20i64 {
        let n = if hour == 15 {
            40
        } else {
            10 + noise[hour as usize % 6]
        };
        for i in 0..n {
            let t = START_US + hour * W_US + i * 60_000_000;
            lines.push_str(&format!(
                "{{\"specversion\":\"1.0\",\"id\":\"{hour}-{i}\",\"source\":\"app\",\"type\":\"request\",\"subject\":\"api\",\"time\":\"{}\"}}\n",
                rfc3339(t)
            ));
        }
    }
    lines.push_str(&format!(
        "{{\"specversion\":\"1.0\",\"id\":\"end\",\"source\":\"app\",\"type\":\"request\",\"subject\":\"api\",\"time\":\"{}\"}}\n",
        rfc3339(START_US + 30 * W_US)
    ));
    let file = tmp.path().join("requests.ndjson");
    std::fs::write(&file, lines).unwrap();
    let report: Value = backtest_json(&[
        "--spec",
        new.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
        "--events",
        file.to_str().unwrap(),
    ]);
    let anomaly = report["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["detector"] == "anomaly")
        .unwrap();
    assert_eq!(anomaly["count"], 0, "{anomaly:#}");
    assert_eq!(anomaly["baseline_count"], 1, "{anomaly:#}");
    let removed = anomaly["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1);
    assert!(
        removed[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("n of hourly for subject=api was 40 in the window 2024-01-01 15:00"),
        "{removed:#?}"
    );
    // The windows themselves are the same.
    assert_eq!(report["aggregates"][0]["baseline"]["differing"], 0);
}

/// The same backtest over a Kafka topic (tansu) written by `helios run ingest`: the alerts
/// a batch computation predicts, and the live topics, their offsets and the consumer
/// groups' committed offsets unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_topic_backtests_to_the_predicted_alerts_without_committing() {
    use crate::common::roles::{Role, service, wait_http};
    use crate::common::{api_key, free_addr};

    let kafka = service("HELIOS_TEST_KAFKA", "a Kafka-protocol broker (tansu)");
    let run = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let prefix = format!("backtest_{run}.");
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.toml");
    let new = dir.path().join("new.toml");
    std::fs::write(&current, spec(3)).unwrap();
    std::fs::write(&new, spec(2)).unwrap();
    let config = dir.path().join("helios-backend.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{kafka}\"\nrequest_timeout_ms = 20000\n\n\
             [topics]\nprefix = \"{prefix}\"\npartitions = 4\n"
        ),
    )
    .unwrap();
    let ingest_dir = dir.path().join("ingest");
    let key = api_key(&ingest_dir);
    let addr = free_addr();
    let mut ingest = Role::start(
        "ingest",
        dir.path(),
        &[
            "run",
            "ingest",
            "--spec",
            current.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            ingest_dir.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        &[],
    );
    let client = crate::common::http();
    wait_http(&client, &format!("http://{addr}/healthz"), &mut ingest).await;
    let (events, failures) = ci_runs();
    let resp = client
        .post(format!("http://{addr}/v1/events"))
        .bearer_auth(&key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events.clone()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());

    let topic = format!("{prefix}helios.events");
    let registry = format!("http://{addr}");
    let describe = || {
        String::from_utf8(helios_ok(&[
            "topics", "--kafka", &kafka, "describe", &topic,
        ]))
        .unwrap()
    };
    let before = describe();
    let report: Value = backtest_json(&[
        "--spec",
        new.to_str().unwrap(),
        "--baseline",
        current.to_str().unwrap(),
        "--kafka",
        &kafka,
        "--topic",
        &topic,
        "--registry",
        &registry,
        "--registry-key",
        &key,
        "--limit",
        "1000",
    ]);
    assert_eq!(
        report["source"]["events"],
        events.len() as u64,
        "{report:#}"
    );
    let rule = &report["rules"][0];
    let (with_two, with_three) = (predict(&failures, 2), predict(&failures, 3));
    assert_eq!(alerts(&rule["alerts"]), with_two);
    assert_eq!(rule["baseline"]["fired"], with_three.len());
    assert_eq!(
        alerts(&rule["removed"]).len(),
        with_three
            .keys()
            .filter(|k| !with_two.contains_key(*k))
            .count()
    );
    // The live topic is as it was, and no scratch topic was created next to it.
    assert_eq!(describe(), before);
    let listed = String::from_utf8(helios_ok(&["topics", "--kafka", &kafka, "list"])).unwrap();
    assert!(!listed.contains("backtest."), "{listed}");
    drop(ingest);
}

/// A file's events fed to the processors as they are read give the report that copying
/// them into a scratch log and replaying it (`--via-log`, the path a stored log takes)
/// gives: alerts, their difference from the baseline, windows, busiest windows, insights,
/// late events, dead letters and repeats, all but the timings.
#[test]
fn a_file_fed_directly_reports_what_the_scratch_log_replay_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = |count: u32, extra: &str| {
        format!(
            r#"
[watermark]
max_out_of_orderness = "5s"

[[aggregate]]
name = "per_minute"
window = {{ type = "tumbling", size = "1m" }}
group_by = ["subject"]
measures = {{ n = "count(*)", total = "sum(value)" }}

[[aggregate]]
name = "sessions"
where = "kind = 'ci.run'"
window = {{ type = "session", gap = "3m" }}
group_by = ["subject", "attrs['conclusion'] AS conclusion"]
measures = {{ n = "count(*)", mx = "max(value)" }}
{extra}
[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = {count}
within = "5m"
"#
        )
    };
    let new = tmp.path().join("new.toml");
    let current = tmp.path().join("current.toml");
    std::fs::write(
        &new,
        spec(
            3,
            "\n[[aggregate]]\nname = \"hourly\"\nwindow = { type = \"hopping\", size = \"1h\", slide = \"10m\" }\n\
             group_by = [\"subject\"]\nmeasures = { p90 = \"quantile(value, 0.9)\" }\n",
        ),
    )
    .unwrap();
    std::fs::write(&current, spec(4, "")).unwrap();

    // Ten subjects over about eleven hours, a few seconds out of order; some far behind
    // (late), some repeated (dropped), two dated in 2100 (dead letters), a burst of one
    // subject (an anomaly), then an event per subject that closes every window.
    let mut rng = StdRng::seed_from_u64(1515);
    let mut lines = vec!["id,source,type,subject,time,value,conclusion".to_string()];
    for i in 0..20_000i64 {
        if i % 97 == 50 {
            let again = lines[rng.random_range(lines.len() - 20..lines.len())].clone();
            if again.starts_with("id,") {
                continue;
            }
            lines.push(again);
            continue;
        }
        let mut t = START_US / 1000 + i * 2000 - rng.random_range(0..5000);
        if i % 151 == 75 {
            t -= 20 * 60_000;
        }
        if i == 7_000 || i == 13_000 {
            t = 4_102_444_800_000; // 2100-01-01
        }
        let subject = if (9_000..9_600).contains(&i) {
            0
        } else {
            rng.random_range(0..10)
        };
        let kind = if i % 3 == 0 { "ci.run" } else { "push" };
        let conclusion = if rng.random_bool(0.4) {
            "failure"
        } else {
            "success"
        };
        // Some lines quoted, some values missing.
        let value = if i % 13 == 0 {
            String::new()
        } else {
            rng.random_range(0..1000).to_string()
        };
        if i % 17 == 0 {
            lines.push(format!(
                "\"{i}\",ci,{kind},\"s{subject}\",{t},{value},\"{conclusion}\""
            ));
        } else {
            lines.push(format!("{i},ci,{kind},s{subject},{t},{value},{conclusion}"));
        }
    }
    for s in 0..10 {
        lines.push(format!(
            "end{s},ci,flush,s{s},{},,",
            START_US / 1000 + 48 * 3_600_000
        ));
    }
    let csv = tmp.path().join("events.csv");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();

    let backtest = |extra: &[&str], format: &str| -> Vec<u8> {
        let mut args = vec!["backtest", "--spec", new.to_str().unwrap()];
        args.extend(["--baseline", current.to_str().unwrap()]);
        args.extend(["--events", csv.to_str().unwrap()]);
        args.extend(["--partitions", "3", "--format", format, "--limit", "1000"]);
        args.extend_from_slice(extra);
        helios_ok(&args)
    };
    // Everything but how long it took and which path it took.
    fn answers(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for key in [
                    "seconds",
                    "events_per_second",
                    "cpu_seconds",
                    "events_per_cpu_second",
                    "copied",
                    "direct",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(answers);
            }
            Value::Array(items) => items.iter_mut().for_each(answers),
            _ => {}
        }
    }
    let report =
        |extra: &[&str]| -> Value { serde_json::from_slice(&backtest(extra, "json")).unwrap() };
    let mut direct = report(&[]);
    let mut logged = report(&["--via-log"]);
    assert_eq!(direct["source"]["direct"], true, "{direct:#}");
    assert_eq!(logged["source"]["direct"], false);
    assert_eq!(logged["source"]["copied"], true);
    answers(&mut direct);
    answers(&mut logged);
    assert_eq!(direct, logged);

    // And there was something to compare: every kind of answer is in it.
    let run = &direct["runs"]["new"];
    assert!(run["late_events"].as_u64().unwrap() > 0, "{run:#}");
    assert_eq!(run["dead_letters"], 2, "{run:#}");
    let rule = &direct["rules"][0];
    assert!(rule["fired"].as_u64().unwrap() > 0, "{rule:#}");
    assert!(!rule["added"].as_array().unwrap().is_empty(), "{rule:#}");
    let aggregates = direct["aggregates"].as_array().unwrap();
    assert_eq!(aggregates.len(), 3);
    assert!(
        aggregates
            .iter()
            .all(|a| a["windows"].as_u64().unwrap() > 0)
    );
    let anomalies = direct["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["detector"] == "anomaly")
        .unwrap();
    assert!(anomalies["count"].as_u64().unwrap() > 0, "{anomalies:#}");
    assert!(direct["source"]["events"].as_u64().unwrap() > 20_000);

    // The text report too, once its timings are left out.
    let text = |extra: &[&str]| -> Vec<String> {
        String::from_utf8(backtest(extra, "text"))
            .unwrap()
            .lines()
            .skip_while(|l| *l != "Rules")
            .map(str::to_string)
            .collect()
    };
    let direct_text = text(&[]);
    assert!(direct_text.len() > 10, "{direct_text:?}");
    assert_eq!(direct_text, text(&["--via-log"]));
}

/// `helios backtest <args> --format json`, which must succeed: its report.
fn backtest_json(args: &[&str]) -> Value {
    let args = [&["backtest"][..], args, &["--format", "json"]].concat();
    serde_json::from_slice(&helios_ok(&args)).expect("the JSON report")
}
