//! `POST /v1/plan`: the dry run of an apply. The leader validates the
//! specs and runs the same planner an apply runs, on its current state and
//! nodes, and returns the placements instead of committing them.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use skein_protocol::api::{ApplyRequest, PlanResponse, PlannedAlloc};

use super::views::node_name;
use super::{json_body, validate_request, ApiErr, Ctx};
use crate::control::planner;
use crate::membership::NodeRecord;
use crate::state::Allocation;

fn view(a: &Allocation, nodes: &[NodeRecord]) -> PlannedAlloc {
    PlannedAlloc {
        alloc: a.id.clone(),
        job: a.job.clone(),
        node: node_name(nodes, a.node),
        ports: a.ports.clone(),
    }
}

/// The handler.
pub async fn plan(
    State(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PlanResponse>, ApiErr> {
    let req: ApplyRequest = json_body(body)?;
    validate_request(&req)?;
    if !ctx.is_leader() {
        return Err(ApiErr::unavailable(
            "plans are computed by the leader; retry",
            crate::rpc::PeerError::NotLeader { leader: None },
        ));
    }
    ctx.refresh_self().await;
    let state = ctx.state.snapshot().await;
    let candidates = ctx.membership.candidates(&state).await;
    let alive = ctx.membership.alive_ids().await;
    crate::control::publish::check(&req.jobs, &state, &ctx.control.publish_rules().await)
        .map_err(|e| ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let (plan, jobs) = planner::apply(&state, &candidates, &alive, &req.jobs, rand::random())
        .map_err(|e| ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let nodes = ctx.membership.all().await;
    Ok(Json(PlanResponse {
        jobs,
        start: plan.add_allocs.iter().map(|a| view(a, &nodes)).collect(),
        stop: plan
            .remove_allocs
            .iter()
            .filter_map(|id| state.allocs.get(id))
            .map(|a| view(a, &nodes))
            .collect(),
    }))
}
