//! The GitHub route through `Router::oneshot` over a real embedded log, with payloads
//! shaped like GitHub's documented examples (`connectors/tests/fixtures/github/`).

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use helios_schemas::Event;

use super::*;
use crate::push::testing::{LogFixture, log_fixture, send};
use crate::runtime::SourceHandle;

const SECRET: &str = "It's a Secret to Everybody";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/github/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!(
        "sha256={}",
        crate::secret::hex(&mac.finalize().into_bytes())
    )
}

fn router(f: &LogFixture, handle: SourceHandle, config: GithubConfig) -> Router {
    let mut hooks = GithubWebhooks::default();
    hooks
        .add(
            config,
            &SecretString::new(SECRET),
            f.emitter.clone(),
            handle,
        )
        .unwrap();
    hooks.router()
}

fn delivery(event: &str, id: &str, body: &str, signature: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/v1/webhooks/github/github")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("user-agent", "GitHub-Hookshot/044aadd");
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    req.body(Body::from(body.to_string())).unwrap()
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

#[test]
fn signature_matches_githubs_test_vector() {
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert!(verify_signature(SECRET.as_bytes(), b"Hello, World!", good));
    assert_eq!(sign(SECRET, b"Hello, World!"), good);
    // One changed byte anywhere is refused.
    assert!(!verify_signature(SECRET.as_bytes(), b"Hello, World?", good));
    assert!(!verify_signature(SECRET.as_bytes(), b"hello, World!", good));
    let mut bad_sig = good.to_string();
    bad_sig.replace_range(70..71, "f");
    assert_ne!(bad_sig, good);
    assert!(!verify_signature(
        SECRET.as_bytes(),
        b"Hello, World!",
        &bad_sig
    ));
    assert!(!verify_signature(
        b"It's a Secret to Everybody!",
        b"Hello, World!",
        good
    ));
    // Malformed headers.
    for header in [
        "",
        "sha256=",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        &good[..good.len() - 2],
        "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    ] {
        assert!(
            !verify_signature(SECRET.as_bytes(), b"Hello, World!", header),
            "{header:?}"
        );
    }
}

#[tokio::test]
async fn test_vector_through_the_route() {
    let f = log_fixture().await;
    let r = router(
        &f,
        SourceHandle::new("github", "github"),
        GithubConfig::default(),
    );
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    // Signature right, but "Hello, World!" is not a GitHub payload: 400, not 401.
    let (status, body, _) = send(&r, delivery("push", "d-1", "Hello, World!", Some(good))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A changed byte: 401.
    let (status, _, _) = send(&r, delivery("push", "d-1", "Hello, World?", Some(good))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(f.events().await.is_empty());
}

#[tokio::test]
async fn bad_or_missing_signature_is_401_and_writes_nothing() {
    let f = log_fixture().await;
    let handle = SourceHandle::new("github", "github");
    let r = router(&f, handle.clone(), GithubConfig::default());
    let body = fixture("push");
    let mut tampered = body.clone().into_bytes();
    let i = tampered.iter().position(|b| *b == b'2').unwrap();
    tampered[i] = b'3';
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        (None, body.as_str(), "missing X-Hub-Signature-256"),
        (
            Some(sign("wrong secret", body.as_bytes())),
            body.as_str(),
            "does not match",
        ),
        (
            Some(sign(SECRET, body.as_bytes())),
            tampered.as_str(),
            "does not match",
        ),
        (
            Some("sha256=abc".to_string()),
            body.as_str(),
            "does not match",
        ),
    ];
    for (sig, payload, needle) in cases {
        let (status, answer, _) = send(&r, delivery("push", "d-1", payload, sig.as_deref())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    }
    assert!(f.events().await.is_empty());
    assert_eq!(handle.status().events_emitted, 0);
}

/// One delivery of each mapped type, checked field by field against what GitHub's
/// documented payload says.
#[tokio::test]
async fn each_event_type_maps_to_the_documented_event() {
    let f = log_fixture().await;
    let handle = SourceHandle::new("github", "github");
    let r = router(&f, handle.clone(), GithubConfig::default());
    let repo = "Codertocat/Hello-World";
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<i64>,
        Option<f64>,
        BTreeMap<String, String>,
    );
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("push", "push", "git.push", Some(us("2019-05-15T15:20:41-04:00")), Some(2.0), attrs(&[
            ("branch", "master"), ("ref", "refs/heads/master"), ("pusher", "Codertocat"),
            ("head", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"), ("forced", "false"), ("sender", "Codertocat"),
        ])),
        ("pull_request", "pull_request_opened", "pr.opened", Some(us("2019-05-15T15:20:33Z")), None, attrs(&[
            ("action", "opened"), ("number", "2"), ("author", "Codertocat"), ("base", "master"),
            ("head", "changes"), ("merged", "false"), ("sender", "Codertocat"),
        ])),
        ("pull_request", "pull_request_merged", "pr.merged", Some(us("2019-05-15T17:42:10Z")),
            Some((us("2019-05-15T17:42:10Z") - us("2019-05-15T15:20:33Z")) as f64 / 1e6), attrs(&[
            ("action", "closed"), ("number", "2"), ("author", "Codertocat"), ("base", "master"),
            ("head", "changes"), ("merged", "true"), ("sender", "Codertocat"),
        ])),
        ("pull_request", "pull_request_closed", "pr.closed", Some(us("2019-05-15T17:42:10Z")), None, attrs(&[
            ("action", "closed"), ("number", "2"), ("author", "Codertocat"), ("base", "master"),
            ("head", "changes"), ("merged", "false"), ("sender", "Codertocat"),
        ])),
        ("workflow_run", "workflow_run_completed", "ci.run", Some(us("2020-01-22T19:35:40Z")), Some(152.0), attrs(&[
            ("action", "completed"), ("github_event", "workflow_run"), ("workflow", "Build"), ("branch", "main"),
            ("trigger", "push"), ("status", "completed"), ("conclusion", "success"), ("run_number", "562"),
            ("sender", "Codertocat"),
        ])),
        ("check_run", "check_run_completed", "ci.run", Some(us("2019-05-15T15:21:45Z")), Some(33.0), attrs(&[
            ("action", "completed"), ("github_event", "check_run"), ("workflow", "Octocoders-linter"),
            ("branch", "changes"), ("status", "completed"), ("conclusion", "success"), ("sender", "Codertocat"),
        ])),
        ("issues", "issues_opened", "issue.opened", Some(us("2019-05-15T15:20:18Z")), None, attrs(&[
            ("action", "opened"), ("number", "1"), ("author", "Codertocat"), ("state", "open"), ("sender", "Codertocat"),
        ])),
        ("release", "release_published", "release.published", Some(us("2019-05-15T15:20:53Z")), None, attrs(&[
            ("action", "published"), ("tag", "0.0.1"), ("name", "First release"), ("author", "Codertocat"),
            ("prerelease", "false"), ("draft", "false"), ("sender", "Codertocat"),
        ])),
        ("deployment", "deployment_created", "deploy.created", Some(us("2019-05-15T15:20:53Z")), None, attrs(&[
            ("environment", "production"), ("state", "created"), ("ref", "master"),
            ("sha", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"), ("creator", "Codertocat"), ("sender", "Codertocat"),
        ])),
        ("deployment_status", "deployment_status_success", "deploy.success", Some(us("2019-05-15T15:21:47Z")), Some(54.0), attrs(&[
            ("environment", "production"), ("state", "success"), ("ref", "master"),
            ("sha", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"), ("creator", "Codertocat"), ("sender", "Codertocat"),
        ])),
        // Unknown types are kept, never dropped; their time is the receive time.
        ("star", "star_created", "github.star", None, None, attrs(&[("action", "created"), ("sender", "Codertocat")])),
    ];
    let mut expected = Vec::new();
    for (i, (event, file, kind, time, value, attrs)) in cases.into_iter().enumerate() {
        let body = fixture(file);
        let id = format!("72d3162e-cc78-11e3-81ab-4c9367dc0958-{i:02}");
        let (status, answer, _) = send(
            &r,
            delivery(event, &id, &body, Some(&sign(SECRET, body.as_bytes()))),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}: {answer}");
        assert_eq!(answer["ids"][0], id.as_str());
        expected.push((
            Event {
                id,
                source: "github".into(),
                kind: kind.into(),
                subject: repo.into(),
                time: time.unwrap_or_default(),
                received_at: 0,
                attrs,
                value,
                payload: Some(body),
            },
            time.is_none(),
        ));
    }
    let got = f.events().await;
    assert_eq!(got.len(), expected.len());
    for (mut got, (mut want, receive_time)) in got.into_iter().zip(expected) {
        assert!(got.received_at > 0);
        if receive_time {
            assert_eq!(got.time, got.received_at, "{}: receive time", want.kind);
            want.time = got.time;
        }
        got.received_at = 0;
        assert_eq!(got, want, "{}", want.kind);
    }
    assert_eq!(handle.status().events_emitted, 11);
}

#[tokio::test]
async fn ping_answers_200_and_writes_nothing() {
    let f = log_fixture().await;
    let r = router(
        &f,
        SourceHandle::new("github", "github"),
        GithubConfig::default(),
    );
    let body = fixture("ping");
    let (status, answer, _) = send(
        &r,
        delivery("ping", "p-1", &body, Some(&sign(SECRET, body.as_bytes()))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ok"], true);
    assert!(f.events().await.is_empty());
}

#[tokio::test]
async fn redelivery_keeps_the_delivery_id() {
    let f = log_fixture().await;
    let r = router(
        &f,
        SourceHandle::new("github", "github"),
        GithubConfig::default(),
    );
    let body = fixture("push");
    let sig = sign(SECRET, body.as_bytes());
    for _ in 0..2 {
        let (status, _, _) = send(&r, delivery("push", "same-delivery", &body, Some(&sig))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let ids: Vec<String> = f.events().await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["same-delivery", "same-delivery"]);
}

#[tokio::test]
async fn bad_payloads_are_400_with_the_reason() {
    let f = log_fixture().await;
    let r = router(
        &f,
        SourceHandle::new("github", "github"),
        GithubConfig::default(),
    );
    let cases = [
        ("push", "{\"ref\": ", "does not have the shape"),
        ("push", "{\"commits\": []}", "missing field `ref`"),
        (
            "pull_request",
            "{\"action\": \"opened\", \"pull_request\": {\"updated_at\": \"yesterday\"}}",
            "pull_request.updated_at",
        ),
    ];
    for (event, body, needle) in cases {
        let (status, answer, _) = send(
            &r,
            delivery(event, "x", body, Some(&sign(SECRET, body.as_bytes()))),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
    }
    // Form-encoded deliveries: told how to fix the hook.
    let body = "payload=%7B%7D";
    let req = Request::post("/v1/webhooks/github/github")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign(SECRET, body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    let (status, answer, _) = send(&r, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    assert!(f.events().await.is_empty());
}

#[tokio::test]
async fn paused_or_saturated_source_answers_503() {
    let f = log_fixture().await;
    let handle = SourceHandle::new("github", "github");
    let body = fixture("push");
    let sig = sign(SECRET, body.as_bytes());

    let r = router(&f, handle.clone(), GithubConfig::default());
    handle.pause();
    let (status, answer, retry) = send(&r, delivery("push", "a", &body, Some(&sig))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(answer["error"].as_str().unwrap().contains("paused"));
    handle.resume();
    let (status, _, _) = send(&r, delivery("push", "a", &body, Some(&sig))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // No free in-flight slot: the delivery is turned away, not queued.
    let full = GithubConfig {
        max_in_flight: 1,
        ..GithubConfig::default()
    };
    let mut hooks = GithubWebhooks::default();
    hooks
        .add(
            full,
            &SecretString::new(SECRET),
            f.emitter.clone(),
            SourceHandle::new("github", "github"),
        )
        .unwrap();
    let held = hooks.sources["github"].gate.admit();
    assert!(held.is_ok());
    let (status, answer, retry) =
        send(&hooks.router(), delivery("push", "b", &body, Some(&sig))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(answer["error"].as_str().unwrap().contains("capacity"));
    drop(held);
    assert_eq!(f.events().await.len(), 1);
}

#[tokio::test]
async fn unknown_source_is_404() {
    let f = log_fixture().await;
    let r = router(
        &f,
        SourceHandle::new("github", "github"),
        GithubConfig::default(),
    );
    let req = Request::post("/v1/webhooks/github/other")
        .header("x-github-event", "push")
        .body(Body::from("{}"))
        .unwrap();
    let (status, answer, _) = send(&r, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("`other`"));
}

#[tokio::test]
async fn json_sent_with_curls_form_content_type_is_taken_as_json() {
    let f = log_fixture().await;
    let r = router(
        &f,
        SourceHandle::new("github", "github"),
        GithubConfig::default(),
    );
    let body = fixture("issues_opened");
    let req = Request::post("/v1/webhooks/github/github")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "issues")
        .header("x-github-delivery", "curl-1")
        .header("x-hub-signature-256", sign(SECRET, body.as_bytes()))
        .body(Body::from(body))
        .unwrap();
    let (status, answer, _) = send(&r, req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let got = f.events().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id.as_str(), got[0].kind.as_str()),
        ("curl-1", "issue.opened")
    );
}

#[tokio::test]
async fn unverified_bodies_share_one_byte_budget_and_are_refused_unread_past_it() {
    use std::sync::atomic::Ordering;

    use crate::body::UnverifiedBodies;
    use crate::body::tests::chunks;

    let f = log_fixture().await;
    let budget = UnverifiedBodies::new(10_000);
    let mut hooks = GithubWebhooks::with_budget(budget.clone());
    hooks
        .add(
            GithubConfig::default(),
            &SecretString::new(SECRET),
            f.emitter.clone(),
            SourceHandle::new("github", "github"),
        )
        .unwrap();
    let r = hooks.router();
    let body = fixture("push");
    let sig = sign(SECRET, body.as_bytes());
    let request = |sig: &str, payload: Body, length: usize| {
        Request::post("/v1/webhooks/github/github")
            .header("x-github-event", "push")
            .header("x-github-delivery", "budget")
            .header("x-hub-signature-256", sig)
            .header("content-length", length)
            .body(payload)
            .unwrap()
    };
    let bogus = format!("sha256={}", "0".repeat(64));

    // A malformed signature header: refused without reading the body.
    let (payload, polled) = chunks(&[b"{}"]);
    let (status, _, _) = send(&r, request("sha256=zz", payload, 2)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!polled.load(Ordering::SeqCst));

    // Another request holds most of the budget (as one being read would): a delivery
    // that does not fit is turned away with Retry-After, its body unread.
    let held = budget.try_reserve(9_000).unwrap();
    let (payload, polled) = chunks(&[b"{}"]);
    let (status, answer, retry) = send(&r, request(&bogus, payload, 2_000)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unauthenticated")
    );
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
    drop(held);

    // A wrong signature is read, refused, and gives its bytes back.
    static PADDED: [u8; 2_000] = [b' '; 2_000];
    let (payload, _) = chunks(&[&PADDED]);
    let (status, _, _) = send(&r, request(&bogus, payload, 2_000)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(budget.available(), 10_000);

    // A signed delivery in pieces is verified as it arrives and accepted.
    let (first, rest) = body.split_at(body.len() / 2);
    let first: &'static [u8] = Box::leak(first.as_bytes().to_vec().into_boxed_slice());
    let rest: &'static [u8] = Box::leak(rest.as_bytes().to_vec().into_boxed_slice());
    let (payload, _) = chunks(&[first, rest]);
    let (status, answer, _) = send(&r, request(&sig, payload, body.len())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(budget.available(), 10_000);
    assert_eq!(f.events().await.len(), 1);

    // A body larger than the whole budget could never be read: refused at start.
    let f2 = crate::spec::build_with(
        &[crate::spec::SourceSpec::Github(GithubConfig {
            secret: Some(SecretString::new(SECRET)),
            max_body_bytes: 20_000,
            ..GithubConfig::default()
        })],
        &f.supervisor(),
        budget,
    );
    assert!(
        f2.unwrap_err()
            .to_string()
            .contains("--unverified-body-budget"),
        "a too-small budget is a configuration error"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_it_is_read() {
    use std::sync::atomic::Ordering;

    use crate::body::tests::chunks;

    let f = log_fixture().await;
    let config = GithubConfig {
        max_body_bytes: 100,
        ..GithubConfig::default()
    };
    let r = router(&f, SourceHandle::new("github", "github"), config);
    let (payload, polled) = chunks(&[&[b' '; 101]]);
    let req = Request::post("/v1/webhooks/github/github")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .header("content-length", 101)
        .body(payload)
        .unwrap();
    let (status, _, _) = send(&r, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!polled.load(Ordering::SeqCst));
    // Chunked past the limit: read up to it, then 413.
    let (payload, _) = chunks(&[&[b' '; 60], &[b' '; 60]]);
    let req = Request::post("/v1/webhooks/github/github")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(payload)
        .unwrap();
    assert_eq!(send(&r, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}
