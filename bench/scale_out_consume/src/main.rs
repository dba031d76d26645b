//! The raw rdkafka consume rate of one topic: a plain `BaseConsumer` (no decoding, no
//! processing, payloads only touched to count bytes) reading every partition from the
//! beginning to the end it had at the start. `bench/scale_out.sh` runs it next to the
//! pipeline processes on the same topic, as the ceiling their throughput is compared to.
//!
//! Usage: cargo run --release --manifest-path bench/scale_out_consume/Cargo.toml -- \
//!          <bootstrap servers> <topic>
//! Prints one JSON line: records, bytes, seconds, records_per_s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [servers, topic] = args.as_slice() else {
        return Err("usage: scale_out_consume <bootstrap servers> <topic>".into());
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set(
            "group.id",
            format!("scale-out-consume-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let timeout = Duration::from_secs(20);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions at {servers}").into());
    }
    // Manual assignment: no group protocol, just the fetch path.
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        }
    }
    let total: i64 = ends
        .iter()
        .map(|(p, high)| {
            let low = consumer
                .fetch_watermarks(topic, *p, timeout)
                .map(|w| w.0)
                .unwrap_or(0);
            high - low
        })
        .sum();
    consumer.assign(&tpl)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut started: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("read {records} of {total} records in 10 minutes").into());
        }
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        // The clock starts with the first record, as for the pipelines (group joins and
        // connection setup are not consumption).
        started.get_or_insert_with(Instant::now);
        records += 1;
        bytes += msg.payload().map_or(0, |p| p.len() as u64);
        if let Some(end) = ends.get(&msg.partition())
            && msg.offset() + 1 >= *end
        {
            ends.remove(&msg.partition());
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!(
        "{{\"records\":{records},\"bytes\":{bytes},\"seconds\":{secs:.3},\"records_per_s\":{:.0}}}",
        records as f64 / secs.max(1e-9)
    );
    Ok(())
}
