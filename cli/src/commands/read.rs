//! Read commands: `job ls`, `job status`, `alloc ls`, `node ls`.

use anyhow::Result;
use skein_protocol::api::{AllocView, JobView, NodeView, ServiceView};

use crate::client::Client;
use crate::output::{self, Format};

/// `skein job ls`.
pub async fn job_ls(client: &Client, fmt: Format) -> Result<()> {
    let jobs: Vec<JobView> = client.get("/v1/jobs").await?;
    if fmt == Format::Json {
        return output::json(&jobs);
    }
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                j.spec.name.clone(),
                if j.stopped {
                    "stopped".into()
                } else {
                    job_state(j)
                },
                format!("{}/{}", j.running, j.desired),
                j.version.to_string(),
                j.spec.image.clone(),
            ]
        })
        .collect();
    output::table(&["name", "status", "running", "version", "image"], rows);
    Ok(())
}

fn job_state(j: &JobView) -> String {
    if j.running == j.desired {
        "running".into()
    } else if j
        .allocations
        .iter()
        .any(|a| a.status.state == skein_protocol::api::AllocState::Failed)
    {
        "degraded".into()
    } else {
        "pending".into()
    }
}

/// `skein job status NAME`.
pub async fn job_status(client: &Client, fmt: Format, name: &str) -> Result<()> {
    let job: JobView = client.get(&format!("/v1/jobs/{name}")).await?;
    if fmt == Format::Json {
        return output::json(&job);
    }
    let s = &job.spec;
    println!("job:       {}", s.name);
    println!(
        "status:    {}",
        if job.stopped {
            "stopped".into()
        } else {
            job_state(&job)
        }
    );
    println!(
        "replicas:  {} running / {} desired",
        job.running, job.desired
    );
    println!("version:   {}", job.version);
    println!("image:     {}", s.image);
    println!(
        "resources: cpu {} memory {} (limits: cpu {}, memory {})",
        output::cpu(s.resources.requests.cpu_millis),
        output::bytes(s.resources.requests.memory_bytes),
        s.resources.limit_cpu_millis.map_or("-".into(), output::cpu),
        s.resources
            .limit_memory_bytes
            .map_or("-".into(), output::bytes),
    );
    println!("restart:   {}", s.restart);
    println!();
    print_allocs(&job.allocations);
    Ok(())
}

/// `skein alloc ls`.
pub async fn alloc_ls(client: &Client, fmt: Format, job: Option<&str>) -> Result<()> {
    let path = match job {
        Some(j) => format!("/v1/allocs?job={j}"),
        None => "/v1/allocs".to_string(),
    };
    let allocs: Vec<AllocView> = client.get(&path).await?;
    if fmt == Format::Json {
        return output::json(&allocs);
    }
    print_allocs(&allocs);
    Ok(())
}

fn print_allocs(allocs: &[AllocView]) {
    let rows = allocs
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.job.clone(),
                a.node_name.clone(),
                a.status.state.to_string(),
                a.status
                    .exit_code
                    .map_or_else(|| "-".into(), |c| c.to_string()),
                a.status.restarts.to_string(),
                a.ports
                    .iter()
                    .map(|p| format!("{}->{}/{}", p.host_port, p.container_port, p.protocol))
                    .collect::<Vec<_>>()
                    .join(","),
                match (&a.status.pull, a.status.state) {
                    (Some(p), skein_protocol::api::AllocState::Pulling) => p.to_string(),
                    _ => a.status.message.clone().unwrap_or_default(),
                },
            ]
        })
        .collect();
    output::table(
        &[
            "id", "job", "node", "state", "exit", "restarts", "ports", "message",
        ],
        rows,
    );
}

/// `skein service ls` / `skein service status NAME`.
pub async fn service_ls(client: &Client, fmt: Format, name: Option<&str>) -> Result<()> {
    let services: Vec<ServiceView> = match name {
        Some(n) => vec![client.get(&format!("/v1/services/{n}")).await?],
        None => client.get("/v1/services").await?,
    };
    if fmt == Format::Json {
        return match name {
            Some(_) => output::json(&services[0]),
            None => output::json(&services),
        };
    }
    let rows = services
        .iter()
        .map(|s| {
            vec![
                format!("{}.service.skein", s.name),
                s.job.clone(),
                s.publish.map_or_else(|| "-".into(), |p| p.to_string()),
                s.endpoints.len().to_string(),
                s.endpoints
                    .iter()
                    .map(|e| format!("{} ({})", e.addr, e.node))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    output::table(&["name", "job", "publish", "healthy", "endpoints"], rows);
    Ok(())
}

/// `skein node ls`.
pub async fn node_ls(client: &Client, fmt: Format) -> Result<()> {
    let nodes: Vec<NodeView> = client.get("/v1/nodes").await?;
    if fmt == Format::Json {
        return output::json(&nodes);
    }
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.id.clone(),
                n.address.clone(),
                {
                    let mut health = n.health.to_string();
                    if n.drained {
                        health.push_str(",drained");
                    }
                    if n.storage.degraded {
                        health.push_str(",storage-degraded");
                    }
                    health
                },
                n.role.clone(),
                format!(
                    "{}/{}",
                    output::cpu(n.allocated.cpu_millis),
                    output::cpu(n.capacity.cpu_millis)
                ),
                format!(
                    "{}/{}",
                    output::bytes(n.allocated.memory_bytes),
                    output::bytes(n.capacity.memory_bytes)
                ),
                n.allocations.to_string(),
                n.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    output::table(
        &[
            "name", "id", "address", "health", "role", "cpu", "memory", "allocs", "labels",
        ],
        rows,
    );
    Ok(())
}
