//! Placement quality of [`super::place`] against the exhaustive scan
//! ([`super::exhaustive::place`]) on random clusters: a sequence of spread
//! jobs and one of bin-pack jobs, each placed one job after another by
//! each algorithm on its own copy of the cluster, then judged by what the
//! strategy is for. Spread: the most replicas of a job on one node and in
//! one zone, and how even utilisation is across nodes. Bin-pack: how many
//! nodes end up occupied and how much room those leave unused. `place`
//! must be within 5% of the scan on every measure. Two strawmen judged the
//! same way must not be (first fit; the other strategy's scan), so the
//! measures do tell a worse placement.

use std::collections::BTreeMap;

use skein_protocol::spec::{
    ContainerSpec, HostAccess, PlacementStrategy, PortProtocol, PortSpec, ResourceVec,
};

use super::place::{Need, Static};
use super::{exhaustive, NodeCandidate, Placement, PlacementError, PlacementRequest};

const GI: u64 = 1 << 30;
/// Allowed loss against the exhaustive scan.
const TOLERANCE: f64 = 0.05;

type Place = fn(
    &mut [NodeCandidate],
    &PlacementRequest<'_>,
    u32,
    u64,
) -> Result<Vec<Placement>, PlacementError>;

/// splitmix64, so that clusters are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn cluster(rng: &mut Rng, n: usize) -> Vec<NodeCandidate> {
    (0..n)
        .map(|i| {
            let size = 1 << rng.below(3);
            let capacity = ResourceVec::new(4000 * size, 8 * GI * size);
            let mut labels = BTreeMap::new();
            // A few nodes without a zone: each its own failure domain.
            if rng.below(10) > 0 {
                labels.insert("zone".to_string(), format!("z{}", rng.below(4)));
            }
            labels.insert("region".to_string(), format!("r{}", rng.below(2)));
            // A third of the nodes empty: bin-pack should keep them so.
            let used = if rng.below(3) == 0 { 0 } else { rng.below(60) };
            NodeCandidate {
                id: i as u64 + 1,
                name: format!("n{i}"),
                labels,
                capacity,
                allocated: ResourceVec::new(
                    capacity.cpu_millis * used / 100,
                    capacity.memory_bytes * used * rng.below(2) / 100,
                ),
                used_ports: (0..rng.below(4))
                    .map(|_| (20000 + rng.below(200) as u16, PortProtocol::Tcp))
                    .collect(),
                port_range: 20000..=20199,
                images: (rng.below(4) > 0).then(|| {
                    (0..rng.below(3))
                        .map(|k| format!("app{}:latest", rng.below(3) + k))
                        .collect()
                }),
                job_replicas: BTreeMap::new(),
                host_access: HostAccess::default(),
            }
        })
        .collect()
}

struct Job {
    name: String,
    replicas: u32,
    cpu: u64,
    mem: u64,
    strategy: PlacementStrategy,
    constraints: BTreeMap<String, String>,
    image: String,
}

fn jobs(rng: &mut Rng, n: usize, count: usize, strategy: PlacementStrategy) -> Vec<Job> {
    (0..count)
        .map(|k| Job {
            name: format!("job{k}"),
            replicas: 1 + rng.below(n as u64) as u32,
            cpu: 100 * (1 + rng.below(10)),
            mem: GI / 4 * (1 + rng.below(8)),
            strategy,
            constraints: if rng.below(4) == 0 {
                BTreeMap::from([("region".to_string(), format!("r{}", rng.below(2)))])
            } else {
                BTreeMap::new()
            },
            image: format!("app{}", rng.below(4)),
        })
        .collect()
}

/// The jobs placed in order by `place` (a job that no longer fits whole
/// is skipped, as the planner refuses it), and the cluster they leave.
fn run(mut nodes: Vec<NodeCandidate>, jobs: &[Job], place: Place) -> (Vec<NodeCandidate>, usize) {
    let ports = [PortSpec {
        name: None,
        container_port: 80,
        host_port: None,
        protocol: PortProtocol::Tcp,
    }];
    let container = ContainerSpec::default();
    let mut placed = 0;
    for (k, j) in jobs.iter().enumerate() {
        let req = PlacementRequest {
            job: &j.name,
            image: &j.image,
            image_required: false,
            resources: ResourceVec::new(j.cpu, j.mem),
            ports: &ports,
            constraints: &j.constraints,
            strategy: j.strategy,
            container: &container,
        };
        if place(&mut nodes, &req, j.replicas, k as u64).is_ok() {
            placed += 1;
        }
    }
    (nodes, placed)
}

/// Measures of one placed cluster, smaller better, by name.
type Quality = Vec<(&'static str, f64)>;

fn util(n: &NodeCandidate) -> f64 {
    let frac = |u: u64, c: u64| if c == 0 { 1.0 } else { u as f64 / c as f64 };
    frac(n.allocated.cpu_millis, n.capacity.cpu_millis)
        .max(frac(n.allocated.memory_bytes, n.capacity.memory_bytes))
}

fn spread_quality(nodes: &[NodeCandidate], jobs: &[Job]) -> Quality {
    let of = |n: &NodeCandidate, j: &Job| n.job_replicas.get(&j.name).copied().unwrap_or(0);
    let (mut node_max, mut zone_max) = (0.0, 0.0);
    for j in jobs {
        let mut zones: BTreeMap<&str, u32> = BTreeMap::new();
        for n in nodes {
            // A node without a zone is its own failure domain.
            *zones.entry(n.zone().unwrap_or(&n.name)).or_default() += of(n, j);
        }
        node_max += f64::from(nodes.iter().map(|n| of(n, j)).max().unwrap_or(0));
        zone_max += f64::from(zones.values().copied().max().unwrap_or(0));
    }
    let utils: Vec<f64> = nodes.iter().map(util).collect();
    let len = utils.len().max(1) as f64;
    let mean = utils.iter().sum::<f64>() / len;
    let stddev = (utils.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / len).sqrt();
    vec![
        ("sum over jobs of the most replicas on a node", node_max),
        ("sum over jobs of the most replicas in a zone", zone_max),
        ("utilisation stddev", stddev),
    ]
}

fn binpack_quality(nodes: &[NodeCandidate]) -> Quality {
    let occupied: Vec<f64> = nodes
        .iter()
        .filter(|n| n.allocated != ResourceVec::default())
        .map(util)
        .collect();
    let slack = 1.0 - occupied.iter().sum::<f64>() / occupied.len().max(1) as f64;
    vec![
        ("occupied nodes", occupied.len() as f64),
        ("unused share of occupied nodes", slack),
    ]
}

/// The measures on which `got` is more than [`TOLERANCE`] worse than
/// `reference`.
fn worse(got: &Quality, reference: &Quality) -> Vec<String> {
    got.iter()
        .zip(reference)
        .filter(|((_, g), (_, r))| *g > r * (1.0 + TOLERANCE) + 1e-9)
        .map(|((what, g), (_, r))| format!("{what}: {g:.3} against {r:.3}"))
        .collect()
}

/// The first node in slice order that passes every filter.
fn first_fit(
    nodes: &mut [NodeCandidate],
    req: &PlacementRequest<'_>,
    count: u32,
    _seed: u64,
) -> Result<Vec<Placement>, PlacementError> {
    let need = Need::of(req);
    let mut work = nodes.to_vec();
    let mut out = Vec::new();
    for _ in 0..count {
        let n = work
            .iter_mut()
            .find(|n| {
                let st = need.static_filter(n, req);
                (st == Static::Ok || st == Static::Image) && need.fits(n, req)
            })
            .ok_or_else(|| PlacementError("full".into()))?;
        n.allocated = n.allocated.saturating_add(req.resources);
        *n.job_replicas.entry(req.job.to_string()).or_insert(0) += 1;
        out.push(Placement {
            node: n.id,
            ports: vec![],
        });
    }
    nodes.clone_from_slice(&work);
    Ok(out)
}

/// The exhaustive scan with the other strategy.
fn other_strategy(
    nodes: &mut [NodeCandidate],
    req: &PlacementRequest<'_>,
    count: u32,
    seed: u64,
) -> Result<Vec<Placement>, PlacementError> {
    let strategy = match req.strategy {
        PlacementStrategy::Spread => PlacementStrategy::Binpack,
        PlacementStrategy::Binpack => PlacementStrategy::Spread,
    };
    let flipped = PlacementRequest {
        strategy,
        ..req.clone()
    };
    exhaustive::place(nodes, &flipped, count, seed)
}

#[test]
fn place_is_within_five_percent_of_the_exhaustive_scan() {
    let sizes = [
        (8, 1),
        (30, 2),
        (64, 3),
        (65, 4),
        (150, 5),
        (300, 6),
        (600, 7),
    ];
    for strategy in [PlacementStrategy::Spread, PlacementStrategy::Binpack] {
        for (n, seed) in sizes {
            let mut rng = Rng(seed);
            let nodes = cluster(&mut rng, n);
            let jobs = jobs(&mut rng, n, 12, strategy);
            let judge = |place: Place| {
                let (after, placed) = run(nodes.clone(), &jobs, place);
                let q = match strategy {
                    PlacementStrategy::Spread => spread_quality(&after, &jobs),
                    PlacementStrategy::Binpack => binpack_quality(&after),
                };
                (q, placed)
            };
            let (reference, placed_ref) = judge(exhaustive::place);
            let (q, placed) = judge(super::place);
            let bad = worse(&q, &reference);
            assert!(
                bad.is_empty() && placed >= placed_ref,
                "{strategy:?}, {n} nodes: {bad:?}; {placed} jobs placed against {placed_ref}"
            );
            for (name, straw) in [
                ("first fit", first_fit as Place),
                ("other strategy", other_strategy),
            ] {
                let (sq, _) = judge(straw);
                assert!(
                    !worse(&sq, &reference).is_empty(),
                    "{strategy:?}, {n} nodes: {name} passes as {sq:?} against {reference:?}"
                );
            }
        }
    }
}
