//! Optional API token (`--api-token-file`): when set, every mutating call
//! needs `Authorization: Bearer <token>`, and reads too unless
//! `--open-reads`. `/v1/status` and the dashboard's static files stay
//! public. Calls forwarded over the mesh were checked by the node
//! they entered (the mesh itself is closed by the cluster key).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::forward::Forwarded;
use super::ApiErr;

/// Who may call the API.
#[derive(Debug, Clone, Default)]
pub struct AuthPolicy {
    /// The token; `None` = no auth.
    pub token: Option<String>,
    /// Let reads through without the token.
    pub open_reads: bool,
}

/// Always served: the dashboard's static assets and the node's own
/// status (id, leader, term), which health checks and load balancers poll.
fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/") || path == "/v1/status"
}

/// Whether a call only reads (a plan is computed, not committed).
fn is_read(method: &Method, path: &str) -> bool {
    method == Method::GET || method == Method::HEAD || path == "/v1/plan"
}

/// Equal-time comparison, so response timing does not leak the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware.
pub async fn check(State(policy): State<Arc<AuthPolicy>>, req: Request, next: Next) -> Response {
    let Some(token) = &policy.token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if req.extensions().get::<Forwarded>().is_some()
        || is_public(path)
        || (policy.open_reads && is_read(req.method(), path))
    {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(given.trim().as_bytes(), token.as_bytes()) {
        return next.run(req).await;
    }
    let msg = if given.is_empty() {
        "this node requires an API token: pass --token or set SKEIN_TOKEN (header Authorization: Bearer <token>)"
    } else {
        "the API token is wrong"
    };
    (
        [(header::WWW_AUTHENTICATE, "Bearer")],
        ApiErr::new(StatusCode::UNAUTHORIZED, msg),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(is_read(&Method::GET, "/v1/jobs"));
        assert!(is_read(&Method::POST, "/v1/plan"));
        assert!(!is_read(&Method::POST, "/v1/jobs"));
    }
}
