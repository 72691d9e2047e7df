//! The write path of the control plane: turns user intents (apply, scale,
//! stop, restart) into plans and commits them through Raft.
//!
//! Only the leader plans. Plans are computed under one lock from an
//! up-to-date (linearizable) state and carry its version, so a plan that
//! raced with another write is rejected by the state machine and simply
//! recomputed. A call returns only after its command is committed.

pub mod planner;
pub mod voters;

use std::collections::BTreeSet;
use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use rand::Rng;
use skein_protocol::api::{ApplyResponse, ChangeKind};
use skein_protocol::spec::JobSpec;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::membership::Membership;
use crate::raft::{RaftPeer, SkeinRaft, StateHandle};
use crate::scheduler::NodeCandidate;
use crate::state::{node_id_str, ClusterState, Command, CommandResult, NodeId, Plan};
pub use planner::PlanError;

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
}

/// The leader-side write path.
pub struct Control {
    raft: SkeinRaft,
    state: Arc<StateHandle>,
    membership: Arc<Membership>,
    plan_lock: Mutex<()>,
}

impl Control {
    /// A control plane over `raft`.
    pub fn new(raft: SkeinRaft, state: Arc<StateHandle>, membership: Arc<Membership>) -> Self {
        Self {
            raft,
            state,
            membership,
            plan_lock: Mutex::new(()),
        }
    }

    /// The Raft handle (metrics, membership changes).
    pub fn raft(&self) -> &SkeinRaft {
        &self.raft
    }

    /// Creates or updates jobs atomically.
    pub async fn apply(&self, specs: Vec<JobSpec>) -> Result<ApplyResponse, ControlError> {
        let results = self
            .planned(|s, nodes, ready, seed| planner::apply(s, nodes, ready, &specs, seed))
            .await?;
        for r in &results {
            if r.change != ChangeKind::Unchanged {
                info!(job = %r.name, version = r.version, replicas = r.allocations.len(), "job {}", match r.change { ChangeKind::Created => "created", _ => "updated" });
            }
        }
        Ok(ApplyResponse { jobs: results })
    }

    /// Sets a job's replica count.
    pub async fn scale(&self, job: &str, replicas: u32) -> Result<(), ControlError> {
        self.planned(|s, nodes, ready, seed| {
            planner::scale(s, nodes, ready, job, replicas, seed).map(|p| (p, ()))
        })
        .await?;
        info!(job, replicas, "job scaled");
        Ok(())
    }

    /// Stops a job: removes its allocations, keeps its spec.
    pub async fn stop(&self, job: &str) -> Result<(), ControlError> {
        self.planned(|s, _, _, _| planner::stop(s, job).map(|p| (p, ())))
            .await?;
        info!(job, "job stopped");
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

    /// Heals every job (lost nodes, missing replicas). Returns whether
    /// anything was written.
    pub async fn reconcile(&self) -> Result<bool, ControlError> {
        let mut stuck_jobs = Vec::new();
        let wrote = self
            .planned(|s, nodes, ready, seed| {
                let (plan, stuck) = planner::reconcile(s, nodes, ready, seed);
                stuck_jobs = stuck;
                let changed = !plan.is_empty();
                Ok((plan, changed))
            })
            .await?;
        for (job, why) in stuck_jobs {
            warn!(job = %job, reason = %why, "cannot place all replicas");
        }
        Ok(wrote)
    }

    /// Computes a plan from fresh state and commits it, retrying when it
    /// lost a race with another write.
    async fn planned<T>(
        &self,
        mut f: impl FnMut(
            &ClusterState,
            &[NodeCandidate],
            &BTreeSet<NodeId>,
            u64,
        ) -> Result<(Plan, T), PlanError>,
    ) -> Result<T, ControlError> {
        let _guard = self.plan_lock.lock().await;
        let mut last = String::new();
        for _ in 0..MAX_PLAN_ATTEMPTS {
            self.ensure_leader().await?;
            let state = self.state.snapshot().await;
            let nodes = self.membership.candidates(&state).await;
            let alive = self.membership.alive_ids().await;
            let seed = rand::rng().random();
            let (plan, out) = f(&state, &nodes, &alive, seed)?;
            if plan.is_empty() {
                return Ok(out);
            }
            match self.write(Command::Plan(plan)).await? {
                CommandResult::Applied { .. } => return Ok(out),
                CommandResult::Rejected {
                    stale: true,
                    reason,
                } => last = reason,
                CommandResult::Rejected { reason, .. } => {
                    return Err(ControlError::Rejected(reason))
                }
            }
        }
        Err(ControlError::Rejected(format!(
            "state kept changing while planning: {last}"
        )))
    }

    /// Waits until this node is a confirmed leader with everything
    /// committed so far applied, so plans start from the latest state.
    async fn ensure_leader(&self) -> Result<(), ControlError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ControlError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                })
            }
            Err(e) => Err(ControlError::Unavailable(e.to_string())),
        }
    }

    /// Commits one command; returns after it is applied on this node.
    async fn write(&self, cmd: Command) -> Result<CommandResult, ControlError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => match resp.data {
                CommandResult::Rejected {
                    reason,
                    stale: false,
                } => Err(ControlError::Rejected(reason)),
                other => Ok(other),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControlError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                })
            }
            Err(e) => Err(ControlError::Unavailable(e.to_string())),
        }
    }
}
