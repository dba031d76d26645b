//! OpenTelemetry end to end (issue 7, done-when 2): the real `helios up` exports to an
//! OTLP/HTTP receiver run by this test, and the spans of one event are found from its
//! ingest request to its sink insert, joined by trace ids and span links:
//!
//! - the request sends a W3C `traceparent`, so its `ingest.request` span (and the
//!   `log.append` under it) is in the caller's trace;
//! - the `pipeline.batch` span that processed the event links to that ingest span (the
//!   context travelled in the record's headers);
//! - the `sink.insert` span that stored the event in `events` links to it too;
//! - the window result the batch wrote carries the batch's context, so the
//!   `sink.insert` that stored it in `agg_runs` links to the batch span.
//!
//! And the `/metrics` families arrive as OTLP metrics with their values, while the log
//! lines on stderr are JSON objects (`--log-format json`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Helios;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "runs"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { runs = "count(*)" }
"#;

/// A span as received, with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

/// A metric data point as received: (metric name, attributes, value).
type Point = (String, Vec<(String, String)>, f64);

/// What the receiver got: every span, and every metric point.
#[derive(Debug, Default)]
struct Inbox {
    spans: Vec<Received>,
    points: Vec<Point>,
    /// Request bodies that did not decode (must stay empty).
    garbage: Vec<String>,
    /// The `Authorization` header of each trace export that had one.
    authorizations: Vec<String>,
}

type Shared = Arc<Mutex<Inbox>>;

fn text(kv: &[KeyValue], key: &str) -> Option<String> {
    let v = kv
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

async fn traces(
    State(inbox): State<Shared>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        inbox.lock().unwrap().garbage.push("traces".into());
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut inbox = inbox.lock().unwrap();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        inbox
            .authorizations
            .push(auth.to_str().unwrap_or_default().to_owned());
    }
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| text(&r.attributes, "service.name"))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                inbox.spans.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    protobuf(ExportTraceServiceResponse::default().encode_to_vec())
}

async fn metrics(State(inbox): State<Shared>, body: Bytes) -> impl IntoResponse {
    let Ok(req) = ExportMetricsServiceRequest::decode(body) else {
        inbox.lock().unwrap().garbage.push("metrics".into());
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut inbox = inbox.lock().unwrap();
    for rm in req.resource_metrics {
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let points = match m.data {
                    Some(metric::Data::Sum(s)) => s.data_points,
                    Some(metric::Data::Gauge(g)) => g.data_points,
                    _ => Vec::new(),
                };
                for p in points {
                    let value = match p.value {
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        None => continue,
                    };
                    let attrs = p
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&p.attributes, &kv.key).unwrap()))
                        .collect();
                    inbox.points.push((m.name.clone(), attrs, value));
                }
            }
        }
    }
    protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
}

fn protobuf(body: Vec<u8>) -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

/// The OTLP/HTTP receiver's routes and what they receive.
fn collector() -> (Router, Shared) {
    let inbox = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(inbox.clone());
    (app, inbox)
}

/// The OTLP/HTTP receiver on a loopback port.
async fn receiver() -> (SocketAddr, Shared) {
    let (app, inbox) = collector();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, inbox)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (generously: the stages and the exporter run at their own pace) until `find`
/// returns something from the inbox.
async fn wait_for<T>(inbox: &Shared, what: &str, find: impl Fn(&Inbox) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        {
            let inbox = inbox.lock().unwrap();
            assert!(
                inbox.garbage.is_empty(),
                "undecodable OTLP requests: {:?}",
                inbox.garbage
            );
            if let Some(found) = find(&inbox) {
                return found;
            }
            if Instant::now() >= deadline {
                let names: Vec<_> = inbox
                    .spans
                    .iter()
                    .map(|r| {
                        (
                            r.span.name.clone(),
                            hex(&r.span.trace_id),
                            r.span.links.len(),
                        )
                    })
                    .collect();
                panic!("{what} never arrived; spans so far: {names:#?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Spans named `name` linked to the span `(trace, span)`.
fn linked_to<'a>(
    inbox: &'a Inbox,
    name: &'a str,
    trace: &'a [u8],
    span: &'a [u8],
) -> impl Iterator<Item = &'a Received> + 'a {
    inbox.spans.iter().filter(move |r| {
        r.span.name == name
            && r.span
                .links
                .iter()
                .any(|l| l.trace_id == trace && l.span_id == span)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_followed_from_ingest_to_sink_over_otlp() {
    let (otlp, inbox) = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let endpoint = format!("http://{otlp}");
    let server = Helios::up(
        &data,
        &[
            "--spec",
            spec.to_str().unwrap(),
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval",
            "200ms",
            "--log-format",
            "json",
        ],
    )
    .await;

    // The event, sent by a caller with its own trace; then, in another trace, an event an
    // hour later on the same subject, whose watermark closes the event's window.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let event = json!({"specversion": "1.0", "id": "otel-1", "source": "ci", "type": "ci.run",
        "subject": "repo-otel", "time": "2020-01-01T00:00:10Z"});
    let resp = server
        .post("/v1/events")
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let closer = json!({"specversion": "1.0", "id": "otel-2", "source": "ci", "type": "ci.run",
        "subject": "repo-otel", "time": "2020-01-01T01:00:00Z"});
    let resp = server
        .post("/v1/events")
        .header("content-type", "application/cloudevents+json")
        .body(closer.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    // Ingest: the request span continues the caller's trace; the append is its child.
    let ingest = wait_for(&inbox, "the ingest span in the caller's trace", |i| {
        i.spans
            .iter()
            .find(|r| {
                r.span.name == "ingest.request"
                    && hex(&r.span.trace_id) == caller_trace
                    && hex(&r.span.parent_span_id) == caller_span
            })
            .cloned()
    })
    .await;
    assert_eq!(ingest.service, "helios-up");
    assert_eq!(
        text(&ingest.span.attributes, "accepted").as_deref(),
        Some("1")
    );
    assert_eq!(
        text(&ingest.span.attributes, "status").as_deref(),
        Some("202")
    );
    let append = wait_for(&inbox, "the log append under the ingest span", |i| {
        i.spans
            .iter()
            .find(|r| r.span.name == "log.append" && r.span.parent_span_id == ingest.span.span_id)
            .cloned()
    })
    .await;
    assert_eq!(append.span.trace_id, ingest.span.trace_id);
    assert_eq!(
        text(&append.span.attributes, "topic").as_deref(),
        Some("helios.events")
    );
    assert_eq!(
        text(&append.span.attributes, "records").as_deref(),
        Some("1")
    );
    let partition = text(&append.span.attributes, "partition").expect("partition attribute");
    let offset = text(&append.span.attributes, "first_offset").expect("offset attribute");

    // Pipeline: the batch that processed the event links to the ingest span, with the
    // record's position on the link.
    let (t, s) = (&ingest.span.trace_id, &ingest.span.span_id);
    let batch = wait_for(&inbox, "a pipeline batch linked to the ingest span", |i| {
        linked_to(i, "pipeline.batch", t, s).next().cloned()
    })
    .await;
    let link = batch
        .span
        .links
        .iter()
        .find(|l| l.trace_id == *t && l.span_id == *s)
        .unwrap();
    assert_eq!(
        text(&link.attributes, "messaging.destination.name").as_deref(),
        Some("helios.events")
    );
    assert_eq!(
        text(&link.attributes, "messaging.destination.partition.id"),
        Some(partition)
    );
    assert_eq!(
        text(&link.attributes, "messaging.kafka.offset"),
        Some(offset)
    );
    assert_ne!(
        batch.span.trace_id, ingest.span.trace_id,
        "a batch has many parents: links, not a parent"
    );

    // Sink: the insert that stored the event in `events` links to the ingest span.
    let insert = wait_for(
        &inbox,
        "a sink insert of `events` linked to the ingest span",
        |i| {
            linked_to(i, "sink.insert", t, s)
                .find(|r| {
                    text(&r.span.attributes, "tables")
                        .is_some_and(|tables| tables.split(',').any(|x| x == "events"))
                })
                .cloned()
        },
    )
    .await;
    assert!(text(&insert.span.attributes, "rows").is_some());

    // The window result: written by the batch that processed the closer (linked to the
    // closer's ingest span), stored by an insert of `agg_runs` linked to that batch.
    let (result_batch, closer_ingest) = wait_for(&inbox, "the batch that closed the window", |i| {
        i.spans
            .iter()
            .filter(|r| {
                r.span.name == "pipeline.batch"
                    && text(&r.span.attributes, "results").is_some_and(|n| n != "0")
            })
            .find_map(|b| {
                let ingest = i.spans.iter().find(|r| {
                    r.span.name == "ingest.request"
                        && b.span
                            .links
                            .iter()
                            .any(|l| l.trace_id == r.span.trace_id && l.span_id == r.span.span_id)
                })?;
                Some((b.clone(), ingest.clone()))
            })
    })
    .await;
    assert_eq!(
        text(&closer_ingest.span.attributes, "accepted").as_deref(),
        Some("1")
    );
    let (bt, bs) = (&result_batch.span.trace_id, &result_batch.span.span_id);
    let agg_insert = wait_for(
        &inbox,
        "a sink insert of `agg_runs` linked to the batch",
        |i| {
            linked_to(i, "sink.insert", bt, bs)
                .find(|r| {
                    text(&r.span.attributes, "tables")
                        .is_some_and(|tables| tables.split(',').any(|x| x == "agg_runs"))
                })
                .cloned()
        },
    )
    .await;
    let agg_link = agg_insert
        .span
        .links
        .iter()
        .find(|l| l.trace_id == *bt && l.span_id == *bs)
        .unwrap();
    assert_eq!(
        text(&agg_link.attributes, "messaging.destination.name").as_deref(),
        Some("helios.aggregates")
    );

    // Metrics: the `/metrics` counters arrive over OTLP with the same values.
    wait_for(&inbox, "the ingest counter over OTLP", |i| {
        i.points
            .iter()
            .find(|(name, attrs, value)| {
                name == "helios_ingest_events_total"
                    && attrs.contains(&("outcome".into(), "accepted".into()))
                    && *value == 2.0
            })
            .cloned()
    })
    .await;
    wait_for(&inbox, "the sink row counter over OTLP", |i| {
        i.points
            .iter()
            .find(|(name, attrs, value)| {
                name == "helios_sink_rows_total"
                    && attrs.contains(&("table".into(), "events".into()))
                    && *value == 2.0
            })
            .cloned()
    })
    .await;
    server.stop();

    // Every log line of the run is one JSON object with a level and a message.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Exporting traces and metrics over OTLP")),
        "the OTLP start line is logged:\n{log}"
    );
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}

/// The same export to a collector served over HTTPS with a certificate of a private CA
/// (issue 14, done-when 3), which requires mutual TLS: trusted through `--ca-file`,
/// admitted with the client certificate of OTel's standard variables
/// (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_KEY), with the
/// headers of OTEL_EXPORTER_OTLP_HEADERS (a hosted collector's API key); spans and
/// metrics arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_https_collector_behind_a_private_ca() {
    let ca = crate::common::tls::TestCa::new();
    let (app, inbox) = collector();
    let endpoint = ca.serve_mutual(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Helios::up_with_env(
        &data,
        &[
            "--spec",
            spec.to_str().unwrap(),
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval",
            "200ms",
            "--ca-file",
            ca.ca_file().to_str().unwrap(),
        ],
        &[
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                ca.client_cert_file().to_str().unwrap(),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                ca.client_key_file().to_str().unwrap(),
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20otlp-t0ken",
            ),
        ],
    )
    .await;
    let event = json!({"specversion": "1.0", "id": "otel-tls-1", "source": "ci",
        "type": "ci.run", "subject": "repo-tls", "time": "2020-01-01T00:00:10Z"});
    let resp = server
        .post("/v1/events")
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let span = wait_for(&inbox, "an ingest.request span over https", |inbox| {
        inbox
            .spans
            .iter()
            .find(|r| r.span.name == "ingest.request")
            .cloned()
    })
    .await;
    assert_eq!(span.service, "helios-up");
    assert_eq!(
        inbox
            .lock()
            .unwrap()
            .authorizations
            .first()
            .map(String::as_str),
        Some("Bearer otlp-t0ken"),
        "the exports carry OTEL_EXPORTER_OTLP_HEADERS"
    );
    wait_for(&inbox, "a metric point over https", |inbox| {
        inbox.points.first().cloned()
    })
    .await;
    server.stop();
}
