//! Issue 14, the standard client forms, driven by the clients people run: the CloudEvents
//! Python SDK posts in structured, binary and batched content modes, and the Confluent
//! Python client's `SchemaRegistryClient` registers, looks up and checks compatibility
//! against the embedded registry with a key in `basic.auth.user.info`, against a real
//! `helios up`. The scripts are in `tests/it/python/`; the interpreter is
//! `HELIOS_PYTHON`, whose venv scripts/test fills with pinned `cloudevents` and
//! `confluent-kafka` (like `HELIOS_OPENAPI_VALIDATOR`, a missing one fails the test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::Helios;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/python")
        .join(name)
}

/// Runs a script of `tests/it/python/` with a Python that can import `modules`, and
/// parses the one JSON object it prints.
fn run_python(name: &str, modules: &[&str], args: &[&str]) -> Value {
    let python = std::env::var("HELIOS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let import = format!("import {}", modules.join(", "));
    let usable = Command::new(&python).args(["-c", &import]).output();
    match usable {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{python} cannot `{import}`: {}install the pinned packages with scripts/test (it fills \
             $HELIOS_TOOLS/venv and sets HELIOS_PYTHON), or point HELIOS_PYTHON at a Python that has them",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run {python} ({e}): run the suite through scripts/test, which installs it, \
             or set HELIOS_PYTHON"
        ),
    }
    let out = Command::new(&python)
        .arg(script(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name} printed no JSON object ({e}): {stdout}"))
}

/// A new key of `scope` for the data dir of a running server.
fn create_key(data: &Path, scope: &str) -> String {
    crate::common::new_key(data, scope, &format!("python {scope}"))
}

#[tokio::test]
async fn the_cloudevents_sdk_posts_in_structured_binary_and_batched_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &[]).await;
    let ingest = create_key(&data, "ingest");

    let answers = run_python(
        "cloudevents_modes.py",
        &["cloudevents.core.bindings.http"],
        &[&server.url(""), &ingest],
    );
    let answers = answers.as_object().unwrap();
    assert_eq!(answers.len(), 7, "{answers:?}");
    for (request, answer) in answers {
        let accepted = if request == "batch" { 2 } else { 1 };
        assert_eq!(
            (answer["status"].clone(), answer["body"].clone()),
            (json!(202), json!({"accepted": accepted, "rejected": []})),
            "{request}"
        );
    }

    // Every event is on the topic, and each binary-mode event is its structured twin.
    let mut events: BTreeMap<String, Value> =
        crate::common::tail_records("helios.events", &["--data-dir", data.to_str().unwrap()])
            .into_iter()
            .filter(|l| l["value"]["source"] == "/python-sdk")
            .map(|l| {
                assert_eq!(l["key"], "hélios web 😀", "keyed by subject: {l}");
                let mut event = l["value"].clone();
                let id = event["id"].as_str().unwrap().to_owned();
                // What differs between twins by design.
                event["id"] = Value::Null;
                event["received_at"] = Value::Null;
                (id, event)
            })
            .collect();
    let ids: Vec<&str> = events.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "py-batch-0",
            "py-batch-1",
            "py-binary-bytes",
            "py-binary-json",
            "py-binary-text",
            "py-structured-bytes",
            "py-structured-json",
            "py-structured-text"
        ]
    );
    for kind in ["json", "bytes", "text"] {
        assert_eq!(
            events[&format!("py-binary-{kind}")],
            events[&format!("py-structured-{kind}")],
            "{kind}: binary and structured mode differ"
        );
    }
    let json = events.remove("py-binary-json").unwrap();
    assert_eq!(json["subject"], "hélios web 😀");
    assert_eq!(json["kind"], "sdk.test");
    assert_eq!(json["time"], 1_748_779_200_123_456i64);
    assert_eq!(json["attrs"], json!({"attempt": "3", "branch": "main"}));
    assert_eq!(json["payload"], json!({"n": 1, "tags": ["a", "b"]}));
    let bytes = &events["py-binary-bytes"];
    assert_eq!(bytes["payload"], "AJ+Slg==");
    assert_eq!(bytes["attrs"]["data_base64"], "true");
    assert_eq!(
        bytes["attrs"]["datacontenttype"],
        "application/octet-stream"
    );
    assert_eq!(events["py-binary-text"]["payload"], "déjà vu");
    assert_eq!(events["py-batch-1"]["payload"], json!({"i": 1}));
}

#[tokio::test]
async fn the_confluent_client_uses_the_registry_with_a_key_in_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &[]).await;
    let read = create_key(&data, "read");

    let got = run_python(
        "schema_registry.py",
        &["confluent_kafka.schema_registry"],
        &[&server.url(""), &server.key, &read],
    );
    let id = got["registered_id"].as_u64().expect("a schema id");
    assert_eq!(
        got["lookup"],
        json!({"id": id, "version": 1, "subject": "python-client-value"}),
        "{got}"
    );
    assert_eq!(got["compatible"], true, "{got}");
    assert_eq!(got["incompatible"], false, "{got}");
    assert!(
        got["reader_subjects"]
            .as_array()
            .unwrap()
            .contains(&json!("python-client-value")),
        "{got}"
    );
    assert_eq!(got["reader_latest_id"], id, "{got}");
    // Scopes hold: a read key may not register; a wrong or unknown key is refused.
    assert_eq!(got["reader_register_status"], 403, "{got}");
    for refused in [
        "wrong_secret_status",
        "unknown_key_status",
        "not_a_key_status",
    ] {
        assert_eq!(got[refused], 401, "{refused}: {got}");
    }

    // What the client registered is what the registry serves to a bearer client.
    let latest: Value = server
        .get("/subjects/python-client-value/versions/latest")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest["id"], id, "{latest}");
}
