//! The scan [`super::place`] replaced: every feasible node scored again for
//! every replica, on a copy of all candidates. Kept as the reference that
//! the scheduler's tests and `skein-bench scheduler` compare against; not
//! called by the node.

use super::place::{choose, duplicate_port_error, port_seed, reserve_ports, Need};
use super::{NodeCandidate, Placement, PlacementError, PlacementRequest};

/// [`super::place`] by exhaustive scan: the same contract and choices, at
/// O(N) per replica plus a copy of `nodes` per call.
pub fn place(
    nodes: &mut [NodeCandidate],
    req: &PlacementRequest<'_>,
    count: u32,
    seed: u64,
) -> Result<Vec<Placement>, PlacementError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if let Some(dup) = duplicate_port_error(req) {
        return Err(dup);
    }
    let need = Need::of(req);
    let eligible: Vec<_> = nodes.iter().map(|n| need.static_filter(n, req)).collect();
    let mut work = nodes.to_vec();
    let mut placements = Vec::with_capacity(usize::try_from(count.min(1024)).unwrap_or(0));
    for replica in 0..count {
        let fail = |why: String| {
            PlacementError(format!(
                "cannot place replica {} of {count} of job {}: {why}",
                replica.saturating_add(1),
                req.job
            ))
        };
        let idx = choose(&work, &eligible, req, &need.image).map_err(fail)?;
        let node = work
            .get_mut(idx)
            .ok_or_else(|| fail("internal error: chosen node vanished".into()))?;
        let ports = reserve_ports(node, req, port_seed(seed, req.job, replica))
            .ok_or_else(|| fail("internal error: port check and reservation disagree".into()))?;
        node.allocated = node.allocated.saturating_add(req.resources);
        let n = node.job_replicas.entry(req.job.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        placements.push(Placement {
            node: node.id,
            ports,
        });
    }
    nodes.clone_from_slice(&work);
    Ok(placements)
}
