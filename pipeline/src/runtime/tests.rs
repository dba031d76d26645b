use super::check_repartitionable;
use crate::spec::{Spec, parse};

/// Runs a future to completion on a fresh runtime (for the synchronous tests).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn spec(text: &str) -> Spec<toml::Value> {
    parse::<toml::Value>(text, "test.toml", |_| Ok(())).expect("valid spec")
}

/// The processor's own guard behind the spec checker: what would depend on the order of
/// repartitioned records is refused with the reason.
#[test]
fn only_order_independent_aggregates_are_repartitioned() {
    let aggregate = |keys: &str, window: &str| {
        format!(
            "[[aggregate]]\nname = \"a\"\nwindow = {window}\n\
             group_by = {keys}\nmeasures = {{ n = \"count(*)\" }}\n"
        )
    };
    let tumbling = r#"{ type = "tumbling", size = "1m" }"#;
    for keys in [r#"["subject"]"#, r#"["kind"]"#, "[]"] {
        let s = spec(&aggregate(keys, tumbling));
        assert!(check_repartitionable(&s.aggregates).is_ok(), "{keys}");
    }
    let mut s = spec(&aggregate(r#"["kind"]"#, tumbling));
    s.aggregates[0].window = crate::spec::Window::Session {
        gap: std::time::Duration::from_secs(60),
    };
    let e = check_repartitionable(&s.aggregates)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("aggregate `a` groups by `kind`") && e.contains("session windows"),
        "{e}"
    );
    s.aggregates[0].group_by.clear();
    s.aggregates[0].window = crate::spec::Window::Tumbling {
        size: std::time::Duration::from_secs(60),
    };
    s.aggregates[0].emit_every = Some(std::time::Duration::from_secs(5));
    let e = check_repartitionable(&s.aggregates)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nothing (one global group)") && e.contains("emit_every"),
        "{e}"
    );
}

pub(super) mod replay {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
    use helios_log::{ConsumerConfig, Log, Record, TopicSpec};
    use helios_schemas::{
        Alert, AlertState, DeadLetter, Event, EventCodec, Insight, RecordCodec, WindowResult,
    };
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::spec;
    use crate::checkpoint::CheckpointStore;
    use crate::runtime::{
        Codecs, DerivedCodecs, FUTURE_STAGE, LATE_STAGE, Processor, ProcessorConfig, repartition,
    };

    pub(crate) const SPEC: &str = r#"
[watermark]
max_out_of_orderness = "5s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)", first_v = "first(value)", last_v = "last(value)" }

[[aggregate]]
name = "hopping"
where = "kind = 'ci.run'"
window = { type = "hopping", size = "10m", slide = "1m" }
group_by = ["subject", "attrs['conclusion'] AS conclusion"]
measures = { users = "count_distinct(attrs['user'])", p95 = "quantile(value, 0.95)" }
allowed_lateness = "30s"

[[aggregate]]
name = "sessions"
window = { type = "session", gap = "2m" }
group_by = ["subject"]
measures = { n = "count(*)", mx = "max(value)" }

[[rule]]
name = "failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "2m"
severity = "warning"

[[rule]]
name = "quiet"
type = "absence"
where = "kind = 'push'"
per = ["subject"]
within = "40s"

[[rule]]
name = "fail_then_push"
type = "sequence"
first = "attrs['conclusion'] = 'failure'"
then = "kind = 'push'"
per = ["subject", "attrs['user'] AS user"]
within = "30s"
"#;

    /// A scripted stream: ordered with bounded disorder, a few events far behind (late),
    /// and a few undecodable records.
    fn script(log: &Log, codec: &EventCodec, n: usize) -> impl std::future::Future<Output = usize> {
        script_part(log, codec, n, 0..usize::MAX)
    }

    /// Appends the records `part` of the script (its events, then the flush events), and
    /// returns how many scripted events (not flush events) the whole script has.
    fn script_part(
        log: &Log,
        codec: &EventCodec,
        n: usize,
        part: std::ops::Range<usize>,
    ) -> impl std::future::Future<Output = usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut records = Vec::new();
        let base = 1_700_000_000_000_000i64;
        for i in 0..n {
            let mut time = base + i as i64 * 200_000 - rng.random_range(0..4_000_000);
            if i % 997 == 500 {
                time -= 600_000_000; // ten minutes behind: late for every window
            }
            let mut subject = format!("s{}", rng.random_range(0..13));
            if (3000..3300).contains(&i) {
                // A minute of s0 alone: an anomaly for s0, silence (absence) for the rest.
                subject = "s0".to_string();
            }
            let e = Event {
                id: format!("e{i}"),
                source: "test".into(),
                kind: if i % 3 == 0 {
                    "ci.run".into()
                } else {
                    "push".into()
                },
                subject: subject.clone(),
                time,
                received_at: time,
                attrs: [
                    ("user".to_string(), format!("u{}", rng.random_range(0..50))),
                    (
                        "conclusion".to_string(),
                        if i % 5 == 0 { "failure" } else { "success" }.to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
                value: Some(f64::from(rng.random_range(0..1000u32)) / 10.0),
                payload: None,
            };
            let value = if i % 1500 == 700 {
                Bytes::from_static(b"\x00\x00\x00\x00\x01garbage")
            } else {
                codec.encode(&e)
            };
            records.push(Record {
                timestamp_ms: Some(1_700_000_000_000 + i as i64),
                ..Record::keyed(subject, value)
            });
        }
        // One far-future event per subject moves every partition's watermark past all
        // scripted windows, so they all close; these stay open and are not counted.
        for s in 0..13 {
            let e = Event {
                id: format!("flush{s}"),
                source: "test".into(),
                kind: "flush".into(),
                subject: format!("s{s}"),
                time: base + 36_000_000_000,
                received_at: base + 36_000_000_000,
                ..Event::default()
            };
            records.push(Record::keyed(format!("s{s}"), codec.encode(&e)));
        }
        let producer = log.producer();
        let records = records[part.start.min(records.len())..part.end.min(records.len())].to_vec();
        async move {
            for chunk in records.chunks(500) {
                producer
                    .append("helios.events", chunk.to_vec())
                    .await
                    .unwrap();
            }
            n
        }
    }

    /// An embedded log in `dir` with an empty `helios.events` of `partitions`.
    pub(crate) async fn events_log(dir: &std::path::Path, partitions: u32) -> Log {
        let log = EmbeddedLog::open(dir.join("log"), EmbeddedConfig::default())
            .unwrap()
            .log();
        log.admin()
            .create_topic(&TopicSpec::new("helios.events", partitions))
            .await
            .unwrap();
        log
    }

    fn codecs() -> Codecs {
        Codecs {
            events: Arc::new(EventCodec::new(1)),
            results: RecordCodec::<WindowResult>::new(2),
            dead_letters: RecordCodec::<DeadLetter>::new(3),
        }
    }

    fn derived() -> DerivedCodecs {
        DerivedCodecs {
            alerts: RecordCodec::<Alert>::new(4),
            insights: RecordCodec::<Insight>::new(5),
        }
    }

    async fn run(log: &Log, ckpt: &std::path::Path, name: &str) -> crate::runtime::RunSummary {
        let p = processor(log, ckpt, name, SPEC).await;
        p.run_to_end().await.unwrap()
    }

    /// A processor of `text` named `name`: its group, and the prefix of its output topics.
    pub(crate) async fn processor(
        log: &Log,
        ckpt: &std::path::Path,
        name: &str,
        text: &str,
    ) -> Processor {
        let mut config = ProcessorConfig::new(name, spec(text).watermark);
        config.aggregates_topic = format!("{name}.aggregates");
        config.alerts_topic = format!("{name}.alerts");
        config.insights_topic = format!("{name}.insights");
        config.late_topic = format!("{name}.late");
        config.dead_letter_topic = format!("{name}.dlq");
        config.repartition_prefix = format!("{name}.repartition.");
        config.dedupe = spec(text).dedupe;
        config.max_batch = 333;
        let p = Processor::new(
            config,
            spec(text).aggregates,
            log.clone(),
            codecs(),
            CheckpointStore::local(ckpt, name).unwrap(),
        )
        .unwrap()
        .with_rules_and_insights(spec(text).rules, derived())
        .unwrap();
        p.ensure_topics().await.unwrap();
        p
    }

    /// Every record of `topic`, as bytes, per partition in offset order.
    pub(crate) async fn read_all(
        log: &Log,
        topic: &str,
    ) -> BTreeMap<u32, Vec<(Option<Bytes>, Bytes)>> {
        let mut c = log
            .consumer(&[topic], ConsumerConfig::new(format!("read-{topic}")))
            .await
            .unwrap();
        let mut out: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        loop {
            let batch = c.poll(10_000, Duration::from_millis(200)).await.unwrap();
            if batch.is_empty() {
                return out;
            }
            for r in batch {
                out.entry(r.partition).or_default().push((r.key, r.value));
            }
        }
    }

    /// A `push` event of source `test`.
    fn push_event(id: String, subject: String, time: i64, received_at: i64) -> Event {
        Event {
            id,
            source: "test".into(),
            kind: "push".into(),
            subject,
            time,
            received_at,
            ..Event::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replaying_the_same_log_twice_writes_byte_identical_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 4).await;
        let n = script(&log, &EventCodec::new(1), 6_000).await;

        let ma = run(&log, &tmp.path().join("ckpt-a"), "a").await.metrics;
        let mb = run(&log, &tmp.path().join("ckpt-b"), "b").await.metrics;
        assert_eq!(
            (ma.alerts_out, ma.insights_out),
            (mb.alerts_out, mb.insights_out)
        );

        for out in ["aggregates", "alerts", "insights", "late", "dlq"] {
            let a = read_all(&log, &format!("a.{out}")).await;
            let b = read_all(&log, &format!("b.{out}")).await;
            assert!(!a.is_empty(), "run a wrote no {out}");
            assert_eq!(a, b, "{out} differ between two runs over the same log");
        }

        // Nothing lost: every decodable event counts in a final per_minute window or is
        // reported late for it; every undecodable one is a dead letter.
        let results = RecordCodec::<WindowResult>::new(2);
        let letters = RecordCodec::<DeadLetter>::new(3);
        let mut counted = 0i64;
        for (_, v) in read_all(&log, "a.aggregates").await.into_values().flatten() {
            let r = results.decode(&v).unwrap();
            if r.aggregate == "per_minute" && r.is_final {
                counted += r.count;
            }
        }
        let mut late = 0i64;
        let mut rule_late = 0;
        for (_, v) in read_all(&log, "a.late").await.into_values().flatten() {
            let d = letters.decode(&v).unwrap();
            assert_eq!(d.stage, LATE_STAGE);
            if d.reason.starts_with("aggregate `per_minute`") {
                late += 1;
                assert!(EventCodec::new(1).decode(&d.original).is_ok());
            }
            if d.reason.starts_with("rule `") {
                rule_late += 1;
                assert!(d.id.starts_with("pipeline/late/rule/"), "{}", d.id);
            }
        }
        assert!(
            rule_late > 0,
            "late events matching rules go to the late topic"
        );

        // Every rule fired, and each alert id has one firing and at most one resolved
        // record, keyed by its id.
        let alerts = RecordCodec::<Alert>::new(4);
        let mut by_id: BTreeMap<String, Vec<AlertState>> = BTreeMap::new();
        let mut rules = std::collections::BTreeSet::new();
        let written = read_all(&log, "a.alerts").await;
        for (k, v) in written.values().flatten() {
            let a = alerts.decode(v).unwrap();
            assert_eq!(k.as_deref(), Some(a.id.as_bytes()));
            rules.insert(a.rule.clone());
            by_id.entry(a.id).or_default().push(a.state);
        }
        assert_eq!(
            rules.into_iter().collect::<Vec<_>>(),
            ["fail_then_push", "failing", "quiet"]
        );
        for (id, states) in &by_id {
            assert!(
                states == &[AlertState::Firing]
                    || states == &[AlertState::Firing, AlertState::Resolved],
                "{id}: {states:?}"
            );
        }
        assert_eq!(
            ma.alerts_out,
            written.values().map(Vec::len).sum::<usize>() as u64
        );

        // The minute of s0 alone is an anomaly of per_minute for s0.
        let insights = RecordCodec::<Insight>::new(5);
        let found: Vec<Insight> = read_all(&log, "a.insights")
            .await
            .into_values()
            .flatten()
            .map(|(_, v)| insights.decode(&v).unwrap())
            .collect();
        assert_eq!(ma.insights_out, found.len() as u64);
        assert!(
            found.iter().any(|i| i.aggregate == "per_minute"
                && i.group.get("subject").map(String::as_str) == Some("s0")
                && i.measure == "n"),
            "{found:#?}"
        );
        let dead = read_all(&log, "a.dlq")
            .await
            .into_values()
            .flatten()
            .count() as i64;
        assert!(late > 0 && dead > 0, "the script has late and bad records");
        assert_eq!(
            counted + late + dead,
            n as i64,
            "counted {counted} + late {late} + dead {dead} of {n}"
        );
    }

    /// Defence in depth behind the sources: an event on the topic dated far past its own
    /// `received_at` (an old producer, a hand-written record) is a dead letter with the
    /// reason and moves no watermark, so the events after it are not late and every
    /// window closes with all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_dated_far_ahead_of_its_receipt_moves_no_watermark() {
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 2).await;
        let codec = EventCodec::new(1);
        let base = 1_700_000_000_000_000i64;
        let event = push_event;
        let mut records = Vec::new();
        for i in 0..300i64 {
            let subject = format!("s{}", i % 3);
            let time = base + i * 1_000_000;
            if i == 100 {
                // 9999-01-01, received at the time of its neighbours.
                let bomb = event("bomb".into(), "s0".into(), 253_370_764_800_000_000, time);
                records.push(Record::keyed("s0", codec.encode(&bomb)));
            }
            let e = event(format!("e{i}"), subject.clone(), time, time);
            records.push(Record::keyed(subject, codec.encode(&e)));
        }
        for s in 0..3 {
            let time = base + 3_600_000_000;
            let flush = event(format!("flush{s}"), format!("s{s}"), time, time);
            records.push(Record::keyed(format!("s{s}"), codec.encode(&flush)));
        }
        log.producer()
            .append("helios.events", records)
            .await
            .unwrap();
        run(&log, &tmp.path().join("ckpt-f"), "f").await;

        let letters = RecordCodec::<DeadLetter>::new(3);
        let dead: Vec<DeadLetter> = read_all(&log, "f.dlq")
            .await
            .into_values()
            .flatten()
            .map(|(_, v)| letters.decode(&v).unwrap())
            .collect();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].stage, FUTURE_STAGE);
        assert!(
            dead[0].id.starts_with("pipeline/future/helios.events/"),
            "{}",
            dead[0].id
        );
        assert!(
            dead[0]
                .reason
                .starts_with("event time 9999-01-01T00:00:00Z is ")
                && dead[0].reason.contains("the limit is 15m (max_future)"),
            "{}",
            dead[0].reason
        );
        assert_eq!(
            EventCodec::new(1).decode(&dead[0].original).unwrap().id,
            "bomb"
        );
        let late = read_all(&log, "f.late").await;
        assert!(late.is_empty(), "nothing is late: {late:?}");
        let results = RecordCodec::<WindowResult>::new(2);
        let counted: i64 = read_all(&log, "f.aggregates")
            .await
            .into_values()
            .flatten()
            .map(|(_, v)| results.decode(&v).unwrap())
            .filter(|r| r.aggregate == "per_minute" && r.is_final)
            .map(|r| r.count)
            .sum();
        assert_eq!(counted, 300, "every ordinary event is in a closed window");
    }

    const QUIET: &str = r#"
[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1s"

[[aggregate]]
name = "per_2s"
window = { type = "tumbling", size = "2s" }
group_by = ["subject"]
measures = { n = "count(*)" }

[[rule]]
name = "failing"
type = "threshold"
where = "attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "1m"

[[rule]]
name = "gone"
type = "absence"
where = "kind = 'beat'"
per = ["subject"]
within = "2s"

# Not grouped by subject: their watermark is the smallest of both partitions', and the
# second partition never has an event, only marks.
[[aggregate]]
name = "all_2s"
window = { type = "tumbling", size = "2s" }
measures = { n = "count(*)" }

[[rule]]
name = "failing_anywhere"
type = "threshold"
where = "attrs['conclusion'] = 'failure'"
count = 3
within = "1m"
"#;

    /// Issue 17: three failures and a heartbeat, then silence. The live processor writes
    /// watermark marks into the quiet partition, so the threshold and absence rules fire
    /// and the window closes with no further event; a replay of the same log (marks
    /// included) by `run_to_end`, which reads no clock, writes byte-identical outputs.
    /// The same holds for the global aggregate and rule, which run through repartition
    /// topics (issue 15), although one partition of the events topic is empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_partition_moves_by_marks_and_a_replay_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 2).await;
        #[allow(clippy::disallowed_methods)] // the test plays the producer, on the clock
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let codec = EventCodec::new(1);
        let event = |id: &str, kind: &str, conclusion: Option<&str>| Event {
            id: id.into(),
            source: "test".into(),
            kind: kind.into(),
            subject: "quiet".into(),
            time: now,
            received_at: now,
            attrs: conclusion
                .map(|c| ("conclusion".to_string(), c.to_string()))
                .into_iter()
                .collect(),
            ..Event::default()
        };
        let records = [
            event("f1", "ci.run", Some("failure")),
            event("f2", "ci.run", Some("failure")),
            event("f3", "ci.run", Some("failure")),
            event("b1", "beat", None),
        ]
        .iter()
        .map(|e| Record::keyed("quiet", codec.encode(e)))
        .collect();
        log.producer()
            .append("helios.events", records)
            .await
            .unwrap();

        let live = processor(&log, &tmp.path().join("ckpt-live"), "live", QUIET).await;
        let metrics = live.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(live.run(async {
            let _ = stopped.await;
        }));
        // Behaviour, not timing: wait (generously) for both alerts and the final window.
        let alerts = RecordCodec::<Alert>::new(4);
        let results = RecordCodec::<WindowResult>::new(2);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let fired: Vec<String> = sorted(&log, "live.alerts")
                .await
                .iter()
                .map(|(_, v)| alerts.decode(v).unwrap().rule)
                .collect();
            let finals = sorted(&log, "live.aggregates")
                .await
                .iter()
                .filter(|(_, v)| results.decode(v).unwrap().is_final)
                .count();
            if fired.contains(&"failing".to_string())
                && fired.contains(&"gone".to_string())
                && fired.contains(&"failing_anywhere".to_string())
                && finals == 2
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no event follows, yet the quiet partition must move: alerts {fired:?}, final windows {finals}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(metrics.snapshot().watermark_marks > 0);

        // The marks are in the log, next to the events they follow.
        let mut c = log
            .consumer(&["helios.events"], ConsumerConfig::new("read-marks"))
            .await
            .unwrap();
        let mut marks = 0;
        loop {
            let batch = c.poll(1000, Duration::from_millis(200)).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for r in batch {
                if let Some(m) = helios_schemas::watermark_mark::read(&r.headers) {
                    let m = m.unwrap();
                    assert!(m > now, "a mark is the wall clock minus 1 s: {m} vs {now}");
                    marks += 1;
                }
            }
        }
        assert!(marks > 0, "no watermark mark in helios.events");

        let replay = processor(&log, &tmp.path().join("ckpt-replay"), "replay", QUIET).await;
        replay.run_to_end().await.unwrap();
        // As sets: live, the stages wrote side by side; the replay ran them in turn.
        for out in ["aggregates", "alerts", "insights", "late", "dlq"] {
            let live = sorted(&log, &format!("live.{out}")).await;
            let replay = sorted(&log, &format!("replay.{out}")).await;
            assert_eq!(live, replay, "{out}: the replay differs from the live run");
        }
    }

    /// Issue 13: a producer that retries. One event in five is sent again, some much later
    /// and some with a new time (a redelivery stamped when it was received), across a
    /// restart from the checkpoint; every final window counts each `(source, id)` once,
    /// and the repeats are counted by source.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeats_count_once_across_a_restart_from_the_checkpoint() {
        const DEDUPE: &str = r#"
[watermark]
max_out_of_orderness = "5s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)" }
"#;
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 3).await;
        let codec = EventCodec::new(1);
        let base = 1_700_000_000_000_000i64;
        let event = |i: usize, time: i64| Event {
            id: format!("e{i}"),
            source: if i.is_multiple_of(2) { "ci" } else { "github" }.into(),
            kind: "push".into(),
            subject: format!("s{}", i % 5),
            time,
            received_at: time,
            ..Event::default()
        };
        let time = |i: usize| base + i as i64 * 100_000;
        let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
        let mut first = Vec::new();
        let mut second = Vec::new();
        let mut repeats = 0u64;
        for i in 0..4000 {
            let e = event(i, time(i));
            *expected
                .entry((
                    e.subject.clone(),
                    e.time.div_euclid(60_000_000) * 60_000_000,
                ))
                .or_default() += 1;
            let part = if i < 2000 { &mut first } else { &mut second };
            part.push(Record::keyed(e.subject.clone(), codec.encode(&e)));
            if i % 5 == 0 {
                // The same event again: right away, 40 s later (after a restart for the
                // early ones), or stamped with its receive time 3 s later.
                let again = match i % 3 {
                    0 => e.clone(),
                    1 => event(i, e.time + 3_000_000),
                    _ => e.clone(),
                };
                let later = if i % 3 == 2 && i < 2000 {
                    &mut second
                } else {
                    &mut *part
                };
                later.push(Record::keyed(again.subject.clone(), codec.encode(&again)));
                repeats += 1;
            }
        }
        // One far-later event per subject closes every window.
        for s in 0..5 {
            let e = Event {
                id: format!("flush{s}"),
                source: "flush".into(),
                subject: format!("s{s}"),
                time: base + 3_600_000_000,
                received_at: base + 3_600_000_000,
                ..Event::default()
            };
            second.push(Record::keyed(e.subject.clone(), codec.encode(&e)));
        }
        let ckpt = tmp.path().join("ckpt");
        log.producer().append("helios.events", first).await.unwrap();
        let p1 = processor(&log, &ckpt, "d", DEDUPE).await;
        let m1 = p1.metrics();
        p1.run_to_end().await.unwrap();
        log.producer()
            .append("helios.events", second)
            .await
            .unwrap();
        // A new process: the remembered identities come back from the checkpoint.
        let p = processor(&log, &ckpt, "d", DEDUPE).await;
        let metrics = p.metrics();
        p.run_to_end().await.unwrap();

        let results = RecordCodec::<WindowResult>::new(2);
        let mut got: BTreeMap<(String, i64), i64> = BTreeMap::new();
        for (_, v) in read_all(&log, "d.aggregates").await.into_values().flatten() {
            let r = results.decode(&v).unwrap();
            if r.is_final {
                got.insert((r.group["subject"].clone(), r.window_start), r.count);
            }
        }
        assert_eq!(got, expected, "every window counts each event once");
        let dropped: u64 = [m1, metrics.clone()]
            .iter()
            .flat_map(|m| m.duplicates_by_source().into_values())
            .sum();
        assert_eq!(dropped, repeats, "{:?}", metrics.duplicates_by_source());
        assert!(metrics.snapshot().dedupe_ids > 0);
    }

    /// A watermark mark that no processor wrote: one dated in the year 9999 and one whose
    /// header is not a number; and records on a repartition topic that no processor wrote. Each is a dead letter with the reason and moves nothing, so
    /// the events after them are not late and their windows close with all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forged_watermark_mark_is_a_dead_letter_and_moves_nothing() {
        const TEXT: &str = r#"
[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)" }

[[aggregate]]
name = "everything"
window = { type = "tumbling", size = "1m" }
measures = { n = "count(*)" }
"#;
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 1).await;
        let codec = EventCodec::new(1);
        let base = 1_700_000_000_000_000i64;
        let event = |i: i64| {
            let e = Event {
                id: format!("e{i}"),
                source: "test".into(),
                subject: "s".into(),
                time: base + i * 1_000_000,
                received_at: base + i * 1_000_000,
                ..Event::default()
            };
            Record::keyed("s", codec.encode(&e))
        };
        let mark = |value: &'static [u8]| Record {
            headers: vec![(
                helios_schemas::watermark_mark::HEADER.to_string(),
                Bytes::from_static(value),
            )],
            partition: Some(0),
            ..Record::default()
        };
        let mut records = vec![event(0)];
        records.push(mark(b"253370764800000000")); // 9999-01-01
        records.push(mark(b"soon"));
        records.extend((1..120).map(event));
        records.push(event(3600)); // closes every window
        log.producer()
            .append("helios.events", records)
            .await
            .unwrap();
        let p = processor(&log, &tmp.path().join("ckpt"), "m", TEXT).await;
        // The repartition topic of `everything` gets records no processor wrote: no
        // `helios-from` header, a bad one, a mark dated 9999 from the one events
        // partition, and an undecodable event claiming the largest offset of a partition
        // that does not exist. Each is a dead letter; none moves or counts anything.
        let from = |v: &'static str| {
            (
                repartition::FROM.to_string(),
                Bytes::from_static(v.as_bytes()),
            )
        };
        let forged = vec![
            Record::keyed("k", "no header"),
            Record {
                headers: vec![from("x/y/z")],
                ..Record::keyed("k", "bad header")
            },
            Record {
                headers: vec![
                    (
                        helios_schemas::watermark_mark::HEADER.to_string(),
                        Bytes::from_static(b"253370764800000000"),
                    ),
                    from("0"),
                ],
                partition: Some(0),
                ..Record::default()
            },
            Record {
                headers: vec![from("7/18446744073709551615/-")],
                ..Record::keyed("k", "garbage")
            },
        ];
        log.producer()
            .append("m.repartition.everything", forged)
            .await
            .unwrap();
        p.run_to_end().await.unwrap();

        let letters = RecordCodec::<DeadLetter>::new(3);
        let (mut dead, mut forged): (Vec<_>, Vec<_>) = read_all(&log, "m.dlq")
            .await
            .into_values()
            .flatten()
            .map(|(_, v)| letters.decode(&v).unwrap())
            .partition(|d| d.topic.as_deref() == Some("helios.events"));
        let mut dead: Vec<(String, String)> = dead.drain(..).map(|d| (d.stage, d.reason)).collect();
        dead.sort();
        forged.sort_by_key(|d| d.offset);
        let forged: Vec<(&str, &str)> = forged
            .iter()
            .map(|d| (d.stage.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(forged.len(), 4, "{forged:?}");
        assert!(
            forged[0].1.contains("without its helios-from header"),
            "{forged:?}"
        );
        assert!(forged[1].1.contains("\"x/y/z\" is not"), "{forged:?}");
        assert_eq!(forged[2].0, FUTURE_STAGE);
        assert!(
            forged[2]
                .1
                .starts_with("watermark mark: event time 9999-01-01"),
            "{forged:?}"
        );
        assert!(forged[3].1.starts_with("undecodable event"), "{forged:?}");
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].0, "pipeline/decode");
        assert!(
            dead[0].1.contains("helios-watermark") && dead[0].1.contains("soon"),
            "{dead:?}"
        );
        assert_eq!(dead[1].0, FUTURE_STAGE);
        assert!(
            dead[1]
                .1
                .starts_with("watermark mark: event time 9999-01-01"),
            "{dead:?}"
        );
        assert!(read_all(&log, "m.late").await.is_empty(), "nothing is late");
        let results = RecordCodec::<WindowResult>::new(2);
        for name in ["per_minute", "everything"] {
            let counted: i64 = read_all(&log, "m.aggregates")
                .await
                .into_values()
                .flatten()
                .map(|(_, v)| results.decode(&v).unwrap())
                .filter(|r| r.is_final && r.aggregate == name)
                .map(|r| r.count)
                .sum();
            assert_eq!(
                counted, 120,
                "{name}: every event before the closing one is counted"
            );
        }
    }

    /// Every record of `topic` as (key, value), sorted: what was written, whatever the
    /// order across runs.
    async fn sorted(log: &Log, topic: &str) -> Vec<(Option<Bytes>, Bytes)> {
        let mut all: Vec<_> = read_all(log, topic).await.into_values().flatten().collect();
        all.sort();
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rule_and_insight_state_survive_a_restart_from_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 4).await;
        let codec = EventCodec::new(1);
        // The first half of the log, a run to its end (checkpointed), the second half,
        // and a second run that resumes from the checkpoint.
        script_part(&log, &codec, 6_000, 0..3_100).await;
        let first = run(&log, &tmp.path().join("ckpt-r"), "r").await.metrics;
        assert!(first.alerts_out > 0, "the first half fires alerts");
        script_part(&log, &codec, 6_000, 3_100..usize::MAX).await;
        let second = run(&log, &tmp.path().join("ckpt-r"), "r").await.metrics;
        assert!(second.restored_partitions > 0, "{second:?}");
        // One uninterrupted run over the same events.
        let whole = tempfile::tempdir().unwrap();
        let log2 = events_log(whole.path(), 4).await;
        script_part(&log2, &codec, 6_000, 0..3_100).await;
        script_part(&log2, &codec, 6_000, 3_100..usize::MAX).await;
        run(&log2, &whole.path().join("ckpt-w"), "r").await;
        for out in ["alerts", "insights", "aggregates", "late"] {
            let resumed = sorted(&log, &format!("r.{out}")).await;
            let uninterrupted = sorted(&log2, &format!("r.{out}")).await;
            assert!(!resumed.is_empty(), "no {out}");
            assert_eq!(resumed, uninterrupted, "{out} differ after a restart");
        }
    }

    const REKEYED: &str = r#"
[watermark]
max_out_of_orderness = "5s"
idle_timeout = "1h"

[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)", total = "sum(value)" }

[[aggregate]]
name = "everything"
window = { type = "tumbling", size = "1m" }
measures = { n = "count(*)", total = "sum(value)", first_v = "first(value)", last_v = "last(value)" }

[[aggregate]]
name = "by_kind"
where = "kind = 'ci.run'"
window = { type = "hopping", size = "10m", slide = "1m" }
group_by = ["attrs['conclusion'] AS conclusion"]
measures = { users = "count_distinct(attrs['user'])", n = "count(*)" }
allowed_lateness = "30s"

[[rule]]
name = "failing_kind"
type = "threshold"
where = "attrs['conclusion'] = 'failure'"
per = ["kind"]
count = 3
within = "2m"
"#;

    /// The final results of `topic`'s aggregate `name`, by result id (a repeat of a
    /// result must be the same record).
    async fn finals(log: &Log, topic: &str, name: &str) -> BTreeMap<String, WindowResult> {
        let results = RecordCodec::<WindowResult>::new(2);
        let mut out = BTreeMap::new();
        for (_, v) in read_all(log, topic).await.into_values().flatten() {
            let r = results.decode(&v).unwrap();
            if r.aggregate == name && r.is_final {
                if let Some(before) = out.get(&r.id) {
                    assert_eq!(before, &r, "a result written twice differs");
                }
                out.insert(r.id.clone(), r);
            }
        }
        out
    }

    /// Issue 15: aggregates and rules not grouped by subject run through repartition
    /// topics. A global aggregate counts exactly what the per-subject one counts, summed
    /// (the same events, late by the same rule); two runs write the same bytes; and a
    /// crash of the events stage after it forwarded a batch but before its checkpoint
    /// (simulated by deleting that checkpoint) forwards everything again, which the
    /// repartition stages recognise and drop: the same results, nothing counted twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_by_any_key_count_every_event_once_through_repartition_topics() {
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 4).await;
        script(&log, &EventCodec::new(1), 6_000).await;
        for name in ["a", "b"] {
            let ckpt = tmp.path().join(format!("ckpt-{name}"));
            let p = processor(&log, &ckpt, name, REKEYED).await;
            assert_eq!(
                p.repartition_topics(),
                [
                    format!("{name}.repartition.everything"),
                    format!("{name}.repartition.by_kind"),
                    format!("{name}.repartition.failing_kind"),
                ]
            );
            let m = p.run_to_end().await.unwrap().metrics;
            assert!(m.repartitioned_out > 0 && m.repartitioned_in == m.repartitioned_out);
            assert_eq!(m.repartition_repeats, 0);
        }
        for out in ["aggregates", "alerts", "late", "dlq"] {
            let a = read_all(&log, &format!("a.{out}")).await;
            let b = read_all(&log, &format!("b.{out}")).await;
            assert_eq!(a, b, "{out} differ between two runs over the same log");
        }

        // The global count per minute is the per-subject counts summed, window by window.
        let per_subject = finals(&log, "a.aggregates", "per_minute").await;
        let global = finals(&log, "a.aggregates", "everything").await;
        let mut summed: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
        for r in per_subject.values() {
            let s = summed.entry(r.window_start).or_default();
            s.0 += r.count;
            s.1 += r.measures["total"];
        }
        let global_by_start: BTreeMap<i64, (i64, f64)> = global
            .values()
            .map(|r| (r.window_start, (r.count, r.measures["total"])))
            .collect();
        assert!(global_by_start.len() > 15, "{}", global_by_start.len());
        assert_eq!(
            global_by_start.keys().collect::<Vec<_>>(),
            summed.keys().collect::<Vec<_>>()
        );
        for (start, (n, total)) in &global_by_start {
            let (want_n, want_total) = summed[start];
            assert_eq!(*n, want_n, "window {start}");
            assert!((total - want_total).abs() < 1e-6 * want_total.abs().max(1.0));
        }
        // Late for the global window exactly when late for the subject's: the same events,
        // named by their place in the events topic.
        let letters = RecordCodec::<DeadLetter>::new(3);
        // Operator name -> (partition, offset) of each late event.
        type Positions = Vec<(Option<i32>, Option<i64>)>;
        let mut late: BTreeMap<String, Positions> = BTreeMap::new();
        for (_, v) in read_all(&log, "a.late").await.into_values().flatten() {
            let d = letters.decode(&v).unwrap();
            let op = d.reason.split('`').nth(1).unwrap_or_default().to_string();
            assert_eq!(d.topic.as_deref(), Some("helios.events"), "{}", d.id);
            late.entry(op).or_default().push((d.partition, d.offset));
        }
        for v in late.values_mut() {
            v.sort();
        }
        assert!(!late["per_minute"].is_empty());
        assert_eq!(late["per_minute"], late["everything"]);
        let fired = RecordCodec::<Alert>::new(4);
        let rules: std::collections::BTreeSet<String> = read_all(&log, "a.alerts")
            .await
            .values()
            .flatten()
            .map(|(_, v)| fired.decode(v).unwrap().rule)
            .collect();
        assert!(rules.contains("failing_kind"), "{rules:?}");
        let by_kind = finals(&log, "a.aggregates", "by_kind").await;
        assert!(by_kind.values().any(|r| r.group["conclusion"] == "failure"));

        // The crash: the events stage's checkpoints are lost, so it reads and forwards
        // everything again; the repartition stages keep theirs.
        let ckpt = tmp.path().join("ckpt-a");
        let mut removed = 0;
        for entry in std::fs::read_dir(ckpt.join("checkpoints/a")).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("helios.events-")
            {
                std::fs::remove_dir_all(path).unwrap();
                removed += 1;
            }
        }
        assert_eq!(removed, 4, "one checkpoint per events partition");
        let before = read_all(&log, "a.aggregates").await;
        let p = processor(&log, &ckpt, "a", REKEYED).await;
        let m = p.run_to_end().await.unwrap().metrics;
        assert!(m.repartitioned_out > 0);
        assert_eq!(m.repartition_repeats, m.repartitioned_out, "{m:?}");
        assert_eq!(
            m.repartitioned_in, 0,
            "nothing new reached the repartition stages"
        );
        assert_eq!(finals(&log, "a.aggregates", "everything").await, global);
        assert_eq!(finals(&log, "a.aggregates", "by_kind").await, by_kind);
        // Only the events stage wrote results again (the same ones); the repartition
        // stages wrote nothing new.
        let results = RecordCodec::<WindowResult>::new(2);
        let after = read_all(&log, "a.aggregates").await;
        let again: Vec<String> = after
            .iter()
            .flat_map(|(k, v)| v[before.get(k).map_or(0, Vec::len)..].iter())
            .map(|(_, v)| results.decode(v).unwrap().aggregate)
            .collect();
        assert!(!again.is_empty());
        assert!(
            again.iter().all(|a| a == "per_minute"),
            "only the events stage wrote again"
        );
    }

    const BOUNDED: &str = r#"
[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "per_subject"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)" }
max_open_windows = 3
max_key_bytes = 40

[[rule]]
name = "busy"
type = "threshold"
where = "true"
per = ["subject"]
count = 1000
within = "1h"
max_keys = 2
"#;

    /// No stream of new keys grows an operator's state without bound: at
    /// `max_open_windows` an aggregate opens no more windows, at `max_keys` a rule takes
    /// no more keys; what they do not apply is a dead letter naming the setting, and the
    /// keys they hold keep counting. The same log gives the same refusals again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operators_at_their_bound_refuse_new_keys_as_dead_letters() {
        use crate::runtime::LIMIT_STAGE;
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 1).await;
        let codec = EventCodec::new(1);
        // A minute boundary (2023-11-14T22:14:00Z).
        let base = 1_700_000_040_000_000i64;
        let event = |id, subject, time| push_event(id, subject, time, time);
        // Ten events 2 s apart over five subjects, then one an hour later that closes the
        // first minute's windows.
        let mut records: Vec<Record> = (0..10i64)
            .map(|i| {
                let s = format!("s{}", i % 5);
                Record::keyed(
                    s.clone(),
                    codec.encode(&event(format!("e{i}"), s, base + i * 2_000_000)),
                )
            })
            .collect();
        // A key over the aggregate's 40 bytes.
        let long = event(
            "long".into(),
            format!("s0{}", "x".repeat(48)),
            base + 21_000_000,
        );
        records.push(Record::keyed("s0", codec.encode(&long)));
        let flush = event("flush".into(), "s0".into(), base + 3_600_000_000);
        records.push(Record::keyed("s0", codec.encode(&flush)));
        log.producer()
            .append("helios.events", records)
            .await
            .unwrap();

        let mut refusals = Vec::new();
        for name in ["b1", "b2"] {
            let p = processor(
                &log,
                &tmp.path().join(format!("ckpt-{name}")),
                name,
                BOUNDED,
            )
            .await;
            let metrics = p.metrics();
            p.run_to_end().await.unwrap();
            // The state gauges name each operator with its bound.
            let states = metrics.operator_states();
            assert_eq!(states["aggregate/per_subject"].1, 3, "{states:?}");
            assert_eq!(states["rule/busy"].1, 2, "{states:?}");
            assert!(states["rule/busy"].0 >= 2, "{states:?}");
            // So does the count of what each refused.
            let refused = metrics.refused_by_operator();
            assert_eq!(refused["aggregate/per_subject"], 6, "{refused:?}");
            assert_eq!(refused["rule/busy"], 5, "{refused:?}");
            let letters = RecordCodec::<DeadLetter>::new(3);
            let dead: Vec<DeadLetter> = read_all(&log, &format!("{name}.dlq"))
                .await
                .into_values()
                .flatten()
                .map(|(_, v)| letters.decode(&v).unwrap())
                .collect();
            assert!(dead.iter().all(|d| d.stage == LIMIT_STAGE), "{dead:?}");
            let refused = |what: &str| -> Vec<String> {
                dead.iter()
                    .filter(|d| d.reason.starts_with(what))
                    .map(|d| EventCodec::new(1).decode(&d.original).unwrap().id)
                    .collect()
            };
            // The aggregate holds s0, s1 and s2's windows; s3 and s4 open none, nor does
            // the hour-later event while those three are open (it moves the watermark
            // all the same, which closes them).
            assert_eq!(
                refused("aggregate `per_subject`"),
                ["e3", "e4", "e8", "e9", "long", "flush"]
            );
            assert!(
                dead.iter().all(|d| d.reason.contains("max_open_windows")
                    || d.reason.contains("max_keys")
                    || d.reason.contains("max_key_bytes")),
                "{dead:?}"
            );
            let long_key = dead
                .iter()
                .find(|d| {
                    d.reason.starts_with("aggregate `per_subject`") && d.reason.contains("50 bytes")
                })
                .expect("the long key's refusal says its size");
            assert!(long_key.reason.contains("max_key_bytes"), "{long_key:?}");
            // The rule took s0 and s1 (and s2, held for the watermark when the bound was
            // reached); s3, s4 and the long key are refused.
            assert_eq!(refused("rule `busy`"), ["e3", "e4", "e8", "e9", "long"]);
            let results = RecordCodec::<WindowResult>::new(2);
            let counts: BTreeMap<String, i64> = read_all(&log, &format!("{name}.aggregates"))
                .await
                .into_values()
                .flatten()
                .map(|(_, v)| results.decode(&v).unwrap())
                .filter(|r| r.is_final)
                .map(|r| (r.group["subject"].clone(), r.count))
                .collect();
            assert_eq!(
                counts,
                BTreeMap::from([("s0".into(), 2), ("s1".into(), 2), ("s2".into(), 2)]),
                "the windows it holds count every event of theirs"
            );
            refusals.push(dead.len());
        }
        assert_eq!(refusals[0], refusals[1], "the same log, the same refusals");
    }
}

mod restore {
    use std::sync::Arc;
    use std::time::Instant;

    use helios_log::TopicPartition;
    use helios_schemas::Event;

    use bytes::Bytes;

    use super::spec;
    use crate::checkpoint::{CheckpointStore, Restored};
    use crate::rules::RuleOperator;
    use crate::runtime::partition::{PartitionState, Specs};

    const SPEC: &str = r#"
[[aggregate]]
name = "per_minute"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { n = "count(*)" }

[[rule]]
name = "kept"
type = "threshold"
where = "kind = 'x'"
per = ["subject"]
count = 2
within = "1m"

[[rule]]
name = "changed"
type = "threshold"
where = "kind = 'x'"
per = ["subject"]
count = 2
within = "1m"
"#;

    /// Restores a payload of a version 1 checkpoint object (the formats before parts).
    fn restore(text: &str, payload: &[u8]) -> PartitionState {
        restore_from(
            text,
            &Restored {
                offset: 3,
                payload: Bytes::copy_from_slice(payload),
                version: 1,
                parts: Vec::new(),
            },
        )
    }

    fn restore_from(text: &str, r: &Restored) -> PartitionState {
        let s = spec(text);
        let aggregates: Vec<_> = s.aggregates.into_iter().map(Arc::new).collect();
        let rules: Vec<_> = s.rules.into_iter().map(Arc::new).collect();
        let specs = Specs {
            aggregates: &aggregates,
            rules: &rules,
            insights: true,
            dedupe: crate::spec::Dedupe::default(),
            upstream: false,
        };
        let tp = TopicPartition::new("helios.events", 0);
        PartitionState::restore(tp, specs, r, Instant::now()).unwrap()
    }

    /// A checkpoint of `st` through a store in `dir`, read back as a restart reads it.
    async fn checkpoint(st: &mut PartitionState, dir: &std::path::Path) -> (usize, Restored) {
        let store = CheckpointStore::local(dir, "g").unwrap();
        let bytes = st.save(&store).await.unwrap();
        let back = CheckpointStore::local(dir, "g").unwrap();
        (bytes, back.load(&st.tp).await.unwrap().unwrap())
    }

    /// A repartition stage's progress (what each events partition has forwarded) and a
    /// partition's applied mark come back from a checkpoint: the events stage never
    /// forwards a watermark behind one it forwarded, and repeats stay recognised.
    #[tokio::test]
    async fn the_watermark_mark_and_the_upstream_progress_survive_a_checkpoint() {
        let s = spec(SPEC);
        let aggregates: Vec<_> = s.aggregates.into_iter().map(Arc::new).collect();
        let specs = Specs {
            aggregates: &aggregates,
            rules: &[],
            insights: false,
            dedupe: crate::spec::Dedupe {
                horizon: std::time::Duration::ZERO,
                ..crate::spec::Dedupe::default()
            },
            upstream: true,
        };
        let tmp = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("helios.repartition.x", 0);
        let mut st = PartitionState::new(tp.clone(), specs, 0, Instant::now());
        let up = st.upstream.as_mut().unwrap();
        assert!(up.admit(1, 7));
        up.mark(0, 90);
        up.mark(1, 100);
        st.mark = 90;
        st.next_offset = 3;
        let (_, r) = checkpoint(&mut st, tmp.path()).await;
        let back = PartitionState::restore(tp, specs, &r, Instant::now()).unwrap();
        assert_eq!(back.mark, 90);
        assert_eq!(back.upstream, st.upstream);
        let mut up = back.upstream.unwrap();
        assert!(!up.admit(1, 7), "a repeat after the restore");
        assert_eq!(up.watermark(2), Some(90));
    }

    fn parts_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir.join("checkpoints/g/helios.events-0/parts"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn remembered_identities_are_written_once_and_restore_exactly() {
        let s = spec(SPEC);
        let aggregates: Vec<_> = s.aggregates.into_iter().map(Arc::new).collect();
        let specs = Specs {
            aggregates: &aggregates,
            rules: &[],
            insights: true,
            dedupe: crate::spec::Dedupe::default(),
            upstream: false,
        };
        let tmp = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("helios.events", 0);
        let mut st = PartitionState::new(tp, specs, 0, Instant::now());
        let base = 1_700_000_000_000_000i64;
        let admit = |st: &mut PartitionState, from: usize, to: usize| {
            let seen = st.seen.as_mut().unwrap();
            for i in from..to {
                // One bucket is 22.5 minutes of a day's horizon: the last ids land in the
                // next bucket.
                let t = base + (i as i64 / 30_000) * 1_400_000_000;
                assert!(seen.admit("ci", &format!("run-{i}"), t));
            }
        };
        admit(&mut st, 0, 40_000);
        st.next_offset = 40_000;
        let (first, r) = checkpoint(&mut st, tmp.path()).await;
        // The 30 000 of the first bucket in a part (8 bytes each); the next bucket's
        // 10 000 too few for one, inline.
        assert_eq!(parts_in(tmp.path()), ["seen_1259259_0_30000"]);
        assert_eq!(r.parts.len(), 1);
        let back = restore_from(SPEC, &r);
        assert_eq!(
            back.seen.as_ref().unwrap().state(),
            st.seen.as_ref().unwrap().state()
        );
        assert_eq!(back.seen.as_ref().unwrap().len(), 40_000);

        // The next checkpoint writes only what is new: the second bucket's 20 000 (now
        // enough for a part); the first part is referred to again, not rewritten.
        admit(&mut st, 40_000, 50_000);
        let (second, r) = checkpoint(&mut st, tmp.path()).await;
        assert_eq!(
            parts_in(tmp.path()),
            ["seen_1259259_0_30000", "seen_1259260_0_20000"]
        );
        assert!(second < first, "{second} bytes after {first}");
        assert!(
            (20_000 * 8..20_000 * 8 + 4096).contains(&second),
            "{second}"
        );
        let mut back = restore_from(SPEC, &r);
        assert_eq!(
            back.seen.as_ref().unwrap().state(),
            st.seen.as_ref().unwrap().state()
        );
        // A restored set answers as the original and carries on from its parts.
        {
            let b = back.seen.as_mut().unwrap();
            assert!(!b.admit("ci", "run-7", base));
            assert!(b.admit("ci", "run-new", base));
        }
        let (third, _) = checkpoint(&mut back, tmp.path()).await;
        assert!(third < 4096, "only the payload: {third}");

        // Forgotten buckets' parts go once no kept checkpoint refers to them.
        st.seen.as_mut().unwrap().expire(base + 10 * 86_400_000_000);
        assert!(st.seen.as_ref().unwrap().is_empty());
        for _ in 0..crate::checkpoint::KEEP {
            st.next_offset += 1;
            checkpoint(&mut st, tmp.path()).await;
        }
        assert_eq!(parts_in(tmp.path()), Vec::<String>::new());
    }

    #[test]
    fn a_checkpoint_with_identities_inline_restores_them() {
        let s = spec(SPEC);
        let aggregates: Vec<_> = s.aggregates.into_iter().map(Arc::new).collect();
        let specs = Specs {
            aggregates: &aggregates,
            rules: &[],
            insights: true,
            dedupe: crate::spec::Dedupe::default(),
            upstream: false,
        };
        let tp = TopicPartition::new("helios.events", 0);
        let mut st = PartitionState::new(tp, specs, 0, Instant::now());
        for i in 0..20_000 {
            assert!(st.seen.as_mut().unwrap().admit(
                "ci",
                &format!("run-{i}"),
                1_700_000_000_000_000
            ));
        }
        // As written before checkpoint parts: every identity in the payload.
        let old = restore(SPEC, &st.payload_v3().unwrap());
        assert_eq!(
            old.seen.as_ref().unwrap().state(),
            st.seen.as_ref().unwrap().state()
        );
        assert_eq!(old.seen.as_ref().unwrap().len(), 20_000);
    }

    #[test]
    fn rules_and_insights_come_back_from_the_checkpoint_and_a_changed_rule_starts_empty() {
        let s = spec(SPEC);
        let aggregates: Vec<_> = s.aggregates.into_iter().map(Arc::new).collect();
        let rules: Vec<_> = s.rules.into_iter().map(Arc::new).collect();
        let specs = Specs {
            aggregates: &aggregates,
            rules: &rules,
            insights: true,
            dedupe: crate::spec::Dedupe::default(),
            upstream: false,
        };
        let tp = TopicPartition::new("helios.events", 0);
        let mut st = PartitionState::new(tp, specs, 0, Instant::now());
        let base = 1_700_000_000_000_000i64;
        let mut alerts = Vec::new();
        let mut insights = Vec::new();
        for i in 0..3i64 {
            let e = Event {
                id: format!("e{i}"),
                kind: "x".into(),
                subject: "s".into(),
                time: base + i * 1_000_000,
                ..Event::default()
            };
            for r in &mut st.rules {
                r.on_event(&e, i as u64).unwrap();
                r.on_watermark(e.time, &mut alerts);
            }
        }
        st.insights[0].on_watermark(base, &mut insights);
        assert!(st.rules.iter().all(|r| r.keys() == 1 && r.pending() == 1));
        let tmp = tempfile::tempdir().unwrap();
        let (_, r) = super::super::tests::block_on(checkpoint(&mut st, tmp.path()));

        let same = restore_from(SPEC, &r);
        for (a, b) in same.rules.iter().zip(&st.rules) {
            assert_eq!(a.state(), b.state());
        }
        assert_eq!(same.insights, st.insights);

        let at = SPEC.rfind("count = 2").unwrap();
        let changed = format!(
            "{}count = 5{}",
            &SPEC[..at],
            &SPEC[at + "count = 2".len()..]
        );
        let other = restore_from(&changed, &r);
        assert_eq!(other.rules[0].state(), st.rules[0].state(), "`kept` kept");
        assert_eq!(
            other.rules[1].state(),
            RuleOperator::new(other.rules[1].rule().clone()).state(),
            "`changed` starts empty"
        );
        assert_eq!(other.insights, st.insights, "the aggregate did not change");
    }

    #[test]
    fn a_checkpoint_from_before_rules_and_insights_restores_the_windows() {
        let s = spec(SPEC);
        let aggregates: Vec<_> = s.aggregates.into_iter().map(Arc::new).collect();
        let tp = TopicPartition::new("helios.events", 0);
        let windows_only = Specs {
            aggregates: &aggregates,
            rules: &[],
            insights: false,
            dedupe: crate::spec::Dedupe {
                horizon: std::time::Duration::ZERO,
                ..crate::spec::Dedupe::default()
            },
            upstream: false,
        };
        let mut st = PartitionState::new(tp, windows_only, 0, Instant::now());
        let e = Event {
            id: "e".into(),
            subject: "s".into(),
            time: 1_700_000_000_000_000,
            ..Event::default()
        };
        st.aggregates[0].on_event(&e, 0).unwrap();
        st.max_event_time = e.time;
        let payload = st.payload_v3().unwrap();
        // Before de-duplication the payload ended before the `seen` option (`None`, a
        // zero byte here): restored with nothing remembered, everything else kept.
        assert_eq!(&payload[payload.len() - 3..], &[0, 0, 0]);
        let v2 = restore(SPEC, &payload[..payload.len() - 1]);
        assert_eq!(v2.aggregates[0].open_windows(), 1);
        assert!(v2.seen.as_ref().is_some_and(|s| s.is_empty()));
        // The first payload had no rules and insights either: the same bytes without the
        // two empty sequences (a zero length each).
        let old = &payload[..payload.len() - 3];
        let restored = restore(SPEC, old);
        assert_eq!(restored.max_event_time, e.time);
        assert_eq!(restored.aggregates[0].open_windows(), 1);
        assert_eq!(restored.rules.len(), 2);
        assert!(restored.rules.iter().all(|r| r.keys() == 0));
        assert_eq!(restored.insights.len(), 1);
    }
}
