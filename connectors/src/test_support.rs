//! What the pull sources' tests share: a real embedded log with the events and
//! dead-letter topics, a supervisor writing to it, and readers decoding what was written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::{ConsumerConfig, Log, TopicSpec};
use helios_schemas::{DeadLetter, Event, EventCodec, RecordCodec};

use crate::runtime::{Emitter, EmitterConfig, SourceHandle, SourceStatus, Supervisor};

const EVENT_SCHEMA: u32 = 1;
const DEAD_LETTER_SCHEMA: u32 = 2;

/// A real embedded log in a temp dir.
pub(crate) struct LogFixture {
    pub dir: tempfile::TempDir,
    pub log: Log,
    group: AtomicU64,
}

impl LogFixture {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path().join("log"), EmbeddedConfig::default())
            .unwrap()
            .log();
        for (topic, partitions) in [("helios.events", 2), ("helios.dlq", 1)] {
            log.admin()
                .create_topic(&TopicSpec::new(topic, partitions))
                .await
                .unwrap();
        }
        LogFixture {
            dir,
            log,
            group: AtomicU64::new(0),
        }
    }

    pub fn emitter(&self) -> Emitter {
        self.emitter_with(EmitterConfig::default())
    }

    /// An emitter over this log with `config` (its topics must be the fixture's).
    pub fn emitter_with(&self, config: EmitterConfig) -> Emitter {
        Emitter::new(
            config,
            self.log.producer(),
            EventCodec::new(EVENT_SCHEMA),
            RecordCodec::new(DEAD_LETTER_SCHEMA),
        )
    }

    /// A supervisor whose sources keep their state in `<dir>/sources`, so a second
    /// supervisor made later resumes from the first one's checkpoints.
    pub fn supervisor(&self) -> Arc<Supervisor> {
        Supervisor::new(self.emitter(), self.dir.path().join("sources"))
    }

    async fn read(&self, topic: &str) -> Vec<bytes::Bytes> {
        let group = format!("check-{}", self.group.fetch_add(1, Ordering::Relaxed));
        let mut c = self
            .log
            .consumer(&[topic], ConsumerConfig::new(group))
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let batch = c.poll(10_000, Duration::from_millis(50)).await.unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch.into_iter().map(|r| r.value));
        }
    }

    /// Every event written so far, in no particular order across partitions.
    pub async fn events(&self) -> Vec<Event> {
        let codec = EventCodec::new(EVENT_SCHEMA);
        let mut events: Vec<Event> = self
            .read("helios.events")
            .await
            .iter()
            .map(|b| codec.decode(b).unwrap())
            .collect();
        events.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
        events
    }

    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let codec = RecordCodec::<DeadLetter>::new(DEAD_LETTER_SCHEMA);
        self.read("helios.dlq")
            .await
            .iter()
            .map(|b| codec.decode(b).unwrap())
            .collect()
    }

    /// Waits (at most 30 s) until `done` holds for the events written so far.
    pub async fn wait_events(&self, what: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events().await;
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events so far: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits (at most 30 s) until `done` holds for the source's status.
pub(crate) async fn wait_status(
    handle: &SourceHandle,
    what: &str,
    done: impl Fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = handle.status();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
