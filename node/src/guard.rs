//! Watchdogs that keep a node from running half-alive: a node whose data
//! dir vanished, whose Raft stopped, or that is a second process with
//! another's node id stops with a non-zero exit (its service manager
//! restarts it); a node whose storage fails steps back until it works
//! again; and peers claiming a node id that another identity holds are
//! refused at the door, before gossip or Raft see them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use skein_protocol::api::EventKind;
use skein_protocol::codec::Schema;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::events::{EventLog, NewEvent};
use crate::inbound::Inbound;
use crate::membership::local::LocalNode;
use crate::membership::{Admission, Membership};
use crate::mesh::MeshEvent;
use crate::raft::storage::Storage;
use crate::raft::{SkeinRaft, StateHandle};
use crate::state::{node_id_str, NodeId};
use crate::wire::NodeStatus;

/// How often the data dir is checked.
pub const DATA_DIR_CHECK: Duration = Duration::from_secs(2);

/// Why the node must stop; the first reason raised wins.
#[derive(Debug, Clone)]
pub struct Fatal {
    tx: watch::Sender<Option<String>>,
}

impl Fatal {
    /// A fresh signal, not raised.
    pub fn new() -> Self {
        Self {
            tx: watch::channel(None).0,
        }
    }

    /// Asks the node to stop with `reason` (logged; the agent exits non-zero).
    pub fn raise(&self, reason: String) {
        self.tx.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            error!(reason = %reason, "stopping the node");
            *r = Some(reason);
            true
        });
    }

    /// The reason, once raised.
    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Resolves once raised.
    pub async fn raised(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

impl Default for Fatal {
    fn default() -> Self {
        Self::new()
    }
}

/// The identity of the node-id file at start: the same path must keep
/// naming the same file (device and inode), or the data dir was deleted
/// or replaced under the running node.
#[derive(Debug, Clone)]
pub struct DataDirMark {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl DataDirMark {
    /// Marks the file `path` (the node-id file) as it is now.
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// `Err` with what happened when the file is gone or another one.
    pub fn check(&self) -> Result<(), String> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => Ok(()),
            Ok(_) => Err(format!(
                "{} was replaced while the node runs (the data dir was deleted or restored underneath it); \
                 its raft storage may be gone: restart the node",
                self.path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{} vanished while the node runs (the data dir was deleted); this node can no longer keep \
                 what it acknowledges: stopping instead of writing to a deleted file",
                self.path.display()
            )),
            // Another error (EIO, EACCES) is not proof the dir is gone.
            Err(_) => Ok(()),
        }
    }
}

/// Raises `fatal` once the data dir stops being the one the node started on.
pub async fn watch_data_dir(mark: DataDirMark, fatal: Fatal) {
    let mut tick = tokio::time::interval(DATA_DIR_CHECK);
    loop {
        tick.tick().await;
        let m = mark.clone();
        let checked = tokio::task::spawn_blocking(move || m.check()).await;
        if let Ok(Err(reason)) = checked {
            fatal.raise(reason);
            return;
        }
    }
}

/// Raises `fatal` if openraft stops on an error (it does not restart by
/// itself; a node whose Raft is gone must not keep serving as if it led).
pub async fn watch_raft(raft: SkeinRaft, fatal: Fatal) {
    let mut metrics = raft.metrics();
    loop {
        let stopped = match &metrics.borrow_and_update().running_state {
            Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = stopped {
            fatal.raise(format!("raft stopped on an error: {e}"));
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Raises `fatal` when the cluster's schema (from this node's Raft state,
/// or for a worker its assignments) is newer than this build's: the
/// others now write what this node cannot read (a downgrade past a
/// schema change). Checked at every state change.
pub async fn watch_schema(state: Arc<StateHandle>, desired: Arc<StateHandle>, fatal: Fatal) {
    let mut state_changes = state.subscribe();
    let mut desired_changes = desired.subscribe();
    loop {
        let cluster = crate::control::schema::of_cluster(&state, &desired).await;
        if cluster > Schema::CURRENT {
            fatal.raise(format!(
                "the cluster runs schema {cluster}, newer than this build's {} (Skein {}): \
                 upgrade this node to the version the other nodes run",
                Schema::CURRENT,
                env!("CARGO_PKG_VERSION")
            ));
            return;
        }
        tokio::select! {
            r = state_changes.changed() => if r.is_err() { return },
            r = desired_changes.changed() => if r.is_err() { return },
        }
    }
}

/// Reacts to storage health changes: reports them (event, log), and while
/// degraded keeps this node from leading (no heartbeats: followers elect
/// another leader; no elections of its own), restoring both on recovery.
pub async fn watch_storage(
    storage: Arc<Storage>,
    raft: SkeinRaft,
    (id, name): (NodeId, String),
    events: Arc<EventLog>,
) {
    let mut rx = storage.subscribe();
    let mut degraded = false;
    loop {
        let health = rx.borrow_and_update().clone();
        if health.degraded != degraded {
            degraded = health.degraded;
            let runtime = raft.runtime_config();
            runtime.heartbeat(!degraded);
            runtime.elect(!degraded);
            let name = name.clone();
            if degraded {
                let why = health.error.unwrap_or_default();
                warn!(error = %why, leader = crate::peers::leads(&raft, id), "storage degraded: refusing writes and handing leadership over");
                events.emit(
                    NewEvent::new(
                        EventKind::StorageDegraded,
                        format!("raft storage failing: {why}"),
                    )
                    .node(name),
                );
            } else {
                info!("storage recovered: taking writes again");
                events.emit(
                    NewEvent::new(EventKind::StorageRecovered, "raft storage works again")
                        .node(name),
                );
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// What the door in front of `inbound` checks statuses against: this
/// node's own identity, the node table (admission) and the journal it
/// reports duplicates into.
#[derive(Clone)]
pub struct Door {
    /// This node's static facts (id, peer id, API address, name).
    pub local: LocalNode,
    /// Node table.
    pub membership: Arc<Membership>,
    /// Where duplicates are reported.
    pub events: Arc<EventLog>,
}

/// Passes mesh events on to `inbound`: gossip is decoded here (small,
/// bounded by the mesh) and dropped when it is garbage, claims another
/// peer's identity or a node id that another identity holds (the
/// duplicate reported); a status showing that an older process runs with
/// this node's own id stops this node. Requests pass undecoded: each is
/// decoded in its own task, where Raft RPCs sent under another peer's node
/// id are refused ([`raft_impostor`]). Returns the filtering loop (for the
/// caller to supervise) and the receiver of what passes.
pub fn guard_inbound(
    door: Door,
    mut events: mpsc::Receiver<MeshEvent>,
    fatal: Fatal,
) -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    mpsc::Receiver<Inbound>,
) {
    let (tx, out) = mpsc::channel(1024);
    let filter = async move {
        while let Some(ev) = events.recv().await {
            let pass = match ev {
                MeshEvent::Gossip { from, bytes } => match status_of(from, &bytes) {
                    Ok(status) => {
                        admit_status(&door, &status, &fatal)
                            .await
                            .then(|| Inbound::Status {
                                from,
                                status: Box::new(status),
                            })
                    }
                    Err(problem) => {
                        debug!(peer = %from, %problem, "gossip dropped");
                        None
                    }
                },
                MeshEvent::Request { from, bytes, reply } => {
                    Some(Inbound::Request { from, bytes, reply })
                }
                MeshEvent::PeerConnected(p) => {
                    debug!(peer = %p, "peer connected");
                    None
                }
                MeshEvent::PeerDisconnected(p) => {
                    debug!(peer = %p, "peer disconnected");
                    None
                }
            };
            if let Some(ev) = pass {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    };
    (filter, out)
}

/// Decodes a gossiped status and checks that it is its signer's own.
fn status_of(from: PeerId, bytes: &[u8]) -> Result<NodeStatus, String> {
    let status: NodeStatus = skein_protocol::codec::decode(bytes)
        .map_err(|e| format!("undecodable status of {} bytes: {e}", bytes.len()))?;
    if status.peer_id != from.to_base58() {
        return Err(format!(
            "status claims peer id {:?} but is signed by {from}",
            status.peer_id
        ));
    }
    Ok(status)
}

/// Whether a status may reach gossip.
async fn admit_status(door: &Door, status: &NodeStatus, fatal: &Fatal) -> bool {
    if status.node_id == door.local.id {
        if status.peer_id != door.local.peer_id || status.api_addr != door.local.addr {
            let older = status.seq > door.membership.local_seq();
            let msg = format!(
                "another process gossips this node's id {} (peer {}, api {}): a copied or restored data dir",
                node_id_str(door.local.id),
                status.peer_id,
                status.api_addr
            );
            if older {
                fatal.raise(format!(
                    "{msg}; it has been running longer, so this one stops: give the copy a fresh data dir"
                ));
            } else if door.membership.note_self_duplicate() {
                warn!("{msg}; it is the newcomer and is refused");
                door.events.emit(
                    NewEvent::new(EventKind::DuplicateNode, msg).node(door.local.name.clone()),
                );
            }
        }
        // Gossip drops statuses claiming our own id anyway.
        return true;
    }
    if let Some(other) = door
        .membership
        .name_clash(status.node_id, &status.name)
        .await
    {
        let msg = format!(
            "two nodes are named {}: {} and {}; give each a unique --name (commands that take a \
             node name refuse it while it is ambiguous: use the id)",
            status.name,
            node_id_str(other),
            node_id_str(status.node_id)
        );
        warn!("{msg}");
        door.events
            .emit(NewEvent::new(EventKind::DuplicateNode, msg).node(status.name.clone()));
    }
    match door
        .membership
        .admit(status.node_id, &status.peer_id, &status.api_addr)
        .await
    {
        Admission::Accept => true,
        Admission::Refuse => false,
        Admission::Duplicate { peer_id, addr } => {
            let msg = format!(
                "node id {} is claimed by two processes at once: {} (peer {}) keeps it, the newcomer at {addr} (peer {peer_id}) is refused",
                node_id_str(status.node_id),
                status.api_addr,
                status.peer_id
            );
            warn!("{msg}");
            door.events
                .emit(NewEvent::new(EventKind::DuplicateNode, msg).node(status.name.clone()));
            true
        }
    }
}

/// Why a Raft RPC from `peer` claiming node `sender` is refused: the Raft
/// membership (or, for others, the node table) binds `sender` to another
/// peer id.
pub(crate) async fn raft_impostor(
    raft: &SkeinRaft,
    membership: &Membership,
    peer: PeerId,
    sender: u64,
) -> Option<String> {
    let bound = {
        let m = raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&sender).map(|n| n.peer_id.clone())
    };
    let bound = match bound.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => membership.get(sender).await?.peer_id,
    };
    let peer = peer.to_base58();
    if bound.is_empty() || bound == peer {
        return None;
    }
    warn!(sender = %node_id_str(sender), %peer, owner = %bound, "refusing a raft rpc sent under another peer's node id");
    Some(format!(
        "node id {} belongs to peer {bound}, not {peer}",
        node_id_str(sender)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanished_or_replaced_node_id_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-id");
        std::fs::write(&path, "00000000000000aa").unwrap();
        let mark = DataDirMark::new(&path).unwrap();
        assert!(mark.check().is_ok());
        // Moved away (the original keeps its inode, so the copy below
        // cannot reuse it).
        let moved = dir.path().join("moved");
        std::fs::rename(&path, &moved).unwrap();
        assert!(mark.check().unwrap_err().contains("vanished"));
        // Same contents, another file: a restored copy.
        let copy = dir.path().join("copy");
        std::fs::write(&copy, "00000000000000aa").unwrap();
        std::fs::rename(&copy, &path).unwrap();
        assert!(mark.check().unwrap_err().contains("replaced"));
    }

    #[tokio::test]
    async fn fatal_keeps_the_first_reason() {
        let f = Fatal::new();
        assert!(f.reason().is_none());
        f.raise("first".into());
        f.raise("second".into());
        f.raised().await;
        assert_eq!(f.reason().as_deref(), Some("first"));
    }
}
