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
//!   `--metrics-tls-cert-file`/`--metrics-tls-key-file`, and half a pair stops it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::tls::TestCa;
use crate::common::{BIN, api_key, free_addr, tail_values};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helios_up_serves_https_with_its_certificate_and_closes_what_is_not_tls() {
    let ca = TestCa::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = api_key(&data);
    let addr = free_addr();
    let dir = ca.dir.path();
    let log = std::fs::File::create(tmp.path().join("up.log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("up")
        .args(["--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert-file")
        .arg(dir.join("server.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("server.key"))
        .arg("--ca-file")
        .arg(ca.ca_file())
        .args(["--http-header-timeout", "2s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
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
            child.try_wait().unwrap().is_none(),
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
    let events = tmp.path().join("events.ndjson");
    std::fs::write(
        &events,
        json!({"specversion": "1.0", "id": "over-tls-1", "source": "laptop",
               "type": "note", "subject": "tls"})
        .to_string(),
    )
    .unwrap();
    let sent = tokio::task::spawn_blocking({
        let (events, base, key, ca_file) =
            (events.clone(), base.clone(), key.clone(), ca.ca_file());
        move || {
            Command::new(BIN)
                .arg("send")
                .arg(&events)
                .args(["--url", &base, "--api-key", &key, "--quiet", "--ca-file"])
                .arg(&ca_file)
                .env_remove("HELIOS_CA_FILE")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
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
    child.kill().unwrap();
    child.wait().unwrap();
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
    let mut child = Command::new(BIN)
        .arg("up")
        .args(["--listen", &addr.to_string(), "--tls-reload-interval", "1s"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
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
    assert!(child.try_wait().unwrap().is_none(), "helios up exited");
    child.kill().unwrap();
    child.wait().unwrap();
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
        .env_remove("HELIOS_METRICS_TLS_KEY_FILE");
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
    let addr = free_addr();
    let listen = addr.to_string();
    let log_path = tmp.path().join("sink.log");
    let mut child = run_sink(
        &data,
        &spec,
        &[
            "--metrics-listen".as_ref(),
            listen.as_ref(),
            "--metrics-tls-cert-file".as_ref(),
            cert.as_os_str(),
            "--metrics-tls-key-file".as_ref(),
            key.as_os_str(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_path).unwrap())
    .spawn()
    .unwrap();
    let url = format!("https://localhost:{}/metrics", addr.port());
    let served = |ca: &Path| {
        let request = client_trusting(ca).get(&url);
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    };
    wait_until("no HTTPS /metrics", &log_path, || served(&ca.ca_file())).await;
    let body = client_trusting(&ca.ca_file())
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
    let plain = crate::common::http()
        .get(format!("http://127.0.0.1:{}/metrics", addr.port()))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    child.kill().unwrap();
    child.wait().unwrap();

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
}
