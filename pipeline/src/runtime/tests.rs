use super::check_co_partitioned;
use crate::spec::{Spec, parse};

fn spec(text: &str) -> Spec<toml::Value> {
    parse::<toml::Value>(text, "test.toml", |_| Ok(())).expect("valid spec")
}

/// `group_by` keys -> whether the aggregate is accepted (its groups stay on one partition).
fn check(keys: &str, accepted: bool) {
    let s = spec(&format!(
        "[[aggregate]]\nname = \"a\"\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n\
         group_by = {keys}\nmeasures = {{ n = \"count(*)\" }}\n"
    ));
    let got = check_co_partitioned(&s.aggregates, &s.rules);
    assert_eq!(got.is_ok(), accepted, "{keys}: {got:?}");
    if let Err(e) = got {
        let text = e.to_string();
        assert!(
            text.contains("aggregate `a`") && text.contains("Add `subject`"),
            "{text}"
        );
    }
}

#[test]
fn only_groupings_that_include_the_subject_are_accepted() {
    check(r#"["subject"]"#, true);
    check(r#"["SUBJECT"]"#, true);
    check(r#"["subject AS project", "kind"]"#, true);
    check(r#"["kind", "attrs['branch'] AS branch", "subject"]"#, true);
    check(r#"[]"#, false);
    check(r#"["kind"]"#, false);
    check(r#"["lower(subject) AS project"]"#, false);
    check(r#"["attrs['subject'] AS subject"]"#, false);
}

mod replay {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
    use helios_log::{ConsumerConfig, Log, Record, TopicSpec};
    use helios_schemas::{DeadLetter, Event, EventCodec, RecordCodec, WindowResult};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::spec;
    use crate::checkpoint::CheckpointStore;
    use crate::runtime::{Codecs, LATE_STAGE, Processor, ProcessorConfig};

    const SPEC: &str = r#"
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
"#;

    /// A scripted stream: ordered with bounded disorder, a few events far behind (late),
    /// and a few undecodable records.
    fn script(log: &Log, codec: &EventCodec, n: usize) -> impl std::future::Future<Output = usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut records = Vec::new();
        let base = 1_700_000_000_000_000i64;
        for i in 0..n {
            let mut time = base + i as i64 * 200_000 - rng.random_range(0..4_000_000);
            if i % 997 == 500 {
                time -= 600_000_000; // ten minutes behind: late for every window
            }
            let subject = format!("s{}", rng.random_range(0..13));
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
                ..Event::default()
            };
            records.push(Record::keyed(format!("s{s}"), codec.encode(&e)));
        }
        let producer = log.producer();
        async move {
            let n = records.len() - 13;
            for chunk in records.chunks(500) {
                producer
                    .append("helios.events", chunk.to_vec())
                    .await
                    .unwrap();
            }
            n
        }
    }

    fn codecs() -> Codecs {
        Codecs {
            events: Arc::new(EventCodec::new(1)),
            results: RecordCodec::<WindowResult>::new(2),
            dead_letters: RecordCodec::<DeadLetter>::new(3),
        }
    }

    async fn run(log: &Log, ckpt: &std::path::Path, name: &str) {
        let mut config = ProcessorConfig::new(name, spec(SPEC).watermark);
        config.aggregates_topic = format!("{name}.aggregates");
        config.late_topic = format!("{name}.late");
        config.dead_letter_topic = format!("{name}.dlq");
        config.max_batch = 333;
        let p = Processor::new(
            config,
            spec(SPEC).aggregates,
            log.clone(),
            codecs(),
            CheckpointStore::local(ckpt, name).unwrap(),
        )
        .unwrap();
        p.ensure_topics().await.unwrap();
        p.run_to_end().await.unwrap();
    }

    /// Every record of `topic`, as bytes, per partition in offset order.
    async fn read_all(log: &Log, topic: &str) -> BTreeMap<u32, Vec<(Option<Bytes>, Bytes)>> {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replaying_the_same_log_twice_writes_byte_identical_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(tmp.path().join("log"), EmbeddedConfig::default()).unwrap();
        let log = log.log();
        log.admin()
            .create_topic(&TopicSpec::new("helios.events", 4))
            .await
            .unwrap();
        let n = script(&log, &EventCodec::new(1), 6_000).await;

        run(&log, &tmp.path().join("ckpt-a"), "a").await;
        run(&log, &tmp.path().join("ckpt-b"), "b").await;

        for out in ["aggregates", "late", "dlq"] {
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
        for (_, v) in read_all(&log, "a.late").await.into_values().flatten() {
            let d = letters.decode(&v).unwrap();
            assert_eq!(d.stage, LATE_STAGE);
            if d.reason.starts_with("aggregate `per_minute`") {
                late += 1;
                assert!(EventCodec::new(1).decode(&d.original).is_ok());
            }
        }
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
}
