//! The listeners of the serving stages, in one place: binding (a taken port stops the
//! process before anything starts, saying what to do), serving a router until the process
//! is asked to stop, and the `/healthz` and `/metrics` listener of the stages that serve no
//! other HTTP (`helios run pipeline|sink --metrics-listen`).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use helios_query_api::metrics::MetricsRegistry;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Binds `addr`; `flag` is the option that sets it, named in the error.
pub async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (is another process using it? try {flag})"))
}

/// Serves `app` on `listener` until `stop` resolves, then waits for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .context("serving HTTP")
}

/// `GET /healthz` for a listener whose routes bring none of their own.
pub fn health_routes() -> Router {
    Router::new().route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    )
}

/// `/metrics` and `/healthz` alone, for the stages that serve no other HTTP.
pub fn stage_router(registry: MetricsRegistry) -> Router {
    health_routes().merge(helios_query_api::metrics::router(registry))
}

/// Binds `addr` (so a taken port stops the stage before it starts) and serves
/// [`stage_router`] until the process ends.
pub async fn serve_stage(addr: SocketAddr, registry: MetricsRegistry) -> anyhow::Result<()> {
    let listener = bind(addr, "another --metrics-listen").await?;
    let local = listener.local_addr()?;
    info!(url = %format!("http://{local}/metrics"), "Serving metrics.");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, stage_router(registry)).await {
            warn!(error = %e, "The metrics listener stopped.");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stage_router_serves_metrics_and_health() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            async move { axum::serve(listener, stage_router(MetricsRegistry::new())).await },
        );
        let client = reqwest::Client::new();
        for path in ["/metrics", "/healthz"] {
            let resp = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
    }
}
