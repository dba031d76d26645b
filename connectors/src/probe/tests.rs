//! The probe against a real local HTTP server (axum on a loopback port) that answers 200,
//! then 500, then stops listening; events read back from a real embedded log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use helios_schemas::Event;
use tokio::sync::Notify;

use super::{ProbeConfig, ProbeSource};
use crate::runtime::{PullSource, SourceState, Supervisor};
use crate::test_support::{LogFixture, wait_status};

fn spawn(supervisor: &Supervisor, config: &ProbeConfig) -> crate::runtime::SourceHandle {
    let c = config.clone();
    supervisor
        .spawn(
            &config.name,
            "probe",
            Box::new(move || Ok(Box::new(ProbeSource::new(c.clone())?) as Box<dyn PullSource>)),
        )
        .unwrap()
}

fn attrs(e: &Event) -> Vec<(&str, &str)> {
    e.attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn records_up_wrong_status_and_unreachable() {
    // Answers 200 twice, then 500 twice; says so after the fourth answer.
    let hits = Arc::new(AtomicU32::new(0));
    let fourth = Arc::new(Notify::new());
    let (h, n) = (hits.clone(), fourth.clone());
    let app = Router::new().route(
        "/healthz",
        get(move || {
            let (h, n) = (h.clone(), n.clone());
            async move {
                let hit = h.fetch_add(1, Ordering::SeqCst) + 1;
                if hit == 4 {
                    n.notify_one();
                }
                if hit <= 2 {
                    (StatusCode::OK, "up")
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let fx = LogFixture::new().await;
    let supervisor = fx.supervisor();
    let url = format!("http://{addr}/healthz");
    let config = ProbeConfig {
        name: "web".into(),
        url: url.clone(),
        interval: Duration::from_millis(150),
        timeout: Duration::from_secs(5),
        ..ProbeConfig::default()
    };
    let handle = spawn(&supervisor, &config);
    fourth.notified().await;
    server.abort();
    let _ = server.await;
    let events = fx
        .wait_events("a probe of the closed port", |e| e.len() >= 5)
        .await;
    let status = handle.status();
    supervisor.shutdown().await;

    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.kind, "probe.http");
        assert_eq!(e.source, "web");
        assert_eq!(e.subject, "127.0.0.1");
        assert_eq!(e.id, format!("web@{}", e.time));
        let a = attrs(e);
        match i {
            0 | 1 => {
                assert_eq!(
                    a,
                    [("ok", "true"), ("status", "200"), ("url", url.as_str())]
                );
                assert!(e.value.unwrap() > 0.0 && e.value.unwrap() < 5000.0, "{e:?}");
            }
            2 | 3 => {
                assert_eq!(
                    a,
                    [
                        ("error", "expected status 200, got 500"),
                        ("ok", "false"),
                        ("status", "500"),
                        ("url", url.as_str())
                    ]
                );
                assert!(
                    e.value.unwrap() > 0.0,
                    "latency of an answered probe: {e:?}"
                );
            }
            _ => {
                assert_eq!(e.attrs["ok"], "false");
                assert_eq!(e.attrs["url"], url);
                assert!(!e.attrs.contains_key("status"), "{e:?}");
                assert!(
                    e.attrs["error"].contains("Connection refused"),
                    "{}",
                    e.attrs["error"]
                );
                assert_eq!(e.value, None);
            }
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    // Failing probes are reported in the status, and the source keeps running.
    assert_eq!(status.state, SourceState::Running);
    assert_eq!(status.restarts, 0);
    assert!(status.errors >= 3, "{status:?}");
    assert!(status.last_error.unwrap().contains("Connection refused"));
}

#[tokio::test]
async fn https_probe_of_a_closed_port_is_an_event_not_a_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fx = LogFixture::new().await;
    let supervisor = fx.supervisor();
    let config = ProbeConfig {
        name: "tls".into(),
        url: format!("https://127.0.0.1:{port}/"),
        subject: Some("shop".into()),
        interval: Duration::from_secs(60),
        ..ProbeConfig::default()
    };
    let handle = spawn(&supervisor, &config);
    let events = fx.wait_events("one probe", |e| !e.is_empty()).await;
    wait_status(&handle, "the failure reported", |s| s.errors == 1).await;
    supervisor.shutdown().await;
    assert_eq!(events[0].subject, "shop");
    assert_eq!(events[0].attrs["ok"], "false");
    assert!(
        events[0].attrs["error"].contains("Connection refused"),
        "{:?}",
        events[0]
    );
}

#[test]
fn a_ca_file_that_cannot_be_read_stops_the_start_named() {
    let config = ProbeConfig {
        url: "https://example.com/healthz".into(),
        ca_file: Some("/nonexistent/helios-ca.pem".into()),
        ..ProbeConfig::default()
    };
    // The spec is valid as written (it may be checked on another machine) ...
    config.validate().unwrap();
    // ... the start names the file.
    let e = super::ProbeSource::new(config).unwrap_err().to_string();
    assert!(
        e.contains("`ca_file`: CA file /nonexistent/helios-ca.pem"),
        "{e}"
    );
}

#[test]
fn a_client_certificate_that_cannot_be_used_stops_the_start_named() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("client.key");
    std::fs::write(&not_a_key, "no key here\n").unwrap();
    let config = ProbeConfig {
        url: "https://example.com/healthz".into(),
        cert_file: Some("/nonexistent/client.pem".into()),
        key_file: Some(not_a_key.clone()),
        ..ProbeConfig::default()
    };
    config.validate().unwrap();
    let e = super::ProbeSource::new(config.clone())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`cert_file`/`key_file`") && e.contains("/nonexistent/client.pem"),
        "{e}"
    );
    let cert = dir.path().join("client.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = super::ProbeSource::new(ProbeConfig {
        cert_file: Some(cert),
        ..config
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&not_a_key.display().to_string()) && e.contains("private key"),
        "{e}"
    );
}

#[test]
fn validation_names_the_problem() {
    let ok = ProbeConfig {
        url: "https://example.com/healthz".into(),
        ..ProbeConfig::default()
    };
    assert!(ok.validate().is_ok());
    for (config, message) in [
        (ProbeConfig::default(), "`url` is required"),
        (
            ProbeConfig {
                url: "ftp://x/".into(),
                ..ok.clone()
            },
            "must start with http",
        ),
        (
            ProbeConfig {
                url: "http://exa mple".into(),
                ..ok.clone()
            },
            "is not a URL",
        ),
        (
            ProbeConfig {
                interval: Duration::ZERO,
                ..ok.clone()
            },
            "`interval` must be positive",
        ),
        (
            ProbeConfig {
                timeout: Duration::ZERO,
                ..ok.clone()
            },
            "`timeout` must be positive",
        ),
        (
            ProbeConfig {
                expected_status: 42,
                ..ok.clone()
            },
            "not an HTTP status",
        ),
        (
            ProbeConfig {
                cert_file: Some("client.pem".into()),
                ..ok.clone()
            },
            "`cert_file` needs `key_file`",
        ),
        (
            ProbeConfig {
                key_file: Some("client.key".into()),
                ..ok.clone()
            },
            "`key_file` needs `cert_file`",
        ),
        (
            ProbeConfig {
                url: "http://example.com/healthz".into(),
                cert_file: Some("client.pem".into()),
                key_file: Some("client.key".into()),
                ..ok.clone()
            },
            "is not https://",
        ),
    ] {
        let err = config.validate().unwrap_err();
        assert!(err.contains(message), "{err}");
    }
}
