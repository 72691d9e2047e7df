//! Any node accepts any API call. Where it is served is the matched
//! route's [`Locality`] (`super::routes`): this node's own view, or the
//! leader, to which the call is forwarded over the mesh
//! ([`PeerRequest::Api`]); the leader serves it with its own router
//! (writes answer after the commit), so a client always reads its own
//! writes whichever node it talks to. When no leader can be reached, a
//! Raft member still answers reads from its own replica (stale but useful
//! on a cut-off edge site).
//!
//! **Request ids.** The node a call enters gives it one [`RequestId`]
//! (the client's `Idempotency-Key`, or random) and sends it with every
//! attempt; whoever serves the call proposes its writes under that id
//! (`crate::control::as_request`), and the state machine applies each
//! once. So retrying is decided by the typed answer: not the leader or
//! unavailable (nothing applied) → the next leader, same id; a transport
//! failure (maybe applied) → again, same id, which is now safe. A write
//! given up on after a transport failure is reported as of unknown
//! outcome (504), never as not applied.
//!
//! A forwarded call carries the credential it was let in with
//! ([`super::auth::Caller`]), and the leader checks it again with the
//! same policy: forwarding never vouches for anyone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use skein_protocol::api::{WriteOutcome, MAX_BODY_BYTES};

use super::auth::Caller;
use super::routes::{self, Locality};
use super::ApiErr;
use crate::context::NodeCtx;
use crate::control::as_request;
use crate::mesh::MeshError;
use crate::rpc::{self, ApiCall, CallError, Credential, PeerError, PeerRequest, PeerResponse};
use crate::state::{node_id_str, RequestId};

/// Marks a call that arrived over the mesh (already forwarded once): it is
/// served where it lands, never forwarded again (no loops during leader
/// changes), and judged by the credential it carries. A request extension,
/// not a header, so that no HTTP client can claim it.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    /// Who the call acts for, as the node it entered sent it.
    pub credential: Credential,
    /// The id the entry node gave the call.
    pub request_id: Option<RequestId>,
}

/// The header a client may name its call with, so that its own retries
/// (a new connection, another node) are applied once too.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How long a write waits for a reachable leader.
const LEADER_WAIT: Duration = Duration::from_secs(8);
/// How long a read waits before falling back to the local replica.
const READ_LEADER_WAIT: Duration = Duration::from_secs(2);
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How many times one call follows a refusing node's leader hint at once.
const MAX_HOPS: u32 = 3;

/// The id of a call entering here: its `Idempotency-Key`, else random.
fn request_id(headers: &HeaderMap) -> Result<RequestId, ApiErr> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(RequestId::random()),
        Some(v) => v
            .to_str()
            .map_err(|_| "Idempotency-Key must be ASCII".to_string())
            .and_then(RequestId::from_key)
            .map_err(|e| ApiErr::new(StatusCode::BAD_REQUEST, e)),
    }
}

/// What one attempt at the leader says about the next.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Final: answer the client with this.
    Done,
    /// Try again (the next leader, after a pause); `maybe_applied` when
    /// the attempt may have taken effect (a transport failure).
    Retry {
        /// The attempt may have been applied.
        maybe_applied: bool,
    },
}

/// Retry classification by the error's type (not by an HTTP status).
fn verdict(result: &Result<PeerResponse, CallError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Done,
        Err(e) if e.is_retryable() => Verdict::Retry {
            // Not delivered (no connection) is known not applied.
            maybe_applied: matches!(
                e,
                CallError::Transport(
                    MeshError::Timeout | MeshError::Remote(_) | MeshError::ConnectionLost(_)
                )
            ),
        },
        Err(_) => Verdict::Done,
    }
}

/// The middleware.
pub async fn forward(State(ctx): State<Arc<NodeCtx>>, req: Request, next: Next) -> Response {
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let locality = routes::locality_of(req.method(), pattern.as_deref());
    let forwarded = req.extensions().get::<Forwarded>().cloned();
    let id = match &forwarded {
        Some(f) => f.request_id.unwrap_or_else(RequestId::random),
        None => match request_id(req.headers()) {
            Ok(id) => id,
            Err(e) => return e.into_response(),
        },
    };
    if forwarded.is_some() || locality == Locality::Local || ctx.is_leader() {
        return as_request(id, next.run(req)).await;
    }
    let read = locality == Locality::LeaderOrReplica;
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.to_string());
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
    let call = PeerRequest::Api(ApiCall {
        method: method.to_string(),
        path: path_and_query,
        body: body.to_vec(),
        credential,
        request_id: Some(id),
    });
    let deadline = Instant::now() + if read { READ_LEADER_WAIT } else { LEADER_WAIT };
    let mut last = "no leader is known yet".to_string();
    let mut maybe_applied = false;
    // The leader a refusing node named: its Raft knows before our gossip
    // does, so the next attempt goes there at once.
    // Followed without a pause a few times per call only: two nodes that
    // name each other must not make this spin.
    let mut hint: Option<u64> = None;
    let mut hops = 0u32;
    loop {
        let target = match hint.take() {
            Some(h) => Some(h),
            None => ctx.leader().await,
        };
        let mut hinted = false;
        match target {
            Some(l) if l == ctx.id() && ctx.is_leader() => {
                let req = Request::from_parts(parts, Body::from(body));
                return as_request(id, next.run(req)).await;
            }
            Some(l) if l != ctx.id() => match ctx.peer_of(l).await {
                Some(peer) => {
                    let result = rpc::call(&ctx.mesh, peer, &call).await;
                    match verdict(&result) {
                        Verdict::Done => return answer(l, result),
                        Verdict::Retry { maybe_applied: m } => {
                            maybe_applied |= m && !read;
                            if let Err(CallError::Peer(PeerError::NotLeader {
                                leader: Some(next),
                            })) = &result
                            {
                                if *next != l && *next != ctx.id() && hops < MAX_HOPS {
                                    hops += 1;
                                    hint = Some(*next);
                                    hinted = true;
                                }
                            }
                            if let Err(e) = result {
                                last = format!("leader {}: {e}", node_id_str(l));
                            }
                        }
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
            return given_up(&last, maybe_applied).into_response();
        }
        if !hinted {
            // Raft names a new leader the moment it is elected: go there
            // then rather than at the end of a fixed pause.
            let mut metrics = ctx.raft.metrics();
            let known = metrics.borrow().current_leader;
            let elected =
                metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != known);
            let _ = tokio::time::timeout(RETRY_PAUSE, elected).await;
        }
    }
}

/// The client's answer from a final attempt at `leader`.
fn answer(leader: u64, result: Result<PeerResponse, CallError>) -> Response {
    match result {
        Ok(PeerResponse::Api(reply)) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                reply.body,
            )
                .into_response()
        }
        Ok(other) => ApiErr::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "leader {}: {}",
                node_id_str(leader),
                rpc::unexpected("api", &other)
            ),
        )
        .into_response(),
        Err(e) => ApiErr::new(
            StatusCode::BAD_GATEWAY,
            format!("leader {}: {e}", node_id_str(leader)),
        )
        .into_response(),
    }
}

/// The answer when no attempt got through in time.
fn given_up(last: &str, maybe_applied: bool) -> ApiErr {
    if maybe_applied {
        let mut err = ApiErr::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the leader did not answer ({last}); the write may still take effect: \
                 check the state before retrying"
            ),
        );
        err.body.outcome = Some(WriteOutcome::Unknown);
        return err;
    }
    let mut err = ApiErr::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("no raft leader reachable from this node: {last}"),
    );
    err.body.outcome = Some(WriteOutcome::NotApplied);
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::ApiReply;

    #[test]
    fn retries_follow_the_error_type() {
        let ok = Ok(PeerResponse::Api(ApiReply {
            status: 503,
            body: vec![],
        }));
        // Even a 503 the leader chose to send is its answer: retry is
        // decided by typed refusals only.
        assert_eq!(verdict(&ok), Verdict::Done);
        let not_leader = Err(CallError::Peer(PeerError::NotLeader { leader: None }));
        assert_eq!(
            verdict(&not_leader),
            Verdict::Retry {
                maybe_applied: false
            }
        );
        let busy = Err(CallError::Peer(PeerError::Unavailable {
            reason: "draining".into(),
        }));
        assert_eq!(
            verdict(&busy),
            Verdict::Retry {
                maybe_applied: false
            }
        );
        let lost = Err(CallError::Transport(MeshError::Timeout));
        assert_eq!(
            verdict(&lost),
            Verdict::Retry {
                maybe_applied: true
            }
        );
        let unreachable = Err(CallError::Transport(MeshError::Unreachable(
            "no route".into(),
        )));
        assert_eq!(
            verdict(&unreachable),
            Verdict::Retry {
                maybe_applied: false
            }
        );
        let refused = Err(CallError::Peer(PeerError::Refused {
            reason: "no".into(),
        }));
        assert_eq!(verdict(&refused), Verdict::Done);
        let newer = Err(CallError::Peer(PeerError::Unsupported { what: "x".into() }));
        assert_eq!(verdict(&newer), Verdict::Done);
    }

    #[test]
    fn a_write_given_up_after_a_lost_answer_is_of_unknown_outcome() {
        let e = given_up("timed out", true);
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e.body.outcome, Some(WriteOutcome::Unknown));
        let e = given_up("no leader", false);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.body.outcome, Some(WriteOutcome::NotApplied));
        assert!(e.body.error.starts_with("no raft leader reachable"));
    }

    #[test]
    fn idempotency_keys_are_validated() {
        let mut h = HeaderMap::new();
        assert!(request_id(&h).is_ok());
        h.insert(IDEMPOTENCY_KEY, "ci-run-7".parse().unwrap());
        assert_eq!(
            request_id(&h).unwrap(),
            RequestId::from_key("ci-run-7").unwrap()
        );
        h.insert(IDEMPOTENCY_KEY, "no spaces".parse().unwrap());
        assert_eq!(request_id(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
