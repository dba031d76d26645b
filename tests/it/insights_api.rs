//! The read API end to end: events posted to `helios up --spec` become windows, alerts and
//! rows that the insights routes and SQL answer from the embedded store; `helios serve api`
//! over the same data dir answers the same; the OpenAPI document validates, and every route
//! in it is called here with a key of the right scope.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Helios};
use serde_json::{Value, json};

const SPEC: &str = r#"
[[source]]
name = "ingest"
type = "http"

[[source]]
name = "hooks"
type = "webhook"
token = "openapi-t0ken"

[[source]]
name = "gh"
type = "github"
secret = "openapi-s3cret"

# The events are dated 2026-11-20: kept whatever day the test runs (the embedded store
# drops days past its default retention, ADR-016).
[retention]
events = "50y"
aggregates = "50y"
alerts = "50y"
insights = "50y"

[watermark]
max_out_of_orderness = "1s"
idle_timeout = "1h"

[[aggregate]]
name = "ci"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { runs = "count(*)", seconds = "sum(value)" }

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 2
within = "1h"
severity = "warning"
"#;

fn run(id: usize, subject: &str, minute: u32, conclusion: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("run-{id}"), "source": "ci", "type": "ci.run",
           "subject": subject, "time": format!("2026-11-20T10:{minute:02}:30Z"),
           "value": 10 + id, "conclusion": conclusion})
}

async fn get_json(server: &Helios, path: &str) -> (u16, Value) {
    let r = match server.get(path).send().await {
        Ok(r) => r,
        // Not listening yet (a server that is starting).
        Err(e) => return (0, Value::String(e.to_string())),
    };
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `path` until `done` holds for its JSON (the pipeline and sink work in the
/// background), or fails after a minute with the last answer.
async fn eventually(server: &Helios, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get_json(server, path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {status} {body}; see {}",
            server.data_dir.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_are_answered_by_the_insights_api_and_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Helios::up(
        &data,
        &[
            "--spec",
            spec.to_str().unwrap(),
            "--checkpoint-interval",
            "100ms",
        ],
    )
    .await;

    // Minutes 0-2: helios 3 runs a minute (two failing in minute 1), atlas 1; then events
    // at minute 5 move the watermarks past the first three windows.
    let mut events = Vec::new();
    let mut id = 0;
    for minute in 0..3 {
        for (subject, n) in [("helios", 3), ("atlas", 1)] {
            for i in 0..n {
                id += 1;
                let failing = minute == 1 && subject == "helios" && i < 2;
                events.push(run(
                    id,
                    subject,
                    minute,
                    if failing { "failure" } else { "success" },
                ));
            }
        }
    }
    // Watermarks are per partition: each subject needs a later event of its own.
    id += 1;
    events.push(run(id, "atlas", 5, "success"));
    events.push(
        json!({"specversion": "1.0", "id": "push-1", "source": "git", "type": "git.push",
                       "subject": "helios", "time": "2026-11-20T10:05:00Z"}),
    );
    let r = server
        .post("/v1/events")
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let range = "from=2026-11-20T10:00:00Z&to=2026-11-20T10:03:00Z";
    let body = eventually(
        &server,
        &format!("/v1/insights/timeseries?aggregate=ci&measure=runs&group_by=subject&{range}"),
        // Both subjects, every window stored (windows close as the watermark passes them).
        |b| {
            b["series"].as_array().is_some_and(|s| {
                s.len() == 2
                    && s.iter().all(|series| {
                        series["points"]
                            .as_array()
                            .is_some_and(|p| p.iter().all(|p| p["value"].is_number()))
                    })
            })
        },
    )
    .await;
    assert_eq!(body["series"][0]["key"], "helios");
    let values: Vec<&Value> = body["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["value"])
        .collect();
    assert_eq!(values, [&json!(3.0), &json!(3.0), &json!(3.0)]);

    let (status, top) = get_json(
        &server,
        &format!("/v1/insights/top?aggregate=ci&measure=runs&{range}"),
    )
    .await;
    assert_eq!(status, 200, "{top}");
    assert_eq!(
        top["rows"],
        json!([{"key": "helios", "value": 9.0}, {"key": "atlas", "value": 3.0}])
    );

    let alerts = eventually(&server, "/v1/alerts?state=firing", |b| {
        b["alerts"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(alerts["alerts"][0]["group"], json!({"subject": "helios"}));

    let events = eventually(&server, "/v1/events?subject=helios&limit=5", |b| {
        b["next_cursor"].is_string()
    })
    .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 5);

    let subject = eventually(
        &server,
        "/v1/subjects/helios?from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z",
        |b| b["events"]["count"] == 10,
    )
    .await;
    assert_eq!(subject["open_alerts"].as_array().unwrap().len(), 1);

    let r = server
        .post("/v1/sql")
        .json(&json!({"sql": "SELECT subject, count(*) AS n FROM events GROUP BY subject ORDER BY subject"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sql: Value = r.json().await.unwrap();
    assert_eq!(sql["rows"], json!([["atlas", 4], ["helios", 10]]));

    // `helios serve api` over the same data dir, with the same key file, answers the same.
    let api_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let serve = crate::common::Running(
        Command::new(BIN)
            .args(["serve", "api", "--listen", &api_addr.to_string(), "--spec"])
            .arg(&spec)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let served = Helios {
        child: Command::new("true").spawn().unwrap(),
        addr: api_addr,
        data_dir: data.clone(),
        key: server.key.clone(),
    };
    let path = format!("/v1/insights/top?aggregate=ci&measure=runs&{range}");
    let again = eventually(&served, &path, |_| true).await;
    assert_eq!(again, top);
    let (status, _) = get_json(&served, "/readyz").await;
    assert_eq!(status, 200);
    drop(serve);
}

/// Every route of `/openapi.json`, called with an admin key; the document itself checked
/// by `openapi-spec-validator` (installed by `scripts/test`; required under `CI=true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_validates_and_every_route_in_it_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Helios::up(&data, &["--spec", spec.to_str().unwrap()]).await;
    let (status, doc) = get_json(&server, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));

    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    validate(&file);

    // One real call per documented operation, with the parameters it requires.
    let calls: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "post",
            "/v1/events",
            Some(
                json!({"specversion": "1.0", "id": "openapi-1", "source": "openapi",
                        "type": "openapi.check", "subject": "nobody"}),
            ),
        ),
        (
            "post",
            "/v1/webhooks/{source}?token=openapi-t0ken",
            Some(json!({"id": "openapi-2", "kind": "openapi.check", "subject": "nobody"})),
        ),
        (
            "post",
            "/v1/webhooks/github/{source}",
            Some(json!({"zen": "Keep it logically awesome.", "hook_id": 1})),
        ),
        ("get", "/v1/aggregates", None),
        (
            "get",
            "/v1/insights/timeseries?aggregate=ci&measure=runs",
            None,
        ),
        ("get", "/v1/insights/top?aggregate=ci&measure=seconds", None),
        ("get", "/v1/alerts", None),
        ("get", "/v1/insights", None),
        ("get", "/v1/events", None),
        ("get", "/v1/subjects/{subject}", None),
        ("get", "/v1/late", None),
        (
            "post",
            "/v1/sql",
            Some(json!({"sql": "SELECT count(*) AS n FROM alerts"})),
        ),
        ("get", "/healthz", None),
        ("get", "/readyz", None),
        ("get", "/metrics", None),
        ("get", "/openapi.json", None),
        ("get", "/v1/storage", None),
        ("get", "/v1/sources", None),
        ("post", "/v1/sources/{name}/pause", None),
        ("post", "/v1/sources/{name}/resume", None),
    ];
    let mut called = BTreeSet::new();
    let mut answered_with = BTreeSet::new();
    for (method, path, body) in &calls {
        let template = path.split('?').next().unwrap();
        called.insert(format!("{method} {template}"));
        let concrete = path
            .replace("{subject}", "nobody")
            .replace("{name}", "ingest")
            .replace("github/{source}", "github/gh")
            .replace("{source}", "hooks");
        let mut request = match (*method, body) {
            ("get", _) => server.get(&concrete),
            // The webhooks take their source's token or signature, not an API key.
            (_, Some(body)) if template.starts_with("/v1/webhooks/") => {
                crate::common::http().post(server.url(&concrete)).json(body)
            }
            (_, Some(body)) => server.post(&concrete).json(body),
            (_, None) => server.post(&concrete),
        };
        if template.starts_with("/v1/webhooks/github/") {
            // GitHub's ping, signed as GitHub signs it.
            let body = body.as_ref().unwrap().to_string();
            request = request
                .header("x-github-event", "ping")
                .header("x-github-delivery", "openapi-3")
                .header(
                    "x-hub-signature-256",
                    crate::common::github_signature("openapi-s3cret", body.as_bytes()),
                );
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let responses = &doc["paths"][template][*method]["responses"];
        assert!(
            responses.get(status.to_string()).is_some(),
            "{method} {concrete} answered {status}, which the document does not list: {responses}"
        );
        // Where the document names the answer's schema, the answer has its fields: each
        // one documented, none of the required ones missing.
        let schema = &responses[status.to_string()]["content"]["application/json"]["schema"];
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            && [
                "Usage",
                "Sources",
                "SourceStatus",
                "Accepted",
                "Delivered",
                "Pong",
            ]
            .contains(&name)
        {
            let body: Value = r.json().await.unwrap();
            check_fields(&doc, name, &body, &format!("{method} {concrete}"));
            answered_with.insert(name);
        }
    }
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| format!("{m} {path}"))
        })
        .collect();
    assert_eq!(
        documented, called,
        "every documented route is called above, and only those"
    );
    assert_eq!(
        answered_with,
        BTreeSet::from([
            "Accepted",
            "Delivered",
            "Pong",
            "Sources",
            "SourceStatus",
            "Usage"
        ]),
        "each answer checked against its schema"
    );
    // A name no source has, plain or huge: the documented 404, naming it (a huge one
    // clipped), and nothing paused.
    for name in ["no-such-source".to_owned(), "x".repeat(20_000)] {
        let r = server
            .post(&format!("/v1/sources/{name}/pause"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let answer: Value = r.json().await.unwrap();
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(&name[..name.len().min(128)]), "{error}");
        assert!(error.len() < 300, "{} bytes", error.len());
    }
    let (_, sources) = get_json(&server, "/v1/sources").await;
    assert!(
        sources["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "paused"),
        "{sources}"
    );
}

/// `body` (an answer documented as schema `name`) has only documented fields and every
/// required one.
fn check_fields(doc: &Value, name: &str, body: &Value, call: &str) {
    let fields: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let schema = &doc["components"]["schemas"][name];
    let documented: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        fields.is_subset(&documented),
        "{call}: fields {fields:?} not all in {name} {documented:?}: {body}"
    );
    assert!(
        required.is_subset(&fields),
        "{call}: required fields {required:?} of {name} missing: {body}"
    );
}

fn validate(file: &std::path::Path) {
    let validator = std::env::var("HELIOS_OPENAPI_VALIDATOR")
        .unwrap_or_else(|_| "openapi-spec-validator".to_owned());
    match Command::new(&validator).arg(file).output() {
        Ok(out) => assert!(
            out.status.success(),
            "{validator} rejected the document:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run {validator} ({e}): install it with `pip install openapi-spec-validator` \
             or run the suite through scripts/test, which does"
        ),
    }
}

/// `helios run ingest` serves the document of what it serves: health, metrics, the
/// sources' routes and the push routes of its spec, not the read API's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingest_documents_its_own_routes() {
    use crate::common::roles::{Role, wait_http};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(
        &spec,
        "[[source]]\nname = \"ingest\"\ntype = \"http\"\n\n\
         [[source]]\nname = \"hooks\"\ntype = \"webhook\"\ntoken = \"t0ken\"\n",
    )
    .unwrap();
    let key = crate::common::api_key(&data);
    let addr = crate::common::free_addr();
    let mut ingest = Role::start(
        "ingest",
        tmp.path(),
        &[
            "run",
            "ingest",
            "--spec",
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        &[],
    );
    let client = crate::common::http();
    wait_http(&client, &format!("http://{addr}/healthz"), &mut ingest).await;
    let r = client
        .get(format!("http://{addr}/openapi.json"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    validate(&file);
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/events",
            "/v1/sources",
            "/v1/sources/{name}/pause",
            "/v1/sources/{name}/resume",
            "/v1/webhooks/{source}",
        ]
    );
    // The documented ingest answers as documented.
    let r = client
        .post(format!("http://{addr}/v1/events"))
        .bearer_auth(&key)
        .json(&json!({"specversion": "1.0", "id": "e-1", "source": "s", "type": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    check_fields(&doc, "Accepted", &body, "POST /v1/events");
    // Not served here, so not documented: the read API.
    let r = client
        .post(format!("http://{addr}/v1/sql"))
        .bearer_auth(&key)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
