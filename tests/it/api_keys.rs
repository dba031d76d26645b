//! Issue 6, API keys end to end: the first start of `helios up` prints an admin key with
//! the dashboard URL; `helios keys` creates, lists and revokes keys of the running
//! server's data dir, and the server honours them from the next request; `helios send`
//! sends its key.

use crate::common::{Helios, helios};
use serde_json::{Value, json};

/// The key the first start printed to its stderr (the test harness's log file).
fn printed_key(log: &str) -> String {
    log.lines()
        .map(str::trim)
        .find(|l| l.starts_with("hel_"))
        .unwrap_or_else(|| panic!("no key printed on first start:\n{log}"))
        .to_owned()
}

fn keys(args: &[&str], data: &str) -> std::process::Output {
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", data]);
    let out = helios(&all);
    assert!(
        out.status.success(),
        "helios {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn first_start_prints_an_admin_key_and_keys_are_managed_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();
    let log_path = data.with_extension("log");

    let mut server = Helios::start(&data, &[], String::new()).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let admin = printed_key(&log);
    assert!(
        log.contains(&format!("http://{}/#key={admin}", server.addr)),
        "no dashboard URL with the key:\n{log}"
    );
    let file = std::fs::read_to_string(data.join("keys.json")).unwrap();
    let secret = admin.rsplit('_').next().unwrap();
    // Printed on the terminal, never in a log line: the log line names only the key's id.
    let logged = log
        .lines()
        .find(|l| l.contains("created an admin key"))
        .unwrap_or_else(|| panic!("no log line about the new key:\n{log}"));
    assert!(logged.contains(&admin[4..16]), "{logged}");
    assert!(
        // The printed block is indented; log lines start with their timestamp.
        log.lines()
            .filter(|l| l.contains(secret))
            .all(|l| l.starts_with("  ")),
        "the key is in a log line:\n{log}"
    );
    assert!(!file.contains(secret), "the key file holds the secret");
    server.key = admin.clone();

    // Without a key: 401; probes stay open; the admin key may read.
    let anon = crate::common::http();
    let resp = anon.get(server.url("/v1/sources")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["hint"]
            .as_str()
            .unwrap()
            .contains("helios keys create")
    );
    let resp = anon.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = server.get("/v1/sources").send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A key created by another process while the server runs works at once.
    let out = keys(
        &["create", "--scope", "ingest", "--name", "uploader"],
        data_arg,
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ingest = stdout.strip_suffix('\n').unwrap().to_owned();
    assert!(
        ingest.starts_with("hel_") && !ingest.contains('\n'),
        "{stdout:?}"
    );
    let events = json!([{"specversion": "1.0", "id": "k1", "source": "keys-test",
                         "type": "ci.run", "subject": "helios"}]);
    let post = |key: &str| {
        anon.post(server.url("/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/cloudevents-batch+json")
            .body(events.to_string())
            .send()
    };
    assert_eq!(post(&ingest).await.unwrap().status(), 202);
    // Its scope is ingest only.
    let resp = anon
        .get(server.url("/v1/sources"))
        .bearer_auth(&ingest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // `helios send` sends its key; without one it is refused.
    let ndjson = tmp.path().join("events.ndjson");
    std::fs::write(
        &ndjson,
        r#"{"specversion":"1.0","id":"s1","source":"keys-test","type":"ci.run","subject":"helios"}"#,
    )
    .unwrap();
    let url = format!("http://{}", server.addr);
    let send = |key: Option<&str>| {
        let mut args = vec!["send", ndjson.to_str().unwrap(), "--url", &url, "--quiet"];
        if let Some(key) = key {
            args.extend_from_slice(&["--api-key", key]);
        }
        helios(&args)
    };
    let out = send(Some(&ingest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = send(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The list shows both keys and no secret.
    let out = keys(&["list"], data_arg);
    let list = String::from_utf8(out.stdout).unwrap();
    let ingest_id = &ingest[4..16];
    assert!(
        list.contains(ingest_id) && list.contains("uploader"),
        "{list}"
    );
    assert!(
        list.contains(&admin[4..16]) && list.contains("admin"),
        "{list}"
    );
    assert!(
        !list.contains(secret) && !list.contains(&ingest[17..]),
        "{list}"
    );

    // Revoked by the CLI: refused from the next request on.
    keys(&["revoke", ingest_id], data_arg);
    let resp = post(&ingest).await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // A restart with an active key creates none.
    server.stop();
    let server = Helios::start(&data, &[], admin.clone()).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(log.matches("Admin API key").count(), 1, "{log}");
    assert_eq!(
        server.get("/v1/sources").send().await.unwrap().status(),
        200
    );
    server.stop();
}

/// `--access-log`: one line per request answered, under the target `helios::access`, with
/// the method, the path without its query string, the status and the accepted key's id,
/// inside a span naming the caller's address.
#[tokio::test]
async fn the_access_log_names_each_request_its_status_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &["--access-log", "--log-format", "json"]).await;
    let key_id = server.key.split('_').nth(1).unwrap().to_owned();
    let keyed = server.get("/v1/sources").send().await.unwrap();
    assert_eq!(keyed.status(), 200);
    let bare = crate::common::http()
        .get(server.url("/v1/sources?token=do-not-log"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    server.stop();

    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    let access: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "helios::access")
        .collect();
    let find = |status: u64| {
        access
            .iter()
            .find(|v| v["fields"]["path"] == "/v1/sources" && v["fields"]["status"] == status)
            .unwrap_or_else(|| panic!("no access line for /v1/sources with {status}:\n{log}"))
    };
    let ok = find(200);
    assert_eq!(ok["fields"]["method"], "GET");
    assert_eq!(ok["fields"]["key_id"], key_id.as_str());
    assert!(ok["fields"]["ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let refused = find(401);
    assert_eq!(refused["fields"]["key_id"], "");
    for line in [ok, refused] {
        let spans = line["spans"].as_array().unwrap();
        assert!(
            spans.iter().any(|s| s["name"] == "http_connection"
                && s["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("127.0.0.1:"))),
            "the caller's address: {line}"
        );
    }
    assert!(
        !log.contains("do-not-log"),
        "a query string reached the log"
    );
}
