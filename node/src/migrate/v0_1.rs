//! Frozen copies of the types Skein 0.1.0 stored, as it encoded them:
//! positional bincode needs the exact shape of what was written, so these
//! never change, whatever happens to the live types. Only
//! [`super`] reads them, to turn 0.1.0 values into current ones by
//! re-encoding them with field names (same names, so missing fields take
//! their defaults).
//!
//! Generated from the definitions at commit 0ffaab6 (`pub struct`/`pub
//! enum` items reachable from the stored roots, derives reduced to what
//! decoding needs, doc comments dropped).
#![allow(missing_docs, dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

// openraft 0.9 (=0.9.25, `adv` leader ids), as 0.1.0 stored it.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaderId {
    pub term: u64,
    pub node_id: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogId {
    pub leader_id: LeaderId,
    pub index: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vote {
    pub leader_id: LeaderId,
    pub committed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Membership {
    pub configs: Vec<BTreeSet<u64>>,
    pub nodes: BTreeMap<u64, RaftPeer>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredMembership {
    pub log_id: Option<LogId>,
    pub membership: Membership,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_log_id: Option<LogId>,
    pub last_membership: StoredMembership,
    pub snapshot_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub log_id: LogId,
    pub payload: EntryPayload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EntryPayload {
    Blank,
    Normal(Command),
    Membership(Membership),
}

// node/src/raft/state_machine.rs
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub state: ClusterState,
}

// node/src/raft/mod.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RaftPeer {
    pub name: String,
    pub addr: String,
    pub peer_id: String,
    pub mesh_addrs: Vec<String>,
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Allocation {
    pub id: String,
    pub job: String,
    pub index: u32,
    pub job_version: u64,
    pub node: NodeId,
    pub resources: ResourceVec,
    pub ports: Vec<PortMapping>,
    pub restart_epoch: u64,
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub name: String,
    pub role: TokenRole,
    pub hash: TokenHash,
    pub source: TokenSource,
    pub created_ms: u64,
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterState {
    pub jobs: BTreeMap<String, Job>,
    pub allocs: BTreeMap<String, Allocation>,
    pub version: u64,
    pub drained: BTreeSet<NodeId>,
    pub registries: BTreeMap<String, StoredCredential>,
    pub pull_secrets: BTreeMap<String, SecretCredentials>,
    pub tokens: BTreeMap<String, ApiToken>,
    pub revoked_tokens: BTreeSet<TokenHash>,
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Plan(Plan),
    Restart { allocs: Vec<String> },
    Drain { node: NodeId, drained: bool },
    RegistryLogin(StoredCredential),
    RegistryLogout { server: String },
    TokenCreate(ApiToken),
    TokenRevoke { name: String },
    DeleteJob { job: String },
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandResult {
    Applied { version: u64 },
    Rejected { reason: String, stale: bool },
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub spec: JobSpec,
    pub version: u64,
    pub stopped: bool,
    pub created_ms: u64,
    pub history: Vec<Revision>,
    pub rollout: Option<Rollout>,
}

pub type NodeId = u64;

// node/src/state/mod.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub base_version: u64,
    pub put_jobs: Vec<Job>,
    pub remove_allocs: Vec<String>,
    pub add_allocs: Vec<Allocation>,
    pub put_secrets: BTreeMap<String, SecretCredentials>,
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    pub version: u64,
    pub spec: JobSpec,
    pub created_ms: u64,
    pub rolled_back: bool,
}

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    pub from_version: Option<u64>,
    pub to_version: u64,
    pub state: RolloutState,
    pub rollback_to: Option<u64>,
    pub started_ms: u64,
    pub progress_ms: u64,
    pub best_available: u32,
    pub message: Option<String>,
}

pub type SecretCredentials = BTreeMap<String, StoredCredential>;

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCredential {
    pub server: String,
    pub username: String,
    pub sealed_password: Vec<u8>,
    pub updated_ms: u64,
}

pub type TokenHash = [u8; 32];

// node/src/state/mod.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TokenSource {
    Created,
    Bootstrap { node: String },
}

// protocol/src/api.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortMapping {
    pub name: Option<String>,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: PortProtocol,
}

// protocol/src/api.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryLogin {
    pub server: String,
    pub username: String,
    pub password: String,
}

// protocol/src/api.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    Progressing,
    Complete,
    RolledBack,
    Failed,
}

// protocol/src/api.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    #[default]
    Read,
    Write,
    Admin,
}

// protocol/src/image.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConnections,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Liveness,
    Readiness,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckSpec {
    pub kind: CheckKind,
    pub probe: Probe,
    pub period_secs: u32,
    pub timeout_secs: u32,
    pub initial_delay_secs: u32,
    pub failure_threshold: u32,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub replicas: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub resources: Resources,
    pub restart: RestartPolicy,
    pub labels: BTreeMap<String, String>,
    pub constraints: BTreeMap<String, String>,
    pub placement: PlacementStrategy,
    pub service: Option<ServiceSpec>,
    pub checks: Vec<CheckSpec>,
    pub update: UpdateStrategy,
    pub pull: Option<PullPolicy>,
    pub pull_secrets: Vec<String>,
    pub container: ContainerSpec,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementStrategy {
    #[default]
    Spread,
    Binpack,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    #[default]
    Tcp,
    Udp,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortSpec {
    pub name: Option<String>,
    pub container_port: u16,
    pub host_port: Option<u16>,
    pub protocol: PortProtocol,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Http { port: u16, path: String },
    Tcp { port: u16 },
    Exec { command: Vec<String> },
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceVec {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resources {
    pub requests: ResourceVec,
    pub limit_cpu_millis: Option<u64>,
    pub limit_memory_bytes: Option<u64>,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub port: Option<String>,
    pub publish: Option<u16>,
    pub balance: Balance,
}

// protocol/src/spec.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateStrategy {
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub progress_deadline_secs: u32,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub security: SecuritySpec,
    pub working_dir: Option<String>,
    pub lifecycle: Lifecycle,
    pub host_aliases: Vec<HostAlias>,
    pub dns: DnsSpec,
    pub grace_period_secs: Option<u32>,
    pub pids_limit: u32,
    pub privileged: bool,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub host_paths: Vec<HostPathMount>,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsPolicy {
    #[default]
    ClusterFirst,
    Default,
    None,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DnsSpec {
    pub policy: DnsPolicy,
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<DnsOption>,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Exec { command: Vec<String> },
    Sleep { seconds: u32 },
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostPathMount {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lifecycle {
    pub post_start: Option<Hook>,
    pub pre_stop: Option<Hook>,
}

// protocol/src/spec/container.rs
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecuritySpec {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<u32>,
    pub read_only_root_filesystem: bool,
    pub allow_privilege_escalation: bool,
    pub capabilities: Capabilities,
}
