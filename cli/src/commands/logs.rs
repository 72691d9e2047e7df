//! `skein logs ALLOC|JOB [-f] [--tail N] [--since 10m]`: a container's
//! output (or every replica's, prefixed), from whichever node runs it.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use skein_protocol::api::JobView;

use crate::client::Client;

/// Flags of `skein logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Allocation id (see `skein alloc ls`) or job name (all its replicas).
    target: String,
    /// Keep streaming new output.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (per replica).
    #[arg(long)]
    tail: Option<u32>,
    /// Only output newer than this, e.g. 30s, 10m, 2h.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Prefix each line with Docker's timestamp.
    #[arg(long)]
    timestamps: bool,
}

fn path(alloc: &str, args: &LogsArgs) -> String {
    let mut p = format!(
        "/v1/allocs/{alloc}/logs?follow={}&timestamps={}",
        args.follow, args.timestamps
    );
    if let Some(n) = args.tail {
        p.push_str(&format!("&tail={n}"));
    }
    if let Some(d) = args.since {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        p.push_str(&format!("&since={}", now.saturating_sub(d).as_secs()));
    }
    p
}

/// Copies one allocation's log stream to stdout, each line prefixed when
/// several replicas are interleaved.
async fn copy(client: &Client, alloc: &str, args: &LogsArgs, prefix: bool) -> Result<()> {
    let resp = client.send(Method::GET, &path(alloc, args), None).await?;
    let mut body = resp.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if !prefix {
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk)?;
            out.flush()?;
            continue;
        }
        pending.extend_from_slice(&chunk);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let mut out = std::io::stdout().lock();
            write!(out, "[{alloc}] ")?;
            out.write_all(&line)?;
            out.flush()?;
        }
    }
    if prefix && !pending.is_empty() {
        println!("[{alloc}] {}", String::from_utf8_lossy(&pending));
    }
    Ok(())
}

/// Runs `skein logs`.
pub async fn run(client: &Client, args: LogsArgs) -> Result<()> {
    let job: Option<JobView> = client.get(&format!("/v1/jobs/{}", args.target)).await.ok();
    let Some(job) = job else {
        return copy(client, &args.target, &args, false).await;
    };
    let streams = job
        .allocations
        .iter()
        .map(|a| copy(client, &a.id, &args, true));
    for r in futures::future::join_all(streams).await {
        if let Err(e) = r {
            eprintln!("warning: {e:#}");
        }
    }
    Ok(())
}
