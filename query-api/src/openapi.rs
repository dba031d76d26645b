//! The OpenAPI 3.1 document of the read API, generated from the handlers' annotations and
//! the response types (utoipa), served at `GET /openapi.json`.
//!
//! It covers the routes this crate answers: insights, SQL, health, readiness, metrics and
//! the document itself. The ingest routes speak CloudEvents' HTTP binding and the registry
//! routes Confluent's API; both are described by those specifications.

use axum::Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use crate::insights::records::{AlertOut, Alerts, EventOut, Events, InsightOut, Insights};
use crate::insights::series::{Point, Series, Timeseries, Top, TopRow};
use crate::insights::subjects::{Activity, KindCount, MeasureNow, Subject};
use crate::sql::{SqlAnswer, SqlRequest};
use crate::store::Column;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Helios API",
        description = "Insights, read-only SQL and health of a Helios deployment. Every route but /healthz, /readyz and /metrics needs `Authorization: Bearer <key>` (helios keys create).",
    ),
    paths(
        crate::insights::aggregates,
        crate::insights::series::timeseries,
        crate::insights::series::top,
        crate::insights::records::alerts,
        crate::insights::records::insights,
        crate::insights::records::events,
        crate::insights::subjects::subject,
        crate::sql::run,
        crate::app::healthz,
        crate::app::readyz,
        openapi_json,
    ),
    components(schemas(
        Catalog, AggregateInfo, MeasureInfo, MeasureFunction, WindowInfo, WindowKind,
        Timeseries, Series, Point, Top, TopRow,
        Alerts, AlertOut, Insights, InsightOut, Events, EventOut,
        Subject, Activity, KindCount, MeasureNow,
        SqlRequest, SqlAnswer, Column,
    )),
    modifiers(&Additions),
    tags(
        (name = "insights", description = "Aggregates over time, rankings, alerts, insights, events, subjects"),
        (name = "sql", description = "Read-only SQL over the store's tables"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// The bearer scheme, and `/metrics`, whose handler lives with the metrics registry.
struct Additions;

impl Modify for Additions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
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

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")),
    security(("api_key" = []))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
