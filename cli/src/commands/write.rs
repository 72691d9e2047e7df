//! Mutating commands besides apply: `job stop`, `job delete`, `scale`,
//! `restart`. Each returns once the change is committed by the cluster.

use anyhow::{anyhow, Result};
use reqwest::Method;
use serde_json::json;
use skein_protocol::api::{JobView, ScaleRequest};

use crate::client::Client;
use crate::output::{self, Format};

/// `skein job stop NAME`.
pub async fn stop(client: &Client, fmt: Format, name: &str) -> Result<()> {
    client
        .send(Method::DELETE, &format!("/v1/jobs/{name}"), None)
        .await?;
    if fmt == Format::Json {
        return output::json(&json!({ "job": name, "stopped": true }));
    }
    println!("job {name} stopped");
    Ok(())
}

/// `skein job delete NAME`.
pub async fn delete(client: &Client, fmt: Format, name: &str) -> Result<()> {
    client
        .send(Method::POST, &format!("/v1/jobs/{name}/delete"), None)
        .await?;
    if fmt == Format::Json {
        return output::json(&json!({ "job": name, "deleted": true }));
    }
    println!("job {name} deleted");
    Ok(())
}

/// `skein scale JOB N`.
pub async fn scale(client: &Client, fmt: Format, job: &str, replicas: u32) -> Result<()> {
    client
        .call(
            Method::POST,
            &format!("/v1/jobs/{job}/scale"),
            &ScaleRequest { replicas },
        )
        .await?;
    if fmt == Format::Json {
        return output::json(&json!({ "job": job, "replicas": replicas }));
    }
    println!("job {job} scaled to {replicas} replicas");
    Ok(())
}

/// `skein restart ALLOC|JOB`: a job name wins over an allocation id.
pub async fn restart(client: &Client, fmt: Format, target: &str) -> Result<()> {
    let jobs: Vec<JobView> = client.get("/v1/jobs").await?;
    let restarted: Vec<String> = if jobs.iter().any(|j| j.spec.name == target) {
        client
            .send(Method::POST, &format!("/v1/jobs/{target}/restart"), None)
            .await?
            .json()
            .await?
    } else if jobs
        .iter()
        .flat_map(|j| &j.allocations)
        .any(|a| a.id == target)
    {
        client
            .send(Method::POST, &format!("/v1/allocs/{target}/restart"), None)
            .await?;
        vec![target.to_string()]
    } else {
        return Err(anyhow!("no job or allocation named {target}"));
    };
    if fmt == Format::Json {
        return output::json(&json!({ "restarted": restarted }));
    }
    for id in &restarted {
        println!("restarting {id}");
    }
    Ok(())
}
