//! Prometheus metrics (`GET /metrics`, OpenMetrics text, prometheus-client).
//!
//! Every value is derived from state the node already holds (Raft state,
//! gossip, the status board), so a scrape builds a fresh registry from a
//! consistent read instead of keeping counters in sync by hand.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use skein_protocol::api::{AllocState, NodeHealth};

use crate::context::NodeCtx;

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
struct AllocLabels {
    skein_job: String,
    alloc: String,
}

fn family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The node's metrics in OpenMetrics text format.
pub async fn render(ctx: &NodeCtx) -> Result<String, std::fmt::Error> {
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

    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}
