//! Messages nodes exchange over the mesh.
//!
//! Request-response carries [`WireRequest`]/[`WireResponse`] (Raft RPCs,
//! API calls forwarded to the leader, assignment fetches); gossip carries
//! one [`NodeStatus`] per node twice a second. Everything is encoded with
//! [`skein_protocol::codec`] and decoded with size limits, so a peer can
//! never make a node panic or allocate without bound.

use std::collections::{BTreeMap, BTreeSet};

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use skein_protocol::api::{AllocStatus, ContainerUsage, Event};
use skein_protocol::spec::ResourceVec;

use crate::raft::TypeConfig;
use crate::state::{
    Allocation, ApiToken, Job, NodeId, SecretCredentials, StoredCredential, TokenHash,
};

/// Largest gossip message; a status with hundreds of allocations fits.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// A request to one peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireRequest {
    /// A Raft RPC between members.
    Raft {
        /// Sender's node id; members refuse RPCs from non-members.
        from: NodeId,
        /// The RPC.
        rpc: RaftRequest,
    },
    /// An HTTP API call forwarded to the leader.
    Api(ApiCall),
    /// Long-poll for the allocations placed on `node`: answered once the
    /// state version exceeds `known_version` (or after a timeout).
    Assignments {
        /// The asking node.
        node: NodeId,
        /// State version the asker already has.
        known_version: u64,
    },
    /// `skein image push`: copy image `id` from `from` (or any other peer
    /// holding it) and tag it with `tags`.
    FetchImage {
        /// Image id.
        id: String,
        /// Tags to give it.
        tags: Vec<String>,
        /// The node that has it (the pusher).
        from: NodeId,
    },
    /// To the leader: store the hash of the sender's `--api-token-file`
    /// token as an admin token, so that every node honours it. Trusted
    /// because only holders of the cluster key reach the mesh.
    RegisterBootstrapToken {
        /// SHA-256 of the token.
        hash: TokenHash,
        /// Name of the sending node (shown as the token's source).
        node: String,
    },
}

/// The answer to a [`WireRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum WireResponse {
    /// Answer to [`WireRequest::Raft`].
    Raft(RaftResponse),
    /// Answer to [`WireRequest::Api`].
    Api(ApiReply),
    /// Answer to [`WireRequest::Assignments`].
    Assignments(Assignments),
    /// Answer to [`WireRequest::FetchImage`]: `true` = the copy started,
    /// `false` = the node has the image already.
    FetchImage(bool),
    /// The request could not be served (not leader, not a member, …).
    Error(String),
    /// Answer to [`WireRequest::RegisterBootstrapToken`]: the name the
    /// token is stored under.
    TokenRegistered(String),
}

/// Raft RPCs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Log replication and heartbeats.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Elections.
    Vote(VoteRequest<NodeId>),
    /// Snapshot transfer (chunked).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Raft RPC results; remote errors travel as text (the caller retries).
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// Result of [`RaftRequest::Append`].
    Append(Result<AppendEntriesResponse<NodeId>, String>),
    /// Result of [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, String>),
    /// Result of [`RaftRequest::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<NodeId>, String>),
}

/// An HTTP request, forwarded verbatim with the caller's credential: the
/// node that serves it checks that credential exactly as it checks a
/// direct call (`crate::api::auth`), whatever the forwarding node thought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCall {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Who the call acts for.
    pub credential: Credential,
}

/// Who a forwarded API call acts for.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// The caller sent no token.
    #[default]
    Anonymous,
    /// The caller's bearer token, as it sent it (the mesh is encrypted).
    Bearer(String),
    /// An anonymous read that the node it entered lets through
    /// (`--open-reads` is that node's choice); never grants a write.
    OpenRead,
    /// The sending node itself, copying the event journal at start; grants
    /// `GET /v1/events` only.
    Node,
}

/// Never prints a token.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::OpenRead => f.write_str("OpenRead"),
            Credential::Node => f.write_str("Node"),
        }
    }
}

/// An HTTP response, returned verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReply {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// What one node must run: its allocations and their jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    /// State version these were read at.
    pub version: u64,
    /// Jobs referenced by `allocs`.
    pub jobs: Vec<Job>,
    /// Allocations placed on the node.
    pub allocs: Vec<Allocation>,
    /// Drained nodes, so that every node can show them in `node ls`.
    pub drained: BTreeSet<NodeId>,
    /// Cluster-wide registry credentials (sealed), so the node can pull.
    pub registries: BTreeMap<String, StoredCredential>,
    /// The pull secrets its jobs name (sealed).
    pub pull_secrets: BTreeMap<String, SecretCredentials>,
    /// The cluster's API tokens (hashes), so that every node, Raft member
    /// or not, enforces the same set.
    pub tokens: BTreeMap<String, ApiToken>,
    /// Revoked bootstrap tokens (hashes).
    pub revoked_tokens: BTreeSet<TokenHash>,
}

/// A node's role in Raft, as it sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRole {
    /// Current term.
    pub term: u64,
    /// Leader it follows, if any.
    pub leader: Option<NodeId>,
    /// Current voter set, as this node knows it.
    pub voters: Vec<NodeId>,
}

/// A replica of a service, as the node running it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// Service name.
    pub service: String,
    /// Job name.
    pub job: String,
    /// Allocation id.
    pub alloc: String,
    /// Address the replica is reachable at.
    pub ip: std::net::IpAddr,
    /// Host port of the service's container port.
    pub port: u16,
    /// Routing-mesh port of the service, if published.
    pub publish: Option<u16>,
    /// Routing-mesh balancing policy.
    pub balance: skein_protocol::spec::Balance,
    /// Running and passing readiness checks.
    pub ready: bool,
}

/// An image a node holds: peers lacking it may copy it from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Docker image id (`sha256:…`): what a copy is verified against.
    pub id: String,
    /// Its tags, canonical ([`skein_protocol::image::canonical`]).
    pub tags: Vec<String>,
    /// Size in bytes as Docker reports it.
    pub size: u64,
}

/// What every node gossips about itself twice a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node_id: NodeId,
    /// libp2p peer id (base58).
    pub peer_id: String,
    /// Human name.
    pub name: String,
    /// HTTP API address.
    pub api_addr: String,
    /// Mesh multiaddrs others can dial.
    pub mesh_addrs: Vec<String>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Schedulable resources.
    pub capacity: ResourceVec,
    /// Dynamic host port range (first, last).
    pub port_range: (u16, u16),
    /// Ports services may publish on it (first, last).
    pub publish_range: (u16, u16),
    /// Its own listening ports (API, mesh, DNS), with what each is.
    pub listeners: Vec<(u16, String)>,
    /// Images present locally.
    pub images: Vec<ImageInfo>,
    /// Images it is fetching now (registry pulls, copies from peers).
    pub fetching: Vec<skein_protocol::api::PullProgress>,
    /// Sum of the requests of the allocations assigned to this node.
    pub allocated: ResourceVec,
    /// Number of allocations assigned to this node.
    pub allocation_count: u32,
    /// Statuses of the allocations this node runs.
    pub allocs: Vec<(String, AllocStatus)>,
    /// Service endpoints this node offers (ready or not).
    pub endpoints: Vec<EndpointReport>,
    /// Measured usage of its containers (Docker stats, sampled every few
    /// seconds).
    pub usage: Vec<ContainerUsage>,
    /// Its own recent events, repeated for a few seconds so that one lost
    /// message does not lose them (`crate::events`).
    pub events: Vec<Event>,
    /// Raft view.
    pub raft: RaftRole,
    /// Skein version.
    pub version: String,
    /// Increases with every message, so gossip never sees two equal ones.
    pub seq: u64,
    /// Health of its Raft storage (degraded: it takes no writes). Boxed:
    /// it keeps [`crate::mesh::MeshEvent`]'s variants of similar size.
    pub storage: Box<skein_protocol::api::StorageView>,
    /// What the node lets containers reach of itself (`--allow-privileged`,
    /// `--allow-host-path`): the scheduler places such jobs only there.
    #[serde(default)]
    pub host_access: skein_protocol::spec::HostAccess,
}
