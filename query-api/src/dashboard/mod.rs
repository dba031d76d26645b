//! The built-in web dashboard: `GET /` (the page) and `GET /assets/{file}` (its scripts,
//! styles and icon), all compiled into the binary so the dashboard works offline and
//! needs nothing but the Helios process.
//!
//! The page is a small hand-written ES-module app (`assets/`) that reads the JSON API
//! (`/v1/...`) with the API key the user gives it; this module only serves the files.
//! Answers carry an `ETag` (a hash of the file) and `cache-control: no-cache`, so a
//! browser revalidates with a cheap `304` and never runs assets of an older binary.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the dashboard serves under `/assets/`; `index.html` is served at `/` only.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/dom.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/chart.js"),
    },
    Asset {
        name: "overview.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/overview.js"),
    },
    Asset {
        name: "subject.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/subject.js"),
    },
    Asset {
        name: "storage.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/storage.js"),
    },
    Asset {
        name: "sql.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/sql.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
};

/// Strong ETags, computed once: FNV-1a over the bytes is plenty to tell two builds'
/// files apart, and needs no hashing dependency.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS)
        .map(|a| {
            let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("hex is a valid header")
        })
        .collect()
});

/// The dashboard routes, merged into the API router at its root.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &ETAGS[0], &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) => serve(&ASSETS[i], &ETAGS[i + 1], &headers),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "error": format!("no dashboard asset named `{file}`"),
                "hint": format!(
                    "the dashboard is at /; its assets are {}",
                    ASSETS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
                ),
            })),
        )
            .into_response(),
    }
}

fn serve(asset: &Asset, etag: &HeaderValue, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == "index.html" {
        // Everything the page loads comes from this origin; say so, so that a CDN
        // reference or an injected inline script could not run.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                 script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                 base-uri 'none'; form-action 'self'",
            ),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests;
