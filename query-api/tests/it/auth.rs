//! The auth layer in front of a router shaped like Helios's (ingest, webhooks, sources,
//! SQL, the dashboard, probes), called in process: missing, malformed, unknown, revoked
//! keys, scopes, the rate limit, the body limit, the timeout, and what stays open.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use helios_query_api::auth::{
    ApiKey, AuthConfig, KeyStore, MetricsAccess, RateLimit, Scope, protect,
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The ingest route's own limit, larger than the global one the tests set.
const INGEST_LIMIT: usize = 64 << 10;
const GLOBAL_LIMIT: usize = 1 << 10;
const HOOK_TOKEN: &str = "hook-token";

/// Routes with the paths and body handling of the real ones; each answers what it got.
fn routes() -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/", get(|| async { "<!doctype html>" }))
        .route("/assets/{file}", get(|| async { "js" }))
        .route("/metrics", get(|| async { "helios_up 1\n" }))
        .route(
            "/v1/events",
            post(|body: Bytes| async move {
                (StatusCode::ACCEPTED, Json(json!({"bytes": body.len()})))
            })
            .layer(DefaultBodyLimit::max(INGEST_LIMIT)),
        )
        .route("/v1/webhooks/{source}", post(webhook))
        .route("/v1/sources", get(|| async { Json(json!([])) }))
        .route(
            "/v1/sources/{name}/pause",
            post(|| async { Json(json!({"paused": true})) }),
        )
        .route(
            "/v1/sql",
            post(|body: Bytes| async move { Json(json!({"bytes": body.len()})) }),
        )
        .route(
            "/v1/whoami",
            get(|Extension(key): Extension<ApiKey>| async move {
                Json(json!({"id": key.id, "name": key.name, "scope": key.scope.to_string()}))
            }),
        )
        .route(
            "/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "done"
            }),
        )
        // The registry's paths (the real handlers are tested in `crate::registry`).
        .route(
            "/subjects",
            get(|| async { Json(json!(["helios.events-value"])) }),
        )
        .route(
            "/subjects/{subject}/versions",
            post(|| async { Json(json!({"id": 1})) }),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(|| async { Json(json!({"is_compatible": true})) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no route", "hint": "routes are ..."})),
            )
        })
}

/// A webhook checks its own token, which travels in `Authorization` too.
async fn webhook(headers: HeaderMap) -> impl IntoResponse {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {HOOK_TOKEN}"));
    if ok {
        (StatusCode::ACCEPTED, Json(json!({"accepted": 1})))
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or wrong webhook token"})),
        )
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    keys: KeyStore,
    app: Router,
}

impl Fixture {
    fn new(tweak: impl FnOnce(&mut AuthConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyStore::open(dir.path().join("keys.json")).unwrap();
        let mut config = AuthConfig::new(keys.clone());
        config.max_body_bytes = GLOBAL_LIMIT;
        tweak(&mut config);
        Fixture {
            _dir: dir,
            keys,
            app: protect(routes(), config),
        }
    }

    fn key(&self, scope: Scope) -> String {
        self.keys
            .create(scope, &format!("{scope} test key"))
            .unwrap()
            .key
            .expose()
            .to_owned()
    }

    async fn call(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        self.call(request("GET", path, key, Body::empty())).await
    }

    /// A POST with its Content-Length, as HTTP clients send it.
    async fn post(&self, path: &str, key: Option<&str>, body: impl Into<String>) -> Answer {
        let body = body.into();
        let mut req = request("POST", path, key, Body::empty());
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, body.len().into());
        *req.body_mut() = Body::from(body);
        self.call(req).await
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    fn hint(&self) -> &str {
        self.body["hint"].as_str().unwrap_or_default()
    }

    /// A refusal in the API's shape: JSON with a non-empty error and hint.
    fn assert_refused(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(!self.error().is_empty(), "no error text: {self:?}");
        assert!(!self.hint().is_empty(), "no hint: {self:?}");
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/json",
            "{self:?}"
        );
    }
}

fn request(method: &str, path: &str, key: Option<&str>, body: Body) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    req.body(body).unwrap()
}

#[tokio::test]
async fn a_missing_key_is_401_with_a_bearer_challenge() {
    let f = Fixture::new(|_| {});
    let a = f.get("/v1/sources", None).await;
    a.assert_refused(StatusCode::UNAUTHORIZED);
    assert!(
        a.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "{a:?}"
    );
    assert!(a.error().contains("none was sent"), "{a:?}");
    assert!(
        a.hint().contains("helios keys create --scope read"),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_malformed_or_unknown_key_is_401() {
    let f = Fixture::new(|_| {});
    let real = f.key(Scope::Read);
    let unknown = format!("hel_000000000000_{}", "ab".repeat(32));
    for (auth, says) in [
        ("Bearer nonsense".to_owned(), "not a Helios API key"),
        ("Bearer ".to_owned(), "not a Helios API key"),
        // Basic is for the registry's routes only.
        (
            format!("Basic {real}"),
            "only on the schema registry's routes",
        ),
        (real.clone(), "not `Bearer <key>`"),
        (format!("Bearer {unknown}"), "not known"),
        (format!("Bearer {}x", real), "not a Helios API key"),
    ] {
        let req = Request::builder()
            .uri("/v1/sources")
            .header(header::AUTHORIZATION, &auth)
            .body(Body::empty())
            .unwrap();
        let a = f.call(req).await;
        a.assert_refused(StatusCode::UNAUTHORIZED);
        assert!(a.error().contains(says), "{auth:?}: {a:?}");
        assert!(
            a.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{a:?}"
        );
    }
    // The same request with the real key passes.
    assert_eq!(
        f.get("/v1/sources", Some(&real)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_wrong_scope_is_403_naming_the_scope_needed_and_the_keys() {
    let f = Fixture::new(|_| {});
    let ingest = f.key(Scope::Ingest);
    let read = f.key(Scope::Read);

    let a = f.get("/v1/sources", Some(&ingest)).await;
    a.assert_refused(StatusCode::FORBIDDEN);
    assert!(a.error().contains("scope `read`"), "{a:?}");
    assert!(a.error().contains("has scope `ingest`"), "{a:?}");
    assert!(
        a.hint().contains("helios keys create --scope read"),
        "{a:?}"
    );

    let a = f.post("/v1/events", Some(&read), "{}").await;
    a.assert_refused(StatusCode::FORBIDDEN);
    assert!(a.error().contains("scope `ingest`"), "{a:?}");
    assert!(a.error().contains("has scope `read`"), "{a:?}");

    let a = f.post("/v1/sources/github/pause", Some(&read), "").await;
    a.assert_refused(StatusCode::FORBIDDEN);
    assert!(a.error().contains("scope `admin`"), "{a:?}");
    assert!(
        a.hint().contains("helios keys create --scope admin"),
        "{a:?}"
    );

    // Each key does what its scope allows.
    assert_eq!(
        f.post("/v1/events", Some(&ingest), "{}").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        f.post("/v1/sql", Some(&read), "SELECT 1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_admin_key_may_do_everything_and_handlers_see_who_called() {
    let f = Fixture::new(|_| {});
    let admin = f.key(Scope::Admin);
    assert_eq!(
        f.post("/v1/events", Some(&admin), "{}").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        f.post("/v1/sources/github/pause", Some(&admin), "")
            .await
            .status,
        StatusCode::OK
    );
    let a = f.get("/v1/whoami", Some(&admin)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let id = &admin[4..16];
    assert_eq!(
        a.body,
        json!({"id": id, "name": "admin test key", "scope": "admin"})
    );
}

#[tokio::test]
async fn a_key_revoked_by_another_process_is_401_on_the_next_request() {
    let f = Fixture::new(|_| {});
    let key = f.key(Scope::Read);
    assert_eq!(
        f.get("/v1/sources", Some(&key)).await.status,
        StatusCode::OK
    );
    // `helios keys revoke` in another process: its own handle on the same file.
    let other = KeyStore::open(f.keys.path()).unwrap();
    other.revoke(&key).unwrap();
    let a = f.get("/v1/sources", Some(&key)).await;
    a.assert_refused(StatusCode::UNAUTHORIZED);
    assert!(a.error().contains("was revoked"), "{a:?}");
    // And a key that process creates works at once.
    let new = other.create(Scope::Read, "replacement").unwrap();
    assert_eq!(
        f.get("/v1/sources", Some(new.key.expose())).await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn over_the_rate_limit_is_429_with_retry_after_per_key() {
    let f = Fixture::new(|c| {
        c.rate = RateLimit {
            per_second: 1,
            burst: 2,
        }
    });
    let key = f.key(Scope::Read);
    let other = f.key(Scope::Read);
    for i in 0..2 {
        let a = f.get("/v1/sources", Some(&key)).await;
        assert_eq!(a.status, StatusCode::OK, "request {i} of the burst: {a:?}");
    }
    let a = f.get("/v1/sources", Some(&key)).await;
    a.assert_refused(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.headers[header::RETRY_AFTER], "1", "{a:?}");
    assert!(a.error().contains(&key[4..16]), "{a:?}");
    // Another key has its own bucket.
    assert_eq!(
        f.get("/v1/sources", Some(&other)).await.status,
        StatusCode::OK
    );
    // After the Retry-After, the key may call again.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        f.get("/v1/sources", Some(&key)).await.status,
        StatusCode::OK
    );
    // Public routes are not counted against anyone.
    for _ in 0..10 {
        assert_eq!(f.get("/healthz", None).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_json_but_ingest_keeps_its_own_limit() {
    let f = Fixture::new(|_| {});
    let read = f.key(Scope::Read);
    let ingest = f.key(Scope::Ingest);
    let big = "x".repeat(GLOBAL_LIMIT + 1);

    // Declared length.
    let a = f.post("/v1/sql", Some(&read), big.clone()).await;
    a.assert_refused(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.error().contains(&format!("{}", GLOBAL_LIMIT + 1)),
        "{a:?}"
    );
    assert!(a.error().contains(&format!("{GLOBAL_LIMIT}")), "{a:?}");

    // Sent without a length (chunked): found out while reading, still JSON.
    let a = f
        .call(request(
            "POST",
            "/v1/sql",
            Some(&read),
            Body::from(big.clone()),
        ))
        .await;
    a.assert_refused(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.error().contains(&format!("{GLOBAL_LIMIT}")), "{a:?}");

    // Within the limit: passes.
    let a = f
        .post("/v1/sql", Some(&read), "x".repeat(GLOBAL_LIMIT))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");

    // The ingest route's larger limit stands.
    let a = f.post("/v1/events", Some(&ingest), big).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    assert_eq!(a.body["bytes"], GLOBAL_LIMIT + 1);
    let a = f
        .post("/v1/events", Some(&ingest), "x".repeat(INGEST_LIMIT + 1))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{a:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_over_the_timeout_is_504_in_json() {
    let f = Fixture::new(|c| c.request_timeout = Duration::from_secs(5));
    let key = f.key(Scope::Read);
    let a = f.get("/v1/slow", Some(&key)).await;
    a.assert_refused(StatusCode::GATEWAY_TIMEOUT);
    assert!(a.error().contains("5s"), "{a:?}");
}

#[tokio::test]
async fn probes_metrics_and_the_dashboard_need_no_key() {
    let f = Fixture::new(|_| {});
    for path in ["/healthz", "/", "/assets/app.js", "/metrics"] {
        let a = f.get(path, None).await;
        assert_eq!(a.status, StatusCode::OK, "GET {path}: {a:?}");
    }
}

#[tokio::test]
async fn metrics_can_be_made_to_need_a_read_key() {
    let f = Fixture::new(|c| c.metrics = MetricsAccess::NeedsKey);
    f.get("/metrics", None)
        .await
        .assert_refused(StatusCode::UNAUTHORIZED);
    let ingest = f.key(Scope::Ingest);
    f.get("/metrics", Some(&ingest))
        .await
        .assert_refused(StatusCode::FORBIDDEN);
    let read = f.key(Scope::Read);
    assert_eq!(f.get("/metrics", Some(&read)).await.status, StatusCode::OK);
    assert_eq!(f.get("/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn webhooks_keep_their_own_check_and_ask_for_no_key() {
    let f = Fixture::new(|_| {});
    // Their token in `Authorization` is not taken for an API key.
    let a = f.post("/v1/webhooks/ci", Some(HOOK_TOKEN), "{}").await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    // Without it the webhook itself refuses, not the API-key check.
    let a = f.post("/v1/webhooks/ci", None, "{}").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    assert_eq!(a.error(), "missing or wrong webhook token");
    assert!(!a.headers.contains_key(header::WWW_AUTHENTICATE), "{a:?}");
}

#[tokio::test]
async fn unknown_paths_need_a_key_before_they_say_404() {
    let f = Fixture::new(|_| {});
    f.get("/v1/nope", None)
        .await
        .assert_refused(StatusCode::UNAUTHORIZED);
    f.get("/healthz/", None)
        .await
        .assert_refused(StatusCode::UNAUTHORIZED);
    let read = f.key(Scope::Read);
    assert_eq!(
        f.get("/v1/nope", Some(&read)).await.status,
        StatusCode::NOT_FOUND
    );
}

/// `Authorization: Basic` of `user:password`.
fn basic(user_password: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn with_auth(method: &str, path: &str, auth: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, auth)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn registry_routes_take_a_key_in_basic_credentials_with_the_same_scopes() {
    let f = Fixture::new(|_| {});
    let read = f.key(Scope::Read);
    let admin = f.key(Scope::Admin);
    let ingest = f.key(Scope::Ingest);
    // `hel_<id>_<secret>`: the id is 12 hex digits.
    let (id, secret) = read[4..].split_once('_').unwrap();
    let register = "/subjects/helios.events-value/versions";
    let compatibility = "/compatibility/subjects/helios.events-value/versions/latest";
    for auth in [
        basic(format!("{id}:{secret}").as_bytes()),
        basic(format!("hel_{id}:{secret}").as_bytes()),
        basic(format!("confluent:{read}").as_bytes()),
        basic(format!(":{read}").as_bytes()),
    ] {
        let a = f.call(with_auth("GET", "/subjects", &auth)).await;
        assert_eq!(a.status, StatusCode::OK, "{auth}: {a:?}");
        let a = f.call(with_auth("POST", compatibility, &auth)).await;
        assert_eq!(a.status, StatusCode::OK, "{auth}: {a:?}");
        // A read key may not register.
        let a = f.call(with_auth("POST", register, &auth)).await;
        a.assert_refused(StatusCode::FORBIDDEN);
        assert!(
            a.error().contains("needs a key with scope `admin`"),
            "{a:?}"
        );
    }
    let a = f
        .call(with_auth(
            "POST",
            register,
            &basic(format!("ci:{admin}").as_bytes()),
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let a = f
        .call(with_auth(
            "GET",
            "/subjects",
            &basic(format!("x:{ingest}").as_bytes()),
        ))
        .await;
    a.assert_refused(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_basic_credentials_are_401_with_the_reason_and_no_basic_challenge() {
    let f = Fixture::new(|_| {});
    let read = f.key(Scope::Read);
    let (id, secret) = read[4..].split_once('_').unwrap();
    let wrong = format!(
        "{}{}",
        &secret[..63],
        if secret.ends_with('0') { '1' } else { '0' }
    );
    let revoked = f.key(Scope::Read);
    f.keys.revoke(&revoked).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("Basic".to_owned(), "neither `Bearer <key>` nor HTTP Basic"),
        ("Basic ".to_owned(), "empty"),
        ("Basic %%%".to_owned(), "not base64"),
        (basic(&[0xc3, b':', 0x28]), "not UTF-8"),
        (basic(b"just-a-user"), "no `:`"),
        (basic(b":"), "carry no Helios key"),
        (basic(format!("{id}:").as_bytes()), "carry no Helios key"),
        (basic(format!("{read}:").as_bytes()), "carry no Helios key"),
        (
            basic(format!("{id}:nothex").as_bytes()),
            "do not hold a Helios API key",
        ),
        (basic(b"user:hel_short_key"), "do not hold a Helios API key"),
        (basic(format!("{id}:{wrong}").as_bytes()), "not known"),
        (basic(format!("x:hel_{id}_{wrong}").as_bytes()), "not known"),
        (basic(format!("x:{revoked}").as_bytes()), "was revoked"),
        (
            "Digest user=x".to_owned(),
            "neither `Bearer <key>` nor HTTP Basic",
        ),
    ];
    for (auth, says) in cases {
        let a = f.call(with_auth("GET", "/subjects", &auth)).await;
        a.assert_refused(StatusCode::UNAUTHORIZED);
        assert!(a.error().contains(says), "{auth:?}: {a:?}");
        let challenge = a.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{auth:?}: {challenge}");
        // The secret is never echoed back.
        assert!(!a.body.to_string().contains(secret), "{a:?}");
    }
    // Outside the registry Basic is refused even with a good key; Bearer still works.
    let good = basic(format!("{id}:{secret}").as_bytes());
    for (method, path) in [("GET", "/v1/sources"), ("POST", "/v1/sql")] {
        let a = f.call(with_auth(method, path, &good)).await;
        a.assert_refused(StatusCode::UNAUTHORIZED);
        assert!(
            a.error().contains("only on the schema registry's routes"),
            "{a:?}"
        );
    }
    assert_eq!(
        f.get("/v1/sources", Some(&read)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn basic_credentials_from_a_page_of_another_site_are_refused() {
    let f = Fixture::new(|_| {});
    let read = f.key(Scope::Read);
    let good = basic(format!("user:{read}").as_bytes());
    let from = |site: &str| {
        let mut req = with_auth("GET", "/subjects", &good);
        req.headers_mut()
            .insert("sec-fetch-site", site.parse().unwrap());
        req
    };
    for site in ["cross-site", "same-site"] {
        let a = f.call(from(site)).await;
        a.assert_refused(StatusCode::UNAUTHORIZED);
        assert!(a.error().contains("another site"), "{site}: {a:?}");
    }
    for site in ["same-origin", "none"] {
        assert_eq!(f.call(from(site)).await.status, StatusCode::OK, "{site}");
    }
    // A bearer token is never sent by a browser on its own: no such check.
    let mut req = request("GET", "/subjects", Some(&read), Body::empty());
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(f.call(req).await.status, StatusCode::OK);
}
