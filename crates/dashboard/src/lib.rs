//! The web dashboard's files: `GET /` is the single page, `GET /ui/{path}` its
//! scripts, styles and the vendored charting library. The page reads
//! everything through the JSON API with the user's API key, so it sees exactly
//! what that key's namespace sees; these routes serve only static files and
//! need no key.
//!
//! Release builds carry the files inside the binary (no separate web server,
//! no CDN); debug builds read them from `assets/` at each request.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The page may load and call only this origin: no inline script, no
/// third-party content, never framed (clickjacking). Charts set inline styles.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard's routes, to merge into the controller's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route("/ui/{*path}", get(|Path(path): Path<String>, headers: HeaderMap| async move { serve(&path, &headers) }))
}

/// Every file the dashboard serves, by its path under `/ui/`.
pub fn files() -> impl Iterator<Item = String> {
    Assets::iter().map(|p| p.into_owned())
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    // Debug builds read from disk: never let a path climb out of the folder.
    let inside = !path.is_empty() && path.split(['/', '\\']).all(|part| !part.is_empty() && part != "..");
    let Some(file) = inside.then(|| Assets::get(path)).flatten() else {
        return (StatusCode::NOT_FOUND, "no such dashboard file\n").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    // Revalidated each time (cheap with the ETag): a new binary's files are
    // never mixed with a cached older module.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = etag {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn the_page_comes_with_a_policy_that_allows_only_this_origin() {
        let r = get("/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_revalidated_by_etag() {
        let names: Vec<String> = files().collect();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("echarts.min.js")), "the charting library is vendored: {names:?}");
        for name in names {
            let r = get(&format!("/ui/{name}"), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_ne!(r.headers()[header::CONTENT_TYPE], "application/octet-stream", "{name}");
            let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
            assert_eq!(get(&format!("/ui/{name}"), Some(&etag)).await.status(), StatusCode::NOT_MODIFIED, "{name}");
        }
    }

    #[tokio::test]
    async fn paths_outside_the_assets_are_not_found() {
        for path in ["/ui/../Cargo.toml", "/ui/%2e%2e/src/lib.rs", "/ui/nope.js", "/ui/"] {
            assert_eq!(get(path, None).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}
