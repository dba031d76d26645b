//! The generic webhook route through `Router::oneshot` over a real embedded log.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use helios_schemas::Event;
use serde_json::json;

use super::mapping::{FieldSpec, FieldTable, MappingSpec, Preset, TimeUnit};
use super::*;
use crate::push::testing::{LogFixture, log_fixture, send};

const TOKEN: &str = "s3cret-t0ken";

fn router(f: &LogFixture, config: WebhookConfig) -> (Router, SourceHandle) {
    let handle = SourceHandle::new(&config.name, "webhook");
    let mut hooks = Webhooks::default();
    hooks
        .add(
            config,
            SecretString::new(TOKEN),
            f.emitter.clone(),
            handle.clone(),
        )
        .unwrap();
    (hooks.router(), handle)
}

fn post(name: &str, auth: Option<&str>, body: &str) -> Request<Body> {
    let mut req =
        Request::post(format!("/v1/webhooks/{name}")).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

fn bearer() -> Option<&'static str> {
    Some("Bearer s3cret-t0ken")
}

fn s(v: &str) -> FieldSpec {
    FieldSpec::Short(v.to_string())
}

fn us(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Events as written, with `received_at` zeroed (it is the wall clock).
async fn written(f: &LogFixture) -> Vec<Event> {
    f.events()
        .await
        .into_iter()
        .map(|mut e| {
            assert!(e.received_at > 0);
            e.received_at = 0;
            e
        })
        .collect()
}

fn deploy_config() -> WebhookConfig {
    WebhookConfig {
        name: "deploys".into(),
        mapping: Some(MappingSpec {
            id: Some(s("/deployment/id")),
            time: Some(s("/finished_at")),
            kind: Some(s("deploy.finished")),
            subject: Some(s("/service")),
            value: Some(s("/duration_ms")),
            attrs: [
                ("env".to_string(), s("/deployment/environment")),
                ("status".to_string(), s("/status")),
                (
                    "actor".to_string(),
                    FieldSpec::Full(FieldTable {
                        pointer: Some("/actor/login".into()),
                        default: Some("unknown".into()),
                        required: true,
                    }),
                ),
            ]
            .into_iter()
            .collect(),
            attrs_from: None,
            ..MappingSpec::default()
        }),
        ..WebhookConfig::default()
    }
}

#[tokio::test]
async fn mapped_fields_become_the_exact_event() {
    let f = log_fixture().await;
    let (r, handle) = router(&f, deploy_config());
    let body = json!({
        "deployment": {"id": 4711, "environment": "production"},
        "service": "billing-api",
        "status": "succeeded",
        "finished_at": "2024-03-01T12:00:05Z",
        "duration_ms": 5230.5,
    })
    .to_string();
    let (status, answer, _) = send(&r, post("deploys", bearer(), &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        written(&f).await,
        vec![Event {
            id: "4711".into(),
            source: "deploys".into(),
            kind: "deploy.finished".into(),
            subject: "billing-api".into(),
            time: us("2024-03-01T12:00:05Z"),
            received_at: 0,
            attrs: attrs(&[
                ("env", "production"),
                ("status", "succeeded"),
                ("actor", "unknown")
            ]),
            value: Some(5230.5),
            payload: Some(body),
        }]
    );
    assert_eq!(handle.status().events_emitted, 1);
}

#[tokio::test]
async fn items_split_into_events_with_stable_derived_ids() {
    let f = log_fixture().await;
    let config = WebhookConfig {
        name: "builds".into(),
        mapping: Some(MappingSpec {
            items: Some("/builds".into()),
            id: None,
            time: Some(s("/ended")),
            time_unit: TimeUnit::Millis,
            kind: Some(FieldSpec::Full(FieldTable {
                pointer: Some("/type".into()),
                default: Some("ci.run".into()),
                required: true,
            })),
            subject: Some(s("/project")),
            value: None,
            attrs_from: Some("/tags".into()),
            attrs: BTreeMap::new(),
        }),
        ..WebhookConfig::default()
    };
    let (r, _) = router(&f, config);
    let body = json!({"builds": [
        {"project": "helios", "ended": 1709294405000u64, "tags": {"os": "linux", "shard": 2, "nested": {"x": 1}}},
        {"project": "apollo", "ended": 1709294406500u64, "type": "ci.cancelled"},
    ]})
    .to_string();
    for _ in 0..2 {
        let (status, answer, _) = send(&r, post("builds", bearer(), &body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(answer["accepted"], 2);
    }
    let seed = body_id("builds", body.as_bytes());
    let got = written(&f).await;
    let first = Event {
        id: format!("{seed}:0"),
        source: "builds".into(),
        kind: "ci.run".into(),
        subject: "helios".into(),
        time: 1_709_294_405_000_000,
        received_at: 0,
        attrs: attrs(&[("os", "linux"), ("shard", "2")]),
        value: None,
        payload: Some(
            json!({"project": "helios", "ended": 1709294405000u64, "tags": {"os": "linux", "shard": 2, "nested": {"x": 1}}})
                .to_string(),
        ),
    };
    let second = Event {
        id: format!("{seed}:1"),
        source: "builds".into(),
        kind: "ci.cancelled".into(),
        subject: "apollo".into(),
        time: 1_709_294_406_500_000,
        received_at: 0,
        attrs: BTreeMap::new(),
        value: None,
        payload: Some(
            json!({"project": "apollo", "ended": 1709294406500u64, "type": "ci.cancelled"})
                .to_string(),
        ),
    };
    // A retried delivery carries the same ids, so it dedupes downstream.
    assert_eq!(got, vec![first.clone(), first, second.clone(), second]);
}

/// Alertmanager's documented webhook payload (version 4), one firing and one resolved alert.
const ALERTMANAGER: &str = r#"{
  "version": "4",
  "groupKey": "{}:{alertname=\"HighLatency\"}",
  "truncatedAlerts": 0,
  "status": "firing",
  "receiver": "helios",
  "groupLabels": {"alertname": "HighLatency"},
  "commonLabels": {"alertname": "HighLatency", "severity": "page"},
  "commonAnnotations": {"summary": "High request latency"},
  "externalURL": "http://alertmanager.example:9093",
  "alerts": [
    {
      "status": "firing",
      "labels": {"alertname": "HighLatency", "job": "api", "instance": "api-1:9100", "severity": "page"},
      "annotations": {"summary": "High request latency"},
      "startsAt": "2024-03-01T12:00:00.000Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency",
      "fingerprint": "c4a2f1d3e5b6a789"
    },
    {
      "status": "resolved",
      "labels": {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "page"},
      "annotations": {"summary": "Disk almost full"},
      "startsAt": "2024-03-01T11:00:00Z",
      "endsAt": "2024-03-01T11:45:30Z",
      "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk",
      "fingerprint": "0a1b2c3d4e5f6789"
    }
  ]
}"#;

#[tokio::test]
async fn alertmanager_preset_gives_one_event_per_alert() {
    let f = log_fixture().await;
    let config = WebhookConfig {
        name: "alerts".into(),
        preset: Some(Preset::Alertmanager),
        ..WebhookConfig::default()
    };
    let (r, _) = router(&f, config);
    let (status, answer, _) = send(
        &r,
        post("alerts", Some("bearer s3cret-t0ken"), ALERTMANAGER),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let doc: serde_json::Value = serde_json::from_str(ALERTMANAGER).unwrap();
    let expected = vec![
        Event {
            id: "0a1b2c3d4e5f6789:2024-03-01T11:00:00Z:resolved".into(),
            source: "alerts".into(),
            kind: "alert.resolved".into(),
            subject: "db-1:9100".into(),
            time: us("2024-03-01T11:45:30Z"),
            received_at: 0,
            attrs: attrs(&[
                ("alertname", "DiskFull"),
                ("instance", "db-1:9100"),
                ("severity", "page"),
                ("receiver", "helios"),
            ]),
            value: None,
            payload: Some(doc["alerts"][1].to_string()),
        },
        Event {
            id: "c4a2f1d3e5b6a789:2024-03-01T12:00:00.000Z:firing".into(),
            source: "alerts".into(),
            kind: "alert.firing".into(),
            subject: "api".into(),
            time: us("2024-03-01T12:00:00Z"),
            received_at: 0,
            attrs: attrs(&[
                ("alertname", "HighLatency"),
                ("job", "api"),
                ("instance", "api-1:9100"),
                ("severity", "page"),
                ("receiver", "helios"),
            ]),
            value: None,
            payload: Some(doc["alerts"][0].to_string()),
        },
    ];
    assert_eq!(written(&f).await, expected);
}

/// The default mapping reads a body as a CloudEvent is read: the fields it maps are the
/// event's, every other top-level scalar is an attr (ADR-011), nested data stays in the
/// payload only.
#[tokio::test]
async fn default_mapping_keeps_top_level_scalars_as_attrs() {
    let f = log_fixture().await;
    let (r, _) = router(
        &f,
        WebhookConfig {
            name: "ci".into(),
            ..WebhookConfig::default()
        },
    );
    let body = json!({
        "id": "run-3", "kind": "ci.run", "subject": "helios", "time": "2024-03-01T12:00:05Z",
        "value": 95, "conclusion": "failure", "attempt": 2, "rerun": false, "branch": null,
        "workflow": {"name": "test"}, "jobs": ["build"],
    })
    .to_string();
    let (status, answer, _) = send(&r, post("ci", bearer(), &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        written(&f).await,
        vec![Event {
            id: "run-3".into(),
            source: "ci".into(),
            kind: "ci.run".into(),
            subject: "helios".into(),
            time: us("2024-03-01T12:00:05Z"),
            received_at: 0,
            attrs: attrs(&[
                ("conclusion", "failure"),
                ("attempt", "2"),
                ("rerun", "false")
            ]),
            value: Some(95.0),
            payload: Some(body),
        }]
    );
}

/// Only members a mapping reads at the top level are left out of the document's attrs; a
/// literal is not a member, and under another `attrs_from` every scalar member is an attr,
/// as before.
#[test]
fn attrs_from_the_root_leaves_out_only_the_members_the_mapping_reads() {
    let doc = json!({"svc": "api", "a/b": "x", "kind": "k", "status": "ok", "id": 7,
                     "labels": {"job": "api", "env": "prod"}});
    let map = |m: MappingSpec| {
        let mapper = Mapper::new("src", None, Some(&m)).unwrap();
        let raw = doc.to_string();
        let input = super::mapping::Input {
            raw: &raw,
            id_seed: "seed",
            received_at: 1,
            default_time: 1,
        };
        mapper.map(&doc, &input).unwrap().remove(0).attrs
    };
    // `/a~1b` names the member `a/b`; the kind is a literal, so `kind` stays an attr, and
    // so does `id`, which this mapping does not read.
    assert_eq!(
        map(MappingSpec {
            id: None,
            time: None,
            value: None,
            kind: Some(s("deploy")),
            subject: Some(s("/a~1b")),
            ..MappingSpec::default()
        }),
        attrs(&[("svc", "api"), ("kind", "k"), ("status", "ok"), ("id", "7")])
    );
    assert_eq!(
        map(MappingSpec {
            kind: Some(s("deploy")),
            subject: Some(s("/labels/job")),
            attrs_from: Some("/labels".into()),
            ..MappingSpec::default()
        }),
        attrs(&[("job", "api"), ("env", "prod")])
    );
}

#[tokio::test]
async fn token_is_checked_from_header_or_query() {
    let f = log_fixture().await;
    let (r, _) = router(&f, WebhookConfig::default());
    let body = json!({"kind": "deploy.started", "subject": "helios"}).to_string();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0LXQwa2Vu"),
        Some("Bearer s3cret-t0ke"),
    ] {
        let (status, answer, _) = send(&r, post("webhook", auth, &body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(answer["error"].as_str().unwrap().contains("token"));
    }
    let req = Request::post("/v1/webhooks/webhook?token=wrong")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::UNAUTHORIZED);
    assert!(f.events().await.is_empty());

    let req = Request::post("/v1/webhooks/webhook?x=1&token=s3cret-t0ken")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        send(&r, post("webhook", bearer(), &body)).await.0,
        StatusCode::ACCEPTED
    );
    let got = written(&f).await;
    assert_eq!(got.len(), 2);
    // The default mapping: `/kind`, `/subject`; id derived from the body; receive time.
    assert_eq!(got[0].kind, "deploy.started");
    assert_eq!(got[0].subject, "helios");
    assert_eq!(got[0].id, body_id("webhook", body.as_bytes()));
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_pointer_and_write_nothing() {
    let f = log_fixture().await;
    let (r, _) = router(&f, deploy_config());
    let good = json!({
        "deployment": {"id": 1, "environment": "prod"}, "service": "api", "status": "ok",
        "finished_at": "2024-03-01T12:00:05Z", "duration_ms": 3,
    });
    let without = |pointer: &str| {
        let mut v = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        v.to_string()
    };
    let with = |pointer: &str, value: serde_json::Value| {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        v.to_string()
    };
    let cases = [
        ("{\"service\": ".to_string(), "not JSON"),
        (without("/service"), "subject: pointer /service is missing"),
        (
            without("/deployment/id"),
            "id: pointer /deployment/id is missing",
        ),
        (
            without("/deployment/environment"),
            "attrs.env: pointer /deployment/environment is missing",
        ),
        (
            with("/finished_at", json!("soon")),
            "time: \"soon\" is neither an RFC 3339 time",
        ),
        (
            with("/duration_ms", json!("fast")),
            "value: expected a number, found a string",
        ),
        (
            with("/service", json!({"a": 1})),
            "subject: expected a string, number or boolean, found an object",
        ),
    ];
    for (body, needle) in cases {
        let (status, answer, _) = send(&r, post("deploys", bearer(), &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    }
    // Items: one bad item refuses the whole delivery.
    let (r, _) = router(
        &f,
        WebhookConfig {
            name: "am".into(),
            preset: Some(Preset::Alertmanager),
            ..WebhookConfig::default()
        },
    );
    let body = json!({"alerts": [{"status": "firing", "startsAt": "2024-03-01T12:00:00Z"}, {"status": "firing"}]});
    let (status, answer, _) = send(&r, post("am", bearer(), &body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("item 1: time: pointer /startsAt is missing")
    );
    assert!(f.events().await.is_empty());
}

#[tokio::test]
async fn paused_source_answers_503() {
    let f = log_fixture().await;
    let (r, handle) = router(&f, WebhookConfig::default());
    handle.pause();
    let (status, answer, retry) = send(&r, post("webhook", bearer(), "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(answer["error"].as_str().unwrap().contains("paused"));
    handle.resume();
    assert_eq!(
        send(&r, post("webhook", bearer(), "{}")).await.0,
        StatusCode::ACCEPTED
    );
}

#[test]
fn mapping_config_is_checked() {
    let check = |m: MappingSpec, needle: &str| {
        let e = Mapper::new("src", None, Some(&m)).unwrap_err().to_string();
        assert!(e.contains(needle), "{e:?} should contain {needle:?}");
    };
    check(
        MappingSpec {
            kind: None,
            ..MappingSpec::default()
        },
        "mapping.kind is required",
    );
    check(
        MappingSpec {
            items: Some("alerts".into()),
            ..MappingSpec::default()
        },
        "not a JSON pointer",
    );
    check(
        MappingSpec {
            kind: Some(FieldSpec::Full(FieldTable {
                pointer: Some("/k".into()),
                default: None,
                required: false,
            })),
            ..MappingSpec::default()
        },
        "cannot be optional",
    );
    let e = Mapper::new(
        "src",
        Some(Preset::Alertmanager),
        Some(&MappingSpec::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not both"));
}

#[test]
fn spec_parses_from_toml() {
    let text = r#"
        name = "deploys"
        token_env = "DEPLOY_TOKEN"
        [mapping]
        items = "/items"
        kind = "deploy.finished"
        subject = "/service"
        time = { pointer = "/at", required = false }
        attrs = { env = "/env" }
    "#;
    let c: WebhookConfig = toml::from_str(text).unwrap();
    let m = c.mapping.as_ref().unwrap();
    assert_eq!(m.kind, Some(s("deploy.finished")));
    assert_eq!(
        m.time,
        Some(FieldSpec::Full(FieldTable {
            pointer: Some("/at".into()),
            default: None,
            required: false
        }))
    );
    c.validate().unwrap();
    let bad = toml::from_str::<WebhookConfig>("name = \"x\"\ntokn = \"y\"");
    assert!(bad.unwrap_err().to_string().contains("tokn"));
}

#[test]
fn sources_spec_parses_every_webhook_and_bridge_type() {
    use crate::spec::{SourceSpec, SourcesSpec};
    let text = r#"
        [[source]]
        type = "github"
        name = "gh-work"
        secret_env = "GH_WORK_SECRET"

        [[source]]
        type = "webhook"
        name = "alerts"
        token = "t"
        preset = "alertmanager"

        [[source]]
        type = "kafka_bridge"
        name = "builds"
        topics = ["ci.builds"]
        format = "avro"
        registry_url = "http://127.0.0.1:8081"
        [source.mapping]
        kind = "ci.run"
        subject = "/repo"
    "#;
    let spec: SourcesSpec = toml::from_str(text).unwrap();
    let kinds: Vec<(&str, &str)> = spec.sources.iter().map(|s| (s.name(), s.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("gh-work", "github"),
            ("alerts", "webhook"),
            ("builds", "kafka_bridge")
        ]
    );
    for s in &spec.sources {
        s.validate().unwrap();
    }
    assert!(
        matches!(&spec.sources[1], SourceSpec::Webhook(c) if c.preset == Some(Preset::Alertmanager))
    );
    // Secrets never show in Debug output.
    let debug = format!("{:?}", spec.sources[1]);
    assert!(
        !debug.contains("token: Some(\"t\")") && debug.contains("***"),
        "{debug}"
    );
    let err = toml::from_str::<SourcesSpec>("[[source]]\ntype = \"github\"\nsecrte = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("secrte"), "{err}");
}

#[test]
fn default_sources_enable_github_and_webhook_with_stored_secrets() {
    use crate::spec::{SourceSpec, default_sources};
    let dir = tempfile::tempdir().unwrap();
    let sources = default_sources("http://127.0.0.1:8080", dir.path());
    let github = sources
        .iter()
        .find_map(|s| match s {
            SourceSpec::Github(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a github source");
    let webhook = sources
        .iter()
        .find_map(|s| match s {
            SourceSpec::Webhook(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a webhook source");
    assert_eq!(
        (github.name.as_str(), webhook.name.as_str()),
        ("github", "webhook")
    );
    // Unless the environment gives them, the secrets are generated under the data dir.
    if std::env::var("HELIOS_GITHUB_SECRET").is_err() {
        assert_eq!(
            github.secret_file.as_deref(),
            Some(dir.path().join("secrets/github.secret").as_path())
        );
        let secret = github.secret_origin().resolve("github").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("secrets/github.secret"))
                .unwrap()
                .trim(),
            secret.expose()
        );
    }
    if std::env::var("HELIOS_WEBHOOK_TOKEN").is_err() {
        assert_eq!(
            webhook.token_file.as_deref(),
            Some(dir.path().join("secrets/webhook.token").as_path())
        );
        webhook.token_origin().resolve("webhook").unwrap();
    }
}

/// A delivery dated in the year 9999 is not appended: it becomes a dead letter with the
/// reason (named in the `202`, since a redelivery would only repeat it), and the source's
/// next deliveries are appended as usual.
#[tokio::test]
async fn deliveries_dated_too_far_ahead_become_dead_letters() {
    let f = log_fixture().await;
    let (r, handle) = router(&f, deploy_config());
    let body = |id: u32, at: &str| {
        json!({
            "deployment": {"id": id, "environment": "production"},
            "service": "billing-api",
            "status": "succeeded",
            "finished_at": at,
            "duration_ms": 5.0,
        })
        .to_string()
    };
    let (status, answer, _) = send(
        &r,
        post("deploys", bearer(), &body(1, "9999-01-01T00:00:00Z")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["dead_lettered"][0]["id"], "1");
    let reason = answer["dead_lettered"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("event time 9999-01-01T00:00:00Z is 797")
            && reason.contains(" years ahead of the time Helios received it (")
            && reason.contains("the limit is 15m"),
        "{reason}"
    );
    let (status, answer, _) = send(
        &r,
        post("deploys", bearer(), &body(2, "2024-03-01T12:00:05Z")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert!(answer.get("dead_lettered").is_none(), "{answer}");

    let events = written(&f).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "2");
    let dead = f.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "source/deploys/future/1");
    assert_eq!(dead[0].stage, "source/deploys");
    assert_eq!(dead[0].reason, reason);
    let original: Event = serde_json::from_slice(&dead[0].original).unwrap();
    assert_eq!(original.time, us("9999-01-01T00:00:00Z"));
    assert!(original.received_at > 0, "the receive time is kept");
    let status = handle.status();
    assert_eq!((status.events_emitted, status.dead_letters), (1, 1));
}

#[tokio::test]
async fn the_body_is_read_only_after_the_token_and_within_the_limit() {
    use std::sync::atomic::Ordering;

    use crate::body::tests::chunks;

    let f = log_fixture().await;
    let config = WebhookConfig {
        max_body_bytes: 64,
        ..WebhookConfig::default()
    };
    let (r, _) = router(&f, config);
    let with = |auth: Option<&str>, body: Body, length: Option<usize>| {
        let mut req = Request::post("/v1/webhooks/webhook");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(n) = length {
            req = req.header("content-length", n);
        }
        req.body(body).unwrap()
    };
    // A wrong or missing token: refused without touching the body.
    for auth in [None, Some("Bearer wrong")] {
        let (body, polled) = chunks(&[br#"{"kind":"x","subject":"y"}"#]);
        let (status, _, _) = send(&r, with(auth, body, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            !polled.load(Ordering::SeqCst),
            "{auth:?}: the body was read"
        );
    }
    // The right token, a declared length over the limit: 413, body untouched.
    let (body, polled) = chunks(&[&[b' '; 65]]);
    let (status, answer, _) = send(&r, with(bearer(), body, Some(65))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(!polled.load(Ordering::SeqCst));
    // No declared length (chunked): read up to the limit, then 413.
    let (body, _) = chunks(&[&[b' '; 40], &[b' '; 40]]);
    let (status, answer, _) = send(&r, with(bearer(), body, None)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("64 bytes"));
    assert!(f.events().await.is_empty());
    // Within the limit, in pieces: accepted.
    let (body, _) = chunks(&[br#"{"kind":"deploy","#, br#""subject":"helios"}"#]);
    let (status, answer, _) = send(&r, with(bearer(), body, None)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

/// A webhook delivery while the data dir's disk is nearly full: `507` with the reason and
/// `Retry-After`, counted, and nothing written; the sender's retry is taken once there is
/// room (here: a guard with no reserve over the same log).
#[tokio::test]
async fn a_delivery_on_a_nearly_full_disk_is_507_and_nothing_is_written() {
    use crate::runtime::{DiskGuard, Emitter, EmitterConfig, RequestOutcome};
    let f = log_fixture().await;
    let emitter = |reserve| {
        Emitter::new(
            EmitterConfig {
                disk: Some(DiskGuard::new(std::env::temp_dir(), reserve)),
                ..EmitterConfig::default()
            },
            f.log.producer(),
            helios_schemas::EventCodec::new(7),
            helios_schemas::RecordCodec::new(8),
        )
    };
    let delivery = r#"{"id": "d-1", "kind": "ci.run", "subject": "helios"}"#;
    for (reserve, expected) in [
        (u64::MAX, StatusCode::INSUFFICIENT_STORAGE),
        (0, StatusCode::ACCEPTED),
    ] {
        let handle = SourceHandle::new("ci", "webhook");
        let mut hooks = Webhooks::default();
        hooks
            .add(
                WebhookConfig {
                    name: "ci".into(),
                    ..WebhookConfig::default()
                },
                SecretString::new(TOKEN),
                emitter(reserve),
                handle.clone(),
            )
            .unwrap();
        let (status, answer, retry) = send(&hooks.router(), post("ci", bearer(), delivery)).await;
        assert_eq!(status, expected, "{answer}");
        if expected == StatusCode::INSUFFICIENT_STORAGE {
            assert_eq!(retry.as_deref(), Some("10"));
            let text = answer["error"].as_str().unwrap();
            assert!(
                text.contains("nearly full") && text.contains("resumes by itself"),
                "{text}"
            );
            assert_eq!(handle.requests().requests(RequestOutcome::DiskFull), 1);
            assert!(f.events().await.is_empty(), "nothing written");
        }
    }
    assert_eq!(f.events().await.len(), 1);
}
