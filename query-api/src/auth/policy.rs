//! The access policy: the one table that says, for a method and a path, whether a route
//! is public, checks its own credentials (webhooks), or needs a key of some scope.
//!
//! Paths are matched on the raw request path, segment by segment, exactly as axum routes
//! them (axum neither decodes `%2F` nor folds `..` or trailing slashes before routing), so
//! a path this table calls public cannot reach a handler it did not mean. Anything the
//! table does not name needs a `read` key, unknown paths included: a stranger without a
//! key learns nothing from the 404.

use axum::http::Method;

use super::Scope;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no key is asked for (and one sent anyway is not looked at).
    Public,
    /// The route checks its own credentials (webhook signatures and tokens, which also
    /// travel in `Authorization`), so the API-key check leaves the request alone.
    OwnCheck,
    /// A key whose scope allows this one.
    Needs(Scope),
}

/// Which body limit a route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// The global limit (`AuthConfig::max_body_bytes`).
    Global,
    /// The route sets its own, usually larger, limit (the ingest and webhook routes, whose
    /// limits come from their source's configuration) and answers `413` itself.
    Route,
}

/// How a key may travel to a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <key>` only.
    Bearer,
    /// Also HTTP Basic carrying the key (`auth::basic`): the schema registry's routes,
    /// whose clients (Confluent's) send a registry credential that way.
    BearerOrBasic,
}

/// What the table says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub body: BodyLimit,
    pub credentials: Credentials,
}

/// The schema registry's routes (`crate::registry`), the only ones that take HTTP Basic:
/// a browser can replay Basic credentials it once stored on its own, a bearer token
/// never, so the rest of the API keeps to bearer tokens.
const REGISTRY: &[&str] = &[
    "/subjects",
    "/subjects/**",
    "/schemas/**",
    "/compatibility/**",
    "/config",
    "/config/**",
];

/// Whether `GET /metrics` is open (scrapers without credentials, the default) or needs a
/// `read` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsAccess {
    #[default]
    Public,
    NeedsKey,
}

/// Which methods a row applies to. `GET` rows cover `HEAD` too, as axum's `get` routes do.
#[derive(Debug, Clone, Copy)]
enum Methods {
    Get,
    Post,
    /// PUT, PATCH and DELETE: the methods that replace or remove something.
    Writes,
    Any,
}

/// Who a row grants access to; `Metrics` is resolved by [`MetricsAccess`].
#[derive(Debug, Clone, Copy)]
enum Grant {
    Is(Access),
    Metrics,
}

/// A path pattern: literal segments, `*` for exactly one segment, a trailing `**` for one
/// or more; `ANY` matches every path.
const ANY: &str = "**";

/// The policy. First matching row wins; the last row is the default.
const TABLE: &[(Methods, &str, Grant, BodyLimit)] = {
    use Access::{Needs, OwnCheck, Public};
    use BodyLimit::{Global, Route};
    use Grant::{Is, Metrics};
    use Methods::{Any, Get, Post, Writes};
    use Scope::{Admin, Ingest, Read};
    &[
        // Probes and the dashboard's page and static files: no data in them.
        (Get, "/healthz", Is(Public), Global),
        (Get, "/readyz", Is(Public), Global),
        (Get, "/", Is(Public), Global),
        (Get, "/assets/*", Is(Public), Global),
        (Get, "/metrics", Metrics, Global),
        // Webhooks verify their own HMAC signature or token (connectors crate).
        (Post, "/v1/webhooks/**", Is(OwnCheck), Route),
        (Post, "/v1/events", Is(Needs(Ingest)), Route),
        // Control: pausing a source stops ingestion; registry writes change what every
        // reader decodes with.
        (Post, "/v1/sources/*/pause", Is(Needs(Admin)), Global),
        (Post, "/v1/sources/*/resume", Is(Needs(Admin)), Global),
        (Post, "/subjects/*/versions", Is(Needs(Admin)), Global),
        (Writes, ANY, Is(Needs(Admin)), Global),
        // POSTs that only read: SQL, the registry's lookup and compatibility test.
        (Post, "/v1/sql", Is(Needs(Read)), Global),
        (Post, "/subjects/*", Is(Needs(Read)), Global),
        (Post, "/compatibility/**", Is(Needs(Read)), Global),
        // Everything else: every other /v1 route, /openapi.json, registry reads, and
        // paths no route serves.
        (Any, ANY, Is(Needs(Read)), Global),
    ]
};

/// What the policy says about `method path`.
pub fn classify(method: &Method, path: &str, metrics: MetricsAccess) -> Rule {
    let (_, _, grant, body) = TABLE
        .iter()
        .find(|(methods, pattern, _, _)| methods.matches(method) && matches(pattern, path))
        .expect("the table's last row matches every request");
    let access = match grant {
        Grant::Is(access) => *access,
        Grant::Metrics => match metrics {
            MetricsAccess::Public => Access::Public,
            MetricsAccess::NeedsKey => Access::Needs(Scope::Read),
        },
    };
    let credentials = if REGISTRY.iter().any(|pattern| matches(pattern, path)) {
        Credentials::BearerOrBasic
    } else {
        Credentials::Bearer
    };
    Rule {
        access,
        body: *body,
        credentials,
    }
}

impl Methods {
    fn matches(self, method: &Method) -> bool {
        match self {
            Methods::Get => method == Method::GET || method == Method::HEAD,
            Methods::Post => method == Method::POST,
            Methods::Writes => {
                method == Method::PUT || method == Method::PATCH || method == Method::DELETE
            }
            Methods::Any => true,
        }
    }
}

/// Segment-wise match. `*` and `**` never match an empty segment, so `/assets/` or
/// `/v1/webhooks/` fall through to the default (a read key).
fn matches(pattern: &str, path: &str) -> bool {
    if pattern == ANY {
        return true;
    }
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some("**"), Some(seg)) => return !seg.is_empty() && have.all(|s| !s.is_empty()),
            (Some("*"), Some(seg)) => {
                if seg.is_empty() {
                    return false;
                }
            }
            (Some(lit), Some(seg)) if lit == seg => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(method: Method, path: &str) -> Access {
        classify(&method, path, MetricsAccess::Public).access
    }

    #[test]
    fn probes_and_dashboard_files_are_public() {
        for path in ["/healthz", "/readyz", "/", "/assets/app.js", "/metrics"] {
            assert_eq!(access(Method::GET, path), Access::Public, "GET {path}");
            assert_eq!(access(Method::HEAD, path), Access::Public, "HEAD {path}");
        }
    }

    #[test]
    fn metrics_need_a_read_key_when_configured() {
        let rule = classify(&Method::GET, "/metrics", MetricsAccess::NeedsKey);
        assert_eq!(rule.access, Access::Needs(Scope::Read));
    }

    #[test]
    fn webhooks_check_their_own_credentials_and_keep_their_body_limit() {
        for path in ["/v1/webhooks/ci", "/v1/webhooks/github/github"] {
            let rule = classify(&Method::POST, path, MetricsAccess::Public);
            assert_eq!(rule.access, Access::OwnCheck, "POST {path}");
            assert_eq!(rule.body, BodyLimit::Route, "POST {path}");
        }
        // Only POST is a delivery; and a bare prefix is no webhook.
        assert_eq!(
            access(Method::GET, "/v1/webhooks/ci"),
            Access::Needs(Scope::Read)
        );
        assert_eq!(
            access(Method::POST, "/v1/webhooks/"),
            Access::Needs(Scope::Read)
        );
        assert_eq!(
            access(Method::POST, "/v1/webhooks"),
            Access::Needs(Scope::Read)
        );
    }

    #[test]
    fn ingest_needs_an_ingest_key_and_keeps_its_body_limit() {
        let rule = classify(&Method::POST, "/v1/events", MetricsAccess::Public);
        assert_eq!(rule.access, Access::Needs(Scope::Ingest));
        assert_eq!(rule.body, BodyLimit::Route);
        // Anything else under /v1/events is not the ingest route.
        assert_eq!(
            access(Method::POST, "/v1/events/"),
            Access::Needs(Scope::Read)
        );
    }

    #[test]
    fn control_and_registry_writes_need_admin() {
        for (method, path) in [
            (Method::POST, "/v1/sources/github/pause"),
            (Method::POST, "/v1/sources/github/resume"),
            (Method::POST, "/subjects/helios.events-value/versions"),
            (Method::PUT, "/config"),
            (Method::PUT, "/config/helios.events-value"),
            (Method::DELETE, "/subjects/helios.events-value"),
            (Method::DELETE, "/subjects/helios.events-value/versions/1"),
            (Method::PATCH, "/v1/anything"),
        ] {
            assert_eq!(
                access(method.clone(), path),
                Access::Needs(Scope::Admin),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn reads_and_read_only_posts_need_read() {
        for (method, path) in [
            (Method::GET, "/v1/sources"),
            (Method::GET, "/v1/insights"),
            (Method::POST, "/v1/sql"),
            (Method::GET, "/openapi.json"),
            (Method::GET, "/subjects"),
            (Method::GET, "/subjects/helios.events-value/versions/latest"),
            (Method::GET, "/schemas/ids/1"),
            (Method::GET, "/config"),
            (Method::POST, "/subjects/helios.events-value"),
            (
                Method::POST,
                "/compatibility/subjects/helios.events-value/versions/latest",
            ),
            (Method::GET, "/v1/sources/github/pause"),
        ] {
            assert_eq!(
                access(method.clone(), path),
                Access::Needs(Scope::Read),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unknown_and_lookalike_paths_need_read() {
        for (method, path) in [
            (Method::GET, "/nope"),
            (Method::GET, "/healthz/"),
            (Method::GET, "//healthz"),
            (Method::GET, "/assets/"),
            (Method::GET, "/assets/a/b.js"),
            (Method::POST, "/healthz"),
            (Method::POST, "/v1/sources/github/pause/"),
            (Method::POST, "/v1/sources//pause"),
            (Method::OPTIONS, "/v1/events"),
        ] {
            assert_eq!(
                access(method.clone(), path),
                Access::Needs(Scope::Read),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn only_registry_routes_take_basic_credentials() {
        let credentials =
            |method: Method, path: &str| classify(&method, path, MetricsAccess::Public).credentials;
        for (method, path) in [
            (Method::GET, "/subjects"),
            (Method::POST, "/subjects/helios.events-value"),
            (Method::POST, "/subjects/helios.events-value/versions"),
            (Method::GET, "/subjects/helios.events-value/versions/latest"),
            (Method::GET, "/schemas/ids/1"),
            (
                Method::POST,
                "/compatibility/subjects/helios.events-value/versions/latest",
            ),
            (Method::GET, "/config"),
            (Method::PUT, "/config/helios.events-value"),
        ] {
            assert_eq!(
                credentials(method.clone(), path),
                Credentials::BearerOrBasic,
                "{method} {path}"
            );
        }
        for (method, path) in [
            (Method::POST, "/v1/events"),
            (Method::POST, "/v1/sql"),
            (Method::GET, "/v1/sources"),
            (Method::POST, "/v1/sources/github/pause"),
            (Method::GET, "/openapi.json"),
            (Method::GET, "/subjectsx"),
            (Method::GET, "/schemas"),
            (Method::GET, "/v1/subjects"),
            (Method::GET, "/nope"),
        ] {
            assert_eq!(
                credentials(method.clone(), path),
                Credentials::Bearer,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn patterns_match_segments_not_prefixes() {
        assert!(matches("/assets/*", "/assets/app.js"));
        assert!(!matches("/assets/*", "/assets"));
        assert!(!matches("/assets/*", "/assetsx/app.js"));
        assert!(matches("/v1/webhooks/**", "/v1/webhooks/a/b/c"));
        assert!(!matches("/v1/webhooks/**", "/v1/webhooks/a//c"));
        assert!(!matches("/v1/events", "/v1/eventsx"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/x"));
    }
}
