//! Registry credentials and images: `POST|GET /v1/registries`,
//! `DELETE /v1/registries/{server}`, `GET /v1/images`, `POST /v1/images/push`.
//!
//! Passwords are sealed here, on the leader that serves the write (a write
//! entering another node is forwarded over the encrypted mesh first), so
//! only ciphertext reaches Raft; reads return servers and user names, never
//! a secret, and no message here quotes one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use skein_protocol::api::NodeHealth;
use skein_protocol::api::{
    ImageFetchView, ImagePushRequest, ImagePushResponse, ImageView, PullSecret, RegistryLogin,
    RegistryView,
};
use skein_protocol::image::{canonical, registry_host, valid_host};
use skein_protocol::spec::{is_dns_subdomain, SpecError};

use super::{json_body, ApiErr};
use crate::context::NodeCtx;
use crate::rpc::{self, CallError, PeerRequest, PeerResponse};
use crate::state::{SecretCredentials, StoredCredential};

type Ctx = State<Arc<NodeCtx>>;

/// Longest user name or password accepted (registry tokens are long JWTs).
const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// Problems with a login, by field; never quoting the password.
fn check_login(prefix: &str, l: &RegistryLogin) -> Vec<SpecError> {
    let mut errs = Vec::new();
    let mut err = |field: &str, message: String| {
        errs.push(SpecError {
            field: format!("{prefix}{field}"),
            message,
        })
    };
    let host = registry_host(&l.server);
    if l.server.trim().is_empty() || !valid_host(&host) {
        err(
            "server",
            format!(
                "{:?} is not a registry host: use HOST or HOST:PORT (e.g. registry.example.com, \
                 127.0.0.1:5000, docker.io)",
                l.server
            ),
        );
    }
    if l.username.is_empty() || l.username.len() > MAX_CREDENTIAL_LEN {
        err(
            "username",
            format!("a user name of 1 to {MAX_CREDENTIAL_LEN} characters is required"),
        );
    }
    if l.password.is_empty() || l.password.len() > MAX_CREDENTIAL_LEN {
        err(
            "password",
            format!("a password of 1 to {MAX_CREDENTIAL_LEN} characters is required"),
        );
    }
    errs
}

/// Problems with the pull secrets of an apply request, as
/// `pull_secrets[i].…` details.
pub fn check_pull_secrets(secrets: &[PullSecret]) -> Vec<SpecError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, s) in secrets.iter().enumerate() {
        let at = format!("pull_secrets[{i}].");
        if !is_dns_subdomain(&s.name) {
            errs.push(SpecError {
                field: format!("{at}name"),
                message: format!("{:?} is not a valid secret name", s.name),
            });
        }
        if !names.insert(s.name.as_str()) {
            errs.push(SpecError {
                field: format!("{at}name"),
                message: format!("secret {} appears twice in one request", s.name),
            });
        }
        if s.registries.is_empty() {
            errs.push(SpecError {
                field: format!("{at}registries"),
                message: "at least one registry login is required".into(),
            });
        }
        for (j, l) in s.registries.iter().enumerate() {
            errs.extend(check_login(&format!("{at}registries[{j}]."), l));
        }
    }
    errs
}

fn seal(ctx: &NodeCtx, l: &RegistryLogin) -> StoredCredential {
    StoredCredential {
        server: registry_host(&l.server),
        username: l.username.clone(),
        sealed_password: ctx.secrets.seal(&l.password),
        updated_ms: crate::clock::now_ms(),
    }
}

/// The request's pull secrets, sealed, by name (checked already).
pub fn seal_pull_secrets(
    ctx: &NodeCtx,
    secrets: &[PullSecret],
) -> Result<BTreeMap<String, SecretCredentials>, ApiErr> {
    Ok(secrets
        .iter()
        .map(|s| {
            let creds = s
                .registries
                .iter()
                .map(|l| (registry_host(&l.server), seal(ctx, l)))
                .collect();
            (s.name.clone(), creds)
        })
        .collect())
}

/// `POST /v1/registries`: stores a login every node pulls with.
pub async fn login(
    State(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RegistryView>, ApiErr> {
    let l: RegistryLogin = json_body(body)?;
    let errs = check_login("", &l);
    if !errs.is_empty() {
        return Err(ApiErr::invalid("invalid registry login", errs));
    }
    let cred = seal(&ctx, &l);
    let view = RegistryView {
        server: cred.server.clone(),
        username: cred.username.clone(),
        source: "login".into(),
        updated_at_ms: cred.updated_ms,
    };
    ctx.control.registry_login(cred).await?;
    Ok(Json(view))
}

/// `DELETE /v1/registries/{server}`.
pub async fn logout(State(ctx): Ctx, Path(server): Path<String>) -> Result<StatusCode, ApiErr> {
    let host = registry_host(&server);
    if ctx.control.registry_logout(&host).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiErr::not_found(format!(
            "no credential is stored for registry {host}"
        )))
    }
}

/// `GET /v1/registries`: stored credentials without their secrets.
pub async fn registries(State(ctx): Ctx) -> Json<Vec<RegistryView>> {
    let state = ctx.state.snapshot().await;
    let view = |c: &StoredCredential, source: String| RegistryView {
        server: c.server.clone(),
        username: c.username.clone(),
        source,
        updated_at_ms: c.updated_ms,
    };
    let mut out: Vec<RegistryView> = state
        .registries
        .values()
        .map(|c| view(c, "login".into()))
        .collect();
    for (name, creds) in &state.pull_secrets {
        out.extend(creds.values().map(|c| view(c, format!("secret {name}"))));
    }
    Json(out)
}

/// `GET /v1/images`: every image some node holds, with its holders and
/// the fetches under way (from gossip: any node answers).
pub async fn list(State(ctx): Ctx) -> Json<Vec<ImageView>> {
    let nodes = ctx.membership.all().await;
    let mut by_id: BTreeMap<String, ImageView> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.health != NodeHealth::Dead) {
        for i in &n.images {
            let v = by_id.entry(i.id.clone()).or_insert_with(|| ImageView {
                id: i.id.clone(),
                tags: Vec::new(),
                size_bytes: i.size,
                nodes: Vec::new(),
                fetching: Vec::new(),
            });
            v.tags.extend(i.tags.iter().cloned());
            v.nodes.push(n.name.clone());
        }
    }
    let mut views: Vec<ImageView> = by_id.into_values().collect();
    for n in nodes.iter().filter(|n| n.health != NodeHealth::Dead) {
        for p in &n.fetching {
            let want = canonical(&p.image);
            let fetch = ImageFetchView {
                node: n.name.clone(),
                progress: p.clone(),
            };
            match views
                .iter_mut()
                .find(|v| v.id == p.image || v.tags.contains(&want))
            {
                Some(v) => v.fetching.push(fetch),
                None => views.push(ImageView {
                    id: String::new(),
                    tags: vec![want],
                    size_bytes: p.bytes_total,
                    nodes: Vec::new(),
                    fetching: vec![fetch],
                }),
            }
        }
    }
    for v in &mut views {
        v.tags.sort();
        v.tags.dedup();
        v.nodes.sort();
    }
    views.sort_by(|a, b| (a.tags.first(), &a.id).cmp(&(b.tags.first(), &b.id)));
    Json(views)
}

/// `POST /v1/images/push`: asks other nodes to copy an image of this
/// node's Docker (they fetch it over the mesh, from here or from any node
/// that has it by then).
pub async fn push(
    State(ctx): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImagePushResponse>, ApiErr> {
    let req: ImagePushRequest = json_body(body)?;
    let inspect = ctx.runtime.inspect_image(&req.image).await.map_err(|_| {
        ApiErr::not_found(format!(
            "image {} is not in the Docker of node {} (build or load it there first)",
            req.image, ctx.local.name
        ))
    })?;
    let id = inspect.id.unwrap_or_default();
    let tags: Vec<String> = inspect
        .repo_tags
        .unwrap_or_default()
        .iter()
        .filter(|t| t.as_str() != "<none>:<none>")
        .map(|t| canonical(t))
        .collect();
    // Peers must see that we hold it before they ask us for it.
    ctx.refresh_self().await;
    let nodes = ctx.membership.all().await;
    let mut targets = Vec::new();
    if req.to.is_empty() {
        targets.extend(
            nodes
                .iter()
                .filter(|n| n.id != ctx.id() && n.health == NodeHealth::Ready),
        );
    } else {
        for want in &req.to {
            let (id, _) = super::rollout::resolve(&ctx, want).await?;
            if let Some(n) = nodes.iter().find(|n| n.id == id && n.id != ctx.id()) {
                targets.push(n);
            }
        }
    }
    let mut accepted = Vec::new();
    let mut already = Vec::new();
    for n in targets {
        if n.has_image_id(&id) {
            already.push(n.name.clone());
            continue;
        }
        let peer = n.peer_id.parse().map_err(|_| {
            ApiErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node {} has no mesh address yet", n.name),
            )
        })?;
        let ask = PeerRequest::FetchImage {
            id: id.clone(),
            tags: tags.clone(),
            from: ctx.id(),
        };
        match rpc::call(&ctx.mesh, peer, &ask).await {
            Ok(PeerResponse::FetchImage(true)) => accepted.push(n.name.clone()),
            Ok(PeerResponse::FetchImage(false)) => already.push(n.name.clone()),
            Ok(other) => {
                return Err(ApiErr::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "node {}: {}",
                        n.name,
                        rpc::unexpected("fetch-image", &other)
                    ),
                ))
            }
            Err(e @ (CallError::Peer(_) | CallError::BadAnswer(_))) => {
                return Err(ApiErr::new(
                    StatusCode::BAD_GATEWAY,
                    format!("node {}: {e}", n.name),
                ))
            }
            Err(e) => {
                return Err(ApiErr::new(
                    StatusCode::BAD_GATEWAY,
                    format!("node {} cannot be asked: {e}", n.name),
                ))
            }
        }
    }
    Ok(Json(ImagePushResponse {
        id,
        tags,
        targets: accepted,
        already,
    }))
}
