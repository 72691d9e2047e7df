//! Raft RPCs between members, carried by the mesh's request-response
//! protocol as [`PeerRequest::Raft`]. The target's peer id and addresses
//! come from its [`RaftPeer`] entry in the Raft membership.
//!
//! Errors keep their type: openraft's own errors from the target come
//! back as [`RPCError::RemoteError`]; a transport failure is
//! [`RPCError::Unreachable`] (openraft backs off); a refusal by the peer's
//! door (not a member, impostor) or an unreadable answer is
//! [`RPCError::Network`].

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{RaftPeer, TypeConfig};
use crate::mesh::Mesh;
use crate::rpc::{self, CallError, PeerRequest, PeerResponse, RaftRequest, RaftResponse};
use crate::state::{node_id_str, NodeId};

/// Builds a [`PeerClient`] per target.
#[derive(Clone)]
pub struct Network {
    mesh: Mesh,
    local: NodeId,
}

impl Network {
    /// A network for the member `local`.
    pub fn new(mesh: Mesh, local: NodeId) -> Self {
        Self { mesh, local }
    }
}

/// Connection to one Raft peer.
pub struct PeerClient {
    mesh: Mesh,
    local: NodeId,
    target: NodeId,
    peer: Option<PeerId>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &RaftPeer) -> PeerClient {
        let peer = node.peer_id.parse::<PeerId>().ok();
        if let Some(p) = peer {
            let addrs: Vec<Multiaddr> = node
                .mesh_addrs
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            self.mesh.add_peer_addrs(p, addrs);
        }
        PeerClient {
            mesh: self.mesh.clone(),
            local: self.local,
            target,
            peer,
        }
    }
}

/// Largest append-entries request sent in one message: the mesh's limit,
/// less room for the envelope.
const MAX_APPEND_BYTES: usize = skein_protocol::codec::MAX_MESSAGE_BYTES - 64 * 1024;

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, RaftPeer, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRequest,
        ttl: Duration,
    ) -> Result<RaftResponse, RpcErr<E>> {
        let Some(peer) = self.peer else {
            return Err(unreachable(format!(
                "raft peer {} has no valid peer id",
                node_id_str(self.target)
            )));
        };
        let req = PeerRequest::Raft {
            from: self.local,
            rpc,
        };
        let target = node_id_str(self.target);
        match tokio::time::timeout(ttl, rpc::call(&self.mesh, peer, &req)).await {
            Err(_) => Err(unreachable(format!(
                "raft peer {target} did not answer within {ttl:?}"
            ))),
            Ok(Ok(PeerResponse::Raft(r))) => Ok(r),
            Ok(Ok(other)) => Err(network(rpc::unexpected("raft", &other).to_string())),
            Ok(Err(CallError::Transport(e))) => {
                Err(unreachable(format!("raft peer {target}: {e}")))
            }
            Ok(Err(e)) => Err(network(format!("raft peer {target}: {e}"))),
        }
    }

    /// The target's own error, as openraft wants it.
    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

fn unreachable<E: std::error::Error>(msg: String) -> RpcErr<E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(msg)))
}

fn network<E: std::error::Error>(msg: String) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg)))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        // Entries are bounded by the state limit (a few MiB each), but a
        // batch of several large ones would exceed what the mesh carries:
        // ask openraft to send fewer at a time instead of failing forever.
        let n = rpc.entries.len();
        if n > 1 {
            let len = skein_protocol::codec::encoded_len(&rpc).unwrap_or(usize::MAX);
            if len > MAX_APPEND_BYTES {
                let hint = u64::try_from((n / 2).max(1)).unwrap_or(1);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ));
            }
        }
        match self
            .call(RaftRequest::Append(rpc), option.hard_ttl())
            .await?
        {
            RaftResponse::Append(r) => r.map_err(|e| self.remote(e)),
            _ => Err(network("mismatched raft answer".into())),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(RaftRequest::Snapshot(rpc), option.hard_ttl())
            .await?
        {
            RaftResponse::Snapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(network("mismatched raft answer".into())),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(RaftRequest::Vote(rpc), option.hard_ttl()).await? {
            RaftResponse::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(network("mismatched raft answer".into())),
        }
    }
}
