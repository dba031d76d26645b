//! HTTPS on Helios' own listener (`--tls-cert-file`, `--tls-key-file`), end to end with the
//! real binary and a certificate the test CA signed (for `localhost` and `127.0.0.1`):
//!
//! - a client that trusts the CA is served (health, a keyed route, `helios send`);
//! - a plain-HTTP client, a client that does not trust the certificate, and a connection
//!   that never starts its handshake (after the header-read timeout) are closed, and none
//!   of them holds up the others;
//! - the `self` probe asks `https://<the certificate's name>:<port>/healthz`, trusting
//!   `--ca-file`, and finds Helios up;
//! - half a pair, a key that is not the certificate's, or a file that is no certificate
//!   stop the start, naming the flag or the file;
//! - `helios run sink --metrics-listen` serves `/metrics` over HTTPS with
//!   `--metrics-tls-cert-file`/`--metrics-tls-key-file`, to scrapers with a client
//!   certificate of `--metrics-tls-client-ca-file` only, and half a pair stops it;
//! - with `--tls-client-ca-file` only callers with a client certificate of that CA are
//!   served (`helios send` and the `self` probe present the process's
//!   `--client-cert-file`), a certificate on `--tls-client-crl-file` is refused, a change
//!   of either file applies without a restart, and client CAs without a certificate, a
//!   revocation list without client CAs, or a file that holds neither, stop the start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::tls::TestCa;
use crate::common::{BIN, Running, api_key, free_addr, tail_values};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helios_up_serves_https_with_its_certificate_and_closes_what_is_not_tls() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = api_key(&data);
    let addr = free_addr();
    let dir = ca.dir.path();
    let log = std::fs::File::create(tmp.path().join("up.log")).unwrap();
    let mut child = Running(
        up_over_https(
            addr,
            &data,
            &dir.join("server.pem"),
            &dir.join("server.key"),
        )
        .arg("--ca-file")
        .arg(ca.ca_file())
        .args(["--http-header-timeout", "2s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap(),
    );
    let base = format!("https://localhost:{}", addr.port());
    let trusting = client_trusting(&ca.ca_file());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = trusting.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "helios up exited; see {}",
            tmp.path().join("up.log").display()
        );
        assert!(Instant::now() < deadline, "no HTTPS /healthz within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A connection that never sends its ClientHello holds one slot, not the listener, and
    // is closed once the header-read timeout (2 s here) has passed.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();

    // Plain HTTP to the HTTPS port: no answer, the connection is closed.
    let plain = crate::common::http()
        .get(format!("http://127.0.0.1:{}/healthz", addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // A client that trusts another CA refuses the certificate.
    let refused = client_trusting(&ca.other_ca_file())
        .get(format!("{base}/healthz"))
        .send()
        .await;
    let refused = refused.expect_err("an untrusted certificate was accepted");
    assert!(
        helios_schemas::tls::describe(&refused).contains("not trusted")
            || helios_schemas::tls::describe(&refused).contains("certificate"),
        "{}",
        helios_schemas::tls::describe(&refused)
    );

    // After all that, a client that trusts the CA is still served: a keyed route, and
    // `helios send` with --ca-file.
    let sources = trusting
        .get(format!("{base}/v1/sources"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(sources.status(), 200);
    let events = one_event(tmp.path(), "over-tls-1");
    let ca_file = ca.ca_file();
    let sent = send_one(
        &events,
        &base,
        &key,
        &["--ca-file".as_ref(), ca_file.as_os_str()],
    );
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success() && stdout.contains("1 accepted"),
        "helios send over HTTPS: {stdout} {}",
        String::from_utf8_lossy(&sent.stderr)
    );

    // The self probe asks the certificate's name over HTTPS and finds Helios up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = loop {
        let probe = tail_values(&data, "helios.events")
            .into_iter()
            .find(|v| v["kind"] == "probe.http" && v["attrs"]["ok"] == "true");
        if let Some(probe) = probe {
            break probe;
        }
        assert!(
            Instant::now() < deadline,
            "no successful self probe within 60 s: {:?}",
            tail_values(&data, "helios.events")
                .into_iter()
                .filter(|v| v["kind"] == "probe.http")
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(probe["attrs"]["url"], format!("{base}/healthz"), "{probe}");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was not closed: {closed:?}"
    );
    drop(child);
}

/// `helios up` on `addr` with `data` as its data dir, serving HTTPS with `cert` and
/// `key`; the caller adds the rest.
fn up_over_https(addr: std::net::SocketAddr, data: &Path, cert: &Path, key: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("up")
        .args(["--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(data)
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key);
    cmd
}

/// `helios up` with these extra arguments; its stderr once it has exited (it must).
fn start_fails(data: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "up".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ];
    args.extend_from_slice(extra);
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(!out.status.success(), "helios up started with {extra:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_half_pair_a_key_of_another_certificate_or_no_certificate_stops_the_start() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = ca.dir.path();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));

    let err = start_fails(&data, &["--tls-cert-file".as_ref(), cert.as_os_str()]);
    assert!(
        err.contains("--tls-key-file") && err.contains("key is missing"),
        "{err}"
    );

    let other_key = dir.join("client.key");
    let err = start_fails(
        &data,
        &[
            "--tls-cert-file".as_ref(),
            cert.as_os_str(),
            "--tls-key-file".as_ref(),
            other_key.as_os_str(),
        ],
    );
    assert!(
        err.contains("client.key") && err.contains("give the private key of that certificate"),
        "{err}"
    );

    let not_pem = tmp.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = start_fails(
        &data,
        &[
            "--tls-cert-file".as_ref(),
            not_pem.as_os_str(),
            "--tls-key-file".as_ref(),
            key.as_os_str(),
        ],
    );
    assert!(
        err.contains("not.pem") && err.contains("-----BEGIN CERTIFICATE-----"),
        "{err}"
    );
    // Nothing was started on the way: the data dir holds no log.
    assert!(!data.join("log").exists());
}

/// A file of one event with this id, in `dir`, for `helios send`.
fn one_event(dir: &Path, id: &str) -> std::path::PathBuf {
    let events = dir.join("events.ndjson");
    let event = json!({"specversion": "1.0", "id": id, "source": "laptop",
                       "type": "note", "subject": "tls"});
    std::fs::write(&events, event.to_string()).unwrap();
    events
}

/// A client that trusts `ca`. Build one per check: a client resumes its TLS session
/// (no certificate is sent then) and keeps its connections.
fn client_trusting(ca: &Path) -> reqwest::Client {
    helios_schemas::tls::http_client_builder(Some(ca))
        .unwrap()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Replaces `to` with a copy of `from` in one step (a renewal tool writes and renames).
fn replace(from: &Path, to: &Path) {
    let next = to.with_extension("next");
    std::fs::copy(from, &next).unwrap();
    std::fs::rename(&next, to).unwrap();
}

/// Waits until `done` holds, failing the test with `what` and the log after 60 s.
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    log: &Path,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "{what} within 60 s; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let dir = ca.dir.path();
    replace(&dir.join("server.pem"), &cert);
    replace(&dir.join("server.key"), &key);
    let addr = free_addr();
    let log_path = tmp.path().join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Running(
        up_over_https(addr, &data, &cert, &key)
            .args(["--tls-reload-interval", "1s"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let health = format!("https://localhost:{}/healthz", addr.port());
    let (first, renewed) = (ca.ca_file(), ca.other_ca_file());
    // Whether a new client trusting this CA is served (a new handshake, not a resumed one).
    let answers = |ca: &Path| {
        let request = client_trusting(ca).get(&health);
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    };
    wait_until("no HTTPS /healthz", &log_path, || answers(&first)).await;
    assert!(
        !answers(&renewed).await,
        "a certificate of the other CA was served at start"
    );

    // A broken renewal (the key of another certificate) is logged; the certificate that
    // loaded last is still served.
    replace(&dir.join("client.key"), &key);
    let logged = |needle: &'static str| {
        let log_path = log_path.clone();
        async move {
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .contains(needle)
        }
    };
    wait_until("no warning about the broken pair", &log_path, || {
        logged("do not load; still serving the previous certificate")
    })
    .await;
    assert!(
        answers(&first).await,
        "the broken pair stopped the certificate served"
    );

    // The renewal proper: the other CA's certificate and its key.
    replace(&dir.join("other-server.pem"), &cert);
    replace(&dir.join("other-server.key"), &key);
    wait_until("the renewed certificate was not served", &log_path, || {
        answers(&renewed)
    })
    .await;
    assert!(
        !answers(&first).await,
        "the old certificate is still served"
    );
    assert!(logged("Reloaded the TLS certificate").await);
    assert!(child.0.try_wait().unwrap().is_none(), "helios up exited");
    drop(child);
}

/// `helios run sink` with `--metrics-listen` and a certificate, on the embedded log.
fn run_sink(data: &Path, spec: &Path, extra: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "sink", "--spec"])
        .arg(spec)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("HELIOS_METRICS_LISTEN")
        .env_remove("HELIOS_METRICS_TLS_CERT_FILE")
        .env_remove("HELIOS_METRICS_TLS_KEY_FILE")
        .env_remove("HELIOS_METRICS_TLS_CLIENT_CA_FILE");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_serves_its_metrics_over_https_and_half_a_pair_stops_it() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = tmp.path().join("helios.toml");
    std::fs::write(
        &spec,
        r#"
[[aggregate]]
name = "runs"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1m" }
group_by = ["subject"]
measures = { runs = "count(*)" }
"#,
    )
    .unwrap();
    let dir = ca.dir.path();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let ca_file = ca.ca_file();
    let addr = free_addr();
    let listen = addr.to_string();
    let log_path = tmp.path().join("sink.log");
    let child = Running(
        run_sink(
            &data,
            &spec,
            &[
                "--metrics-listen".as_ref(),
                listen.as_ref(),
                "--metrics-tls-cert-file".as_ref(),
                cert.as_os_str(),
                "--metrics-tls-key-file".as_ref(),
                key.as_os_str(),
                "--metrics-tls-client-ca-file".as_ref(),
                ca_file.as_os_str(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap(),
    );
    let url = format!("https://localhost:{}/metrics", addr.port());
    // A scraper with the client certificate the test CA signed (mutual TLS).
    let (client, client_key) = (ca.client_cert_file(), ca.client_key_file());
    let served = |ca: &Path| {
        let request = client_presenting(ca, &client, &client_key).get(&url);
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    };
    wait_until("no HTTPS /metrics", &log_path, || served(&ca.ca_file())).await;
    let body = client_presenting(&ca.ca_file(), &client, &client_key)
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("helios_sink_"), "{body}");
    // The certificate is the one given: a client that trusts another CA refuses it, and
    // plain HTTP to the port is not answered.
    assert!(!served(&ca.other_ca_file()).await);
    // A scraper without a client certificate is not answered.
    let bare = client_trusting(&ca.ca_file()).get(&url).send().await;
    assert!(
        bare.is_err(),
        "a scraper without a certificate was answered: {bare:?}"
    );
    let plain = crate::common::http()
        .get(format!("http://127.0.0.1:{}/metrics", addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    drop(child);

    let fails = |extra: &[&std::ffi::OsStr]| {
        let out = run_sink(&data, &spec, extra).output().unwrap();
        assert!(!out.status.success(), "the sink started with {extra:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fails(&[
        "--metrics-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--metrics-tls-cert-file".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(
        err.contains("--metrics-tls-key-file") && err.contains("key is missing"),
        "{err}"
    );
    let err = fails(&[
        "--metrics-tls-cert-file".as_ref(),
        cert.as_os_str(),
        "--metrics-tls-key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert!(err.contains("--metrics-listen is not"), "{err}");
    let err = fails(&[
        "--metrics-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--metrics-tls-client-ca-file".as_ref(),
        ca_file.as_os_str(),
    ]);
    assert!(
        err.contains("--metrics-tls-client-ca-file") && err.contains("--metrics-tls-cert-file"),
        "{err}"
    );
}

/// A client that trusts `ca` and presents `cert` (with its key) when asked; one per check,
/// as in [`client_trusting`].
fn client_presenting(ca: &Path, cert: &Path, key: &Path) -> reqwest::Client {
    let identity = helios_schemas::tls::ClientIdentity {
        cert_file: cert,
        key_file: key,
    };
    helios_schemas::tls::http_client_builder_with(Some(ca), Some(identity))
        .unwrap()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `helios send` of one event to `base` with these extra arguments (TLS flags).
fn send_one(
    events: &Path,
    base: &str,
    key: &str,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    Command::new(BIN)
        .arg("send")
        .arg(events)
        .args(["--url", base, "--api-key", key, "--quiet"])
        .args(extra)
        .env_remove("HELIOS_CA_FILE")
        .env_remove("HELIOS_CLIENT_CERT_FILE")
        .env_remove("HELIOS_CLIENT_KEY_FILE")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_callers_with_a_client_certificate_of_the_client_ca_are_served() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = api_key(&data);
    let dir = ca.dir.path();
    let client_cas = tmp.path().join("client-cas.pem");
    replace(&ca.ca_file(), &client_cas);
    let crl = tmp.path().join("revoked.crl");
    replace(&ca.crl_none_revoked(), &crl);
    let addr = free_addr();
    let log_path = tmp.path().join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Running(
        up_over_https(
            addr,
            &data,
            &dir.join("server.pem"),
            &dir.join("server.key"),
        )
        .args(["--tls-reload-interval", "1s"])
        .arg("--tls-client-ca-file")
        .arg(&client_cas)
        .arg("--tls-client-crl-file")
        .arg(&crl)
        // What the `self` probe trusts and presents.
        .arg("--ca-file")
        .arg(ca.ca_file())
        .arg("--client-cert-file")
        .arg(ca.client_cert_file())
        .arg("--client-key-file")
        .arg(ca.client_key_file())
        // The refusals of keys are logged at debug, inside the connection's span.
        .env("RUST_LOG", "info,helios_query_api::auth=debug")
        .env("HELIOS_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap(),
    );
    let base = format!("https://localhost:{}", addr.port());
    let health = format!("{base}/healthz");
    let (client, client_key) = (ca.client_cert_file(), ca.client_key_file());
    let (other, other_key) = (ca.other_client_cert_file(), ca.other_client_key_file());
    let answers = |cert: &Path, key: &Path| {
        let request = client_presenting(&ca.ca_file(), cert, key).get(&health);
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    };
    wait_until(
        "no HTTPS /healthz for the admitted client",
        &log_path,
        || answers(&client, &client_key),
    )
    .await;

    // No certificate, or one of another CA: no answer, the connection ends in the
    // handshake (under TLS 1.3 the client may see the alert or just the closed socket).
    let bare = client_trusting(&ca.ca_file()).get(&health).send().await;
    assert!(
        bare.is_err(),
        "a caller without a certificate was answered: {bare:?}"
    );
    assert!(
        !answers(&other, &other_key).await,
        "a certificate of another CA was admitted"
    );

    // The admitted caller still needs its key for keyed routes.
    let admitted = client_presenting(&ca.ca_file(), &client, &client_key);
    let sources = admitted
        .get(format!("{base}/v1/sources"))
        .send()
        .await
        .unwrap();
    assert_eq!(sources.status(), 401, "a certificate is not an API key");
    // The refusal's log line names the certificate: its subject and fingerprint.
    let fingerprint = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&client)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap();
    let fingerprint = fingerprint.trim().rsplit('=').next().unwrap().to_string();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let names_the_certificate = |line: &str| {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return false;
        };
        let refusal = v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Refused a request without a usable API key"));
        let spans = v["spans"].as_array().cloned().unwrap_or_default();
        refusal
            && spans.iter().any(|s| {
                s["name"] == "tls_client"
                    && s["client_cert_cn"] == "helios-client"
                    && s["client_cert_sha256"] == fingerprint.as_str()
            })
    };
    assert!(
        logged.lines().any(names_the_certificate),
        "no refusal naming the client certificate ({fingerprint}) in:\n{logged}"
    );
    let sources = admitted
        .get(format!("{base}/v1/sources"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(sources.status(), 200);

    // `helios send` presents --client-cert-file; without one it is refused.
    let events = one_event(tmp.path(), "mtls-1");
    let ca_file = ca.ca_file();
    let sent = send_one(
        &events,
        &base,
        &key,
        &[
            "--ca-file".as_ref(),
            ca_file.as_os_str(),
            "--client-cert-file".as_ref(),
            client.as_os_str(),
            "--client-key-file".as_ref(),
            client_key.as_os_str(),
        ],
    );
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success() && stdout.contains("1 accepted"),
        "helios send with a client certificate: {stdout} {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let refused = send_one(
        &events,
        &base,
        &key,
        &["--ca-file".as_ref(), ca_file.as_os_str()],
    );
    assert!(
        !refused.status.success(),
        "helios send without a client certificate succeeded: {}",
        String::from_utf8_lossy(&refused.stdout)
    );

    // The self probe presents the process's client certificate and finds Helios up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tail_values(&data, "helios.events")
        .into_iter()
        .any(|v| v["kind"] == "probe.http" && v["attrs"]["ok"] == "true")
    {
        assert!(
            Instant::now() < deadline,
            "no successful self probe within 60 s: {:?}",
            tail_values(&data, "helios.events")
                .into_iter()
                .filter(|v| v["kind"] == "probe.http")
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The CA revokes the client's certificate (a lost laptop): once the new list is
    // published, the next handshakes refuse it, without a restart.
    replace(&ca.crl_client_revoked(), &crl);
    wait_until("the revoked client was still admitted", &log_path, || {
        let admitted = answers(&client, &client_key);
        async move { !admitted.await }
    })
    .await;

    // The CA file changes (a rotation): the next handshakes are checked against the new
    // CA (which has no revocation list here, so none is checked), without a restart.
    replace(&ca.other_ca_file(), &client_cas);
    wait_until("the other CA's client was not admitted", &log_path, || {
        answers(&other, &other_key)
    })
    .await;
    assert!(
        !answers(&client, &client_key).await,
        "a client of the replaced CA is still admitted"
    );
    assert!(child.0.try_wait().unwrap().is_none(), "helios up exited");
    drop(child);

    // Each of these stops the start, and the error names what is wrong: client CAs
    // without HTTPS, a CA file that holds no certificate, a revocation list without client
    // CAs, a revocation list file that holds none.
    let not_pem = tmp.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let (cert, server_key) = (dir.join("server.pem"), dir.join("server.key"));
    let flag = |name: &'static str, path: &Path| [std::ffi::OsString::from(name), path.into()];
    let https = [
        flag("--tls-cert-file", &cert),
        flag("--tls-key-file", &server_key),
    ];
    let cases: [(Vec<[std::ffi::OsString; 2]>, [&str; 2]); 4] = [
        (
            vec![flag("--tls-client-ca-file", &client_cas)],
            ["--tls-client-ca-file", "--tls-cert-file"],
        ),
        (
            [https.to_vec(), vec![flag("--tls-client-ca-file", &not_pem)]].concat(),
            ["not-a-ca.pem", "-----BEGIN CERTIFICATE-----"],
        ),
        (
            vec![flag("--tls-client-crl-file", &crl)],
            ["--tls-client-crl-file", "--tls-client-ca-file"],
        ),
        (
            [
                https.to_vec(),
                vec![
                    flag("--tls-client-ca-file", &client_cas),
                    flag("--tls-client-crl-file", &not_pem),
                ],
            ]
            .concat(),
            ["not-a-ca.pem", "-----BEGIN X509 CRL-----"],
        ),
    ];
    for (i, (flags, needles)) in cases.iter().enumerate() {
        let args: Vec<&std::ffi::OsStr> = flags.iter().flatten().map(|a| a.as_os_str()).collect();
        let err = start_fails(&tmp.path().join(format!("start-{i}")), &args);
        assert!(needles.iter().all(|n| err.contains(n)), "{args:?}: {err}");
    }
}
