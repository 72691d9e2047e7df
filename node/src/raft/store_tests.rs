//! Tests of the redb-backed Raft storage: openraft's storage conformance
//! suite, restart recovery, and rejection of corrupt bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::TableDefinition;
use tempfile::TempDir;

use super::log_store::{open_db, LogStore, RAFT_LOG, RAFT_META};
use super::state_machine::{StateMachineStore, STATE_MACHINE};
use super::{RaftPeer, StateHandle, TypeConfig};
use crate::state::{Allocation, ClusterState, Command, CommandResult, Job, NodeId, Plan};

/// Builds a fresh store in its own temp dir; the dir is the suite's guard.
struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let build = async {
            let dir = tempfile::tempdir()?;
            let db = open_db(&dir.path().join("raft.redb"))?;
            let log = LogStore::new(db.clone())?;
            let sm = StateMachineStore::new(db, StateHandle::new(ClusterState::default())).await?;
            anyhow::Ok((dir, log, sm))
        };
        build
            .await
            .map_err(|e| StorageIOError::write(AnyError::error(format!("{e:#}"))).into())
    }
}

#[test]
fn openraft_storage_suite() {
    // The suite runs every case on its own runtime, so this is a plain test.
    Suite::test_all(TempStoreBuilder).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn membership() -> Membership<NodeId, RaftPeer> {
    let peer = RaftPeer {
        name: "a".into(),
        addr: "10.0.0.1:7000".into(),
        ..RaftPeer::default()
    };
    Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, peer)]))
}

/// A plan that adds one job with one allocation, on the empty state.
fn plan() -> Command {
    // Through serde so that new defaulted spec fields do not break this test.
    let spec = serde_json::from_value(serde_json::json!({
        "name": "web", "replicas": 1, "image": "img"
    }))
    .unwrap();
    Command::Plan(Plan {
        base_version: 0,
        put_secrets: Default::default(),
        put_jobs: vec![Job::new(spec, 1, 0)],
        remove_allocs: vec![],
        add_allocs: vec![Allocation {
            id: "web-0-a".into(),
            job: "web".into(),
            index: 0,
            job_version: 1,
            node: 1,
            resources: Default::default(),
            ports: vec![],
            restart_epoch: 0,
        }],
    })
}

async fn open(path: &Path) -> (LogStore, StateMachineStore, Arc<StateHandle>) {
    let db = open_db(path).unwrap();
    let log = LogStore::new(db.clone()).unwrap();
    let handle = StateHandle::new(ClusterState::default());
    let sm = StateMachineStore::new(db, handle.clone()).await.unwrap();
    (log, sm, handle)
}

#[tokio::test]
async fn restart_restores_log_vote_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    let entries = vec![
        entry(1, 1, EntryPayload::Membership(membership())),
        entry(1, 2, EntryPayload::Normal(plan())),
    ];
    let vote = Vote::new_committed(1, 1);

    let (state, snapshot_meta) = {
        let (mut log, mut sm, handle) = open(&path).await;
        log.save_vote(&vote).await.unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(1, 2))).await.unwrap();
        let results = sm.apply(entries.clone()).await.unwrap();
        assert_eq!(
            results,
            vec![
                CommandResult::Applied { version: 0 },
                CommandResult::Applied { version: 1 },
            ]
        );
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        (handle.snapshot().await, snapshot.meta)
    };
    assert_eq!(state.version, 1);
    assert!(state.allocs.contains_key("web-0-a"));

    let (mut log, mut sm, handle) = open(&path).await;
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 2)));
    let log_state = log.get_log_state().await.unwrap();
    assert_eq!(log_state.last_log_id, Some(log_id(1, 2)));
    assert_eq!(log_state.last_purged_log_id, None);
    assert_eq!(log.try_get_log_entries(..).await.unwrap(), entries);

    let (last_applied, last_membership) = sm.applied_state().await.unwrap();
    assert_eq!(last_applied, Some(log_id(1, 2)));
    assert_eq!(
        last_membership,
        StoredMembership::new(Some(log_id(1, 1)), membership())
    );
    assert_eq!(handle.snapshot().await, state);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot_meta);

    // Snapshot ids stay unique across restarts.
    let next = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_ne!(next.meta.snapshot_id, snapshot_meta.snapshot_id);
}

/// Applying writes nothing: a restarted node starts from its last
/// snapshot and openraft replays the committed entries after it (a write
/// costs its log entry, not a copy of the state).
#[tokio::test]
async fn the_last_snapshot_is_the_restart_point_and_the_log_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    let first = vec![
        entry(1, 1, EntryPayload::Membership(membership())),
        entry(1, 2, EntryPayload::Normal(plan())),
    ];
    let restart = Command::Restart {
        allocs: vec!["web-0-a".into()],
    };
    let later = vec![entry(1, 3, EntryPayload::Normal(restart))];
    let at_snapshot = {
        let (mut log, mut sm, handle) = open(&path).await;
        log.blocking_append(first.clone()).await.unwrap();
        sm.apply(first.clone()).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let at_snapshot = handle.snapshot().await;
        log.blocking_append(later.clone()).await.unwrap();
        log.save_committed(Some(log_id(1, 3))).await.unwrap();
        sm.apply(later.clone()).await.unwrap();
        assert_eq!(handle.snapshot().await.version, 2);
        at_snapshot
    };
    let (mut log, mut sm, handle) = open(&path).await;
    let (last_applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        last_applied,
        Some(log_id(1, 2)),
        "restarts from the snapshot"
    );
    assert_eq!(handle.snapshot().await, at_snapshot);
    // What openraft replays at start: the committed entries after it.
    let rest = log.try_get_log_entries(3..4).await.unwrap();
    assert_eq!(rest, later);
    sm.apply(rest).await.unwrap();
    let state = handle.snapshot().await;
    assert_eq!(state.version, 2);
    assert_eq!(
        state.allocs.get("web-0-a").map(|a| a.restart_epoch),
        Some(1)
    );
}

#[tokio::test]
async fn purge_and_truncate_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    {
        let (mut log, _sm, _handle) = open(&path).await;
        let entries = (1..=5).map(|i| entry(1, i, EntryPayload::Blank));
        log.blocking_append(entries).await.unwrap();
        log.purge(log_id(1, 2)).await.unwrap();
        log.truncate(log_id(1, 5)).await.unwrap();
    }
    let (mut log, _sm, _handle) = open(&path).await;
    let log_state = log.get_log_state().await.unwrap();
    assert_eq!(log_state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(log_state.last_log_id, Some(log_id(1, 4)));
    let indexes: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, vec![3, 4]);
    // Empty and inverted ranges are empty, not a panic.
    assert!(log.try_get_log_entries(4..4).await.unwrap().is_empty());
    assert!(log
        .try_get_log_entries((
            std::ops::Bound::Excluded(u64::MAX),
            std::ops::Bound::Unbounded
        ))
        .await
        .unwrap()
        .is_empty());
}

/// Writes raw `bytes` under `key` of `table`, bypassing the stores.
fn poke<K: redb::Key + 'static>(
    path: &Path,
    table: TableDefinition<'static, K, &'static [u8]>,
    key: K::SelfType<'_>,
    bytes: &[u8],
) {
    // Creates the tables, then lets go of the file before writing raw.
    drop(open_db(path).unwrap());
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(table).unwrap().insert(key, bytes).unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn corrupt_bytes_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    let garbage: &[u8] = &[0xff, 0xfe, 0x00, 0x13, 0x37];

    poke(&path, RAFT_LOG, 1, garbage);
    poke(&path, RAFT_META, "vote", garbage);
    {
        let (mut log, _sm, _handle) = open(&path).await;
        assert!(log.try_get_log_entries(0..10).await.is_err());
        assert!(log.get_log_state().await.is_err());
        assert!(log.read_vote().await.is_err());
    }

    // A well-formed entry stored under the wrong index is caught too.
    let misplaced = skein_protocol::codec::encode(&entry(1, 7, EntryPayload::Blank)).unwrap();
    poke(&path, RAFT_LOG, 1, &misplaced);
    {
        let (mut log, _sm, _handle) = open(&path).await;
        assert!(log.try_get_log_entries(0..10).await.is_err());
    }

    poke(&path, STATE_MACHINE, "applied", garbage);
    let db = open_db(&path).unwrap();
    let restored = StateMachineStore::new(db, StateHandle::new(ClusterState::default())).await;
    assert!(restored.is_err());
}

#[tokio::test]
async fn corrupt_snapshot_is_rejected_on_install() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, handle) = open(&dir.path().join("raft.redb")).await;
    let mut built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    built.snapshot.get_mut().truncate(1);
    assert!(sm
        .install_snapshot(&built.meta, built.snapshot)
        .await
        .is_err());
    assert_eq!(handle.snapshot().await, ClusterState::default());
}
