//! Done-when 1 of the scaled-out deployment: two `helios run pipeline`, one `helios run sink`
//! and one `helios run ingest` on a real Kafka-protocol broker (tansu, `HELIOS_TEST_KAFKA`;
//! and again over TLS with SASL SCRAM, `HELIOS_TEST_KAFKA_SASL`, the password from the
//! roles' environment) and ClickHouse (`HELIOS_TEST_CLICKHOUSE`). Events stream in over HTTP; one pipeline is
//! killed with SIGKILL mid-stream; the survivor takes over its partitions from their
//! checkpoints, and the tumbling-window results in ClickHouse equal the ones computed
//! independently from the events sent: nothing lost, nothing counted twice. The same holds
//! for the aggregates and the rule not grouped by subject (issue 15: by a branch
//! attribute, by nothing, by kind), which run through repartition topics.
//!
//! Every run uses its own topic prefix, consumer groups and database, so runs never see
//! each other's data. Waits poll for the behaviour with generous deadlines.

use crate::common;
use crate::common::rfc3339;
use crate::common::roles::{KafkaBroker, Role, WAIT, free_addr, service, wait_http};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const SUBJECTS: usize = 12;
/// Events per subject; one per second of event time, so 1-minute windows fill up.
const PER_SUBJECT: usize = 240;
/// 2026-01-01T00:00:00Z, µs.
const BASE_US: i64 = 1_767_225_600_000_000;
const WINDOW_US: i64 = 60_000_000;

/// Event time of the `i`th event of a subject: one per second, up to 2.7 s out of order
/// (the spec allows 5 s), the first and last few in order so the stream spans exactly
/// its four windows.
fn time_us(i: usize) -> i64 {
    let behind = if (3..PER_SUBJECT - 3).contains(&i) {
        ((i * 7) % 4) as i64 * 900_000
    } else {
        0
    };
    BASE_US + i as i64 * 1_000_000 - behind
}

/// The event `i` of subject `s`: one per second, values 0..7, pushes only (plus
/// `ci.run`s the aggregate must ignore), on one of three branches.
fn event(s: usize, i: usize) -> Value {
    let time_us = time_us(i);
    let kind = if i % 5 == 4 { "ci.run" } else { "git.push" };
    json!({
        "specversion": "1.0",
        "id": format!("e-{s}-{i}"),
        "source": "scale-out-test",
        "type": kind,
        "subject": format!("subject-{s}"),
        "time": rfc3339(time_us),
        "value": ((s + i) % 7) as f64,
        "branch": BRANCHES[(s + i) % 3],
    })
}

const BRANCHES: [&str; 3] = ["main", "dev", "release"];

/// What the aggregates and the rule not grouped by subject must hold, computed from the
/// events alone: `by_branch` (branch, window start) -> (count, sum), `everything` window
/// start -> count, and the alerts of `ci_by_kind` (kind, since, resolved at).
type Regrouped = (
    BTreeMap<(String, i64), (i64, f64)>,
    BTreeMap<i64, i64>,
    BTreeSet<(String, i64, Option<i64>)>,
);

fn expected_regrouped() -> Regrouped {
    let (mut by_branch, mut everything) = (BTreeMap::new(), BTreeMap::new());
    let mut ci: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in 0..SUBJECTS {
        for i in 0..PER_SUBJECT {
            let e = event(s, i);
            let t = time_us(i);
            let start = t - t.rem_euclid(WINDOW_US);
            *everything.entry(start).or_default() += 1;
            if e["type"] == "git.push" {
                let slot: &mut (i64, f64) = by_branch
                    .entry((e["branch"].as_str().unwrap().to_owned(), start))
                    .or_default();
                slot.0 += 1;
                slot.1 += e["value"].as_f64().unwrap();
            } else {
                // The event carries its time in whole seconds (`rfc3339`).
                let sent = t - t.rem_euclid(1_000_000);
                ci.entry("ci.run".to_owned()).or_default().push(sent);
            }
        }
    }
    let alerts = crate::any_key::threshold_alerts(&ci, 3, 2_000_000);
    (by_branch, everything, alerts)
}

/// Rows of a ClickHouse query, as JSON values (`None` while the tables are not there).
async fn rows(client: &reqwest::Client, clickhouse: &str, sql: String) -> Option<Vec<Vec<Value>>> {
    let r = client
        .post(clickhouse)
        .body(format!("{sql} FORMAT JSONCompact"))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["data"]
        .as_array()?
        .iter()
        .map(|row| row.as_array().cloned())
        .collect()
}

/// A ClickHouse number as JSON gives it (64-bit integers are strings).
fn int(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64())
}

/// The regrouped results as stored, like [`expected_regrouped`].
async fn stored_regrouped(
    client: &reqwest::Client,
    clickhouse: &str,
    database: &str,
) -> Option<Regrouped> {
    let mut by_branch = BTreeMap::new();
    let sql = format!(
        "SELECT branch, window_start, toInt64(n), total FROM `{database}`.agg_by_branch FINAL WHERE final = 1"
    );
    for row in rows(client, clickhouse, sql).await? {
        let key = (row[0].as_str()?.to_owned(), int(&row[1])?);
        by_branch.insert(key, (int(&row[2])?, row[3].as_f64()?));
    }
    let mut everything = BTreeMap::new();
    let sql = format!(
        "SELECT window_start, toInt64(n) FROM `{database}`.agg_everything FINAL WHERE final = 1"
    );
    for row in rows(client, clickhouse, sql).await? {
        everything.insert(int(&row[0])?, int(&row[1])?);
    }
    let mut alerts = BTreeSet::new();
    let sql = format!(
        "SELECT group_values[1], state, since, at FROM `{database}`.alerts FINAL WHERE rule = 'ci_by_kind'"
    );
    for row in rows(client, clickhouse, sql).await? {
        let resolved = (row[1].as_str()? == "resolved")
            .then(|| int(&row[3]))
            .flatten();
        alerts.insert((row[0].as_str()?.to_owned(), int(&row[2])?, resolved));
    }
    Some((by_branch, everything, alerts))
}

/// The broker's variables and `more`, as `Role::start` takes them.
fn env<'a>(
    broker: &'a [(&'static str, String)],
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    broker
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(more.iter().copied())
        .collect()
}

/// What the aggregate must hold, computed from the events alone:
/// (subject, window start) -> (count, sum of values).
fn expected() -> BTreeMap<(String, i64), (i64, f64)> {
    let mut out: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
    for s in 0..SUBJECTS {
        for i in 0..PER_SUBJECT {
            let e = event(s, i);
            if e["type"] != "git.push" {
                continue;
            }
            let t = time_us(i);
            let start = t - t.rem_euclid(WINDOW_US);
            let slot = out.entry((format!("subject-{s}"), start)).or_default();
            slot.0 += 1;
            slot.1 += e["value"].as_f64().unwrap();
        }
    }
    out
}

async fn send(client: &reqwest::Client, ingest: SocketAddr, key: &str, batch: Vec<Value>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = client
            .post(format!("http://{ingest}/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_vec(&batch).unwrap())
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 202 => {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["accepted"], batch.len(), "{body}");
                return;
            }
            // Backpressure or a broker hiccup: the batch was not acknowledged; send again
            // (ids are deterministic, so a repeat is dropped downstream).
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {}
            Ok(r) => panic!(
                "POST /v1/events answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => assert!(Instant::now() < deadline, "ingest unreachable: {e}"),
        }
        assert!(Instant::now() < deadline, "ingest kept refusing a batch");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `batch`, and every fifth one a second time although it was accepted, as a
/// producer that retries does: the log then holds repeats the processor must drop.
async fn send_retrying(
    client: &reqwest::Client,
    ingest: SocketAddr,
    key: &str,
    sent: &mut usize,
    batch: Vec<Value>,
) {
    *sent += 1;
    if sent.is_multiple_of(5) {
        send(client, ingest, key, batch.clone()).await;
    }
    send(client, ingest, key, batch).await;
}

/// The input partitions a pipeline process holds now, with the records it read from each
/// (from its /metrics: `helios_pipeline_events_in_total{partition="…"}`).
async fn owned(client: &reqwest::Client, metrics: SocketAddr) -> BTreeMap<u32, u64> {
    let Ok(r) = client.get(format!("http://{metrics}/metrics")).send().await else {
        return BTreeMap::new();
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("helios_pipeline_events_in_total{partition=\""))
        .filter_map(|rest| {
            let (p, value) = rest.split_once("\"}")?;
            Some((p.parse().ok()?, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// `agg_pushes` as the API would read it: one row per id (FINAL), final results only.
async fn stored(
    client: &reqwest::Client,
    clickhouse: &str,
    database: &str,
) -> Option<BTreeMap<(String, i64), (i64, f64)>> {
    let sql = format!(
        "SELECT subject, window_start, toInt64(n), total FROM `{database}`.agg_pushes FINAL \
         WHERE final = 1 FORMAT JSONCompact"
    );
    let r = client.post(clickhouse).body(sql).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    let mut out = BTreeMap::new();
    for row in body["data"].as_array()? {
        let key = (
            row[0].as_str()?.to_owned(),
            row[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or(row[1].as_i64())?,
        );
        let n = row[2]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or(row[2].as_i64())?;
        let total = row[3].as_f64()?;
        assert!(
            out.insert(key.clone(), (n, total)).is_none(),
            "FINAL returned {key:?} twice"
        );
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pipeline_process_is_replaced_by_the_survivor_without_loss_or_double_counting() {
    scale_out(KafkaBroker::Plaintext, REGROUPED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_tls_with_sasl_scram_and_the_password_from_the_environment() {
    // Subject-grouped only: each repartitioned operator adds a consumer per process, and
    // tansu 0.6 intermittently refuses a SCRAM handshake it advertises ("Unsupported SASL
    // mechanism: broker's supported mechanisms: SCRAM-SHA-512") when several connect at
    // once; what runs over the connection is the plaintext run's.
    scale_out(KafkaBroker::SaslSsl, "").await;
}

/// Aggregates and a rule not grouped by subject, added to the spec when the run checks
/// them (issue 15).
const REGROUPED: &str = r#"
[[aggregate]]
name = "by_branch"
where = "kind = 'git.push'"
window = { type = "tumbling", size = "1m" }
group_by = ["attrs['branch'] AS branch"]
measures = { n = "count(*)", total = "sum(value)" }

[[aggregate]]
name = "everything"
where = "kind <> 'tick'"
window = { type = "tumbling", size = "1m" }
measures = { n = "count(*)" }

[[rule]]
name = "ci_by_kind"
type = "threshold"
where = "kind = 'ci.run'"
per = ["kind"]
count = 3
within = "2s"
"#;

async fn scale_out(broker: KafkaBroker, regrouped: &str) {
    let kafka = broker.settings();
    let broker_env = broker.role_env();
    let clickhouse = service("HELIOS_TEST_CLICKHOUSE", "clickhouse-server");
    let run = format!(
        "{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let prefix = format!("scale_out_{run}.");
    let database = format!("helios_test_scale_out_{run}");
    let dir = tempfile::tempdir().unwrap();
    let ingest_dir = dir.path().join("ingest");
    // The checkpoint store both pipeline processes share (ADR-008: a shared directory).
    let checkpoints = dir.path().join("checkpoints");
    let spec = dir.path().join("helios.toml");
    std::fs::write(
        &spec,
        r#"
# Idle partitions never advance on wall clock here, so the results depend on the log alone.
[watermark]
max_out_of_orderness = "5s"
idle_timeout = "1h"

[[source]]
name = "events"
type = "http"

[[aggregate]]
name = "pushes"
where = "kind = 'git.push'"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)" }
"#
        .to_owned()
            + regrouped,
    )
    .unwrap();
    let config = dir.path().join("helios-backend.toml");
    std::fs::write(
        &config,
        format!(
            "{kafka}request_timeout_ms = 20000\n\n\
             [clickhouse]\nurl = \"{clickhouse}\"\ndatabase = \"{database}\"\n\n\
             [checkpoints]\ndir = \"{}\"\n\n[topics]\nprefix = \"{prefix}\"\npartitions = 4\n",
            checkpoints.display()
        ),
    )
    .unwrap();
    let key = common::api_key(&ingest_dir);
    let client = crate::common::http();
    let config_s = config.to_str().unwrap();
    let spec_s = spec.to_str().unwrap();

    // Ingest first: it creates the events topic and serves the registry.
    let ingest_addr = free_addr();
    let mut ingest = Role::start(
        "ingest",
        dir.path(),
        &[
            "run",
            "ingest",
            "--spec",
            spec_s,
            "--config",
            config_s,
            "--data-dir",
            ingest_dir.to_str().unwrap(),
            "--listen",
            &ingest_addr.to_string(),
        ],
        &env(&broker_env, &[]),
    );
    wait_http(
        &client,
        &format!("http://{ingest_addr}/healthz"),
        &mut ingest,
    )
    .await;
    let registry = format!("http://{ingest_addr}");
    // The other roles reach the registry behind the ingest's API keys.
    let role_env = env(
        &broker_env,
        &[
            ("HELIOS_REGISTRY_URL", registry.as_str()),
            ("HELIOS_REGISTRY_KEY", key.as_str()),
        ],
    );
    let pipeline_group = format!("{prefix}pipeline");
    let pipeline = |name: &'static str, metrics: SocketAddr| {
        let data = dir.path().join(name);
        Role::start(
            name,
            dir.path(),
            &[
                "run",
                "pipeline",
                "--spec",
                spec_s,
                "--config",
                config_s,
                "--data-dir",
                data.to_str().unwrap(),
                "--group",
                &pipeline_group,
                "--checkpoint-interval",
                "1s",
                "--metrics-listen",
                &metrics.to_string(),
            ],
            &role_env,
        )
    };
    let (metrics_a, metrics_b) = (free_addr(), free_addr());
    let mut a = pipeline("pipeline-a", metrics_a);
    let mut b = pipeline("pipeline-b", metrics_b);
    let mut sink = Role::start(
        "sink",
        dir.path(),
        &[
            "run",
            "sink",
            "--spec",
            spec_s,
            "--config",
            config_s,
            "--data-dir",
            dir.path().join("sink").to_str().unwrap(),
            "--group",
            &format!("{prefix}sink"),
        ],
        &role_env,
    );
    wait_http(&client, &format!("http://{metrics_a}/healthz"), &mut a).await;
    wait_http(&client, &format!("http://{metrics_b}/healthz"), &mut b).await;

    // Events go out in rounds of one second of event time per subject, in time order
    // per subject (so nothing is late), interleaved across subjects.
    let rounds: Vec<Vec<Value>> = (0..PER_SUBJECT)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(|is| {
            is.iter()
                .flat_map(|&i| (0..SUBJECTS).map(move |s| event(s, i)))
                .collect()
        })
        .collect();
    let kill_at = rounds.len() / 2;
    let mut rounds = rounds.into_iter();

    // First half, until both processes hold partitions and have read events from them.
    let mut sent = 0;
    for batch in rounds.by_ref().take(kill_at) {
        send_retrying(&client, ingest_addr, &key, &mut sent, batch).await;
    }
    let all: BTreeSet<u32> = (0..4).collect();
    let deadline = Instant::now() + WAIT;
    let (held_a, held_b) = loop {
        a.assert_running();
        b.assert_running();
        sink.assert_running();
        let (oa, ob) = (
            owned(&client, metrics_a).await,
            owned(&client, metrics_b).await,
        );
        let (ka, kb): (BTreeSet<u32>, BTreeSet<u32>) =
            (oa.keys().copied().collect(), ob.keys().copied().collect());
        let read_a: u64 = oa.values().sum();
        let read_b: u64 = ob.values().sum();
        if !ka.is_empty()
            && !kb.is_empty()
            && ka.is_disjoint(&kb)
            && &ka | &kb == all
            && read_a > 0
            && read_b > 0
        {
            break (oa, kb);
        }
        assert!(
            Instant::now() < deadline,
            "the two pipelines did not share the 4 partitions (a: {oa:?}, b: {ob:?});\n\
             a:\n{}\nb:\n{}",
            a.log_text(),
            b.log_text()
        );
        // Keep the stream going while the group settles.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let a checkpoint round pass so there is state to restore, then keep streaming a
    // little so pipeline-a also dies with work past its last checkpoint.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rest: Vec<Vec<Value>> = rounds.collect();
    let after_kill = rest.split_off(2);
    for batch in rest {
        send_retrying(&client, ingest_addr, &key, &mut sent, batch).await;
    }
    a.sigkill();

    // Keep streaming while the group notices the loss (session timeout) and rebalances.
    for batch in after_kill {
        send_retrying(&client, ingest_addr, &key, &mut sent, batch).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        b.assert_running();
        let ob = owned(&client, metrics_b).await;
        if ob.keys().copied().collect::<BTreeSet<_>>() == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline-b did not take over pipeline-a's partitions {:?} (holds {ob:?}):\n{}",
            held_a.keys().collect::<Vec<_>>(),
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The survivor restored each taken-over partition pipeline-a had read from (and
    // checkpointed: a second passed) from pipeline-a's checkpoint.
    let log_b = b.log_text();
    for p in held_a.iter().filter(|(_, read)| **read > 0).map(|(p, _)| p) {
        let needle = format!("{prefix}helios.events/{p}");
        assert!(
            log_b
                .lines()
                .any(|l| l.contains("Restored partition state") && l.contains(&needle)),
            "pipeline-b did not restore {needle} from a checkpoint:\n{log_b}"
        );
    }
    assert!(!held_b.is_empty());

    // A later event per subject closes every window on every partition.
    let closing: Vec<Value> = (0..SUBJECTS)
        .map(|s| {
            json!({
                "specversion": "1.0",
                "id": format!("close-{s}"),
                "source": "scale-out-test",
                "type": "tick",
                "subject": format!("subject-{s}"),
                "time": rfc3339(BASE_US + 86_400_000_000),
            })
        })
        .collect();
    send(&client, ingest_addr, &key, closing).await;

    let want = expected();
    let deadline = Instant::now() + WAIT;
    let got = loop {
        b.assert_running();
        sink.assert_running();
        let got = stored(&client, &clickhouse, &database).await;
        if got.as_ref() == Some(&want) {
            break got.unwrap();
        }
        if Instant::now() >= deadline {
            let got = got.unwrap_or_default();
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !got.contains_key(*k))
                .take(10)
                .collect();
            let wrong: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(*v))
                .take(10)
                .collect();
            panic!(
                "agg_pushes in {database} holds {} of {} windows; missing e.g. {missing:?}; \
                 differing e.g. {wrong:?} (expected values: {:?})\nsink:\n{}\npipeline-b:\n{}",
                got.len(),
                want.len(),
                wrong.iter().map(|(k, _)| want.get(*k)).collect::<Vec<_>>(),
                sink.log_text(),
                b.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(got.len(), SUBJECTS * PER_SUBJECT / 60);
    let counted: i64 = got.values().map(|v| v.0).sum();
    assert_eq!(
        counted as usize,
        SUBJECTS * PER_SUBJECT * 4 / 5,
        "every push counted once, although one batch in five was sent twice"
    );
    // The events table holds each (source, id) once, as the API reads it.
    let sql = format!(
        "SELECT toInt64(count()), toInt64(uniqExact(source, id)) FROM `{database}`.events FINAL \
         WHERE source = 'scale-out-test' FORMAT JSONCompact"
    );
    let rows: Value = client
        .post(&clickhouse)
        .body(sql)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all = (SUBJECTS * PER_SUBJECT + SUBJECTS).to_string();
    assert_eq!(rows["data"][0], json!([all, all]), "{rows}");

    // Grouped by a branch, by nothing, and a rule by kind: the same as computed.
    let want = expected_regrouped();
    if regrouped.is_empty() {
        drop_database(&client, &clickhouse, &database).await;
        return;
    }
    assert!(want.2.len() >= 30, "the rule fires per burst: {:?}", want.2);
    let deadline = Instant::now() + WAIT;
    loop {
        b.assert_running();
        let got = stored_regrouped(&client, &clickhouse, &database).await;
        if got.as_ref() == Some(&want) {
            break;
        }
        if Instant::now() >= deadline {
            let got = got.unwrap_or_default();
            panic!(
                "regrouped results differ from the computation:
by_branch: {} of {} windows,                  differing e.g. {:?}
everything: {:?}
want {:?}
alerts missing {:?}, extra {:?}
                 pipeline-b:
{}",
                got.0.len(),
                want.0.len(),
                got.0
                    .iter()
                    .filter(|(k, v)| want.0.get(*k) != Some(*v))
                    .take(5)
                    .collect::<Vec<_>>(),
                got.1,
                want.1,
                want.2.difference(&got.2).take(5).collect::<Vec<_>>(),
                got.2.difference(&want.2).take(5).collect::<Vec<_>>(),
                b.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop_database(&client, &clickhouse, &database).await;
}

async fn drop_database(client: &reqwest::Client, clickhouse: &str, database: &str) {
    let _ = client
        .post(clickhouse)
        .body(format!("DROP DATABASE IF EXISTS `{database}`"))
        .send()
        .await;
}
