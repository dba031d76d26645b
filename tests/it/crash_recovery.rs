//! Durability of `helios up` under SIGKILL: every event acknowledged with `202` is in the
//! log exactly once and in order per partition, across several crashes at random moments.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::Helios;
use helios_log::embedded::EmbeddedLog;
use helios_log::{ConsumerConfig, partition_for_key};
use helios_schemas::{EventCodec, Registry};
use rand::Rng;
use serde_json::json;

const SENDERS: usize = 3;
const BATCH: usize = 50;
const CRASHES: usize = 4;

/// One sender: posts batches of events with ids `s{sender}-{seq}` until told to stop,
/// recording which were acknowledged. Failed requests are not retried, so an event id is
/// written at most by one request.
async fn sender(
    id: usize,
    url: Arc<Mutex<String>>,
    key: String,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let client = crate::common::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut seq = 0usize;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let events: Vec<_> = (seq..seq + BATCH)
            .map(|s| {
                json!({"specversion": "1.0", "id": format!("s{id}-{s}"), "source": "crash-test",
                       "type": "test.event", "subject": format!("subject-{}", s % 7),
                       "sender": id.to_string(), "seq": s.to_string()})
            })
            .collect();
        seq += BATCH;
        let endpoint = url.lock().unwrap().clone();
        match client
            .post(endpoint)
            .bearer_auth(&key)
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::to_vec(&events).unwrap())
            .send()
            .await
        {
            Ok(r) if r.status() == 202 => {
                let ids = events.iter().map(|e| e["id"].as_str().unwrap().to_string());
                acked.lock().unwrap().extend(ids);
            }
            // Down or mid-crash: those events are unacknowledged; wait for the restart.
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_sigkill_exactly_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Helios::up(&data, &[]).await;
    let url = Arc::new(Mutex::new(server.url("/v1/events")));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|i| {
            tokio::spawn(sender(
                i,
                url.clone(),
                server.key.clone(),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut rng = rand::rng();
    for _ in 0..CRASHES {
        // Let traffic flow, then kill at a random moment mid-stream.
        let before = acked.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
        while acked.lock().unwrap().len() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill();
        server = Helios::up(&data, &[]).await;
        *url.lock().unwrap() = server.url("/v1/events");
    }
    // Traffic on the last incarnation too, then a clean stop.
    let before = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < before + SENDERS * BATCH {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    server.stop();

    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= (CRASHES + 1) * BATCH,
        "the test streamed too little: {}",
        acked.len()
    );

    // Read everything back from the data dir.
    let log = EmbeddedLog::open(data.join("log"), Default::default())
        .unwrap()
        .log();
    let registry = Arc::new(Registry::open_read_only(&data.join("registry")).unwrap());
    let codec = EventCodec::with_source(0, registry);
    let partitions = log
        .admin()
        .describe_topic("helios.events")
        .await
        .unwrap()
        .partitions
        .len() as u32;
    let mut consumer = log
        .consumer(&["helios.events"], ConsumerConfig::new("verify"))
        .await
        .unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (partition, sender) -> last seq, to check order per partition.
    let mut last: BTreeMap<(u32, String), i64> = BTreeMap::new();
    let mut next_offset: BTreeMap<u32, u64> = BTreeMap::new();
    loop {
        let batch = consumer
            .poll(10_000, Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for r in batch {
            let expected = next_offset.entry(r.partition).or_insert(0);
            assert_eq!(
                r.offset, *expected,
                "offsets are dense in partition {}",
                r.partition
            );
            *expected += 1;
            let e = codec.decode_async(&r.value).await.unwrap();
            assert_eq!(
                r.partition,
                partition_for_key(e.subject.as_bytes(), partitions)
            );
            if e.source != "crash-test" {
                // The default sources (host metrics, self probe) write events of their own.
                continue;
            }
            *seen.entry(e.id.clone()).or_default() += 1;
            let seq: i64 = e.attrs["seq"].parse().unwrap();
            let prev = last.insert((r.partition, e.attrs["sender"].clone()), seq);
            assert!(
                prev.is_none_or(|p| p < seq),
                "order broken in partition {}: {prev:?} then {seq}",
                r.partition
            );
        }
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let dupes: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "duplicated events: {:?}",
        &dupes[..dupes.len().min(5)]
    );
    let acked_set: HashSet<&String> = acked.iter().collect();
    assert_eq!(acked_set.len(), acked.len());
}
