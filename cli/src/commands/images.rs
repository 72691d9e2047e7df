//! `skein registry login|logout|ls` and `skein image ls|push`.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;
use skein_protocol::api::{
    ImagePushRequest, ImagePushResponse, ImageView, RegistryLogin, RegistryView,
};

use crate::client::Client;
use crate::output::{self, Format};

/// `skein registry …`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Store credentials for a registry, so that every node can pull from
    /// it. The password is stored encrypted with a key derived from the
    /// cluster key and is never shown again.
    Login(LoginArgs),
    /// Forget the credentials of a registry.
    Logout {
        /// Registry host, as given to login.
        server: String,
    },
    /// List stored credentials (registry and user name, never a password).
    Ls,
}

/// Flags of `skein registry login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host: `registry.example.com`, `127.0.0.1:5000`, or
    /// `docker.io` for Docker Hub.
    server: String,
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Read the password (or token) from standard input, so that it stays
    /// out of the shell history and the process list.
    #[arg(long)]
    password_stdin: bool,
}

/// `skein image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images nodes hold, and fetches under way.
    Ls,
    /// Send an image from this node's Docker (e.g. one built here with
    /// `docker build`) to other nodes over the mesh, and follow the copies.
    Push(PushArgs),
}

/// Flags of `skein image push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image reference or id in the Docker of the node `--api` points at.
    image: String,
    /// Target node (name or id); repeatable. Default: every ready node.
    #[arg(long = "to", value_name = "NODE")]
    to: Vec<String>,
    /// Return once the targets have been asked, without following.
    #[arg(short, long)]
    detach: bool,
    /// Seconds to wait for every copy.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Runs `skein registry …`.
pub async fn registry(client: &Client, fmt: Format, cmd: RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Login(args) => {
            if !args.password_stdin {
                bail!(
                    "give the password on standard input with --password-stdin \
                     (e.g. `cat token | skein registry login {} -u {} --password-stdin`)",
                    args.server,
                    args.username
                );
            }
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                bail!("the password read from standard input is empty");
            }
            let login = RegistryLogin {
                server: args.server,
                username: args.username,
                password,
            };
            let view: RegistryView = client
                .call(Method::POST, "/v1/registries", &login)
                .await?
                .json()
                .await?;
            if fmt == Format::Json {
                return output::json(&view);
            }
            println!(
                "credentials for {} (user {}) stored; every node pulls with them",
                view.server, view.username
            );
        }
        RegistryCommand::Logout { server } => {
            client
                .send(Method::DELETE, &format!("/v1/registries/{server}"), None)
                .await?;
            if fmt == Format::Json {
                return output::json(&json!({ "removed": server }));
            }
            println!("credentials for {server} removed");
        }
        RegistryCommand::Ls => {
            let list: Vec<RegistryView> = client.get("/v1/registries").await?;
            if fmt == Format::Json {
                return output::json(&list);
            }
            let rows = list
                .into_iter()
                .map(|r| vec![r.server, r.username, r.source])
                .collect();
            output::table(&["registry", "username", "source"], rows);
        }
    }
    Ok(())
}

/// Runs `skein image …`.
pub async fn image(client: &Client, fmt: Format, cmd: ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Ls => {
            let list: Vec<ImageView> = client.get("/v1/images").await?;
            if fmt == Format::Json {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows = list
                .iter()
                .map(|i| {
                    let fetching: Vec<String> = i
                        .fetching
                        .iter()
                        .map(|f| format!("{}: {}", f.node, f.progress))
                        .collect();
                    vec![
                        i.tags.join(", "),
                        short_id(&i.id).to_string(),
                        output::bytes(i.size_bytes),
                        i.nodes.join(", "),
                        fetching.join("; "),
                    ]
                })
                .collect();
            output::table(&["image", "id", "size", "nodes", "fetching"], rows);
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Push(args) => push(client, fmt, args).await,
    }
}

async fn push(client: &Client, fmt: Format, args: PushArgs) -> Result<ExitCode> {
    let req = ImagePushRequest {
        image: args.image.clone(),
        to: args.to.clone(),
    };
    let resp: ImagePushResponse = client
        .call(Method::POST, "/v1/images/push", &req)
        .await?
        .json()
        .await?;
    if fmt == Format::Table {
        println!(
            "image {} ({}): copying to {} node(s){}",
            args.image,
            short_id(&resp.id),
            resp.targets.len(),
            if resp.already.is_empty() {
                String::new()
            } else {
                format!("; already on {}", resp.already.join(", "))
            }
        );
    }
    if args.detach || resp.targets.is_empty() {
        if fmt == Format::Json {
            output::json(&json!({ "push": resp, "ok": true }))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut shown: std::collections::HashMap<String, String> = Default::default();
    loop {
        let list: Vec<ImageView> = client.get("/v1/images").await?;
        let view = list.iter().find(|i| i.id == resp.id);
        for t in &resp.targets {
            if done.contains(t) {
                continue;
            }
            if view.is_some_and(|v| v.nodes.contains(t)) {
                done.insert(t.clone());
                if fmt == Format::Table {
                    println!("  {t:<16} done");
                }
                continue;
            }
            let line = view
                .and_then(|v| v.fetching.iter().find(|f| &f.node == t))
                .map(|f| f.progress.to_string())
                .unwrap_or_else(|| "waiting".into());
            if fmt == Format::Table && shown.get(t) != Some(&line) {
                println!("  {t:<16} {line}");
                shown.insert(t.clone(), line);
            }
        }
        if done.len() == resp.targets.len() {
            if fmt == Format::Json {
                output::json(&json!({ "push": resp, "ok": true }))?;
            } else {
                println!("image {} is on every target", args.image);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            let missing: Vec<&String> =
                resp.targets.iter().filter(|t| !done.contains(*t)).collect();
            if fmt == Format::Json {
                output::json(&json!({ "push": resp, "ok": false, "missing": missing }))?;
            }
            eprintln!(
                "error: after {} s the image is not yet on {} (see `skein events --kind image_pull_failed`)",
                args.timeout,
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}
