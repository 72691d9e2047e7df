//! Who may call the API: bearer tokens with roles, the same set on every
//! node.
//!
//! **Tokens live in cluster state.** `skein token create` stores the
//! SHA-256 of a 32-byte random token in Raft with a role; every node learns
//! the set (members from Raft, every node from its assignments, which are
//! kept on disk) and checks a call against it. A token is compared by hash,
//! in constant time; the secret is shown once, at creation, and is never
//! stored, logged or returned again.
//!
//! **Roles** (each includes the ones before it): `read` = `GET`/`HEAD`;
//! `write` = every other call (apply, scale, stop, restart, drain, image
//! push) and `POST /v1/plan`, which reads nothing new but costs the leader
//! seconds of CPU, so it is not a read; `admin` = `/v1/tokens` and writes
//! to `/v1/registries` (cluster-wide registry credentials). Always public:
//! `GET /v1/status` (health checks) and the dashboard's static files. Each
//! route's class is in the one route table (`super::routes`).
//!
//! **When a token is needed.** A node requires one as soon as it knows a
//! token: one in cluster state, or its own `--api-token-file`. So once the
//! cluster has any token, every node requires one, whatever its flags; only
//! a cluster with no token anywhere is open (and says so in its log). A node
//! that joins without saved state does not know the set until its first
//! assignments arrive: until then it answers nothing but the public paths
//! (503 after waiting a few seconds), rather than guess "open". The first
//! token must be an admin one and the last admin token cannot be revoked,
//! so a locked cluster never falls open or out of reach. `--open-reads` lets that node answer reads (and forward
//! them) without a token; writes always need one.
//!
//! **The bootstrap token** (`--api-token-file`) is an admin token. The node
//! that has the file accepts it at once, even before it has heard from any
//! other node, and registers its hash in cluster state (named `bootstrap`,
//! or `bootstrap-NODE` when that name is taken by another token) as soon as
//! it has a leader, so every node accepts it from then on. Many nodes given
//! the same file register it once. Revoking it (`skein token revoke
//! bootstrap`, after creating another admin token) is final: the revoked
//! hash is kept, nodes that still have the file stop accepting it and do
//! not register it again; rotate by deploying a new file.
//!
//! **Forwarded calls** carry the caller's credential over the mesh
//! ([`Credential`]); the node that serves them checks it with this same
//! policy, so a node that knows less (no file, stale set) is never a way
//! around the node that knows more. The mesh itself is closed by the
//! cluster key, which is therefore the root secret: a holder can join a
//! node and register a bootstrap token.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use sha2::{Digest, Sha256};
use skein_protocol::api::TokenRole;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::forward::Forwarded;
use super::{routes, ApiErr};
use crate::context::NodeCtx;
use crate::raft::StateHandle;
use crate::rpc::{self, Credential, PeerRequest, PeerResponse};
use crate::state::{ClusterState, TokenHash};

/// How long a call waits for a joining node to learn the token set.
const KNOWN_WAIT: Duration = Duration::from_secs(5);

/// The credential a call was let through with, for the handlers and the
/// forwarding layer to pass on to the node that serves it.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Credential);

/// The token policy of one node.
pub struct Auth {
    state: Arc<StateHandle>,
    desired: Arc<StateHandle>,
    bootstrap: Option<TokenHash>,
    open_reads: bool,
    /// `None` when the set is known from the start (this node created the
    /// cluster or restarts with saved state); else true once assignments
    /// arrived.
    known: Option<watch::Receiver<bool>>,
}

impl Auth {
    /// The policy over this node's Raft `state` and its `desired` state
    /// (assignments, which carry the tokens to every node). `bootstrap` is
    /// the `--api-token-file` token; `known` turns true once the token set
    /// is known (`None`: known already).
    pub fn new(
        state: Arc<StateHandle>,
        desired: Arc<StateHandle>,
        bootstrap: Option<&str>,
        open_reads: bool,
        known: Option<watch::Receiver<bool>>,
    ) -> Self {
        Self {
            state,
            desired,
            bootstrap: bootstrap.map(hash_token),
            open_reads,
            known,
        }
    }

    fn is_known(&self) -> bool {
        self.known.as_ref().is_none_or(|k| *k.borrow())
    }

    async fn wait_known(&self) -> bool {
        let Some(k) = &self.known else { return true };
        let mut k = k.clone();
        let wait = tokio::time::timeout(KNOWN_WAIT, k.wait_for(|v| *v)).await;
        matches!(wait, Ok(Ok(_)))
    }

    /// The freshest token set this node has: Raft's on a member, else (or
    /// while Raft lags) the one from its assignments.
    async fn view(&self) -> View {
        let (a, b) = (
            self.state.read(View::of).await,
            self.desired.read(View::of).await,
        );
        if a.version >= b.version {
            a
        } else {
            b
        }
    }
}

/// A node's knowledge of the cluster's tokens.
#[derive(Debug, Default, Clone)]
struct View {
    version: u64,
    tokens: Vec<(String, TokenRole, TokenHash)>,
    revoked: BTreeSet<TokenHash>,
}

impl View {
    fn of(s: &ClusterState) -> Self {
        Self {
            version: s.version,
            tokens: s
                .tokens
                .values()
                .map(|t| (t.name.clone(), t.role, t.hash))
                .collect(),
            revoked: s.revoked_tokens.clone(),
        }
    }
}

/// SHA-256 of a token: what the cluster stores and compares.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// A new random token: 32 bytes from the OS-seeded CSPRNG, hex, prefixed
/// so that it is recognisable in a secret scanner.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("skein_{}", hex::encode(bytes))
}

/// Equal-time comparison, so response timing does not leak a hash.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a call is refused.
#[derive(Debug, PartialEq, Eq)]
enum Denied {
    /// No token, and one is needed.
    Missing,
    /// A token that is not (or no longer) known.
    Wrong,
    /// A known token whose role is too small.
    Forbidden {
        name: String,
        role: TokenRole,
        need: TokenRole,
    },
    /// An `Authorization` header that is not `Bearer <token>`.
    BadScheme,
    /// This node does not know the token set yet.
    NotKnown,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            Denied::Missing => (
                StatusCode::UNAUTHORIZED,
                "this node requires an API token: pass --token or set SKEIN_TOKEN \
                 (header Authorization: Bearer <token>)"
                    .to_string(),
            ),
            Denied::Wrong => (
                StatusCode::UNAUTHORIZED,
                "the API token is wrong (or was revoked)".to_string(),
            ),
            Denied::BadScheme => (
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be `Bearer <token>`".to_string(),
            ),
            Denied::Forbidden { name, role, need } => (
                StatusCode::FORBIDDEN,
                format!("token {name} has the {role} role; this call needs {need}"),
            ),
            Denied::NotKnown => {
                let msg =
                    "this node has not learned the cluster's API tokens from the leader yet; \
                           retry shortly";
                let mut err = ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, msg);
                err.retry = Some(crate::rpc::PeerError::Unavailable { reason: msg.into() });
                return err.into_response();
            }
        };
        (
            [(header::WWW_AUTHENTICATE, "Bearer")],
            ApiErr::new(status, msg),
        )
            .into_response()
    }
}

/// The credential of a direct HTTP call. The scheme is case-insensitive
/// (RFC 9110), so `bearer` works as well as `Bearer`.
fn credential_of(headers: &HeaderMap) -> Result<Credential, Denied> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Credential::Anonymous);
    };
    let value = value.to_str().map_err(|_| Denied::BadScheme)?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denied::BadScheme);
    }
    match token.trim() {
        "" => Ok(Credential::Anonymous),
        t => Ok(Credential::Bearer(t.to_string())),
    }
}

/// The decision, with no I/O: whether `credential` may make a call that
/// needs `need`, and the credential to pass on when it is forwarded.
fn judge(
    view: &View,
    bootstrap: Option<&TokenHash>,
    open_reads: bool,
    known: bool,
    credential: &Credential,
    need: TokenRole,
) -> Result<Credential, Denied> {
    let bootstrap = bootstrap.filter(|h| !view.revoked.contains(*h));
    let token_role = |token: &str| {
        let h = hash_token(token);
        // Look at every token, so timing does not tell which matched.
        let mut found = None;
        for (name, role, stored) in &view.tokens {
            if same(&h, stored) {
                found = Some((name.clone(), *role));
            }
        }
        if bootstrap.is_some_and(|b| same(&h, b)) {
            found = found.or_else(|| Some(("bootstrap".into(), TokenRole::Admin)));
        }
        found
    };
    if !known {
        // Only this node's own file can be checked before the set is known.
        return match credential {
            Credential::Bearer(t) if token_role(t).is_some() => Ok(credential.clone()),
            _ => Err(Denied::NotKnown),
        };
    }
    if view.tokens.is_empty() && bootstrap.is_none() {
        return Ok(credential.clone());
    }
    match credential {
        Credential::Bearer(t) => match token_role(t) {
            None => Err(Denied::Wrong),
            Some((name, role)) if role < need => Err(Denied::Forbidden { name, role, need }),
            Some(_) => Ok(credential.clone()),
        },
        Credential::Anonymous if open_reads && need == TokenRole::Read => Ok(Credential::OpenRead),
        Credential::OpenRead if need == TokenRole::Read => Ok(Credential::OpenRead),
        _ => Err(Denied::Missing),
    }
}

/// The middleware: judges direct calls by their `Authorization` header and
/// forwarded ones by the credential they carry, and records the result as
/// a [`Caller`] extension.
pub async fn check(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let credential = match req.extensions().get::<Forwarded>() {
        Some(f) => f.credential.clone(),
        None => match credential_of(req.headers()) {
            Ok(c) => c,
            Err(d) => return d.into_response(),
        },
    };
    // The class of the route the router matched (`routes`), not of a
    // path matched here again.
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let Some(need) = routes::class_of(req.method(), pattern).role() else {
        req.extensions_mut().insert(Caller(credential));
        return next.run(req).await;
    };
    // A node that holds no cluster data yet (it never reached a leader)
    // has nothing a read could reveal: its own view is served without
    // waiting for the token set; anything else waits for it.
    let empty = auth.view().await.version == 0;
    let known = (empty && need == TokenRole::Read) || auth.wait_known().await;
    let view = auth.view().await;
    match judge(
        &view,
        auth.bootstrap.as_ref(),
        auth.open_reads,
        known,
        &credential,
        need,
    ) {
        Ok(pass_on) => {
            req.extensions_mut().insert(Caller(pass_on));
            next.run(req).await
        }
        Err(d) => d.into_response(),
    }
}

/// Says in the log whether this node requires a token (at start and when
/// that changes, e.g. when a joining node learns the cluster's tokens) and,
/// on a node with `--api-token-file`, registers that token's hash in
/// cluster state once there is a leader. Runs for the node's life.
pub async fn run(auth: Arc<Auth>, ctx: Arc<NodeCtx>) {
    let mut state_rx = auth.state.subscribe();
    let mut desired_rx = auth.desired.subscribe();
    let mut known_rx = auth.known.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut said: Option<(bool, usize, bool)> = None;
    let mut registered = auth.bootstrap.is_none();
    if !auth.is_known() {
        info!("api tokens: waiting to learn the cluster's tokens from the leader; until then only /v1/status and the dashboard's files are served");
    }
    loop {
        if auth.is_known() {
            let view = auth.view().await;
            let revoked = auth.bootstrap.is_some_and(|h| view.revoked.contains(&h));
            let file = auth.bootstrap.is_some() && !revoked;
            let now = (file || !view.tokens.is_empty(), view.tokens.len(), revoked);
            if said != Some(now) {
                announce(now.0, now.1, file, revoked);
                said = Some(now);
            }
            if !registered {
                registered = register(&auth, &ctx, &view).await;
            }
        }
        tokio::select! {
            Ok(()) = state_rx.changed() => {}
            Ok(()) = desired_rx.changed() => {}
            Some(Ok(())) = async {
                match known_rx.as_mut() {
                    Some(k) => Some(k.changed().await),
                    None => None,
                }
            } => {}
            _ = tick.tick() => {}
        }
    }
}

fn announce(required: bool, tokens: usize, file: bool, revoked: bool) {
    if revoked {
        warn!("api tokens: the token in --api-token-file was revoked in the cluster; this node no longer accepts it");
    }
    if !required {
        warn!("api tokens: none on this node or in the cluster, so the API is open to anyone who can reach it; lock it with `skein token create --role admin` (or --api-token-file)");
        return;
    }
    let file = if file {
        " and this node's --api-token-file"
    } else {
        ""
    };
    info!(
        tokens,
        "api tokens: every call except /v1/status and the dashboard's files needs a token ({tokens} in the cluster{file})"
    );
}

/// One attempt at storing the bootstrap token's hash in cluster state;
/// true when nothing is left to do.
async fn register(auth: &Auth, ctx: &NodeCtx, view: &View) -> bool {
    let Some(hash) = auth.bootstrap else {
        return true;
    };
    if view.revoked.contains(&hash) {
        return true;
    }
    if let Some((name, ..)) = view.tokens.iter().find(|(_, _, h)| *h == hash) {
        info!(token = %name, "api tokens: this node's --api-token-file token is in cluster state: every node accepts it");
        return true;
    }
    let Some(leader) = ctx.leader().await else {
        return false;
    };
    let node = ctx.local.name.clone();
    let result = if leader == ctx.id() {
        if !ctx.is_leader() {
            return false;
        }
        ctx.control
            .register_bootstrap_token(hash, &node)
            .await
            .map_err(|e| e.to_string())
    } else {
        let Some(peer) = ctx.peer_of(leader).await else {
            return false;
        };
        let req = PeerRequest::RegisterBootstrapToken { hash, node };
        match rpc::call(&ctx.mesh, peer, &req).await {
            Ok(PeerResponse::TokenRegistered(name)) => Ok(name),
            Ok(other) => Err(rpc::unexpected("register-bootstrap-token", &other).to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    match result {
        Ok(name) => {
            info!(token = %name, "api tokens: this node's --api-token-file token is stored in cluster state as an admin token: every node accepts it");
            true
        }
        Err(e) => {
            debug!(error = %e, "bootstrap token not registered yet");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(tokens: &[(&str, TokenRole, &str)]) -> View {
        View {
            version: 1,
            tokens: tokens
                .iter()
                .map(|(n, r, t)| (n.to_string(), *r, hash_token(t)))
                .collect(),
            revoked: BTreeSet::new(),
        }
    }

    fn bearer(t: &str) -> Credential {
        Credential::Bearer(t.into())
    }

    #[test]
    fn compares_whole_hashes() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        assert_eq!(credential_of(&h), Ok(Credential::Anonymous));
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            assert_eq!(credential_of(&h), Ok(bearer("abc")), "{v}");
        }
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(credential_of(&h), Err(Denied::BadScheme));
    }

    #[test]
    fn an_open_cluster_lets_everything_through() {
        let v = View::default();
        for c in [Credential::Anonymous, bearer("x")] {
            assert_eq!(judge(&v, None, false, true, &c, TokenRole::Admin), Ok(c));
        }
    }

    #[test]
    fn tokens_in_state_bind_every_node_by_role() {
        let v = view(&[
            ("ro", TokenRole::Read, "r"),
            ("ci", TokenRole::Write, "w"),
            ("ops", TokenRole::Admin, "a"),
        ]);
        let j = |c: &Credential, need| judge(&v, None, false, true, c, need);
        assert_eq!(
            j(&Credential::Anonymous, TokenRole::Read),
            Err(Denied::Missing)
        );
        assert_eq!(j(&bearer("nope"), TokenRole::Read), Err(Denied::Wrong));
        assert_eq!(j(&bearer("r"), TokenRole::Read), Ok(bearer("r")));
        assert_eq!(
            j(&bearer("r"), TokenRole::Write),
            Err(Denied::Forbidden {
                name: "ro".into(),
                role: TokenRole::Read,
                need: TokenRole::Write
            })
        );
        assert_eq!(j(&bearer("w"), TokenRole::Write), Ok(bearer("w")));
        assert!(matches!(
            j(&bearer("w"), TokenRole::Admin),
            Err(Denied::Forbidden { .. })
        ));
        assert_eq!(j(&bearer("a"), TokenRole::Admin), Ok(bearer("a")));
        // Credentials only another node can send grant reads at most.
        assert_eq!(
            j(&Credential::OpenRead, TokenRole::Read),
            Ok(Credential::OpenRead)
        );
        assert_eq!(
            j(&Credential::OpenRead, TokenRole::Write),
            Err(Denied::Missing)
        );
    }

    #[test]
    fn the_bootstrap_file_locks_its_node_until_revoked() {
        let boot = hash_token("s3cret\n");
        let mut v = View::default();
        let j = |v: &View, c: &Credential, known| {
            judge(v, Some(&boot), false, known, c, TokenRole::Admin)
        };
        assert_eq!(j(&v, &Credential::Anonymous, true), Err(Denied::Missing));
        assert_eq!(j(&v, &bearer("s3cret"), true), Ok(bearer("s3cret")));
        // Before the set is known, only the file's token is accepted.
        assert_eq!(j(&v, &bearer("s3cret"), false), Ok(bearer("s3cret")));
        assert_eq!(j(&v, &bearer("other"), false), Err(Denied::NotKnown));
        v.revoked.insert(boot);
        v.tokens
            .push(("ops".into(), TokenRole::Admin, hash_token("a")));
        assert_eq!(j(&v, &bearer("s3cret"), true), Err(Denied::Wrong));
        assert_eq!(j(&v, &bearer("a"), true), Ok(bearer("a")));
    }

    #[test]
    fn open_reads_pass_on_as_open_reads_only() {
        let v = view(&[("ops", TokenRole::Admin, "a")]);
        let j = |need| judge(&v, None, true, true, &Credential::Anonymous, need);
        assert_eq!(j(TokenRole::Read), Ok(Credential::OpenRead));
        assert_eq!(j(TokenRole::Write), Err(Denied::Missing));
    }

    /// The old hole: a call that came over the mesh skipped the check.
    #[tokio::test]
    async fn forwarded_calls_are_judged_by_the_credential_they_carry() {
        use axum::body::Body;
        use axum::routing::post;
        use tower::ServiceExt;

        let mut state = ClusterState::default();
        state.tokens.insert(
            "ci".into(),
            crate::state::ApiToken {
                name: "ci".into(),
                role: TokenRole::Write,
                hash: hash_token("w"),
                source: crate::state::TokenSource::Created,
                created_ms: 0,
            },
        );
        state.version = 1;
        let state = StateHandle::new(state);
        let empty = StateHandle::new(ClusterState::default());
        let auth = Arc::new(Auth::new(state, empty, None, true, None));
        let app = axum::Router::new()
            .route("/v1/jobs", post(|| async { "ok" }).get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(auth, check));
        let send = |method: &str, credential: Credential, header: Option<&str>| {
            let mut b = Request::builder()
                .method(method)
                .uri("/v1/jobs")
                .extension(Forwarded {
                    credential,
                    request_id: None,
                });
            if let Some(h) = header {
                b = b.header(header::AUTHORIZATION, h);
            }
            let app = app.clone();
            let req = b.body(Body::empty()).unwrap();
            async move { app.oneshot(req).await.unwrap().status() }
        };
        assert_eq!(
            send("POST", Credential::Anonymous, None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send("POST", Credential::OpenRead, None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(send("POST", bearer("w"), None).await, StatusCode::OK);
        assert_eq!(
            send("GET", Credential::OpenRead, None).await,
            StatusCode::OK
        );
        // A header on a forwarded call is not what counts.
        assert_eq!(
            send("POST", Credential::Anonymous, Some("Bearer w")).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn new_tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), "skein_".len() + 64);
        assert_eq!(hash_token(&a), hash_token(&format!("{a}\n")));
    }
}
