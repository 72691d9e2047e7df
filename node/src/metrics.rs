//! Prometheus metrics (`GET /metrics`, OpenMetrics text, prometheus-client).
//!
//! Two kinds. Values that describe state the node already holds (Raft
//! state, gossip, the status board, container usage) are derived per scrape
//! into a fresh registry, from a consistent read, instead of being kept in
//! sync by hand. Things that are counted as they happen (scheduler
//! placements and planning time, libp2p's own metrics) live in [`Metrics`],
//! one registry for the life of the node that the mesh records into too.

use std::sync::Arc;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use skein_protocol::api::{AllocState, NodeHealth};

use crate::executor::stats::UsageBoard;
use crate::executor::StatusBoard;
use crate::membership::Membership;
use crate::raft::storage::Storage;
use crate::raft::{SkeinRaft, StateHandle};
use crate::state::{node_id_str, NodeId};

/// Metrics counted as things happen, in the registry libp2p's metrics
/// were registered into when the mesh started.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Replicas placed (by this node, while it led).
    pub placements: Counter,
    /// Plans committed (by this node, while it led).
    pub plans: Counter,
    /// Time from reading the state to the commit of a plan.
    pub plan_seconds: Histogram,
    /// Image fetches by source (`registry`, `peer`) and result (`ok`, `failed`).
    pub image_pulls: Family<ImagePullLabels, Counter>,
    /// Bytes of images fetched, by source.
    pub image_pull_bytes: Family<ImageSourceLabels, Counter>,
    /// Duration of successful image fetches, by source.
    pub image_pull_seconds: Family<ImageSourceLabels, Histogram>,
}

/// Labels of [`Metrics::image_pulls`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImagePullLabels {
    /// `registry` or `peer`.
    pub source: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// Labels of the per-source image metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageSourceLabels {
    /// `registry` or `peer`.
    pub source: String,
}

impl Metrics {
    /// Adds the scheduler's metrics to `registry` (which may already hold
    /// libp2p's) and keeps it for scraping.
    pub fn new(mut registry: Registry) -> Arc<Self> {
        let placements = Counter::default();
        let plans = Counter::default();
        // 1 ms .. ~16 s: a plan is a Raft round trip plus placement.
        let plan_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let sub = registry.sub_registry_with_prefix("skein_scheduler");
        sub.register(
            "placements",
            "Replicas placed on nodes by this node as leader",
            placements.clone(),
        );
        sub.register(
            "plans",
            "Plans this node committed as leader",
            plans.clone(),
        );
        sub.register(
            "plan_duration_seconds",
            "Time from reading the state to the commit of a plan",
            plan_seconds.clone(),
        );
        let images = registry.sub_registry_with_prefix("skein_image");
        let image_pulls = family_of(
            images,
            "pulls",
            "Image fetches by this node, by source (registry, peer) and result",
        );
        let image_pull_bytes = family_of(
            images,
            "pull_bytes",
            "Bytes of images this node fetched, by source",
        );
        // 0.1 s .. ~27 min: a layer from a LAN registry to a large image over a slow link.
        let image_pull_seconds = Family::<ImageSourceLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.1, 2.0, 15))) as fn() -> Histogram,
        );
        images.register(
            "pull_duration_seconds",
            "Duration of this node's successful image fetches, by source",
            image_pull_seconds.clone(),
        );
        Arc::new(Self {
            registry,
            placements,
            plans,
            plan_seconds,
            image_pulls,
            image_pull_bytes,
            image_pull_seconds,
        })
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// `skein_job`, not `job`: Prometheus sets `job` on every scraped series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    skein_job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaderLabels {
    leader: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AllocLabels {
    skein_job: String,
    alloc: String,
}

/// Registers a labelled family of metrics of type `M` (a gauge, a counter…).
fn family_of<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: Default,
    Family<L, M>: prometheus_client::registry::Metric + Clone,
{
    let f = Family::<L, M>::default();
    registry.register(name, help, f.clone());
    f
}

/// The common case: a labelled family of gauges.
fn family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    family_of(registry, name, help)
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a scrape reads: the node's state, gossip, boards and counters.
pub struct MetricsSources<'a> {
    /// This node's id.
    pub id: NodeId,
    /// Raft, for its view (term, leader, voters, indexes).
    pub raft: &'a SkeinRaft,
    /// State applied by this node's Raft (jobs, its size).
    pub state: &'a StateHandle,
    /// What this node must run.
    pub desired: &'a StateHandle,
    /// Allocation statuses of every node.
    pub board: &'a StatusBoard,
    /// Node table.
    pub membership: &'a Membership,
    /// Measured usage of this node's containers.
    pub usage: &'a UsageBoard,
    /// Raft storage health.
    pub storage: &'a Storage,
    /// The counters kept for the node's life.
    pub metrics: &'a Metrics,
}

impl MetricsSources<'_> {
    fn id(&self) -> NodeId {
        self.id
    }

    fn is_member(&self) -> bool {
        crate::peers::is_member(self.raft, self.id)
    }
}

/// The node's metrics in OpenMetrics text format.
pub async fn render(ctx: &MetricsSources<'_>) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("skein");

    // Jobs: only Raft members hold the whole state.
    if ctx.is_member() {
        let desired =
            family::<JobLabels>(&mut r, "job_desired_replicas", "Replicas a job asks for");
        let running = family::<JobLabels>(
            &mut r,
            "job_running_replicas",
            "Replicas of a job whose container runs",
        );
        let statuses = ctx.board.all().await;
        ctx.state
            .read(|s| {
                for (name, job) in &s.jobs {
                    let l = JobLabels {
                        skein_job: name.clone(),
                    };
                    desired.get_or_create(&l).set(if job.stopped {
                        0
                    } else {
                        i64::from(job.spec.replicas)
                    });
                    let n = s
                        .allocs_of(name)
                        .filter(|a| {
                            statuses
                                .get(&a.node)
                                .and_then(|m| m.get(&a.id))
                                .is_some_and(|st| st.state == AllocState::Running)
                        })
                        .count();
                    running
                        .get_or_create(&l)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            })
            .await;
    }

    // Nodes, as gossip tells them.
    let up = family::<NodeLabels>(
        &mut r,
        "node_up",
        "1 when the node is ready, 0 when suspect or dead",
    );
    let cap_cpu = family::<NodeLabels>(&mut r, "node_capacity_cpu_millicores", "Schedulable CPU");
    let cap_mem = family::<NodeLabels>(&mut r, "node_capacity_memory_bytes", "Schedulable memory");
    let used_cpu = family::<NodeLabels>(
        &mut r,
        "node_allocated_cpu_millicores",
        "CPU requested by placed replicas",
    );
    let used_mem = family::<NodeLabels>(
        &mut r,
        "node_allocated_memory_bytes",
        "Memory requested by placed replicas",
    );
    let allocs = family::<NodeLabels>(&mut r, "node_allocations", "Replicas placed on the node");
    let used_cpu_now = family::<NodeLabels>(
        &mut r,
        "node_used_cpu_millicores",
        "CPU the node's containers use (Docker stats)",
    );
    let used_mem_now = family::<NodeLabels>(
        &mut r,
        "node_used_memory_bytes",
        "Memory the node's containers use (Docker stats)",
    );
    let records = ctx.membership.all().await;
    for n in &records {
        let l = NodeLabels {
            node: n.name.clone(),
        };
        up.get_or_create(&l)
            .set(i64::from(n.health == NodeHealth::Ready));
        cap_cpu.get_or_create(&l).set(int(n.capacity.cpu_millis));
        cap_mem.get_or_create(&l).set(int(n.capacity.memory_bytes));
        used_cpu.get_or_create(&l).set(int(n.allocated.cpu_millis));
        used_mem
            .get_or_create(&l)
            .set(int(n.allocated.memory_bytes));
        allocs.get_or_create(&l).set(i64::from(n.allocation_count));
        used_cpu_now
            .get_or_create(&l)
            .set(int(n.usage.iter().map(|u| u.cpu_millis).sum()));
        used_mem_now
            .get_or_create(&l)
            .set(int(n.usage.iter().map(|u| u.memory_bytes).sum()));
    }
    let peers = records
        .iter()
        .filter(|n| n.id != ctx.id() && n.health != NodeHealth::Dead)
        .count();
    gauge(
        &mut r,
        "gossip_peers",
        "Other nodes heard from recently",
        i64::try_from(peers).unwrap_or(i64::MAX),
    );

    // This node's containers.
    let restarts = family::<AllocLabels>(
        &mut r,
        "alloc_restarts",
        "Restarts of a replica's container by this node",
    );
    let ready = family::<AllocLabels>(
        &mut r,
        "alloc_ready",
        "1 when a replica on this node passes its readiness checks",
    );
    let mine = ctx.board.of_node(ctx.id()).await;
    ctx.desired
        .read(|d| {
            for a in d.allocs.values() {
                let l = AllocLabels {
                    skein_job: a.job.clone(),
                    alloc: a.id.clone(),
                };
                let st = mine.get(&a.id);
                restarts
                    .get_or_create(&l)
                    .set(st.map_or(0, |s| i64::from(s.restarts)));
                ready
                    .get_or_create(&l)
                    .set(i64::from(st.is_some_and(|s| s.ready)));
            }
        })
        .await;
    container_usage(&mut r, ctx).await;

    // Raft, as this node sees it.
    let m = ctx.raft.metrics().borrow().clone();
    gauge(
        &mut r,
        "raft_term",
        "Current Raft term",
        int(m.current_term),
    );
    gauge(
        &mut r,
        "raft_last_applied_index",
        "Last Raft log index applied here",
        int(m.last_applied.map_or(0, |l| l.index)),
    );
    gauge(
        &mut r,
        "raft_last_log_index",
        "Last Raft log index stored here",
        int(m.last_log_index.unwrap_or(0)),
    );
    let leader = family::<LeaderLabels>(
        &mut r,
        "raft_leader",
        "1 for the leader this node follows (id and name as labels)",
    );
    if let Some(id) = m.current_leader {
        let name = ctx
            .membership
            .get(id)
            .await
            .map(|n| n.name)
            .unwrap_or_default();
        leader
            .get_or_create(&LeaderLabels {
                leader: node_id_str(id),
                name,
            })
            .set(1);
    }
    gauge(
        &mut r,
        "raft_is_leader",
        "1 on the Raft leader",
        i64::from(m.current_leader == Some(ctx.id())),
    );
    gauge(
        &mut r,
        "raft_voters",
        "Voters in the Raft membership",
        i64::try_from(m.membership_config.membership().voter_ids().count()).unwrap_or(i64::MAX),
    );
    let storage = ctx.storage.health();
    gauge(
        &mut r,
        "storage_degraded",
        "1 while this node's raft storage fails (it refuses writes and does not lead)",
        i64::from(storage.degraded),
    );
    gauge(
        &mut r,
        "storage_errors",
        "Raft storage operations that failed (and were retried) since start",
        int(storage.errors),
    );
    // The weight (O(1)), not the encoding: a scrape must not cost O(state).
    let (state_bytes, quota) = ctx
        .state
        .read(|s| (s.weight(), crate::state::quota_for(s.schema)))
        .await;
    gauge(
        &mut r,
        "state_bytes",
        "Size of the replicated cluster state as its quota counts it, about its encoded size (the quota is skein_state_quota_bytes)",
        i64::try_from(state_bytes).unwrap_or(i64::MAX),
    );
    gauge(
        &mut r,
        "state_quota_bytes",
        "Largest state user writes may produce",
        i64::try_from(quota).unwrap_or(i64::MAX),
    );

    let mut out = String::new();
    encode_registry(&mut out, &r)?;
    encode_registry(&mut out, &ctx.metrics.registry)?;
    encode_eof(&mut out)?;
    Ok(out)
}

/// This node's containers, from their last Docker stats sample.
async fn container_usage(r: &mut Registry, ctx: &MetricsSources<'_>) {
    let cpu = family::<AllocLabels>(
        r,
        "container_cpu_millicores",
        "CPU a replica's container used over the last sample interval",
    );
    let cpu_total = family_of::<AllocLabels, Counter<f64>>(
        r,
        "container_cpu_usage_seconds",
        "CPU time a replica's container used since it started",
    );
    let mem = family::<AllocLabels>(
        r,
        "container_memory_bytes",
        "Memory a replica's container uses (without page cache)",
    );
    let limit = family::<AllocLabels>(
        r,
        "container_memory_limit_bytes",
        "Memory limit of a replica's container (0: none)",
    );
    let rx = family_of::<AllocLabels, Counter>(
        r,
        "container_network_receive_bytes",
        "Bytes a replica's container received",
    );
    let tx = family_of::<AllocLabels, Counter>(
        r,
        "container_network_transmit_bytes",
        "Bytes a replica's container sent",
    );
    for u in ctx.usage.all().await {
        let l = AllocLabels {
            skein_job: u.job.clone(),
            alloc: u.alloc.clone(),
        };
        cpu.get_or_create(&l).set(int(u.cpu_millis));
        // Precision loss above 2^53 ns (104 days of CPU) is acceptable.
        #[allow(clippy::cast_precision_loss)]
        cpu_total
            .get_or_create(&l)
            .inc_by(u.cpu_total_ns as f64 / 1e9);
        mem.get_or_create(&l).set(int(u.memory_bytes));
        limit.get_or_create(&l).set(int(u.memory_limit_bytes));
        rx.get_or_create(&l).inc_by(u.net_rx_bytes);
        tx.get_or_create(&l).inc_by(u.net_tx_bytes);
    }
}
