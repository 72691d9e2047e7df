//! Deployment lifecycle routes: a job's version history and undo, and
//! draining nodes. Rollouts themselves are driven by the leader's
//! reconcile loop (`control/rollout.rs`); these only read or start them.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use skein_protocol::api::{DrainResponse, JobApplyResult, RevisionView, UndoRequest};

use super::{json_body, ApiErr, Ctx};
use crate::context::NodeCtx;
use crate::state::{node_id_str, NodeId};

/// `GET /v1/jobs/{name}/history`: kept versions, oldest first.
pub async fn history(
    State(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<Json<Vec<RevisionView>>, ApiErr> {
    ctx.state
        .read(|s| s.jobs.get(&name).map(crate::control::rollout::history))
        .await
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("job {name} not found")))
}

/// `POST /v1/jobs/{name}/undo`: a new version with a kept version's spec.
pub async fn undo(
    State(ctx): Ctx,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JobApplyResult>, ApiErr> {
    // An empty body means "the previous version".
    let req: UndoRequest = match &body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => UndoRequest::default(),
        _ => json_body(body)?,
    };
    Ok(Json(ctx.control.undo(&name, req.to_version).await?))
}

/// `POST /v1/nodes/{id}/drain`.
pub async fn drain(
    State(ctx): Ctx,
    Path(node): Path<String>,
) -> Result<Json<DrainResponse>, ApiErr> {
    set_drained(&ctx, &node, true).await.map(Json)
}

/// `POST /v1/nodes/{id}/undrain`.
pub async fn undrain(
    State(ctx): Ctx,
    Path(node): Path<String>,
) -> Result<Json<DrainResponse>, ApiErr> {
    set_drained(&ctx, &node, false).await.map(Json)
}

async fn set_drained(ctx: &NodeCtx, node: &str, drained: bool) -> Result<DrainResponse, ApiErr> {
    let (id, name) = resolve(ctx, node).await?;
    ctx.control.drain(id, drained).await?;
    let allocations = ctx.state.read(|s| s.allocs_on(id).count()).await;
    Ok(DrainResponse {
        node_id: node_id_str(id),
        node_name: name,
        drained,
        allocations: u32::try_from(allocations).unwrap_or(u32::MAX),
    })
}

/// A node by id (16 hex digits) or name, among the nodes this one knows;
/// a name two nodes share is refused (use the id).
pub async fn resolve(ctx: &NodeCtx, node: &str) -> Result<(NodeId, String), ApiErr> {
    let all = ctx.membership.all().await;
    if let Some(n) = all.iter().find(|n| node_id_str(n.id) == node) {
        return Ok((n.id, n.name.clone()));
    }
    let named: Vec<_> = all.iter().filter(|n| n.name == node).collect();
    match named.as_slice() {
        [n] => Ok((n.id, n.name.clone())),
        [] => Err(ApiErr::not_found(format!(
            "no node has the id or name {node:?} (see `skein node ls`)"
        ))),
        several => Err(ApiErr::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "{} nodes are named {node:?}; use the node id ({})",
                several.len(),
                several
                    .iter()
                    .map(|n| node_id_str(n.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Drained nodes as this node knows them: from Raft on members, else from
/// what the leader sent with this node's assignments.
pub async fn drained_nodes(ctx: &NodeCtx) -> BTreeSet<NodeId> {
    if ctx.is_member() {
        ctx.state.read(|s| s.drained.clone()).await
    } else {
        ctx.desired.read(|s| s.drained.clone()).await
    }
}
