//! Raft glue: openraft type configuration, durable storage (redb) and the
//! network between voters.
//!
//! Nothing outside this module talks to openraft's storage traits; the rest
//! of the node submits [`Command`]s through [`crate::control::Control`] and
//! reads the applied [`crate::state::ClusterState`] from a [`StateHandle`].

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod storage;
#[cfg(test)]
mod store_tests;

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, RwLock};

use crate::state::{ClusterState, Command, CommandResult, NodeId};

/// What a Raft member knows about another member: enough to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPeer {
    /// Human name.
    pub name: String,
    /// Address of the peer's HTTP API.
    pub addr: String,
    /// libp2p peer id (base58) the mesh reaches it by.
    pub peer_id: String,
    /// Mesh multiaddrs it was last seen on.
    pub mesh_addrs: Vec<String>,
}

impl std::fmt::Display for RaftPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// Skein's openraft configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = RaftPeer,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance type of a Skein node.
pub type SkeinRaft = openraft::Raft<TypeConfig>;

/// The applied state, shared read-only with the rest of the node.
///
/// The state machine is the only writer. Readers take the lock briefly;
/// `changed` lets the executor and controller react to every applied
/// change without polling.
#[derive(Debug)]
pub struct StateHandle {
    state: RwLock<ClusterState>,
    version_tx: watch::Sender<u64>,
}

impl StateHandle {
    /// A handle holding `state`.
    pub fn new(state: ClusterState) -> Arc<Self> {
        let (version_tx, _) = watch::channel(state.version);
        Arc::new(Self {
            state: RwLock::new(state),
            version_tx,
        })
    }

    /// A copy of the current state.
    pub async fn snapshot(&self) -> ClusterState {
        self.state.read().await.clone()
    }

    /// Runs `f` on the current state without copying it.
    pub async fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&*self.state.read().await)
    }

    /// Replaces the state (snapshot install, restore on start).
    pub(crate) async fn replace(&self, state: ClusterState) {
        let v = state.version;
        *self.state.write().await = state;
        self.version_tx.send_replace(v);
    }

    /// Applies `cmd` to the state (called by the state machine only).
    pub(crate) async fn apply(&self, cmd: &Command) -> CommandResult {
        let mut s = self.state.write().await;
        let r = s.apply(cmd);
        self.version_tx.send_replace(s.version);
        r
    }

    /// A receiver that changes whenever the state version changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }
}
