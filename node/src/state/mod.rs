//! The orchestration state that Raft replicates: jobs and allocations.
//!
//! Plain data with a pure [`ClusterState::apply`], so every transition can be
//! unit-tested without Raft, Docker or a network. The leader computes *plans*
//! against a snapshot of this state and submits them with the state
//! `version` they were computed from; `apply` rejects a plan whose base is
//! stale, which makes planning race-free even across leader changes.
//!
//! A job keeps its earlier specs ([`Job::history`]): during a rolling
//! update allocations of the old version keep running the old spec
//! ([`Job::spec_for`]), and `rollout undo` goes back to any kept version.
//!
//! API tokens live here too (as SHA-256 hashes, never the secret), so that
//! every node enforces the same set (`crate::api::auth`).
//!
//! Writes that come from API calls may carry a request id
//! ([`Command::Request`]); the state remembers the last applied ones
//! ([`requests`]), so a call retried after a lost answer takes effect once.

pub mod index;
pub mod requests;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use skein_protocol::api::{
    PortMapping, RolloutState, TokenRole, STATE_QUOTA_BYTES, STATE_QUOTA_BYTES_1_1,
};
use skein_protocol::codec::Schema;
use skein_protocol::spec::{JobSpec, ResourceVec};

/// Earlier versions a job keeps for `rollout history` and `undo`; versions
/// that allocations still run (or a rollout may return to) are kept beyond it.
pub const HISTORY_LIMIT: usize = 10;

/// Largest state, encoded, a command may grow the state to: the user
/// quota ([`STATE_QUOTA_BYTES`], checked by the leader before it proposes)
/// plus room for the leader's own steps (healing, rollout bookkeeping) at
/// the quota's edge. Part of the replicated logic: every replica refuses
/// the same commands, so a write that bypassed the leader's check still
/// cannot make the state too large to load.
pub const STATE_LIMIT_BYTES: usize = STATE_QUOTA_BYTES + STATE_QUOTA_BYTES / 8;

/// The user quota of a cluster at `schema` (smaller below 1.2).
pub fn quota_for(schema: Schema) -> usize {
    if schema < WEIGHED {
        STATE_QUOTA_BYTES_1_1
    } else {
        STATE_QUOTA_BYTES
    }
}

/// The state machine's limit at `schema`: [`STATE_LIMIT_BYTES`] from 1.2.
pub fn limit_for(schema: Schema) -> usize {
    let quota = quota_for(schema);
    quota + quota / 8
}

/// Raft and cluster identity of a node. `Copy + Default` as openraft needs;
/// the human name and addresses live in [`crate::raft::RaftPeer`].
pub type NodeId = u64;

pub use requests::{AppliedRequests, RequestId, RequestKey};
use table::entry_bytes;
pub use table::Table;

/// The cluster schema from which the size limit counts
/// [`ClusterState::weight`] rather than the whole state encoded.
const WEIGHED: Schema = Schema { major: 1, minor: 2 };

/// Weight of one remembered request result (key, version, map overhead).
const REQUEST_WEIGHT: usize = 48;

/// Weight of a small fixed-size item (a node id, a set entry).
const SMALL_WEIGHT: usize = 10;

/// Whether the leader may propose [`Command::Request`]: only once every
/// voter can apply it (an older node would fail on the unknown variant).
/// True for now; the cluster-wide lowest schema version will decide it.
pub fn request_ids_enabled(_state: &ClusterState) -> bool {
    true
}

/// Formats a node id the way users see it (16 hex digits).
pub fn node_id_str(id: NodeId) -> String {
    format!("{id:016x}")
}

/// A committed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The spec as validated at the API.
    pub spec: JobSpec,
    /// The version of `spec`: a new number whenever the template changes
    /// (not on scale). A rollback makes an earlier version current again.
    pub version: u64,
    /// Stopped jobs keep their spec (for `job ls`) but have no allocations.
    pub stopped: bool,
    /// When `version` was first committed (Unix ms, the leader's clock).
    pub created_ms: u64,
    /// Earlier versions, by ascending version, at most [`HISTORY_LIMIT`]
    /// plus those still in use.
    pub history: Vec<Revision>,
    /// The latest rollout (creation, update or rollback).
    pub rollout: Option<Rollout>,
}

impl Job {
    /// A new job at `version`, created at `now_ms`, with no history.
    pub fn new(spec: JobSpec, version: u64, now_ms: u64) -> Self {
        Self {
            spec,
            version,
            stopped: false,
            created_ms: now_ms,
            history: Vec::new(),
            rollout: None,
        }
    }

    /// The spec allocations of `version` run: the current one, or a kept
    /// earlier one (old replicas keep their spec during a rolling update).
    pub fn spec_for(&self, version: u64) -> Option<&JobSpec> {
        if version == self.version {
            return Some(&self.spec);
        }
        self.revision(version).map(|r| &r.spec)
    }

    /// A kept earlier version.
    pub fn revision(&self, version: u64) -> Option<&Revision> {
        self.history.iter().find(|r| r.version == version)
    }

    /// The number the next version gets: above every version ever kept, so
    /// numbers never repeat, even after a rollback.
    pub fn next_version(&self) -> u64 {
        self.history
            .iter()
            .map(|r| r.version)
            .chain([self.version])
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }
}

/// An earlier version of a job's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Its version number.
    pub version: u64,
    /// Its spec.
    pub spec: JobSpec,
    /// When it was first committed (Unix ms).
    pub created_ms: u64,
    /// It failed during its rollout and was rolled back.
    pub rolled_back: bool,
}

/// The latest rollout of a job, driven by the leader's reconcile loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The version being replaced; `None` for a new (or restarted) job.
    pub from_version: Option<u64>,
    /// The version rolled out: the job's current version.
    pub to_version: u64,
    /// Where it stands.
    pub state: RolloutState,
    /// The last good version, which a failure returns to; `None` when
    /// there is none (a new job, or this rollout is itself a rollback).
    pub rollback_to: Option<u64>,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// Last progress (start, or one more new replica ready), for the
    /// progress deadline.
    pub progress_ms: u64,
    /// Most replicas of `to_version` seen ready at once.
    pub best_available: u32,
    /// Why it failed or was rolled back.
    pub message: Option<String>,
}

impl Rollout {
    /// A rollout starting now from `from` to `to`.
    pub fn start(from: Option<u64>, to: u64, rollback_to: Option<u64>, now_ms: u64) -> Self {
        Self {
            from_version: from,
            to_version: to,
            state: RolloutState::Progressing,
            rollback_to,
            started_ms: now_ms,
            progress_ms: now_ms,
            best_available: 0,
            message: None,
        }
    }
}

/// One replica of a job, placed on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// `<job>-<index>-<suffix>`; unique for the life of the cluster.
    pub id: String,
    /// Job name.
    pub job: String,
    /// Replica index (0-based) within the job.
    pub index: u32,
    /// Job version whose spec this allocation runs.
    pub job_version: u64,
    /// Owning node.
    pub node: NodeId,
    /// Resources reserved on the node.
    pub resources: ResourceVec,
    /// Host ports reserved on the node.
    pub ports: Vec<PortMapping>,
    /// Bumped by `skein restart`; the executor recreates the container
    /// when the container's epoch label differs.
    pub restart_epoch: u64,
}

/// A change to the state, as replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A leader plan: applied only if the state is still at `base_version`.
    Plan(Plan),
    /// Bump the restart epoch of these allocations (no version check:
    /// restarting is idempotent and does not change placement).
    Restart {
        /// Allocation ids.
        allocs: Vec<String>,
    },
    /// Drain a node (no new placements; its allocations move away) or
    /// undo that. Idempotent.
    Drain {
        /// The node.
        node: NodeId,
        /// True to drain, false to undrain.
        drained: bool,
    },
    /// Store (or replace) the cluster-wide credential of one registry
    /// (`skein registry login`).
    RegistryLogin(StoredCredential),
    /// Forget the cluster-wide credential of a registry. Idempotent.
    RegistryLogout {
        /// Registry host.
        server: String,
    },
    /// Store a new API token (its hash). Refused when the name or the
    /// hash is taken, the hash is a revoked bootstrap token, or it would
    /// be the first token and is not an admin one (nobody could manage
    /// tokens then).
    TokenCreate(ApiToken),
    /// Revoke an API token. Refused for the last admin token, which would
    /// leave nobody able to manage tokens.
    TokenRevoke {
        /// Token name.
        name: String,
    },
    /// Remove a job with its kept versions and every allocation of it
    /// (`skein job delete`).
    DeleteJob {
        /// Job name.
        job: String,
    },
    /// `command` as write `key.seq` of the API call `key.id`: applied once;
    /// a repeat of the key returns the first result and changes nothing.
    Request {
        /// Which call, which of its writes.
        key: RequestKey,
        /// The write (never itself a `Request`).
        command: Box<Command>,
    },
    /// Raise the cluster's schema: every node reads it now, so encodings
    /// it adds may be written (`crate::control::schema`). Never lowers it.
    SetSchema(Schema),
    /// Several writes in one entry (group commit, `crate::control::commit`),
    /// applied in order as if they were consecutive entries: each succeeds
    /// or is refused on its own. Proposed from schema 1.2 only.
    Batch(Vec<Command>),
}

impl Command {
    /// At most how much applying it adds to [`ClusterState::weight`]: the
    /// weight of what it inserts, not counting what that replaces or what
    /// it removes; 0 for the commands [`Command::may_grow`] lets through.
    /// O(the command), so that a write far from the limit costs no more.
    pub fn growth_bound(&self) -> usize {
        match self {
            Command::Plan(p) => {
                let jobs: usize = p
                    .put_jobs
                    .iter()
                    .map(|j| entry_bytes(&j.spec.name, j))
                    .sum();
                let allocs: usize = p.add_allocs.iter().map(|a| entry_bytes(&a.id, a)).sum();
                let secrets: usize = p.put_secrets.iter().map(|(n, c)| entry_bytes(n, c)).sum();
                jobs + allocs + secrets
            }
            Command::RegistryLogin(c) => entry_bytes(&c.server, c),
            Command::TokenCreate(t) => entry_bytes(&t.name, t),
            _ if !self.may_grow() => 0,
            // Every other variant is listed above; a new one counts as large.
            _ => STATE_LIMIT_BYTES,
        }
    }

    /// Whether applying it can make the state larger by more than a few
    /// bytes, so that the size limit must be checked.
    fn may_grow(&self) -> bool {
        match self {
            Command::Plan(p) => {
                !p.put_jobs.is_empty() || !p.add_allocs.is_empty() || !p.put_secrets.is_empty()
            }
            Command::RegistryLogin(_) | Command::TokenCreate(_) => true,
            Command::Restart { .. }
            | Command::Drain { .. }
            | Command::RegistryLogout { .. }
            | Command::TokenRevoke { .. }
            | Command::DeleteJob { .. }
            | Command::SetSchema(_) => false,
            // The inner commands are checked when they are applied.
            Command::Request { .. } | Command::Batch(_) => false,
        }
    }
}

/// SHA-256 of an API token: all the cluster keeps of it.
pub type TokenHash = [u8; 32];

/// Where an API token came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenSource {
    /// `skein token create`.
    Created,
    /// The `--api-token-file` of a node, registered by that node so that
    /// every node honours it.
    Bootstrap {
        /// Name of the node that registered it.
        node: String,
    },
}

/// An API token as Raft holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Name (listed, revoked by).
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// SHA-256 of the secret.
    pub hash: TokenHash,
    /// Where it came from.
    pub source: TokenSource,
    /// When it was stored (Unix ms, the leader's clock).
    pub created_ms: u64,
}

/// Prints no part of the hash.
impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("source", &self.source)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// A registry credential as Raft holds it: the password sealed with a key
/// derived from the cluster key ([`crate::secrets`]), so neither the log,
/// snapshots nor saved assignments hold it in clear.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// Registry host, canonical ([`skein_protocol::image::registry_host`]).
    pub server: String,
    /// User name (not secret: `registry ls` shows it).
    pub username: String,
    /// The sealed password.
    pub sealed_password: Vec<u8>,
    /// When it was stored (Unix ms, the leader's clock).
    pub updated_ms: u64,
}

/// Prints no part of the sealed password.
impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("updated_ms", &self.updated_ms)
            .finish_non_exhaustive()
    }
}

/// Credentials of one image pull secret, by registry host.
pub type SecretCredentials = BTreeMap<String, StoredCredential>;

/// A set of job and allocation changes computed from one state version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// State version the plan was computed against.
    pub base_version: u64,
    /// Jobs to insert or replace.
    pub put_jobs: Vec<Job>,
    /// Allocations to remove (their containers get stopped).
    pub remove_allocs: Vec<String>,
    /// Allocations to add.
    pub add_allocs: Vec<Allocation>,
    /// Image pull secrets to create or replace, by name.
    pub put_secrets: BTreeMap<String, SecretCredentials>,
}

impl Plan {
    /// True when applying the plan would change nothing.
    pub fn is_empty(&self) -> bool {
        self.put_jobs.is_empty()
            && self.remove_allocs.is_empty()
            && self.add_allocs.is_empty()
            && self.put_secrets.is_empty()
    }
}

/// Outcome of applying a [`Command`], returned to the writer after commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied; the state is now at `version`.
    Applied {
        /// New state version.
        version: u64,
    },
    /// Refused without changing anything.
    Rejected {
        /// Why (stale plan, unknown id, …).
        reason: String,
        /// True when the plan was stale and may be recomputed and retried.
        stale: bool,
    },
    /// The outcome of each command of a [`Command::Batch`], in order.
    Batch(Vec<CommandResult>),
}

/// Everything Raft holds about the workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Jobs by name.
    pub jobs: Table<Job>,
    /// Allocations by id.
    pub allocs: Table<Allocation>,
    /// Bumped on every applied change; plans are checked against it.
    pub version: u64,
    /// Drained nodes: the scheduler skips them and the leader moves their
    /// allocations away.
    pub drained: BTreeSet<NodeId>,
    /// Cluster-wide registry credentials (`skein registry login`), by host.
    pub registries: Table<StoredCredential>,
    /// Image pull secrets (Kubernetes `imagePullSecrets`), by name.
    pub pull_secrets: Table<SecretCredentials>,
    /// API tokens, by name. Once there is one, every node requires a token.
    pub tokens: Table<ApiToken>,
    /// Hashes of revoked bootstrap tokens: a node that still has the file
    /// neither registers nor honours it again.
    pub revoked_tokens: BTreeSet<TokenHash>,
    /// Results of the last applied [`Command::Request`]s, by key.
    #[serde(default)]
    pub requests: AppliedRequests,
    /// The lowest schema every node of the cluster reads: what may be
    /// written (new variants only once it is reached). Raised by the
    /// leader, never lowered; a node of an older build refuses to run.
    #[serde(default)]
    pub schema: Schema,
}

impl ClusterState {
    /// Applies one command. Deterministic: every replica reaches the same
    /// state from the same log, and a rejected command changes nothing. A
    /// command that would grow the state beyond [`STATE_LIMIT_BYTES`] is
    /// rejected (one that shrinks an oversized state is not).
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        if self.schema < WEIGHED {
            // As clusters below schema 1.2 count the limit (the whole state
            // encoded, before and after), so that a cluster in the middle
            // of an upgrade refuses the same commands on every voter.
            if !cmd.may_grow() {
                return self.apply_unchecked(cmd);
            }
            return self.apply_bounded(cmd, limit_for(self.schema), Self::encoded_len);
        }
        let growth = cmd.growth_bound();
        if growth == 0 || self.weight().saturating_add(growth) <= STATE_LIMIT_BYTES {
            // Far from the limit whatever the command replaces: no copy.
            return self.apply_unchecked(cmd);
        }
        self.apply_bounded(cmd, STATE_LIMIT_BYTES, Self::weight)
    }

    /// Applies `cmd` to a copy and keeps it unless it grew the state, as
    /// `size` counts it, beyond `limit`.
    fn apply_bounded(
        &mut self,
        cmd: &Command,
        limit: usize,
        size: impl Fn(&ClusterState) -> usize,
    ) -> CommandResult {
        let mut next = self.clone();
        let result = next.apply_unchecked(cmd);
        if matches!(result, CommandResult::Applied { .. }) {
            let after = size(&next);
            if after > limit {
                let before = size(self);
                if after > before {
                    return too_large(after, before, limit);
                }
            }
        }
        *self = next;
        result
    }

    /// Size of the state encoded, as Raft stores it. A state that cannot
    /// be encoded counts as infinitely large. O(state): for tests and
    /// clusters below schema 1.2; limits use [`ClusterState::weight`].
    pub fn encoded_len(&self) -> usize {
        skein_protocol::codec::encoded_len(self).unwrap_or(usize::MAX)
    }

    /// The state's size as its limits count it, in O(1): the encoded size
    /// of every entry of its tables (kept by the tables), plus a fixed
    /// amount per remembered request, drained node and revoked token.
    /// A little above the encoded size, never far from it.
    pub fn weight(&self) -> usize {
        self.jobs.bytes()
            + self.allocs.bytes()
            + self.registries.bytes()
            + self.pull_secrets.bytes()
            + self.tokens.bytes()
            + self.requests.len() * REQUEST_WEIGHT
            + self.drained.len() * SMALL_WEIGHT
            + self.revoked_tokens.len() * (32 + SMALL_WEIGHT)
            + SMALL_WEIGHT
    }

    fn apply_unchecked(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Plan(plan) => self.apply_plan(plan),
            Command::Restart { allocs } => {
                if let Some(missing) = allocs.iter().find(|id| !self.allocs.contains_key(*id)) {
                    return reject(format!("allocation {missing} does not exist"), false);
                }
                for id in allocs {
                    self.allocs.update(id, |a| a.restart_epoch += 1);
                }
                self.version += 1;
                CommandResult::Applied {
                    version: self.version,
                }
            }
            Command::Drain { node, drained } => {
                let changed = if *drained {
                    self.drained.insert(*node)
                } else {
                    self.drained.remove(node)
                };
                if changed {
                    self.version += 1;
                }
                CommandResult::Applied {
                    version: self.version,
                }
            }
            Command::RegistryLogin(cred) => {
                self.registries.insert(cred.server.clone(), cred.clone());
                self.version += 1;
                CommandResult::Applied {
                    version: self.version,
                }
            }
            Command::RegistryLogout { server } => {
                if self.registries.remove(server).is_some() {
                    self.version += 1;
                }
                CommandResult::Applied {
                    version: self.version,
                }
            }
            Command::TokenCreate(token) => self.create_token(token),
            Command::TokenRevoke { name } => self.revoke_token(name),
            Command::Request { key, command } => {
                if let Some(first) = self.requests.get(key) {
                    return first.clone();
                }
                if matches!(**command, Command::Request { .. }) {
                    return reject("a request inside a request".into(), false);
                }
                let result = self.apply(command);
                // Only what took effect is remembered: a refused write
                // changed nothing, and its retry may be planned afresh.
                if matches!(result, CommandResult::Applied { .. }) {
                    self.requests.insert(*key, result.clone());
                }
                result
            }
            Command::Batch(commands) => CommandResult::Batch(
                commands
                    .iter()
                    .map(|c| match c {
                        Command::Batch(_) => reject("a batch inside a batch".into(), false),
                        c => self.apply(c),
                    })
                    .collect(),
            ),
            Command::SetSchema(schema) => {
                if *schema > self.schema {
                    self.schema = *schema;
                    self.version += 1;
                }
                CommandResult::Applied {
                    version: self.version,
                }
            }
            Command::DeleteJob { job } => {
                if self.jobs.remove(job).is_none() {
                    return reject(format!("job {job} not found"), false);
                }
                self.allocs.retain(|_, a| a.job != *job);
                self.version += 1;
                CommandResult::Applied {
                    version: self.version,
                }
            }
        }
    }

    fn create_token(&mut self, token: &ApiToken) -> CommandResult {
        if self.tokens.contains_key(&token.name) {
            return reject(
                format!("a token named {} exists already", token.name),
                false,
            );
        }
        if self.tokens.values().any(|t| t.hash == token.hash) {
            return reject("this token is stored already".into(), false);
        }
        if self.revoked_tokens.contains(&token.hash) {
            return reject("this token was revoked".into(), false);
        }
        let admin = |t: &ApiToken| t.role == TokenRole::Admin;
        if !admin(token) && !self.tokens.values().any(admin) {
            // The first token locks every node: it must be able to manage.
            return reject(
                "the cluster has no admin token yet, and its first token locks every node: \
                 create an admin token first (`skein token create --role admin`)"
                    .into(),
                false,
            );
        }
        self.tokens.insert(token.name.clone(), token.clone());
        self.version += 1;
        CommandResult::Applied {
            version: self.version,
        }
    }

    fn revoke_token(&mut self, name: &str) -> CommandResult {
        let Some(token) = self.tokens.get(name) else {
            return reject(format!("no token named {name}"), false);
        };
        let admins = self
            .tokens
            .values()
            .filter(|t| t.role == TokenRole::Admin)
            .count();
        if token.role == TokenRole::Admin && admins == 1 {
            return reject(
                format!(
                    "{name} is the last admin token: nobody could manage tokens without it \
                     (create another with `skein token create --role admin` first)"
                ),
                false,
            );
        }
        if matches!(token.source, TokenSource::Bootstrap { .. }) {
            self.revoked_tokens.insert(token.hash);
        }
        self.tokens.remove(name);
        self.version += 1;
        CommandResult::Applied {
            version: self.version,
        }
    }

    /// Credentials to pull `image` for a job naming `secrets`: its pull
    /// secrets first (in order), then the cluster-wide login, for the
    /// image's registry.
    pub fn credential_for(&self, image: &str, secrets: &[String]) -> Option<&StoredCredential> {
        let host = skein_protocol::image::ImageRef::parse(image).ok()?.registry;
        secrets
            .iter()
            .filter_map(|s| self.pull_secrets.get(s)?.get(&host))
            .next()
            .or_else(|| self.registries.get(&host))
    }

    fn apply_plan(&mut self, plan: &Plan) -> CommandResult {
        if plan.base_version != self.version {
            return reject(
                format!(
                    "plan computed at version {} but state is at {}",
                    plan.base_version, self.version
                ),
                true,
            );
        }
        // Check everything first so that a bad plan leaves no trace.
        let removing: BTreeSet<&str> = plan.remove_allocs.iter().map(String::as_str).collect();
        if let Some(id) = removing.iter().find(|id| !self.allocs.contains_key(**id)) {
            return reject(format!("allocation {id} does not exist"), true);
        }
        let mut adding = BTreeSet::new();
        for a in &plan.add_allocs {
            let known_job = plan.put_jobs.iter().any(|j| j.spec.name == a.job)
                || self.jobs.contains_key(&a.job);
            if !known_job {
                return reject(
                    format!("allocation {} names unknown job {}", a.id, a.job),
                    false,
                );
            }
            if !adding.insert(a.id.as_str())
                || (self.allocs.contains_key(&a.id) && !removing.contains(a.id.as_str()))
            {
                return reject(format!("allocation id {} is not unique", a.id), false);
            }
        }
        for j in &plan.put_jobs {
            self.jobs.insert(j.spec.name.clone(), j.clone());
        }
        for (name, creds) in &plan.put_secrets {
            self.pull_secrets.insert(name.clone(), creds.clone());
        }
        for id in &plan.remove_allocs {
            self.allocs.remove(id);
        }
        for a in &plan.add_allocs {
            self.allocs.insert(a.id.clone(), a.clone());
        }
        self.version += 1;
        CommandResult::Applied {
            version: self.version,
        }
    }

    /// Allocations of `job`, in replica-index order.
    pub fn allocs_of<'a>(&'a self, job: &'a str) -> impl Iterator<Item = &'a Allocation> + 'a {
        let mut v: Vec<&Allocation> = self
            .allocs
            .index()
            .by_job
            .get(job)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
            .collect();
        v.sort_by(|a, b| (a.index, &a.id).cmp(&(b.index, &b.id)));
        v.into_iter()
    }

    /// Allocations placed on `node`.
    pub fn allocs_on(&self, node: NodeId) -> impl Iterator<Item = &Allocation> + '_ {
        self.allocs
            .index()
            .by_node
            .get(&node)
            .into_iter()
            .flat_map(|load| load.allocs.iter())
            .filter_map(|id| self.allocs.get(id))
    }

    /// What is placed on `node` (none: an empty load).
    pub fn load_on(&self, node: NodeId) -> Option<&index::NodeLoad> {
        self.allocs.index().by_node.get(&node)
    }

    /// Sum of the requests of allocations placed on `node`.
    pub fn allocated_on(&self, node: NodeId) -> ResourceVec {
        self.load_on(node)
            .map_or_else(ResourceVec::default, index::NodeLoad::allocated)
    }

    /// Nodes holding at least one allocation.
    pub fn alloc_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.allocs.index().by_node.keys().copied()
    }

    /// Ports published by jobs that are not stopped, with who publishes.
    pub fn published_ports(&self) -> &imbl::OrdMap<u16, imbl::OrdSet<String>> {
        &self.jobs.index().published
    }
}

fn too_large(after: usize, before: usize, limit: usize) -> CommandResult {
    reject(
        format!(
            "the cluster state would grow to {after} bytes encoded, over its limit of \
             {limit} bytes (now {before} bytes); delete jobs (`skein job delete`) to make room"
        ),
        false,
    )
}

fn reject(reason: String, stale: bool) -> CommandResult {
    CommandResult::Rejected { reason, stale }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_protocol::spec::{PlacementStrategy, Resources, RestartPolicy};

    fn spec(name: &str) -> JobSpec {
        JobSpec {
            name: name.into(),
            replicas: 1,
            image: "img".into(),
            command: vec![],
            args: vec![],
            env: Default::default(),
            ports: vec![],
            resources: Resources::default(),
            restart: RestartPolicy::Always,
            labels: Default::default(),
            constraints: Default::default(),
            placement: PlacementStrategy::Spread,
            service: None,
            checks: vec![],
            update: Default::default(),
            pull: None,
            pull_secrets: vec![],
            container: Default::default(),
        }
    }

    fn alloc(id: &str, job: &str) -> Allocation {
        Allocation {
            id: id.into(),
            job: job.into(),
            index: 0,
            job_version: 1,
            node: 1,
            resources: ResourceVec::new(100, 1 << 20),
            ports: vec![],
            restart_epoch: 0,
        }
    }

    fn job(name: &str) -> Job {
        Job::new(spec(name), 1, 0)
    }

    #[test]
    fn plan_applies_and_bumps_version() {
        let mut s = ClusterState::default();
        let r = s.apply(&Command::Plan(Plan {
            base_version: 0,
            put_jobs: vec![job("web")],
            remove_allocs: vec![],
            add_allocs: vec![alloc("web-0-a", "web")],
            put_secrets: Default::default(),
        }));
        assert_eq!(r, CommandResult::Applied { version: 1 });
        assert_eq!(s.allocated_on(1), ResourceVec::new(100, 1 << 20));
        assert_eq!(s.allocs_on(2).count(), 0);
    }

    #[test]
    fn stale_or_bad_plans_change_nothing() {
        let mut s = ClusterState::default();
        let before = s.clone();
        let stale = s.apply(&Command::Plan(Plan {
            base_version: 5,
            ..Plan::default()
        }));
        assert!(matches!(stale, CommandResult::Rejected { stale: true, .. }));
        let orphan = s.apply(&Command::Plan(Plan {
            base_version: 0,
            add_allocs: vec![alloc("x-0", "x")],
            ..Plan::default()
        }));
        assert!(matches!(
            orphan,
            CommandResult::Rejected { stale: false, .. }
        ));
        let dup = s.apply(&Command::Plan(Plan {
            base_version: 0,
            put_jobs: vec![job("web")],
            add_allocs: vec![alloc("a", "web"), alloc("a", "web")],
            ..Plan::default()
        }));
        assert!(matches!(dup, CommandResult::Rejected { .. }));
        assert_eq!(s, before);
    }

    #[test]
    fn restart_bumps_epoch() {
        let mut s = ClusterState::default();
        s.apply(&Command::Plan(Plan {
            base_version: 0,
            put_jobs: vec![job("web")],
            add_allocs: vec![alloc("a", "web")],
            ..Plan::default()
        }));
        let r = s.apply(&Command::Restart {
            allocs: vec!["a".into()],
        });
        assert_eq!(r, CommandResult::Applied { version: 2 });
        assert_eq!(s.allocs["a"].restart_epoch, 1);
        let r = s.apply(&Command::Restart {
            allocs: vec!["nope".into()],
        });
        assert!(matches!(r, CommandResult::Rejected { .. }));
    }

    #[test]
    fn drain_is_idempotent_and_bumps_the_version_once() {
        let mut s = ClusterState::default();
        let drain = Command::Drain {
            node: 7,
            drained: true,
        };
        assert_eq!(s.apply(&drain), CommandResult::Applied { version: 1 });
        assert_eq!(s.apply(&drain), CommandResult::Applied { version: 1 });
        assert!(s.drained.contains(&7));
        let undrain = Command::Drain {
            node: 7,
            drained: false,
        };
        assert_eq!(s.apply(&undrain), CommandResult::Applied { version: 2 });
        assert!(s.drained.is_empty());
    }

    fn token(name: &str, role: TokenRole, byte: u8, bootstrap: bool) -> ApiToken {
        ApiToken {
            name: name.into(),
            role,
            hash: [byte; 32],
            source: if bootstrap {
                TokenSource::Bootstrap { node: "n1".into() }
            } else {
                TokenSource::Created
            },
            created_ms: 1,
        }
    }

    #[test]
    fn tokens_are_unique_and_the_last_admin_stays() {
        let mut s = ClusterState::default();
        let first = s.apply(&Command::TokenCreate(token(
            "ro",
            TokenRole::Read,
            9,
            false,
        )));
        assert!(
            matches!(&first, CommandResult::Rejected { reason, .. } if reason.contains("admin token first")),
            "{first:?}"
        );
        let boot = token("bootstrap", TokenRole::Admin, 1, true);
        assert_eq!(
            s.apply(&Command::TokenCreate(boot.clone())),
            CommandResult::Applied { version: 1 }
        );
        let same_name = token("bootstrap", TokenRole::Read, 2, false);
        let same_hash = token("other", TokenRole::Read, 1, false);
        for t in [same_name, same_hash] {
            let r = s.apply(&Command::TokenCreate(t));
            assert!(matches!(r, CommandResult::Rejected { stale: false, .. }));
        }
        let revoke = |n: &str| Command::TokenRevoke { name: n.into() };
        let r = s.apply(&revoke("bootstrap"));
        assert!(
            matches!(&r, CommandResult::Rejected { reason, .. } if reason.contains("last admin")),
            "{r:?}"
        );
        s.apply(&Command::TokenCreate(token(
            "ops",
            TokenRole::Admin,
            3,
            false,
        )));
        assert_eq!(
            s.apply(&revoke("bootstrap")),
            CommandResult::Applied { version: 3 }
        );
        assert!(
            s.revoked_tokens.contains(&[1; 32]),
            "bootstrap hashes stay revoked"
        );
        let again = s.apply(&Command::TokenCreate(boot));
        assert!(matches!(again, CommandResult::Rejected { .. }));
        assert!(matches!(
            s.apply(&revoke("nope")),
            CommandResult::Rejected { .. }
        ));
        // Created tokens leave no trace: their secret is never reused.
        s.apply(&Command::TokenCreate(token(
            "ci",
            TokenRole::Write,
            4,
            false,
        )));
        s.apply(&revoke("ci"));
        assert_eq!(s.revoked_tokens.len(), 1);
        assert_eq!(s.tokens.keys().collect::<Vec<_>>(), ["ops"]);
    }

    #[test]
    fn delete_removes_the_job_its_history_and_allocations() {
        let mut s = ClusterState::default();
        let mut web = job("web");
        web.history.push(Revision {
            version: 0,
            spec: spec("web"),
            created_ms: 0,
            rolled_back: false,
        });
        s.apply(&Command::Plan(Plan {
            base_version: 0,
            put_jobs: vec![web, job("db")],
            add_allocs: vec![alloc("w1", "web"), alloc("d1", "db")],
            ..Plan::default()
        }));
        let del = Command::DeleteJob { job: "web".into() };
        assert_eq!(s.apply(&del), CommandResult::Applied { version: 2 });
        assert!(!s.jobs.contains_key("web"));
        assert_eq!(s.allocs.keys().collect::<Vec<_>>(), ["d1"]);
        let again = s.apply(&del);
        assert!(matches!(
            again,
            CommandResult::Rejected { stale: false, .. }
        ));
        assert_eq!(s.version, 2);
    }

    /// A job whose args make it `bytes` large.
    fn big_job(name: &str, bytes: usize) -> Job {
        let mut spec = spec(name);
        spec.args = vec!["x".repeat(bytes)];
        Job::new(spec, 1, 0)
    }

    #[test]
    fn commands_that_would_outgrow_the_limit_are_rejected_deterministically() {
        // Both ways of counting: clusters below 1.2 encode the whole state.
        for schema in [Schema::FIRST, WEIGHED] {
            let mut s = ClusterState {
                schema,
                ..ClusterState::default()
            };
            let limit = limit_for(schema);
            // Jobs as large as the per-job limit lets through.
            let chunk = limit / 4;
            for i in 0..3 {
                let r = s.apply(&Command::Plan(Plan {
                    base_version: s.version,
                    put_jobs: vec![big_job(&format!("j{i}"), chunk)],
                    ..Plan::default()
                }));
                assert!(
                    matches!(r, CommandResult::Applied { .. }),
                    "{schema}: {r:?}"
                );
            }
            let before = s.clone();
            let over = Command::Plan(Plan {
                base_version: s.version,
                put_jobs: vec![big_job("j3", chunk)],
                ..Plan::default()
            });
            let r = s.apply(&over);
            let CommandResult::Rejected { reason, stale } = r else {
                panic!("{schema}: accepted a state over the limit: {r:?}");
            };
            assert!(!stale);
            assert!(reason.contains(&limit.to_string()), "{reason}");
            assert_eq!(s, before, "a rejected command changes nothing");
            // Every replica decides the same way, a restarted one too (its
            // tables count their sizes afresh when decoded).
            let mut replica = before.clone();
            assert_eq!(replica.apply(&over), s.clone().apply(&over));
            let bytes = skein_protocol::codec::encode(&before).expect("encodes");
            let mut restarted: ClusterState =
                skein_protocol::codec::decode_stored(&bytes).expect("decodes");
            assert_eq!(restarted.weight(), before.weight());
            assert_eq!(restarted.apply(&over), s.clone().apply(&over));
            // Shrinking is always possible.
            let r = s.apply(&Command::DeleteJob { job: "j0".into() });
            assert!(matches!(r, CommandResult::Applied { .. }));
            assert!(s.encoded_len() < before.encoded_len());
            assert!(s.weight() < before.weight());
        }
    }

    #[test]
    fn the_weight_is_a_little_above_the_encoded_size_whatever_was_done() {
        let mut s = ClusterState {
            schema: WEIGHED,
            ..ClusterState::default()
        };
        for i in 0..200u32 {
            let name = format!("job{}", i % 37);
            let mut a = alloc(&format!("{name}-{i}"), &name);
            a.index = i;
            a.node = u64::from(i % 7);
            if i % 4 == 0 {
                a.ports = vec![PortMapping {
                    name: None,
                    container_port: 80,
                    host_port: 20000 + (i % 5) as u16,
                    protocol: skein_protocol::spec::PortProtocol::Tcp,
                }];
            }
            let r = s.apply(&Command::Plan(Plan {
                base_version: s.version,
                put_jobs: vec![big_job(&name, (i as usize * 97) % 3000)],
                remove_allocs: s.allocs.keys().take((i % 3) as usize).cloned().collect(),
                add_allocs: vec![a],
                ..Plan::default()
            }));
            assert!(matches!(r, CommandResult::Applied { .. }), "{r:?}");
            if i % 50 == 0 {
                let some: Vec<String> = s.allocs.keys().take(5).cloned().collect();
                s.apply(&Command::Restart { allocs: some });
                s.apply(&Command::DeleteJob {
                    job: format!("job{}", (i + 1) % 37),
                });
            }
        }
        let fresh: ClusterState = skein_protocol::codec::decode_stored(
            &skein_protocol::codec::encode(&s).expect("encodes"),
        )
        .expect("decodes");
        assert_eq!(
            fresh.weight(),
            s.weight(),
            "kept sums = sums counted afresh"
        );
        let (weight, encoded) = (s.weight(), s.encoded_len());
        assert!(
            weight >= encoded,
            "weight {weight} below the encoding {encoded}"
        );
        assert!(
            weight <= encoded + encoded / 10,
            "weight {weight} far above {encoded}"
        );
        // The indexes too, and they answer as a scan would.
        assert_eq!(fresh.allocs.index(), s.allocs.index());
        assert_eq!(fresh.jobs.index(), s.jobs.index());
        for node in 0..8 {
            let scanned: Vec<&Allocation> = s.allocs.values().filter(|a| a.node == node).collect();
            let sum = scanned.iter().fold(ResourceVec::default(), |acc, a| {
                acc.saturating_add(a.resources)
            });
            assert_eq!(s.allocated_on(node), sum);
            assert_eq!(s.allocs_on(node).count(), scanned.len());
            let ports: BTreeSet<u16> = scanned
                .iter()
                .flat_map(|a| a.ports.iter().map(|p| p.host_port))
                .collect();
            let indexed: BTreeSet<u16> = s
                .load_on(node)
                .map(|l| l.ports.keys().map(|(p, _)| *p).collect())
                .unwrap_or_default();
            assert_eq!(indexed, ports, "node {node}");
        }
        for j in 0..37 {
            let job = format!("job{j}");
            let scanned = s.allocs.values().filter(|a| a.job == job).count();
            assert_eq!(s.allocs_of(&job).count(), scanned);
        }
        // A job replaced under its own name stays in the indexes, and so
        // does an allocation replaced under its id.
        let mut web = big_job("web", 10);
        web.spec.service = Some(skein_protocol::spec::ServiceSpec {
            name: "web".into(),
            port: None,
            publish: Some(30080),
            balance: Default::default(),
        });
        for _ in 0..2 {
            let r = s.apply(&Command::Plan(Plan {
                base_version: s.version,
                put_jobs: vec![web.clone()],
                ..Plan::default()
            }));
            assert!(matches!(r, CommandResult::Applied { .. }), "{r:?}");
            let publishers: Vec<&String> = s
                .published_ports()
                .get(&30080)
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(publishers, [&"web".to_string()]);
        }
        let mut moved = s.allocs.values().next().cloned().expect("an allocation");
        let id = moved.id.clone();
        moved.node = 99;
        s.allocs.insert(id.clone(), moved);
        let on_99: Vec<String> = s.allocs_on(99).map(|a| a.id.clone()).collect();
        assert_eq!(on_99, [id]);
    }

    #[test]
    fn old_versions_keep_their_spec() {
        let mut j = job("web");
        assert_eq!(j.next_version(), 2);
        let mut old = spec("web");
        old.image = "img:1".into();
        j.history.push(Revision {
            version: 3,
            spec: old.clone(),
            created_ms: 5,
            rolled_back: true,
        });
        assert_eq!(j.spec_for(1), Some(&j.spec));
        assert_eq!(j.spec_for(3), Some(&old));
        assert_eq!(j.spec_for(2), None);
        // Numbers never repeat, even when an older version is current.
        assert_eq!(j.next_version(), 4);
    }

    fn request(id: u8, seq: u32, command: Command) -> Command {
        Command::Request {
            key: RequestKey {
                id: RequestId([id; 16]),
                seq,
            },
            command: Box::new(command),
        }
    }

    #[test]
    fn a_repeated_request_takes_effect_once_and_returns_the_first_result() {
        let mut s = ClusterState::default();
        s.allocs.insert("a1".into(), alloc("a1", "web"));
        let restart = || {
            request(
                1,
                0,
                Command::Restart {
                    allocs: vec!["a1".into()],
                },
            )
        };
        let first = s.apply(&restart());
        assert_eq!(first, CommandResult::Applied { version: 1 });
        let after = s.clone();
        // Same key again (a retry through another leader): same answer,
        // same state, the epoch bumped once.
        assert_eq!(s.apply(&restart()), first);
        assert_eq!(s, after);
        assert_eq!(s.allocs["a1"].restart_epoch, 1);
        // The next write of the same call, or another call, is new.
        let second = request(
            1,
            1,
            Command::Restart {
                allocs: vec!["a1".into()],
            },
        );
        assert_eq!(s.apply(&second), CommandResult::Applied { version: 2 });
        assert_eq!(
            s.apply(&request(
                2,
                0,
                Command::Restart {
                    allocs: vec!["a1".into()]
                }
            )),
            CommandResult::Applied { version: 3 }
        );
        assert_eq!(s.allocs["a1"].restart_epoch, 3);
    }

    #[test]
    fn refused_requests_are_not_remembered_and_nesting_is_refused() {
        let mut s = ClusterState::default();
        let bad = request(
            1,
            0,
            Command::Restart {
                allocs: vec!["nope".into()],
            },
        );
        assert!(matches!(s.apply(&bad), CommandResult::Rejected { .. }));
        assert!(s.requests.is_empty());
        assert_eq!(s, ClusterState::default());
        let nested = request(
            2,
            0,
            request(
                3,
                0,
                Command::Drain {
                    node: 1,
                    drained: true,
                },
            ),
        );
        assert!(matches!(s.apply(&nested), CommandResult::Rejected { .. }));
        assert!(!s.drained.contains(&1));
    }

    #[test]
    fn remembered_requests_are_bounded_and_evicted_oldest_first() {
        let mut s = ClusterState::default();
        let drain = |i: u32| Command::Request {
            key: RequestKey {
                id: RequestId([7; 16]),
                seq: i,
            },
            command: Box::new(Command::Drain {
                node: u64::from(i % 2),
                drained: i % 4 < 2,
            }),
        };
        let n = u32::try_from(requests::KEPT_REQUESTS).unwrap() + 10;
        for i in 0..n {
            s.apply(&drain(i));
        }
        assert_eq!(s.requests.len(), requests::KEPT_REQUESTS);
        let key = |seq| RequestKey {
            id: RequestId([7; 16]),
            seq,
        };
        assert!(s.requests.get(&key(9)).is_none());
        assert!(s.requests.get(&key(10)).is_some());
        assert!(s.requests.get(&key(n - 1)).is_some());
        // Every replica evicts the same ones: a copy fed the same log agrees.
        let mut t = ClusterState::default();
        for i in 0..n {
            t.apply(&drain(i));
        }
        assert_eq!(s, t);
    }
}
