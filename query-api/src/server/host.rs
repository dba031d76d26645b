//! The `Host` check against DNS rebinding: a web page on `evil.example` whose name is
//! re-pointed at `127.0.0.1` makes the browser send its requests to Helios with
//! `Host: evil.example`, and could read whatever answers without credentials. So the
//! routes that need no key (health, readiness, public metrics, the dashboard) answer only
//! when `Host` is a name this server is meant to be reached under; others get `421` with
//! the reason.
//!
//! Always allowed: any IP address literal (`127.0.0.1:8080`, `[::1]`, a pod's IP as
//! Kubernetes probes send it): rebinding needs a DNS name, so a literal address cannot be
//! one; `localhost`; and a request without `Host` (no browser sends one). Further names
//! come from `--allowed-hosts` (`helios.example.com`, or `*.example.com` for every
//! subdomain). Routes that need an API key and the webhooks are not checked: a rebound
//! page has no key or webhook secret to send (keys travel in `Authorization`, which a
//! browser never adds by itself), and reverse proxies and webhook senders reach them under
//! names an operator may not list.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::debug;

use crate::auth::MetricsAccess;
use crate::auth::policy::{self, Access};

/// The host names public routes answer to, besides IP literals and `localhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lower-case names without a trailing dot; `*.suffix` allows every subdomain.
    names: Arc<[String]>,
}

impl AllowedHosts {
    /// Parses the `--allowed-hosts` entries: host names, or `*.name` for every subdomain of
    /// `name`. A port, if given, is ignored (the check is on names).
    pub fn new<I, S>(entries: I) -> Result<AllowedHosts, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names = Vec::new();
        for entry in entries {
            let raw = entry.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let (wild, name) = match raw.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            let name = strip_port(name).ok_or_else(|| {
                format!(
                    "`{raw}` is not a host name; write e.g. helios.example.com or *.example.com"
                )
            })?;
            let name = normalise(name);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                return Err(format!(
                    "`{raw}` is not a host name; write e.g. helios.example.com or *.example.com"
                ));
            }
            names.push(if wild { format!("*.{name}") } else { name });
        }
        Ok(AllowedHosts {
            names: names.into(),
        })
    }

    /// Whether a request with this `Host` header may reach a public route.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let host = host.trim();
        if let Some(rest) = host.strip_prefix('[') {
            // `[v6]` or `[v6]:port`.
            return rest.split_once(']').is_some_and(|(ip, after)| {
                ip.parse::<Ipv6Addr>().is_ok() && (after.is_empty() || is_port(after))
            });
        }
        let Some(name) = strip_port(host) else {
            return false;
        };
        let name = normalise(name);
        if name.parse::<Ipv4Addr>().is_ok() || name == "localhost" {
            return true;
        }
        self.names
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => *allowed == name,
            })
    }
}

/// `name` without `:port`; `None` when what follows the colon is no port (or there are
/// several colons, an IPv6 address without brackets).
fn strip_port(host: &str) -> Option<&str> {
    match host.split_once(':') {
        None => Some(host),
        Some((name, port)) if is_port(&format!(":{port}")) => Some(name),
        Some(_) => None,
    }
}

fn is_port(after: &str) -> bool {
    after
        .strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Debug)]
struct HostCheck {
    allowed: AllowedHosts,
    metrics: MetricsAccess,
}

/// Wraps `router` in the check: requests the access policy calls public answer `421`
/// unless their `Host` is allowed.
pub fn check(router: Router, allowed: AllowedHosts, metrics: MetricsAccess) -> Router {
    let state = Arc::new(HostCheck { allowed, metrics });
    router.layer(axum::middleware::from_fn_with_state(state, host_guard))
}

async fn host_guard(State(check): State<Arc<HostCheck>>, req: Request, next: Next) -> Response {
    let public =
        policy::classify(req.method(), req.uri().path(), check.metrics).access == Access::Public;
    if public {
        let host = req.headers().get(header::HOST).map(|v| v.to_str());
        let allowed = match host {
            None => check.allowed.allows(None),
            Some(Ok(h)) => check.allowed.allows(Some(h)),
            Some(Err(_)) => false,
        };
        if !allowed {
            debug!(
                path = req.uri().path(),
                "Refused a public route under a host name not allowed."
            );
            let shown = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(not text)");
            return (
                StatusCode::MISDIRECTED_REQUEST,
                axum::Json(json!({
                    "error": format!(
                        "this server does not answer public routes under the host name `{shown}` (protection against DNS rebinding)"
                    ),
                    "hint": "open it by IP address or localhost, or have the operator add the name with --allowed-hosts (HELIOS_ALLOWED_HOSTS)",
                })),
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> AllowedHosts {
        AllowedHosts::new(names).unwrap()
    }

    #[test]
    fn ip_literals_and_localhost_are_always_allowed() {
        let h = AllowedHosts::default();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.2.3:9464",
            "[::1]",
            "[::1]:8080",
            "[fe80::1]:80",
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
        ] {
            assert!(h.allows(Some(host)), "{host}");
        }
        assert!(h.allows(None), "no Host header: not a browser");
    }

    #[test]
    fn other_names_are_refused_unless_listed() {
        let h = AllowedHosts::default();
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "2130706433",
            "",
            "::1",
            "[::1",
            "[::1]x",
            "[evil.example]",
            "localhost:http",
        ] {
            assert!(!h.allows(Some(host)), "{host}");
        }
        let h = hosts(&["helios.example.com", "*.lan", "Box.Home."]);
        assert!(h.allows(Some("helios.example.com")));
        assert!(h.allows(Some("HELIOS.example.com:443")));
        assert!(h.allows(Some("box.home")));
        assert!(h.allows(Some("pi.lan")));
        assert!(h.allows(Some("a.b.lan:8080")));
        assert!(!h.allows(Some("lan")), "a wildcard covers subdomains only");
        assert!(!h.allows(Some("evillan")));
        assert!(!h.allows(Some("helios.example.com.evil.example")));
        assert!(!h.allows(Some("x.helios.example.com")));
    }

    #[test]
    fn entries_are_checked() {
        assert!(AllowedHosts::new(["helios.example.com:8080"]).is_ok());
        assert_eq!(
            AllowedHosts::new(["", " "]).unwrap(),
            AllowedHosts::default()
        );
        for bad in ["http://x", "a b", "x:y", "*.", "a/b"] {
            assert!(AllowedHosts::new([bad]).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn public_routes_check_the_host_and_keyed_routes_do_not() {
        use axum::body::Body;
        use axum::routing::{get, post};
        use tower::ServiceExt;

        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/", get(|| async { "page" }))
            .route("/metrics", get(|| async { "m" }))
            .route("/v1/sources", get(|| async { "keyed" }))
            .route("/v1/webhooks/{name}", post(|| async { "hook" }));
        let app = check(app, hosts(&["helios.lan"]), MetricsAccess::Public);
        let status = |method: &str, path: &str, host: &str| {
            let app = app.clone();
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", host)
                .body(Body::empty())
                .unwrap();
            async move { app.oneshot(req).await.unwrap().status() }
        };
        for path in ["/healthz", "/", "/metrics"] {
            assert_eq!(
                status("GET", path, "evil.example:8080").await,
                421,
                "{path}"
            );
            assert_eq!(status("GET", path, "127.0.0.1:8080").await, 200, "{path}");
            assert_eq!(status("GET", path, "helios.lan").await, 200, "{path}");
        }
        // Keyed and webhook routes are left to their credentials.
        assert_eq!(status("GET", "/v1/sources", "evil.example").await, 200);
        assert_eq!(status("POST", "/v1/webhooks/ci", "evil.example").await, 200);

        // With --metrics-auth, /metrics is keyed and so not host-checked.
        let app = check(
            Router::new().route("/metrics", get(|| async { "m" })),
            AllowedHosts::default(),
            MetricsAccess::NeedsKey,
        );
        let req = Request::get("/metrics")
            .header("host", "prometheus.svc")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
    }
}
