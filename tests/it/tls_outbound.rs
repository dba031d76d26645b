//! Helios as a TLS client (issue 14, done-when 2 and 3), end to end with the real binary:
//!
//! - `helios send` posts to an `https://` URL whose certificate a test CA signed, trusted
//!   through `--ca-file`; without it (or with another CA) it fails saying the certificate
//!   is not trusted; to one that requires mutual TLS it presents `--client-cert-file`;
//! - an alert notification reaches an `https://` receiver behind the test CA that requires
//!   mutual TLS;
//! - an uptime probe of an `https://` URL behind the test CA is up through `--ca-file`, and
//!   a probe with its own `ca_file` (another CA) trusts that one instead and reports the
//!   untrusted certificate; likewise the process's client certificate and a probe's own;
//! - a Kafka bridge source reads a topic of an external cluster over TLS with SASL SCRAM
//!   (tansu behind stunnel), the password from an environment variable the spec names,
//!   and an Avro topic whose registry requires mutual TLS and a Basic key;
//! - `helios tail` decodes through a remote registry over mutual TLS with Basic auth;
//! - `helios up` stores in ClickHouse over HTTPS as a password user (the password from the
//!   environment, the CA from `--clickhouse-ca-file`) and the read API answers through its
//!   read-only user; a wrong password stops it with an error that says so.
//!
//! The OTLP export to an `https` collector is in `otel.rs`, beside the plain one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::common::tls::TestCa;
use crate::common::{BIN, Helios};

/// One POST an HTTPS receiver got.
#[derive(Debug)]
struct Got {
    path: String,
    content_type: String,
    /// The `Authorization` header, if it came with one.
    authorization: Option<String>,
    body: String,
}

/// What an HTTPS receiver got.
type Inbox = Arc<Mutex<Vec<Got>>>;

/// A receiver that keeps every POST and answers like Helios' ingest (`202`, all accepted).
fn receiver() -> (Router, Inbox) {
    let inbox = Inbox::default();
    async fn keep(
        State(inbox): State<Inbox>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, axum::Json<Value>) {
        let lines = body.lines().filter(|l| !l.trim().is_empty()).count();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        inbox.lock().unwrap().push(Got {
            path: uri.path().to_owned(),
            content_type: header("content-type").unwrap_or_default(),
            authorization: header("authorization"),
            body,
        });
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": lines, "rejected": []})),
        )
    }
    let app = Router::new()
        .route("/{*path}", post(keep))
        .with_state(inbox.clone());
    (app, inbox)
}

fn send(file: &std::path::Path, url: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("send")
        .arg(file)
        .args(["--url", url, "--quiet"])
        .args(extra)
        .env_remove("HELIOS_CA_FILE")
        .output()
        .unwrap()
}

/// `helios send` succeeded and says the receiver accepted `n` events.
fn assert_sent(out: &std::process::Output, n: usize) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helios send failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{n} accepted")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helios_send_posts_to_an_https_url_it_trusts_and_refuses_one_it_does_not() {
    let ca = TestCa::new();
    let (app, inbox) = receiver();
    let url = ca.serve(app).await;
    let events = ca.dir.path().join("events.ndjson");
    let lines: Vec<String> = (0..3)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("tls-{i}"), "source": "ci",
                   "type": "ci.run", "subject": "repo"})
            .to_string()
        })
        .collect();
    std::fs::write(&events, lines.join("\n")).unwrap();

    let ca_file = ca.ca_file();
    let out = tokio::task::spawn_blocking({
        let (events, url) = (events.clone(), url.clone());
        move || send(&events, &url, &["--ca-file", ca_file.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_sent(&out, 3);
    {
        let got = inbox.lock().unwrap();
        assert_eq!(got.len(), 1, "one batch: {got:?}");
        let Got {
            path,
            content_type,
            body,
            ..
        } = &got[0];
        assert_eq!(path, "/v1/events");
        assert_eq!(content_type, "application/x-ndjson");
        let ids: Vec<String> = body
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string())
            .collect();
        assert_eq!(ids, ["\"tls-0\"", "\"tls-1\"", "\"tls-2\""]);
    }

    // Mozilla's roots alone, or a CA that did not sign the certificate: not trusted, said
    // so, and nothing arrives.
    for extra in [
        vec![],
        vec![
            "--ca-file".to_owned(),
            ca.other_ca_file().to_str().unwrap().to_owned(),
        ],
    ] {
        let out = tokio::task::spawn_blocking({
            let (events, url) = (events.clone(), url.clone());
            move || {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                send(&events, &url, &extra)
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "an untrusted server was accepted: {stdout}"
        );
        assert!(
            stdout.contains("certificate is not trusted") && stdout.contains("--ca-file"),
            "the failure does not say the certificate is not trusted: {stdout}"
        );
    }
    assert_eq!(inbox.lock().unwrap().len(), 1, "nothing more arrived");

    // A CA file that is not one stops `send` before anything is sent, naming the file.
    let out = send(&events, &url, &["--ca-file", events.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("events.ndjson") && stderr.contains("CERTIFICATE"),
        "{stderr}"
    );
}

/// `helios send` to a receiver that requires mutual TLS: it presents the process's client
/// certificate (`--client-cert-file`, `--client-key-file`) and is admitted; without one, or
/// with one another CA signed, the refusal says so and names the flags; half a pair or a
/// key that is not a key stops it before anything is sent, naming what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helios_send_presents_the_client_certificate_a_mutual_tls_receiver_requires() {
    let ca = TestCa::new();
    let (app, inbox) = receiver();
    let url = ca.serve_mutual(app).await;
    let events = ca.dir.path().join("events.ndjson");
    let event = json!({"specversion": "1.0", "id": "mtls-1", "source": "ci",
                       "type": "ci.run", "subject": "repo"});
    std::fs::write(&events, event.to_string()).unwrap();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let (ca_file, cert, key) = (
        path(ca.ca_file()),
        path(ca.client_cert_file()),
        path(ca.client_key_file()),
    );
    let run = |extra: Vec<String>| {
        let (events, url) = (events.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            send(&events, &url, &extra)
        })
    };
    let flags = |cert: &str, key: &str| {
        vec![
            "--ca-file".to_owned(),
            ca_file.clone(),
            "--client-cert-file".to_owned(),
            cert.to_owned(),
            "--client-key-file".to_owned(),
            key.to_owned(),
        ]
    };

    let out = run(flags(&cert, &key)).await.unwrap();
    assert_sent(&out, 1);
    assert_eq!(inbox.lock().unwrap().len(), 1);

    // No client certificate, or one the server's CA did not sign: refused, and said so.
    let other = flags(
        &path(ca.other_client_cert_file()),
        &path(ca.other_client_key_file()),
    );
    for extra in [vec!["--ca-file".to_owned(), ca_file.clone()], other] {
        let out = run(extra.clone()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{extra:?} was admitted: {stdout}");
        assert!(
            stdout.contains("refused the client certificate")
                && stdout.contains("--client-cert-file"),
            "{extra:?}: the failure does not name the client certificate: {stdout}"
        );
    }
    assert_eq!(inbox.lock().unwrap().len(), 1, "nothing more arrived");

    // Half a pair, or a certificate given as the key: stopped at the start, named.
    let half = vec!["--client-cert-file".to_owned(), cert.clone()];
    let out = run(half).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the key is missing") && stderr.contains("--client-key-file"),
        "{stderr}"
    );
    let out = run(flags(&cert, &cert)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("client.pem") && stderr.contains("private key"),
        "{stderr}"
    );
    assert_eq!(inbox.lock().unwrap().len(), 1, "nothing more arrived");
}

const ALERT_SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 2
within = "1h"
severity = "critical"

[[webhook]]
name = "ops"
url = "RECEIVER/alerts"
# The receiver wants a bearer token: the header comes from the environment.
authorization_env = "HELIOS_TEST_OPS_AUTHORIZATION"

# The Slack URL is its own credential: read from the environment (`url_env`).
[[webhook]]
name = "slack"
url_env = "HELIOS_TEST_SLACK_URL"
format = "slack"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_notification_reaches_an_https_receiver_behind_a_private_ca() {
    let ca = TestCa::new();
    let (app, inbox) = receiver();
    let url = ca.serve(app.clone()).await;
    // The generic receiver requires mutual TLS: the process's client certificate
    // (HELIOS_CLIENT_CERT_FILE, HELIOS_CLIENT_KEY_FILE) admits the notifier.
    let mutual = ca.serve_mutual(app).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, ALERT_SPEC.replace("RECEIVER", &mutual)).unwrap();
    let server = Helios::up_with_env(
        &data,
        &["--spec", spec.to_str().unwrap()],
        &[
            ("HELIOS_CA_FILE", ca.ca_file().to_str().unwrap()),
            ("HELIOS_TEST_SLACK_URL", &format!("{url}/slack")),
            ("HELIOS_TEST_OPS_AUTHORIZATION", "Bearer ops-t0ken"),
            (
                "HELIOS_CLIENT_CERT_FILE",
                ca.client_cert_file().to_str().unwrap(),
            ),
            (
                "HELIOS_CLIENT_KEY_FILE",
                ca.client_key_file().to_str().unwrap(),
            ),
        ],
    )
    .await;
    let run = |id: &str, time: &str| {
        json!({"specversion": "1.0", "id": id, "source": "ci", "type": "ci.run",
               "subject": "helios", "time": time, "conclusion": "failure"})
    };
    let resp = server
        .post_events(&json!([
            run("f1", "2026-01-01T00:00:00Z"),
            run("f2", "2026-01-01T00:01:00Z"),
            // Moves the watermark past the second failure.
            run("f3", "2026-01-01T00:05:00Z"),
        ]))
        .await;
    assert_eq!(resp.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let got = inbox.lock().unwrap();
            let generic = got.iter().find(|g| g.path == "/alerts");
            let slack = got.iter().find(|g| g.path == "/slack");
            if let (Some(generic), Some(slack)) = (generic, slack) {
                let alert: Value = serde_json::from_str(&generic.body).unwrap();
                // The header of the webhook's `authorization_env`; Slack's has none.
                assert_eq!(generic.authorization.as_deref(), Some("Bearer ops-t0ken"));
                assert_eq!(slack.authorization, None);
                assert_eq!(alert["rule"], "ci_failing");
                assert_eq!(alert["state"], "firing");
                assert_eq!(alert["group"]["subject"], "helios");
                let text: Value = serde_json::from_str(&slack.body).unwrap();
                assert!(
                    text["text"].as_str().unwrap().contains("ci_failing"),
                    "{text}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no notification reached the https receiver; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("ops-t0ken"), "the header reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_trusts_the_process_ca_file_or_its_own_instead() {
    let ca = TestCa::new();
    let url = ca
        .serve(Router::new().route("/healthz", get(|| async { "ok" })))
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    let probe = |name: &str, extra: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\ntype = \"probe\"\nurl = \"{url}/healthz\"\ninterval = \"1s\"\n{extra}\n"
        )
    };
    let own_ca = format!("ca_file = \"{}\"", ca.other_ca_file().display());
    // A URL that requires mutual TLS: the process's client certificate admits a probe
    // without its own; a probe's own (another CA's) replaces it and is refused.
    let mutual = ca
        .serve_mutual(Router::new().route("/healthz", get(|| async { "ok" })))
        .await;
    let mutual_probe = |name: &str, extra: &str| probe(name, extra).replace(&url, &mutual);
    let own_cert = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"",
        ca.other_client_cert_file().display(),
        ca.other_client_key_file().display()
    );
    std::fs::write(
        &spec,
        probe("inherits", "")
            + &probe("own_ca", &own_ca)
            + &mutual_probe("mutual", "")
            + &mutual_probe("own_cert", &own_cert),
    )
    .unwrap();
    let server = Helios::up_with_env(
        &data,
        &["--spec", spec.to_str().unwrap()],
        &[
            ("HELIOS_CA_FILE", ca.ca_file().to_str().unwrap()),
            (
                "HELIOS_CLIENT_CERT_FILE",
                ca.client_cert_file().to_str().unwrap(),
            ),
            (
                "HELIOS_CLIENT_KEY_FILE",
                ca.client_key_file().to_str().unwrap(),
            ),
        ],
    )
    .await;

    // The first probe event of each source, as the log holds it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (inherits, own, mutual, own_cert) = loop {
        let events: Vec<Value> = crate::common::tail_values(&data, "helios.events")
            .into_iter()
            .filter(|e| e["kind"] == "probe.http")
            .collect();
        let first = |source: &str| events.iter().find(|e| e["source"] == source).cloned();
        if let (Some(a), Some(b), Some(c), Some(d)) = (
            first("inherits"),
            first("own_ca"),
            first("mutual"),
            first("own_cert"),
        ) {
            break (a, b, c, d);
        }
        assert!(
            Instant::now() < deadline,
            "no probe events from both sources yet: {events:?}; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    server.stop();
    assert_eq!(inherits["attrs"]["ok"], "true", "{inherits}");
    assert_eq!(inherits["attrs"]["status"], "200", "{inherits}");
    assert_eq!(own["attrs"]["ok"], "false", "{own}");
    let error = own["attrs"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(error.contains("certificate"), "{own}");
    assert_eq!(mutual["attrs"]["ok"], "true", "{mutual}");
    assert_eq!(mutual["attrs"]["status"], "200", "{mutual}");
    assert_eq!(own_cert["attrs"]["ok"], "false", "{own_cert}");
    let error = own_cert["attrs"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused the client certificate"),
        "{own_cert}"
    );
}

/// The events of `subject` in `helios.events`, once there is one.
async fn wait_for_events(data: &std::path::Path, subject: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let events: Vec<Value> = crate::common::tail_values(data, "helios.events")
            .into_iter()
            .filter(|e| e["subject"] == subject)
            .collect();
        if !events.is_empty() {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no event of {subject} in helios.events; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_bridge_reads_over_tls_with_sasl_scram_and_the_password_from_the_environment() {
    use helios_log::kafka::{KafkaConfig, KafkaLog, SaslMechanism, Secret, SecurityProtocol};
    use helios_log::{Record, TopicSpec};

    let (broker, ca_file, password) = crate::common::roles::KafkaBroker::sasl_ssl();
    let mut client = KafkaConfig::new(&broker).request_timeout(Duration::from_secs(10));
    client.security_protocol = Some(SecurityProtocol::SaslSsl);
    client.ca_file = Some(ca_file.clone());
    client.sasl_mechanism = Some(SaslMechanism::ScramSha512);
    client.sasl_username = Some("helios-512".into());
    client.sasl_password = Some(Secret::new(password.clone()));
    let external = KafkaLog::connect(client).await.unwrap();
    let topic = format!("helios-test.bridge-tls.{}", std::process::id());
    external
        .admin()
        .create_topic(&TopicSpec::new(topic.clone(), 1))
        .await
        .unwrap();
    let value = json!({"subject": "bridged-tls", "kind": "ci.run", "time": "2026-01-01T00:00:00Z"});
    external
        .producer()
        .append(
            &topic,
            vec![Record {
                value: value.to_string().into(),
                ..Record::default()
            }],
        )
        .await
        .unwrap();

    // An Avro topic, its writer schema in a registry that requires mutual TLS and HTTP
    // Basic credentials (as a Confluent schema registry may): the bridge's registry client
    // presents the process's client certificate and the spec's `registry_key_env`.
    let avro_topic = format!("{topic}.avro");
    external
        .admin()
        .create_topic(&TopicSpec::new(avro_topic.clone(), 1))
        .await
        .unwrap();
    let schema_json = r#"{"type":"record","name":"Run","fields":[{"name":"subject","type":"string"},{"name":"kind","type":"string"},{"name":"time","type":"string"}]}"#;
    let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
    let mut run = apache_avro::types::Record::new(&schema).unwrap();
    run.put("subject", "bridged-avro");
    run.put("kind", "ci.run");
    run.put("time", "2026-01-01T00:00:00Z");
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(run)
        .unwrap();
    external
        .producer()
        .append(
            &avro_topic,
            vec![Record {
                value: helios_schemas::wire::frame(7, &body),
                ..Record::default()
            }],
        )
        .await
        .unwrap();
    // Basic `bridge:r3gistry`.
    let registry_calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let registry = {
        let calls = registry_calls.clone();
        let answer = json!({ "schema": schema_json });
        Router::new().route(
            "/schemas/ids/{id}",
            get(move |headers: HeaderMap, uri: axum::http::Uri| {
                let (calls, answer) = (calls.clone(), answer.clone());
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    calls.lock().unwrap().push(format!("{} {auth}", uri.path()));
                    if auth != "Basic YnJpZGdlOnIzZ2lzdHJ5" {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                    }
                    (StatusCode::OK, axum::Json(answer))
                }
            }),
        )
    };
    let test_ca = TestCa::new();
    let registry_url = test_ca.serve_mutual(registry).await;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[[source]]
type = "kafka_bridge"
name = "external"
bootstrap_servers = "{broker}"
topics = ["{topic}"]
ca_file = {ca_file:?}
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "helios-512"
sasl_password_env = "HELIOS_TEST_BRIDGE_PASSWORD"

[[source]]
type = "kafka_bridge"
name = "external_avro"
bootstrap_servers = "{broker}"
topics = ["{avro_topic}"]
format = "avro"
registry_url = "{registry_url}"
registry_key_env = "HELIOS_TEST_REGISTRY_KEY"
ca_file = {ca_file:?}
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "helios-512"
sasl_password_env = "HELIOS_TEST_BRIDGE_PASSWORD"
"#
        ),
    )
    .unwrap();
    let server = Helios::up_with_env(
        &data,
        &["--spec", spec.to_str().unwrap()],
        &[
            ("HELIOS_TEST_BRIDGE_PASSWORD", &password),
            ("HELIOS_TEST_REGISTRY_KEY", "bridge:r3gistry"),
            ("HELIOS_CA_FILE", test_ca.ca_file().to_str().unwrap()),
            (
                "HELIOS_CLIENT_CERT_FILE",
                test_ca.client_cert_file().to_str().unwrap(),
            ),
            (
                "HELIOS_CLIENT_KEY_FILE",
                test_ca.client_key_file().to_str().unwrap(),
            ),
        ],
    )
    .await;
    let events = wait_for_events(&data, "bridged-tls").await;
    let avro = wait_for_events(&data, "bridged-avro").await;
    server.stop();
    assert_eq!(events[0]["source"], "external", "{events:?}");
    assert_eq!(events[0]["kind"], "ci.run", "{events:?}");
    assert_eq!(avro[0]["source"], "external_avro", "{avro:?}");
    assert_eq!(avro[0]["kind"], "ci.run", "{avro:?}");
    assert_eq!(
        registry_calls.lock().unwrap().first().map(String::as_str),
        Some("/schemas/ids/7 Basic YnJpZGdlOnIzZ2lzdHJ5"),
        "the writer schema was not fetched with the spec's credential"
    );
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(!log.contains(&password), "the password reached the log");
    assert!(
        !log.contains("r3gistry"),
        "the registry key reached the log"
    );
}

/// The HTTPS endpoint, password user, read user and CA of the test ClickHouse
/// (`scripts/services/clickhouse.sh` exports them).
struct ClickHouseTls {
    url: String,
    ca: String,
    untrusted_ca: String,
    user: String,
    password: String,
    read_user: String,
    read_password: String,
    /// The client certificate and key the server's HTTPS port requires (mutual TLS).
    cert: String,
    key: String,
}

fn clickhouse_tls() -> ClickHouseTls {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: start scripts/services/clickhouse.sh (it serves HTTPS)")
        })
    };
    ClickHouseTls {
        url: var("HELIOS_TEST_CLICKHOUSE_HTTPS"),
        ca: var("HELIOS_TEST_CLICKHOUSE_CA"),
        untrusted_ca: var("HELIOS_TEST_CLICKHOUSE_UNTRUSTED_CA"),
        user: var("HELIOS_TEST_CLICKHOUSE_USER"),
        password: var("HELIOS_TEST_CLICKHOUSE_PASSWORD"),
        read_user: var("HELIOS_TEST_CLICKHOUSE_READ_USER"),
        read_password: var("HELIOS_TEST_CLICKHOUSE_READ_PASSWORD"),
        cert: var("HELIOS_TEST_CLICKHOUSE_CLIENT_CERT"),
        key: var("HELIOS_TEST_CLICKHOUSE_CLIENT_KEY"),
    }
}

/// `helios up` stores in ClickHouse over HTTPS as a password user, presenting the client
/// certificate the server requires (mutual TLS); `helios migrate` says which of the
/// password, the server's CA or the client certificate is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helios_up_stores_in_clickhouse_over_https_as_a_password_user() {
    let ch = clickhouse_tls();
    // The read user may read only the `helios` database (users.xml of the test server).
    let database = "helios";
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let password_file = tmp.path().join("ch.password");
    std::fs::write(&password_file, format!("{}\n", ch.password)).unwrap();
    let args = [
        "--clickhouse",
        ch.url.as_str(),
        "--clickhouse-database",
        database,
        "--clickhouse-user",
        ch.user.as_str(),
        "--clickhouse-ca-file",
        ch.ca.as_str(),
        "--clickhouse-read-user",
        ch.read_user.as_str(),
    ];
    // The server requires mutual TLS: the client certificate comes from the environment
    // (the sink and the read API both present it).
    let server = Helios::up_with_env(
        &data,
        &args,
        &[
            (
                "HELIOS_CLICKHOUSE_PASSWORD_FILE",
                password_file.to_str().unwrap(),
            ),
            ("HELIOS_CLICKHOUSE_READ_PASSWORD", ch.read_password.as_str()),
            ("HELIOS_CLICKHOUSE_CERT_FILE", ch.cert.as_str()),
            ("HELIOS_CLICKHOUSE_KEY_FILE", ch.key.as_str()),
        ],
    )
    .await;
    let id = format!("tls-ch-{}", std::process::id());
    let resp = server
        .post_events(&json!([{"specversion": "1.0", "id": id, "source": "tls",
            "type": "tls.check", "subject": "clickhouse"}]))
        .await;
    assert_eq!(resp.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp = server
            .post("/v1/sql")
            .json(&json!({"sql": format!("SELECT count() AS n FROM events WHERE id = '{id}'")}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        if body["rows"][0][0] == json!(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event never reached ClickHouse over HTTPS: {body}; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop();

    // A wrong password, and a CA that did not sign the server's certificate: `helios
    // migrate` stops, saying which.
    let migrate = |password: &str, ca: &str| {
        std::process::Command::new(BIN)
            .args(["migrate", "--clickhouse", &ch.url, "--database", database])
            .args(["--clickhouse-user", &ch.user, "--clickhouse-ca-file", ca])
            .args([
                "--clickhouse-cert-file",
                &ch.cert,
                "--clickhouse-key-file",
                &ch.key,
            ])
            .env("HELIOS_CLICKHOUSE_PASSWORD", password)
            .env_remove("HELIOS_CLICKHOUSE_PASSWORD_FILE")
            .output()
            .unwrap()
    };
    let out = migrate("not-the-password", &ch.ca);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("authentication failed") && stderr.contains("password"),
        "a wrong password is not named: {stderr}"
    );
    assert!(
        !stderr.contains("not-the-password"),
        "the password is in the message: {stderr}"
    );
    let out = migrate(&ch.password, &ch.untrusted_ca);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("certificate is not trusted") && stderr.contains("--clickhouse-ca-file"),
        "an untrusted certificate is not named: {stderr}"
    );
    // Without the client certificate the server requires: stops, naming the settings.
    let out = std::process::Command::new(BIN)
        .args(["migrate", "--clickhouse", &ch.url, "--database", database])
        .args([
            "--clickhouse-user",
            &ch.user,
            "--clickhouse-ca-file",
            &ch.ca,
        ])
        .env("HELIOS_CLICKHOUSE_PASSWORD", &ch.password)
        .env_remove("HELIOS_CLICKHOUSE_PASSWORD_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refused the client certificate")
            && stderr.contains("--clickhouse-cert-file"),
        "a missing client certificate is not named: {stderr}"
    );
    let out = migrate(&ch.password, &ch.ca);
    assert!(
        out.status.success(),
        "migrate over HTTPS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A remote schema registry over HTTPS with HTTP Basic credentials (as Confluent Cloud
/// serves one): `helios tail --registry https://… --registry-key user:secret --ca-file …`
/// decodes the events of a running `helios up` through it. The registry is `helios up`'s
/// own, behind a TLS proxy of this test that admits only the Basic credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helios_tail_decodes_through_a_remote_registry_over_https_with_basic_auth() {
    use axum::body::Bytes;
    use axum::http::Method;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &[]).await;
    let resp = server
        .post_events(
            &json!([{"specversion": "1.0", "id": "reg-1", "source": "ci",
            "type": "ci.run", "subject": "registry-over-tls"}]),
        )
        .await;
    assert_eq!(resp.status(), 202);

    // Basic `reader:s3cret`, checked here; forwarded with the server's own key.
    let expected = "Basic cmVhZGVyOnMzY3JldA==";
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let upstream = format!("http://{}", server.addr);
    let key = server.key.clone();
    let proxy = {
        let seen = seen.clone();
        move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let (seen, upstream, key) = (seen.clone(), upstream.clone(), key.clone());
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(format!("{method} {uri} {auth}"));
                if auth != expected {
                    return (StatusCode::UNAUTHORIZED, Bytes::new());
                }
                let r = crate::common::http()
                    .request(method, format!("{upstream}{uri}"))
                    .bearer_auth(key)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.bytes().await.unwrap())
            }
        }
    };
    let ca = TestCa::new();
    // The registry also requires mutual TLS: `--client-cert-file` admits `tail`.
    let url = ca.serve_mutual(Router::new().fallback(proxy)).await;

    let tail_with = |key: &'static str, client_cert: bool| {
        let (data, url, ca_file) = (data.clone(), url.clone(), ca.ca_file());
        let (cert, key_file) = (ca.client_cert_file(), ca.client_key_file());
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(BIN);
            command
                .args(["tail", "helios.events", "--from-beginning", "--data-dir"])
                .arg(&data)
                .args(["--registry", &url, "--registry-key", key, "--ca-file"])
                .arg(&ca_file)
                .env_remove("HELIOS_CLIENT_CERT_FILE")
                .env_remove("HELIOS_CLIENT_KEY_FILE");
            if client_cert {
                command
                    .arg("--client-cert-file")
                    .arg(&cert)
                    .arg("--client-key-file")
                    .arg(&key_file);
            }
            command.output().unwrap()
        })
    };
    let tail = |key: &'static str| tail_with(key, true);
    let out = tail("reader:s3cret").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tail through the https registry failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("registry-over-tls"), "{stdout}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("GET /schemas/ids/")),
        "the schema was not fetched through the proxy: {:?}",
        seen.lock().unwrap()
    );

    // Wrong credentials: the registry refuses, and every record says so instead of its
    // decoded value.
    let out = tail("reader:wrong").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().count() > 0, "{stdout}");
    for line in stdout.lines() {
        assert!(
            line.contains("could not decode") && line.contains("401 Unauthorized"),
            "{line}"
        );
    }

    // No client certificate: the registry's TLS refuses it, and every record says so.
    let out = tail_with("reader:s3cret", false).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().count() > 0, "{stdout}");
    for line in stdout.lines() {
        assert!(
            line.contains("could not decode")
                && line.contains("refused the client certificate")
                && line.contains("--client-cert-file"),
            "{line}"
        );
    }
    server.stop();
}
