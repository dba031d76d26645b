//! Throughput of the Event codec (hand-written vs apache-avro) and of CloudEvents parsing.
//! Run: `cargo bench -p helios-schemas --bench avro`; results go to `bench/RESULTS.md`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use helios_schemas::cloudevents::{parse_body, to_cloudevent_string};
use helios_schemas::codec::event_binary::{decode_event_body, encode_event_body};
use helios_schemas::{AvroRecord, Event, EventCodec};

/// A typical event: about 200 bytes of Avro with 3 attrs and a value.
fn event(i: u64) -> Event {
    Event {
        id: format!("9f1c2a7e-5b3d-4e8a-a1f0-{i:012}"),
        source: "https://github.com/acme/helios".into(),
        kind: "com.github.workflow_run.completed".into(),
        subject: "acme/helios".into(),
        time: 1_763_900_000_000_000 + i as i64,
        received_at: 1_763_900_000_000_500 + i as i64,
        attrs: BTreeMap::from([
            ("branch".to_string(), "main".to_string()),
            ("conclusion".to_string(), "success".to_string()),
            ("workflow".to_string(), "ci".to_string()),
        ]),
        value: Some(183.25),
        payload: Some(r#"{"run_id":123456,"attempt":1}"#.into()),
    }
}

fn avro(c: &mut Criterion) {
    const N: u64 = 1000;
    let events: Vec<Event> = (0..N).map(event).collect();
    let codec = EventCodec::new(1);
    let framed: Vec<_> = events.iter().map(|e| codec.encode(e)).collect();
    let body_len = framed[0].len() - 5;

    let mut g = c.benchmark_group(format!("event_avro_{body_len}B"));
    g.throughput(Throughput::Elements(N));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("encode_hand_written", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            for e in &events {
                out.clear();
                codec.encode_into(e, &mut out);
                black_box(&out);
            }
        })
    });
    g.bench_function("decode_hand_written", |b| {
        b.iter(|| {
            for f in &framed {
                black_box(codec.decode(f).ok());
            }
        })
    });
    let writer = GenericDatumWriter::builder(Event::schema()).build().ok();
    g.bench_function("encode_apache_avro_serde", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            for e in &events {
                out.clear();
                if let Some(w) = &writer {
                    black_box(w.write_ser(&mut out, e).ok());
                }
            }
        })
    });
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut v = Vec::new();
            encode_event_body(e, &mut v);
            v
        })
        .collect();
    let reader = GenericDatumReader::builder(Event::schema()).build().ok();
    g.bench_function("decode_apache_avro_value", |b| {
        b.iter(|| {
            for body in &bodies {
                if let Some(r) = &reader {
                    let v = r.read_value(&mut &body[..]).ok();
                    black_box(v.and_then(|v| apache_avro::from_value::<Event>(&v).ok()));
                }
            }
        })
    });
    g.bench_function("decode_body_only", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(decode_event_body(body).ok());
            }
        })
    });
    g.finish();
}

/// NDJSON bodies of 1000 CloudEvents (~250 bytes each), parsed as the HTTP ingest does.
fn cloudevents(c: &mut Criterion) {
    const N: u64 = 1000;
    let mut ndjson = String::new();
    let mut batch = String::from("[");
    for i in 0..N {
        let mut e = event(i);
        e.payload = Some(r#"{"run_id":123456,"attempt":1}"#.into());
        let line = to_cloudevent_string(&e);
        ndjson.push_str(&line);
        ndjson.push('\n');
        if i > 0 {
            batch.push(',');
        }
        batch.push_str(&line);
    }
    batch.push(']');
    let item_len = ndjson.len() as u64 / N;

    let mut g = c.benchmark_group(format!("cloudevents_json_{item_len}B"));
    g.throughput(Throughput::Elements(N));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("parse_ndjson", |b| {
        b.iter(|| {
            black_box(parse_body(
                Some("application/x-ndjson"),
                ndjson.as_bytes(),
                0,
            ))
        })
    });
    g.bench_function("parse_batch", |b| {
        b.iter(|| {
            black_box(parse_body(
                Some("application/cloudevents-batch+json"),
                batch.as_bytes(),
                0,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, avro, cloudevents);
criterion_main!(benches);
