//! The HTTP/JSON API every node serves (axum). Handlers validate input,
//! call [`Control`] for writes (which return only after the Raft commit)
//! and read the local state for queries. Routes are listed in
//! [`skein_protocol::api`].

pub mod auth;
pub mod dashboard;
pub mod drain;
pub mod error;
pub mod forward;
pub mod guard;
pub mod images;
pub mod logs;
pub mod monitor;
pub mod plan;
pub mod rollout;
pub mod routes;
pub mod tokens;
pub mod views;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use skein_protocol::api::{
    AllocView, ApplyRequest, ApplyResponse, JobView, NodeView, ScaleRequest, ServiceView,
    StatusView, MAX_BODY_BYTES,
};
use skein_protocol::spec::SpecError;

use crate::context::NodeCtx;
use crate::state::node_id_str;
pub use error::ApiErr;

type Ctx = State<Arc<NodeCtx>>;

/// The API router. Layers, outermost first: JSON error bodies, refusing
/// writes while the node shuts down, the body limit, the cross-site guard
/// (`Origin`, JSON content type), the token check, forwarding to the
/// leader.
pub fn router(ctx: Arc<NodeCtx>, auth: Arc<auth::Auth>, drain: drain::Drain) -> Router {
    routes::router()
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            forward::forward,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, auth::check))
        .layer(axum::middleware::from_fn(guard::check))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(drain, drain::check))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(ctx)
}

/// Parses a JSON body, turning size and syntax problems into [`ApiErr`].
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiErr> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than the {MAX_BODY_BYTES} byte limit")
        } else {
            r.body_text()
        };
        ApiErr::new(status, msg)
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

async fn status(State(ctx): Ctx) -> Json<StatusView> {
    let m = ctx.raft.metrics().borrow().clone();
    let leader = ctx.leader().await;
    Json(StatusView {
        node_id: node_id_str(ctx.local.id),
        node_name: ctx.local.name.clone(),
        leader_id: leader.map(node_id_str),
        term: m.current_term,
        last_applied: m.last_applied.map_or(0, |l| l.index),
        version: env!("CARGO_PKG_VERSION").to_string(),
        storage: ctx.storage.health().view(),
        schema: skein_protocol::codec::Schema::CURRENT.to_string(),
        cluster_schema: crate::control::schema::of_cluster(&ctx.state, &ctx.desired)
            .await
            .to_string(),
    })
}

async fn nodes(State(ctx): Ctx) -> Json<Vec<NodeView>> {
    let leader = ctx.leader().await;
    let all = ctx.membership.all().await;
    // Members know the voter set from Raft; others from the leader's gossip.
    let voters: Vec<u64> = if ctx.is_member() {
        let m = ctx.raft.metrics().borrow().membership_config.clone();
        m.membership().voter_ids().collect()
    } else {
        all.iter()
            .find(|n| Some(n.id) == leader)
            .map(|n| n.raft.voters.clone())
            .unwrap_or_default()
    };
    let drained = rollout::drained_nodes(&ctx).await;
    let views = all
        .iter()
        .map(|n| {
            let role = if leader == Some(n.id) {
                "leader"
            } else if voters.contains(&n.id) {
                "voter"
            } else {
                "worker"
            };
            let mut v = views::node_view(n, role);
            v.drained = drained.contains(&n.id);
            v
        })
        .collect();
    Json(views)
}

async fn jobs(State(ctx): Ctx) -> Json<Vec<JobView>> {
    let state = ctx.state.snapshot().await;
    let nodes = ctx.membership.all().await;
    let statuses = ctx.board.all().await;
    Json(
        state
            .jobs
            .values()
            .map(|j| views::job_view(j, &state, &nodes, &statuses))
            .collect(),
    )
}

async fn job(State(ctx): Ctx, Path(name): Path<String>) -> Result<Json<JobView>, ApiErr> {
    let state = ctx.state.snapshot().await;
    let job = state
        .jobs
        .get(&name)
        .ok_or_else(|| ApiErr::not_found(format!("job {name} not found")))?;
    let nodes = ctx.membership.all().await;
    let statuses = ctx.board.all().await;
    Ok(Json(views::job_view(job, &state, &nodes, &statuses)))
}

async fn apply(
    State(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplyResponse>, ApiErr> {
    let asked = std::time::Instant::now();
    let req: ApplyRequest = json_body(body)?;
    validate_request(&req)?;
    let secrets = images::seal_pull_secrets(&ctx, &req.pull_secrets)?;
    // Images built a moment ago must count: refresh our own record first
    // (or share a read that started after this call arrived).
    ctx.refresh_self_since(asked).await;
    Ok(Json(ctx.control.apply(req.jobs, secrets).await?))
}

/// Checks an apply (or plan) request: at least one job, every spec valid,
/// no name twice. Problems carry `jobs[i].` paths.
fn validate_request(req: &ApplyRequest) -> Result<(), ApiErr> {
    if req.jobs.is_empty() && req.pull_secrets.is_empty() {
        return Err(ApiErr::new(StatusCode::BAD_REQUEST, "no jobs in request"));
    }
    let mut details = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, spec) in req.jobs.iter().enumerate() {
        if let Err(errs) = spec.validate() {
            details.extend(errs.into_iter().map(|e| SpecError {
                field: format!("jobs[{i}].{}", e.field),
                message: e.message,
            }));
        }
        if !names.insert(spec.name.as_str()) {
            details.push(SpecError {
                field: format!("jobs[{i}].name"),
                message: format!("job {} appears twice in one request", spec.name),
            });
        }
    }
    details.extend(images::check_pull_secrets(&req.pull_secrets));
    if !details.is_empty() {
        return Err(ApiErr::invalid("invalid job spec", details));
    }
    let too_large: Vec<SpecError> = req
        .jobs
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let message = crate::control::check_spec_size(spec).err()?;
            Some(SpecError {
                field: format!("jobs[{i}]"),
                message,
            })
        })
        .collect();
    if !too_large.is_empty() {
        let mut err = ApiErr::invalid(
            format!(
                "job spec too large (at most {} bytes encoded per job)",
                skein_protocol::api::MAX_JOB_SPEC_BYTES
            ),
            too_large,
        );
        err.status = StatusCode::PAYLOAD_TOO_LARGE;
        err.body.outcome = Some(skein_protocol::api::WriteOutcome::NotApplied);
        return Err(err);
    }
    Ok(())
}

async fn stop_job(State(ctx): Ctx, Path(name): Path<String>) -> Result<StatusCode, ApiErr> {
    ctx.control.stop(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/jobs/NAME/delete`: a route of its own rather than a flag on
/// `DELETE` (stop), so that an older node answers 404/405 instead of
/// stopping a job the client meant to delete.
async fn delete_job(State(ctx): Ctx, Path(name): Path<String>) -> Result<StatusCode, ApiErr> {
    ctx.control.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn scale(
    State(ctx): Ctx,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiErr> {
    let req: ScaleRequest = json_body(body)?;
    if req.replicas > skein_protocol::spec::MAX_REPLICAS {
        return Err(ApiErr::invalid(
            "invalid replica count",
            vec![SpecError {
                field: "replicas".into(),
                message: format!(
                    "at most {} replicas are allowed",
                    skein_protocol::spec::MAX_REPLICAS
                ),
            }],
        ));
    }
    ctx.control.scale(&name, req.replicas).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn restart_job(
    State(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<Json<Vec<String>>, ApiErr> {
    Ok(Json(ctx.control.restart_job(&name).await?))
}

async fn metrics(State(ctx): Ctx) -> Result<Response, ApiErr> {
    let text = crate::metrics::render(&ctx.metrics_sources())
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

async fn services(State(ctx): Ctx) -> Json<Vec<ServiceView>> {
    Json(crate::services::views(&ctx.membership.all().await))
}

async fn service(State(ctx): Ctx, Path(name): Path<String>) -> Result<Json<ServiceView>, ApiErr> {
    crate::services::views(&ctx.membership.all().await)
        .into_iter()
        .find(|s| s.name == name)
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("service {name} not found")))
}

#[derive(Deserialize)]
struct AllocQuery {
    job: Option<String>,
}

async fn allocs(State(ctx): Ctx, Query(q): Query<AllocQuery>) -> Json<Vec<AllocView>> {
    let state = ctx.state.snapshot().await;
    let nodes = ctx.membership.all().await;
    let statuses = ctx.board.all().await;
    let mut v: Vec<AllocView> = state
        .allocs
        .values()
        .filter(|a| q.job.as_ref().is_none_or(|j| &a.job == j))
        .map(|a| views::alloc_view(a, &nodes, &statuses))
        .collect();
    v.sort_by(|a, b| (&a.job, a.index).cmp(&(&b.job, b.index)));
    Json(v)
}

async fn restart_alloc(State(ctx): Ctx, Path(id): Path<String>) -> Result<StatusCode, ApiErr> {
    if !ctx.state.read(|s| s.allocs.contains_key(&id)).await {
        return Err(ApiErr::not_found(format!("allocation {id} not found")));
    }
    ctx.control.restart_alloc(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
