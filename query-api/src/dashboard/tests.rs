//! The dashboard's files: served with their types and cache headers, revalidated by
//! ETag, unknown names answered with a JSON 404, and nothing loaded from elsewhere.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::{ASSETS, INDEX, router};

async fn get(path: &str, if_none_match: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(response: axum::response::Response) -> String {
    String::from_utf8(
        to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_page_is_served_at_the_root_and_loads_its_module() {
    let response = get("/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    assert!(
        h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let html = text(response).await;
    assert!(
        html.contains(r#"<script type="module" src="/assets/app.js">"#),
        "{html}"
    );
    assert!(html.contains(r#"href="/assets/style.css""#), "{html}");
}

#[tokio::test]
async fn every_asset_is_served_with_its_content_type() {
    for asset in ASSETS {
        let response = get(&format!("/assets/{}", asset.name), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
        let expected = match asset.name.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("no expected type for .{other}"),
        };
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            expected,
            "{}",
            asset.name
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        assert_eq!(
            text(response).await.as_bytes(),
            asset.body,
            "{}",
            asset.name
        );
    }
}

#[tokio::test]
async fn an_unchanged_file_is_revalidated_with_304() {
    let first = get("/assets/app.js", None).await;
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    let again = get("/assets/app.js", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    assert!(text(again).await.is_empty());

    let other = get("/assets/app.js", Some("\"0000000000000000\"")).await;
    assert_eq!(other.status(), StatusCode::OK);
    // Each file has its own tag.
    let css = get("/assets/style.css", None).await;
    assert_ne!(css.headers()[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn an_unknown_asset_is_a_json_404_naming_it() {
    for path in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/..%2Fmod.rs",
    ] {
        let response = get(path, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        let name = path.trim_start_matches("/assets/").replace("%2F", "/");
        assert!(body["error"].as_str().unwrap().contains(&name), "{body}");
        assert!(body["hint"].as_str().unwrap().contains("app.js"), "{body}");
    }
}

/// The dashboard must work offline: every module import names a served asset, and no
/// file references another origin (`http://www.w3.org/2000/svg` is an XML namespace
/// name, not something fetched).
#[test]
fn assets_reference_only_each_other() {
    let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
    for asset in ASSETS.iter().chain(std::iter::once(&INDEX)) {
        let text = std::str::from_utf8(asset.body).unwrap();
        let without_ns = text.replace("http://www.w3.org/2000/svg", "");
        for needle in ["http://", "https://", "//cdn", "@import", "fonts.g"] {
            assert!(
                !without_ns.contains(needle),
                "{} references `{needle}`",
                asset.name
            );
        }
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("import "))
        {
            let target = line
                .rsplit("from")
                .next()
                .unwrap()
                .trim()
                .trim_end_matches(';')
                .trim_matches(|c| c == '\'' || c == '"');
            let file = target.strip_prefix("./").unwrap_or_else(|| {
                panic!(
                    "{}: import of `{target}` is not a sibling module",
                    asset.name
                )
            });
            assert!(
                names.contains(&file),
                "{} imports missing `{file}`",
                asset.name
            );
        }
    }
    for reference in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        assert!(html.contains(reference), "index.html lacks {reference}");
    }
}
