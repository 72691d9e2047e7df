//! Measured resource use of this node's containers.
//!
//! The scheduler places replicas by what they *request*; this module shows
//! what they actually *use*, so operators can size requests and spot a
//! runaway replica. Every interval the sampler lists the running containers
//! labelled with this node's id, asks Docker for one stats sample each, and
//! publishes the results on a [`UsageBoard`].
//!
//! Docker reports cumulative CPU time, so a CPU rate needs two samples of the
//! same container: the sampler remembers the previous one per container id.
//! The conversion from a Docker sample to a [`ContainerUsage`] is pure, so
//! the arithmetic is unit-tested without Docker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerMemoryStats, ContainerStatsResponse, ContainerSummary};
use futures::StreamExt;
use skein_protocol::api::ContainerUsage;
use tokio::sync::RwLock;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::container::{LABEL_ALLOC, LABEL_JOB, LABEL_NODE};
use super::{docker_message, is_not_found};
use crate::clock;
use crate::runtime::{ContainerRuntime, ListFilter, Runtime, RuntimeError};
use crate::state::{node_id_str, NodeId};

/// Stats calls in flight at once: enough to sample a busy node within an
/// interval without flooding the daemon.
const CONCURRENCY: usize = 8;
/// Longest wait for one container's sample, so a hung daemon cannot stall
/// the loop.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest accepted interval (`tokio::time::interval` panics on zero).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Latest measured usage of this node's containers, by allocation id.
///
/// Shared between the sampler (writer) and the API, metrics and gossip
/// (readers), which only ever need the whole picture.
#[derive(Clone, Default, Debug)]
pub struct UsageBoard {
    inner: Arc<RwLock<BTreeMap<String, ContainerUsage>>>,
}

impl UsageBoard {
    /// An empty board: nothing measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// All samples, sorted by allocation id.
    pub async fn all(&self) -> Vec<ContainerUsage> {
        self.inner.read().await.values().cloned().collect()
    }

    /// Replace everything (used by the sampler; also handy in tests).
    pub async fn replace(&self, samples: Vec<ContainerUsage>) {
        let map = samples.into_iter().map(|u| (u.alloc.clone(), u)).collect();
        *self.inner.write().await = map;
    }
}

/// Samples every `interval` until the task is dropped.
pub async fn run(docker: Runtime, node: NodeId, board: UsageBoard, interval: Duration) {
    let mut sampler = Sampler::default();
    let mut ticks = tokio::time::interval(interval.max(MIN_INTERVAL));
    // After a slow pass, wait a full interval rather than bursting.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        sampler.pass(&docker, node, &board).await;
    }
}

/// Cumulative CPU time of a container at one sample: where the next
/// sample's rate is measured from.
#[derive(Debug, Clone, Copy)]
struct CpuMark {
    total_ns: u64,
    /// Docker's own timestamp of the sample (Unix ns), when parseable: more
    /// exact than our clock, which also counts the HTTP round trip.
    read_ns: Option<i128>,
    at: Instant,
}

/// What one container's stats call gave.
enum Fetched {
    Sample {
        stats: Box<ContainerStatsResponse>,
        limited: bool,
        at: Instant,
        sampled_at_ms: u64,
    },
    /// Stopped or removed since the list: not an error.
    Gone,
    Failed(String),
}

/// The sampler's memory between passes, per container id.
#[derive(Default)]
struct Sampler {
    marks: HashMap<String, CpuMark>,
    /// Whether the container has a memory limit. Docker reports the host's
    /// total as the limit of an unlimited container, and neither the stats
    /// nor the container list say which case it is; only inspect does
    /// (HostConfig.Memory). A container's limit is fixed at create (Skein
    /// replaces containers rather than `docker update` them), so one inspect
    /// per container, cached here, is the cheapest correct way.
    limited: HashMap<String, bool>,
    last_error: Option<String>,
}

impl Sampler {
    /// One pass: sample every running container of `node` into `board`.
    async fn pass(&mut self, docker: &Runtime, node: NodeId, board: &UsageBoard) {
        let running = match list_running(&**docker, node).await {
            Ok(r) => {
                if self.last_error.take().is_some() {
                    info!("usage sampler: docker reachable again");
                }
                r
            }
            Err(e) => {
                let msg = docker_message(&e);
                // One line per distinct failure, not one per pass; the board
                // keeps its last samples meanwhile.
                if self.last_error.as_deref() != Some(&msg) {
                    warn!(error = %msg, "usage sampler: cannot list containers");
                    self.last_error = Some(msg);
                }
                return;
            }
        };

        let calls = running.into_iter().filter_map(|c| {
            let (id, alloc, job) = identify(c)?;
            let docker = docker.clone();
            let known = self.limited.get(&id).copied();
            Some(async move {
                let fetched =
                    match tokio::time::timeout(CALL_TIMEOUT, fetch(&*docker, &id, known)).await {
                        Ok(f) => f,
                        Err(_) => Fetched::Failed(format!("no answer within {CALL_TIMEOUT:?}")),
                    };
                (id, alloc, job, fetched)
            })
        });
        let results: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

        let before: HashMap<String, ContainerUsage> = board
            .all()
            .await
            .into_iter()
            .map(|u| (u.alloc.clone(), u))
            .collect();
        let mut live = HashSet::new();
        let mut samples = Vec::with_capacity(results.len());
        for (id, alloc, job, fetched) in results {
            match fetched {
                Fetched::Sample {
                    stats,
                    limited,
                    at,
                    sampled_at_ms,
                } => {
                    let (usage, mark) =
                        convert(&stats, limited, self.marks.get(&id), at, sampled_at_ms);
                    self.marks.insert(id.clone(), mark);
                    self.limited.insert(id.clone(), limited);
                    samples.push(ContainerUsage {
                        alloc,
                        job,
                        ..usage
                    });
                    live.insert(id);
                }
                Fetched::Gone => {}
                Fetched::Failed(msg) => {
                    // Still running as far as we know: keep its last sample
                    // (its age shows in `sampled_at_ms`) and its CPU mark, so
                    // the next rate spans the gap.
                    debug!(alloc = %alloc, error = %msg, "usage sampler: no sample this pass");
                    if let Some(u) = before.get(&alloc) {
                        samples.push(u.clone());
                    }
                    live.insert(id);
                }
            }
        }
        self.marks.retain(|id, _| live.contains(id));
        self.limited.retain(|id, _| live.contains(id));
        board.replace(samples).await;
    }
}

/// The running containers labelled with `node`'s id.
async fn list_running(
    docker: &dyn ContainerRuntime,
    node: NodeId,
) -> Result<Vec<ContainerSummary>, RuntimeError> {
    let filter = ListFilter {
        labels: vec![format!("{LABEL_NODE}={}", node_id_str(node))],
        running_only: true,
    };
    docker.list_containers(&filter).await
}

/// Container id, allocation and job of a listed container; `None` for one
/// without an id or allocation label (not placed by Skein's executor).
fn identify(c: ContainerSummary) -> Option<(String, String, String)> {
    let id = c.id?;
    let mut labels = c.labels?;
    let alloc = labels.remove(LABEL_ALLOC)?;
    let job = labels.remove(LABEL_JOB).unwrap_or_default();
    Some((id, alloc, job))
}

/// One stats sample of container `id` (and its limit, unless `known`).
async fn fetch(docker: &dyn ContainerRuntime, id: &str, known: Option<bool>) -> Fetched {
    let limited = match known {
        Some(l) => l,
        None => match docker.inspect_container(id).await {
            Ok(i) => i.host_config.and_then(|h| h.memory).is_some_and(|m| m > 0),
            Err(e) if is_not_found(&e) => return Fetched::Gone,
            Err(e) => return Fetched::Failed(docker_message(&e)),
        },
    };
    match docker.stats_once(id).await {
        Ok(stats) if is_stopped(&stats) => Fetched::Gone,
        Ok(stats) => Fetched::Sample {
            stats: Box::new(stats),
            limited,
            at: Instant::now(),
            sampled_at_ms: clock::now_ms(),
        },
        Err(e) if is_not_found(&e) => Fetched::Gone,
        Err(e) => Fetched::Failed(docker_message(&e)),
    }
}

/// Docker answers a stats call on a stopped container with an empty sample
/// dated year 1 rather than an error.
fn is_stopped(stats: &ContainerStatsResponse) -> bool {
    match read_ns(stats) {
        Some(t) => t <= 0,
        None => stats
            .memory_stats
            .as_ref()
            .is_none_or(|m| m.usage.is_none()),
    }
}

/// One Docker sample as usage (without allocation and job, which come from
/// the labels), and the CPU mark the next sample's rate is measured from.
/// `prev` is the previous mark of the same container, if any.
fn convert(
    stats: &ContainerStatsResponse,
    limited: bool,
    prev: Option<&CpuMark>,
    at: Instant,
    sampled_at_ms: u64,
) -> (ContainerUsage, CpuMark) {
    let mark = CpuMark {
        total_ns: stats
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        read_ns: read_ns(stats),
        at,
    };
    let memory = stats.memory_stats.as_ref();
    let (net_rx_bytes, net_tx_bytes) =
        stats
            .networks
            .iter()
            .flat_map(|n| n.values())
            .fold((0u64, 0u64), |(rx, tx), n| {
                (
                    rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                    tx.saturating_add(n.tx_bytes.unwrap_or(0)),
                )
            });
    let usage = ContainerUsage {
        alloc: String::new(),
        job: String::new(),
        cpu_millis: cpu_millis(prev, &mark),
        cpu_total_ns: mark.total_ns,
        memory_bytes: memory.map_or(0, memory_in_use),
        memory_limit_bytes: if limited {
            memory.and_then(|m| m.limit).unwrap_or(0)
        } else {
            0
        },
        net_rx_bytes,
        net_tx_bytes,
        sampled_at_ms,
    };
    (usage, mark)
}

/// Millicores used between `prev` and `cur`: CPU time over wall time.
fn cpu_millis(prev: Option<&CpuMark>, cur: &CpuMark) -> u64 {
    let Some(prev) = prev else {
        return 0;
    };
    // A decrease means the container restarted and its counters reset:
    // this sample is a fresh start, not a rate.
    let Some(cpu_ns) = cur.total_ns.checked_sub(prev.total_ns) else {
        return 0;
    };
    let wall_ns = match (prev.read_ns, cur.read_ns) {
        (Some(a), Some(b)) if b > a => u128::try_from(b - a).unwrap_or(0),
        _ => cur.at.saturating_duration_since(prev.at).as_nanos(),
    };
    if wall_ns == 0 {
        return 0;
    }
    u64::try_from(u128::from(cpu_ns) * 1000 / wall_ns).unwrap_or(u64::MAX)
}

/// Memory in use without the page cache the kernel can drop, as `docker
/// stats` computes it: cgroup v1 reports `total_inactive_file`, cgroup v2
/// `inactive_file`; the cache is subtracted only when smaller than the
/// usage, so the result never underflows.
fn memory_in_use(m: &ContainerMemoryStats) -> u64 {
    let usage = m.usage.unwrap_or(0);
    let cache = m.stats.as_ref().and_then(|s| {
        s.get("total_inactive_file")
            .or_else(|| s.get("inactive_file"))
    });
    match cache {
        Some(&c) if c < usage => usage - c,
        _ => usage,
    }
}

/// Docker's timestamp of the sample, in Unix nanoseconds.
fn read_ns(stats: &ContainerStatsResponse) -> Option<i128> {
    stats.read.as_deref().and_then(clock::parse_rfc3339_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerNetworkStats};

    fn sample(read: &str, cpu_ns: u64) -> ContainerStatsResponse {
        ContainerStatsResponse {
            read: Some(read.to_string()),
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(cpu_ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_memory(usage: u64, stats: &[(&str, u64)], limit: u64) -> ContainerStatsResponse {
        ContainerStatsResponse {
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(usage),
                limit: Some(limit),
                stats: Some(stats.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
                ..Default::default()
            }),
            ..sample("2024-05-06T07:08:09Z", 0)
        }
    }

    #[test]
    fn first_sample_has_no_rate() {
        let (u, mark) = convert(
            &sample("2024-05-06T07:08:09Z", 7_000),
            false,
            None,
            Instant::now(),
            42,
        );
        assert_eq!(u.cpu_millis, 0);
        assert_eq!(u.cpu_total_ns, 7_000);
        assert_eq!(u.sampled_at_ms, 42);
        assert_eq!(mark.total_ns, 7_000);
    }

    #[test]
    fn half_a_second_of_cpu_per_second_is_500_millicores() {
        let t0 = Instant::now();
        let (_, m0) = convert(
            &sample("2024-05-06T07:08:09.000000000Z", 1_000_000_000),
            false,
            None,
            t0,
            0,
        );
        let s1 = sample("2024-05-06T07:08:10.000000000Z", 1_500_000_000);
        // Docker's timestamps win over our clock (here 3 s apart).
        let (u, _) = convert(&s1, false, Some(&m0), t0 + Duration::from_secs(3), 0);
        assert_eq!(u.cpu_millis, 500);
        assert_eq!(u.cpu_total_ns, 1_500_000_000);
    }

    #[test]
    fn our_clock_is_used_without_docker_timestamps() {
        let t0 = Instant::now();
        let (_, m0) = convert(&sample("garbage", 0), false, None, t0, 0);
        let (u, _) = convert(
            &sample("garbage", 2_000_000_000),
            false,
            Some(&m0),
            t0 + Duration::from_secs(1),
            0,
        );
        assert_eq!(u.cpu_millis, 2_000);
        // No time passed at all: no rate rather than a division by zero.
        let (u, _) = convert(&sample("garbage", 9), false, Some(&m0), t0, 0);
        assert_eq!(u.cpu_millis, 0);
    }

    #[test]
    fn counter_decrease_is_a_fresh_start() {
        let t0 = Instant::now();
        let (_, m0) = convert(
            &sample("2024-05-06T07:08:09Z", 9_000_000_000),
            false,
            None,
            t0,
            0,
        );
        let (u, m1) = convert(
            &sample("2024-05-06T07:08:10Z", 100_000_000),
            false,
            Some(&m0),
            t0 + Duration::from_secs(1),
            0,
        );
        assert_eq!(u.cpu_millis, 0);
        assert_eq!(u.cpu_total_ns, 100_000_000);
        // The next rate is measured from the restart.
        let (u, _) = convert(
            &sample("2024-05-06T07:08:11Z", 350_000_000),
            false,
            Some(&m1),
            t0 + Duration::from_secs(2),
            0,
        );
        assert_eq!(u.cpu_millis, 250);
    }

    #[test]
    fn huge_rate_saturates() {
        let t0 = Instant::now();
        let (_, m0) = convert(
            &sample("2024-05-06T07:08:09.000000000Z", 0),
            false,
            None,
            t0,
            0,
        );
        let (u, _) = convert(
            &sample("2024-05-06T07:08:09.000000001Z", u64::MAX),
            false,
            Some(&m0),
            t0,
            0,
        );
        assert_eq!(u.cpu_millis, u64::MAX);
    }

    #[test]
    fn cgroup_v1_subtracts_total_inactive_file() {
        let s = with_memory(
            10_000,
            &[("inactive_file", 1_000), ("total_inactive_file", 3_000)],
            64 << 20,
        );
        let (u, _) = convert(&s, true, None, Instant::now(), 0);
        assert_eq!(u.memory_bytes, 7_000);
        assert_eq!(u.memory_limit_bytes, 64 << 20);
    }

    #[test]
    fn cgroup_v2_subtracts_inactive_file() {
        let s = with_memory(
            10_000,
            &[("inactive_file", 4_000), ("anon", 6_000)],
            1 << 30,
        );
        let (u, _) = convert(&s, true, None, Instant::now(), 0);
        assert_eq!(u.memory_bytes, 6_000);
    }

    #[test]
    fn cache_larger_than_usage_does_not_underflow() {
        let s = with_memory(10_000, &[("inactive_file", 20_000)], 1 << 30);
        let (u, _) = convert(&s, true, None, Instant::now(), 0);
        assert_eq!(u.memory_bytes, 10_000);
    }

    #[test]
    fn unlimited_container_reports_no_limit() {
        // Docker reports the host's memory as the limit of an unlimited one.
        let s = with_memory(10_000, &[], 25_276_502_016);
        let (u, _) = convert(&s, false, None, Instant::now(), 0);
        assert_eq!(u.memory_bytes, 10_000);
        assert_eq!(u.memory_limit_bytes, 0);
    }

    #[test]
    fn missing_memory_and_networks_are_zero() {
        let (u, _) = convert(
            &sample("2024-05-06T07:08:09Z", 1),
            true,
            None,
            Instant::now(),
            0,
        );
        assert_eq!((u.memory_bytes, u.memory_limit_bytes), (0, 0));
        assert_eq!((u.net_rx_bytes, u.net_tx_bytes), (0, 0));
    }

    #[test]
    fn network_bytes_are_summed_over_interfaces() {
        let net = |rx, tx| ContainerNetworkStats {
            rx_bytes: Some(rx),
            tx_bytes: Some(tx),
            ..Default::default()
        };
        let s = ContainerStatsResponse {
            networks: Some(HashMap::from([
                ("eth0".to_string(), net(100, 10)),
                ("eth1".to_string(), net(23, 5)),
            ])),
            ..sample("2024-05-06T07:08:09Z", 1)
        };
        let (u, _) = convert(&s, false, None, Instant::now(), 0);
        assert_eq!((u.net_rx_bytes, u.net_tx_bytes), (123, 15));
    }

    #[test]
    fn stopped_container_sample_is_recognised() {
        // What Docker sends for a container that stopped after the list.
        assert!(is_stopped(&sample("0001-01-01T00:00:00Z", 0)));
        let live = with_memory(1, &[], 1);
        assert!(!is_stopped(&live));
    }

    #[tokio::test]
    async fn board_lists_by_allocation() {
        let board = UsageBoard::new();
        let u = |alloc: &str| ContainerUsage {
            alloc: alloc.into(),
            ..Default::default()
        };
        board.replace(vec![u("b"), u("a")]).await;
        let got: Vec<_> = board.all().await.into_iter().map(|u| u.alloc).collect();
        assert_eq!(got, ["a", "b"]);
        board.replace(vec![]).await;
        assert!(board.all().await.is_empty());
    }
}
