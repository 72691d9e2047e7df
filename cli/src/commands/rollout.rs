//! `skein rollout status|history|undo JOB`: follow a job's rolling update,
//! list the versions it keeps, and go back to one of them.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use skein_protocol::api::{
    JobApplyResult, JobView, RevisionView, RolloutState, RolloutView, UndoRequest,
};

use crate::client::Client;
use crate::output::{self, Format};

/// `skein rollout …`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow a job's latest rollout until it completes or is rolled back
    /// (exit status 1 when it failed).
    Status {
        /// Job name.
        job: String,
        /// Print the current state once instead of following.
        #[arg(long)]
        no_follow: bool,
        /// Seconds to follow before giving up.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// List the versions a job keeps: image, when, which is current.
    History {
        /// Job name.
        job: String,
    },
    /// Go back to the previous version's spec (or --to-version N), rolled
    /// out as a new version.
    Undo {
        /// Job name.
        job: String,
        /// The version to go back to.
        #[arg(long, value_name = "N")]
        to_version: Option<u64>,
    },
}

/// Runs a `skein rollout` command.
pub async fn run(client: &Client, fmt: Format, cmd: RolloutCommand) -> Result<ExitCode> {
    match cmd {
        RolloutCommand::Status {
            job,
            no_follow,
            timeout,
        } => status(client, fmt, &job, !no_follow, Duration::from_secs(timeout)).await,
        RolloutCommand::History { job } => history(client, fmt, &job).await,
        RolloutCommand::Undo { job, to_version } => undo(client, fmt, &job, to_version).await,
    }
}

/// One line of progress, e.g. `version 1 -> 2: 3/4 updated, 2/4 ready, 1 old`.
fn progress(r: &RolloutView) -> String {
    let from = r
        .from_version
        .map_or_else(|| "new".to_string(), |v| v.to_string());
    format!(
        "version {from} -> {}: {}/{} updated, {}/{} ready, {} old",
        r.to_version, r.updated, r.desired, r.available, r.desired, r.outdated
    )
}

async fn status(
    client: &Client,
    fmt: Format,
    job: &str,
    follow: bool,
    timeout: Duration,
) -> Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let v: JobView = client.get(&format!("/v1/jobs/{job}")).await?;
        let Some(r) = v.rollout.clone() else {
            if fmt == Format::Json {
                output::json(&json!({ "job": job, "version": v.version, "rollout": null }))?;
            } else {
                println!("job {job} has no rollout (stopped: {})", v.stopped);
            }
            return Ok(ExitCode::SUCCESS);
        };
        let done = r.state != RolloutState::Progressing;
        if fmt == Format::Table {
            let line = progress(&r);
            if line != last && (follow || done) {
                println!("{line}");
                last = line;
            }
        }
        if done || !follow || Instant::now() >= deadline {
            if fmt == Format::Json {
                output::json(&json!({ "job": job, "version": v.version, "rollout": r }))?;
            }
            return Ok(report(fmt, job, &r, done));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints the verdict (tables only) and picks the exit status.
fn report(fmt: Format, job: &str, r: &RolloutView, done: bool) -> ExitCode {
    let why = r.message.as_deref().unwrap_or("no reason given");
    let (ok, text) = match r.state {
        RolloutState::Complete => (
            true,
            format!("rollout of {job} to version {} complete", r.to_version),
        ),
        RolloutState::RolledBack => (
            false,
            format!(
                "rollout of {job} to version {} failed and was rolled back to version {}: {why}",
                r.from_version.map_or_else(|| "?".into(), |v| v.to_string()),
                r.to_version
            ),
        ),
        RolloutState::Failed => (
            false,
            format!(
                "rollout of {job} to version {} is failing: {why}",
                r.to_version
            ),
        ),
        RolloutState::Progressing if done => (false, String::new()),
        RolloutState::Progressing => (
            true,
            format!("rollout of {job} to version {} in progress", r.to_version),
        ),
    };
    if fmt == Format::Table && !text.is_empty() {
        if ok {
            println!("{text}");
        } else {
            eprintln!("error: {text}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn history(client: &Client, fmt: Format, job: &str) -> Result<ExitCode> {
    let revs: Vec<RevisionView> = client.get(&format!("/v1/jobs/{job}/history")).await?;
    if fmt == Format::Json {
        output::json(&revs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = revs
        .iter()
        .map(|r| {
            vec![
                r.version.to_string(),
                r.spec.image.clone(),
                when(r.created_at_ms),
                if r.current {
                    "current".into()
                } else if r.rolled_back {
                    "rolled back".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    output::table(&["version", "image", "created", "status"], rows);
    Ok(ExitCode::SUCCESS)
}

/// A Unix-ms timestamp as RFC 3339 (UTC, seconds) and its age.
pub(crate) fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let age = SystemTime::now()
        .duration_since(at)
        .unwrap_or_default()
        .as_secs();
    let ago = match age {
        0..60 => format!("{age}s"),
        60..3600 => format!("{}m", age / 60),
        3600..86400 => format!("{}h", age / 3600),
        _ => format!("{}d", age / 86400),
    };
    format!("{} ({ago} ago)", humantime::format_rfc3339_seconds(at))
}

async fn undo(client: &Client, fmt: Format, job: &str, to: Option<u64>) -> Result<ExitCode> {
    let res: JobApplyResult = client
        .call(
            Method::POST,
            &format!("/v1/jobs/{job}/undo"),
            &UndoRequest { to_version: to },
        )
        .await?
        .json()
        .await
        .map_err(|e| anyhow!("unexpected answer to undo: {e}"))?;
    if fmt == Format::Json {
        output::json(&res)?;
    } else {
        let of = to.map_or_else(|| "the previous version".into(), |v| format!("version {v}"));
        println!(
            "job {job} rolling back to the spec of {of} as version {} (follow with `skein rollout status {job}`)",
            res.version
        );
    }
    Ok(ExitCode::SUCCESS)
}
