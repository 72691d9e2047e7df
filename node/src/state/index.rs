//! The indexes the state's tables keep ([`super::table::Entry`]): what the
//! leader asks on every write (a node's load, a job's replicas, the ports
//! services publish) answered without scanning every allocation or job.
//! Derived data: never encoded, rebuilt entry by entry when a state is
//! decoded, and persistent like the tables, so copies share it.

use imbl::{OrdMap, OrdSet};
use skein_protocol::spec::{PortProtocol, ResourceVec};

use super::table::{unindexed, Entry};
use super::{Allocation, ApiToken, Job, NodeId, SecretCredentials, StoredCredential};

unindexed!(StoredCredential, SecretCredentials, ApiToken);

/// What is placed on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoad {
    /// Sums of the allocations' requests, wide so that adding and taking
    /// away always meet again (a `ResourceVec` saturates).
    cpu_millis: u128,
    memory_bytes: u128,
    /// Allocation ids.
    pub allocs: OrdSet<String>,
    /// Replicas per job.
    pub jobs: OrdMap<String, u32>,
    /// Host ports reserved, with how many allocations reserve each.
    pub ports: OrdMap<(u16, PortProtocol), u32>,
}

impl NodeLoad {
    /// Sum of the requests of its allocations.
    pub fn allocated(&self) -> ResourceVec {
        let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        ResourceVec::new(clamp(self.cpu_millis), clamp(self.memory_bytes))
    }
}

/// Allocations by node and by job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocIndex {
    /// Load per node holding at least one allocation.
    pub by_node: OrdMap<NodeId, NodeLoad>,
    /// Allocation ids per job holding at least one.
    pub by_job: OrdMap<String, OrdSet<String>>,
}

/// Adds `by` (±1) to the count under `key`, dropping it at zero.
fn count<K: Ord + Clone>(map: &mut OrdMap<K, u32>, key: K, add: bool) {
    let n = map.get(&key).copied().unwrap_or(0);
    let n = if add { n + 1 } else { n.saturating_sub(1) };
    if n == 0 {
        map.remove(&key);
    } else {
        map.insert(key, n);
    }
}

impl Entry for Allocation {
    type Index = AllocIndex;

    fn added(index: &mut AllocIndex, key: &str, a: &Allocation) {
        let load = index.by_node.entry(a.node).or_default();
        load.cpu_millis += u128::from(a.resources.cpu_millis);
        load.memory_bytes += u128::from(a.resources.memory_bytes);
        load.allocs.insert(key.to_string());
        count(&mut load.jobs, a.job.clone(), true);
        for p in &a.ports {
            count(&mut load.ports, (p.host_port, p.protocol), true);
        }
        index
            .by_job
            .entry(a.job.clone())
            .or_default()
            .insert(key.to_string());
    }

    fn removed(index: &mut AllocIndex, key: &str, a: &Allocation) {
        if let Some(load) = index.by_node.get_mut(&a.node) {
            load.cpu_millis = load
                .cpu_millis
                .saturating_sub(u128::from(a.resources.cpu_millis));
            load.memory_bytes = load
                .memory_bytes
                .saturating_sub(u128::from(a.resources.memory_bytes));
            load.allocs.remove(key);
            count(&mut load.jobs, a.job.clone(), false);
            for p in &a.ports {
                count(&mut load.ports, (p.host_port, p.protocol), false);
            }
            if load.allocs.is_empty() {
                index.by_node.remove(&a.node);
            }
        }
        if let Some(ids) = index.by_job.get_mut(&a.job) {
            ids.remove(key);
            if ids.is_empty() {
                index.by_job.remove(&a.job);
            }
        }
    }
}

/// Ports published by running jobs (a published port is open on every
/// node), with the jobs publishing each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobIndex {
    /// Published port → names of the jobs (not stopped) publishing it.
    pub published: OrdMap<u16, OrdSet<String>>,
}

impl Entry for Job {
    type Index = JobIndex;

    fn added(index: &mut JobIndex, key: &str, job: &Job) {
        if let Some(port) = published(job) {
            index
                .published
                .entry(port)
                .or_default()
                .insert(key.to_string());
        }
    }

    fn removed(index: &mut JobIndex, key: &str, job: &Job) {
        if let Some(port) = published(job) {
            if let Some(jobs) = index.published.get_mut(&port) {
                jobs.remove(key);
                if jobs.is_empty() {
                    index.published.remove(&port);
                }
            }
        }
    }
}

/// The port a job's service publishes, unless the job is stopped.
fn published(job: &Job) -> Option<u16> {
    if job.stopped {
        return None;
    }
    job.spec.service.as_ref()?.publish
}
