//! The ingest route through `Router::oneshot`, over a real embedded log.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
use helios_log::{ConsumerConfig, Log, TopicSpec, partition_for_key};
use helios_schemas::{EventCodec, RecordCodec};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{HttpIngest, HttpIngestConfig};
use crate::runtime::{Emitter, EmitterConfig, SourceHandle};

const SCHEMA_ID: u32 = 7;

struct Fixture {
    _dir: tempfile::TempDir,
    log: Log,
    ingest: HttpIngest,
}

fn emitter(log: &Log, events_topic: &str) -> Emitter {
    let config = EmitterConfig {
        events_topic: events_topic.to_string(),
        ..EmitterConfig::default()
    };
    Emitter::new(
        config,
        log.producer(),
        EventCodec::new(SCHEMA_ID),
        RecordCodec::new(SCHEMA_ID + 1),
    )
}

async fn fixture(config: HttpIngestConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default())
        .unwrap()
        .log();
    log.admin()
        .create_topic(&TopicSpec::new("helios.events", 3))
        .await
        .unwrap();
    let ingest = HttpIngest::new(
        config,
        emitter(&log, "helios.events"),
        SourceHandle::new("http", "http"),
    );
    Fixture {
        _dir: dir,
        log,
        ingest,
    }
}

async fn post(
    ingest: &HttpIngest,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value, Option<String>) {
    let headers: Vec<(&str, &[u8])> = content_type
        .map(|ct| ("content-type", ct.as_bytes()))
        .into_iter()
        .collect();
    post_with(ingest, &headers, body).await
}

/// `POST /v1/events` with these headers (raw bytes, so tests can send what is not text).
async fn post_with(
    ingest: &HttpIngest,
    headers: &[(&str, &[u8])],
    body: impl Into<Body>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = Request::post("/v1/events");
    for (name, value) in headers {
        req = req.header(*name, HeaderValue::from_bytes(value).unwrap());
    }
    let resp = ingest
        .router()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("JSON body, got {bytes:?}"));
    (status, value, retry)
}

fn event(id: &str, subject: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "ci", "type": "ci.run", "subject": subject, "value": 3.5})
}

async fn read_all(log: &Log) -> Vec<helios_log::ConsumedRecord> {
    let mut c = log
        .consumer(&["helios.events"], ConsumerConfig::new("check"))
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = c.poll(1000, Duration::from_millis(100)).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[tokio::test]
async fn batch_accepts_good_items_and_lists_bad_ones() {
    let f = fixture(HttpIngestConfig::default()).await;
    let body = json!([event("a", "helios"), {"specversion": "1.0", "source": "ci", "type": "x"}, event("c", "other")]);
    let (status, answer, _) = post(
        &f.ingest,
        Some("application/cloudevents-batch+json"),
        body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"].as_array().unwrap().len(), 1);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(answer["rejected"][0]["field"], "id");

    let records = read_all(&f.log).await;
    assert_eq!(records.len(), 2);
    let codec = EventCodec::new(SCHEMA_ID);
    for r in &records {
        let e = codec.decode(&r.value).unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(e.subject.as_bytes()),
            "keyed by subject"
        );
        assert_eq!(r.partition, partition_for_key(e.subject.as_bytes(), 3));
        assert_eq!(e.kind, "ci.run");
        assert_eq!(e.value, Some(3.5));
    }
    assert_eq!(
        f.ingest
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn structured_and_ndjson_are_accepted() {
    let f = fixture(HttpIngestConfig::default()).await;
    let (status, answer, _) = post(
        &f.ingest,
        Some("application/cloudevents+json"),
        event("s1", "helios").to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::ACCEPTED, json!(1))
    );
    let ndjson = format!("{}\n{}\n", event("n1", "a"), event("n2", "b"));
    let (status, answer, _) = post(&f.ingest, Some("application/x-ndjson"), ndjson).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (StatusCode::ACCEPTED, json!(2))
    );
    assert_eq!(read_all(&f.log).await.len(), 3);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_write_nothing() {
    let f = fixture(HttpIngestConfig {
        max_body_bytes: 2048,
        ..HttpIngestConfig::default()
    })
    .await;
    let cases: Vec<(Option<&str>, String, StatusCode, &str)> = vec![
        (
            Some("text/plain"),
            event("x", "s").to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not supported",
        ),
        (
            Some("application/cloudevents-batch+json"),
            "[{\"id\": ".into(),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            Some("application/cloudevents+json"),
            json!({"id": "1"}).to_string(),
            StatusCode::BAD_REQUEST,
            "no event",
        ),
        (
            Some("application/cloudevents-batch+json"),
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "no events",
        ),
        (
            Some("application/cloudevents-batch+json"),
            json!(vec![event("big", "s"); 40]).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit of 2048 bytes",
        ),
    ];
    for (ct, body, want, needle) in cases {
        let (status, answer, _) = post(&f.ingest, ct, body.clone()).await;
        assert_eq!(status, want, "{ct:?} {body}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    }
    // A single structured event without an id names the field.
    let (_, answer, _) = post(
        &f.ingest,
        Some("application/cloudevents+json"),
        json!({"specversion": "1.0", "source": "s", "type": "t"}).to_string(),
    )
    .await;
    assert_eq!(answer["rejected"][0]["field"], "id");
    assert!(read_all(&f.log).await.is_empty());
}

#[tokio::test]
async fn over_capacity_answers_503_with_retry_after() {
    let f = fixture(HttpIngestConfig {
        max_in_flight: 0,
        ..HttpIngestConfig::default()
    })
    .await;
    let (status, answer, retry) = post(
        &f.ingest,
        Some("application/cloudevents+json"),
        event("a", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(answer["error"].as_str().unwrap().contains("capacity"));
}

#[tokio::test]
async fn log_failure_is_503_and_not_acknowledged() {
    let f = fixture(HttpIngestConfig::default()).await;
    // An ingest pointed at a topic that does not exist: the append fails.
    let ingest = HttpIngest::new(
        HttpIngestConfig::default(),
        emitter(&f.log, "nope"),
        SourceHandle::new("http", "http"),
    );
    let (status, answer, _) = post(
        &ingest,
        Some("application/cloudevents+json"),
        event("a", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("nothing was acknowledged")
    );
}

#[tokio::test]
async fn paused_source_answers_503_and_resumes() {
    let f = fixture(HttpIngestConfig::default()).await;
    let handle = SourceHandle::new("http", "http");
    let ingest = HttpIngest::new(
        HttpIngestConfig::default(),
        emitter(&f.log, "helios.events"),
        handle.clone(),
    );
    handle.pause();
    let (status, answer, retry) = post(
        &ingest,
        Some("application/cloudevents+json"),
        event("p", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some());
    assert!(answer["error"].as_str().unwrap().contains("paused"));
    handle.resume();
    let (status, _, _) = post(
        &ingest,
        Some("application/cloudevents+json"),
        event("p", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(handle.status().events_emitted, 1);
}

/// An item dated further ahead than `max_future` is rejected by index, with field `time`
/// and a reason giving how far ahead it is and the limit; the others are appended, with
/// their receive time kept. The source's own `max_future` overrides the default.
#[tokio::test]
async fn items_dated_too_far_ahead_are_rejected_with_the_reason() {
    let f = fixture(HttpIngestConfig::default()).await;
    let soon = chrono::Utc::now() + chrono::Duration::minutes(5);
    let late = chrono::Utc::now() + chrono::Duration::minutes(30);
    let mut far = event("far", "helios");
    far["time"] = json!("9999-01-01T00:00:00Z");
    let mut near = event("near", "helios");
    near["time"] = json!(soon.to_rfc3339());
    let mut half_hour = event("half-hour", "helios");
    half_hour["time"] = json!(late.to_rfc3339());
    // NDJSON, with a blank line: indexes are line numbers, as for other bad items.
    let body = format!("{near}\n\n{far}\n{half_hour}\n");
    let before = super::now_micros();
    let (status, answer, _) = post(&f.ingest, Some("application/x-ndjson"), body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{answer}");
    assert_eq!(rejected[0]["index"], 2);
    assert_eq!(rejected[0]["field"], "time");
    let reason = rejected[0]["error"].as_str().unwrap();
    assert!(
        reason.starts_with("event time 9999-01-01T00:00:00Z is 797")
            && reason.contains(" years ahead of the time Helios received it (")
            && reason.contains("the limit is 15m (max_future)"),
        "{reason}"
    );
    assert_eq!(rejected[1]["index"], 3);
    let reason = rejected[1]["error"].as_str().unwrap();
    assert!(
        reason.contains(" is 30m") || reason.contains(" is 29m"),
        "{reason}"
    );

    let records = read_all(&f.log).await;
    assert_eq!(records.len(), 1);
    let e = EventCodec::new(SCHEMA_ID)
        .decode(&records[0].value)
        .unwrap();
    assert_eq!(e.id, "near");
    assert!(e.received_at >= before && e.received_at <= super::now_micros());

    // Only bad items: 400 with the list.
    let (status, answer, _) = post(
        &f.ingest,
        Some("application/cloudevents+json"),
        far.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["rejected"][0]["field"], "time");

    // A source allowing an hour (`max_future = "1h"`, set on its handle by
    // `spec::build`) takes the half-hour item.
    let wide = fixture(HttpIngestConfig::default()).await;
    wide.ingest
        .inner
        .source
        .set_max_future(Some(Duration::from_secs(3600)));
    let (status, answer, _) = post(&wide.ingest, Some("application/x-ndjson"), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["index"], 2);
    let reason = answer["rejected"][0]["error"].as_str().unwrap();
    assert!(reason.contains("the limit is 1h (max_future)"), "{reason}");
}

/// The headers of a binary-mode event as the CloudEvents SDKs send it.
fn binary_headers<'a>(id: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
    [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "ci"),
        ("ce-type", "ci.run"),
    ]
    .iter()
    .chain(extra)
    .map(|(n, v)| (*n, v.as_bytes()))
    .collect()
}

#[tokio::test]
async fn binary_mode_is_appended_as_its_structured_form() {
    let f = fixture(HttpIngestConfig::default()).await;
    let headers = binary_headers(
        "b1",
        &[
            ("content-type", "application/json"),
            ("ce-subject", "helios%20web"),
            ("ce-time", "2025-01-02T03:04:05Z"),
            ("ce-branch", "m%C3%A1in"),
            ("ce-value", "3.5"),
        ],
    );
    let (status, answer, _) = post_with(&f.ingest, &headers, r#"{"ok":true}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer, json!({"accepted": 1, "rejected": []}));
    let structured = json!({"specversion": "1.0", "id": "b1", "source": "ci", "type": "ci.run",
        "subject": "helios web", "time": "2025-01-02T03:04:05Z", "branch": "máin", "value": 3.5,
        "datacontenttype": "application/json", "data": {"ok": true}});
    let (status, _, _) = post(
        &f.ingest,
        Some("application/cloudevents+json"),
        structured.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let codec = EventCodec::new(SCHEMA_ID);
    let records = read_all(&f.log).await;
    let mut events: Vec<_> = records
        .iter()
        .map(|r| {
            assert_eq!(
                r.key.as_deref(),
                Some(&b"helios web"[..]),
                "keyed by subject"
            );
            let mut e = codec.decode(&r.value).unwrap();
            e.received_at = 0;
            e
        })
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events.pop(), events.pop(), "binary and structured differ");
}

#[tokio::test]
async fn binary_mode_faults_name_the_field_and_write_nothing() {
    let f = fixture(HttpIngestConfig {
        max_body_bytes: 64,
        ..HttpIngestConfig::default()
    })
    .await;
    let wrong_version: Vec<(&str, &[u8])> = vec![
        ("ce-specversion", b"0.3"),
        ("ce-id", b"x"),
        ("ce-source", b"s"),
        ("ce-type", b"t"),
    ];
    // (headers, field named, message fragment)
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (wrong_version, "specversion", "must be \"1.0\""),
        (
            binary_headers("x", &[("ce-datacontenttype", "text/plain")]),
            "datacontenttype",
            "Content-Type header",
        ),
        (
            binary_headers("x", &[("ce-time", "2999-01-01T00:00:00Z")]),
            "time",
            "ahead",
        ),
        (
            binary_headers("x", &[("content-type", "application/json")])
                .into_iter()
                .chain([("ce-subject", &b"caf\xe9"[..])])
                .collect(),
            "subject",
            "not UTF-8",
        ),
    ];
    for (headers, field, fragment) in cases {
        let (status, answer, _) = post_with(&f.ingest, &headers, "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"], "no event in the request is valid");
        let item = &answer["rejected"][0];
        assert_eq!(
            (item["index"].clone(), item["field"].clone()),
            (json!(0), json!(field)),
            "{answer}"
        );
        assert!(
            item["error"].as_str().unwrap().contains(fragment),
            "{answer}"
        );
    }
    // The body limit holds for the data of a binary-mode event too.
    let (status, answer, _) = post_with(
        &f.ingest,
        &binary_headers("x", &[("content-type", "text/plain")]),
        "x".repeat(65),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(read_all(&f.log).await.is_empty());
}

#[tokio::test]
async fn ce_headers_without_specversion_are_told_what_is_missing() {
    let f = fixture(HttpIngestConfig::default()).await;
    let mut headers = binary_headers("x", &[("content-type", "application/json")]);
    headers.remove(0);
    // application/json without ce-specversion is read as a structured event: the data
    // `{}` is not one, and the answer says what would have made it binary mode.
    let (status, answer, _) = post_with(&f.ingest, &headers, "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no ce-specversion"),
        "{answer}"
    );
    assert_eq!(answer["rejected"][0]["field"], "specversion");
    // Another content type keeps its 415, with the same note.
    headers[3] = ("content-type", b"text/plain");
    let (status, answer, _) = post_with(&f.ingest, &headers, "hi").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no ce-specversion"),
        "{answer}"
    );
    // Without ce-* headers there is no note.
    let (status, answer, _) = post(&f.ingest, Some("text/plain"), "hi").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        !answer["error"]
            .as_str()
            .unwrap()
            .contains("no ce-specversion"),
        "{answer}"
    );
    // A Content-Type that is not text is refused, not guessed at.
    let (status, _, _) = post_with(&f.ingest, &[("content-type", b"text/pl\xe4in")], "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(read_all(&f.log).await.is_empty());
}

/// An ingest over `log` whose appends pass `guard` first.
fn guarded(log: &Log, guard: crate::runtime::DiskGuard, source: SourceHandle) -> HttpIngest {
    let config = EmitterConfig {
        disk: Some(guard),
        ..EmitterConfig::default()
    };
    let emitter = Emitter::new(
        config,
        log.producer(),
        EventCodec::new(SCHEMA_ID),
        RecordCodec::new(SCHEMA_ID + 1),
    );
    HttpIngest::new(HttpIngestConfig::default(), emitter, source)
}

fn says_disk_full_and_what_to_do(answer: &Value) {
    let text = answer["error"].as_str().unwrap();
    for needle in [
        "full",
        "nothing was written",
        "Free space",
        "resumes by itself",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text}");
    }
}

/// Below the reserve the request is refused before anything is written, with 507, the
/// reason and Retry-After, and counted as `disk_full`; with room it is taken.
#[tokio::test]
async fn a_nearly_full_disk_is_507_with_the_reason_and_nothing_written() {
    let f = fixture(HttpIngestConfig::default()).await;
    let handle = SourceHandle::new("http", "http");
    let full = guarded(
        &f.log,
        crate::runtime::DiskGuard::new(f._dir.path(), u64::MAX),
        handle.clone(),
    );
    let (status, answer, retry) = post(
        &full,
        Some("application/cloudevents+json"),
        event("refused", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert_eq!(retry.as_deref(), Some("10"));
    says_disk_full_and_what_to_do(&answer);
    assert!(answer["error"].as_str().unwrap().contains("nearly full"));
    assert_eq!(
        handle
            .requests()
            .requests(crate::runtime::RequestOutcome::DiskFull),
        1
    );
    assert_eq!(handle.status().events_emitted, 0);

    let roomy = guarded(
        &f.log,
        crate::runtime::DiskGuard::new(f._dir.path(), 0),
        handle.clone(),
    );
    let (status, _, _) = post(
        &roomy,
        Some("application/cloudevents+json"),
        event("taken", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let codec = EventCodec::new(SCHEMA_ID);
    let ids: Vec<String> = read_all(&f.log)
        .await
        .iter()
        .map(|r| codec.decode(&r.value).unwrap().id)
        .collect();
    assert_eq!(ids, ["taken"], "the refused event was never written");
}

/// A log that runs out of space on the write itself (the free-space check raced another
/// writer): the same 507 and advice, not a generic 503.
#[tokio::test]
async fn a_write_that_runs_out_of_space_is_the_same_507() {
    #[derive(Debug)]
    struct FullDisk;
    #[async_trait::async_trait]
    impl helios_log::LogProducer for FullDisk {
        async fn append(
            &self,
            _: &str,
            _: Vec<helios_log::Record>,
        ) -> helios_log::Result<Vec<helios_log::RecordPosition>> {
            Err(helios_log::LogError::Io {
                path: "/data/log/topics/helios.events/0/00000000000000000000.log".into(),
                source: std::io::ErrorKind::StorageFull.into(),
            })
        }
    }
    let handle = SourceHandle::new("http", "http");
    let emitter = Emitter::new(
        EmitterConfig::default(),
        std::sync::Arc::new(FullDisk),
        EventCodec::new(SCHEMA_ID),
        RecordCodec::new(SCHEMA_ID + 1),
    );
    let ingest = HttpIngest::new(HttpIngestConfig::default(), emitter, handle.clone());
    let (status, answer, retry) = post(
        &ingest,
        Some("application/cloudevents+json"),
        event("a", "s").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert_eq!(retry.as_deref(), Some("10"));
    says_disk_full_and_what_to_do(&answer);
    assert_eq!(
        handle
            .requests()
            .requests(crate::runtime::RequestOutcome::DiskFull),
        1
    );
}
