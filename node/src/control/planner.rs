//! Plans: the job and allocation changes that bring the state closer to
//! what users asked for.
//!
//! Pure functions of (state, nodes, statuses, time, request). The leader
//! calls them under its planning lock and submits the result as one Raft
//! command, so a job and its placements are committed together or not at
//! all. A spec change starts a rollout: every pass (apply, scale, the
//! reconcile loop) takes one bounded step of it (`rollout.rs`), and the
//! reconcile loop completes it or rolls it back.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use skein_protocol::api::{ChangeKind, JobApplyResult, RolloutState};
use skein_protocol::spec::JobSpec;

use super::rollout::{self, Outcome, Replica, Report, Statuses};
use crate::scheduler::{self, NodeCandidate, PlacementRequest};
use crate::state::{Allocation, ClusterState, Job, NodeId, Plan, Revision, Rollout, HISTORY_LIMIT};

/// Why a request cannot be planned; shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The named job does not exist.
    #[error("job {0} not found")]
    UnknownJob(String),
    /// The scheduler found no room.
    #[error("{0}")]
    Unplaceable(String),
    /// The request contradicts the job's state (undo with nothing to
    /// return to, a version that is not kept, …).
    #[error("{0}")]
    Refused(String),
    /// The request breaks a cluster rule (a published port outside the
    /// publish range, …).
    #[error("{0}")]
    Invalid(String),
}

/// What a plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Committed state.
    pub state: &'a ClusterState,
    /// Ready nodes as placement candidates (drained ones are skipped here).
    pub nodes: &'a [NodeCandidate],
    /// Nodes that are not dead: their allocations stay.
    pub alive: &'a BTreeSet<NodeId>,
    /// Observed allocation statuses (readiness drives rolling updates).
    pub statuses: &'a Statuses,
    /// Wall-clock time (Unix ms) stamped on versions and rollouts.
    pub now_ms: u64,
    /// Seed for allocation ids and dynamic ports.
    pub seed: u64,
}

/// Something a reconcile pass decided about a rollout, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutEvent {
    /// Every replica of `version` runs and is ready.
    Completed {
        /// Job name.
        job: String,
        /// The version rolled out.
        version: u64,
    },
    /// `from` failed; `to` (the last good version) is current again.
    RolledBack {
        /// Job name.
        job: String,
        /// The failed version.
        from: u64,
        /// The version returned to.
        to: u64,
        /// Why.
        reason: String,
    },
    /// `version` fails and there is nothing to return to.
    Failed {
        /// Job name.
        job: String,
        /// The failing version.
        version: u64,
        /// Why.
        reason: String,
    },
}

/// The result of [`reconcile`].
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The plan (maybe empty).
    pub plan: Plan,
    /// Jobs whose replicas could not all be placed, and why.
    pub stuck: Vec<(String, PlanError)>,
    /// Rollouts that completed, failed or were rolled back.
    pub events: Vec<RolloutEvent>,
}

/// A job's allocations, sorted by what a pass does with them.
#[derive(Default)]
struct Sorted {
    /// On dead nodes: replaced at once.
    lost: Vec<Allocation>,
    /// Current version beyond the replica count or duplicated: removed at once.
    extra: Vec<Allocation>,
    /// Current version on a usable node, one per index below the count.
    current: Vec<Allocation>,
    /// Older versions, or on drained nodes: replaced gradually.
    outdated: Vec<Allocation>,
}

/// Whether placement may fall short (heal what fits) or must be whole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    Whole,
    AsMuchAsFits,
}

/// Working copy of a plan under construction.
struct Draft<'a> {
    state: &'a ClusterState,
    statuses: &'a Statuses,
    now_ms: u64,
    nodes: Vec<NodeCandidate>,
    plan: Plan,
    rng: rand::rngs::StdRng,
}

impl<'a> Draft<'a> {
    fn new(input: &Input<'a>) -> Self {
        let state = input.state;
        Self {
            state,
            statuses: input.statuses,
            now_ms: input.now_ms,
            // Drained nodes take no new work.
            nodes: input
                .nodes
                .iter()
                .filter(|n| !state.drained.contains(&n.id))
                .cloned()
                .collect(),
            plan: Plan {
                base_version: state.version,
                ..Plan::default()
            },
            rng: rand::rngs::StdRng::seed_from_u64(input.seed),
        }
    }

    /// Frees an allocation's reservations and schedules its removal.
    fn remove(&mut self, a: &Allocation) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.id == a.node) {
            n.allocated = n.allocated.saturating_sub(a.resources);
            for p in &a.ports {
                n.used_ports.remove(&(p.host_port, p.protocol));
            }
            if let Some(c) = n.job_replicas.get_mut(&a.job) {
                *c = c.saturating_sub(1);
            }
        }
        self.plan.remove_allocs.push(a.id.clone());
    }

    /// Places the replicas `indexes` of `job`; with [`Fill::AsMuchAsFits`]
    /// as many of them (lowest first) as fit, reporting the shortfall.
    fn place(&mut self, job: &Job, indexes: &[u32], fill: Fill) -> Result<(), PlanError> {
        if indexes.is_empty() {
            return Ok(());
        }
        let spec = &job.spec;
        let req = PlacementRequest {
            job: &spec.name,
            image: &spec.image,
            image_required: spec.pull_policy() == skein_protocol::image::PullPolicy::Never,
            resources: spec.resources.requests,
            ports: &spec.ports,
            constraints: &spec.constraints,
            strategy: spec.placement,
            container: &spec.container,
        };
        let count = u32::try_from(indexes.len()).unwrap_or(u32::MAX);
        let seed = self.rng.random();
        let (placed, shortfall) = match scheduler::place(&mut self.nodes, &req, count, seed) {
            Ok(p) => (p, None),
            Err(e) if fill == Fill::AsMuchAsFits => {
                // Placement is monotone in the count: find the most that fit.
                let (mut lo, mut hi) = (0u32, count - 1);
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    let mut probe = self.nodes.clone();
                    if scheduler::place(&mut probe, &req, mid, seed).is_ok() {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                let placed = scheduler::place(&mut self.nodes, &req, lo, seed)
                    .map_err(|e| PlanError::Unplaceable(e.0))?;
                (placed, Some(PlanError::Unplaceable(e.0)))
            }
            Err(e) => return Err(PlanError::Unplaceable(e.0)),
        };
        for (index, p) in indexes.iter().zip(placed) {
            let id = format!("{}-{index}-{}", spec.name, suffix(&mut self.rng));
            self.plan.add_allocs.push(Allocation {
                id,
                job: spec.name.clone(),
                index: *index,
                job_version: job.version,
                node: p.node,
                resources: spec.resources.requests,
                ports: p.ports,
                restart_epoch: 0,
            });
        }
        shortfall.map_or(Ok(()), Err)
    }

    /// Sorts `job`'s committed allocations (see [`Sorted`]).
    fn sort(&self, job: &Job, alive: &BTreeSet<NodeId>) -> Sorted {
        let drained = &self.state.drained;
        let mut out = Sorted::default();
        let mut taken = BTreeSet::new();
        let mut rest = Vec::new();
        // Usable current replicas claim their index first, so a copy on a
        // drained node never pushes out a good one.
        for a in self.state.allocs_of(&job.spec.name) {
            if !alive.contains(&a.node) {
                out.lost.push(a.clone());
            } else if a.job_version == job.version
                && a.index < job.spec.replicas
                && !drained.contains(&a.node)
                && taken.insert(a.index)
            {
                out.current.push(a.clone());
            } else {
                rest.push(a.clone());
            }
        }
        for a in rest {
            // Surplus copies of the current version go at once; anything
            // else (older versions, replicas to move off a drained node)
            // is replaced gradually.
            let surplus = a.job_version == job.version
                && (!drained.contains(&a.node) || a.index >= job.spec.replicas);
            if surplus {
                out.extra.push(a);
            } else {
                out.outdated.push(a);
            }
        }
        out
    }

    /// Takes `job` one step towards its replica count at its version:
    /// replaces what died with its node, drops surplus replicas, and
    /// replaces outdated ones within the update's surge and availability
    /// bounds (all at once for a stopped job).
    fn converge(
        &mut self,
        job: &Job,
        alive: &BTreeSet<NodeId>,
        fill: Fill,
    ) -> Result<(), PlanError> {
        let sorted = self.sort(job, alive);
        for a in sorted.lost.iter().chain(&sorted.extra) {
            self.remove(a);
        }
        if job.stopped {
            for a in sorted.current.iter().chain(&sorted.outdated) {
                self.remove(a);
            }
            return Ok(());
        }
        let replicas = |allocs: &[Allocation]| -> Vec<Replica> {
            allocs
                .iter()
                .map(|a| Replica {
                    index: a.index,
                    health: rollout::health_of(a, self.statuses),
                })
                .collect()
        };
        let step = rollout::step(
            job.spec.replicas,
            &job.spec.update,
            &replicas(&sorted.current),
            &replicas(&sorted.outdated),
        );
        for &i in &step.remove {
            if let Some(a) = sorted.outdated.get(i) {
                self.remove(a);
            }
        }
        self.place(job, &step.place, fill)
    }

    /// [`Draft::converge`] for a user request: the step must place whole,
    /// unless only the job's own old replicas are in the way (a surge
    /// replica that fits once they are gone); then the update is accepted
    /// and moves as room frees up. A job that would not fit even alone is
    /// refused, as before rolling updates.
    fn converge_requested(&mut self, job: &Job, alive: &BTreeSet<NodeId>) -> Result<(), PlanError> {
        let saved = (self.nodes.clone(), self.plan.clone());
        let Err(e) = self.converge(job, alive, Fill::Whole) else {
            return Ok(());
        };
        (self.nodes, self.plan) = saved;
        if job.stopped || self.state.allocs_of(&job.spec.name).next().is_none() {
            return Err(e);
        }
        self.fits_alone(job)?;
        match self.converge(job, alive, Fill::AsMuchAsFits) {
            Ok(()) | Err(PlanError::Unplaceable(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Whether all of `job`'s replicas would fit if none of its current
    /// allocations held anything.
    fn fits_alone(&self, job: &Job) -> Result<(), PlanError> {
        let mut probe = Draft {
            state: self.state,
            statuses: self.statuses,
            now_ms: self.now_ms,
            nodes: self.nodes.clone(),
            plan: Plan::default(),
            rng: self.rng.clone(),
        };
        let removed: BTreeSet<&String> = self.plan.remove_allocs.iter().collect();
        for a in self.state.allocs_of(&job.spec.name) {
            if !removed.contains(&a.id) {
                probe.remove(a);
            }
        }
        let all: Vec<u32> = (0..job.spec.replicas).collect();
        probe.place(job, &all, Fill::Whole)
    }

    /// Judges `job`'s rollout from its replicas; rolls it back (changing
    /// `job`) when its version fails and a good version is kept.
    fn advance(&self, job: &mut Job, alive: &BTreeSet<NodeId>) -> Option<RolloutEvent> {
        if job.stopped {
            return None;
        }
        let sorted = self.sort(job, alive);
        let name = job.spec.name.clone();
        let reports: Vec<Report<'_>> = sorted
            .current
            .iter()
            .map(|a| {
                let status = self.statuses.get(&a.node).and_then(|m| m.get(&a.id));
                Report {
                    id: &a.id,
                    health: rollout::health(status),
                    detail: rollout::failure_detail(status),
                }
            })
            .collect();
        let others = sorted.lost.len() + sorted.extra.len() + sorted.outdated.len();
        let rollout = job.rollout.as_mut()?;
        if rollout.to_version != job.version {
            return None;
        }
        let rollback_to = rollout.rollback_to;
        let outcome = rollout::advance(
            rollout,
            job.spec.replicas,
            job.spec.update.progress_deadline_secs,
            &reports,
            others,
            self.now_ms,
        );
        let from = job.version;
        match outcome {
            Outcome::Unchanged | Outcome::Progressed => None,
            Outcome::Completed => Some(RolloutEvent::Completed {
                job: name,
                version: from,
            }),
            Outcome::Failing(reason) => match rollback_to.filter(|g| job.revision(*g).is_some()) {
                Some(good) => {
                    *job = rolled_back(job, good, reason.clone(), self.now_ms);
                    Some(RolloutEvent::RolledBack {
                        job: name,
                        from,
                        to: good,
                        reason,
                    })
                }
                None => {
                    if let Some(r) = job.rollout.as_mut() {
                        r.state = RolloutState::Failed;
                        r.message = Some(reason.clone());
                    }
                    Some(RolloutEvent::Failed {
                        job: name,
                        version: from,
                        reason,
                    })
                }
            },
        }
    }

    fn allocation_ids(&self, job: &str) -> Vec<String> {
        let removed: BTreeSet<&String> = self.plan.remove_allocs.iter().collect();
        let mut ids: Vec<(u32, String)> = self
            .state
            .allocs_of(job)
            .filter(|a| !removed.contains(&a.id))
            .chain(self.plan.add_allocs.iter().filter(|a| a.job == job))
            .map(|a| (a.index, a.id.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }
}

/// `job` back at its kept version `good` (with its current replica count
/// and update strategy); the failed version goes into the history.
fn rolled_back(job: &Job, good: u64, reason: String, now_ms: u64) -> Job {
    let Some(rev) = job.revision(good).cloned() else {
        return job.clone();
    };
    let mut spec = rev.spec;
    spec.replicas = job.spec.replicas;
    spec.update = job.spec.update;
    let mut history: Vec<Revision> = job
        .history
        .iter()
        .filter(|r| r.version != good)
        .cloned()
        .collect();
    history.push(Revision {
        version: job.version,
        spec: job.spec.clone(),
        created_ms: job.created_ms,
        rolled_back: true,
    });
    history.sort_by_key(|r| r.version);
    let mut rollout = Rollout::start(Some(job.version), good, None, now_ms);
    rollout.state = RolloutState::RolledBack;
    rollout.message = Some(reason);
    Job {
        spec,
        version: good,
        stopped: false,
        created_ms: rev.created_ms,
        history,
        rollout: Some(rollout),
    }
}

/// Six lowercase alphanumerics: short enough to read, unique enough for
/// the life of a job.
fn suffix(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether two specs differ only in the replica count or update strategy
/// (a scale or a policy change, which keeps running containers).
fn same_template(a: &JobSpec, b: &JobSpec) -> bool {
    let template = |s: &JobSpec| JobSpec {
        replicas: 0,
        update: Default::default(),
        ..s.clone()
    };
    template(a) == template(b)
}

/// Keeps the newest [`HISTORY_LIMIT`] revisions, and any other that
/// allocations still run or a rollback may return to.
fn prune(history: &mut Vec<Revision>, keep: &BTreeSet<u64>) {
    history.sort_by_key(|r| r.version);
    let cut = history.len().saturating_sub(HISTORY_LIMIT);
    let mut i = 0;
    history.retain(|r| {
        i += 1;
        i > cut || keep.contains(&r.version)
    });
}

/// `spec` as the new state of `old` (if any) at `now_ms`: unchanged, a
/// scale (same version), or a new version with a rollout from the old one.
/// `in_use`: versions the job's allocations run.
fn update_job(
    old: Option<&Job>,
    spec: &JobSpec,
    in_use: &BTreeSet<u64>,
    now_ms: u64,
) -> (Job, ChangeKind) {
    let Some(old) = old else {
        let mut job = Job::new(spec.clone(), 1, now_ms);
        job.rollout = Some(Rollout::start(None, 1, None, now_ms));
        return (job, ChangeKind::Created);
    };
    if !old.stopped && old.spec == *spec {
        return (old.clone(), ChangeKind::Unchanged);
    }
    if !old.stopped && same_template(&old.spec, spec) {
        let job = Job {
            spec: spec.clone(),
            ..old.clone()
        };
        return (job, ChangeKind::Updated);
    }
    let version = old.next_version();
    // A failed rollout returns to the last version known to work.
    let rollback_to = if old.stopped {
        None
    } else {
        match &old.rollout {
            None => Some(old.version),
            Some(r) => match r.state {
                RolloutState::Complete | RolloutState::RolledBack => Some(old.version),
                RolloutState::Progressing => r.rollback_to,
                RolloutState::Failed => None,
            },
        }
    };
    let mut history = old.history.clone();
    history.push(Revision {
        version: old.version,
        spec: old.spec.clone(),
        created_ms: old.created_ms,
        rolled_back: false,
    });
    let mut keep = in_use.clone();
    keep.extend(rollback_to);
    prune(&mut history, &keep);
    let job = Job {
        spec: spec.clone(),
        version,
        stopped: false,
        created_ms: now_ms,
        history,
        rollout: Some(Rollout::start(
            (!old.stopped).then_some(old.version),
            version,
            rollback_to,
            now_ms,
        )),
    };
    let change = if old.stopped {
        ChangeKind::Created
    } else {
        ChangeKind::Updated
    };
    (job, change)
}

/// Versions the allocations of `job` run.
fn versions_in_use(state: &ClusterState, job: &str) -> BTreeSet<u64> {
    state.allocs_of(job).map(|a| a.job_version).collect()
}

/// Plans creating or updating `specs` (all validated). An update starts a
/// rollout: its first step is planned here, the rest by [`reconcile`].
pub fn apply_with(
    input: &Input<'_>,
    specs: &[JobSpec],
) -> Result<(Plan, Vec<JobApplyResult>), PlanError> {
    let state = input.state;
    let mut d = Draft::new(input);
    let mut jobs = Vec::new();
    for spec in specs {
        let in_use = versions_in_use(state, &spec.name);
        let (job, change) = update_job(state.jobs.get(&spec.name), spec, &in_use, input.now_ms);
        d.converge_requested(&job, input.alive)?;
        if change != ChangeKind::Unchanged {
            d.plan.put_jobs.push(job.clone());
        }
        jobs.push((job, change));
    }
    let results = jobs
        .iter()
        .map(|(job, change)| JobApplyResult {
            name: job.spec.name.clone(),
            change: *change,
            version: job.version,
            allocations: d.allocation_ids(&job.spec.name),
        })
        .collect();
    Ok((d.plan, results))
}

/// [`apply_with`] without statuses, at time 0: for dry runs (`POST
/// /v1/plan`), which commit nothing. Replicas count as not yet observed,
/// so an update shows its first surge step.
pub fn apply(
    state: &ClusterState,
    nodes: &[NodeCandidate],
    alive: &BTreeSet<NodeId>,
    specs: &[JobSpec],
    seed: u64,
) -> Result<(Plan, Vec<JobApplyResult>), PlanError> {
    let statuses = Statuses::new();
    apply_with(
        &Input {
            state,
            nodes,
            alive,
            statuses: &statuses,
            now_ms: 0,
            seed,
        },
        specs,
    )
}

/// Plans setting `job`'s replica count.
pub fn scale(input: &Input<'_>, job: &str, replicas: u32) -> Result<Plan, PlanError> {
    let old = input
        .state
        .jobs
        .get(job)
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    let mut new = old.clone();
    new.spec.replicas = replicas;
    let mut d = Draft::new(input);
    d.converge_requested(&new, input.alive)?;
    d.plan.put_jobs.push(new);
    Ok(d.plan)
}

/// Plans rolling `job` back to its kept version `to` (default: the newest
/// earlier version with another spec), as a new version with that spec
/// and the current replica count.
pub fn undo(
    input: &Input<'_>,
    job: &str,
    to: Option<u64>,
) -> Result<(Plan, JobApplyResult), PlanError> {
    let old = input
        .state
        .jobs
        .get(job)
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    if old.stopped {
        return Err(PlanError::Refused(format!(
            "job {job} is stopped; apply it to start it again"
        )));
    }
    let target = match to {
        Some(v) if v == old.version => {
            return Err(PlanError::Refused(format!(
                "version {v} is already the current version of job {job}"
            )))
        }
        Some(v) => old.revision(v).ok_or_else(|| {
            let kept: Vec<String> = old.history.iter().map(|r| r.version.to_string()).collect();
            PlanError::Refused(format!(
                "job {job} keeps no version {v} (kept: {})",
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(", ")
                }
            ))
        })?,
        None => old
            .history
            .iter()
            .rev()
            .find(|r| !same_template(&r.spec, &old.spec))
            .ok_or_else(|| {
                PlanError::Refused(format!(
                    "job {job} has no earlier version with another spec to go back to"
                ))
            })?,
    };
    let mut spec = target.spec.clone();
    spec.replicas = old.spec.replicas;
    spec.update = old.spec.update;
    let (plan, mut results) = apply_with(input, std::slice::from_ref(&spec))?;
    let result = results
        .pop()
        .ok_or_else(|| PlanError::Refused("nothing planned".into()))?;
    Ok((plan, result))
}

/// Plans stopping `job`: its allocations go, its spec stays (stopped).
pub fn stop(state: &ClusterState, job: &str) -> Result<Plan, PlanError> {
    let old = state
        .jobs
        .get(job)
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    let statuses = Statuses::new();
    let none = BTreeSet::new();
    let mut d = Draft::new(&Input {
        state,
        nodes: &[],
        alive: &none,
        statuses: &statuses,
        now_ms: 0,
        seed: 0,
    });
    let stopped = Job {
        stopped: true,
        rollout: None,
        ..old.clone()
    };
    d.converge(&stopped, &none, Fill::Whole)?;
    d.plan.put_jobs.push(stopped);
    Ok(d.plan)
}

/// Plans one pass over every job: judges rollouts (completing or rolling
/// them back), replaces allocations lost with their nodes, moves work off
/// drained nodes and takes the next step of every rolling update. What
/// cannot be placed right now is placed in part and reported, so one
/// stuck job does not block the others.
pub fn reconcile(input: &Input<'_>) -> Reconciled {
    let mut d = Draft::new(input);
    let mut out = Reconciled::default();
    for old in input.state.jobs.values() {
        let mut job = old.clone();
        if let Some(e) = d.advance(&mut job, input.alive) {
            out.events.push(e);
        }
        if let Err(e) = d.converge(&job, input.alive, Fill::AsMuchAsFits) {
            out.stuck.push((job.spec.name.clone(), e));
        }
        if job != *old {
            d.plan.put_jobs.push(job);
        }
    }
    out.plan = d.plan;
    out
}

/// Whether a pass would have work beyond healing: a rollout under way, or
/// allocations of older versions or on drained nodes. The leader re-plans
/// on status changes only then.
pub fn in_motion(state: &ClusterState) -> bool {
    state.jobs.values().any(|j| {
        j.rollout
            .as_ref()
            .is_some_and(|r| r.state == RolloutState::Progressing)
    }) || state.allocs.values().any(|a| {
        state.drained.contains(&a.node)
            || state
                .jobs
                .get(&a.job)
                .is_some_and(|j| j.version != a.job_version)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use proptest::prelude::*;
    use skein_protocol::api::{AllocState, AllocStatus};
    use skein_protocol::spec::{PortProtocol, PortSpec, ResourceVec, UpdateStrategy};

    fn node(id: NodeId) -> NodeCandidate {
        NodeCandidate {
            id,
            name: format!("n{id}"),
            labels: Default::default(),
            capacity: ResourceVec::new(2000, 4 << 30),
            allocated: ResourceVec::default(),
            used_ports: Default::default(),
            port_range: 20000..=20100,
            images: None,
            job_replicas: Default::default(),
            host_access: Default::default(),
        }
    }

    fn spec(name: &str, replicas: u32) -> JobSpec {
        JobSpec {
            name: name.into(),
            replicas,
            image: "img".into(),
            command: vec![],
            args: vec![],
            env: Default::default(),
            ports: vec![PortSpec {
                name: None,
                container_port: 80,
                host_port: None,
                protocol: PortProtocol::Tcp,
            }],
            resources: Default::default(),
            restart: Default::default(),
            labels: Default::default(),
            constraints: Default::default(),
            placement: Default::default(),
            service: None,
            checks: vec![],
            update: Default::default(),
            pull: None,
            pull_secrets: vec![],
            container: Default::default(),
        }
    }

    /// `spec` with another image and a rolling strategy.
    fn version(name: &str, replicas: u32, image: &str, surge: u32, unavailable: u32) -> JobSpec {
        JobSpec {
            image: image.into(),
            update: UpdateStrategy {
                max_surge: surge,
                max_unavailable: unavailable,
                progress_deadline_secs: 60,
            },
            ..spec(name, replicas)
        }
    }

    fn commit(state: &mut ClusterState, plan: Plan) {
        let r = state.apply(&crate::state::Command::Plan(plan));
        assert!(
            matches!(r, crate::state::CommandResult::Applied { .. }),
            "{r:?}"
        );
    }

    fn candidates(state: &ClusterState, ids: &[NodeId]) -> Vec<NodeCandidate> {
        ids.iter()
            .map(|&id| {
                let mut n = node(id);
                n.allocated = state.allocated_on(id);
                for a in state.allocs_on(id) {
                    *n.job_replicas.entry(a.job.clone()).or_default() += 1;
                    n.used_ports
                        .extend(a.ports.iter().map(|p| (p.host_port, p.protocol)));
                }
                n
            })
            .collect()
    }

    /// A simulated cluster: state, nodes, and a status board the test
    /// writes as an executor would.
    struct Sim {
        state: ClusterState,
        nodes: Vec<NodeId>,
        alive: BTreeSet<NodeId>,
        board: Statuses,
        now_ms: u64,
        seed: u64,
    }

    impl Sim {
        fn new(nodes: &[NodeId]) -> Self {
            Self {
                state: ClusterState::default(),
                nodes: nodes.to_vec(),
                alive: nodes.iter().copied().collect(),
                board: Statuses::new(),
                now_ms: 1_000,
                seed: 1,
            }
        }

        fn with<T>(&mut self, f: impl FnOnce(&Input<'_>) -> T) -> T {
            self.seed += 1;
            let nodes = candidates(&self.state, &self.nodes);
            f(&Input {
                state: &self.state,
                nodes: &nodes,
                alive: &self.alive,
                statuses: &self.board,
                now_ms: self.now_ms,
                seed: self.seed,
            })
        }

        fn apply(&mut self, specs: &[JobSpec]) -> Vec<JobApplyResult> {
            let (plan, res) = self.with(|i| apply_with(i, specs)).unwrap();
            commit(&mut self.state, plan);
            res
        }

        fn reconcile(&mut self) -> Reconciled {
            let mut r = self.with(reconcile);
            let plan = std::mem::take(&mut r.plan);
            if !plan.is_empty() {
                commit(&mut self.state, plan);
            }
            r
        }

        /// Reports `state` (ready when running) for allocation `id`.
        fn report(&mut self, id: &str, state: AllocState) {
            let Some(a) = self.state.allocs.get(id) else {
                return;
            };
            self.board.entry(a.node).or_default().insert(
                id.to_string(),
                AllocStatus {
                    state,
                    ready: state == AllocState::Running,
                    ..AllocStatus::default()
                },
            );
        }

        /// Every allocation without a status starts running and ready.
        fn all_ready(&mut self) {
            let ids: Vec<String> = self.state.allocs.keys().cloned().collect();
            for id in ids {
                let known = self.status(&id).is_some();
                if !known {
                    self.report(&id, AllocState::Running);
                }
            }
        }

        fn status(&self, id: &str) -> Option<&AllocStatus> {
            let a = self.state.allocs.get(id)?;
            self.board.get(&a.node)?.get(id)
        }

        fn available(&self, job: &str) -> usize {
            self.state
                .allocs_of(job)
                .filter(|a| rollout::health_of(a, &self.board) == rollout::Health::Available)
                .count()
        }

        fn versions(&self, job: &str) -> Vec<u64> {
            self.state.allocs_of(job).map(|a| a.job_version).collect()
        }

        fn job(&self, name: &str) -> &Job {
            &self.state.jobs[name]
        }

        /// Ids of the allocations running job version `v`.
        fn ids_of_version(&self, v: u64) -> Vec<String> {
            self.state
                .allocs
                .values()
                .filter(|a| a.job_version == v)
                .map(|a| a.id.clone())
                .collect()
        }
    }

    #[test]
    fn apply_scale_update_stop() {
        let mut sim = Sim::new(&[1]);
        let res = sim.apply(&[spec("web", 3)]);
        assert_eq!(res[0].change, ChangeKind::Created);
        assert_eq!(res[0].allocations.len(), 3);
        let first: Vec<String> = sim.state.allocs.keys().cloned().collect();
        sim.all_ready();
        let r = sim.reconcile();
        assert!(matches!(
            &r.events[..],
            [RolloutEvent::Completed { version: 1, .. }]
        ));

        // Same spec: nothing to write.
        let (plan, res) = sim.with(|i| apply_with(i, &[spec("web", 3)])).unwrap();
        assert!(plan.is_empty());
        assert_eq!(res[0].change, ChangeKind::Unchanged);

        // Scale up keeps the running replicas.
        let plan = sim.with(|i| scale(i, "web", 5)).unwrap();
        assert!(plan.remove_allocs.is_empty());
        assert_eq!(plan.add_allocs.len(), 2);
        commit(&mut sim.state, plan);
        assert!(first.iter().all(|id| sim.state.allocs.contains_key(id)));
        sim.all_ready();

        // Scale down drops the highest indexes at once.
        let plan = sim.with(|i| scale(i, "web", 2)).unwrap();
        commit(&mut sim.state, plan);
        let idx: Vec<u32> = sim.state.allocs_of("web").map(|a| a.index).collect();
        assert_eq!(idx, [0, 1]);

        // Changing only the update strategy starts no new version.
        let mut policy = spec("web", 2);
        policy.update.max_surge = 2;
        let res = sim.apply(&[policy]);
        assert_eq!((res[0].change, res[0].version), (ChangeKind::Updated, 1));

        // A template change starts a rollout: one surge replica first.
        let mut changed = spec("web", 2);
        changed.image = "img:2".into();
        let (plan, res) = sim.with(|i| apply_with(i, &[changed])).unwrap();
        assert_eq!((res[0].change, res[0].version), (ChangeKind::Updated, 2));
        assert!(plan.remove_allocs.is_empty());
        assert_eq!(plan.add_allocs.len(), 1);
        commit(&mut sim.state, plan);
        let job = sim.job("web");
        assert_eq!(job.history.len(), 1);
        assert_eq!(job.spec_for(1).map(|s| s.image.as_str()), Some("img"));
        let r = job.rollout.as_ref().unwrap();
        assert_eq!(
            (r.from_version, r.to_version, r.state, r.rollback_to),
            (Some(1), 2, RolloutState::Progressing, Some(1))
        );

        let plan = stop(&sim.state, "web").unwrap();
        commit(&mut sim.state, plan);
        assert!(sim.state.allocs.is_empty());
        assert!(sim.job("web").stopped);
        assert_eq!(
            stop(&sim.state, "nope"),
            Err(PlanError::UnknownJob("nope".into()))
        );
    }

    #[test]
    fn reconcile_moves_work_off_lost_nodes() {
        let mut sim = Sim::new(&[1, 2]);
        sim.apply(&[spec("web", 4)]);
        sim.all_ready();
        assert_eq!(sim.state.allocs_on(2).count(), 2);
        sim.nodes = vec![1];
        sim.alive = [1].into();
        let r = sim.reconcile();
        assert!(r.stuck.is_empty());
        assert_eq!(sim.state.allocs_on(1).count(), 4);
        assert_eq!(sim.state.allocs_on(2).count(), 0);
        sim.all_ready();
        // Marks the creation complete, then nothing is left to do.
        assert!(!sim.reconcile().events.is_empty());
        let r = sim.with(reconcile);
        assert!(r.plan.is_empty(), "a healthy state needs no plan");
    }

    /// Runs reconcile passes until the job's rollout leaves `Progressing`,
    /// letting `ready` decide which new allocations become ready, checking
    /// the bounds after every commit. Returns the number of passes.
    fn roll(
        sim: &mut Sim,
        job: &str,
        max_total: usize,
        min_avail: usize,
        mut ready: impl FnMut(&Allocation) -> AllocState,
    ) -> usize {
        for pass in 1..=200 {
            sim.now_ms += 500;
            let r = sim.reconcile();
            let total = sim.state.allocs_of(job).count();
            assert!(total <= max_total, "pass {pass}: {total} allocations");
            let avail = sim.available(job);
            assert!(avail >= min_avail, "pass {pass}: {avail} available");
            let new: Vec<Allocation> = sim
                .state
                .allocs_of(job)
                .filter(|a| sim.status(&a.id).is_none())
                .cloned()
                .collect();
            for a in new {
                let st = ready(&a);
                sim.report(&a.id, st);
            }
            assert!(sim.available(job) >= min_avail);
            let state = sim.job(job).rollout.as_ref().map(|r| r.state);
            if state != Some(RolloutState::Progressing) && r.plan.is_empty() {
                return pass;
            }
        }
        panic!("rollout did not finish");
    }

    #[test]
    fn rolling_update_respects_surge_and_unavailability_at_every_step() {
        let mut sim = Sim::new(&[1, 2]);
        sim.apply(&[version("web", 4, "img:1", 1, 1)]);
        sim.all_ready();
        assert_eq!(roll(&mut sim, "web", 5, 3, |_| AllocState::Running), 1);

        let res = sim.apply(&[version("web", 4, "img:2", 1, 1)]);
        assert_eq!(res[0].version, 2);
        // The first step: one old replica goes, two new ones come.
        let mut v = sim.versions("web");
        v.sort_unstable();
        assert_eq!(v, [1, 1, 1, 2, 2]);
        assert_eq!(sim.available("web"), 3);
        roll(&mut sim, "web", 5, 3, |_| AllocState::Running);
        assert_eq!(sim.versions("web"), [2, 2, 2, 2]);
        let job = sim.job("web");
        assert_eq!(job.rollout.as_ref().unwrap().state, RolloutState::Complete);
        let idx: Vec<u32> = sim.state.allocs_of("web").map(|a| a.index).collect();
        assert_eq!(idx, [0, 1, 2, 3]);
    }

    #[test]
    fn a_crashing_version_is_rolled_back_to_the_last_good_one() {
        let mut sim = Sim::new(&[1]);
        sim.apply(&[version("web", 3, "img:1", 1, 0)]);
        sim.all_ready();
        sim.reconcile();
        let good: BTreeSet<String> = sim.state.allocs.keys().cloned().collect();

        sim.apply(&[version("web", 3, "img:bad", 1, 0)]);
        let new = sim.ids_of_version(2);
        assert_eq!(new.len(), 1);
        sim.report(&new[0], AllocState::Restarting);
        let r = sim.reconcile();
        assert!(
            matches!(&r.events[..], [RolloutEvent::RolledBack { from: 2, to: 1, reason, .. }] if reason.contains("failing")),
            "{:?}",
            r.events
        );
        let job = sim.job("web");
        assert_eq!((job.version, job.spec.image.as_str()), (1, "img:1"));
        let rollout = job.rollout.as_ref().unwrap();
        assert_eq!(rollout.state, RolloutState::RolledBack);
        assert_eq!(rollout.from_version, Some(2));
        assert!(job.history.iter().any(|r| r.version == 2 && r.rolled_back));
        // The crashing replica is gone; the good ones never stopped.
        let now: BTreeSet<String> = sim.state.allocs.keys().cloned().collect();
        assert_eq!(now, good);
        // Nothing more to do, no second event.
        let r = sim.reconcile();
        assert!(r.events.is_empty() && r.plan.is_empty(), "{r:?}");
        // The next version gets a fresh number and can roll back to 1.
        let res = sim.apply(&[version("web", 3, "img:3", 1, 0)]);
        assert_eq!(res[0].version, 3);
        let r = sim.job("web").rollout.clone().unwrap();
        assert_eq!((r.from_version, r.rollback_to), (Some(1), Some(1)));
    }

    #[test]
    fn a_stalled_version_is_rolled_back_after_its_progress_deadline() {
        let mut sim = Sim::new(&[1]);
        sim.apply(&[version("web", 2, "img:1", 1, 0)]);
        sim.all_ready();
        sim.reconcile();
        sim.apply(&[version("web", 2, "img:2", 1, 0)]);
        // The new replica runs but never gets ready.
        let new = sim.ids_of_version(2);
        for id in &new {
            sim.report(id, AllocState::Pending);
        }
        sim.now_ms += 59_000;
        assert!(sim.reconcile().events.is_empty());
        assert_eq!(sim.available("web"), 2);
        sim.now_ms += 2_000;
        let r = sim.reconcile();
        assert!(
            matches!(&r.events[..], [RolloutEvent::RolledBack { reason, .. }] if reason.contains("no progress for 60s")),
            "{:?}",
            r.events
        );
        assert_eq!(sim.versions("web"), [1, 1]);
    }

    #[test]
    fn a_failing_new_job_is_marked_failed_once_and_can_recover() {
        let mut sim = Sim::new(&[1]);
        sim.apply(&[spec("web", 1)]);
        let id = sim.state.allocs.keys().next().cloned().unwrap();
        sim.report(&id, AllocState::Failed);
        let r = sim.reconcile();
        assert!(matches!(
            &r.events[..],
            [RolloutEvent::Failed { version: 1, .. }]
        ));
        assert_eq!(sim.job("web").version, 1);
        assert!(sim.reconcile().events.is_empty());
        sim.report(&id, AllocState::Running);
        let r = sim.reconcile();
        assert!(matches!(
            &r.events[..],
            [RolloutEvent::Completed { version: 1, .. }]
        ));
    }

    #[test]
    fn unknown_statuses_stop_nothing() {
        let mut sim = Sim::new(&[1]);
        sim.apply(&[version("web", 3, "img:1", 1, 1)]);
        // A new leader with an empty board: the old replicas' health is unknown.
        sim.apply(&[version("web", 3, "img:2", 1, 1)]);
        for _ in 0..3 {
            sim.reconcile();
        }
        assert_eq!(sim.versions("web").iter().filter(|v| **v == 1).count(), 3);
        assert_eq!(sim.state.allocs.len(), 4);
    }

    #[test]
    fn history_is_capped_but_keeps_versions_in_use() {
        let mut sim = Sim::new(&[1]);
        for i in 1..=15 {
            sim.apply(&[version("web", 1, &format!("img:{i}"), 1, 0)]);
        }
        let job = sim.job("web");
        assert_eq!(job.version, 15);
        // Nothing was ever ready, so versions 1 and 2 still run: kept
        // beyond the newest ten.
        assert_eq!(sim.versions("web"), [1, 2]);
        let kept: Vec<u64> = job.history.iter().map(|r| r.version).collect();
        assert_eq!(kept, [1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let mut keep = BTreeSet::from([1]);
        let mut h: Vec<Revision> = (1..=20)
            .map(|v| Revision {
                version: v,
                spec: spec("x", 1),
                created_ms: 0,
                rolled_back: false,
            })
            .collect();
        prune(&mut h, &keep);
        assert_eq!(h.len(), HISTORY_LIMIT + 1);
        assert_eq!(h[0].version, 1);
        assert_eq!(h[1].version, 11);
        keep.clear();
        prune(&mut h, &keep);
        assert_eq!(h.len(), HISTORY_LIMIT);
    }

    #[test]
    fn undo_goes_back_as_a_new_version() {
        let mut sim = Sim::new(&[1]);
        sim.apply(&[version("web", 2, "img:1", 1, 0)]);
        sim.all_ready();
        sim.reconcile();
        assert!(matches!(
            sim.with(|i| undo(i, "web", None)),
            Err(PlanError::Refused(_))
        ));
        sim.apply(&[version("web", 2, "img:2", 1, 0)]);
        roll(&mut sim, "web", 3, 2, |_| AllocState::Running);
        let (plan, res) = sim.with(|i| undo(i, "web", None)).unwrap();
        commit(&mut sim.state, plan);
        assert_eq!(res.version, 3);
        assert_eq!(sim.job("web").spec.image, "img:1");
        roll(&mut sim, "web", 3, 2, |_| AllocState::Running);
        assert_eq!(sim.versions("web"), [3, 3]);
        // To a named version; unknown and current ones are refused.
        let (plan, res) = sim.with(|i| undo(i, "web", Some(2))).unwrap();
        commit(&mut sim.state, plan);
        assert_eq!(
            (res.version, sim.job("web").spec.image.as_str()),
            (4, "img:2")
        );
        for bad in [Some(4), Some(99)] {
            assert!(matches!(
                sim.with(|i| undo(i, "web", bad)),
                Err(PlanError::Refused(_))
            ));
        }
        assert!(matches!(
            sim.with(|i| undo(i, "nope", None)),
            Err(PlanError::UnknownJob(_))
        ));
        let history = rollout::history(sim.job("web"));
        let listed: Vec<(u64, bool)> = history.iter().map(|r| (r.version, r.current)).collect();
        assert_eq!(listed, [(1, false), (2, false), (3, false), (4, true)]);
    }

    #[test]
    fn drained_nodes_are_emptied_gradually_and_get_nothing_new() {
        let mut sim = Sim::new(&[1, 2, 3]);
        sim.apply(&[version("web", 6, "img", 1, 0)]);
        sim.all_ready();
        assert_eq!(sim.state.allocs_on(2).count(), 2);
        sim.state.apply(&crate::state::Command::Drain {
            node: 2,
            drained: true,
        });
        assert!(planner_in_motion(&sim));
        for _ in 0..10 {
            let before: BTreeSet<String> = sim.state.allocs_on(2).map(|a| a.id.clone()).collect();
            sim.reconcile();
            let after: BTreeSet<String> = sim.state.allocs_on(2).map(|a| a.id.clone()).collect();
            assert!(
                after.is_subset(&before),
                "a placement landed on the drained node"
            );
            assert!(sim.state.allocs.len() <= 7);
            assert!(sim.available("web") >= 6);
            sim.all_ready();
        }
        assert_eq!(sim.state.allocs_on(2).count(), 0);
        assert_eq!(sim.state.allocs.len(), 6);
        assert!(!planner_in_motion(&sim));
        // A new job avoids it too.
        sim.apply(&[spec("api", 3)]);
        assert_eq!(sim.state.allocs_on(2).count(), 0);
    }

    fn planner_in_motion(sim: &Sim) -> bool {
        in_motion(&sim.state)
    }

    #[test]
    fn an_update_blocked_only_by_its_own_replicas_is_accepted() {
        let mut fixed = version("web", 1, "img:1", 1, 0);
        fixed.ports[0].host_port = Some(8080);
        let mut sim = Sim::new(&[1]);
        sim.apply(&[fixed.clone()]);
        sim.all_ready();
        // The surge replica cannot take port 8080 while the old one holds it.
        fixed.image = "img:2".into();
        let res = sim.apply(&[fixed.clone()]);
        assert_eq!(res[0].version, 2);
        assert_eq!(sim.versions("web"), [1]);
        // With one replica allowed down, it moves: old out, new in.
        fixed.update.max_unavailable = 1;
        fixed.image = "img:3".into();
        sim.apply(&[fixed]);
        roll(&mut sim, "web", 2, 0, |_| AllocState::Running);
        assert_eq!(sim.versions("web"), [3]);
    }

    #[test]
    fn an_update_that_cannot_fit_at_all_is_refused_up_front() {
        let mut sim = Sim::new(&[1]);
        sim.apply(&[spec("web", 2)]);
        let mut huge = spec("web", 2);
        huge.resources.requests.cpu_millis = 5000;
        let before = sim.state.clone();
        let e = sim.with(|i| apply_with(i, &[huge])).unwrap_err();
        assert!(matches!(e, PlanError::Unplaceable(_)), "{e:?}");
        assert_eq!(sim.state, before);
    }

    fn health() -> impl Strategy<Value = AllocState> {
        prop_oneof![
            3 => Just(AllocState::Running),
            1 => Just(AllocState::Pending),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the strategy and however late new replicas get ready,
        /// every committed state of an update keeps both bounds, and the
        /// update completes once replicas do get ready.
        #[test]
        fn rolling_updates_keep_their_bounds(
            replicas in 1u32..7,
            surge in 0u32..3,
            unavailable in 0u32..3,
            delays in proptest::collection::vec(health(), 64),
        ) {
            prop_assume!(surge + unavailable > 0);
            let mut sim = Sim::new(&[1, 2, 3]);
            sim.apply(&[version("web", replicas, "img:1", surge, unavailable)]);
            sim.all_ready();
            sim.reconcile();
            sim.apply(&[version("web", replicas, "img:2", surge, unavailable)]);
            let (max_total, min_avail) = rollout::bounds(
                replicas,
                &UpdateStrategy { max_surge: surge, max_unavailable: unavailable, progress_deadline_secs: 60 },
            );
            let (max_total, min_avail) = (max_total as usize, min_avail as usize);
            prop_assert!(sim.state.allocs.len() <= max_total);
            prop_assert!(sim.available("web") >= min_avail);
            // New replicas get ready late (pending for a while), in random order.
            let mut late: HashMap<String, usize> = HashMap::new();
            let mut k = 0;
            for _ in 0..300 {
                sim.now_ms += 100;
                sim.reconcile();
                prop_assert!(sim.state.allocs_of("web").count() <= max_total);
                prop_assert!(sim.available("web") >= min_avail);
                let ids: Vec<String> = sim.state.allocs.keys().cloned().collect();
                for id in ids {
                    let n = late.entry(id.clone()).or_insert_with(|| { k += 1; k % 4 });
                    let st = if *n == 0 { AllocState::Running } else { delays[k % delays.len()] };
                    *n = n.saturating_sub(1);
                    if sim.status(&id).is_none_or(|s| s.state != AllocState::Running) {
                        sim.report(&id, st);
                    }
                }
                prop_assert!(sim.available("web") >= min_avail);
                if sim.job("web").rollout.as_ref().map(|r| r.state) == Some(RolloutState::Complete) {
                    break;
                }
            }
            prop_assert_eq!(
                sim.job("web").rollout.as_ref().map(|r| r.state),
                Some(RolloutState::Complete)
            );
            prop_assert_eq!(sim.versions("web"), vec![2; replicas as usize]);
        }
    }
}
