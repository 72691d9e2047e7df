//! Plans: the job and allocation changes that bring the state closer to
//! what users asked for.
//!
//! Pure functions of (state, nodes, request). The leader calls them
//! under its planning lock and submits the result as one Raft command, so
//! a job and its placements are committed together or not at all.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use skein_protocol::api::{ChangeKind, JobApplyResult};
use skein_protocol::spec::JobSpec;

use crate::scheduler::{self, NodeCandidate, PlacementRequest};
use crate::state::{Allocation, ClusterState, Job, NodeId, Plan};

/// Why a request cannot be planned; shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The named job does not exist.
    #[error("job {0} not found")]
    UnknownJob(String),
    /// The scheduler found no room.
    #[error("{0}")]
    Unplaceable(String),
}

/// Working copy of a plan under construction.
struct Draft<'a> {
    state: &'a ClusterState,
    nodes: Vec<NodeCandidate>,
    plan: Plan,
    rng: rand::rngs::StdRng,
}

impl<'a> Draft<'a> {
    fn new(state: &'a ClusterState, nodes: &[NodeCandidate], seed: u64) -> Self {
        Self {
            state,
            nodes: nodes.to_vec(),
            plan: Plan {
                base_version: state.version,
                ..Plan::default()
            },
            rng: rand::rngs::StdRng::seed_from_u64(seed),
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

    /// Places the replicas `indexes` of `job`.
    fn place(&mut self, job: &Job, indexes: &[u32]) -> Result<(), PlanError> {
        if indexes.is_empty() {
            return Ok(());
        }
        let spec = &job.spec;
        let req = PlacementRequest {
            job: &spec.name,
            image: &spec.image,
            resources: spec.resources.requests,
            ports: &spec.ports,
            constraints: &spec.constraints,
            strategy: spec.placement,
        };
        let count = u32::try_from(indexes.len()).unwrap_or(u32::MAX);
        let seed = self.rng.random();
        let placed = scheduler::place(&mut self.nodes, &req, count, seed)
            .map_err(|e| PlanError::Unplaceable(e.0))?;
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
        Ok(())
    }

    /// Brings `job`'s allocations to its replica count: keeps healthy
    /// current ones, drops those on dead nodes (not in `alive`) or of older versions,
    /// removes the highest indexes when scaling down, fills the gaps.
    fn converge(&mut self, job: &Job, alive: &BTreeSet<NodeId>) -> Result<(), PlanError> {
        let existing: Vec<Allocation> = self.state.allocs_of(&job.spec.name).cloned().collect();
        let mut kept = BTreeSet::new();
        for a in existing {
            let keep = !job.stopped
                && a.job_version == job.version
                && a.index < job.spec.replicas
                && alive.contains(&a.node)
                && kept.insert(a.index);
            if !keep {
                self.remove(&a);
            }
        }
        let missing: Vec<u32> = if job.stopped {
            Vec::new()
        } else {
            (0..job.spec.replicas)
                .filter(|i| !kept.contains(i))
                .collect()
        };
        self.place(job, &missing)
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

/// Six lowercase alphanumerics: short enough to read, unique enough for
/// the life of a job.
fn suffix(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Whether two specs differ only in the replica count (a scale, which
/// keeps running containers).
fn same_template(a: &JobSpec, b: &JobSpec) -> bool {
    JobSpec {
        replicas: 0,
        ..a.clone()
    } == JobSpec {
        replicas: 0,
        ..b.clone()
    }
}

/// Plans creating or updating `specs` (all validated).
pub fn apply(
    state: &ClusterState,
    nodes: &[NodeCandidate],
    alive: &BTreeSet<NodeId>,
    specs: &[JobSpec],
    seed: u64,
) -> Result<(Plan, Vec<JobApplyResult>), PlanError> {
    let mut d = Draft::new(state, nodes, seed);
    let mut jobs = Vec::new();
    for spec in specs {
        let (job, change) = match state.jobs.get(&spec.name) {
            Some(old) if !old.stopped && old.spec == *spec => (old.clone(), ChangeKind::Unchanged),
            Some(old) if !old.stopped && same_template(&old.spec, spec) => (
                Job {
                    spec: spec.clone(),
                    ..old.clone()
                },
                ChangeKind::Updated,
            ),
            Some(old) => (
                Job {
                    spec: spec.clone(),
                    version: old.version + 1,
                    stopped: false,
                },
                if old.stopped {
                    ChangeKind::Created
                } else {
                    ChangeKind::Updated
                },
            ),
            None => (
                Job {
                    spec: spec.clone(),
                    version: 1,
                    stopped: false,
                },
                ChangeKind::Created,
            ),
        };
        // Free old versions' resources before placing the new ones.
        d.converge(&job, alive)?;
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

/// Plans setting `job`'s replica count.
pub fn scale(
    state: &ClusterState,
    nodes: &[NodeCandidate],
    alive: &BTreeSet<NodeId>,
    job: &str,
    replicas: u32,
    seed: u64,
) -> Result<Plan, PlanError> {
    let old = state
        .jobs
        .get(job)
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    let mut new = old.clone();
    new.spec.replicas = replicas;
    let mut d = Draft::new(state, nodes, seed);
    d.converge(&new, alive)?;
    d.plan.put_jobs.push(new);
    Ok(d.plan)
}

/// Plans stopping `job`: its allocations go, its spec stays (stopped).
pub fn stop(state: &ClusterState, job: &str) -> Result<Plan, PlanError> {
    let old = state
        .jobs
        .get(job)
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    let mut d = Draft::new(state, &[], 0);
    let stopped = Job {
        stopped: true,
        ..old.clone()
    };
    d.converge(&stopped, &BTreeSet::new())?;
    d.plan.put_jobs.push(stopped);
    Ok(d.plan)
}

/// Plans healing every job: replaces allocations lost with their nodes,
/// fills missing replicas. Jobs that cannot be placed right now are
/// skipped and reported, so one stuck job does not block the others.
pub fn reconcile(
    state: &ClusterState,
    nodes: &[NodeCandidate],
    alive: &BTreeSet<NodeId>,
    seed: u64,
) -> (Plan, Vec<(String, PlanError)>) {
    let mut d = Draft::new(state, nodes, seed);
    let mut stuck = Vec::new();
    for job in state.jobs.values() {
        let before = (
            d.nodes.clone(),
            d.plan.remove_allocs.len(),
            d.plan.add_allocs.len(),
        );
        if let Err(e) = d.converge(job, alive) {
            d.nodes = before.0;
            d.plan.remove_allocs.truncate(before.1);
            d.plan.add_allocs.truncate(before.2);
            stuck.push((job.spec.name.clone(), e));
        }
    }
    (d.plan, stuck)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_protocol::spec::{PortProtocol, PortSpec, ResourceVec};

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

    #[test]
    fn apply_scale_update_stop() {
        let mut s = ClusterState::default();
        let ready: BTreeSet<NodeId> = [1].into();
        let (plan, res) = apply(&s, &candidates(&s, &[1]), &ready, &[spec("web", 3)], 1).unwrap();
        assert_eq!(res[0].change, ChangeKind::Created);
        assert_eq!(res[0].allocations.len(), 3);
        commit(&mut s, plan);
        let first: Vec<String> = s.allocs.keys().cloned().collect();

        // Same spec: nothing to write.
        let (plan, res) = apply(&s, &candidates(&s, &[1]), &ready, &[spec("web", 3)], 2).unwrap();
        assert!(plan.is_empty());
        assert_eq!(res[0].change, ChangeKind::Unchanged);

        // Scale up keeps the running replicas.
        let plan = scale(&s, &candidates(&s, &[1]), &ready, "web", 5, 3).unwrap();
        assert!(plan.remove_allocs.is_empty());
        assert_eq!(plan.add_allocs.len(), 2);
        commit(&mut s, plan);
        assert!(first.iter().all(|id| s.allocs.contains_key(id)));

        // Scale down drops the highest indexes.
        let plan = scale(&s, &candidates(&s, &[1]), &ready, "web", 2, 4).unwrap();
        commit(&mut s, plan);
        let idx: Vec<u32> = s.allocs_of("web").map(|a| a.index).collect();
        assert_eq!(idx, [0, 1]);

        // A template change replaces every allocation with a new version.
        let mut changed = spec("web", 2);
        changed.image = "img:2".into();
        let (plan, res) = apply(&s, &candidates(&s, &[1]), &ready, &[changed], 5).unwrap();
        assert_eq!(res[0].change, ChangeKind::Updated);
        assert_eq!(plan.remove_allocs.len(), 2);
        commit(&mut s, plan);
        assert!(s.allocs.values().all(|a| a.job_version == 2));

        let plan = stop(&s, "web").unwrap();
        commit(&mut s, plan);
        assert!(s.allocs.is_empty());
        assert!(s.jobs["web"].stopped);
        assert_eq!(stop(&s, "nope"), Err(PlanError::UnknownJob("nope".into())));
    }

    #[test]
    fn reconcile_moves_work_off_lost_nodes() {
        let mut s = ClusterState::default();
        let both: BTreeSet<NodeId> = [1, 2].into();
        let (plan, _) = apply(&s, &candidates(&s, &[1, 2]), &both, &[spec("web", 4)], 1).unwrap();
        commit(&mut s, plan);
        assert_eq!(s.allocs_on(2).count(), 2);
        let only1: BTreeSet<NodeId> = [1].into();
        let (plan, stuck) = reconcile(&s, &candidates(&s, &[1]), &only1, 7);
        assert!(stuck.is_empty());
        commit(&mut s, plan);
        assert_eq!(s.allocs_on(1).count(), 4);
        assert_eq!(s.allocs_on(2).count(), 0);
        let (plan, _) = reconcile(&s, &candidates(&s, &[1]), &only1, 8);
        assert!(plan.is_empty(), "a healthy state needs no plan");
    }
}
