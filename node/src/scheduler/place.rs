//! The placement algorithm behind [`place`]: filter nodes (constraints,
//! host access for privileged or host-path containers, image when the pull
//! policy is `Never`, resources, fixed ports, dynamic ports), score the
//! survivors by strategy (a node that already holds the image wins ties of
//! spread and bin-pack: no fetch needed), reserve host ports, and — when
//! nothing fits — explain to the user which filter stopped the replica,
//! with figures. The filters and scores are [`choose`]'s; [`Ranking`] keeps
//! the scored nodes in order so that a replica does not score them again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use skein_protocol::api::PortMapping;
use skein_protocol::spec::{PlacementStrategy, PortProtocol, ResourceVec};

use super::rank::Ranking;
use super::{NodeCandidate, Placement, PlacementError, PlacementRequest};

/// How many nodes a message names before summarising the rest.
const MAX_LISTED: usize = 5;
/// Fixed-point scale for utilisation and "closeness to fitting", so that
/// scoring stays integer and bit-for-bit deterministic.
const PPM: u64 = 1_000_000;

/// Places `count` replicas of `req`, choosing among `nodes` and updating them
/// (allocated, used_ports, job_replicas) as each replica is placed.
///
/// All-or-nothing: on error `nodes` is untouched, so the caller can report
/// the refusal without undoing half a plan. Dynamic host ports derive from
/// `seed`, so the same inputs always give the same plan.
///
/// Chooses exactly the nodes [`super::exhaustive::place`] chooses (every
/// feasible node scored for every replica), at a cost of one pass over
/// `nodes` plus O(log N) per replica: see [`Ranking`].
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
    let mut placements = Vec::with_capacity(usize::try_from(count.min(1024)).unwrap_or(0));
    let mut undo = Vec::with_capacity(placements.capacity());
    if let Err(e) = place_each(nodes, req, &need, count, seed, &mut placements, &mut undo) {
        // Newest first, so a node placed on twice ends at its first snapshot.
        for ((idx, allocated, replicas), p) in undo.into_iter().zip(placements).rev() {
            if let Some(n) = nodes.get_mut(idx) {
                n.allocated = allocated;
                match replicas {
                    Some(c) => {
                        n.job_replicas.insert(req.job.to_string(), c);
                    }
                    None => {
                        n.job_replicas.remove(req.job);
                    }
                }
                for m in &p.ports {
                    n.used_ports.remove(&(m.host_port, m.protocol));
                }
            }
        }
        return Err(e);
    }
    Ok(placements)
}

/// What [`place`] undoes on failure, per placement (the host ports are the
/// placement's): the node, its `allocated` and job replica count before.
type Undo = Vec<(usize, ResourceVec, Option<u32>)>;

fn place_each(
    nodes: &mut [NodeCandidate],
    req: &PlacementRequest<'_>,
    need: &Need,
    count: u32,
    seed: u64,
    placements: &mut Vec<Placement>,
    undo: &mut Undo,
) -> Result<(), PlacementError> {
    let (mut ranking, statics) = Ranking::new(nodes, req, need);
    for replica in 0..count {
        let fail = |why: String| {
            PlacementError(format!(
                "cannot place replica {} of {count} of job {}: {why}",
                replica.saturating_add(1),
                req.job
            ))
        };
        let Some((idx, group)) = ranking.take() else {
            // The index is empty exactly when the exhaustive filters leave
            // no node, so they explain why.
            let why = choose(nodes, &statics, req, &need.image)
                .err()
                .unwrap_or_else(|| "internal error: the index lost a feasible node".into());
            return Err(fail(why));
        };
        let node = nodes
            .get_mut(idx)
            .ok_or_else(|| fail("internal error: chosen node vanished".into()))?;
        let ports = reserve_ports(node, req, port_seed(seed, req.job, replica))
            .ok_or_else(|| fail("internal error: port check and reservation disagree".into()))?;
        let before = node.allocated;
        node.allocated = node.allocated.saturating_add(req.resources);
        let replicas = node.job_replicas.get(req.job).copied();
        match node.job_replicas.get_mut(req.job) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                node.job_replicas.insert(req.job.to_string(), 1);
            }
        }
        undo.push((idx, before, replicas));
        placements.push(Placement {
            node: node.id,
            ports,
        });
        let st = statics.get(idx).copied().unwrap_or(Static::Constraints);
        ranking.placed(idx, group, node, st, req, need);
    }
    Ok(())
}

pub(super) fn duplicate_port_error(req: &PlacementRequest<'_>) -> Option<PlacementError> {
    let (port, proto) = duplicate_fixed_port(req)?;
    Some(PlacementError(format!(
        "cannot place job {}: host port {port}/{proto} is listed twice in its ports",
        req.job
    )))
}

/// What one replica of a request needs, worked out once per call rather
/// than once per node.
pub(super) struct Need {
    /// Canonical image reference.
    pub(super) image: String,
    /// Fixed host ports, in spec order.
    fixed: Vec<(u16, PortProtocol)>,
    /// Dynamic host ports per protocol.
    dynamic: BTreeMap<PortProtocol, u32>,
    /// All dynamic ports, for the cheap bound in [`Need::fits`].
    dynamic_total: usize,
    /// Whether the container needs privileges or host paths at all: when
    /// not, the access filter passes every node without asking.
    access: bool,
}

impl Need {
    pub(super) fn of(req: &PlacementRequest<'_>) -> Self {
        let dynamic = dynamic_need(req);
        Self {
            image: skein_protocol::image::canonical(req.image),
            fixed: fixed_ports(req).collect(),
            dynamic_total: dynamic.values().map(|&n| n as usize).sum(),
            dynamic,
            access: req.container.needs_host_access(),
        }
    }

    /// The filters that do not depend on earlier placements, in the order
    /// [`choose`] applies them.
    pub(super) fn static_filter(&self, n: &NodeCandidate, req: &PlacementRequest<'_>) -> Static {
        if !matches_constraints(n, req.constraints) {
            Static::Constraints
        } else if self.access && !n.host_access.missing(req.container).is_empty() {
            Static::Access
        } else if !has_image(n, &self.image) {
            Static::Image
        } else {
            Static::Ok
        }
    }

    /// Whether a node that passed the static filters can take one more
    /// replica: resources, fixed ports, dynamic ports ([`choose`]'s last
    /// three filters, without their allocations).
    pub(super) fn fits(&self, n: &NodeCandidate, req: &PlacementRequest<'_>) -> bool {
        req.resources.fits_in(n.free())
            && self.fixed.iter().all(|k| !n.used_ports.contains(k))
            && self.dynamic_room(n)
    }

    /// [`dynamic_room`], answering most nodes from their port count alone.
    fn dynamic_room(&self, n: &NodeCandidate) -> bool {
        if self.dynamic.is_empty() {
            return true;
        }
        let (lo, hi) = (*n.port_range.start(), *n.port_range.end());
        if lo > hi {
            return false;
        }
        let len = usize::from(hi - lo) + 1;
        // Every port counted against the range could be in it, for every
        // protocol: if even that leaves room, the exact count does too.
        let bound = n
            .used_ports
            .len()
            .saturating_add(self.fixed.len())
            .saturating_add(self.dynamic_total);
        if bound <= len {
            return true;
        }
        self.dynamic.iter().all(|(&proto, &want)| {
            let in_range = |k: &&(u16, PortProtocol)| k.1 == proto && (lo..=hi).contains(&k.0);
            let used = n.used_ports.iter().filter(in_range).count();
            // Fixed ports are free here (checked before), so these never overlap `used`.
            let own = self.fixed.iter().filter(in_range).count();
            len.saturating_sub(used.saturating_add(own)) >= want as usize
        })
    }
}

/// Outcome of the filters that do not depend on earlier placements.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Static {
    Ok,
    Constraints,
    /// The node does not allow the container's privileges or host paths.
    Access,
    Image,
}

/// Picks the node for one replica by scoring every feasible node, or says
/// which filter left no node.
pub(super) fn choose(
    nodes: &[NodeCandidate],
    eligible: &[Static],
    req: &PlacementRequest<'_>,
    image: &str,
) -> Result<usize, String> {
    if nodes.is_empty() {
        return Err("no ready nodes".into());
    }
    let all: Vec<usize> = (0..nodes.len()).collect();
    let stage = |from: &[usize], keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
        from.iter().copied().filter(|&i| keep(i)).collect()
    };
    let matching = stage(&all, &|i| eligible.get(i) != Some(&Static::Constraints));
    if matching.is_empty() {
        return Err(constraints_message(nodes, req.constraints));
    }
    let allowed = stage(&matching, &|i| eligible.get(i) != Some(&Static::Access));
    if allowed.is_empty() {
        return Err(access_message(nodes, &matching, req));
    }
    let with_image = if req.image_required {
        stage(&allowed, &|i| eligible.get(i) == Some(&Static::Ok))
    } else {
        allowed
    };
    if with_image.is_empty() {
        return Err(format!(
            "image {image} is not present on any eligible node, and its pull policy \
             is never (use pull: if-not-present to let nodes fetch it)"
        ));
    }
    // 0 when the node holds the image: ranks it first among equals.
    let fetch = |i: usize| u8::from(eligible.get(i) != Some(&Static::Ok));
    let with_room = stage(&with_image, &|i| req.resources.fits_in(nodes[i].free()));
    if with_room.is_empty() {
        return Err(resources_message(nodes, &with_image, req.resources));
    }
    let fixed_ok = stage(&with_room, &|i| fixed_conflict(&nodes[i], req).is_none());
    if fixed_ok.is_empty() {
        return Err(fixed_ports_message(nodes, &with_room, req));
    }
    let need = dynamic_need(req);
    let feasible = stage(&fixed_ok, &|i| dynamic_room(&nodes[i], req, &need));
    if feasible.is_empty() {
        return Err(dynamic_ports_message(nodes, &fixed_ok, &need));
    }

    let job_count = |n: &NodeCandidate| n.job_replicas.get(req.job).copied().unwrap_or(0);
    let mut zones: BTreeMap<&str, u32> = BTreeMap::new();
    for n in nodes {
        if let Some(z) = n.zone() {
            let c = zones.entry(z).or_insert(0);
            *c = c.saturating_add(job_count(n));
        }
    }
    let util =
        |n: &NodeCandidate| utilisation_ppm(n.allocated.saturating_add(req.resources), n.capacity);
    let best = match req.strategy {
        PlacementStrategy::Spread => feasible.iter().copied().min_by_key(|&i| {
            let n = &nodes[i];
            // A node without a zone is its own failure domain.
            let zone = n
                .zone()
                .and_then(|z| zones.get(z).copied())
                .unwrap_or(job_count(n));
            (job_count(n), zone, fetch(i), util(n), n.id)
        }),
        PlacementStrategy::Binpack => feasible
            .iter()
            .copied()
            .min_by_key(|&i| (Reverse(util(&nodes[i])), fetch(i), nodes[i].id)),
    };
    best.ok_or_else(|| "no feasible node".into())
}

fn matches_constraints(node: &NodeCandidate, constraints: &BTreeMap<String, String>) -> bool {
    constraints
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
}

fn has_image(node: &NodeCandidate, image: &str) -> bool {
    node.images.as_ref().is_none_or(|set| set.contains(image))
}

/// The request's fixed host ports, in spec order.
fn fixed_ports<'a>(
    req: &'a PlacementRequest<'_>,
) -> impl Iterator<Item = (u16, PortProtocol)> + 'a {
    req.ports
        .iter()
        .filter_map(|p| p.host_port.map(|h| (h, p.protocol)))
}

fn duplicate_fixed_port(req: &PlacementRequest<'_>) -> Option<(u16, PortProtocol)> {
    let mut seen = BTreeSet::new();
    fixed_ports(req).find(|k| !seen.insert(*k))
}

/// The first fixed host port of `req` already reserved on `node`.
fn fixed_conflict(node: &NodeCandidate, req: &PlacementRequest<'_>) -> Option<(u16, PortProtocol)> {
    fixed_ports(req).find(|k| node.used_ports.contains(k))
}

/// Dynamic ports one replica needs, per protocol.
fn dynamic_need(req: &PlacementRequest<'_>) -> BTreeMap<PortProtocol, u32> {
    let mut need = BTreeMap::new();
    for p in req.ports.iter().filter(|p| p.host_port.is_none()) {
        let c = need.entry(p.protocol).or_insert(0u32);
        *c = c.saturating_add(1);
    }
    need
}

/// True when `node`'s dynamic range still has room for every dynamic port,
/// after its reservations and this replica's own fixed ports.
fn dynamic_room(
    node: &NodeCandidate,
    req: &PlacementRequest<'_>,
    need: &BTreeMap<PortProtocol, u32>,
) -> bool {
    let (lo, hi) = (*node.port_range.start(), *node.port_range.end());
    if lo > hi {
        return need.is_empty();
    }
    let len = u32::from(hi - lo) + 1;
    let own: BTreeSet<(u16, PortProtocol)> = fixed_ports(req).collect();
    need.iter().all(|(&proto, &n)| {
        let in_range = |k: &&(u16, PortProtocol)| k.1 == proto && (lo..=hi).contains(&k.0);
        let used = node.used_ports.iter().filter(in_range).count();
        // Fixed ports are free here (checked before), so these never overlap `used`.
        let own = own.iter().filter(in_range).count();
        let taken = u32::try_from(used.saturating_add(own)).unwrap_or(u32::MAX);
        len.saturating_sub(taken) >= n
    })
}

/// Reserves the replica's host ports on `node`; fixed ports first so a
/// dynamic pick can never take one of them. `None` (and `node` as it was)
/// only if the feasibility check was wrong.
pub(super) fn reserve_ports(
    node: &mut NodeCandidate,
    req: &PlacementRequest<'_>,
    offset: u64,
) -> Option<Vec<PortMapping>> {
    node.used_ports.extend(fixed_ports(req));
    let mut out: Vec<PortMapping> = Vec::with_capacity(req.ports.len());
    for p in req.ports {
        let host_port = match p.host_port {
            Some(h) => h,
            None => match free_dynamic_port(node, p.protocol, offset) {
                Some(h) => {
                    node.used_ports.insert((h, p.protocol));
                    h
                }
                None => {
                    // Fixed ports are free before this replica (checked), so
                    // everything taken here is this replica's to give back.
                    for k in fixed_ports(req) {
                        node.used_ports.remove(&k);
                    }
                    for m in &out {
                        node.used_ports.remove(&(m.host_port, m.protocol));
                    }
                    return None;
                }
            },
        };
        out.push(PortMapping {
            name: p.name.clone(),
            container_port: p.container_port,
            host_port,
            protocol: p.protocol,
        });
    }
    Some(out)
}

/// First free port of the node's range, scanning (with wrap-around) from a
/// seed-derived offset so replicas do not all pile onto the range start.
fn free_dynamic_port(node: &NodeCandidate, proto: PortProtocol, offset: u64) -> Option<u16> {
    let (lo, hi) = (*node.port_range.start(), *node.port_range.end());
    if lo > hi {
        return None;
    }
    let len = u64::from(hi - lo) + 1;
    (0..len)
        .filter_map(|k| u16::try_from(u64::from(lo) + offset.wrapping_add(k) % len).ok())
        .find(|&port| !node.used_ports.contains(&(port, proto)))
}

/// Deterministic per-replica offset: FNV-1a over the inputs, then a
/// splitmix64 finaliser to spread nearby seeds.
pub(super) fn port_seed(seed: u64, job: &str, replica: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(job.bytes())
        .chain(replica.to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `used / capacity` in millionths, worst dimension; full capacity-0 nodes
/// count as 100 % rather than dividing by zero.
pub(super) fn utilisation_ppm(used: ResourceVec, capacity: ResourceVec) -> u64 {
    let frac = |used: u64, cap: u64| match (used, cap) {
        (0, _) => 0,
        (_, 0) => PPM,
        // The same quotient; u128 only when the product needs it, as
        // every node is scored on every call.
        _ => match used.checked_mul(PPM) {
            Some(p) => p / cap,
            None => u64::try_from(u128::from(used) * u128::from(PPM) / u128::from(cap))
                .unwrap_or(u64::MAX),
        },
    };
    frac(used.cpu_millis, capacity.cpu_millis).max(frac(used.memory_bytes, capacity.memory_bytes))
}

/// How close `free` comes to covering `need` (worst dimension, millionths).
fn closeness_ppm(free: ResourceVec, need: ResourceVec) -> u64 {
    let frac = |free: u64, need: u64| {
        if need == 0 {
            u64::MAX
        } else {
            u64::try_from(u128::from(free) * u128::from(PPM) / u128::from(need)).unwrap_or(u64::MAX)
        }
    };
    frac(free.cpu_millis, need.cpu_millis).min(frac(free.memory_bytes, need.memory_bytes))
}

fn constraints_message(nodes: &[NodeCandidate], constraints: &BTreeMap<String, String>) -> String {
    let wanted = join_pairs(constraints.iter());
    let seen = list(nodes.iter().map(|n| {
        let labels = join_pairs(constraints.keys().filter_map(|k| n.labels.get_key_value(k)));
        let labels = if labels.is_empty() {
            "none".to_string()
        } else {
            labels
        };
        format!("{labels} on {}", n.name)
    }));
    format!("no node matches constraints {wanted} (node labels seen: {seen})")
}

fn access_message(
    nodes: &[NodeCandidate],
    candidates: &[usize],
    req: &PlacementRequest<'_>,
) -> String {
    let c = req.container;
    let mut needs: Vec<String> = c.privileges().into_iter().map(String::from).collect();
    needs.extend(c.host_paths.iter().map(|m| format!("hostPath {}", m.host)));
    let mut flags = Vec::new();
    if !c.privileges().is_empty() {
        flags.push("--allow-privileged");
    }
    if !c.host_paths.is_empty() {
        flags.push("--allow-host-path DIR");
    }
    let seen = list(
        candidates
            .iter()
            .filter_map(|&i| nodes.get(i))
            .map(|n| format!("{} ({})", n.name, n.host_access.describe())),
    );
    format!(
        "needs {}, which no eligible node allows (nodes allow: {seen}); start an agent with {} \
         to allow it there",
        needs.join(", "),
        flags.join(" and ")
    )
}

fn resources_message(nodes: &[NodeCandidate], candidates: &[usize], need: ResourceVec) -> String {
    let mut msg = format!("needs {}", fmt_resources(need));
    let best = candidates
        .iter()
        .filter_map(|&i| nodes.get(i))
        .max_by_key(|n| (closeness_ppm(n.free(), need), Reverse(n.id)));
    if let Some(n) = best {
        msg.push_str(&format!(
            "; the best node {} has {} free",
            n.name,
            fmt_resources(n.free())
        ));
    }
    msg
}

fn fixed_ports_message(
    nodes: &[NodeCandidate],
    candidates: &[usize],
    req: &PlacementRequest<'_>,
) -> String {
    let mut by_port: BTreeMap<(u16, PortProtocol), Vec<&str>> = BTreeMap::new();
    for n in candidates.iter().filter_map(|&i| nodes.get(i)) {
        if let Some(k) = fixed_conflict(n, req) {
            by_port.entry(k).or_default().push(&n.name);
        }
    }
    if let (1, Some(((port, proto), names))) = (by_port.len(), by_port.iter().next()) {
        return format!(
            "host port {port}/{proto} is already in use on every node with room ({})",
            list(names.iter())
        );
    }
    let parts = list(by_port.iter().flat_map(|((port, proto), names)| {
        names
            .iter()
            .map(move |name| format!("{port}/{proto} on {name}"))
    }));
    format!("host ports are already in use on every node with room ({parts})")
}

fn dynamic_ports_message(
    nodes: &[NodeCandidate],
    candidates: &[usize],
    need: &BTreeMap<PortProtocol, u32>,
) -> String {
    let mut by_range: BTreeMap<(u16, u16), Vec<&str>> = BTreeMap::new();
    for n in candidates.iter().filter_map(|&i| nodes.get(i)) {
        let range = (*n.port_range.start(), *n.port_range.end());
        by_range.entry(range).or_default().push(&n.name);
    }
    let where_ = by_range
        .iter()
        .map(|((lo, hi), names)| format!("in {lo}-{hi} on {}", list(names.iter())))
        .collect::<Vec<_>>()
        .join("; ");
    let total: u32 = need.values().fold(0, |a, &b| a.saturating_add(b));
    if total <= 1 {
        format!("no free dynamic port {where_}")
    } else {
        let needs = need
            .iter()
            .map(|(proto, n)| format!("{n} {proto}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("not enough free dynamic ports {where_} (needs {needs})")
    }
}

fn join_pairs<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    pairs
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Comma-separated, at most [`MAX_LISTED`] items, then "and N more".
fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let mut items: Vec<String> = items.map(|i| i.to_string()).collect();
    let more = items.len().saturating_sub(MAX_LISTED);
    items.truncate(MAX_LISTED);
    let mut out = items.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

fn fmt_resources(r: ResourceVec) -> String {
    format!(
        "cpu {}m, memory {}",
        r.cpu_millis,
        fmt_memory(r.memory_bytes)
    )
}

/// Binary units with at most one decimal, e.g. `128Mi`, `1.5Gi`, `512B`.
fn fmt_memory(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    for (suffix, shift) in UNITS {
        let unit = 1u128 << shift;
        let tenths = (u128::from(bytes) * 10 + unit / 2) / unit;
        if tenths >= 10 {
            let (whole, frac) = (tenths / 10, tenths % 10);
            return if frac == 0 {
                format!("{whole}{suffix}")
            } else {
                format!("{whole}.{frac}{suffix}")
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use skein_protocol::spec::{PlacementStrategy, PortProtocol, PortSpec, ResourceVec};

    use std::sync::LazyLock;

    use skein_protocol::spec::{ContainerSpec, HostAccess, HostPathMount};

    use super::{fmt_memory, place};
    use crate::scheduler::{NodeCandidate, PlacementRequest};

    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * MI;

    fn node(id: u64, cpu: u64, mem: u64) -> NodeCandidate {
        NodeCandidate {
            id,
            name: format!("node-{}", char::from(b'a' + (id as u8 % 26))),
            labels: BTreeMap::new(),
            capacity: ResourceVec::new(cpu, mem),
            allocated: ResourceVec::default(),
            used_ports: BTreeSet::new(),
            port_range: 20000..=20010,
            images: None,
            job_replicas: BTreeMap::new(),
            host_access: HostAccess::default(),
        }
    }

    /// A container that asks for nothing from its node.
    static PLAIN: LazyLock<ContainerSpec> = LazyLock::new(ContainerSpec::default);

    fn with_label(mut n: NodeCandidate, k: &str, v: &str) -> NodeCandidate {
        n.labels.insert(k.into(), v.into());
        n
    }

    fn port(container: u16, host: Option<u16>) -> PortSpec {
        PortSpec {
            name: None,
            container_port: container,
            host_port: host,
            protocol: PortProtocol::Tcp,
        }
    }

    fn req<'a>(
        cpu: u64,
        mem: u64,
        ports: &'a [PortSpec],
        constraints: &'a BTreeMap<String, String>,
    ) -> PlacementRequest<'a> {
        PlacementRequest {
            job: "web",
            image: "nginx",
            image_required: false,
            resources: ResourceVec::new(cpu, mem),
            ports,
            constraints,
            strategy: PlacementStrategy::Spread,
            container: &PLAIN,
        }
    }

    fn counts(nodes: &[NodeCandidate]) -> Vec<u32> {
        nodes
            .iter()
            .map(|n| n.job_replicas.get("web").copied().unwrap_or(0))
            .collect()
    }

    fn err(nodes: &mut [NodeCandidate], r: &PlacementRequest<'_>, count: u32) -> String {
        match place(nodes, r, count, 7) {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn spread_evens_out_over_equal_nodes() {
        let none = BTreeMap::new();
        let mut nodes = vec![
            node(1, 4000, 4 * GI),
            node(2, 4000, 4 * GI),
            node(3, 4000, 4 * GI),
        ];
        let p = place(&mut nodes, &req(100, 64 * MI, &[], &none), 6, 1).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(counts(&nodes), [2, 2, 2]);
        assert_eq!(nodes[0].allocated, ResourceVec::new(200, 128 * MI));
    }

    #[test]
    fn spread_accounts_for_existing_replicas() {
        let none = BTreeMap::new();
        let mut nodes = vec![
            node(1, 4000, 4 * GI),
            node(2, 4000, 4 * GI),
            node(3, 4000, 4 * GI),
        ];
        nodes[0].job_replicas.insert("web".into(), 3);
        nodes[2].job_replicas.insert("web".into(), 1);
        nodes[2].job_replicas.insert("other".into(), 9);
        place(&mut nodes, &req(100, 64 * MI, &[], &none), 5, 1).unwrap();
        assert_eq!(counts(&nodes), [3, 3, 3]);
    }

    #[test]
    fn spread_prefers_the_emptier_zone_then_lower_utilisation() {
        let none = BTreeMap::new();
        let mut nodes = vec![
            with_label(node(1, 4000, 4 * GI), "zone", "a"),
            with_label(node(2, 4000, 4 * GI), "zone", "a"),
            with_label(node(3, 4000, 4 * GI), "zone", "b"),
            with_label(node(4, 4000, 4 * GI), "zone", "b"),
        ];
        nodes[2].allocated = ResourceVec::new(1000, 0);
        let p = place(&mut nodes, &req(100, 64 * MI, &[], &none), 2, 1).unwrap();
        // Node 1 by id; then zone b, where node 4 is emptier than node 3.
        let chosen: Vec<u64> = p.iter().map(|p| p.node).collect();
        assert_eq!(chosen, [1, 4]);
    }

    #[test]
    fn binpack_fills_one_node_before_the_next() {
        let none = BTreeMap::new();
        let mut r = req(500, 64 * MI, &[], &none);
        r.strategy = PlacementStrategy::Binpack;
        let mut nodes = vec![node(1, 1000, GI), node(2, 1000, GI)];
        let p = place(&mut nodes, &r, 3, 1).unwrap();
        let chosen: Vec<u64> = p.iter().map(|p| p.node).collect();
        assert_eq!(chosen, [1, 1, 2]);

        // The fuller node wins even with a higher id.
        let mut nodes = vec![node(1, 1000, GI), node(2, 1000, GI)];
        nodes[1].allocated = ResourceVec::new(400, 0);
        let p = place(&mut nodes, &req(100, MI, &[], &none), 1, 1);
        assert_eq!(p.unwrap()[0].node, 1, "spread picks the emptier node");
        r.resources = ResourceVec::new(100, MI);
        assert_eq!(place(&mut nodes, &r, 1, 1).unwrap()[0].node, 2);
    }

    #[test]
    fn constraints_filter_and_explain() {
        let eu = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let mut nodes = vec![
            with_label(node(1, 1000, GI), "region", "us"),
            with_label(node(2, 1000, GI), "region", "eu"),
        ];
        let p = place(&mut nodes, &req(100, MI, &[], &eu), 2, 1).unwrap();
        assert!(p.iter().all(|p| p.node == 2));

        let mut nodes = vec![
            with_label(node(1, 1000, GI), "region", "us"),
            node(2, 1000, GI),
        ];
        assert_eq!(
            err(&mut nodes, &req(100, MI, &[], &eu), 1),
            "cannot place replica 1 of 1 of job web: no node matches constraints region=eu \
             (node labels seen: region=us on node-b, none on node-c)"
        );
    }

    #[test]
    fn image_presence_is_a_preference_unless_the_policy_is_never() {
        let none = BTreeMap::new();
        let mut nodes = vec![node(1, 1000, GI), node(2, 1000, GI), node(3, 1000, GI)];
        nodes[0].images = Some(BTreeSet::from(["redis:7".to_string()]));
        nodes[1].images = Some(BTreeSet::from(["nginx:latest".to_string()]));
        nodes[2].images = Some(BTreeSet::new());
        // Spread still wins, but the first replica goes where the image is.
        let p = place(&mut nodes.clone(), &req(100, MI, &[], &none), 1, 1).unwrap();
        assert_eq!(p[0].node, 2);
        let p = place(&mut nodes.clone(), &req(100, MI, &[], &none), 3, 1).unwrap();
        let mut on: Vec<_> = p.iter().map(|p| p.node).collect();
        on.sort_unstable();
        assert_eq!(on, [1, 2, 3]);

        // `Never`: only nodes holding it ("nginx" is "nginx:latest").
        let never = PlacementRequest {
            image_required: true,
            ..req(100, MI, &[], &none)
        };
        let p = place(&mut nodes, &never, 2, 1).unwrap();
        assert!(p.iter().all(|p| p.node == 2));
        nodes[1].images = Some(BTreeSet::new());
        assert_eq!(
            err(&mut nodes, &never, 1),
            "cannot place replica 1 of 1 of job web: \
             image nginx:latest is not present on any eligible node, and its pull policy \
             is never (use pull: if-not-present to let nodes fetch it)"
        );
    }

    #[test]
    fn resource_refusal_gives_figures() {
        let none = BTreeMap::new();
        let mut nodes = vec![node(1, 4000, 4 * GI), node(2, 4000, 4 * GI)];
        nodes[0].allocated = ResourceVec::new(3000, GI);
        nodes[1].allocated = ResourceVec::new(2500, 2 * GI);
        assert_eq!(
            err(&mut nodes, &req(2000, 128 * MI, &[], &none), 1),
            "cannot place replica 1 of 1 of job web: needs cpu 2000m, memory 128Mi; \
             the best node node-c has cpu 1500m, memory 2Gi free"
        );
        assert_eq!(
            err(&mut [], &req(1, 1, &[], &none), 1).split(": ").nth(1),
            Some("no ready nodes")
        );
    }

    #[test]
    fn failure_leaves_nodes_untouched() {
        let none = BTreeMap::new();
        let ports = [port(80, None)];
        let mut nodes = vec![node(1, 1000, GI), node(2, 1000, GI)];
        let before = nodes.clone();
        let e = err(&mut nodes, &req(400, MI, &ports, &none), 5);
        assert!(
            e.starts_with("cannot place replica 5 of 5 of job web: needs cpu 400m"),
            "{e}"
        );
        assert_eq!(nodes, before);
        assert_eq!(
            place(&mut nodes, &req(400, MI, &ports, &none), 0, 1),
            Ok(vec![])
        );
        assert_eq!(nodes, before);
    }

    #[test]
    fn fixed_host_ports_avoid_conflicts() {
        let none = BTreeMap::new();
        let ports = [port(8080, Some(80))];
        let mut nodes = vec![node(1, 1000, GI), node(2, 1000, GI)];
        nodes[0].used_ports.insert((80, PortProtocol::Tcp));
        nodes[1].used_ports.insert((80, PortProtocol::Udp));
        let p = place(&mut nodes, &req(100, MI, &ports, &none), 1, 1).unwrap();
        assert_eq!((p[0].node, p[0].ports[0].host_port), (2, 80));
        assert!(nodes[1].used_ports.contains(&(80, PortProtocol::Tcp)));
        assert_eq!(
            err(&mut nodes, &req(100, MI, &ports, &none), 1),
            "cannot place replica 1 of 1 of job web: \
             host port 80/tcp is already in use on every node with room (node-b, node-c)"
        );
    }

    #[test]
    fn dynamic_ports_skip_used_and_are_deterministic() {
        let none = BTreeMap::new();
        let ports = [port(80, None), port(443, None)];
        let mut nodes = vec![node(1, 4000, GI)];
        for p in 20000..=20005 {
            nodes[0].used_ports.insert((p, PortProtocol::Tcp));
        }
        let start = nodes.clone();
        let p = place(&mut nodes, &req(100, MI, &ports, &none), 2, 42).unwrap();
        let host: Vec<u16> = p
            .iter()
            .flat_map(|p| p.ports.iter().map(|m| m.host_port))
            .collect();
        assert!(host.iter().all(|h| (20006..=20010).contains(h)), "{host:?}");
        assert_eq!(host.iter().collect::<BTreeSet<_>>().len(), 4, "{host:?}");
        assert_eq!(p[1].ports[1].container_port, 443);

        let mut again = start.clone();
        assert_eq!(
            place(&mut again, &req(100, MI, &ports, &none), 2, 42).unwrap(),
            p
        );
        assert_eq!(again, nodes);

        // Five free ports, four taken: a third replica cannot get two more.
        assert_eq!(
            err(&mut nodes, &req(100, MI, &ports, &none), 1),
            "cannot place replica 1 of 1 of job web: \
             not enough free dynamic ports in 20000-20010 on node-b (needs 2 tcp)"
        );
        let one = [port(80, None)];
        place(&mut nodes, &req(100, MI, &one, &none), 1, 1).unwrap();
        assert_eq!(
            err(&mut nodes, &req(100, MI, &one, &none), 1),
            "cannot place replica 1 of 1 of job web: no free dynamic port in 20000-20010 on node-b"
        );
    }

    #[test]
    fn zero_capacity_and_empty_range_do_not_panic() {
        let none = BTreeMap::new();
        let ports = [port(80, None)];
        let mut nodes = vec![node(1, 0, 0), node(2, 1000, GI)];
        nodes[0].used_ports = (20000..=20010).map(|p| (p, PortProtocol::Tcp)).collect();
        #[allow(clippy::reversed_empty_ranges)]
        {
            nodes[1].port_range = 30000..=20000;
        }
        assert!(place(&mut nodes, &req(0, 0, &[], &none), 2, 1).is_ok());
        let e = err(&mut nodes, &req(0, 0, &ports, &none), 1);
        assert!(
            e.contains("no free dynamic port in 20000-20010 on node-b; in 30000-20000 on node-c"),
            "{e}"
        );
    }

    #[test]
    fn memory_formatting() {
        assert_eq!(fmt_memory(512), "512B");
        assert_eq!(fmt_memory(128 * MI), "128Mi");
        assert_eq!(fmt_memory(3 * GI / 2), "1.5Gi");
        assert_eq!(fmt_memory(MI - 1), "1Mi");
        assert_eq!(fmt_memory(u64::MAX), "16Ei");
    }

    fn arb_node(id: u64) -> impl Strategy<Value = NodeCandidate> {
        (
            0u64..8000,
            0u64..6000,
            0u64..(8 * GI),
            0u64..(6 * GI),
            prop::collection::btree_set(20000u16..20008, 0..4),
        )
            .prop_map(move |(cap_cpu, alloc_cpu, cap_mem, alloc_mem, used)| {
                let mut n = node(id, cap_cpu, cap_mem);
                n.allocated = ResourceVec::new(alloc_cpu, alloc_mem);
                n.used_ports = used.into_iter().map(|p| (p, PortProtocol::Tcp)).collect();
                n.port_range = 20000..=20007;
                n
            })
    }

    proptest! {
        #[test]
        fn placements_never_overcommit(
            nodes in (1u64..6).prop_flat_map(|n| (1..=n).map(arb_node).collect::<Vec<_>>()),
            cpu in 0u64..800,
            mem in 0u64..GI,
            count in 0u32..12,
            binpack: bool,
            fixed: bool,
            dynamic in 0usize..3,
            seed: u64,
        ) {
            let none = BTreeMap::new();
            let mut ports: Vec<PortSpec> = (0..dynamic).map(|_| port(80, None)).collect();
            if fixed {
                ports.push(port(81, Some(20003)));
            }
            let mut r = req(cpu, mem, &ports, &none);
            if binpack {
                r.strategy = PlacementStrategy::Binpack;
            }
            let before = nodes.clone();
            let mut after = nodes.clone();
            match place(&mut after, &r, count, seed) {
                Err(_) => {  prop_assert_eq!(&after, &before) },
                Ok(placed) => {
                    prop_assert_eq!(placed.len(), count as usize);
                    for (b, a) in before.iter().zip(&after) {
                        if b.allocated.fits_in(b.capacity) {
                            prop_assert!(a.allocated.fits_in(a.capacity));
                        }
                        let mut seen = b.used_ports.clone();
                        for m in placed.iter().filter(|p| p.node == a.id).flat_map(|p| &p.ports) {
                            prop_assert!(seen.insert((m.host_port, m.protocol)), "port {} reused", m.host_port);
                        }
                        prop_assert_eq!(&seen, &a.used_ports);
                    }
                }
            }
        }
    }

    /// A node of a mixed cluster: zones, regions, images, earlier replicas
    /// of the job and of another, used ports, sometimes a full range.
    fn arb_mixed(id: u64) -> impl Strategy<Value = NodeCandidate> {
        (
            // Round figures, so that scores tie and tie-breaks matter.
            (1u64..5, 0u64..5, 1u64..5, 0u64..5),
            (0usize..4, 0usize..3, 0u8..4),
            (
                0u32..3,
                0u32..3,
                prop::collection::btree_set(20000u16..20006, 0..5),
            ),
            (any::<bool>(), any::<bool>()),
        )
            .prop_map(
                move |(
                    (cap_cpu, alloc_cpu, cap_mem, alloc_mem),
                    (zone, region, images),
                    (web, other, used),
                    (narrow, privileged),
                )| {
                    let mut n = node(id, cap_cpu * 2000, cap_mem * 2 * GI);
                    n.allocated = ResourceVec::new(alloc_cpu * 500, alloc_mem * GI / 2);
                    if zone > 0 {
                        n.labels
                            .insert("zone".into(), ["a", "b", "c"][zone - 1].into());
                    }
                    n.labels
                        .insert("region".into(), ["eu", "us", "ap"][region].into());
                    n.images = match images {
                        0 => None,
                        1 => Some(BTreeSet::new()),
                        _ => Some(BTreeSet::from(["nginx:latest".to_string()])),
                    };
                    if web > 0 {
                        n.job_replicas.insert("web".into(), web);
                    }
                    if other > 0 {
                        n.job_replicas.insert("other".into(), other);
                    }
                    n.used_ports = used.into_iter().map(|p| (p, PortProtocol::Tcp)).collect();
                    n.port_range = if narrow { 20000..=20005 } else { 20000..=20040 };
                    n.host_access.privileged = privileged;
                    n
                },
            )
    }

    proptest! {
        /// The ranked placement chooses what the exhaustive scan chooses,
        /// fails with the same message, and leaves the same nodes.
        #[test]
        fn ranking_chooses_what_the_exhaustive_scan_chooses(
            nodes in (0u64..40).prop_flat_map(|n| (1..=n).map(arb_mixed).collect::<Vec<_>>()),
            (cpu, mem) in (0u64..4, 0u64..4),
            count in 0u32..120,
            (binpack, required, privileged) in (any::<bool>(), prop::bool::weighted(0.2), prop::bool::weighted(0.2)),
            (fixed, dynamic) in (prop::option::weighted(0.2, 20000u16..20012), 0usize..3),
            region in prop::option::weighted(0.3, 0usize..3),
            seed: u64,
        ) {
            let constraints: BTreeMap<String, String> = region
                .map(|r| ("region".to_string(), ["eu", "us", "ap"][r].to_string()))
                .into_iter()
                .collect();
            let mut ports: Vec<PortSpec> = (0..dynamic).map(|_| port(80, None)).collect();
            ports.extend(fixed.map(|h| port(81, Some(h))));
            let container = ContainerSpec { privileged, ..ContainerSpec::default() };
            let r = PlacementRequest {
                image_required: required,
                strategy: if binpack { PlacementStrategy::Binpack } else { PlacementStrategy::Spread },
                container: &container,
                ..req(cpu * 250, mem * 256 * MI, &ports, &constraints)
            };
            let (mut a, mut b) = (nodes.clone(), nodes);
            let ranked = place(&mut a, &r, count, seed);
            let scanned = crate::scheduler::exhaustive::place(&mut b, &r, count, seed);
            prop_assert_eq!(ranked, scanned);
            prop_assert_eq!(a, b);
        }
    }

    fn allowing(mut n: NodeCandidate, privileged: bool, dirs: &[&str]) -> NodeCandidate {
        n.host_access = HostAccess {
            privileged,
            host_paths: dirs.iter().map(|d| d.to_string()).collect(),
        };
        n
    }

    fn host_path(host: &str) -> HostPathMount {
        HostPathMount {
            host: host.into(),
            container: "/data".into(),
            read_only: true,
        }
    }

    #[test]
    fn privileged_and_host_path_replicas_go_only_to_nodes_that_allow_them() {
        let none = BTreeMap::new();
        let fresh = || {
            vec![
                node(1, 4000, 4 * GI),
                allowing(node(2, 4000, 4 * GI), true, &[]),
                allowing(node(3, 4000, 4 * GI), false, &["/srv"]),
            ]
        };
        // A plain job spreads over all three.
        let mut nodes = fresh();
        place(&mut nodes, &req(100, 64 * MI, &[], &none), 3, 1).unwrap();
        assert_eq!(counts(&nodes), [1, 1, 1]);

        let privileged = ContainerSpec {
            host_network: true,
            ..ContainerSpec::default()
        };
        let mut nodes = fresh();
        let r = PlacementRequest {
            container: &privileged,
            ..req(100, 64 * MI, &[], &none)
        };
        place(&mut nodes, &r, 2, 1).unwrap();
        assert_eq!(counts(&nodes), [0, 2, 0]);

        let mounts = ContainerSpec {
            host_paths: vec![host_path("/srv/data")],
            ..ContainerSpec::default()
        };
        let mut nodes = fresh();
        let r = PlacementRequest {
            container: &mounts,
            ..req(100, 64 * MI, &[], &none)
        };
        place(&mut nodes, &r, 2, 1).unwrap();
        assert_eq!(counts(&nodes), [0, 0, 2]);
    }

    #[test]
    fn unallowed_needs_are_refused_naming_them_and_what_nodes_allow() {
        let none = BTreeMap::new();
        let mut nodes = vec![
            node(1, 4000, 4 * GI),
            allowing(node(2, 4000, 4 * GI), false, &["/srv"]),
        ];
        let both = ContainerSpec {
            privileged: true,
            host_paths: vec![host_path("/tmp/x")],
            ..ContainerSpec::default()
        };
        let r = PlacementRequest {
            container: &both,
            ..req(100, 64 * MI, &[], &none)
        };
        assert_eq!(
            err(&mut nodes, &r, 1),
            "cannot place replica 1 of 1 of job web: needs privileged, hostPath /tmp/x, which no \
             eligible node allows (nodes allow: node-b (nothing), node-c (hostPath /srv)); start \
             an agent with --allow-privileged and --allow-host-path DIR to allow it there"
        );
        assert_eq!(nodes[1].allocated, ResourceVec::default(), "untouched");

        // The Docker socket is never covered by a directory above it.
        let sock = ContainerSpec {
            host_paths: vec![host_path("/var/run/docker.sock")],
            ..ContainerSpec::default()
        };
        let mut nodes = vec![allowing(node(1, 4000, 4 * GI), true, &["/"])];
        let r = PlacementRequest {
            container: &sock,
            ..req(100, 64 * MI, &[], &none)
        };
        let msg = err(&mut nodes, &r, 1);
        assert!(msg.contains("needs hostPath /var/run/docker.sock"), "{msg}");
        let mut nodes = vec![allowing(
            node(1, 4000, 4 * GI),
            false,
            &["/var/run/docker.sock"],
        )];
        assert!(place(&mut nodes, &r, 1, 1).is_ok());

        // Constraints are judged first: their message wins.
        let zone = BTreeMap::from([("zone".to_string(), "b".to_string())]);
        let r = PlacementRequest {
            container: &both,
            ..req(100, 64 * MI, &[], &zone)
        };
        let msg = err(&mut nodes, &r, 1);
        assert!(msg.contains("no node matches constraints zone=b"), "{msg}");
    }
}
