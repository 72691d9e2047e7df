//! Types of the HTTP/JSON API every node serves and the CLI speaks.
//!
//! Paths (all under `/v1`): `GET status`, `GET nodes`, `GET jobs`,
//! `POST jobs` ([`ApplyRequest`]), `GET jobs/{name}`, `DELETE jobs/{name}`
//! (stop: the spec stays), `POST jobs/{name}/delete` (the job, its history
//! and allocations leave the state), `POST jobs/{name}/scale` ([`ScaleRequest`]),
//! `POST jobs/{name}/restart`, `GET allocs`, `POST allocs/{id}/restart`,
//! `GET allocs/{id}/logs?follow=&tail=`. Errors are [`ApiError`] bodies
//! with a 4xx/5xx status; a failed write says in [`ApiError::outcome`]
//! whether it may still take effect.
//!
//! Deployments: `GET jobs/{name}/history` ([`RevisionView`]s),
//! `POST jobs/{name}/undo` ([`UndoRequest`], answers a [`JobApplyResult`]),
//! `POST nodes/{id}/drain` and `POST nodes/{id}/undrain` (id or name;
//! answer a [`DrainResponse`]).
//!
//! Monitoring: `GET events?after=&wait=&limit=&job=` ([`EventsResponse`]:
//! cluster events this node has seen, long-polled with `wait` seconds),
//! `GET top` ([`TopView`]: measured usage of every node and container).
//!
//! API tokens (admin role): `GET tokens` ([`TokenView`]s, never a secret),
//! `POST tokens` ([`TokenCreateRequest`], answers a [`TokenCreated`]: the
//! only time the secret is shown), `DELETE tokens/{name}`. Request bodies
//! are JSON and must say so (`Content-Type: application/json`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::{JobSpec, PortProtocol, ResourceVec, SpecError};

/// Largest request body the API accepts; a manifest of many jobs is a few
/// KiB, so 1 MiB leaves room while refusing floods.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest job spec, encoded (the codec's bytes, what Raft stores): a spec
/// is a few KiB; the bound keeps one job (with its kept versions) from
/// filling the state. etcd allows 1.5 MiB per request, for comparison.
pub const MAX_JOB_SPEC_BYTES: usize = 256 * 1024;

/// Largest cluster state, encoded, that user writes may produce (about
/// 200,000 allocations). A write costs its change, not the state, but a
/// snapshot and a restart encode and load the whole state, so it stays
/// below what loading accepts ([`crate::codec::MAX_STORED_BYTES`]).
/// Writes beyond it are refused (413) before anything is committed;
/// deletes and stops always pass.
pub const STATE_QUOTA_BYTES: usize = 48 * 1024 * 1024;

/// The quota of clusters below schema 1.2, whose nodes rewrote the whole
/// state on every write.
pub const STATE_QUOTA_BYTES_1_1: usize = 8 * 1024 * 1024;

/// Body of `POST /v1/jobs`: all jobs of one file, applied atomically.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The jobs to create or update.
    pub jobs: Vec<JobSpec>,
    /// Registry credentials the jobs name in `pull_secrets` (Kubernetes
    /// `kubernetes.io/dockerconfigjson` Secrets in the same file). Stored
    /// encrypted; never shown again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<PullSecret>,
}

/// A named set of registry credentials (a Kubernetes image pull Secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSecret {
    /// Secret name, as jobs' `pull_secrets` name it.
    pub name: String,
    /// One login per registry.
    pub registries: Vec<RegistryLogin>,
}

impl fmt::Debug for PullSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSecret")
            .field("name", &self.name)
            .field("registries", &self.registries)
            .finish()
    }
}

/// Body of `POST /v1/registries`: credentials every node may pull with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    /// Registry host (`registry.example.com`, `127.0.0.1:5000`; Docker Hub
    /// is `docker.io`).
    pub server: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// Never prints the password: tracing or an error must not leak it.
impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `GET /v1/registries`: one stored credential, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryView {
    /// Registry host.
    pub server: String,
    /// User name.
    pub username: String,
    /// Where it came from: `login` (`skein registry login`) or
    /// `secret NAME` (an image pull Secret).
    pub source: String,
    /// When it was stored (Unix ms, the leader's clock).
    pub updated_at_ms: u64,
}

/// `GET /v1/images`: one image and the nodes that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageView {
    /// Image id (`sha256:…`, the digest of its config).
    pub id: String,
    /// Tags it has on any node.
    pub tags: Vec<String>,
    /// Size in bytes, as Docker reports it.
    pub size_bytes: u64,
    /// Names of the nodes that hold it.
    pub nodes: Vec<String>,
    /// Nodes fetching it now, with their progress.
    #[serde(default)]
    pub fetching: Vec<ImageFetchView>,
}

/// A node fetching an image (pull from a registry or copy from a peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFetchView {
    /// Node name.
    pub node: String,
    /// Progress.
    pub progress: PullProgress,
}

/// Body of `POST /v1/images/push`: send an image of this node's Docker to
/// other nodes over the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePushRequest {
    /// Image reference or id in this node's Docker.
    pub image: String,
    /// Node names or ids; empty = every ready node.
    #[serde(default)]
    pub to: Vec<String>,
}

/// Answer of `POST /v1/images/push`, once every target has been asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePushResponse {
    /// The image id sent.
    pub id: String,
    /// Its tags, applied on the targets too.
    pub tags: Vec<String>,
    /// Target node names that accepted (they fetch in the background;
    /// follow with `GET /v1/images`).
    pub targets: Vec<String>,
    /// Targets that already held the image.
    pub already: Vec<String>,
}

/// What applying one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The job did not exist (or was stopped) before.
    Created,
    /// The spec changed; its allocations were replaced or rescaled.
    Updated,
    /// The spec was identical; nothing was written.
    Unchanged,
}

/// Result of applying one job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobApplyResult {
    /// Job name.
    pub name: String,
    /// What happened.
    pub change: ChangeKind,
    /// Job version after the apply (bumped on every spec change).
    pub version: u64,
    /// Allocation ids the job has after the apply.
    pub allocations: Vec<String>,
}

/// Body returned by `POST /v1/jobs`, sent only after the Raft commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// One entry per applied job, in request order.
    pub jobs: Vec<JobApplyResult>,
}

/// Body of `POST /v1/jobs/{name}/scale`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// New replica count.
    pub replicas: u32,
}

/// Lifecycle of one allocation as its node observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllocState {
    /// Placed, container not started yet (creating, or node not reporting).
    Pending,
    /// The node is fetching the image (registry pull or copy from a peer).
    Pulling,
    /// Container running.
    Running,
    /// Container exited and waits for its backoff before a restart.
    Restarting,
    /// Container exited and will not be restarted, or could not be created.
    Failed,
    /// Container exited 0 and the policy does not restart it.
    Complete,
}

impl fmt::Display for AllocState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocState::Pending => "pending",
            AllocState::Pulling => "pulling",
            AllocState::Running => "running",
            AllocState::Restarting => "restarting",
            AllocState::Failed => "failed",
            AllocState::Complete => "complete",
        })
    }
}

/// A published port of an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port name from the spec, if any.
    pub name: Option<String>,
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the node.
    pub host_port: u16,
    /// Transport protocol.
    pub protocol: PortProtocol,
}

/// What the owning node reports about an allocation's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocStatus {
    /// Current state.
    pub state: AllocState,
    /// Exit code of the last exit, if the container ever exited.
    pub exit_code: Option<i64>,
    /// Restarts done by the executor since the agent started.
    pub restarts: u32,
    /// Docker container id.
    pub container_id: Option<String>,
    /// Why the allocation is not running, when it is not.
    pub message: Option<String>,
    /// Running and passing its readiness checks: it receives traffic.
    #[serde(default)]
    pub ready: bool,
    /// While [`AllocState::Pulling`]: how far the image fetch is.
    #[serde(default)]
    pub pull: Option<PullProgress>,
}

impl Default for AllocStatus {
    fn default() -> Self {
        Self {
            state: AllocState::Pending,
            exit_code: None,
            restarts: 0,
            container_id: None,
            message: None,
            ready: false,
            pull: None,
        }
    }
}

/// How far a node is in fetching one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// The image reference.
    pub image: String,
    /// Where from: `registry HOST` or `node NAME` (a copy over the mesh).
    pub source: String,
    /// Bytes fetched so far.
    pub bytes_done: u64,
    /// Bytes expected (0 while unknown).
    pub bytes_total: u64,
    /// Layers complete.
    pub layers_done: u32,
    /// Layers known (0 for a copy from a peer).
    pub layers_total: u32,
    /// Attempt number (1 on the first try).
    pub attempt: u32,
}

impl fmt::Display for PullProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MB: f64 = 1_000_000.0;
        #[allow(clippy::cast_precision_loss)]
        let (done, total) = (self.bytes_done as f64 / MB, self.bytes_total as f64 / MB);
        if self.source == "queued" {
            return f.write_str("waiting for a free fetch slot");
        }
        // An archive is a little larger than the image size it announced.
        if self.bytes_total > 0 {
            write!(f, "{done:.1}/{:.1} MB", total.max(done))?;
        } else {
            write!(f, "{done:.1} MB")?;
        }
        if self.layers_total > 0 {
            write!(f, ", {}/{} layers", self.layers_done, self.layers_total)?;
        }
        write!(f, " from {}", self.source)?;
        if self.attempt > 1 {
            write!(f, " (attempt {})", self.attempt)?;
        }
        Ok(())
    }
}

/// One allocation: a replica of a job placed on a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocView {
    /// Allocation id (`<job>-<index>-<suffix>`).
    pub id: String,
    /// Job name.
    pub job: String,
    /// Replica index within the job.
    pub index: u32,
    /// Job version this allocation runs.
    pub job_version: u64,
    /// Owning node id.
    pub node_id: String,
    /// Owning node's name.
    pub node_name: String,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Last status reported by the owning node.
    pub status: AllocStatus,
}

/// A job with its live replica counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// The committed spec.
    pub spec: JobSpec,
    /// Bumped on every spec change.
    pub version: u64,
    /// Whether the job was stopped (`skein job stop`).
    pub stopped: bool,
    /// Replicas wanted.
    pub desired: u32,
    /// Replicas whose container runs.
    pub running: u32,
    /// The job's allocations.
    pub allocations: Vec<AllocView>,
    /// The latest rollout (creation or update) and its progress.
    #[serde(default)]
    pub rollout: Option<RolloutView>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// New replicas are replacing old ones.
    Progressing,
    /// Every replica runs the target version and is ready.
    Complete,
    /// The target version failed; the job went back to its last good
    /// version (`from_version` is the one that failed).
    RolledBack,
    /// The target version is failing and there is nothing to go back to
    /// (a new job); the rollout keeps trying.
    Failed,
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RolloutState::Progressing => "progressing",
            RolloutState::Complete => "complete",
            RolloutState::RolledBack => "rolled-back",
            RolloutState::Failed => "failed",
        })
    }
}

/// A job's latest rollout: from which version to which, and how far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    /// The version being replaced; `None` for a new job.
    pub from_version: Option<u64>,
    /// The version being rolled out (the job's current version).
    pub to_version: u64,
    /// Where it stands.
    pub state: RolloutState,
    /// Why it failed or was rolled back.
    pub message: Option<String>,
    /// When it started (Unix milliseconds, the leader's clock).
    pub started_at_ms: u64,
    /// Replicas wanted.
    pub desired: u32,
    /// Allocations of `to_version`.
    pub updated: u32,
    /// Allocations of `to_version` that run and are ready.
    pub available: u32,
    /// Allocations of other versions (or on drained nodes) still present.
    pub outdated: u32,
}

/// `GET /v1/jobs/{name}/history`: one version of a job's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionView {
    /// Version number.
    pub version: u64,
    /// Its image, for the table.
    pub image: String,
    /// When it was first committed (Unix milliseconds, the leader's clock).
    pub created_at_ms: u64,
    /// Whether it is the job's current version.
    pub current: bool,
    /// Whether it failed during its rollout and was rolled back.
    pub rolled_back: bool,
    /// Its spec.
    pub spec: JobSpec,
}

/// Body of `POST /v1/jobs/{name}/undo`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoRequest {
    /// The version whose spec becomes current again (as a new version);
    /// default: the newest earlier version with a different spec.
    #[serde(default)]
    pub to_version: Option<u64>,
}

/// Answer of `POST /v1/nodes/{id}/drain` and `.../undrain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainResponse {
    /// Node id (hex).
    pub node_id: String,
    /// Node name.
    pub node_name: String,
    /// Whether the node is drained now.
    pub drained: bool,
    /// Allocations on the node when the call was answered (they move away
    /// a few at a time after a drain).
    pub allocations: u32,
}

/// Health of a node as the cluster sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeHealth {
    /// Reporting on time.
    Ready,
    /// Late or failing pings; still holds its work.
    Suspect,
    /// Gone; its work is rescheduled.
    Dead,
}

impl fmt::Display for NodeHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeHealth::Ready => "ready",
            NodeHealth::Suspect => "suspect",
            NodeHealth::Dead => "dead",
        })
    }
}

/// A node with capacity and usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id (hex).
    pub id: String,
    /// Human name (hostname unless `--name`).
    pub name: String,
    /// Address other nodes and clients reach it on.
    pub address: String,
    /// Health.
    pub health: NodeHealth,
    /// Role in the control plane: `leader`, `voter` or `worker`.
    pub role: String,
    /// What the node offers.
    pub capacity: ResourceVec,
    /// What placed allocations request on it.
    pub allocated: ResourceVec,
    /// Number of allocations placed on it.
    pub allocations: u32,
    /// Node labels (region, zone, …).
    pub labels: BTreeMap<String, String>,
    /// Skein version the node runs.
    pub version: String,
    /// Drained (`skein node drain`): gets no new work, its work moves away.
    #[serde(default)]
    pub drained: bool,
    /// Its Raft storage, as it reports it.
    #[serde(default)]
    pub storage: StorageView,
}

/// The health of a node's Raft storage. A degraded node refuses writes,
/// hands leadership over and retries its storage until it works again.
/// Also gossiped (bincode): no skipped fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageView {
    /// True while the storage fails.
    pub degraded: bool,
    /// The last storage error, while degraded.
    #[serde(default)]
    pub error: Option<String>,
    /// When it became degraded (Unix ms).
    #[serde(default)]
    pub since_ms: Option<u64>,
}

/// One replica a plan would start or stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAlloc {
    /// Allocation id (new ones get their id when the plan is committed).
    pub alloc: String,
    /// Job name.
    pub job: String,
    /// Node it is (or would be) on.
    pub node: String,
    /// Host ports it would publish.
    pub ports: Vec<PortMapping>,
}

/// `POST /v1/plan`: what applying a file would change, computed by the
/// leader exactly as an apply would, and not committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanResponse {
    /// Per job: created, updated or unchanged, and its version after.
    pub jobs: Vec<JobApplyResult>,
    /// Replicas that would be started, with their placement.
    pub start: Vec<PlannedAlloc>,
    /// Replicas that would be stopped.
    pub stop: Vec<PlannedAlloc>,
}

/// One endpoint of a service: a ready replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// Allocation id.
    pub alloc: String,
    /// Node that runs it.
    pub node: String,
    /// Address and port to reach it at.
    pub addr: String,
}

/// `GET /v1/services`: a service with its healthy endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Service name (`NAME.service.skein`).
    pub name: String,
    /// Job whose replicas serve it.
    pub job: String,
    /// Routing-mesh port open on every node, if published.
    pub publish: Option<u16>,
    /// Healthy endpoints.
    pub endpoints: Vec<EndpointView>,
}

/// `GET /v1/status`: this node and the control plane as it sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// This node's id (hex).
    pub node_id: String,
    /// This node's name.
    pub node_name: String,
    /// Current Raft leader's id (hex), if known.
    pub leader_id: Option<String>,
    /// Current Raft term.
    pub term: u64,
    /// Index of the last applied log entry.
    pub last_applied: u64,
    /// Skein version.
    pub version: String,
    /// This node's Raft storage.
    #[serde(default)]
    pub storage: StorageView,
    /// The encoding schema this build speaks (`1.1`).
    #[serde(default)]
    pub schema: String,
    /// The cluster's schema: the newest every node reads, what is written
    /// (it moves once every node is upgraded).
    #[serde(default)]
    pub cluster_schema: String,
}

/// What happened, in a cluster event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job was created or changed (a new version).
    JobApplied,
    /// A job's replica count was changed.
    JobScaled,
    /// A job was stopped.
    JobStopped,
    /// The leader placed a replica on a node.
    Placed,
    /// The leader could not place every replica of a job.
    Unplaceable,
    /// A node started a replica's container.
    Started,
    /// A replica's container exited (with `exit_code`).
    Exited,
    /// A node restarted a replica's container (restart policy, failed
    /// liveness check or `skein restart`).
    Restarted,
    /// A node could not start a replica's container.
    StartFailed,
    /// A node stopped and removed a container no longer placed on it.
    Removed,
    /// A node joined or came back.
    NodeUp,
    /// A node went silent (keeps its work for now).
    NodeSuspect,
    /// A node is considered gone; its work is rescheduled.
    NodeDown,
    /// A node was drained or undrained.
    NodeDrain,
    /// A node became the Raft leader.
    LeaderElected,
    /// A rolling update finished.
    RolloutComplete,
    /// A rolling update failed and was rolled back.
    RolledBack,
    /// A node fetched an image (from a registry or a peer), with its size
    /// and duration.
    ImagePulled,
    /// A node could not fetch an image, with the registry's (or peer's) error.
    ImagePullFailed,
    /// A job was deleted: its spec, history and allocations are gone.
    JobDeleted,
    /// A node's Raft storage failed (disk full, I/O error): it takes no
    /// writes and hands leadership over until the storage works again.
    StorageDegraded,
    /// A node's Raft storage works again.
    StorageRecovered,
    /// Two processes claim one node id (a copied or restored data dir):
    /// the newcomer is refused.
    DuplicateNode,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 23] = [
        EventKind::JobApplied,
        EventKind::JobScaled,
        EventKind::JobStopped,
        EventKind::Placed,
        EventKind::Unplaceable,
        EventKind::Started,
        EventKind::Exited,
        EventKind::Restarted,
        EventKind::StartFailed,
        EventKind::Removed,
        EventKind::NodeUp,
        EventKind::NodeSuspect,
        EventKind::NodeDown,
        EventKind::NodeDrain,
        EventKind::LeaderElected,
        EventKind::RolloutComplete,
        EventKind::RolledBack,
        EventKind::ImagePulled,
        EventKind::ImagePullFailed,
        EventKind::JobDeleted,
        EventKind::StorageDegraded,
        EventKind::StorageRecovered,
        EventKind::DuplicateNode,
    ];

    /// The name used in the API and the CLI (`started`, `node_down`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobApplied => "job_applied",
            EventKind::JobScaled => "job_scaled",
            EventKind::JobStopped => "job_stopped",
            EventKind::Placed => "placed",
            EventKind::Unplaceable => "unplaceable",
            EventKind::Started => "started",
            EventKind::Exited => "exited",
            EventKind::Restarted => "restarted",
            EventKind::StartFailed => "start_failed",
            EventKind::Removed => "removed",
            EventKind::NodeUp => "node_up",
            EventKind::NodeSuspect => "node_suspect",
            EventKind::NodeDown => "node_down",
            EventKind::NodeDrain => "node_drain",
            EventKind::LeaderElected => "leader_elected",
            EventKind::RolloutComplete => "rollout_complete",
            EventKind::RolledBack => "rolled_back",
            EventKind::ImagePulled => "image_pulled",
            EventKind::ImagePullFailed => "image_pull_failed",
            EventKind::JobDeleted => "job_deleted",
            EventKind::StorageDegraded => "storage_degraded",
            EventKind::StorageRecovered => "storage_recovered",
            EventKind::DuplicateNode => "duplicate_node",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown event kind {s:?}; expected one of {}",
                    all.join(", ")
                )
            })
    }
}

/// Something that happened in the cluster, reported by the node that saw
/// it (a container's node, or the leader for placements and node health)
/// and spread by gossip. `(origin, seq)` identifies it cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Id (hex) of the node that reported it.
    pub origin: String,
    /// Per-origin sequence number (increasing, also across agent restarts).
    pub seq: u64,
    /// When it happened, Unix milliseconds on the origin's clock.
    pub time_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// Name of the node concerned (the container's node, the placement's
    /// target, the node that went down).
    pub node: Option<String>,
    /// Job concerned.
    pub job: Option<String>,
    /// Allocation concerned.
    pub alloc: Option<String>,
    /// Exit code, for [`EventKind::Exited`].
    pub exit_code: Option<i64>,
    /// One human line.
    pub message: String,
}

/// An event as one node serves it: `index` orders events on that node and
/// is the cursor of `GET /v1/events?after=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntry {
    /// Position on the serving node (increasing, gaps allowed).
    pub index: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsResponse {
    /// Events after the cursor, oldest first.
    pub events: Vec<EventEntry>,
    /// Cursor for the next call (`after=`).
    pub next: u64,
}

/// Measured resource use of one container (Docker stats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// Allocation id.
    pub alloc: String,
    /// Job name.
    pub job: String,
    /// CPU used over the last sampling interval, in millicores.
    pub cpu_millis: u64,
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_total_ns: u64,
    /// Memory in use (without page cache), in bytes.
    pub memory_bytes: u64,
    /// Memory limit, in bytes (0 when unlimited).
    pub memory_limit_bytes: u64,
    /// Bytes received on all the container's interfaces.
    pub net_rx_bytes: u64,
    /// Bytes sent on all the container's interfaces.
    pub net_tx_bytes: u64,
    /// When it was sampled, Unix milliseconds.
    pub sampled_at_ms: u64,
}

/// One node's line in [`TopView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeUsageView {
    /// Node id (hex).
    pub id: String,
    /// Node name.
    pub name: String,
    /// Health.
    pub health: NodeHealth,
    /// What the node offers.
    pub capacity: ResourceVec,
    /// What placed replicas request.
    pub allocated: ResourceVec,
    /// CPU its containers use, in millicores (sum of the last samples).
    pub used_cpu_millis: u64,
    /// Memory its containers use, in bytes.
    pub used_memory_bytes: u64,
    /// Containers measured.
    pub containers: u32,
}

/// One container's line in [`TopView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerUsageView {
    /// Name of the node running it.
    pub node: String,
    /// Its usage.
    #[serde(flatten)]
    pub usage: ContainerUsage,
}

/// `GET /v1/top`: live usage, as gossiped by every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopView {
    /// Nodes, by name.
    pub nodes: Vec<NodeUsageView>,
    /// Containers, busiest CPU first.
    pub containers: Vec<ContainerUsageView>,
}

/// What an API token may do; each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// `GET`/`HEAD` calls: listings, logs, events, metrics.
    #[default]
    Read,
    /// Changes to the workload (apply, scale, stop, drain, image push) and
    /// `POST /v1/plan`, which costs seconds of leader CPU.
    Write,
    /// Token management and cluster-wide registry credentials.
    Admin,
}

impl TokenRole {
    /// The name users type (`--role read`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Read => "read",
            TokenRole::Write => "write",
            TokenRole::Admin => "admin",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Ok(TokenRole::Read),
            "write" => Ok(TokenRole::Write),
            "admin" => Ok(TokenRole::Admin),
            _ => Err(format!("{s:?} is not a role: use read, write or admin")),
        }
    }
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// Name to list and revoke it by; default: a generated one.
    #[serde(default)]
    pub name: Option<String>,
    /// What it may do; default: read.
    #[serde(default)]
    pub role: TokenRole,
}

/// Answer to `POST /v1/tokens`: the secret, shown this once only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// The bearer token; the cluster keeps only its SHA-256.
    pub token: String,
    /// When it was created (Unix ms, the leader's clock).
    pub created_at_ms: u64,
}

/// Never prints the secret.
impl fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCreated")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// `GET /v1/tokens`: one token, without its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// `created` (`skein token create`) or `bootstrap NODE` (the
    /// `--api-token-file` of that node).
    pub source: String,
    /// When it was stored (Unix ms, the leader's clock).
    pub created_at_ms: u64,
}

/// Error body of every failed call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// One-line summary.
    pub error: String,
    /// Per-field problems, when the input was invalid.
    #[serde(default)]
    pub details: Vec<SpecError>,
    /// For a failed write: whether it was certainly not applied, or may
    /// still take effect (check before retrying one that is not idempotent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<WriteOutcome>,
}

/// What a client may assume about a write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// Refused before it was proposed: nothing changed, retrying is safe.
    NotApplied,
    /// It was proposed but its commit could not be confirmed (the leader's
    /// storage failed, or the commit took too long): it may be applied
    /// later. Read the state (`skein job ls`, `GET /v1/jobs/NAME`) before
    /// retrying.
    Unknown,
}

impl fmt::Display for WriteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteOutcome::NotApplied => "not applied",
            WriteOutcome::Unknown => "unknown",
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if self.outcome == Some(WriteOutcome::Unknown) {
            f.write_str(
                " (outcome unknown: the write may still take effect; check before retrying)",
            )?;
        }
        for d in &self.details {
            write!(f, "\n  - {d}")?;
        }
        Ok(())
    }
}
