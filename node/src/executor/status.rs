//! The status board: the latest observed state of each allocation.
//!
//! Each node reports the statuses of the allocations it runs, as one map
//! per node: the local executor writes its own node's map, and in a cluster
//! the maps of other nodes arrive by gossip. The API reads the board to
//! show `running`, exit codes and restart counts.

use std::collections::HashMap;
use std::sync::Arc;

use skein_protocol::api::AllocStatus;
use tokio::sync::RwLock;

use crate::state::NodeId;

/// Shared per-node map from allocation id to its last observed status.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    inner: Arc<RwLock<HashMap<NodeId, HashMap<String, AllocStatus>>>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl StatusBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// The status `node` reported for `alloc`, if any.
    pub async fn get(&self, node: NodeId, alloc: &str) -> Option<AllocStatus> {
        self.inner.read().await.get(&node)?.get(alloc).cloned()
    }

    /// Every status reported by `node`.
    pub async fn of_node(&self, node: NodeId) -> HashMap<String, AllocStatus> {
        self.inner
            .read()
            .await
            .get(&node)
            .cloned()
            .unwrap_or_default()
    }

    /// A copy of the whole board.
    pub async fn all(&self) -> HashMap<NodeId, HashMap<String, AllocStatus>> {
        self.inner.read().await.clone()
    }

    /// Replaces everything `node` reported with `statuses`.
    pub async fn set_node(&self, node: NodeId, statuses: HashMap<String, AllocStatus>) {
        let changed = self.inner.write().await.insert(node, statuses.clone()) != Some(statuses);
        if changed {
            self.changes.send_modify(|v| *v += 1);
        }
    }

    /// Ticks whenever some node's statuses actually change, so that news
    /// (a container died, a check failed) is gossiped at once.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
