//! `skein token create|ls|revoke`: the cluster's API tokens (admin role).

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use skein_protocol::api::{TokenCreateRequest, TokenCreated, TokenRole, TokenView};

use crate::client::Client;
use crate::output::{self, Format};

/// `skein token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (the only time it is shown: the
    /// cluster keeps its SHA-256). Every node accepts it at once. On a
    /// cluster without tokens, the first one locks the API on every node.
    Create {
        /// What it may do: read (GET), write (jobs, scale, drain, plan,
        /// image push) or admin (tokens, registry credentials).
        #[arg(long, default_value = "read", value_parser = parse_role)]
        role: TokenRole,
        /// Name to list and revoke it by (default: a generated one).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens: name, role, source and creation time, never a secret.
    Ls,
    /// Revoke a token: no node accepts it any more.
    Revoke {
        /// Token name.
        name: String,
    },
}

fn parse_role(s: &str) -> Result<TokenRole, String> {
    s.parse()
}

/// Runs `skein token …`.
pub async fn run(client: &Client, fmt: Format, cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create { role, name } => {
            let created: TokenCreated = client
                .call(
                    Method::POST,
                    "/v1/tokens",
                    &TokenCreateRequest { name, role },
                )
                .await?
                .json()
                .await?;
            if fmt == Format::Json {
                return output::json(&created);
            }
            // The token alone on stdout, so that `$(skein token create)` works.
            println!("{}", created.token);
            eprintln!(
                "token {} ({} role) created; it is shown only this once: pass it with --token or SKEIN_TOKEN",
                created.name, created.role
            );
        }
        TokenCommand::Ls => {
            let list: Vec<TokenView> = client.get("/v1/tokens").await?;
            if fmt == Format::Json {
                return output::json(&list);
            }
            let rows = list
                .into_iter()
                .map(|t| {
                    vec![
                        t.name,
                        t.role.to_string(),
                        t.source,
                        super::rollout::when(t.created_at_ms),
                    ]
                })
                .collect();
            output::table(&["name", "role", "source", "created"], rows);
        }
        TokenCommand::Revoke { name } => {
            client
                .send(Method::DELETE, &format!("/v1/tokens/{name}"), None)
                .await?;
            if fmt == Format::Json {
                return output::json(&json!({ "revoked": name }));
            }
            println!("token {name} revoked");
        }
    }
    Ok(())
}
