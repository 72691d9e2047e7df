//! The web dashboard every node serves: one HTML page (`GET /`), its script
//! (`GET /ui/app.js`) and stylesheet (`GET /ui/style.css`), embedded in the
//! binary with `include_str!`. No build step, no framework, no CDN: the
//! plain JavaScript calls this node's own JSON API ([`skein_protocol::api`]),
//! sending the API token the user typed (kept in `localStorage`) as
//! `Authorization: Bearer …`. The assets hold no cluster data and no secret,
//! so they are public and answered locally on every node (`super::routes`).

use axum::http::header::{
    HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page.
const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// Its script.
const APP_JS: &str = include_str!("dashboard/app.js");
/// Its stylesheet.
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Only our own script, style and API; no inline code, no framing (the page
/// holds a token and has buttons that stop jobs).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The dashboard routes, to merge into the API router (any state type).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
}

/// `GET /`: the page.
pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`: the script.
pub async fn app_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`: the stylesheet.
pub async fn style_css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// An embedded asset with its content type and protective headers. Assets
/// are revalidated (`no-cache`) so an upgraded node serves its new script.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, &'static str); 6] = [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, "no-cache"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    (headers, body)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get_asset(path: &str) -> (StatusCode, String, String) {
        let resp = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn assets_are_served_with_their_content_types() {
        for (path, ct, needle) in [
            ("/", "text/html; charset=utf-8", "<title>Skein"),
            ("/ui/app.js", "text/javascript; charset=utf-8", "/v1/allocs"),
            ("/ui/style.css", "text/css; charset=utf-8", "table"),
        ] {
            let (status, got_ct, body) = get_asset(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(got_ct, ct, "{path}");
            assert!(body.contains(needle), "{path} lacks {needle:?}");
        }
    }

    #[tokio::test]
    async fn page_loads_only_its_own_assets() {
        let (_, _, html) = get_asset("/").await;
        assert!(html.contains(r#"src="/ui/app.js""#));
        assert!(html.contains(r#"href="/ui/style.css""#));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script>"), "no inline script (CSP)");
    }

    #[tokio::test]
    async fn unknown_ui_path_is_not_found() {
        let (status, _, _) = get_asset("/ui/nope.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
