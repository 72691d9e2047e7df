//! `GET /v1/allocs/{id}/logs?follow=&tail=&since=&timestamps=`: a
//! container's output, from whichever node runs it.
//!
//! The owning node streams straight from Docker. Any other node asks the
//! owner over the mesh; request-response carries no streams, so following
//! a remote container polls the owner once a second for lines newer than
//! the last timestamp it relayed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiErr, Ctx};
use crate::context::NodeCtx;
use crate::executor;
use crate::rpc::Credential;
use crate::state::NodeId;

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<u32>,
    /// Unix seconds: only output from then on.
    since: Option<i32>,
    #[serde(default)]
    timestamps: bool,
}

fn text(body: Body) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The handler.
pub async fn logs(
    State(ctx): Ctx,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiErr> {
    // The owner checks the caller's credential again.
    let credential = caller.map(|Extension(c)| c.0).unwrap_or_default();
    if ctx.desired.read(|s| s.allocs.contains_key(&id)).await {
        return local(&ctx, &id, &q).await;
    }
    // Every node knows, by gossip, which node reports each allocation.
    let owner = ctx
        .board
        .all()
        .await
        .into_iter()
        .find_map(|(node, m)| m.contains_key(&id).then_some(node));
    let Some(owner) = owner else {
        return Err(ApiErr::not_found(format!("allocation {id} not found")));
    };
    if !q.follow {
        let path = format!(
            "/v1/allocs/{id}/logs?timestamps={}{}{}",
            q.timestamps,
            q.tail.map(|t| format!("&tail={t}")).unwrap_or_default(),
            q.since.map(|s| format!("&since={s}")).unwrap_or_default()
        );
        let bytes = remote(&ctx, owner, &path, credential).await?;
        return Ok(text(Body::from(bytes)));
    }
    Ok(text(Body::from_stream(follow_remote(
        ctx.clone(),
        owner,
        id,
        q,
        credential,
    ))))
}

async fn local(ctx: &NodeCtx, id: &str, q: &LogQuery) -> Result<Response, ApiErr> {
    let mut stream = Box::pin(executor::logs(
        &*ctx.runtime,
        id,
        q.follow,
        q.tail,
        q.since,
        q.timestamps,
    ));
    // Probe once so a missing container is a clean 404, not a broken stream.
    let first = match stream.next().await {
        Some(Err(e)) => {
            return Err(ApiErr::not_found(format!(
                "no container for allocation {id} yet: {}",
                executor::docker_message(&e)
            )))
        }
        other => other,
    };
    Ok(text(Body::from_stream(
        futures::stream::iter(first).chain(stream),
    )))
}

/// One logs call to `owner` over the mesh.
async fn remote(
    ctx: &NodeCtx,
    owner: NodeId,
    path: &str,
    credential: Credential,
) -> Result<Vec<u8>, ApiErr> {
    match ctx.peer_get(owner, path, credential).await {
        Ok(r) if (200..300).contains(&r.status) => Ok(r.body),
        Ok(r) => Err(ApiErr::new(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY),
            serde_json::from_slice::<skein_protocol::api::ApiError>(&r.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&r.body).into_owned()),
        )),
        Err(e) => Err(ApiErr::new(StatusCode::BAD_GATEWAY, e)),
    }
}

/// Docker's timestamp prefix (RFC 3339, fixed width in practice) and the
/// rest of a line.
fn split_ts(line: &str) -> Option<(&str, &str)> {
    let (ts, rest) = line.split_once(' ')?;
    ts.ends_with('Z').then_some((ts, rest))
}

/// Polls the owner for new lines once a second, for as long as the client
/// listens.
fn follow_remote(
    ctx: std::sync::Arc<NodeCtx>,
    owner: NodeId,
    id: String,
    q: LogQuery,
    credential: Credential,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    async_stream(move |tx| async move {
        let mut last = String::new();
        let mut first = true;
        loop {
            let mut path = format!("/v1/allocs/{id}/logs?timestamps=true");
            if first {
                if let Some(t) = q.tail {
                    path.push_str(&format!("&tail={t}"));
                }
                if let Some(s) = q.since {
                    path.push_str(&format!("&since={s}"));
                }
            } else if let Some(ns) = crate::clock::parse_rfc3339_ns(&last) {
                // Whole seconds only: re-read the current second, drop repeats.
                path.push_str(&format!("&since={}", ns.div_euclid(1_000_000_000)));
            }
            first = false;
            let chunk = match remote(&ctx, owner, &path, credential.clone()).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.body.error))).await;
                    return;
                }
            };
            let mut out = String::new();
            for line in String::from_utf8_lossy(&chunk).lines() {
                let Some((ts, rest)) = split_ts(line) else {
                    continue;
                };
                if ts <= last.as_str() {
                    continue;
                }
                last = ts.to_string();
                out.push_str(if q.timestamps { line } else { rest });
                out.push('\n');
            }
            if !out.is_empty() && tx.send(Ok(out.into_bytes())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// A stream fed by a task through a channel; the task stops when the
/// client goes away (the receiver is dropped).
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_docker_timestamps() {
        assert_eq!(
            split_ts("2026-11-25T02:50:01.123456789Z hello world"),
            Some(("2026-11-25T02:50:01.123456789Z", "hello world"))
        );
    }
}
