//! The Raft state machine: applies committed [`Command`](crate::state::Command)s to the shared
//! [`StateHandle`] and keeps the applied state and the current snapshot
//! durable in the same redb file as the log.
//!
//! Applying a batch changes memory only: the log is the durable record of
//! every command, so a write costs its log entry, not a copy of the whole
//! state. The applied state (last applied log id, membership and
//! [`ClusterState`]) is written when a snapshot is built or installed,
//! as the `applied` record and as the snapshot's data (the same bytes). At
//! start the node restores that record and openraft re-applies the
//! committed entries after it (`read_committed`), before the node serves:
//! the log after a snapshot is only purged once the snapshot is durable.
//! Earlier builds wrote the record after every batch; a record of theirs
//! is read the same way, and a node of theirs reads one of ours.

use std::io::Cursor;
use std::sync::Arc;

use anyhow::Context;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use skein_protocol::codec;
use tokio::sync::Mutex;

use super::log_store::{blocking, read_value, write_durably, write_value, DbError, StoreResult};
use super::storage::Storage;
use super::{RaftPeer, StateHandle, TypeConfig};
use crate::state::{ClusterState, CommandResult, NodeId};

/// Applied state and current snapshot by name (`applied`, `snapshot_meta`,
/// `snapshot_data`).
pub(crate) const STATE_MACHINE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("state_machine");

/// Encoded [`AppliedState`] as of the last snapshot built or installed
/// (earlier builds: as of the last applied batch).
const APPLIED: &str = "applied";
/// Encoded `(sequence, SnapshotMeta)` of the current snapshot.
const SNAPSHOT_META: &str = "snapshot_meta";
/// The current snapshot's data: an encoded [`AppliedState`].
const SNAPSHOT_DATA: &str = "snapshot_data";

/// The state machine at one log position: both the record persisted after
/// each batch and the data of a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AppliedState {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, RaftPeer>,
    state: ClusterState,
}

/// Raft bookkeeping that goes with the [`ClusterState`] in the handle.
struct Progress {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, RaftPeer>,
    /// Number of snapshots built here, so snapshot ids never repeat, even
    /// across restarts.
    snapshot_seq: u64,
}

/// The applied state, durable in the shared redb database.
///
/// Clones (the snapshot builder is one) share the state. The progress
/// lock pairs a `ClusterState` with its own `last_applied` (a snapshot
/// copies both under it, then encodes and writes without it, so applying
/// goes on meanwhile).
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Storage>,
    handle: Arc<StateHandle>,
    progress: Arc<Mutex<Progress>>,
    /// Held while a snapshot is built or installed: the two never
    /// interleave, so the stored snapshot and `applied` record always
    /// come from one of them whole.
    snapshots: Arc<Mutex<()>>,
}

impl StateMachineStore {
    /// Restores the last applied state from `db` into `handle` (so the node
    /// serves its state immediately on restart); an empty database resets
    /// `handle` to the empty state, which is what openraft replays onto.
    pub async fn new(db: Arc<Storage>, handle: Arc<StateHandle>) -> anyhow::Result<Self> {
        let (applied, snapshot_seq) = blocking(&db, StorageIOError::read_state_machine, |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(STATE_MACHINE)?;
            let applied: Option<AppliedState> = read_value(&table, APPLIED)?;
            let meta: Option<(u64, SnapshotMeta<NodeId, RaftPeer>)> =
                read_value(&table, SNAPSHOT_META)?;
            Ok((applied.unwrap_or_default(), meta.map_or(0, |(seq, _)| seq)))
        })
        .await
        .context("restoring the raft state machine")?;
        tracing::info!(
            last_applied = ?applied.last_applied,
            version = applied.state.version,
            "restored raft state machine"
        );
        handle.replace(applied.state).await;
        Ok(Self {
            db,
            handle,
            progress: Arc::new(Mutex::new(Progress {
                last_applied: applied.last_applied,
                membership: applied.membership,
                snapshot_seq,
            })),
            snapshots: Arc::new(Mutex::new(())),
        })
    }

    /// Result for an entry that changes no state (blank, membership).
    async fn unchanged(&self) -> CommandResult {
        CommandResult::Applied {
            version: self.handle.read(|s| s.version).await,
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let _building = self.snapshots.lock().await;
        // Applying goes on while the copy (shared tables, O(1)) is encoded
        // and written: only the copy is taken under the progress lock.
        let (applied, seq) = {
            let progress = self.progress.lock().await;
            let applied = AppliedState {
                last_applied: progress.last_applied,
                membership: progress.membership.clone(),
                state: self.handle.snapshot().await,
            };
            (applied, progress.snapshot_seq + 1)
        };
        let snapshot_id = match applied.last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id.term, id.index),
            None => format!("0-none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        let stored_meta = (seq, meta.clone());
        let signature = meta.signature();
        let on_err = move |e| StorageIOError::write_snapshot(Some(signature), e);
        let data = blocking(&self.db, on_err, move |db| {
            let data = codec::encode(&applied).map_err(|e| DbError::Corrupt(e.to_string()))?;
            write_durably(db, |txn| {
                write_value(txn, STATE_MACHINE, SNAPSHOT_META, &stored_meta)?;
                let mut table = txn.open_table(STATE_MACHINE)?;
                table.insert(SNAPSHOT_DATA, data.as_slice())?;
                // The restart point: entries up to here need no replay.
                table.insert(APPLIED, data.as_slice())?;
                Ok(())
            })?;
            Ok(data)
        })
        .await?;
        self.progress.lock().await.snapshot_seq = seq;
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "built raft snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, RaftPeer>)> {
        let progress = self.progress.lock().await;
        Ok((progress.last_applied, progress.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut progress = self.progress.lock().await;
        let mut last_applied = progress.last_applied;
        let mut membership = progress.membership.clone();
        let mut results = Vec::new();
        for entry in entries {
            last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Normal(cmd) => self.handle.apply(&cmd).await,
                EntryPayload::Blank => self.unchanged().await,
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m);
                    self.unchanged().await
                }
            };
            results.push(result);
        }
        progress.last_applied = last_applied;
        progress.membership = membership;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, RaftPeer>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let signature = meta.signature();
        let data = snapshot.into_inner();
        let applied: AppliedState = codec::decode_stored(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(signature.clone()), AnyError::new(&e))
        })?;
        if applied.last_applied != meta.last_log_id || applied.membership != meta.last_membership {
            let e = AnyError::error(format!(
                "snapshot {} holds state at {:?}, its meta says {:?}",
                meta.snapshot_id, applied.last_applied, meta.last_log_id
            ));
            return Err(StorageIOError::read_snapshot(Some(signature), e).into());
        }

        let _installing = self.snapshots.lock().await;
        let mut progress = self.progress.lock().await;
        let stored_meta = (progress.snapshot_seq, meta.clone());
        let on_err = |e| StorageIOError::write_snapshot(Some(signature), e);
        // The snapshot data is an encoded `AppliedState`: it is stored as is,
        // both as the applied state and as the current snapshot.
        blocking(&self.db, on_err, move |db| {
            write_durably(db, |txn| {
                write_value(txn, STATE_MACHINE, SNAPSHOT_META, &stored_meta)?;
                let mut table = txn.open_table(STATE_MACHINE)?;
                table.insert(SNAPSHOT_DATA, data.as_slice())?;
                table.insert(APPLIED, data.as_slice())?;
                Ok(())
            })
        })
        .await?;
        self.handle.replace(applied.state).await;
        progress.last_applied = applied.last_applied;
        progress.membership = applied.membership;
        tracing::info!(snapshot_id = %meta.snapshot_id, "installed raft snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        blocking(
            &self.db,
            |e| StorageIOError::read_snapshot(None, e),
            |db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(STATE_MACHINE)?;
                let Some((_, meta)) =
                    read_value::<(u64, SnapshotMeta<NodeId, RaftPeer>)>(&table, SNAPSHOT_META)?
                else {
                    return Ok(None);
                };
                let Some(data) = table.get(SNAPSHOT_DATA)? else {
                    return Err(DbError::Corrupt(format!(
                        "snapshot {} has meta but no data",
                        meta.snapshot_id
                    )));
                };
                Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data.value().to_vec())),
                }))
            },
        )
        .await
    }
}
