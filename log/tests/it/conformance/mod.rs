//! The log conformance suite: one set of test bodies, written against [`Log`] only, that
//! every backend must pass.
//!
//! Each case is a `pub async fn(log: &Log, topic_prefix: &str)`; the backend's test file
//! (`kafka.rs`, `embedded.rs`) opens its log and calls every case from one `#[tokio::test]`.
//! `topic_prefix` must be unique per test run (cases derive topic and group names from it,
//! so they never see each other's data). Cases assert behaviour, never timing: waits are
//! bounded loops of short polls ([`WAIT`] in total) because group joins on a broker take
//! seconds.

#![allow(dead_code)] // Each backend runs the cases it supports.

/// Declares one `#[tokio::test]` per conformance case for a backend. `$open` is an async
/// fn returning `(guard, Log)` (the guard keeps e.g. a temp dir alive); `$retention` says
/// whether the backend enforces retention.
#[macro_export]
macro_rules! conformance_suite {
    ($open:ident, $retention:expr) => {
        $crate::conformance_suite!(@cases $open;
            append_and_read, explicit_partition_and_keyless, seek_offsets, seek_timestamps,
            group_sharing, commit_and_resume, offset_reset, admin);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn retention() {
            let (_guard, log) = $open().await;
            $crate::conformance::retention(&log, &$crate::conformance::unique_prefix("retention"), $retention).await;
        }
    };
    (@cases $open:ident; $($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (_guard, log) = $open().await;
            $crate::conformance::$case(&log, &$crate::conformance::unique_prefix(stringify!($case))).await;
        }
    )*};
}

/// A topic/group prefix unique to this test and run.
pub fn unique_prefix(case: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("helios-test.{case}.{}-{nanos}", std::process::id())
}

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use helios_log::{
    ConsumedRecord, ConsumerConfig, Log, LogConsumer, LogError, OffsetReset, Record,
    RecordPosition, SeekTo, TopicPartition, TopicSpec, partition_for_key,
};

/// Upper bound on every wait for records or assignments.
pub const WAIT: Duration = Duration::from_secs(30);

/// One short poll inside a wait loop.
const POLL: Duration = Duration::from_millis(250);

/// Whether the backend deletes old data by retention (see [`retention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Old data is deleted once a partition exceeds `retention_bytes`.
    Enforced,
    /// Retention settings are stored and reported but nothing is deleted (tansu 0.6).
    NotEnforced,
}

// ---------------------------------------------------------------------------------------
// helpers

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A timestamp base a minute in the past, on a whole second.
fn base_ts() -> i64 {
    (now_ms() - 60_000) / 1_000 * 1_000
}

async fn create(log: &Log, name: &str, partitions: u32) -> String {
    log.admin()
        .create_topic(&TopicSpec::new(name, partitions))
        .await
        .unwrap_or_else(|e| panic!("creating topic {name} with {partitions} partitions: {e}"));
    name.to_owned()
}

async fn append(log: &Log, topic: &str, records: Vec<Record>) -> Vec<RecordPosition> {
    let n = records.len();
    let positions = log
        .producer()
        .append(topic, records)
        .await
        .unwrap_or_else(|e| panic!("appending {n} records to {topic}: {e}"));
    assert_eq!(positions.len(), n, "append returns one position per record");
    positions
}

async fn consumer(
    log: &Log,
    topics: &[&str],
    group: &str,
    reset: OffsetReset,
) -> Box<dyn LogConsumer> {
    log.consumer(topics, ConsumerConfig::new(group).offset_reset(reset))
        .await
        .unwrap_or_else(|e| panic!("creating a consumer in group {group} for {topics:?}: {e}"))
}

async fn poll(c: &mut Box<dyn LogConsumer>) -> Vec<ConsumedRecord> {
    c.poll(100, POLL)
        .await
        .unwrap_or_else(|e| panic!("poll failed: {e}"))
}

/// Polls until at least `n` records arrived; panics after [`WAIT`].
async fn read_n(c: &mut Box<dyn LogConsumer>, n: usize) -> Vec<ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {} of {n} records within {WAIT:?} (assignment {:?}): {:?}",
            out.len(),
            c.assignment(),
            positions_of(&out)
        );
        out.extend(poll(c).await);
    }
    out
}

/// Polls (discarding records) until the assignment satisfies `ok`; panics after [`WAIT`].
async fn wait_assignment(
    c: &mut Box<dyn LogConsumer>,
    what: &str,
    ok: impl Fn(&[TopicPartition]) -> bool,
) -> Vec<ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while !ok(&c.assignment()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no assignment with {what} within {WAIT:?}; last assignment {:?}",
            c.assignment()
        );
        seen.extend(poll(c).await);
    }
    seen
}

/// The next record read from `tp`, skipping other partitions; panics after [`WAIT`].
async fn next_on(c: &mut Box<dyn LogConsumer>, tp: &TopicPartition) -> ConsumedRecord {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no record from {tp} within {WAIT:?}"
        );
        if let Some(r) = poll(c)
            .await
            .into_iter()
            .find(|r| r.topic_partition() == *tp)
        {
            return r;
        }
    }
}

async fn seek(c: &mut Box<dyn LogConsumer>, tp: &TopicPartition, to: SeekTo) {
    c.seek(tp, to)
        .await
        .unwrap_or_else(|e| panic!("seek {tp} to {to:?}: {e}"));
}

fn positions_of(records: &[ConsumedRecord]) -> Vec<(u32, u64)> {
    records.iter().map(|r| (r.partition, r.offset)).collect()
}

/// Asserts offsets per partition come in increasing order and returns them by partition.
fn by_partition(records: &[ConsumedRecord]) -> BTreeMap<u32, Vec<u64>> {
    let mut map: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for r in records {
        let offsets = map.entry(r.partition).or_default();
        if let Some(last) = offsets.last() {
            assert!(
                r.offset > *last,
                "partition {} read out of order or twice: offset {} after {last}",
                r.partition,
                r.offset
            );
        }
        offsets.push(r.offset);
    }
    map
}

/// Asserts that `positions` (input order) are dense from `start[p]` within each partition.
fn assert_dense(positions: &[RecordPosition], start: &mut BTreeMap<u32, u64>) {
    for pos in positions {
        let next = start.entry(pos.partition).or_insert(0);
        assert_eq!(
            pos.offset, *next,
            "offsets must be dense per partition in append order (partition {})",
            pos.partition
        );
        *next += 1;
    }
}

fn key_for_other_partition(avoid: u32, partitions: u32) -> String {
    (0..)
        .map(|i| format!("key-{i}"))
        .find(|k| partition_for_key(k.as_bytes(), partitions) != avoid)
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// cases

/// Keyed records land on `partition_for_key`, offsets are dense from 0 per partition, and
/// a consumer reads back exactly what was written (key, value, headers, timestamp) in
/// offset order per partition.
pub async fn append_and_read(log: &Log, topic_prefix: &str) {
    const PARTITIONS: u32 = 3;
    let topic = create(log, &format!("{topic_prefix}.append-read"), PARTITIONS).await;
    let base = base_ts();
    let make = |i: usize| {
        let mut headers = vec![("trace".to_owned(), Bytes::from(format!("t-{i}")))];
        if i.is_multiple_of(3) {
            headers.push(("empty".to_owned(), Bytes::new()));
            headers.push(("bin".to_owned(), Bytes::from(vec![0u8, 255, i as u8])));
        }
        Record {
            key: Some(Bytes::from(format!("subject-{}", i % 7))),
            value: if i == 5 {
                Bytes::new()
            } else {
                Bytes::from(format!("value-{i}"))
            },
            timestamp_ms: Some(base + i as i64),
            headers: if i % 4 == 1 { Vec::new() } else { headers },
            partition: None,
        }
    };

    let first: Vec<Record> = (0..30).map(make).collect();
    let second: Vec<Record> = (30..40).map(make).collect();
    let mut next = BTreeMap::new();
    let mut written = Vec::new();
    for batch in [first, second] {
        let positions = append(log, &topic, batch.clone()).await;
        assert_dense(&positions, &mut next);
        for (pos, rec) in positions.into_iter().zip(batch) {
            let key = rec.key.as_ref().unwrap();
            assert_eq!(
                pos.partition,
                partition_for_key(key, PARTITIONS),
                "key {key:?} must land on partition_for_key"
            );
            written.push((pos, rec));
        }
    }

    let mut c = consumer(
        log,
        &[&topic],
        &format!("{topic_prefix}.reader"),
        OffsetReset::Earliest,
    )
    .await;
    let read = read_n(&mut c, written.len()).await;
    assert_eq!(
        read.len(),
        written.len(),
        "exactly the written records: {:?}",
        positions_of(&read)
    );
    by_partition(&read);
    let read: BTreeMap<(u32, u64), ConsumedRecord> = read
        .into_iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for (pos, rec) in &written {
        let got = read
            .get(&(pos.partition, pos.offset))
            .unwrap_or_else(|| panic!("record at {pos:?} was not read back"));
        let want = ConsumedRecord {
            topic: topic.as_str().into(),
            partition: pos.partition,
            offset: pos.offset,
            timestamp_ms: rec.timestamp_ms.unwrap(),
            key: rec.key.clone(),
            value: rec.value.clone(),
            headers: rec.headers.clone(),
        };
        assert_eq!(*got, want, "record at {pos:?} reads back as written");
    }
}

/// An explicit partition overrides the key; keyless records spread over several
/// partitions; a partition that does not exist is an error.
pub async fn explicit_partition_and_keyless(log: &Log, topic_prefix: &str) {
    const PARTITIONS: u32 = 4;
    let topic = create(log, &format!("{topic_prefix}.partitions"), PARTITIONS).await;
    let key = key_for_other_partition(2, PARTITIONS);
    let explicit = vec![
        Record {
            partition: Some(2),
            ..Record::keyed(key.clone(), "explicit-keyed")
        },
        Record {
            partition: Some(3),
            value: Bytes::from("explicit-keyless"),
            ..Record::default()
        },
    ];
    let positions = append(log, &topic, explicit).await;
    assert_eq!(
        positions[0],
        RecordPosition {
            partition: 2,
            offset: 0
        }
    );
    assert_eq!(
        positions[1],
        RecordPosition {
            partition: 3,
            offset: 0
        }
    );

    let keyless: Vec<Record> = (0..200)
        .map(|i| Record {
            value: Bytes::from(format!("keyless-{i}")),
            ..Record::default()
        })
        .collect();
    let positions = append(log, &topic, keyless).await;
    let mut next = BTreeMap::from([(2, 1), (3, 1)]);
    assert_dense(&positions, &mut next);
    let used: BTreeSet<u32> = positions.iter().map(|p| p.partition).collect();
    assert!(
        used.iter().all(|p| *p < PARTITIONS),
        "partitions in range: {used:?}"
    );
    assert!(
        used.len() > 1,
        "200 keyless records must spread over partitions, all went to {used:?}"
    );

    let err = log
        .producer()
        .append(
            &topic,
            vec![Record {
                partition: Some(7),
                ..Record::keyed("k", "v")
            }],
        )
        .await
        .expect_err("appending to partition 7 of a 4-partition topic must fail");
    assert!(
        matches!(
            err,
            LogError::UnknownPartition {
                partition: 7,
                partitions: PARTITIONS,
                ..
            }
        ),
        "unexpected error: {err:?}"
    );

    let mut c = consumer(
        log,
        &[&topic],
        &format!("{topic_prefix}.reader"),
        OffsetReset::Earliest,
    )
    .await;
    let read = read_n(&mut c, 202).await;
    let find = |v: &str| {
        read.iter()
            .find(|r| r.value == v)
            .unwrap_or_else(|| panic!("{v} not read"))
    };
    assert_eq!(
        (
            find("explicit-keyed").partition,
            find("explicit-keyless").partition
        ),
        (2, 3)
    );
    assert_eq!(find("explicit-keyed").key.as_deref(), Some(key.as_bytes()));
    assert_eq!(find("explicit-keyless").key, None);
}

fn seek_record(p: u32, i: i64, ts: i64) -> Record {
    Record {
        partition: Some(p),
        timestamp_ms: Some(ts),
        ..Record::keyed(format!("k{i}"), format!("p{p}-{i}"))
    }
}

/// A 2-partition topic whose partition 0 holds offsets 0..10 at `base + i` seconds (with
/// noise on partition 1), and a consumer assigned partition 0.
async fn seek_setup(
    log: &Log,
    topic_prefix: &str,
    base: i64,
) -> (String, TopicPartition, Box<dyn LogConsumer>) {
    let topic = create(log, &format!("{topic_prefix}.seek"), 2).await;
    append(
        log,
        &topic,
        (0..10)
            .map(|i| seek_record(0, i, base + i * 1_000))
            .collect(),
    )
    .await;
    append(
        log,
        &topic,
        (0..3).map(|i| seek_record(1, i, base + i)).collect(),
    )
    .await;
    let p0 = TopicPartition::new(&topic, 0);
    let mut c = consumer(
        log,
        &[&topic],
        &format!("{topic_prefix}.seeker"),
        OffsetReset::Earliest,
    )
    .await;
    wait_assignment(&mut c, "partition 0", |a| a.contains(&p0)).await;
    (topic, p0, c)
}

/// Seeks `c` to each target and checks the first record read from `tp` after it.
async fn check_seeks(
    c: &mut Box<dyn LogConsumer>,
    tp: &TopicPartition,
    base: i64,
    cases: &[(SeekTo, u64)],
) {
    for &(to, want) in cases {
        seek(c, tp, to).await;
        let r = next_on(c, tp).await;
        assert_eq!(r.offset, want, "first record after seek to {to:?}");
        assert_eq!(r.value, format!("p0-{want}"));
        assert_eq!(r.timestamp_ms, base + want as i64 * 1_000);
    }
}

/// Seek by offset, to the beginning and to the end; seeking an unassigned partition fails.
pub async fn seek_offsets(log: &Log, topic_prefix: &str) {
    let base = base_ts();
    let (topic, p0, mut c) = seek_setup(log, topic_prefix, base).await;
    check_seeks(
        &mut c,
        &p0,
        base,
        &[
            (SeekTo::Offset(5), 5),
            (SeekTo::Beginning, 0),
            (SeekTo::Offset(9), 9),
            (SeekTo::Offset(2), 2),
        ],
    )
    .await;

    // The end means "only records appended after the seek".
    seek(&mut c, &p0, SeekTo::End).await;
    append(log, &topic, vec![seek_record(0, 10, now_ms())]).await;
    assert_eq!(
        next_on(&mut c, &p0).await.offset,
        10,
        "first record after seek to the end"
    );

    let other = TopicPartition::new(&format!("{topic_prefix}.not-subscribed"), 0);
    let err = c
        .seek(&other, SeekTo::Beginning)
        .await
        .expect_err("seek on an unassigned partition");
    assert!(
        matches!(err, LogError::NotAssigned { .. }),
        "unexpected error: {err:?}"
    );
}

/// Seek by timestamp: to the first record at or after the time, by record timestamps (not
/// append times); past the last record it is the end.
pub async fn seek_timestamps(log: &Log, topic_prefix: &str) {
    let base = base_ts();
    let (topic, p0, mut c) = seek_setup(log, topic_prefix, base).await;
    check_seeks(
        &mut c,
        &p0,
        base,
        &[
            (SeekTo::Timestamp(base + 4_500), 5),
            (SeekTo::Timestamp(base + 4_000), 4),
            (SeekTo::Timestamp(base - 60_000), 0),
            (SeekTo::Timestamp(base + 9_000), 9),
            (SeekTo::Timestamp(base + 1), 1),
        ],
    )
    .await;

    seek(&mut c, &p0, SeekTo::Timestamp(base + 3_600_000)).await;
    append(log, &topic, vec![seek_record(0, 10, now_ms())]).await;
    assert_eq!(
        next_on(&mut c, &p0).await.offset,
        10,
        "first record after seek past the last time"
    );
}

/// Two members of one group split a topic's partitions (disjoint assignments covering all)
/// and together read every record exactly once.
pub async fn group_sharing(log: &Log, topic_prefix: &str) {
    const PARTITIONS: u32 = 4;
    let topic = create(log, &format!("{topic_prefix}.shared"), PARTITIONS).await;
    let group = format!("{topic_prefix}.group");
    let mut a = consumer(log, &[&topic], &group, OffsetReset::Earliest).await;
    let mut b = consumer(log, &[&topic], &group, OffsetReset::Earliest).await;
    let all: BTreeSet<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();

    // Both members joined and the group settled.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            poll(&mut a).await.is_empty() && poll(&mut b).await.is_empty(),
            "topic is empty"
        );
        let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (
            a.assignment().into_iter().collect(),
            b.assignment().into_iter().collect(),
        );
        if !sa.is_empty() && !sb.is_empty() && sa.is_disjoint(&sb) && &sa | &sb == all {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group did not settle within {WAIT:?}: a={sa:?} b={sb:?}"
        );
    }
    let (assigned_a, assigned_b) = (a.assignment(), b.assignment());

    let records: Vec<Record> = (0..40)
        .map(|i| Record::keyed(format!("subject-{i}"), format!("v{i}")))
        .collect();
    let written: BTreeSet<(u32, u64)> = append(log, &topic, records)
        .await
        .iter()
        .map(|p| (p.partition, p.offset))
        .collect();

    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + WAIT;
    while got_a.len() + got_b.len() < written.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "members read {} + {} of {} records within {WAIT:?}",
            got_a.len(),
            got_b.len(),
            written.len()
        );
        got_a.extend(poll(&mut a).await);
        got_b.extend(poll(&mut b).await);
    }
    assert_eq!(a.assignment(), assigned_a, "no rebalance while reading");
    assert_eq!(b.assignment(), assigned_b, "no rebalance while reading");
    for (name, got, assigned) in [("a", &got_a, &assigned_a), ("b", &got_b, &assigned_b)] {
        by_partition(got);
        assert!(
            got.iter().all(|r| assigned.contains(&r.topic_partition())),
            "member {name} read only its own partitions {assigned:?}: {:?}",
            positions_of(got)
        );
    }
    let read_a: BTreeSet<_> = positions_of(&got_a).into_iter().collect();
    let read_b: BTreeSet<_> = positions_of(&got_b).into_iter().collect();
    assert!(
        read_a.is_disjoint(&read_b),
        "no record read by both members"
    );
    assert_eq!(
        read_a.len() + read_b.len(),
        got_a.len() + got_b.len(),
        "no record read twice"
    );
    assert_eq!(
        &read_a | &read_b,
        written,
        "together the members read every record"
    );
}

/// A member commits, leaves, and a new member of the group resumes exactly at the committed
/// offsets; `committed` reports them.
pub async fn commit_and_resume(log: &Log, topic_prefix: &str) {
    let topic = create(log, &format!("{topic_prefix}.commits"), 2).await;
    let group = format!("{topic_prefix}.group");
    for p in 0..2 {
        let records = (0..10)
            .map(|i| Record {
                partition: Some(p),
                ..Record::keyed(format!("k{i}"), format!("p{p}-{i}"))
            })
            .collect();
        append(log, &topic, records).await;
    }
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );

    let mut first = consumer(log, &[&topic], &group, OffsetReset::Earliest).await;
    let read = read_n(&mut first, 20).await;
    assert_eq!(read.len(), 20);
    assert_eq!(
        first.committed(&p0).await.unwrap(),
        None,
        "nothing committed yet"
    );
    first
        .commit(&[(p0.clone(), 4), (p1.clone(), 7)])
        .await
        .expect("commit");
    assert_eq!(first.committed(&p0).await.unwrap(), Some(4));
    assert_eq!(first.committed(&p1).await.unwrap(), Some(7));
    drop(first);

    let mut second = consumer(log, &[&topic], &group, OffsetReset::Earliest).await;
    assert_eq!(
        second.committed(&p0).await.unwrap(),
        Some(4),
        "committed offsets outlive the member"
    );
    assert_eq!(second.committed(&p1).await.unwrap(), Some(7));
    let read = read_n(&mut second, 9).await;
    let got = by_partition(&read);
    assert_eq!(
        got,
        BTreeMap::from([(0, (4..10).collect()), (1, (7..10).collect())]),
        "the new member resumes at the committed offsets"
    );
    second
        .commit(&[(p0.clone(), 10), (p1.clone(), 10)])
        .await
        .expect("commit");
    assert_eq!(second.committed(&p0).await.unwrap(), Some(10));
    assert_eq!(second.committed(&p1).await.unwrap(), Some(10));
}

/// Without committed offsets, `Earliest` reads from the first record and `Latest` only
/// records appended after the member joined.
pub async fn offset_reset(log: &Log, topic_prefix: &str) {
    let topic = create(log, &format!("{topic_prefix}.reset"), 2).await;
    let old: BTreeSet<(u32, u64)> = append(
        log,
        &topic,
        (0..6)
            .map(|i| Record {
                partition: Some(i % 2),
                ..Record::keyed("k", format!("old-{i}"))
            })
            .collect(),
    )
    .await
    .iter()
    .map(|p| (p.partition, p.offset))
    .collect();

    let mut earliest = consumer(
        log,
        &[&topic],
        &format!("{topic_prefix}.earliest"),
        OffsetReset::Earliest,
    )
    .await;
    let read = read_n(&mut earliest, old.len()).await;
    assert_eq!(
        positions_of(&read).into_iter().collect::<BTreeSet<_>>(),
        old
    );

    let mut latest = consumer(
        log,
        &[&topic],
        &format!("{topic_prefix}.latest"),
        OffsetReset::Latest,
    )
    .await;
    let mut got = wait_assignment(&mut latest, "both partitions", |a| a.len() == 2).await;
    // Append new records until some arrive; whatever arrives must be new.
    let mut new = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut i = 0;
    while got.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "latest consumer read nothing new within {WAIT:?}"
        );
        let pos = append(
            log,
            &topic,
            vec![Record {
                partition: Some(i % 2),
                ..Record::keyed("k", format!("new-{i}"))
            }],
        )
        .await[0];
        new.insert((pos.partition, pos.offset));
        i += 1;
        got.extend(poll(&mut latest).await);
    }
    for r in &got {
        assert!(
            new.contains(&(r.partition, r.offset)),
            "latest consumer read {:?} ({:?}) which was appended before it joined",
            (r.partition, r.offset),
            r.value
        );
    }
}

/// Create is idempotent, a different partition count conflicts, list shows the topic,
/// describe reports partitions and end offsets.
pub async fn admin(log: &Log, topic_prefix: &str) {
    let admin = log.admin();
    let topic = format!("{topic_prefix}.admin");
    admin
        .create_topic(&TopicSpec::new(&topic, 3))
        .await
        .expect("create");
    admin
        .create_topic(&TopicSpec::new(&topic, 3))
        .await
        .expect("create again is a no-op");
    let err = admin
        .create_topic(&TopicSpec::new(&topic, 5))
        .await
        .expect_err("different partition count");
    assert!(
        matches!(err, LogError::TopicConflict(ref t) if *t == topic),
        "unexpected error: {err:?}"
    );
    let err = admin
        .create_topic(&TopicSpec::new("bad topic/name", 1))
        .await
        .expect_err("invalid name");
    assert!(
        matches!(err, LogError::InvalidTopicName(_)),
        "unexpected error: {err:?}"
    );

    let topics = admin.list_topics().await.expect("list");
    assert!(topics.contains(&topic), "{topic} listed in {topics:?}");
    assert!(
        topics.iter().all(|t| !t.starts_with("__")),
        "internal topics are hidden: {topics:?}"
    );

    let info = admin.describe_topic(&topic).await.expect("describe");
    assert_eq!(info.name, topic);
    assert_eq!(
        info.partitions
            .iter()
            .map(|p| (p.partition, p.start_offset, p.end_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    );

    let on = |p: u32, n: usize| {
        (0..n).map(move |i| Record {
            partition: Some(p),
            ..Record::keyed("k", format!("{i}"))
        })
    };
    append(log, &topic, on(0, 2).chain(on(2, 5)).collect()).await;
    let info = admin.describe_topic(&topic).await.expect("describe");
    assert_eq!(
        info.partitions
            .iter()
            .map(|p| (p.partition, p.start_offset, p.end_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0, 2), (1, 0, 0), (2, 0, 5)]
    );

    let missing = format!("{topic_prefix}.missing");
    let err = admin
        .describe_topic(&missing)
        .await
        .expect_err("describe a missing topic");
    assert!(
        matches!(err, LogError::UnknownTopic(ref t) if *t == missing),
        "unexpected error: {err:?}"
    );
}

/// Retention settings are stored and reported by `describe_topic`. With
/// [`Retention::Enforced`], writing 1 MiB into a partition limited to 64 KiB deletes the
/// oldest records: the start offset moves up and reads from the beginning start there.
/// (The backend must be set up so 1 MiB spans several of its deletion units, e.g. segments.)
pub async fn retention(log: &Log, topic_prefix: &str, enforcement: Retention) {
    const LIMIT: u64 = 64 * 1024;
    const RECORDS: usize = 256;
    let topic = format!("{topic_prefix}.retention");
    let spec = TopicSpec::new(&topic, 1)
        .retention(Duration::from_secs(3_600))
        .retention_bytes(LIMIT);
    log.admin()
        .create_topic(&spec)
        .await
        .expect("create with retention");
    let info = log.admin().describe_topic(&topic).await.expect("describe");
    assert_eq!(
        info.retention,
        Some(Duration::from_secs(3_600)),
        "retention is stored"
    );
    assert_eq!(
        info.retention_bytes,
        Some(LIMIT),
        "retention_bytes is stored"
    );

    let value = Bytes::from(vec![b'x'; 4 * 1024]);
    for batch in 0..RECORDS / 32 {
        let records = (0..32)
            .map(|i| Record::keyed(format!("k{}", batch * 32 + i), value.clone()))
            .collect();
        append(log, &topic, records).await;
    }
    let end = RECORDS as u64;

    match enforcement {
        Retention::NotEnforced => {
            let info = log.admin().describe_topic(&topic).await.expect("describe");
            assert_eq!(info.partitions[0].end_offset, end);
        }
        Retention::Enforced => {
            let deadline = tokio::time::Instant::now() + WAIT;
            let start = loop {
                let info = log.admin().describe_topic(&topic).await.expect("describe");
                assert_eq!(
                    info.partitions[0].end_offset, end,
                    "retention never drops new records"
                );
                if info.partitions[0].start_offset > 0 {
                    break info.partitions[0].start_offset;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{end} records of 4 KiB never exceeded retention_bytes {LIMIT} within {WAIT:?}"
                );
                tokio::time::sleep(POLL).await;
            };
            let mut c = consumer(
                log,
                &[&topic],
                &format!("{topic_prefix}.reader"),
                OffsetReset::Earliest,
            )
            .await;
            let read = read_n(&mut c, (end - start) as usize).await;
            let offsets = &by_partition(&read)[&0];
            assert!(
                offsets[0] >= start,
                "reads start at the retained start {start}, got {}",
                offsets[0]
            );
            assert_eq!(*offsets.last().unwrap(), end - 1);
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "retained offsets are dense"
            );
        }
    }
}
