//! Alert notifications against a real local HTTP receiver that fails the first attempts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use helios_schemas::AlertState;
use helios_sinks::RetryPolicy;
use helios_sinks::notify::state::{DeliveryLog, DeliveryStatus};
use helios_sinks::notify::{BodyFormat, Notifier, NotifyConfig, WebhookConfig};
use tokio::sync::watch;

/// What the receiver saw: (path, idempotency key, body, answered status).
#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<(String, String, serde_json::Value, u16)>>,
    /// Requests to fail (503) before answering 200, per path.
    fail_first: usize,
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::Json<serde_json::Value>,
) -> StatusCode {
    let mut seen = r.seen.lock().unwrap();
    let earlier = seen.iter().filter(|s| s.0 == path).count();
    let status = if earlier < r.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.push((path, key, body.0, status.as_u16()));
    status
}

async fn receiver(fail_first: usize) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        fail_first,
        ..Receiver::default()
    });
    let app = Router::new()
        .route("/{path}", post(hook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn config(base: &str, state_dir: &std::path::Path, group: &str) -> NotifyConfig {
    let mut c = NotifyConfig::new(
        vec![
            WebhookConfig {
                name: "ops".into(),
                url: format!("{base}/generic"),
                format: BodyFormat::Generic,
                authorization: None,
            },
            WebhookConfig {
                name: "slack".into(),
                url: format!("{base}/slack"),
                format: BodyFormat::Slack,
                authorization: None,
            },
        ],
        state_dir,
    );
    c.group = group.to_owned();
    c.retry = RetryPolicy {
        initial_ms: 20,
        max_ms: 200,
    };
    c
}

/// Runs a notifier until the receiver saw what `done` wants and the delivery record holds
/// `recorded` lines, then stops it.
async fn run_until(
    stage: &Stage,
    config: NotifyConfig,
    done: impl Fn(&Receiver) -> bool,
    r: &Receiver,
    recorded: usize,
) -> DeliveryLog {
    let record = config.state_dir.join("deliveries.jsonl");
    let notifier = Notifier::new(config, stage.registry.clone()).unwrap();
    let (stop, rx) = watch::channel(false);
    let log = stage.log.clone();
    let task = tokio::spawn(async move { notifier.run(&log, rx).await });
    wait_for(
        "the receiver to see the expected requests",
        Duration::from_secs(30),
        || async { done(r).then_some(()) },
    )
    .await;
    wait_for(
        "the deliveries to be recorded",
        Duration::from_secs(30),
        || {
            let record = record.clone();
            async move {
                let text = std::fs::read_to_string(record).ok()?;
                (text.lines().count() >= recorded).then_some(())
            }
        },
    )
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap()
}

fn delivered(r: &Receiver) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.3 == 200)
        .map(|s| (s.0.clone(), s.1.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_retry_and_are_sent_once_per_state_change_across_restarts() {
    let stage = Stage::new().await;
    let (base, r) = receiver(2).await;
    let state_dir = stage.dir.path().join("notify");
    let script = Script {
        alerts: vec![
            alert("ci|helios|1", AlertState::Firing, T0 + MINUTE),
            alert("ci|helios|1", AlertState::Resolved, T0 + 3 * MINUTE),
            alert("ci|atlas|1", AlertState::Firing, T0 + 2 * MINUTE),
        ],
        ..Script::default()
    };
    stage.write(&script).await;
    // The same record again, as a replaying pipeline would write it.
    stage
        .write(&Script {
            alerts: vec![script.alerts[0].clone()],
            ..Script::default()
        })
        .await;

    let expected = vec![
        ("generic".to_owned(), "ci|atlas|1:firing".to_owned()),
        ("generic".to_owned(), "ci|helios|1:firing".to_owned()),
        ("generic".to_owned(), "ci|helios|1:resolved".to_owned()),
        ("slack".to_owned(), "ci|atlas|1:firing".to_owned()),
        ("slack".to_owned(), "ci|helios|1:firing".to_owned()),
        ("slack".to_owned(), "ci|helios|1:resolved".to_owned()),
    ];
    let deliveries = run_until(
        &stage,
        config(&base, &state_dir, "notify-1"),
        |r| delivered(r).len() >= 6,
        &r,
        6,
    )
    .await;
    assert_eq!(delivered(&r), expected);
    // The first two requests of each webhook failed and were retried.
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|s| s.3 == 503).count(), 4);
    let first_ok = deliveries.get("ops", "ci|helios|1", "firing").unwrap();
    assert_eq!(
        (first_ok.status, first_ok.attempts),
        (DeliveryStatus::Delivered, 3)
    );
    assert_eq!(deliveries.all().count(), 6);

    // Bodies: generic JSON and Slack text.
    let generic = seen
        .iter()
        .find(|s| s.0 == "generic" && s.1 == "ci|helios|1:resolved")
        .unwrap();
    assert_eq!(generic.2["state"], "resolved");
    assert_eq!(generic.2["rule"], "ci_failing");
    assert_eq!(generic.2["group"]["repo"], "helios");
    let slack = seen
        .iter()
        .find(|s| s.0 == "slack" && s.1 == "ci|atlas|1:firing")
        .unwrap();
    let text = slack.2["text"].as_str().unwrap();
    assert!(text.contains("[CRITICAL] ci_failing firing"), "{text}");

    // A restart that re-reads the whole topic (a new consumer group, the same data dir)
    // sends nothing again; a new state change is sent.
    stage
        .write(&Script {
            alerts: vec![alert("ci|atlas|1", AlertState::Resolved, T0 + 4 * MINUTE)],
            ..Script::default()
        })
        .await;
    let before = r.seen.lock().unwrap().len();
    run_until(
        &stage,
        config(&base, &state_dir, "notify-2"),
        |r| delivered(r).len() >= 8,
        &r,
        8,
    )
    .await;
    let after: Vec<_> = r.seen.lock().unwrap()[before..]
        .iter()
        .map(|s| (s.0.clone(), s.1.clone(), s.3))
        .collect();
    assert_eq!(
        after,
        vec![
            ("generic".to_owned(), "ci|atlas|1:resolved".to_owned(), 200),
            ("slack".to_owned(), "ci|atlas|1:resolved".to_owned(), 200),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_refuses_is_recorded_as_given_up() {
    let stage = Stage::new().await;
    let app = Router::new().route("/hook", post(|| async { StatusCode::BAD_REQUEST }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    stage
        .write(&Script {
            alerts: vec![alert("a", AlertState::Firing, T0)],
            ..Script::default()
        })
        .await;
    let mut c = NotifyConfig::new(
        vec![WebhookConfig {
            name: "bad".into(),
            url: format!("{base}/hook"),
            format: BodyFormat::Generic,
            authorization: None,
        }],
        stage.dir.path().join("notify"),
    );
    c.retry = RetryPolicy {
        initial_ms: 10,
        max_ms: 50,
    };
    let notifier = Notifier::new(c, stage.registry.clone()).unwrap();
    let (stop, rx) = watch::channel(false);
    let log = stage.log.clone();
    let task = tokio::spawn(async move { notifier.run(&log, rx).await });
    let dir = stage.dir.path().join("notify");
    wait_for(
        "the delivery to be recorded",
        Duration::from_secs(30),
        || {
            let dir = dir.clone();
            async move {
                let text = std::fs::read_to_string(dir.join("deliveries.jsonl")).ok()?;
                (!text.is_empty()).then_some(())
            }
        },
    )
    .await;
    stop.send(true).unwrap();
    let deliveries = task.await.unwrap().unwrap();
    let d = deliveries.get("bad", "a", "firing").unwrap();
    assert_eq!(
        (d.status, d.attempts, d.last.as_str()),
        (DeliveryStatus::GaveUp, 1, "400 Bad Request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_is_given_up_without_its_secret_path_in_the_record() {
    let stage = Stage::new().await;
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    stage
        .write(&Script {
            alerts: vec![alert("a", AlertState::Firing, T0)],
            ..Script::default()
        })
        .await;
    let hook = WebhookConfig {
        name: "slack".into(),
        url: format!("{base}/services/T0/B0/secret-path"),
        format: BodyFormat::Slack,
        authorization: Some("Bearer s3cret-header".into()),
    };
    assert!(!format!("{hook:?}").contains("secret-path"), "{hook:?}");
    assert!(!format!("{hook:?}").contains("s3cret-header"), "{hook:?}");
    let mut c = NotifyConfig::new(vec![hook], stage.dir.path().join("notify"));
    c.retry = RetryPolicy {
        initial_ms: 10,
        max_ms: 20,
    };
    c.max_attempts = 2;
    let notifier = Notifier::new(c, stage.registry.clone()).unwrap();
    let (stop, rx) = watch::channel(false);
    let log = stage.log.clone();
    let task = tokio::spawn(async move { notifier.run(&log, rx).await });
    let dir = stage.dir.path().join("notify");
    wait_for(
        "the delivery to be recorded",
        Duration::from_secs(30),
        || {
            let dir = dir.clone();
            async move {
                let text = std::fs::read_to_string(dir.join("deliveries.jsonl")).ok()?;
                (!text.is_empty()).then_some(())
            }
        },
    )
    .await;
    stop.send(true).unwrap();
    let deliveries = task.await.unwrap().unwrap();
    let d = deliveries.get("slack", "a", "firing").unwrap();
    assert_eq!(
        (d.status, d.attempts),
        (DeliveryStatus::GaveUp, 2),
        "{}",
        d.last
    );
    assert!(!d.last.is_empty());
    assert!(!d.last.contains("secret-path"), "{}", d.last);
    let record = std::fs::read_to_string(dir.join("deliveries.jsonl")).unwrap();
    assert!(!record.contains("secret-path"), "{record}");
}
