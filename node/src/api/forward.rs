//! Any node accepts any API call: writes and reads are forwarded over the
//! mesh to the leader, which serves them with its own router (writes answer
//! after the commit), so a client always reads its own writes whichever node
//! it talks to. During a leader change the call is retried against the new
//! leader for a few seconds instead of failing. When no leader can be
//! reached, a Raft member still answers reads from its own replica (stale
//! but useful on a cut-off edge site).
//!
//! A forwarded call carries the credential it was let in with
//! ([`super::auth::Caller`]), and the leader checks it again with the
//! same policy: forwarding never vouches for anyone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use skein_protocol::api::MAX_BODY_BYTES;

use super::auth::Caller;
use super::ApiErr;
use crate::context::NodeCtx;
use crate::mesh::wire::{ApiCall, Credential, WireRequest, WireResponse};
use crate::state::node_id_str;

/// Marks a call that arrived over the mesh (already forwarded once): it is
/// served where it lands, never forwarded again (no loops during leader
/// changes), and judged by the credential it carries. A request extension,
/// not a header, so that no HTTP client can claim it.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    /// Who the call acts for, as the node it entered sent it.
    pub credential: Credential,
}
/// How long a write waits for a reachable leader.
const LEADER_WAIT: Duration = Duration::from_secs(8);
/// How long a read waits before falling back to the local replica.
const READ_LEADER_WAIT: Duration = Duration::from_secs(2);

/// Calls every node answers from its own (gossiped) view, and image
/// pushes, which send what is in this node's own Docker.
fn is_local(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/v1/images/push")
        || method == Method::GET
            && (path == "/v1/status"
                || path == "/metrics"
                || path == "/v1/nodes"
                || path == "/v1/events"
                || path == "/v1/top"
                || path.starts_with("/v1/services")
                || path == "/v1/images"
                || path.ends_with("/logs")
                || path == "/"
                || path.starts_with("/ui/"))
}

/// The middleware.
pub async fn forward(State(ctx): State<Arc<NodeCtx>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let forwarded = req.extensions().get::<Forwarded>().is_some();
    let read = req.method() == Method::GET;
    if forwarded || is_local(req.method(), &path) || ctx.is_leader() {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let credential = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    // The parts are kept for serving here after all: they hold what the
    // router matched (path parameters), which a rebuilt request would lack.
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the {MAX_BODY_BYTES} byte limit"),
            )
            .into_response()
        }
    };
    let deadline = Instant::now() + if read { READ_LEADER_WAIT } else { LEADER_WAIT };
    let mut last = "no leader is known yet".to_string();
    loop {
        match ctx.leader().await {
            Some(l) if l == ctx.id() && ctx.is_leader() => {
                return next.run(Request::from_parts(parts, Body::from(body))).await;
            }
            Some(l) if l != ctx.id() => match ctx.peer_of(l).await {
                Some(peer) => {
                    let call = ApiCall {
                        method: method.to_string(),
                        path: path_and_query.clone(),
                        body: body.to_vec(),
                        credential: credential.clone(),
                    };
                    match ctx.mesh.request(peer, WireRequest::Api(call)).await {
                        Ok(WireResponse::Api(reply)) if reply.status != 503 => {
                            let status = StatusCode::from_u16(reply.status)
                                .unwrap_or(StatusCode::BAD_GATEWAY);
                            return (
                                status,
                                [(axum::http::header::CONTENT_TYPE, "application/json")],
                                reply.body,
                            )
                                .into_response();
                        }
                        Ok(WireResponse::Api(reply)) => {
                            last = String::from_utf8_lossy(&reply.body).into_owned()
                        }
                        Ok(_) => last = "unexpected answer from the leader".into(),
                        Err(e) => last = format!("leader {}: {e}", node_id_str(l)),
                    }
                }
                None => last = format!("no mesh address for leader {}", node_id_str(l)),
            },
            _ => {}
        }
        if Instant::now() >= deadline {
            if read && ctx.is_member() {
                return next.run(Request::from_parts(parts, Body::from(body))).await;
            }
            return ApiErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no raft leader reachable from this node: {last}"),
            )
            .into_response();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
