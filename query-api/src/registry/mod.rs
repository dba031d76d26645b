//! The Confluent Schema Registry REST API over the embedded [`Registry`], so any Kafka
//! tool with a registry client can read Helios topics. AVRO only.
//!
//! Routes: `GET /subjects`, `POST /subjects/{subject}` (lookup),
//! `GET|POST /subjects/{subject}/versions`, `GET /subjects/{subject}/versions/{version}`,
//! `GET /schemas/ids/{id}`, `POST /compatibility/subjects/{subject}/versions/{version}`,
//! `GET|PUT /config`, `GET|PUT /config/{subject}`.

mod error;
mod extract;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use helios_schemas::registry::{
    CompatibilityLevel, SubjectVersion, VersionSelector, check_schema_type,
};
use helios_schemas::{Error as SchemaError, Registry};
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::{Error, Result};
pub use extract::SrJson;

/// The Confluent media type answers carry.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry routes, to be merged into the API router at its root.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_compatibility),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
        .with_state(registry)
}

type Reg = State<Arc<Registry>>;

/// A JSON answer with the Confluent content type.
pub(crate) fn respond(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn ok(body: Value) -> Response {
    respond(StatusCode::OK, body)
}

/// Body of register, lookup and compatibility requests.
#[derive(Debug, Deserialize)]
struct SchemaRequest {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaRequest {
    fn validate(&self) -> Result<()> {
        check_schema_type(self.schema_type.as_deref())?;
        if !self.references.is_empty() {
            return Err(SchemaError::InvalidSchema {
                reason: "schema references are not supported by the embedded registry; inline the referenced types".into(),
            }
            .into());
        }
        Ok(())
    }
}

fn version_json(v: SubjectVersion) -> Value {
    json!({ "subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema })
}

/// Runs a registry write off the async threads: writes fsync.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> helios_schemas::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(Error::from)
}

async fn list_subjects(State(reg): Reg) -> Response {
    ok(json!(reg.subjects()))
}

async fn list_versions(State(reg): Reg, Path(subject): Path<String>) -> Result<Response> {
    Ok(ok(json!(reg.versions(&subject)?)))
}

async fn register(
    State(reg): Reg,
    Path(subject): Path<String>,
    SrJson(req): SrJson<SchemaRequest>,
) -> Result<Response> {
    req.validate()?;
    let registered = blocking(move || reg.register(&subject, &req.schema)).await?;
    Ok(ok(json!({ "id": registered.id })))
}

async fn lookup(
    State(reg): Reg,
    Path(subject): Path<String>,
    SrJson(req): SrJson<SchemaRequest>,
) -> Result<Response> {
    req.validate()?;
    Ok(ok(version_json(reg.lookup(&subject, &req.schema)?)))
}

async fn get_version(
    State(reg): Reg,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let selector: VersionSelector = version.parse()?;
    Ok(ok(version_json(reg.version(&subject, selector)?)))
}

async fn schema_by_id(State(reg): Reg, Path(id): Path<String>) -> Result<Response> {
    let id = id.parse::<u32>().map_err(|_| {
        Error::request(
            StatusCode::NOT_FOUND,
            40403,
            format!("schema id {id:?} not found; ids are positive integers"),
        )
    })?;
    Ok(ok(json!({ "schema": reg.schema(id)?.text })))
}

async fn test_compatibility(
    State(reg): Reg,
    Path((subject, version)): Path<(String, String)>,
    SrJson(req): SrJson<SchemaRequest>,
) -> Result<Response> {
    req.validate()?;
    let selector: VersionSelector = version.parse()?;
    let compatible = reg.test_compatibility(&subject, selector, &req.schema)?;
    Ok(ok(json!({ "is_compatible": compatible })))
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

async fn get_global_config(State(reg): Reg) -> Response {
    ok(json!({ "compatibilityLevel": reg.global_level() }))
}

async fn put_global_config(
    State(reg): Reg,
    SrJson(req): SrJson<ConfigRequest>,
) -> Result<Response> {
    let level: CompatibilityLevel = req.compatibility.parse()?;
    blocking(move || reg.set_global_level(level)).await?;
    Ok(ok(json!({ "compatibility": level })))
}

async fn get_subject_config(
    State(reg): Reg,
    Path(subject): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    // Parsed by hand so a malformed query string cannot produce a plain-text rejection.
    let default_to_global = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.eq_ignore_ascii_case("defaultToGlobal=true"));
    let level = match reg.subject_level(&subject) {
        Some(level) => level,
        None if default_to_global => reg.global_level(),
        None => return Err(SchemaError::SubjectLevelNotSet { subject }.into()),
    };
    Ok(ok(json!({ "compatibilityLevel": level })))
}

async fn put_subject_config(
    State(reg): Reg,
    Path(subject): Path<String>,
    SrJson(req): SrJson<ConfigRequest>,
) -> Result<Response> {
    let level: CompatibilityLevel = req.compatibility.parse()?;
    blocking(move || reg.set_subject_level(&subject, level)).await?;
    Ok(ok(json!({ "compatibility": level })))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const V2_OPTIONAL: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const V2_REQUIRED: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;

    fn schema_body(schema: &str) -> String {
        json!({ "schema": schema }).to_string()
    }

    /// Sends one request and checks status and the fields of the expected JSON.
    async fn check(
        app: &Router,
        method: &str,
        uri: &str,
        body: Option<String>,
        status: u16,
        expected: Value,
    ) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, CONTENT_TYPE);
        }
        let req = req
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        let got_status = response.status().as_u16();
        let ct = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let got: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {uri}: body is not JSON ({e}): {bytes:?}"));
        assert_eq!(got_status, status, "{method} {uri}: {got}");
        assert_eq!(
            ct.as_ref().and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE),
            "{method} {uri}"
        );
        match &expected {
            Value::Object(fields) => {
                for (k, v) in fields {
                    assert_eq!(got.get(k), Some(v), "{method} {uri}: field {k} in {got}");
                }
            }
            other => assert_eq!(&got, other, "{method} {uri}"),
        }
    }

    #[tokio::test]
    async fn confluent_api_walkthrough() {
        let app = router(Arc::new(Registry::in_memory()));
        let s = "/subjects/helios.events-value";
        let cases: Vec<(&str, String, Option<String>, u16, Value)> = vec![
            ("GET", "/subjects".into(), None, 200, json!([])),
            (
                "GET",
                format!("{s}/versions"),
                None,
                404,
                json!({"error_code": 40401}),
            ),
            (
                "POST",
                format!("{s}/versions"),
                Some(schema_body(V1)),
                200,
                json!({"id": 1}),
            ),
            (
                "POST",
                format!("{s}/versions"),
                Some(schema_body(V1)),
                200,
                json!({"id": 1}),
            ),
            (
                "POST",
                "/subjects/other/versions".into(),
                Some(schema_body(V1)),
                200,
                json!({"id": 1}),
            ),
            (
                "POST",
                format!("{s}/versions"),
                Some(schema_body(V2_REQUIRED)),
                409,
                json!({"error_code": 409}),
            ),
            (
                "POST",
                format!("/compatibility{s}/versions/latest"),
                Some(schema_body(V2_REQUIRED)),
                200,
                json!({"is_compatible": false}),
            ),
            (
                "POST",
                format!("/compatibility{s}/versions/1"),
                Some(schema_body(V2_OPTIONAL)),
                200,
                json!({"is_compatible": true}),
            ),
            (
                "POST",
                format!("{s}/versions"),
                Some(schema_body(V2_OPTIONAL)),
                200,
                json!({"id": 2}),
            ),
            (
                "GET",
                "/subjects".into(),
                None,
                200,
                json!(["helios.events-value", "other"]),
            ),
            ("GET", format!("{s}/versions"), None, 200, json!([1, 2])),
            (
                "GET",
                format!("{s}/versions/latest"),
                None,
                200,
                json!({"subject": "helios.events-value", "version": 2, "id": 2, "schema": V2_OPTIONAL}),
            ),
            (
                "GET",
                format!("{s}/versions/-1"),
                None,
                200,
                json!({"version": 2}),
            ),
            (
                "GET",
                format!("{s}/versions/1"),
                None,
                200,
                json!({"id": 1, "schema": V1}),
            ),
            (
                "GET",
                format!("{s}/versions/3"),
                None,
                404,
                json!({"error_code": 40402}),
            ),
            (
                "GET",
                format!("{s}/versions/zero"),
                None,
                422,
                json!({"error_code": 42202}),
            ),
            (
                "GET",
                format!("{s}/versions/0"),
                None,
                422,
                json!({"error_code": 42202}),
            ),
            (
                "GET",
                "/schemas/ids/2".into(),
                None,
                200,
                json!({"schema": V2_OPTIONAL}),
            ),
            (
                "GET",
                "/schemas/ids/9".into(),
                None,
                404,
                json!({"error_code": 40403}),
            ),
            (
                "GET",
                "/schemas/ids/x".into(),
                None,
                404,
                json!({"error_code": 40403}),
            ),
            (
                "POST",
                s.into(),
                Some(schema_body(V1)),
                200,
                json!({"version": 1, "id": 1}),
            ),
            (
                "POST",
                "/subjects/other".into(),
                Some(schema_body(V2_OPTIONAL)),
                404,
                json!({"error_code": 40403}),
            ),
            (
                "POST",
                "/subjects/nope".into(),
                Some(schema_body(V1)),
                404,
                json!({"error_code": 40401}),
            ),
            // Invalid schemas and types.
            (
                "POST",
                format!("{s}/versions"),
                Some(schema_body("{\"type\":\"recrd\"}")),
                422,
                json!({"error_code": 42201}),
            ),
            (
                "POST",
                format!("{s}/versions"),
                Some(json!({"schema": V1, "schemaType": "PROTOBUF"}).to_string()),
                422,
                json!({"error_code": 42201}),
            ),
            // Malformed bodies get Confluent-style JSON, never plain text.
            (
                "POST",
                format!("{s}/versions"),
                Some("{\"schema\":".into()),
                400,
                json!({"error_code": 400}),
            ),
            (
                "POST",
                format!("{s}/versions"),
                Some("{\"schemas\":\"x\"}".into()),
                422,
                json!({"error_code": 422}),
            ),
            // Config.
            (
                "GET",
                "/config".into(),
                None,
                200,
                json!({"compatibilityLevel": "BACKWARD"}),
            ),
            (
                "PUT",
                "/config".into(),
                Some(json!({"compatibility": "FULL"}).to_string()),
                200,
                json!({"compatibility": "FULL"}),
            ),
            (
                "GET",
                "/config".into(),
                None,
                200,
                json!({"compatibilityLevel": "FULL"}),
            ),
            (
                "PUT",
                "/config".into(),
                Some(json!({"compatibility": "SOMETIMES"}).to_string()),
                422,
                json!({"error_code": 42203}),
            ),
            (
                "GET",
                "/config/other".into(),
                None,
                404,
                json!({"error_code": 40408}),
            ),
            (
                "GET",
                "/config/other?defaultToGlobal=true".into(),
                None,
                200,
                json!({"compatibilityLevel": "FULL"}),
            ),
            (
                "PUT",
                "/config/other".into(),
                Some(json!({"compatibility": "none"}).to_string()),
                200,
                json!({"compatibility": "NONE"}),
            ),
            (
                "GET",
                "/config/other".into(),
                None,
                200,
                json!({"compatibilityLevel": "NONE"}),
            ),
            (
                "POST",
                "/subjects/other/versions".into(),
                Some(schema_body(V2_REQUIRED)),
                200,
                json!({"id": 3}),
            ),
        ];
        for (method, uri, body, status, expected) in cases {
            check(&app, method, &uri, body, status, expected).await;
        }
    }

    #[tokio::test]
    async fn unsupported_content_type_is_a_json_415() {
        let app = router(Arc::new(Registry::in_memory()));
        let req = Request::builder()
            .method("POST")
            .uri("/subjects/s/versions")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(schema_body(V1)))
            .unwrap();
        let response = app.oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got["error_code"], 415);
    }
}
