//! The sources' part of a process's OpenAPI document: `/v1/sources` and the push routes
//! the spec's sources bring (`POST /v1/events` for an `http` source, the webhook routes
//! for `webhook` and `github` sources), from the handlers' annotations. A process that
//! serves them merges it into its own document.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::github::Pong;
use crate::http_ingest::{Accepted, CloudEvent, IngestError, Rejected};
use crate::push::{DeadLettered, Delivered, PushError};
use crate::spec::SourceSpec;

#[derive(OpenApi)]
#[openapi(
    paths(crate::http_ingest::post_events),
    components(schemas(Accepted, Rejected, IngestError, CloudEvent, PushError)),
    tags((name = "ingest", description = "The push routes of the spec's sources: CloudEvents (an `ingest` key) and webhooks (each source's own token or signature)")),
)]
struct IngestDoc;

#[derive(OpenApi)]
#[openapi(
    paths(crate::webhook::deliver),
    components(schemas(Delivered, DeadLettered, PushError)),
    modifiers(&WebhookToken),
)]
struct WebhookDoc;

#[derive(OpenApi)]
#[openapi(
    paths(crate::github::deliver),
    components(schemas(Delivered, DeadLettered, PushError, Pong)),
    modifiers(&GithubSignature),
)]
struct GithubDoc;

struct WebhookToken;

impl Modify for WebhookToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_scheme(
            openapi,
            "webhook_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The webhook source's own `token` from the spec (not an API key), or `?token=` for senders that cannot set a header.",
                    ))
                    .build(),
            ),
        );
    }
}

struct GithubSignature;

impl Modify for GithubSignature {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        add_scheme(
            openapi,
            "github_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Hub-Signature-256",
                "`sha256=` and the hex HMAC-SHA256 of the raw body with the source's `secret`, as GitHub signs deliveries.",
            ))),
        );
    }
}

fn add_scheme(openapi: &mut utoipa::openapi::OpenApi, name: &str, scheme: SecurityScheme) {
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(name, scheme);
}

/// `/v1/sources` and the push routes `specs` bring, as [`crate::spec::build_with`] serves
/// them.
pub fn document(specs: &[SourceSpec]) -> utoipa::openapi::OpenApi {
    let mut doc = crate::runtime::openapi();
    let has = |f: fn(&SourceSpec) -> bool| specs.iter().any(f);
    if has(|s| matches!(s, SourceSpec::Http(_))) {
        doc.merge(IngestDoc::openapi());
    }
    if has(|s| matches!(s, SourceSpec::Webhook(_))) {
        doc.merge(WebhookDoc::openapi());
    }
    if has(|s| matches!(s, SourceSpec::Github(_))) {
        doc.merge(GithubDoc::openapi());
    }
    doc
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::document;
    use crate::spec::{SourceSpec, SourcesSpec};

    fn specs(toml_text: &str) -> Vec<SourceSpec> {
        toml::from_str::<SourcesSpec>(toml_text).unwrap().sources
    }

    fn paths(doc: &Value) -> Vec<&str> {
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn the_push_routes_are_described_where_a_source_brings_them() {
        let all = specs(
            r#"
            [[source]]
            type = "http"
            name = "ingest"
            [[source]]
            type = "webhook"
            name = "ci"
            token = "t"
            [[source]]
            type = "github"
            name = "gh"
            secret = "s"
            "#,
        );
        let doc = serde_json::to_value(document(&all)).unwrap();
        assert_eq!(
            paths(&doc),
            [
                "/v1/events",
                "/v1/sources",
                "/v1/sources/{name}/pause",
                "/v1/sources/{name}/resume",
                "/v1/webhooks/github/{source}",
                "/v1/webhooks/{source}",
            ]
        );
        let post = &doc["paths"]["/v1/events"]["post"];
        let content = post["requestBody"]["content"].as_object().unwrap();
        for mode in [
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/x-ndjson",
            "*/*",
        ] {
            assert!(content.contains_key(mode), "{mode}: {post}");
        }
        assert_eq!(
            post["summary"],
            "Takes CloudEvents; `202` once they are durable in the log."
        );
        let description = post["description"].as_str().unwrap();
        assert!(description.contains("ce-specversion"), "{description}");
        let event = &doc["components"]["schemas"]["CloudEvent"];
        assert_eq!(
            event["required"],
            serde_json::json!(["specversion", "id", "source", "type"]),
            "{event}"
        );
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["webhook_token"]["scheme"], "bearer", "{schemes}");
        assert_eq!(
            schemes["github_signature"]["name"], "X-Hub-Signature-256",
            "{schemes}"
        );
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "ingest_events",
                "list",
                "pause",
                "resume",
                "github_delivery",
                "webhook_delivery"
            ],
            "unique"
        );
        let tags: Vec<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(tags, ["sources", "ingest"]);

        let pull_only = specs(
            r#"
            [[source]]
            type = "host"
            name = "box"
            "#,
        );
        let doc = serde_json::to_value(document(&pull_only)).unwrap();
        assert_eq!(
            paths(&doc),
            [
                "/v1/sources",
                "/v1/sources/{name}/pause",
                "/v1/sources/{name}/resume"
            ]
        );
    }
}
