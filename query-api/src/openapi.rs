//! The OpenAPI 3.1 document of the read API, generated from the handlers' annotations and
//! the response types (utoipa), served at `GET /openapi.json`.
//!
//! It covers the routes every process with the read API answers: insights, SQL, health,
//! readiness, metrics and the document itself ([`document`]); a process without it
//! (`helios run ingest`) starts from health, metrics and the document ([`operations`]).
//! A process that serves more (the sources' routes, `POST /v1/events` and the webhooks
//! among them, from `helios_connectors::openapi`; `/v1/storage`) merges their documents in
//! ([`with`], or `merge`) and hands the whole one to the route as a [`FullDocument`]
//! extension. The schema registry's routes speak Confluent's API and are described by the
//! document's description and its security schemes (`api_key`: Bearer everywhere;
//! `registry_basic`: HTTP Basic carrying a key, on the registry's routes only).

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use crate::insights::late::{Late, LateCount};
use crate::insights::records::{AlertOut, Alerts, EventOut, Events, InsightOut, Insights};
use crate::insights::series::{Point, Series, Timeseries, Top, TopRow};
use crate::insights::subjects::{Activity, KindCount, MeasureNow, Subject};
use crate::sql::{SqlAnswer, SqlRequest};
use crate::store::Column;

/// The routes every Helios process with an HTTP listener serves: health, metrics and this
/// document, with the API key schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Helios API",
        description = "The HTTP routes of a Helios process. Every route but /healthz, /readyz and /metrics needs `Authorization: Bearer <key>` (helios keys create) with the scope it names, except the webhook routes, which check their source's own token or signature.\n\nWhere this process serves the schema registry, the same port also serves, outside this document, the Confluent Schema Registry API (`/subjects`, `/schemas`, `/compatibility`, `/config`), which also takes the key as HTTP Basic credentials (user = key id, password = secret; or any user with the whole key as password), as Confluent clients send `basic.auth.user.info`.",
    ),
    paths(crate::health::healthz, openapi_json),
    modifiers(&Additions),
    tags((name = "operations", description = "Health, readiness, metrics, this document")),
)]
struct OperationsDoc;

/// The read API: insights, SQL and readiness.
#[derive(OpenApi)]
#[openapi(
    paths(
        crate::insights::aggregates,
        crate::insights::series::timeseries,
        crate::insights::series::top,
        crate::insights::records::alerts,
        crate::insights::records::insights,
        crate::insights::records::events,
        crate::insights::subjects::subject,
        crate::insights::late::late,
        crate::sql::run,
        crate::health::readyz,
    ),
    components(schemas(
        Catalog, AggregateInfo, MeasureInfo, MeasureFunction, WindowInfo, WindowKind,
        Timeseries, Series, Point, Top, TopRow,
        Alerts, AlertOut, Insights, InsightOut, Events, EventOut,
        Subject, Activity, KindCount, MeasureNow,
        Late, LateCount,
        SqlRequest, SqlAnswer, Column,
    )),
    tags(
        (name = "insights", description = "Aggregates over time, rankings, alerts, insights, events, subjects, late events"),
        (name = "sql", description = "Read-only SQL over the store's tables: events, alerts, insights, dead_letters, late_events and agg_<aggregate>"),
    )
)]
struct ReadDoc;

/// The bearer scheme, and `/metrics`, whose handler lives with the metrics registry.
struct Additions;

impl Modify for Additions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Helios API key `hel_<id>_<secret>` (helios keys create), with the scope the route needs: ingest, read or admin.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "registry_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The schema registry's routes only: a Helios API key as HTTP Basic credentials, user = the key id (`<id>` or `hel_<id>`) and password = its secret, or any user and the whole key as password. Same scopes as the bearer key. Refused from browser pages of another site (Sec-Fetch-Site).",
                    ))
                    .build(),
            ),
        );
        let metrics = OperationBuilder::new()
            .tag("operations")
            .summary(Some("Prometheus metrics of every stage in this process"))
            .operation_id(Some("metrics"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("Prometheus text format 0.0.4")
                    .content(
                        "text/plain",
                        ContentBuilder::new()
                            .schema(Some(utoipa::openapi::schema::Object::with_type(
                                utoipa::openapi::schema::Type::String,
                            )))
                            .build(),
                    )
                    .build(),
            )
            .build();
        openapi.paths.paths.insert(
            "/metrics".to_owned(),
            PathItem::new(HttpMethod::Get, metrics),
        );
    }
}

/// The document of a process with the read API: [`operations`] and the read routes.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = operations();
    doc.merge(ReadDoc::openapi());
    doc
}

/// The routes every process with a listener serves (health, metrics, this document) and
/// the key schemes: what a process without the read API (`helios run ingest`) starts
/// from.
pub fn operations() -> utoipa::openapi::OpenApi {
    OperationsDoc::openapi()
}

/// [`document`] with the routes of `more` (documents of other parts the process serves).
pub fn with(more: impl IntoIterator<Item = utoipa::openapi::OpenApi>) -> utoipa::openapi::OpenApi {
    let mut doc = document();
    for part in more {
        doc.merge(part);
    }
    doc
}

/// The document of everything a process serves, when that is more than [`document`]: a
/// request extension `GET /openapi.json` answers with.
#[derive(Clone)]
pub struct FullDocument(pub Arc<utoipa::openapi::OpenApi>);

impl std::fmt::Debug for FullDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullDocument")
            .field("paths", &self.0.paths.paths.len())
            .finish()
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")),
    security(("api_key" = []))
)]
pub async fn openapi_json(full: Option<Extension<FullDocument>>) -> Json<utoipa::openapi::OpenApi> {
    Json(match full {
        Some(Extension(FullDocument(doc))) => (*doc).clone(),
        None => document(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn merged_parts_add_their_routes_and_schemas() {
        let doc = serde_json::to_value(super::with([crate::storage::openapi()])).unwrap();
        let get = &doc["paths"]["/v1/storage"]["get"];
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Usage",
            "{get}"
        );
        assert!(
            doc["components"]["schemas"]["TopicUsage"]["properties"]["retention_bytes"].is_object()
        );
        assert!(
            doc["paths"]["/v1/sql"]["post"].is_object(),
            "the read API stays"
        );
        let plain = serde_json::to_value(super::document()).unwrap();
        assert!(
            plain["paths"]["/v1/storage"].is_null(),
            "only where it is served"
        );
    }

    #[test]
    fn the_document_describes_both_key_forms_and_the_registry() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["scheme"], "bearer", "{schemes}");
        assert_eq!(schemes["registry_basic"]["scheme"], "basic", "{schemes}");
        let description = doc["info"]["description"].as_str().unwrap();
        for named in ["/subjects", "basic.auth.user.info"] {
            assert!(description.contains(named), "{named}: {description}");
        }
    }

    #[test]
    fn the_operations_alone_have_no_read_routes() {
        let doc = serde_json::to_value(super::operations()).unwrap();
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(paths, ["/healthz", "/metrics", "/openapi.json"]);
        assert_eq!(
            doc["components"]["securitySchemes"]["api_key"]["scheme"],
            "bearer"
        );
    }
}
