//! `skein apply -f FILE`: parses and validates the file locally (errors
//! point at file:line:column and nothing is sent), submits every job in
//! one request, then follows the replicas until they run or fail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::Method;
use serde_json::json;
use skein_protocol::api::{AllocState, ApplyRequest, ApplyResponse, ChangeKind, JobView};
use skein_protocol::manifest::parse_manifest;
use skein_protocol::JobSpec;

use crate::client::Client;
use crate::output::{self, Format};

/// Flags of `skein apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// YAML file: native Skein jobs and/or Kubernetes `apps/v1` Deployments,
    /// several documents separated by `---`. `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,

    /// Replace an image before applying, like `kubectl set image`:
    /// NAME=IMAGE, where NAME is the job (Deployment/container) name or the
    /// image written in the file. Repeatable.
    #[arg(long = "image", value_name = "NAME=IMAGE")]
    images: Vec<String>,

    /// Return once the change is committed, without following replicas.
    #[arg(short, long)]
    detach: bool,

    /// Seconds to wait for all replicas to run before giving up.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// Reads, parses and validates the file, with `--image` overrides applied:
/// the request `apply` (and `plan`) send.
pub fn load(file: &std::path::Path, images: &[String]) -> Result<ApplyRequest> {
    let (name, text) = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        ("<stdin>".to_string(), s)
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (file.display().to_string(), text)
    };
    let mut m = parse_manifest(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    override_images(&mut m.jobs, images)?;
    Ok(ApplyRequest {
        jobs: m.jobs,
        pull_secrets: m.pull_secrets,
    })
}

/// Runs `skein apply`.
pub async fn run(client: &Client, fmt: Format, args: ApplyArgs) -> Result<ExitCode> {
    let req = load(&args.file, &args.images)?;
    if fmt == Format::Table {
        for s in &req.pull_secrets {
            println!(
                "image pull secret {} ({} registries)",
                s.name,
                s.registries.len()
            );
        }
    }

    let resp: ApplyResponse = client
        .call(Method::POST, "/v1/jobs", &req)
        .await?
        .json()
        .await?;
    if fmt == Format::Table {
        for j in &resp.jobs {
            let what = match j.change {
                ChangeKind::Created => "created",
                ChangeKind::Updated => "updated",
                ChangeKind::Unchanged => "unchanged",
            };
            println!(
                "job {} {what} (version {}, {} replicas)",
                j.name,
                j.version,
                j.allocations.len()
            );
        }
    }
    if args.detach {
        if fmt == Format::Json {
            output::json(&json!({ "applied": resp }))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (ok, views) = follow(client, fmt, &resp, Duration::from_secs(args.timeout)).await?;
    if fmt == Format::Json {
        output::json(&json!({ "applied": resp, "jobs": views, "ok": ok }))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Applies `--image NAME=IMAGE` overrides; an override that matches no job
/// is an error, so a typo does not silently deploy the wrong image.
fn override_images(jobs: &mut [JobSpec], overrides: &[String]) -> Result<()> {
    for o in overrides {
        let Some((name, image)) = o.split_once('=') else {
            bail!("--image {o:?}: expected NAME=IMAGE, e.g. my-nginx=skein-demo/web:latest");
        };
        let bare = |i: &str| i.strip_suffix(":latest").unwrap_or(i).to_string();
        let mut hit = false;
        for j in jobs.iter_mut() {
            if j.name == name || bare(&j.image) == bare(name) {
                j.image = image.to_string();
                hit = true;
            }
        }
        if !hit {
            bail!("--image {o:?}: no job or image named {name} in the file");
        }
    }
    Ok(())
}

/// Polls the jobs until every replica of the applied version runs, one
/// fails, or `timeout` passes; prints each replica's state changes.
async fn follow(
    client: &Client,
    fmt: Format,
    resp: &ApplyResponse,
    timeout: Duration,
) -> Result<(bool, Vec<JobView>)> {
    let deadline = Instant::now() + timeout;
    // A container that dies right after starting looks "running" for a
    // moment: only report success once everything stayed up this long.
    let settle = Duration::from_millis(1500);
    let mut all_running_since: Option<Instant> = None;
    // Per replica: the last line printed and when (pull progress is
    // printed at most once a second).
    let mut seen: HashMap<String, (AllocState, String, Instant)> = HashMap::new();
    loop {
        let mut views = Vec::new();
        let mut all_done = true;
        let mut failure = None;
        for r in &resp.jobs {
            let v: JobView = client.get(&format!("/v1/jobs/{}", r.name)).await?;
            if let Some(why) = rolled_back(&v, r.version) {
                failure.get_or_insert(why);
            }
            let current: Vec<_> = v
                .allocations
                .iter()
                .filter(|a| a.job_version == v.version)
                .collect();
            let running = current
                .iter()
                .filter(|a| a.status.state == AllocState::Running)
                .count();
            for a in &current {
                let ports: Vec<String> = a
                    .ports
                    .iter()
                    .map(|p| format!("{}->{}/{}", p.host_port, p.container_port, p.protocol))
                    .collect();
                let detail = match (&a.status.pull, &a.status.message, a.status.exit_code) {
                    (Some(p), _, _) if a.status.state == AllocState::Pulling => p.to_string(),
                    (_, Some(m), _) => m.clone(),
                    (_, None, Some(c)) => format!("exit code {c}"),
                    (_, None, None) => ports.join(","),
                };
                let line = format!(
                    "  {:<28} on {:<16} {:<10} {detail}",
                    a.id, a.node_name, a.status.state
                );
                let due = match seen.get(&a.id) {
                    None => true,
                    Some((_, last, _)) if last == &line => false,
                    Some((state, _, at)) => {
                        *state != a.status.state || at.elapsed() >= Duration::from_secs(1)
                    }
                };
                if due {
                    if fmt == Format::Table {
                        println!("{line}");
                    }
                    seen.insert(a.id.clone(), (a.status.state, line, Instant::now()));
                }
                let crash_looping = a.status.state == AllocState::Restarting;
                if a.status.state == AllocState::Failed || crash_looping {
                    failure.get_or_insert_with(|| {
                        format!(
                            "replica {} of job {} is {}: {}",
                            a.id,
                            r.name,
                            if crash_looping {
                                "crashing (restarting per policy)"
                            } else {
                                "failing"
                            },
                            a.status.message.clone().unwrap_or_else(|| format!(
                                "exit code {}",
                                a.status.exit_code.unwrap_or(-1)
                            ))
                        )
                    });
                }
            }
            if running < v.desired as usize || current.len() != v.desired as usize {
                all_done = false;
            }
            views.push(v);
        }
        if let Some(f) = failure {
            eprintln!("error: {f}");
            return Ok((false, views));
        }
        let settled = match (all_done, all_running_since) {
            (false, _) => {
                all_running_since = None;
                false
            }
            (true, None) => {
                all_running_since = Some(Instant::now());
                false
            }
            (true, Some(t)) => t.elapsed() >= settle,
        };
        if settled {
            if fmt == Format::Table {
                for v in &views {
                    println!(
                        "{}: {}/{} replicas running",
                        v.spec.name, v.running, v.desired
                    );
                }
            }
            return Ok((true, views));
        }
        if Instant::now() >= deadline {
            eprintln!(
                "error: replicas not all running after {}s (see `skein alloc ls`)",
                timeout.as_secs()
            );
            return Ok((false, views));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Why the applied `version` is no longer current: its rollout failed and
/// the leader went back to the last good version.
fn rolled_back(v: &JobView, version: u64) -> Option<String> {
    let r = v.rollout.as_ref()?;
    (r.state == skein_protocol::api::RolloutState::RolledBack && r.from_version == Some(version))
        .then(|| {
            format!(
                "version {version} of job {} failed and was rolled back to version {}: {}",
                v.spec.name,
                r.to_version,
                r.message.as_deref().unwrap_or("no reason given")
            )
        })
}
