//! Driving a processor's operators with events that are already decoded, with no log in
//! between: `helios backtest --events FILE` parses a file of events and feeds them here,
//! instead of encoding them into a scratch log for [`Processor::run_to_end`] to read and
//! decode again.
//!
//! The outcome is that of `run_to_end` over a fresh events topic of `partitions`
//! partitions to which the same events were appended in the same order, keyed by subject:
//! each event goes to the partition Kafka's default partitioner gives its subject (as
//! ingest's producer and the embedded log place it), takes the next offset there, and
//! goes through the steps a decoded record goes through in `run_to_end` (the `max_future`
//! check, de-duplication, window and rule operators, the partition's watermark, insights
//! on final windows). Outputs go to the processor's output topics with the same keys,
//! ids and bytes. One field differs: a dead letter's `at` is the record's log time, which
//! here is the event's receipt (`received_at`) and there the moment it was appended.
//! Nothing is checkpointed: a run fed from memory has no offset to resume from.
//!
//! Aggregates and rules not grouped by subject are forwarded to their repartition topics
//! as the events stage does (each forwarded event encoded once), and their stages run to
//! the end of what was forwarded when the direct run finishes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use helios_log::{ConsumedRecord, TopicPartition, partition_for_key};
use helios_schemas::Event;

use super::partition::PartitionState;
use super::{
    FUTURE_STAGE, Outputs, PREFETCH_RUN, Pos, Processor, RunSummary, Stage, advance, dead_letter,
    feed, forward_end_of_input, forward_event, forward_watermarks, refusal_letters, report_state,
    wall_clock_us, write_outputs,
};
use crate::Result;

/// A processor fed with decoded events (see the module docs); from [`Processor::direct`].
pub struct Direct {
    processor: Processor,
    /// The events stage it plays (its operators and forwards).
    stage: Stage,
    /// A forwarded record's key, built in place.
    key: Vec<u8>,
    /// The events topic's name, for dead letters' positions.
    topic: Arc<str>,
    /// Indexed by partition number.
    partitions: Vec<PartitionState>,
    ooo_us: i64,
    /// Outputs not yet written.
    out: Outputs,
    /// Events fed per partition since the last flush (metrics).
    pending: Vec<u64>,
    /// Time spent in [`Direct::process`] and [`Direct::flush`].
    busy: Duration,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("group", &self.processor.config.group)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl Processor {
    /// This processor, fed with decoded events instead of reading its events topic, as
    /// if that topic had `partitions` partitions (at least 1) and was empty before.
    pub fn direct(self, partitions: u32) -> Direct {
        let now = Instant::now();
        let partitions = partitions.max(1);
        // The repartition topics have as many partitions as the events topic.
        let forwards = self
            .rekeyed
            .iter()
            .map(|r| (r.clone(), partitions))
            .collect();
        let stage = self.events_stage(forwards);
        let states = (0..partitions)
            .map(|k| {
                let tp = TopicPartition::new(&self.config.events_topic, k);
                PartitionState::new(tp, self.specs(&stage), 0, now)
            })
            .collect::<Vec<_>>();
        let ooo_us = i64::try_from(self.config.watermark.max_out_of_orderness.as_micros())
            .unwrap_or(i64::MAX);
        Direct {
            topic: Arc::from(self.config.events_topic.as_str()),
            pending: vec![0; states.len()],
            partitions: states,
            ooo_us,
            out: Outputs::forwarding(&stage),
            busy: Duration::ZERO,
            processor: self,
            stage,
            key: Vec::new(),
        }
    }
}

impl Direct {
    /// The partitions events are spread over.
    pub fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The processor's counters (shared; stays valid while it runs).
    pub fn metrics(&self) -> Arc<super::Metrics> {
        self.processor.metrics()
    }

    /// The partition `event` goes to: its subject's, as the log would place it.
    pub fn partition_of(&self, event: &Event) -> u32 {
        partition_for_key(event.subject.as_bytes(), self.partitions())
    }

    /// Feeds `events`, in order, to their partitions' operators. Their outputs are
    /// buffered until [`Direct::flush`].
    pub fn process(&mut self, events: &[Event]) {
        let started = Instant::now();
        let n = self.partitions();
        let dedupe = self.partitions.iter().any(|st| st.seen.is_some());
        let mut targets = [0u32; PREFETCH_RUN];
        let mut identities = [None; PREFETCH_RUN];
        for run in events.chunks(PREFETCH_RUN) {
            for (slot, event) in targets.iter_mut().zip(run) {
                *slot = partition_for_key(event.subject.as_bytes(), n);
            }
            if dedupe {
                for (h, event) in identities.iter_mut().zip(run) {
                    *h = Some(crate::dedupe::identity(&event.source, &event.id));
                }
                self.prefetch_identities(&identities[..run.len()], &targets);
            }
            for ((event, &k), &identity) in run.iter().zip(&targets).zip(&identities) {
                self.pending[k as usize] += 1;
                let st = &mut self.partitions[k as usize];
                process_event(
                    &self.processor,
                    &self.stage,
                    st,
                    &self.topic,
                    event,
                    identity,
                    self.ooo_us,
                    &mut self.key,
                    &mut self.out,
                );
            }
        }
        self.busy += started.elapsed();
    }

    /// Touches the de-duplication set's line of each identity of a run so that their
    /// cache misses overlap (as [`super::Runner`] does for records). A hint only.
    fn prefetch_identities(&self, identities: &[Option<u64>], targets: &[u32]) {
        let mut lines = crate::dedupe::Prefetch::with_capacity(identities.len());
        for (h, &k) in identities.iter().zip(targets) {
            if let (Some(seen), Some(h)) = (&self.partitions[k as usize].seen, h) {
                lines.add(seen, *h);
            }
        }
        lines.fetch();
    }

    /// Writes the buffered outputs to the output topics and waits until they are
    /// durable; updates the processor's metrics as a processed batch does.
    pub async fn flush(&mut self) -> Result<()> {
        let started = Instant::now();
        let p = &self.processor;
        forward_watermarks(
            &self.stage,
            self.partitions.iter_mut(),
            self.ooo_us,
            &mut self.out,
        );
        let mut out = std::mem::replace(&mut self.out, Outputs::forwarding(&self.stage));
        let (results, late, dead) = (
            out.results.len() as u64,
            out.late.len() as u64,
            out.dead.len() as u64,
        );
        let (alerts, insights) = (out.alerts.len() as u64, out.insights.len() as u64);
        let duplicates = std::mem::take(&mut out.duplicates);
        let refused = std::mem::take(&mut out.refused);
        write_outputs(p, &self.stage, out, &[]).await?;
        p.metrics.duplicates(&duplicates);
        p.metrics.refused(&refused);
        report_state(&p.metrics, self.partitions.iter_mut());
        let wall_us = wall_clock_us();
        if let Some(merged) = self
            .partitions
            .iter()
            .filter_map(|st| st.watermark(self.ooo_us))
            .min()
        {
            p.metrics
                .watermark_delay(wall_us.saturating_sub(merged) / 1000);
        }
        let mut events = 0;
        for (st, n) in self.partitions.iter().zip(&mut self.pending) {
            let delay = st
                .watermark(self.ooo_us)
                .map(|w| wall_us.saturating_sub(w) / 1000);
            p.metrics
                .partition(st.tp.partition, *n, st.next_offset, delay);
            events += std::mem::take(n);
        }
        if events > 0 || results > 0 || alerts > 0 || insights > 0 {
            let latency = started.elapsed().as_micros() as u64;
            p.metrics.batch(events, results, late, dead, latency);
            p.metrics.derived(alerts, insights);
        }
        self.busy += started.elapsed();
        Ok(())
    }

    /// Writes what is still buffered and returns what the run did; `elapsed` is the time
    /// spent processing and writing (not the time the caller took to produce the events).
    pub async fn finish(mut self) -> Result<RunSummary> {
        self.flush().await?;
        if !self.stage.forwards.is_empty() {
            let started = Instant::now();
            let mut out = Outputs::forwarding(&self.stage);
            let mut partitions: Vec<&mut PartitionState> = self.partitions.iter_mut().collect();
            forward_end_of_input(&self.stage, &mut partitions, self.ooo_us, &mut out);
            write_outputs(&self.processor, &self.stage, out, &[]).await?;
            for stage in self.processor.repartition_stages(self.partitions()) {
                self.processor.run_stage_to_end(stage).await?;
            }
            self.busy += started.elapsed();
        }
        Ok(RunSummary {
            metrics: self.processor.metrics.snapshot(),
            elapsed: self.busy,
        })
    }
}

/// One event at the next offset of its partition: what `process_record` does with a
/// decoded record (keep the two in step). `identity` is the event's identity hash, if
/// computed ahead.
#[allow(clippy::too_many_arguments)] // the parts of a Runner this plays, borrowed apart
fn process_event(
    p: &Processor,
    stage: &Stage,
    st: &mut PartitionState,
    topic: &Arc<str>,
    event: &Event,
    identity: Option<u64>,
    ooo_us: i64,
    key: &mut Vec<u8>,
    out: &mut Outputs,
) {
    let offset = st.next_offset;
    st.next_offset += 1;
    st.dirty = true;
    st.sought = false;
    if let Err(why) = helios_schemas::event_time::check(event, p.config.max_future) {
        let rec = record(p, topic, st.tp.partition, offset, event);
        out.dead.push(dead_letter(
            FUTURE_STAGE,
            &Pos::of(&rec),
            why.to_string(),
            None,
        ));
        return;
    }
    if let Some(seen) = &mut st.seen
        && !seen.admit_identity(
            identity.unwrap_or_else(|| crate::dedupe::identity(&event.source, &event.id)),
            event.time,
        )
    {
        match out.duplicates.get_mut(&event.source) {
            Some(n) => *n += 1,
            None => {
                out.duplicates.insert(event.source.clone(), 1);
            }
        }
        return;
    }
    if stage.forwards.iter().any(|(r, _)| r.op.wants(event)) {
        let rec = record(p, topic, st.tp.partition, offset, event);
        forward_event(stage, st, ooo_us, event, &rec, key, out);
    }
    let refused = feed(st, event, offset, i64::MIN);
    if !refused.is_empty() {
        let rec = record(p, topic, st.tp.partition, offset, event);
        refusal_letters(refused, &Pos::of(&rec), out);
    }
    if event.time > st.max_event_time {
        st.max_event_time = event.time;
        advance(st, event.time.saturating_sub(ooo_us), out);
    }
}

/// The record `event` would be at `offset` of `partition`, for a dead letter (rare: only
/// late and far-future events pay for the encoding). Its log time is its receipt.
fn record(
    p: &Processor,
    topic: &Arc<str>,
    partition: u32,
    offset: u64,
    event: &Event,
) -> ConsumedRecord {
    ConsumedRecord {
        topic: topic.clone(),
        partition,
        offset,
        timestamp_ms: event.received_at.div_euclid(1000),
        key: Some(Bytes::copy_from_slice(event.subject.as_bytes())),
        value: p.codecs.events.encode(event),
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use helios_log::{Log, Record};
    use helios_schemas::{DeadLetter, Event, EventCodec, RecordCodec};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::runtime::tests::replay::{self, events_log};
    use crate::runtime::{FUTURE_STAGE, LATE_STAGE, Processor};

    /// Every kind of window, rule and output (the replay tests' spec), with
    /// de-duplication on and an aggregate and a rule not grouped by subject.
    const MORE: &str = r#"
[dedupe]
horizon = "1h"

[[aggregate]]
name = "by_conclusion"
window = { type = "hopping", size = "10m", slide = "1m" }
group_by = ["attrs['conclusion'] AS conclusion"]
measures = { n = "count(*)", first_v = "first(value)" }

[[rule]]
name = "failing_anywhere"
type = "threshold"
where = "attrs['conclusion'] = 'failure'"
count = 5
within = "1m"
"#;

    fn text() -> String {
        format!("{}{MORE}", replay::SPEC)
    }

    /// Events in time order but for up to 4 s of disorder, with some far behind (late),
    /// some repeated (same source and id), some dated far after their receipt, a burst of
    /// one subject (an anomaly, and silence for the others), and a last event per subject
    /// that closes every window.
    fn events(n: usize) -> Vec<Event> {
        let mut rng = StdRng::seed_from_u64(15);
        let base = 1_700_000_000_000_000i64;
        let mut out: Vec<Event> = Vec::new();
        for i in 0..n {
            if i % 211 == 100 {
                // A producer's retry of an earlier event.
                let again = out[rng.random_range(out.len() - 50..out.len())].clone();
                out.push(again);
                continue;
            }
            let mut time = base + i as i64 * 200_000 - rng.random_range(0..4_000_000);
            if i % 997 == 500 {
                time -= 600_000_000;
            }
            let mut received_at = time + 1_000_000;
            if i % 1499 == 700 {
                received_at = time - 3_600_000_000;
            }
            let subject = if (3000..3300).contains(&i) {
                "s0".to_string()
            } else {
                format!("s{}", rng.random_range(0..13))
            };
            out.push(Event {
                id: format!("e{i}"),
                source: "test".into(),
                kind: if i % 3 == 0 { "ci.run" } else { "push" }.into(),
                subject,
                time,
                received_at,
                attrs: [
                    ("user".to_string(), format!("u{}", rng.random_range(0..50))),
                    (
                        "conclusion".to_string(),
                        if i % 5 == 0 { "failure" } else { "success" }.to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
                value: (i % 7 != 0).then(|| f64::from(rng.random_range(0..1000u32)) / 10.0),
                payload: (i % 11 == 0).then(|| format!("{{\"n\":{i}}}")),
            });
        }
        for s in 0..13 {
            let t = base + 36_000_000_000;
            out.push(Event {
                id: format!("flush{s}"),
                source: "test".into(),
                kind: "flush".into(),
                subject: format!("s{s}"),
                time: t,
                received_at: t,
                ..Event::default()
            });
        }
        out
    }

    /// The replay tests' processor of [`text`].
    async fn processor(log: &Log, ckpt: &std::path::Path, name: &str) -> Processor {
        replay::processor(log, ckpt, name, &text()).await
    }

    /// The records of `topic` by partition and key, each key's values in offset order
    /// (the order that matters: versions of a window, an alert's firing then resolved;
    /// how keys interleave depends on where batches were cut).
    async fn read_all(log: &Log, topic: &str) -> BTreeMap<(u32, Option<Bytes>), Vec<Bytes>> {
        let mut out: BTreeMap<_, Vec<Bytes>> = BTreeMap::new();
        for (partition, records) in replay::read_all(log, topic).await {
            for (key, value) in records {
                out.entry((partition, key)).or_default().push(value);
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fed_directly_it_writes_what_a_run_over_the_same_log_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let log = events_log(tmp.path(), 4).await;
        let events = events(6_000);
        // The log path: the events appended keyed by subject, logged at their receipt.
        let codec = EventCodec::new(1);
        let producer = log.producer();
        for chunk in events.chunks(500) {
            let records = chunk
                .iter()
                .map(|e| Record {
                    timestamp_ms: Some(e.received_at.div_euclid(1000)),
                    ..Record::keyed(e.subject.clone(), codec.encode(e))
                })
                .collect();
            producer.append("helios.events", records).await.unwrap();
        }
        let from_log = processor(&log, &tmp.path().join("a"), "a").await;
        let log_metrics = from_log.metrics();
        let from_log = from_log.run_to_end().await.unwrap().metrics;

        // The direct path, in chunks of another size, flushed every other chunk.
        let mut direct = processor(&log, &tmp.path().join("b"), "b").await.direct(4);
        let direct_metrics = direct.metrics();
        assert_eq!(direct.partitions(), 4);
        for (i, chunk) in events.chunks(777).enumerate() {
            direct.process(chunk);
            if i % 2 == 1 {
                direct.flush().await.unwrap();
            }
        }
        let direct = direct.finish().await.unwrap().metrics;

        assert_eq!(direct.events_in, events.len() as u64);
        assert_eq!(
            (
                direct.events_in,
                direct.results_out,
                direct.alerts_out,
                direct.insights_out,
                direct.late_events,
                direct.dead_letters
            ),
            (
                from_log.events_in,
                from_log.results_out,
                from_log.alerts_out,
                from_log.insights_out,
                from_log.late_events,
                from_log.dead_letters
            )
        );
        assert!(log.admin().describe_topic("b.aggregates").await.is_ok());
        for out in ["aggregates", "alerts", "insights", "late", "dlq"] {
            let a = read_all(&log, &format!("a.{out}")).await;
            let b = read_all(&log, &format!("b.{out}")).await;
            assert!(!a.is_empty(), "the log run wrote no {out}");
            assert_eq!(a, b, "{out} differ between the log run and the direct one");
        }
        // Both kinds of dead letter were there to compare, and repeats were dropped.
        let letters = RecordCodec::<DeadLetter>::new(3);
        let stages = |records: BTreeMap<_, Vec<Bytes>>| {
            records
                .into_values()
                .flatten()
                .map(|v| letters.decode(&v).unwrap().stage)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert!(stages(read_all(&log, "b.late").await).contains(LATE_STAGE));
        assert!(stages(read_all(&log, "b.dlq").await).contains(FUTURE_STAGE));
        assert!(direct.dedupe_ids > 0);
        let dropped = direct_metrics.duplicates_by_source();
        assert!(dropped.get("test").is_some_and(|&n| n > 0), "{dropped:?}");
        assert_eq!(dropped, log_metrics.duplicates_by_source());
    }
}
