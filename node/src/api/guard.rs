//! Keeps web pages from driving the API: a browser lets any site send
//! "simple" cross-origin requests (a `text/plain` or form body, no custom
//! header, no preflight) to `127.0.0.1:7420`, and an open node would run
//! what they ask. So:
//!
//! - a request with an `Origin` header that is not this node's own API
//!   origin as the browser sees it (`http://` or `https://` followed by
//!   the request's `Host`) is refused with 403, whatever its method; the
//!   dashboard, served by the node itself, sends its own origin;
//! - a request that carries a body or declares a content type (any method
//!   but `GET`/`HEAD`) must declare `Content-Type: application/json`
//!   (415 otherwise), which a page cannot send cross-origin without a CORS
//!   preflight that this API never grants. A page can send a body with no
//!   type at all, so a body without one is refused too; bodiless calls
//!   (restart, undo) need no type.
//!
//! Clients that are not browsers (the CLI, curl, scripts) send no `Origin`
//! and are unaffected. Calls forwarded over the mesh were checked by the
//! node they entered and carry neither.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use skein_protocol::api::MAX_BODY_BYTES;

use super::ApiErr;

/// The middleware.
pub async fn check(req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if !host.is_some_and(|h| same_origin(&origin, h)) {
            return ApiErr::new(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request refused: Origin {origin:?} is not this node's API \
                     origin (http://{})",
                    host.unwrap_or("<no Host header>")
                ),
            )
            .into_response();
        }
    }
    let bodyless = req.method() == Method::GET || req.method() == Method::HEAD;
    if bodyless || is_json(req.headers()) {
        return next.run(req).await;
    }
    if req.headers().contains_key(header::CONTENT_TYPE) || declared_length(req.headers()) {
        return not_json();
    }
    if !req.headers().contains_key(header::TRANSFER_ENCODING) {
        return next.run(req).await;
    }
    // A chunked body without a type (some clients send an empty one with
    // every POST): only an empty one is fine.
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) if b.is_empty() => next.run(Request::from_parts(parts, Body::from(b))).await,
        Ok(_) => not_json(),
        Err(_) => ApiErr::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the {MAX_BODY_BYTES} byte limit"),
        )
        .into_response(),
    }
}

fn not_json() -> Response {
    ApiErr::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "request bodies must be JSON sent with Content-Type: application/json",
    )
    .into_response()
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a page
/// served from `host` (a `Host` header), default ports included.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return false;
    }
    let norm = |a: &str| {
        let a = a.to_ascii_lowercase();
        a.strip_suffix(default_port)
            .map(str::to_string)
            .unwrap_or(a)
    };
    norm(authority) == norm(host.trim())
}

/// A `Content-Length` that announces a body (or cannot be read).
fn declared_length(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_LENGTH).is_some_and(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|n| n > 0)
    })
}

/// `Content-Type: application/json`, parameters (charset) allowed.
fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn origins_match_the_host_they_were_served_from() {
        assert!(same_origin("http://127.0.0.1:7420", "127.0.0.1:7420"));
        assert!(same_origin("HTTP://Node-1:7420", "node-1:7420"));
        assert!(same_origin("http://edge.example", "edge.example:80"));
        assert!(same_origin("https://skein.example", "skein.example"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:7420"));
        assert!(!same_origin("http://127.0.0.1:8080", "127.0.0.1:7420"));
        assert!(!same_origin("null", "127.0.0.1:7420"));
        assert!(!same_origin("file://", "127.0.0.1:7420"));
        assert!(!same_origin(
            "http://127.0.0.1:7420@evil.example",
            "127.0.0.1:7420"
        ));
        assert!(!same_origin("ftp://127.0.0.1:7420", "127.0.0.1:7420"));
    }

    async fn send(req: Request<Body>) -> StatusCode {
        let app = Router::new()
            .route("/v1/jobs", post(|| async { "ok" }).get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(check));
        app.oneshot(req).await.unwrap().status()
    }

    fn post_with(headers: &[(&str, &str)], body: &'static str) -> Request<Body> {
        let mut b = Request::post("/v1/jobs");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn only_same_origin_json_gets_through() {
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:7420");
        assert_eq!(send(post_with(&[json, host], "{}")).await, StatusCode::OK);
        let utf8 = ("content-type", "application/json; charset=utf-8");
        assert_eq!(send(post_with(&[utf8, host], "{}")).await, StatusCode::OK);
        let text = ("content-type", "text/plain");
        assert_eq!(
            send(post_with(&[text, host], "{}")).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let form = ("content-type", "application/x-www-form-urlencoded");
        assert_eq!(
            send(post_with(&[form, host], "")).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            send(post_with(&[host, ("content-length", "2")], "{}")).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a body without a content type"
        );
        // No body, no type: a bodiless POST (restart, undo) is fine.
        assert_eq!(send(post_with(&[host], "")).await, StatusCode::OK);
        let chunked = ("transfer-encoding", "chunked");
        assert_eq!(send(post_with(&[host, chunked], "")).await, StatusCode::OK);
        assert_eq!(
            send(post_with(&[host, chunked], "{}")).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let evil = ("origin", "http://evil.example");
        assert_eq!(
            send(post_with(&[json, host, evil], "{}")).await,
            StatusCode::FORBIDDEN
        );
        let own = ("origin", "http://127.0.0.1:7420");
        assert_eq!(
            send(post_with(&[json, host, own], "{}")).await,
            StatusCode::OK
        );
        let get = Request::get("/v1/jobs")
            .header("host", "127.0.0.1:7420")
            .header("origin", "http://evil.example")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(get).await, StatusCode::FORBIDDEN);
    }
}
