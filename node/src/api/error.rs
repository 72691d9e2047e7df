//! API errors: every failure becomes an [`ApiError`] JSON body with a
//! status code that says whose fault it is, including the ones axum
//! answers itself (bad paths and query strings, unknown routes, wrong
//! methods), which [`json_errors`] rewrites. A failed write also says
//! whether it may still take effect ([`WriteOutcome`]): 504 with
//! `outcome: unknown` when it was proposed but not confirmed (a status
//! forwarding does not retry), never a plain failure.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skein_protocol::api::{ApiError, WriteOutcome};
use skein_protocol::spec::SpecError;

use crate::control::{ControlError, PlanError};
use crate::rpc::PeerError;

/// An error response.
#[derive(Debug)]
pub struct ApiErr {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ApiError,
    /// Set when nothing was applied and another node (the leader) or a
    /// later attempt may succeed: attached to the response as an
    /// extension, so that a call forwarded here answers its forwarder with
    /// this typed refusal (which it retries) instead of an HTTP status.
    pub retry: Option<PeerError>,
}

impl ApiErr {
    /// An error with `status` and a one-line message.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ApiError {
                error: error.into(),
                details: Vec::new(),
                outcome: None,
            },
            retry: None,
        }
    }

    /// 503, nothing applied, retryable elsewhere or later as `retry`.
    pub fn unavailable(error: impl Into<String>, retry: PeerError) -> Self {
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, error);
        err.body.outcome = Some(WriteOutcome::NotApplied);
        err.retry = Some(retry);
        err
    }

    /// 422 with per-field problems.
    pub fn invalid(error: impl Into<String>, details: Vec<SpecError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ApiError {
                error: error.into(),
                details,
                outcome: None,
            },
            retry: None,
        }
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl From<ControlError> for ApiErr {
    fn from(e: ControlError) -> Self {
        let (status, outcome) = match &e {
            ControlError::Plan(PlanError::UnknownJob(_)) => {
                (StatusCode::NOT_FOUND, WriteOutcome::NotApplied)
            }
            ControlError::Plan(PlanError::Unplaceable(_) | PlanError::Invalid(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, WriteOutcome::NotApplied)
            }
            ControlError::Plan(PlanError::Refused(_)) | ControlError::Rejected(_) => {
                (StatusCode::CONFLICT, WriteOutcome::NotApplied)
            }
            ControlError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, WriteOutcome::NotApplied),
            ControlError::NotLeader { .. }
            | ControlError::Unavailable(_)
            | ControlError::StorageDegraded(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, WriteOutcome::NotApplied)
            }
            ControlError::OutcomeUnknown(_) => (StatusCode::GATEWAY_TIMEOUT, WriteOutcome::Unknown),
        };
        let mut err = Self::new(status, e.to_string());
        err.body.outcome = Some(outcome);
        let refusal = PeerError::from(&e);
        err.retry = refusal.is_retryable().then_some(refusal);
        err
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(retry) = self.retry {
            resp.extensions_mut().insert(retry);
        }
        resp
    }
}

/// Longest plain-text error body kept as the message.
const MAX_ERROR_TEXT: usize = 4 * 1024;

/// The middleware: turns every 4xx/5xx answer that is not JSON already
/// into an [`ApiError`] body, keeping its status and headers (`Allow`,
/// `WWW-Authenticate`), so that clients parse one error shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = match status {
        _ if !text.is_empty() => text,
        StatusCode::NOT_FOUND => format!("no such API path: {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        s => s.canonical_reason().unwrap_or("request failed").to_string(),
    };
    let mut out = ApiErr::new(status, msg).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

/// The fallback route: a JSON 404 that names what was asked.
pub async fn not_found(req: Request) -> ApiErr {
    ApiErr::not_found(format!(
        "no such API path: {} {}",
        req.method(),
        req.uri().path()
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Query;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Q {
        #[allow(dead_code)]
        tail: u32,
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, Option<String>, ApiError) {
        let app = Router::new()
            .route("/q", get(|Query(_): Query<Q>| async { "ok" }))
            .layer(axum::middleware::from_fn(json_errors));
        let resp = app
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let allow = resp
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: ApiError = serde_json::from_slice(&bytes).expect("a JSON error body");
        (status, allow, body)
    }

    #[tokio::test]
    async fn axum_rejections_become_json() {
        let (status, _, body) = call("GET", "/q?tail=lots").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.error.contains("tail"), "{}", body.error);
        let (status, _, body) = call("GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body.error, "no such API path: GET /nope");
        let (status, allow, body) = call("DELETE", "/q?tail=1").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(allow.is_some_and(|a| a.contains("GET")));
        assert_eq!(body.error, "DELETE is not allowed on /q");
    }
}
