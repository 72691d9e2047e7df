//! API tokens: `GET /v1/tokens`, `POST /v1/tokens`, `DELETE
//! /v1/tokens/{name}` (admin role; see [`super::auth`] for the policy).
//!
//! The secret is made here, on the leader that serves the write (a call
//! entering another node is forwarded over the encrypted mesh), stored only
//! as its SHA-256, and returned once in the answer. Listings show names,
//! roles, sources and times, never a secret or a hash.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::Rng;
use skein_protocol::api::{TokenCreateRequest, TokenCreated, TokenView};
use skein_protocol::spec::SpecError;

use super::{auth, json_body, ApiErr};
use crate::context::NodeCtx;
use crate::state::{ApiToken, TokenSource};

type Ctx = State<Arc<NodeCtx>>;

/// Longest token name.
const MAX_NAME: usize = 63;

/// Names are short words: letters, digits, `-`, `_`, `.`, starting with a
/// letter or digit, so they are safe in paths and tables.
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `GET /v1/tokens`.
pub async fn list(State(ctx): Ctx) -> Json<Vec<TokenView>> {
    let views = ctx
        .state
        .read(|s| {
            s.tokens
                .values()
                .map(|t| TokenView {
                    name: t.name.clone(),
                    role: t.role,
                    source: match &t.source {
                        TokenSource::Created => "created".into(),
                        TokenSource::Bootstrap { node } => format!("bootstrap {node}"),
                    },
                    created_at_ms: t.created_ms,
                })
                .collect()
        })
        .await;
    Json(views)
}

/// `POST /v1/tokens`: makes a token and shows it this once.
pub async fn create(
    State(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TokenCreated>, ApiErr> {
    let req: TokenCreateRequest = json_body(body)?;
    let name = req
        .name
        .unwrap_or_else(|| format!("token-{:08x}", rand::rng().random::<u32>()));
    if !valid_name(&name) {
        return Err(ApiErr::invalid(
            "invalid token name",
            vec![SpecError {
                field: "name".into(),
                message: format!(
                    "{name:?} is not a token name: 1 to {MAX_NAME} letters, digits, '-', '_' \
                     or '.', starting with a letter or digit"
                ),
            }],
        ));
    }
    if ctx.state.read(|s| s.tokens.contains_key(&name)).await {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            format!("a token named {name} exists already"),
        ));
    }
    let secret = auth::new_token();
    let created_ms = crate::clock::now_ms();
    ctx.control
        .token_create(ApiToken {
            name: name.clone(),
            role: req.role,
            hash: auth::hash_token(&secret),
            source: TokenSource::Created,
            created_ms,
        })
        .await?;
    Ok(Json(TokenCreated {
        name,
        role: req.role,
        token: secret,
        created_at_ms: created_ms,
    }))
}

/// `DELETE /v1/tokens/{name}`: the token stops working on every node as
/// soon as they learn of it (one long-poll round).
pub async fn revoke(State(ctx): Ctx, Path(name): Path<String>) -> Result<StatusCode, ApiErr> {
    if ctx.control.token_revoke(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiErr::not_found(format!("no token named {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_safe_words() {
        for ok in ["ci", "deploy-bot", "a.b_c", "x1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
