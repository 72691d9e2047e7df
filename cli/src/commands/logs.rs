//! `skein logs ALLOC [-f]`: copies the container's output to stdout as it
//! arrives.

use anyhow::Result;
use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use std::io::Write;

use crate::client::Client;

/// Flags of `skein logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Allocation id (see `skein alloc ls`).
    alloc: String,
    /// Keep streaming new output.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<u32>,
}

/// Runs `skein logs`.
pub async fn run(client: &Client, args: LogsArgs) -> Result<()> {
    let mut path = format!("/v1/allocs/{}/logs?follow={}", args.alloc, args.follow);
    if let Some(n) = args.tail {
        path.push_str(&format!("&tail={n}"));
    }
    let resp = client.send(Method::GET, &path, None).await?;
    let mut body = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}
