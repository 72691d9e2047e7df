//! Everything that arrives over the mesh: gossiped statuses (decoded and
//! vetted by `crate::guard::guard_inbound`) and requests from peers, one
//! task per request, so a slow one never delays gossip or Raft heartbeats.
//! A request is decoded in its own task ([`rpc::decode_request`]): bytes
//! that do not decode get a typed [`PeerError`] answer, never silence.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;
use tracing::{debug, info};

use crate::api::forward::Forwarded;
use crate::assignments;
use crate::context::NodeCtx;
use crate::events::{Filter, MAX_PAGE};
use crate::membership::gossip;
use crate::rpc::{self, ApiCall, ApiReply, PeerError, PeerReply, PeerRequest, PeerResponse};
use crate::rpc::{RaftRequest, RaftResponse};
use crate::state::{node_id_str, NodeId};
use crate::wire::NodeStatus;
use skein_protocol::api::MAX_BODY_BYTES;

/// What `guard_inbound` lets through.
#[derive(Debug)]
pub enum Inbound {
    /// A peer's status, decoded and admitted.
    Status {
        /// The signing peer (the status claims to be its own).
        from: PeerId,
        /// The status.
        status: Box<NodeStatus>,
    },
    /// A request, still bytes: decoded in its own task.
    Request {
        /// The asking peer.
        from: PeerId,
        /// The request.
        bytes: Vec<u8>,
        /// Where the encoded answer goes.
        reply: oneshot::Sender<Vec<u8>>,
    },
}

/// Consumes what the guard passes until the mesh stops.
pub async fn run(ctx: Arc<NodeCtx>, router: Router, mut events: mpsc::Receiver<Inbound>) {
    while let Some(ev) = events.recv().await {
        match ev {
            Inbound::Status { from, status } => {
                if let Ok(peer) = status.peer_id.parse::<PeerId>() {
                    let addrs: Vec<Multiaddr> = status
                        .mesh_addrs
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    ctx.mesh.add_peer_addrs(peer, addrs);
                } else {
                    debug!(%from, "status without a valid peer id");
                }
                gossip::receive(*status, &ctx.membership, &ctx.board, &ctx.events).await;
            }
            Inbound::Request { from, bytes, reply } => {
                let ctx = ctx.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let answer = match rpc::decode_request(&bytes) {
                        Ok(request) => answer(&ctx, router, from, request).await,
                        Err(e) => {
                            debug!(peer = %from, error = %e, "undecodable request");
                            Err(e)
                        }
                    };
                    drop(bytes);
                    // The peer may have given up; nothing to do then.
                    let _ = reply.send(rpc::encode_reply(&answer));
                });
            }
        }
    }
}

async fn answer(ctx: &NodeCtx, router: Router, from: PeerId, request: PeerRequest) -> PeerReply {
    match request {
        PeerRequest::Raft { from: sender, rpc } => {
            Ok(PeerResponse::Raft(raft(ctx, from, sender, rpc).await?))
        }
        PeerRequest::Api(call) => api(router, call).await.map(PeerResponse::Api),
        PeerRequest::RegisterBootstrapToken { hash, node } => {
            leader_only(ctx).await?;
            match ctx.control.register_bootstrap_token(hash, &node).await {
                Ok(name) => Ok(PeerResponse::TokenRegistered(name)),
                Err(e) => Err(PeerError::from(&e)),
            }
        }
        PeerRequest::Assignments {
            node,
            known_version,
        } => {
            leader_only(ctx).await?;
            Ok(PeerResponse::Assignments(
                assignments::serve(&ctx.state, node, known_version).await,
            ))
        }
        PeerRequest::FetchImage { id, tags, from } => {
            let tags = tags
                .iter()
                .filter(|t| skein_protocol::image::ImageRef::parse(t).is_ok())
                .take(64)
                .cloned()
                .collect();
            Ok(PeerResponse::FetchImage(
                ctx.images.fetch_pushed(&id, tags, vec![from]).await,
            ))
        }
        PeerRequest::Events { after, limit } => {
            let limit = usize::try_from(limit).unwrap_or(MAX_PAGE).min(MAX_PAGE);
            let page = ctx
                .events
                .since(after, &Filter::default(), limit, Some(limit));
            Ok(PeerResponse::Events(
                page.events.into_iter().map(|e| e.event).collect(),
            ))
        }
        PeerRequest::TakeLeadership { from } => {
            let m = ctx.raft.metrics().borrow().clone();
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == ctx.id());
            // Only the leader may ask, or anyone while there is none (the
            // stopping leader repeats itself after stepping down).
            let from_leader = m.current_leader.is_none_or(|l| l == from);
            if !from_leader || !voter {
                return Err(PeerError::Refused {
                    reason: format!(
                        "{} is not this node's leader, or this node is not a voter",
                        node_id_str(from)
                    ),
                });
            }
            info!(leader = %node_id_str(from), "the leader is stopping: starting an election");
            ctx.raft
                .trigger()
                .elect()
                .await
                .map_err(|e| PeerError::Unavailable {
                    reason: format!("raft: {e}"),
                })?;
            Ok(PeerResponse::Electing)
        }
    }
}

/// Refuses (retryably) unless this node leads.
async fn leader_only(ctx: &NodeCtx) -> Result<(), PeerError> {
    if ctx.is_leader() {
        return Ok(());
    }
    let leader = ctx.leader().await.filter(|l| *l != ctx.id());
    Err(PeerError::NotLeader { leader })
}

/// Hands a Raft RPC to openraft, unless the sender is not a member (a
/// node removed from the cluster must not disrupt it with stale
/// elections) or claims a node id bound to another peer.
async fn raft(
    ctx: &NodeCtx,
    peer: PeerId,
    sender: NodeId,
    rpc: RaftRequest,
) -> Result<RaftResponse, PeerError> {
    if let Some(why) = crate::guard::raft_impostor(&ctx.raft, &ctx.membership, peer, sender).await {
        return Err(PeerError::Refused { reason: why });
    }
    let membership = ctx.raft.metrics().borrow().membership_config.clone();
    let known = membership.membership().nodes().count() > 0;
    if known && membership.membership().get_node(&sender).is_none() {
        debug!(%peer, sender = %crate::state::node_id_str(sender), "refusing raft rpc from a non-member");
        return Err(PeerError::NotMember { node: sender });
    }
    Ok(match rpc {
        RaftRequest::Append(r) => RaftResponse::Append(ctx.raft.append_entries(r).await),
        RaftRequest::Vote(r) => RaftResponse::Vote(ctx.raft.vote(r).await),
        RaftRequest::Snapshot(r) => RaftResponse::Snapshot(ctx.raft.install_snapshot(r).await),
    })
}

/// Serves an API call that entered at another node, through our own
/// router, which checks the credential it carries like that of a direct
/// call. A retryable refusal (not the leader, no quorum, draining) comes
/// back as the [`PeerError`] the handler attached to its response
/// (`crate::api::ApiErr::retry`), so the forwarding node retries by type.
async fn api(router: Router, call: ApiCall) -> Result<ApiReply, PeerError> {
    let req = Request::builder()
        .method(call.method.as_str())
        .uri(call.path.as_str())
        .extension(Forwarded {
            credential: call.credential,
            request_id: call.request_id,
        })
        .header("content-type", "application/json")
        .body(Body::from(call.body))
        .map_err(|e| PeerError::BadRequest {
            reason: format!("bad forwarded api call: {e}"),
        })?;
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if let Some(refusal) = resp.extensions().get::<PeerError>() {
        return Err(refusal.clone());
    }
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), MAX_BODY_BYTES * 16)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    Ok(ApiReply { status, body })
}
