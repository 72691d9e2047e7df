//! The write path of the control plane: turns user intents (apply, scale,
//! stop, restart, undo, drain) into plans and commits them through Raft.
//!
//! Only the leader plans. Plans are computed under one lock against the
//! state they will meet (the applied state, confirmed by a quorum once per
//! term, plus the writes queued before them) and carry its version, so a
//! plan computed from a wrong state is rejected by the state machine and
//! recomputed from the applied state. Queued writes are committed many to
//! one Raft entry (`commit.rs`). A call returns only after its command is
//! committed. The
//! leader's reconcile pass also drives rollouts (`rollout.rs`): it steps
//! rolling updates as replicas become ready and rolls back failed ones.
//!
//! Limits are checked here, before anything is proposed: a job spec may
//! be [`MAX_JOB_SPEC_BYTES`] encoded, and a user write may not grow the
//! state beyond [`STATE_QUOTA_BYTES`] (the state machine refuses anything
//! beyond [`crate::state::STATE_LIMIT_BYTES`] on its own). A write is
//! refused before proposing while this node's storage is degraded; one
//! whose commit cannot be confirmed is reported as of unknown outcome,
//! never as a plain failure.
//!
//! Writes made while serving an API call carry that call's request id
//! ([`as_request`]), so a call retried after its answer was lost (the
//! forwarding node resends it with the same id, maybe to a new leader)
//! takes effect once: the state machine deduplicates
//! ([`crate::state::requests`]).

mod commit;
pub mod handover;
pub mod planner;
pub mod publish;
pub mod rollout;
pub mod schema;
pub mod voters;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, RaftError};
use rand::Rng;
use skein_protocol::api::{
    ApplyResponse, ChangeKind, EventKind, JobApplyResult, MAX_JOB_SPEC_BYTES,
};
use skein_protocol::spec::JobSpec;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::events::{EventLog, NewEvent};
use crate::executor::StatusBoard;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::raft::storage::Storage;
use crate::raft::{RaftPeer, SkeinRaft, StateHandle};
use crate::state::{
    node_id_str, request_ids_enabled, ApiToken, ClusterState, Command, CommandResult, NodeId, Plan,
    RequestId, RequestKey, SecretCredentials, StoredCredential, TokenHash, TokenSource,
};
use commit::GroupCommit;
pub use planner::PlanError;
use planner::{Input, RolloutEvent};

/// What the leader plans its next write against.
#[derive(Default)]
struct Lane {
    /// The term in which this node last confirmed its leadership with a
    /// quorum (and so applied everything committed before it): within it,
    /// only this node's own writes change the state.
    confirmed_term: Option<u64>,
    /// The applied state plus every write queued or in flight, in order:
    /// the state the next write will meet.
    projected: Option<ClusterState>,
}

tokio::task_local! {
    /// The API call being served, set by [`as_request`]. A task-local
    /// rather than a parameter of every handler and `Control` method: the
    /// id belongs to the call, not to any one write, and every write the
    /// call makes must carry it. Background writes (healing, rollouts,
    /// voters) run outside any call and carry none.
    static CALL: CallScope;
}

/// A call's id and the number of its next write.
struct CallScope {
    id: RequestId,
    next: AtomicU32,
}

/// Runs `fut` (an API call's handler) as the call `id`: each write it
/// commits through [`Control`] is proposed as write number 0, 1, … of that
/// call ([`Command::Request`]), the same numbers on every retry.
pub async fn as_request<F: Future>(id: RequestId, fut: F) -> F::Output {
    CALL.scope(
        CallScope {
            id,
            next: AtomicU32::new(0),
        },
        fut,
    )
    .await
}

/// The key the next write of the current call gets, if a call is served.
fn next_key() -> Option<RequestKey> {
    CALL.try_with(|c| RequestKey {
        id: c.id,
        seq: c.next.load(Ordering::Relaxed),
    })
    .ok()
}

/// Moves the current call to its next write number.
fn advance_key() {
    let _ = CALL.try_with(|c| c.next.fetch_add(1, Ordering::Relaxed));
}

/// How often a plan is recomputed when it keeps losing races.
const MAX_PLAN_ATTEMPTS: usize = 5;

/// Why a control-plane call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// This node is not the leader; the caller should ask `leader`.
    #[error("this node is not the raft leader{}", .leader.as_ref().map(|(id, p)| format!(" (leader is {} at {})", node_id_str(*id), p.addr)).unwrap_or_else(|| "; no leader is elected yet, retry shortly".into()))]
    NotLeader {
        /// The leader, if known.
        leader: Option<(NodeId, RaftPeer)>,
    },
    /// The request cannot be planned (unknown job, no room, …).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The state machine refused the command.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Raft is shutting down or failed.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// A size limit refuses the write (job spec, state quota); nothing
    /// was proposed.
    #[error("{0}")]
    TooLarge(String),
    /// This node's Raft storage fails; nothing was proposed.
    #[error("this node's raft storage is failing ({0}); the write was not applied, retry shortly (another node takes over as leader)")]
    StorageDegraded(String),
    /// The write was proposed but its commit could not be confirmed: it
    /// may still take effect.
    #[error("the write was proposed but its commit could not be confirmed ({0}); it may still take effect: check the state before retrying")]
    OutcomeUnknown(String),
}

/// Checks a spec against the per-job size limit; the message names the
/// limit and the figures.
pub fn check_spec_size(spec: &JobSpec) -> Result<(), String> {
    let len = skein_protocol::codec::encoded_len(spec).unwrap_or(usize::MAX);
    if len > MAX_JOB_SPEC_BYTES {
        return Err(format!(
            "job {}: its spec is {len} bytes encoded, over the limit of {MAX_JOB_SPEC_BYTES} bytes per job",
            spec.name
        ));
    }
    Ok(())
}

/// Checks that applying `cmd` to `state` keeps the state within the user
/// quota (or shrinks it); consumes the copy of the state it tries it on.
/// Far from the quota it only adds up what the command inserts; near it,
/// it applies the command to the copy (cheap: the tables are shared).
fn check_quota(mut state: ClusterState, cmd: &Command) -> Result<(), ControlError> {
    let quota = crate::state::quota_for(state.schema);
    let before = state.weight();
    if before.saturating_add(cmd.growth_bound()) <= quota {
        return Ok(());
    }
    if let CommandResult::Rejected {
        reason,
        stale: false,
    } = state.apply(cmd)
    {
        return Err(ControlError::TooLarge(reason));
    }
    let after = state.weight();
    if after > quota && after > before {
        return Err(ControlError::TooLarge(format!(
            "the cluster state would grow to {after} bytes encoded, over its quota of \
             {quota} bytes (now {before} bytes): delete jobs (`skein job delete`) \
             or make their specs smaller"
        )));
    }
    Ok(())
}

/// Whether a planned write counts against the user quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quota {
    /// A user request that may grow the state: checked.
    User,
    /// The leader's own steps (healing, rollouts) and shrinking requests:
    /// only the state machine's hard limit applies.
    Unchecked,
}

/// The leader-side write path.
pub struct Control {
    raft: SkeinRaft,
    state: Arc<StateHandle>,
    membership: Arc<Membership>,
    board: StatusBoard,
    /// Held while a write is planned and queued, so that writes queue in
    /// the order they were planned, each against the state the ones
    /// before it leave.
    plan_lock: Mutex<Lane>,
    commits: GroupCommit,
    /// Jobs the last pass could not place, and why: warned once per change.
    stuck: Mutex<BTreeMap<String, String>>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
    storage: Arc<Storage>,
}

/// How long a proposed write waits for its commit before it is reported
/// as of unknown outcome: below the mesh's 10 s request timeout, so that a
/// forwarded write gets this answer rather than a timeout it might retry.
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// How long a write waits for a quorum that missed a heartbeat round.
const QUORUM_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

impl Control {
    /// A control plane over `raft`; `board` tells which replicas are ready,
    /// which paces rolling updates; `storage` whether this node can take
    /// writes at all.
    pub fn new(
        raft: SkeinRaft,
        state: Arc<StateHandle>,
        membership: Arc<Membership>,
        board: StatusBoard,
        (events, metrics): (Arc<EventLog>, Arc<Metrics>),
        storage: Arc<Storage>,
    ) -> Self {
        Self {
            membership,
            board,
            plan_lock: Mutex::new(Lane::default()),
            commits: GroupCommit::new(raft.clone(), state.clone()),
            raft,
            state,
            stuck: Mutex::new(BTreeMap::new()),
            events,
            metrics,
            storage,
        }
    }

    /// A node's name for events (its id when unknown).
    async fn node_name(&self, node: NodeId) -> String {
        self.membership
            .get(node)
            .await
            .map_or_else(|| node_id_str(node), |n| n.name)
    }

    /// The Raft handle (metrics, membership changes).
    pub fn raft(&self) -> &SkeinRaft {
        &self.raft
    }

    /// Creates or updates jobs and image pull secrets atomically (one
    /// Raft entry); an update starts a rollout. Every secret a job names
    /// must come with the request or exist already.
    pub async fn apply(
        &self,
        specs: Vec<JobSpec>,
        secrets: BTreeMap<String, SecretCredentials>,
    ) -> Result<ApplyResponse, ControlError> {
        for spec in &specs {
            check_spec_size(spec).map_err(ControlError::TooLarge)?;
        }
        let rules = self.publish_rules().await;
        let results = self
            .planned(Quota::User, |input| {
                publish::check(&specs, input.state, &rules).map_err(PlanError::Invalid)?;
                for spec in &specs {
                    if let Some(missing) = spec.pull_secrets.iter().find(|s| {
                        !secrets.contains_key(*s) && !input.state.pull_secrets.contains_key(*s)
                    }) {
                        return Err(PlanError::Refused(format!(
                            "job {} names the image pull secret {missing}, which is neither \
                             in this request nor stored in the cluster (apply the Secret \
                             with the job, or use `skein registry login`)",
                            spec.name
                        )));
                    }
                }
                let (mut plan, results) = planner::apply_with(input, &specs)?;
                plan.put_secrets = secrets.clone();
                Ok((plan, results))
            })
            .await?;
        for name in secrets.keys() {
            info!(secret = %name, "image pull secret stored");
        }
        for r in &results {
            if r.change != ChangeKind::Unchanged {
                let what = match r.change {
                    ChangeKind::Created => "created",
                    _ => "updated",
                };
                info!(job = %r.name, version = r.version, replicas = r.allocations.len(), "job {what}");
                self.events.emit(
                    NewEvent::new(
                        EventKind::JobApplied,
                        format!("job {what}: version {}", r.version),
                    )
                    .job(r.name.clone()),
                );
            }
        }
        Ok(ApplyResponse { jobs: results })
    }

    /// The publish rules of every node that is not dead (a service is
    /// opened on all of them).
    pub async fn publish_rules(&self) -> Vec<publish::PublishRules> {
        self.membership
            .all()
            .await
            .into_iter()
            .filter(|n| n.health != skein_protocol::api::NodeHealth::Dead)
            .map(|n| publish::PublishRules {
                name: n.name,
                range: n.publish_range,
                listeners: n.listeners,
            })
            .collect()
    }

    /// Stores the cluster-wide credential of a registry (sealed already).
    pub async fn registry_login(&self, cred: StoredCredential) -> Result<(), ControlError> {
        self.ensure_leader().await?;
        let (server, username) = (cred.server.clone(), cred.username.clone());
        let cmd = Command::RegistryLogin(cred);
        check_quota(self.state.snapshot().await, &cmd)?;
        self.write(cmd).await?;
        info!(registry = %server, username = %username, "registry credential stored");
        Ok(())
    }

    /// Forgets the cluster-wide credential of a registry; `false` when
    /// there was none.
    pub async fn registry_logout(&self, server: &str) -> Result<bool, ControlError> {
        self.ensure_leader().await?;
        let known = self.state.read(|s| s.registries.contains_key(server)).await;
        if known {
            self.write(Command::RegistryLogout {
                server: server.to_string(),
            })
            .await?;
            info!(registry = %server, "registry credential removed");
        }
        Ok(known)
    }

    /// Stores a new API token (only its hash: the caller made the secret
    /// and shows it once).
    pub async fn token_create(&self, token: ApiToken) -> Result<(), ControlError> {
        self.ensure_leader().await?;
        let (name, role) = (token.name.clone(), token.role);
        self.write(Command::TokenCreate(token)).await?;
        info!(token = %name, role = %role, "api token created");
        Ok(())
    }

    /// Revokes an API token; `false` when there is none of that name.
    pub async fn token_revoke(&self, name: &str) -> Result<bool, ControlError> {
        self.ensure_leader().await?;
        if !self.state.read(|s| s.tokens.contains_key(name)).await {
            return Ok(false);
        }
        self.write(Command::TokenRevoke {
            name: name.to_string(),
        })
        .await?;
        info!(token = %name, "api token revoked");
        Ok(true)
    }

    /// Stores the `--api-token-file` token of `node` as an admin token
    /// named `bootstrap` (or `bootstrap-NODE` when that is taken); answers
    /// the name it has, which is the existing one when it is stored already.
    pub async fn register_bootstrap_token(
        &self,
        hash: TokenHash,
        node: &str,
    ) -> Result<String, ControlError> {
        self.ensure_leader().await?;
        let (existing, taken, revoked) = self
            .state
            .read(|s| {
                let existing = s
                    .tokens
                    .values()
                    .find(|t| t.hash == hash)
                    .map(|t| t.name.clone());
                let taken: BTreeSet<String> = s.tokens.keys().cloned().collect();
                (existing, taken, s.revoked_tokens.contains(&hash))
            })
            .await;
        if let Some(name) = existing {
            return Ok(name);
        }
        if revoked {
            return Err(ControlError::Rejected("this token was revoked".into()));
        }
        let safe: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = ["bootstrap".to_string(), format!("bootstrap-{safe}")]
            .into_iter()
            .chain((2..).map(|n| format!("bootstrap-{safe}-{n}")))
            .find(|n| !taken.contains(n))
            .unwrap_or_else(|| "bootstrap".into());
        self.write(Command::TokenCreate(ApiToken {
            name: name.clone(),
            role: skein_protocol::api::TokenRole::Admin,
            hash,
            source: TokenSource::Bootstrap {
                node: node.to_string(),
            },
            created_ms: crate::clock::now_ms(),
        }))
        .await?;
        info!(token = %name, node, "bootstrap api token registered");
        Ok(name)
    }

    /// Sets a job's replica count.
    pub async fn scale(&self, job: &str, replicas: u32) -> Result<(), ControlError> {
        self.planned(Quota::User, |input| {
            planner::scale(input, job, replicas).map(|p| (p, ()))
        })
        .await?;
        info!(job, replicas, "job scaled");
        self.events.emit(
            NewEvent::new(
                EventKind::JobScaled,
                format!("scaled to {replicas} replicas"),
            )
            .job(job),
        );
        Ok(())
    }

    /// Rolls `job` back to a kept version (default: the previous one with
    /// another spec), as a new version.
    pub async fn undo(&self, job: &str, to: Option<u64>) -> Result<JobApplyResult, ControlError> {
        let result = self
            .planned(Quota::User, |input| planner::undo(input, job, to))
            .await?;
        info!(job, version = result.version, to = ?to, "rollback requested");
        self.events.emit(
            NewEvent::new(
                EventKind::JobApplied,
                format!("undo requested: version {}", result.version),
            )
            .job(job),
        );
        Ok(result)
    }

    /// Drains `node` (no new placements; its allocations move away a few
    /// at a time) or undrains it.
    pub async fn drain(&self, node: NodeId, drained: bool) -> Result<(), ControlError> {
        self.ensure_leader().await?;
        self.write(Command::Drain { node, drained }).await?;
        let what = if drained { "drained" } else { "undrained" };
        info!(node = %node_id_str(node), "node {what}");
        self.events.emit(
            NewEvent::new(EventKind::NodeDrain, format!("node {what}"))
                .node(self.node_name(node).await),
        );
        // Start moving replicas now rather than at the next tick.
        if drained {
            if let Err(e) = self.reconcile().await {
                warn!(error = %e, "first drain step failed; the reconcile loop retries");
            }
        }
        Ok(())
    }

    /// Raises the cluster's schema to `to` (see [`schema`]).
    pub async fn raise_schema(
        &self,
        to: skein_protocol::codec::Schema,
    ) -> Result<(), ControlError> {
        self.ensure_leader().await?;
        self.write(Command::SetSchema(to)).await?;
        info!(%to, "cluster schema raised: every node reads it");
        Ok(())
    }

    /// Stops a job: removes its allocations, keeps its spec.
    pub async fn stop(&self, job: &str) -> Result<(), ControlError> {
        self.planned(Quota::Unchecked, |input| {
            planner::stop(input.state, job).map(|p| (p, ()))
        })
        .await?;
        info!(job, "job stopped");
        self.events
            .emit(NewEvent::new(EventKind::JobStopped, "job stopped").job(job));
        Ok(())
    }

    /// Deletes a job: its spec, kept versions and allocations leave the
    /// state (its containers are stopped by their nodes). Always allowed,
    /// even over the quota: it is how room is made.
    pub async fn delete(&self, job: &str) -> Result<(), ControlError> {
        let cmd = Command::DeleteJob {
            job: job.to_string(),
        };
        self.write_if(cmd, |state| {
            if state.jobs.contains_key(job) {
                Ok(())
            } else {
                Err(PlanError::UnknownJob(job.to_string()).into())
            }
        })
        .await?;
        info!(job, "job deleted");
        self.events
            .emit(NewEvent::new(EventKind::JobDeleted, "job deleted").job(job));
        Ok(())
    }

    /// Restarts every allocation of `job`; returns their ids.
    pub async fn restart_job(&self, job: &str) -> Result<Vec<String>, ControlError> {
        self.ensure_leader().await?;
        let ids: Option<Vec<String>> = self
            .state
            .read(|s| {
                s.jobs
                    .contains_key(job)
                    .then(|| s.allocs_of(job).map(|a| a.id.clone()).collect())
            })
            .await;
        let ids = ids.ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
        if !ids.is_empty() {
            self.write(Command::Restart {
                allocs: ids.clone(),
            })
            .await?;
        }
        info!(job, allocations = ids.len(), "restart requested");
        Ok(ids)
    }

    /// Restarts one allocation.
    pub async fn restart_alloc(&self, id: &str) -> Result<(), ControlError> {
        self.write(Command::Restart {
            allocs: vec![id.to_string()],
        })
        .await?;
        info!(alloc = id, "restart requested");
        Ok(())
    }

    /// Whether a rollout or drain is under way, so that status changes
    /// (a replica became ready) deserve a pass at once.
    pub async fn in_motion(&self) -> bool {
        self.state.read(planner::in_motion).await
    }

    /// One pass over every job: heals (lost nodes, missing replicas),
    /// drains, steps rolling updates, completes or rolls back rollouts.
    /// Returns whether anything was written.
    pub async fn reconcile(&self) -> Result<bool, ControlError> {
        let mut stuck_jobs = Vec::new();
        let mut events = Vec::new();
        let wrote = self
            .planned(Quota::Unchecked, |input| {
                let r = planner::reconcile(input);
                stuck_jobs = r.stuck;
                events = r.events;
                let changed = !r.plan.is_empty();
                Ok((r.plan, changed))
            })
            .await?;
        for e in events {
            match e {
                RolloutEvent::Completed { job, version } => {
                    info!(job = %job, version, "rollout complete");
                    self.events.emit(
                        NewEvent::new(
                            EventKind::RolloutComplete,
                            format!("rollout to version {version} complete"),
                        )
                        .job(job),
                    );
                }
                RolloutEvent::RolledBack {
                    job,
                    from,
                    to,
                    reason,
                } => {
                    warn!(job = %job, from, to, reason = %reason, "rollout failed: rolled back");
                    self.events.emit(
                        NewEvent::new(
                            EventKind::RolledBack,
                            format!(
                                "version {from} failed ({reason}): rolled back to version {to}"
                            ),
                        )
                        .job(job),
                    );
                }
                RolloutEvent::Failed {
                    job,
                    version,
                    reason,
                } => {
                    warn!(job = %job, version, reason = %reason, "rollout failing, no earlier version to return to")
                }
            }
        }
        let now: BTreeMap<String, String> = stuck_jobs
            .into_iter()
            .map(|(job, why)| (job, why.to_string()))
            .collect();
        let mut last = self.stuck.lock().await;
        for (job, why) in &now {
            if last.get(job) != Some(why) {
                warn!(job = %job, reason = %why, "cannot place all replicas");
                self.events.emit(
                    NewEvent::new(
                        EventKind::Unplaceable,
                        format!("cannot place all replicas: {why}"),
                    )
                    .job(job.clone()),
                );
            }
        }
        *last = now;
        Ok(wrote)
    }

    /// Computes a plan from the state it will meet and commits it,
    /// retrying (from the applied state) when it lost a race.
    async fn planned<T>(
        &self,
        quota: Quota,
        mut f: impl FnMut(&Input<'_>) -> Result<(Plan, T), PlanError>,
    ) -> Result<T, ControlError> {
        let mut last = String::new();
        let mut fresh = false;
        for _ in 0..MAX_PLAN_ATTEMPTS {
            let started = std::time::Instant::now();
            let mut lane = self.plan_lock.lock().await;
            let state = self.base(&mut lane, fresh).await?;
            let nodes = self.membership.candidates(&state).await;
            let alive: BTreeSet<NodeId> = self.membership.alive_ids_for(state.alloc_nodes()).await;
            let statuses = self.board.all().await;
            let input = Input {
                state: &state,
                nodes: &nodes,
                alive: &alive,
                statuses: &statuses,
                now_ms: crate::clock::now_ms(),
                seed: rand::rng().random(),
            };
            let (plan, out) = f(&input)?;
            if plan.is_empty() {
                return Ok(out);
            }
            let placed: Vec<(String, String, NodeId)> = plan
                .add_allocs
                .iter()
                .map(|a| (a.id.clone(), a.job.clone(), a.node))
                .collect();
            let cmd = Command::Plan(plan);
            if quota == Quota::User {
                check_quota(state.clone(), &cmd)?;
            }
            let queued = self.enqueue(&mut lane, state, cmd);
            drop(lane);
            match self.wait(queued).await? {
                CommandResult::Applied { .. } => {
                    self.metrics.plans.inc();
                    self.metrics
                        .plan_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.placements.inc_by(placed.len() as u64);
                    for (alloc, job, node) in placed {
                        let name = self.node_name(node).await;
                        self.events.emit(
                            NewEvent::new(EventKind::Placed, format!("placed on {name}"))
                                .node(name)
                                .job(job)
                                .alloc(alloc),
                        );
                    }
                    return Ok(out);
                }
                CommandResult::Rejected {
                    stale: true,
                    reason,
                } => {
                    last = reason;
                    fresh = true;
                }
                CommandResult::Rejected { reason, .. } => {
                    return Err(ControlError::Rejected(reason))
                }
                other => {
                    return Err(ControlError::OutcomeUnknown(format!(
                        "unexpected result {other:?}"
                    )))
                }
            }
        }
        Err(ControlError::Rejected(format!(
            "state kept changing while planning: {last}"
        )))
    }

    /// The state the next write will meet. Confirms leadership with a
    /// quorum (and waits until everything committed is applied) once per
    /// term, or again when `fresh` is asked for or a queued write failed;
    /// otherwise it is the applied state plus the writes still queued.
    async fn base(&self, lane: &mut Lane, fresh: bool) -> Result<ClusterState, ControlError> {
        self.ensure_storage()?;
        let term = self.leading_term()?;
        let invalid = self.commits.take_invalid();
        if fresh || invalid || lane.confirmed_term != Some(term) {
            lane.projected = None;
            lane.confirmed_term = None;
            self.ensure_leader().await?;
            lane.confirmed_term = Some(self.leading_term()?);
        }
        if self.commits.outstanding() == 0 {
            lane.projected = None;
        }
        Ok(match &lane.projected {
            Some(projected) => projected.clone(),
            None => self.state.snapshot().await,
        })
    }

    /// This node's term if it believes it leads, else who does.
    fn leading_term(&self) -> Result<u64, ControlError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.current_leader == Some(m.id) {
            return Ok(m.current_term);
        }
        let leader = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|peer| (id, peer.clone()))
        });
        Err(ControlError::NotLeader { leader })
    }

    /// Queues `cmd` (as the current call's next request, if a call is
    /// served), planned against `base`, and makes what it leaves the
    /// base of the next write. Call it under the plan lock.
    fn enqueue(
        &self,
        lane: &mut Lane,
        mut base: ClusterState,
        cmd: Command,
    ) -> tokio::sync::oneshot::Receiver<commit::Answer> {
        let key = match next_key() {
            Some(key) if request_ids_enabled(&base) => Some(key),
            _ => None,
        };
        let cmd = match key {
            Some(key) => Command::Request {
                key,
                command: Box::new(cmd),
            },
            None => cmd,
        };
        // The same deterministic apply the state machine will run.
        base.apply(&cmd);
        lane.projected = Some(base);
        self.commits.enqueue(cmd)
    }

    /// Waits until this node is a confirmed leader with everything
    /// committed so far applied, so plans start from the latest state.
    async fn ensure_leader(&self) -> Result<(), ControlError> {
        // A degraded node's Raft may be stuck on its disk: do not even ask.
        self.ensure_storage()?;
        // A quorum that did not answer one round in time (a voter busy with
        // a slow fsync, say) is usually back a moment later: retry within
        // QUORUM_WAIT before reporting the control plane unavailable.
        let deadline = tokio::time::Instant::now() + QUORUM_WAIT;
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(checked) = tokio::time::timeout(left, self.raft.ensure_linearizable()).await
            else {
                self.ensure_storage()?;
                return Err(ControlError::Unavailable(format!(
                    "leadership not confirmed within {QUORUM_WAIT:?}"
                )));
            };
            match checked {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(ControlError::NotLeader {
                        leader: f.leader_id.zip(f.leader_node),
                    })
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %e, "no quorum for a linearizable read yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(800));
                }
                Err(e) => return Err(ControlError::Unavailable(e.to_string())),
            }
        }
    }

    /// Refuses while this node's storage is degraded.
    fn ensure_storage(&self) -> Result<(), ControlError> {
        let health = self.storage.health();
        if health.degraded {
            return Err(ControlError::StorageDegraded(
                health.error.unwrap_or_else(|| "storage error".into()),
            ));
        }
        Ok(())
    }

    /// Commits one command; returns after it is applied on this node.
    async fn write(&self, cmd: Command) -> Result<CommandResult, ControlError> {
        self.write_if(cmd, |_| Ok(())).await
    }

    /// Commits `cmd` if `check` passes on the state it will meet.
    /// Refused before proposing while this node's storage is degraded;
    /// once proposed, a commit that cannot be confirmed (storage failure,
    /// [`COMMIT_WAIT`] passed, Raft stopped) is of unknown outcome.
    async fn write_if(
        &self,
        cmd: Command,
        check: impl FnOnce(&ClusterState) -> Result<(), ControlError>,
    ) -> Result<CommandResult, ControlError> {
        let mut lane = self.plan_lock.lock().await;
        let base = self.base(&mut lane, false).await?;
        check(&base)?;
        let queued = self.enqueue(&mut lane, base, cmd);
        drop(lane);
        self.wait(queued).await
    }

    /// Waits for a queued write's answer. A stale plan changed nothing and
    /// is recomputed under the same request number; any other answer used
    /// the number up (a retry of the whole call on another leader numbers
    /// its writes the same way).
    async fn wait(
        &self,
        queued: tokio::sync::oneshot::Receiver<commit::Answer>,
    ) -> Result<CommandResult, ControlError> {
        let mut storage = self.storage.subscribe();
        let result = tokio::select! {
            r = self.commits.wait(queued) => r,
            _ = storage.wait_for(|h| h.degraded) => {
                let why = self.storage.health().error.unwrap_or_default();
                warn!(error = %why, "storage failed while a write was being committed");
                Err(ControlError::OutcomeUnknown(format!(
                    "this node's raft storage failed meanwhile: {why}"
                )))
            }
            () = tokio::time::sleep(COMMIT_WAIT) => {
                warn!(wait = ?COMMIT_WAIT, "write not committed in time");
                Err(ControlError::OutcomeUnknown(format!(
                    "not committed within {COMMIT_WAIT:?}"
                )))
            }
        };
        if !matches!(result, Ok(CommandResult::Rejected { stale: true, .. })) {
            advance_key();
        }
        match result? {
            CommandResult::Rejected {
                reason,
                stale: false,
            } => Err(ControlError::Rejected(reason)),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Job;
    use skein_protocol::api::STATE_QUOTA_BYTES;

    fn spec(name: &str, arg_bytes: usize) -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "replicas": 0, "image": "img", "args": ["x".repeat(arg_bytes)],
        }))
        .unwrap()
    }

    fn put(state: &ClusterState, spec: JobSpec) -> Command {
        Command::Plan(Plan {
            base_version: state.version,
            put_jobs: vec![Job::new(spec, 1, 0)],
            ..Plan::default()
        })
    }

    #[test]
    fn a_spec_over_the_per_job_limit_is_refused_with_its_figures() {
        assert!(check_spec_size(&spec("ok", 200 * 1024)).is_ok());
        let e = check_spec_size(&spec("big", 300 * 1024)).unwrap_err();
        assert!(e.contains("job big"), "{e}");
        assert!(e.contains(&MAX_JOB_SPEC_BYTES.to_string()), "{e}");
    }

    #[test]
    fn user_writes_stop_at_the_quota_but_shrinking_ones_pass() {
        let mut state = ClusterState {
            schema: skein_protocol::codec::Schema::CURRENT,
            ..ClusterState::default()
        };
        let mut i = 0;
        let refused = loop {
            let cmd = put(&state, spec(&format!("j{i}"), 200 * 1024));
            match check_quota(state.clone(), &cmd) {
                Ok(()) => {
                    assert!(matches!(state.apply(&cmd), CommandResult::Applied { .. }));
                    i += 1;
                }
                Err(e) => break e,
            }
        };
        let ControlError::TooLarge(msg) = refused else {
            panic!("{refused:?}");
        };
        assert!(msg.contains(&STATE_QUOTA_BYTES.to_string()), "{msg}");
        assert!(state.encoded_len() <= STATE_QUOTA_BYTES);
        assert!(i >= 35, "refused after {i} jobs of 200 KiB");
        // A smaller replacement of an existing job shrinks the state: allowed.
        let shrink = put(&state, spec("j0", 10));
        assert!(check_quota(state.clone(), &shrink).is_ok());
    }
}
