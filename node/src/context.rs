//! The handles the API and `inbound` share (`agent` builds it), and the
//! questions they ask: who leads, am I a Raft member, how do I reach a
//! node over the mesh (answered by [`crate::peers`]). Loops get only the
//! handles they use; no module this holds imports it (see
//! node/tests/architecture.rs).

use std::sync::Arc;

use libp2p::PeerId;

use crate::control::Control;
use crate::events::EventLog;
use crate::executor::stats::UsageBoard;
use crate::executor::StatusBoard;
use crate::images::Images;
use crate::membership::local::LocalNode;
use crate::membership::{Membership, NodeRecord};
use crate::mesh::Mesh;
use crate::metrics::{Metrics, MetricsSources};
use crate::peers::{self, Peers};
use crate::raft::storage::Storage;
use crate::raft::{RaftPeer, SkeinRaft, StateHandle};
use crate::rpc::{self, ApiCall, ApiReply, Credential, PeerRequest, PeerResponse};
use crate::runtime::Runtime;
use crate::secrets::SecretBox;
use crate::state::{node_id_str, NodeId};
use crate::wire::RaftRole;

/// Shared handles of one node.
pub struct NodeCtx {
    /// This node's static facts.
    pub local: LocalNode,
    /// Raft (this node may or may not be a member).
    pub raft: SkeinRaft,
    /// State applied by this node's Raft (complete only on members).
    pub state: Arc<StateHandle>,
    /// What this node must run (its own allocations and their jobs).
    pub desired: Arc<StateHandle>,
    /// The leader-side write path.
    pub control: Arc<Control>,
    /// Node table.
    pub membership: Arc<Membership>,
    /// Allocation statuses of every node.
    pub board: StatusBoard,
    /// Peer-to-peer transport.
    pub mesh: Mesh,
    /// The local container runtime (Docker, or a fake in tests).
    pub runtime: Runtime,
    /// Cluster events this node has seen (and reports its own into).
    pub events: Arc<EventLog>,
    /// Measured usage of this node's containers.
    pub usage: UsageBoard,
    /// Metrics that are counted as things happen (scheduler, libp2p).
    pub metrics: Arc<Metrics>,
    /// Image fetches (registry pulls, copies from and to peers).
    pub images: Images,
    /// Seals registry passwords with the cluster's credential key.
    pub secrets: Arc<SecretBox>,
    /// The Raft storage and its health.
    pub storage: Arc<Storage>,
    /// When the last completed [`NodeCtx::refresh_self_since`] read
    /// started: held while one reads, so concurrent writes share reads.
    pub refreshed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl NodeCtx {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.local.id
    }

    /// Raft and the node table, for loops that ask who leads and how to
    /// reach a node (cheap clones).
    pub fn peers(&self) -> Peers {
        Peers {
            id: self.id(),
            raft: self.raft.clone(),
            membership: self.membership.clone(),
        }
    }

    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        peers::leads(&self.raft, self.id())
    }

    /// Whether this node is in the Raft membership (voter or learner), so
    /// that its applied state is a full replica.
    pub fn is_member(&self) -> bool {
        peers::is_member(&self.raft, self.id())
    }

    /// The leader: from Raft if this node is a member, else from gossip.
    pub async fn leader(&self) -> Option<NodeId> {
        peers::leader(&self.raft, &self.membership).await
    }

    /// The mesh peer id of `node`.
    pub async fn peer_of(&self, node: NodeId) -> Option<PeerId> {
        peers::peer_of(&self.raft, &self.membership, node).await
    }

    /// This node's Raft view, as gossiped.
    pub fn raft_role(&self) -> RaftRole {
        let m = self.raft.metrics().borrow().clone();
        RaftRole {
            term: m.current_term,
            leader: m.current_leader,
            voters: m.membership_config.membership().voter_ids().collect(),
        }
    }

    /// Re-reads this node's capacity and images from Docker into its own
    /// membership record; returns the record.
    /// [`NodeCtx::refresh_self`] unless a read that started at or after
    /// `asked` has completed meanwhile: concurrent writes (each wants
    /// images built a moment before it to count) share one Docker
    /// inventory read instead of queueing one each.
    pub async fn refresh_self_since(&self, asked: std::time::Instant) {
        let mut last = self.refreshed.lock().await;
        if last.is_some_and(|started| started >= asked) {
            return;
        }
        let started = std::time::Instant::now();
        self.refresh_self().await;
        *last = Some(started);
    }

    pub async fn refresh_self(&self) -> Option<NodeRecord> {
        match self.local.read(&*self.runtime).await {
            Ok(mut r) => {
                self.fill_live(&mut r).await;
                // Endpoints are computed by the status publisher; keep the
                // last ones rather than drop them from DNS until it runs.
                if let Some(old) = self.membership.get(self.id()).await {
                    r.endpoints = old.endpoints;
                }
                self.membership.observe(r.clone()).await;
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read node inventory from Docker");
                None
            }
        }
    }

    /// Sets the parts of this node's record that change between Docker
    /// inventory reads: mesh addresses, Raft view, assigned resources.
    pub async fn fill_live(&self, r: &mut NodeRecord) {
        r.mesh_addrs = self
            .mesh
            .advertised_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        r.raft = self.raft_role();
        r.storage = self.storage.health().view();
        (r.allocated, r.allocation_count) = self.assigned().await;
        r.usage = self.usage.all().await;
        r.fetching = self.images.fetching();
    }

    /// Resources and count of the allocations assigned to this node.
    pub async fn assigned(&self) -> (skein_protocol::spec::ResourceVec, u32) {
        let me = self.id();
        self.desired
            .read(|s| {
                let n = s.allocs_on(me).count();
                (s.allocated_on(me), u32::try_from(n).unwrap_or(u32::MAX))
            })
            .await
    }

    /// A GET of `path` on `node`'s API, over the mesh, acting for
    /// `credential` (the user's, when serving a user's call): its answer
    /// (any status), or why the node could not be asked.
    pub async fn peer_get(
        &self,
        node: NodeId,
        path: &str,
        credential: Credential,
    ) -> Result<ApiReply, String> {
        let peer = self
            .peer_of(node)
            .await
            .ok_or_else(|| format!("no mesh address for node {}", node_id_str(node)))?;
        let call = ApiCall {
            method: "GET".into(),
            path: path.to_string(),
            body: Vec::new(),
            credential,
            request_id: None,
        };
        match rpc::call(&self.mesh, peer, &PeerRequest::Api(call)).await {
            Ok(PeerResponse::Api(r)) => Ok(r),
            Ok(other) => Err(format!(
                "node {}: {}",
                node_id_str(node),
                rpc::unexpected("api", &other)
            )),
            Err(e) => Err(format!("node {}: {e}", node_id_str(node))),
        }
    }

    /// What Raft needs to reach `node`, from its gossiped record.
    pub async fn raft_peer(&self, node: NodeId) -> Option<RaftPeer> {
        peers::raft_peer(&self.membership, node).await
    }

    /// What a scrape of `GET /metrics` reads.
    pub fn metrics_sources(&self) -> MetricsSources<'_> {
        MetricsSources {
            id: self.id(),
            raft: &self.raft,
            state: &self.state,
            desired: &self.desired,
            board: &self.board,
            membership: &self.membership,
            usage: &self.usage,
            storage: &self.storage,
            metrics: &self.metrics,
        }
    }
}
