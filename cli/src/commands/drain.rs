//! `skein node drain|undrain NODE`: stop placing work on a node and move
//! its replicas away (a few at a time, like a rolling update), or undo it.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reqwest::Method;
use skein_protocol::api::{AllocView, DrainResponse};

use crate::client::Client;
use crate::output::{self, Format};

/// Drains (`drained`) or undrains `node` (id or name); with `wait`, returns
/// only once no allocation is left on it (at most `timeout`).
pub async fn run(
    client: &Client,
    fmt: Format,
    node: &str,
    drained: bool,
    wait: bool,
    timeout: Duration,
) -> Result<()> {
    let verb = if drained { "drain" } else { "undrain" };
    let resp: DrainResponse = client
        .send(Method::POST, &format!("/v1/nodes/{node}/{verb}"), None)
        .await?
        .json()
        .await?;
    let mut left = resp.allocations;
    if drained && wait {
        let deadline = Instant::now() + timeout;
        loop {
            let allocs: Vec<AllocView> = client.get("/v1/allocs").await?;
            left = u32::try_from(allocs.iter().filter(|a| a.node_id == resp.node_id).count())
                .unwrap_or(u32::MAX);
            if left == 0 {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {} still holds {left} allocations after {}s (see `skein alloc ls`)",
                    resp.node_name,
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if fmt == Format::Json {
        return output::json(&DrainResponse {
            allocations: left,
            ..resp
        });
    }
    if !drained {
        println!("node {} undrained: it takes new work again", resp.node_name);
    } else if left == 0 {
        println!("node {} drained: it holds no allocations", resp.node_name);
    } else {
        println!(
            "node {} drained: its {left} allocations move to other nodes (see `skein alloc ls`)",
            resp.node_name
        );
    }
    Ok(())
}
