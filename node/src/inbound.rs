//! Everything that arrives over the mesh: gossiped statuses and requests
//! from peers (Raft RPCs, forwarded API calls, assignment long-polls).
//! Each request runs in its own task, so a slow one never delays gossip or
//! Raft heartbeats.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::api::forward::Forwarded;
use crate::assignments;
use crate::context::NodeCtx;
use crate::membership::gossip;
use crate::mesh::wire::{ApiCall, ApiReply, RaftRequest, RaftResponse, WireRequest, WireResponse};
use crate::mesh::MeshEvent;
use crate::state::{node_id_str, NodeId};
use skein_protocol::api::MAX_BODY_BYTES;

/// Consumes mesh events until the mesh stops.
pub async fn run(ctx: Arc<NodeCtx>, router: Router, mut events: mpsc::Receiver<MeshEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            MeshEvent::Status { from, status } => {
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
            MeshEvent::Request {
                from,
                request,
                reply,
            } => {
                let ctx = ctx.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let answer = answer(&ctx, router, from, *request).await;
                    // The peer may have given up; nothing to do then.
                    let _ = reply.send(answer);
                });
            }
            MeshEvent::PeerConnected(p) => debug!(peer = %p, "peer connected"),
            MeshEvent::PeerDisconnected(p) => debug!(peer = %p, "peer disconnected"),
        }
    }
}

async fn answer(ctx: &NodeCtx, router: Router, from: PeerId, request: WireRequest) -> WireResponse {
    match request {
        WireRequest::Raft { from: sender, rpc } => {
            WireResponse::Raft(raft(ctx, from, sender, rpc).await)
        }
        WireRequest::Api(call) => WireResponse::Api(api(router, call).await),
        WireRequest::RegisterBootstrapToken { hash, node } => {
            if !ctx.is_leader() {
                return WireResponse::Error("not the leader".into());
            }
            match ctx.control.register_bootstrap_token(hash, &node).await {
                Ok(name) => WireResponse::TokenRegistered(name),
                Err(e) => WireResponse::Error(e.to_string()),
            }
        }
        WireRequest::Assignments {
            node,
            known_version,
        } => {
            if !ctx.is_leader() {
                return WireResponse::Error("not the leader".into());
            }
            WireResponse::Assignments(assignments::serve(&ctx.state, node, known_version).await)
        }
        WireRequest::FetchImage { id, tags, from } => {
            let tags = tags
                .iter()
                .filter(|t| skein_protocol::image::ImageRef::parse(t).is_ok())
                .take(64)
                .cloned()
                .collect();
            WireResponse::FetchImage(ctx.images.fetch_pushed(&id, tags, vec![from]).await)
        }
    }
}

/// Hands a Raft RPC to openraft, unless the sender is not a member: a node
/// removed from the cluster must not disrupt it with stale elections.
async fn raft(ctx: &NodeCtx, peer: PeerId, sender: NodeId, rpc: RaftRequest) -> RaftResponse {
    let membership = ctx.raft.metrics().borrow().membership_config.clone();
    let known = membership.membership().nodes().count() > 0;
    let refuse = known && membership.membership().get_node(&sender).is_none();
    if refuse {
        debug!(%peer, sender = %node_id_str(sender), "refusing raft rpc from a non-member");
        let e = format!("{} is not a member of this raft group", node_id_str(sender));
        return match rpc {
            RaftRequest::Append(_) => RaftResponse::Append(Err(e)),
            RaftRequest::Vote(_) => RaftResponse::Vote(Err(e)),
            RaftRequest::Snapshot(_) => RaftResponse::Snapshot(Err(e)),
        };
    }
    match rpc {
        RaftRequest::Append(r) => {
            RaftResponse::Append(ctx.raft.append_entries(r).await.map_err(|e| e.to_string()))
        }
        RaftRequest::Vote(r) => {
            RaftResponse::Vote(ctx.raft.vote(r).await.map_err(|e| e.to_string()))
        }
        RaftRequest::Snapshot(r) => RaftResponse::Snapshot(
            ctx.raft
                .install_snapshot(r)
                .await
                .map_err(|e| e.to_string()),
        ),
    }
}

/// Serves an API call forwarded by another node, through our own router,
/// which checks the credential it carries like that of a direct call.
async fn api(router: Router, call: ApiCall) -> ApiReply {
    let req = Request::builder()
        .method(call.method.as_str())
        .uri(call.path.as_str())
        .extension(Forwarded {
            credential: call.credential,
        })
        .header("content-type", "application/json")
        .body(Body::from(call.body));
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "bad forwarded api call");
            return ApiReply {
                status: 400,
                body: format!("{{\"error\":\"bad forwarded request: {e}\"}}").into_bytes(),
            };
        }
    };
    let resp = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), MAX_BODY_BYTES * 16)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    ApiReply { status, body }
}
