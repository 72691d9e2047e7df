//! Raft network between voters.
//!
//! A single-node cluster never sends a Raft RPC; until the mesh carries
//! them every target reports itself unreachable, which openraft retries.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{RaftPeer, TypeConfig};
use crate::state::NodeId;

/// Builds a [`PeerClient`] per target.
#[derive(Debug, Clone, Default)]
pub struct Network;

/// Connection to one Raft peer.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &RaftPeer) -> PeerClient {
        PeerClient { target }
    }
}

fn unreachable<E: std::error::Error>(target: NodeId) -> RPCError<NodeId, RaftPeer, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
        "no route to raft peer {target:016x}"
    ))))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, RaftPeer, RaftError<NodeId>>> {
        Err(unreachable(self.target))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, RaftPeer, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable(self.target))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, RaftPeer, RaftError<NodeId>>> {
        Err(unreachable(self.target))
    }
}
