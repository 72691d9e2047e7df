//! `skein plan -f FILE`: what `skein apply -f FILE` would change and where
//! the replicas would go, computed by the leader, without changing anything.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use reqwest::Method;
use skein_protocol::api::{ApplyRequest, ChangeKind, PlanResponse};

use crate::client::Client;
use crate::output::{self, Format};

/// Flags of `skein plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// YAML file, as for `skein apply` (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Replace an image before planning: NAME=IMAGE, as for `skein apply`.
    #[arg(long = "image", value_name = "NAME=IMAGE")]
    images: Vec<String>,
}

/// Runs `skein plan`.
pub async fn run(client: &Client, fmt: Format, args: PlanArgs) -> Result<()> {
    // A dry run needs no credentials: the file's pull secrets stay here.
    let jobs = super::apply::load(&args.file, &args.images)?.jobs;
    let plan: PlanResponse = client
        .call(
            Method::POST,
            "/v1/plan",
            &ApplyRequest {
                jobs,
                pull_secrets: vec![],
            },
        )
        .await?
        .json()
        .await?;
    if fmt == Format::Json {
        return output::json(&plan);
    }
    for j in &plan.jobs {
        let what = match j.change {
            ChangeKind::Created => "would be created",
            ChangeKind::Updated => "would be updated",
            ChangeKind::Unchanged => "is unchanged",
        };
        println!("job {} {what} (version {})", j.name, j.version);
    }
    let ports = |p: &[skein_protocol::api::PortMapping]| {
        p.iter()
            .map(|m| format!("{}->{}/{}", m.host_port, m.container_port, m.protocol))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut rows: Vec<Vec<String>> = plan
        .start
        .iter()
        .map(|a| {
            vec![
                "start".into(),
                a.job.clone(),
                a.node.clone(),
                ports(&a.ports),
            ]
        })
        .collect();
    rows.extend(plan.stop.iter().map(|a| {
        vec![
            "stop".into(),
            a.job.clone(),
            a.node.clone(),
            a.alloc.clone(),
        ]
    }));
    if rows.is_empty() {
        println!("nothing to do");
    } else {
        println!();
        output::table(&["action", "job", "node", "ports / allocation"], rows);
    }
    Ok(())
}
