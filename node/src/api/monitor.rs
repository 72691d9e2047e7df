//! Monitoring reads every node answers from its own view: the cluster
//! event journal (`GET /v1/events`, long-polled by `skein events -f` and
//! the dashboard) and live usage (`GET /v1/top`, from gossiped Docker
//! stats).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use skein_protocol::api::{ContainerUsageView, EventKind, EventsResponse, NodeUsageView, TopView};

use super::ApiErr;
use crate::context::NodeCtx;
use crate::events::{Filter, MAX_PAGE};
use crate::state::node_id_str;

/// Longest long-poll; clients call again.
const MAX_WAIT_SECS: u64 = 30;

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Cursor: only events with a higher index (`next` of the last answer).
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a new event when there is none (max 30).
    #[serde(default)]
    wait: u64,
    /// Most events in the answer (max 1000).
    limit: Option<usize>,
    /// Only the newest N matching events.
    tail: Option<usize>,
    /// Only events of this job.
    job: Option<String>,
    /// Only events about this node (name).
    node: Option<String>,
    /// Comma-separated kinds (`started,exited`).
    kind: Option<String>,
    /// Only events at or after this time (Unix ms).
    since: Option<u64>,
}

/// `GET /v1/events`.
pub async fn events(
    State(ctx): State<Arc<NodeCtx>>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsResponse>, ApiErr> {
    let Query(q) = q.map_err(|e| ApiErr::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let kinds = match &q.kind {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| k.trim().parse::<EventKind>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiErr::new(StatusCode::BAD_REQUEST, e))?,
    };
    let filter = Filter {
        job: q.job,
        node: q.node,
        kinds,
        since_ms: q.since,
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let mut answer = ctx.events.since(q.after, &filter, limit, q.tail);
    let wait = Duration::from_secs(q.wait.min(MAX_WAIT_SECS));
    if answer.events.is_empty() && !wait.is_zero() {
        // The cursor may have moved past non-matching events: wait from
        // there, and only as long as asked in total.
        let deadline = tokio::time::Instant::now() + wait;
        let mut after = answer.next;
        while answer.events.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            ctx.events.wait(after, left).await;
            answer = ctx.events.since(after, &filter, limit, q.tail);
            after = answer.next;
        }
    }
    Ok(Json(answer))
}

/// `GET /v1/top`.
pub async fn top(State(ctx): State<Arc<NodeCtx>>) -> Json<TopView> {
    let records = ctx.membership.all().await;
    let mut nodes = Vec::with_capacity(records.len());
    let mut containers = Vec::new();
    for n in &records {
        nodes.push(NodeUsageView {
            id: node_id_str(n.id),
            name: n.name.clone(),
            health: n.health,
            capacity: n.capacity,
            allocated: n.allocated,
            used_cpu_millis: n.usage.iter().map(|u| u.cpu_millis).sum(),
            used_memory_bytes: n.usage.iter().map(|u| u.memory_bytes).sum(),
            containers: u32::try_from(n.usage.len()).unwrap_or(u32::MAX),
        });
        containers.extend(n.usage.iter().map(|u| ContainerUsageView {
            node: n.name.clone(),
            usage: u.clone(),
        }));
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    containers.sort_by(|a, b| {
        b.usage
            .cpu_millis
            .cmp(&a.usage.cpu_millis)
            .then_with(|| b.usage.memory_bytes.cmp(&a.usage.memory_bytes))
            .then_with(|| a.usage.alloc.cmp(&b.usage.alloc))
    });
    Json(TopView { nodes, containers })
}
