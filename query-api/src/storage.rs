//! `GET /v1/storage`: what the data dir holds and how close its disk is to full, for the
//! dashboard and scripts: the free space and the reserve below which ingest refuses
//! (`507`), each topic of the embedded log and each table of the embedded store with its
//! size on disk and its limits. The binary measures ([`UsageSource`]); this module serves,
//! and describes the route for the processes that serve it ([`openapi`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The answer of `GET /v1/storage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    /// The data dir measured.
    pub data_dir: String,
    /// Bytes an unprivileged process may still write on its file system; `None` when it
    /// could not be read.
    pub free_bytes: Option<u64>,
    /// Size of that file system.
    pub total_bytes: Option<u64>,
    /// Ingest refuses new events (`507`) while less than this is free; `None`: no check.
    pub min_free_bytes: Option<u64>,
    /// Whether ingest refuses now.
    pub ingest_refused: bool,
    /// The embedded log's topics (none on Kafka).
    pub topics: Vec<TopicUsage>,
    /// The embedded store's tables (none on ClickHouse).
    pub tables: Vec<TableUsage>,
    /// The embedded store's size cap; `None`: none.
    pub store_max_bytes: Option<u64>,
}

/// One topic of the embedded log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TopicUsage {
    /// The topic, such as `helios.events`.
    pub name: String,
    pub partitions: u32,
    /// Bytes on disk (segments and their indexes).
    pub bytes: u64,
    /// Records kept at most this long (by append time), seconds; `None`: no age limit.
    pub retention_seconds: Option<u64>,
    /// At most this many bytes on disk, all partitions together; `None`: no size cap.
    pub retention_bytes: Option<u64>,
}

/// One table of the embedded store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TableUsage {
    /// The table, such as `events` or `agg_<aggregate>`.
    pub name: String,
    /// Bytes of its files on disk.
    pub bytes: u64,
    /// Rows kept at most this long (by the table's time column), seconds; `None`: forever.
    pub retention_seconds: Option<u64>,
}

/// Measures the data dir at request time.
pub trait UsageSource: Send + Sync + std::fmt::Debug {
    fn usage(&self) -> Pin<Box<dyn Future<Output = Usage> + Send + '_>>;
}

/// `GET /v1/storage` over `source` (a `read` key, as every route the policy does not name).
pub fn router(source: Arc<dyn UsageSource>) -> Router {
    Router::new()
        .route("/v1/storage", get(storage))
        .with_state(source)
}

#[derive(OpenApi)]
#[openapi(paths(storage), components(schemas(Usage, TopicUsage, TableUsage)))]
struct StorageDoc;

/// This route as an OpenAPI document, for a process that serves it (`helios up`, over its
/// data dir) to merge into its own.
pub fn openapi() -> utoipa::openapi::OpenApi {
    StorageDoc::openapi()
}

/// What the data dir holds, per topic and table, and how close its disk is to the reserve
/// below which ingest refuses (`507`).
#[utoipa::path(
    get,
    path = "/v1/storage",
    tag = "operations",
    responses((status = 200, description = "The data dir's disk, topics and tables, measured now", body = Usage)),
    security(("api_key" = []))
)]
async fn storage(State(source): State<Arc<dyn UsageSource>>) -> impl IntoResponse {
    axum::Json(source.usage().await)
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug)]
    struct Fixed(Usage);

    impl UsageSource for Fixed {
        fn usage(&self) -> Pin<Box<dyn Future<Output = Usage> + Send + '_>> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    #[tokio::test]
    async fn answers_the_measured_usage_as_json() {
        let usage = Usage {
            data_dir: "/srv/helios".into(),
            free_bytes: Some(10),
            total_bytes: Some(100),
            min_free_bytes: Some(20),
            ingest_refused: true,
            topics: vec![TopicUsage {
                name: "helios.events".into(),
                partitions: 4,
                bytes: 4096,
                retention_seconds: Some(604_800),
                retention_bytes: Some(1 << 30),
            }],
            tables: vec![TableUsage {
                name: "events".into(),
                bytes: 2048,
                retention_seconds: None,
            }],
            store_max_bytes: None,
        };
        let response = router(Arc::new(Fixed(usage)))
            .oneshot(Request::get("/v1/storage").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(response.into_body(), 1 << 20).await.unwrap())
                .unwrap();
        assert_eq!(body["ingest_refused"], true);
        assert_eq!(body["min_free_bytes"], 20);
        assert_eq!(body["topics"][0]["retention_bytes"], 1u64 << 30);
        assert_eq!(
            body["tables"][0]["retention_seconds"],
            serde_json::Value::Null
        );
    }
}
