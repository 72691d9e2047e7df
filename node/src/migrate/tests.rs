//! Opening the committed 0.1.0 data dir (tests/fixtures/data-0.1.0).

use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};

use super::Opened;
use crate::raft::log_store::{open_db, LogStore};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::StateHandle;
use crate::state::{ClusterState, Command};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data-0.1.0")
}

fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(fixture()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    dir
}

fn check_jobs(state: &ClusterState) {
    let web = &state.jobs["fixture-web"];
    assert_eq!(web.version, 1);
    assert_eq!(web.spec.replicas, 2);
    assert_eq!(web.spec.image, "skein-demo/web:latest");
    let hello = &state.jobs["fixture-hello"];
    assert_eq!(hello.version, 2);
    assert_eq!(
        hello.spec.env.get("GREETING").map(String::as_str),
        Some("hello-v2")
    );
    assert!(hello.history.iter().any(|r| r.version == 1));
    let allocs: Vec<_> = state.allocs.values().collect();
    assert_eq!(allocs.len(), 4, "{allocs:?}");
    assert!(allocs.iter().all(|a| a.ports.len() == 1));
}

#[tokio::test]
async fn the_0_1_0_data_dir_opens_with_its_jobs() {
    let dir = copy_fixture();
    let db_path = dir.path().join("raft.redb");
    let storage = open_db(&db_path).unwrap();
    assert!(dir.path().join("raft.redb.0.1.0").exists(), "original kept");

    let handle = StateHandle::new(ClusterState::default());
    StateMachineStore::new(storage.clone(), handle.clone())
        .await
        .unwrap();
    let state = handle.snapshot().await;
    check_jobs(&state);
    let cred = &state.registries["registry.fixture.test:5000"];
    assert_eq!(cred.username, "fixture");
    assert!(!cred.sealed_password.is_empty());

    // Every log entry reads, and the commands in them are the 0.1.0 ones.
    let mut log = LogStore::new(storage.clone()).unwrap();
    let st = log.get_log_state().await.unwrap();
    let last = st.last_log_id.unwrap().index;
    let entries = log.try_get_log_entries(0..=last).await.unwrap();
    assert!(!entries.is_empty());
    let plans = entries
        .iter()
        .filter(|e| matches!(&e.payload, EntryPayload::Normal(Command::Plan(_))))
        .count();
    assert!(plans >= 3, "{plans} plans in {} entries", entries.len());
    assert!(log.read_vote().await.unwrap().is_some());
    drop(log);
    drop(storage);

    // Opening again finds the current schema: nothing more to migrate.
    let db = redb::Database::open(&db_path).unwrap();
    assert_eq!(super::upgrade(&db, &db_path).unwrap(), Opened::Current);

    // The saved assignments of 0.1.0 read too.
    let bytes = std::fs::read(dir.path().join("assignments.bin")).unwrap();
    let assigned = super::read_cluster_state(&bytes).unwrap();
    assert_eq!(assigned.allocs.len(), 4);
}

#[test]
fn a_newer_major_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.redb");
    drop(open_db(&path).unwrap());
    let db = redb::Database::open(&path).unwrap();
    crate::raft::log_store::write_durably(&db, |txn| {
        let mut t = txn.open_table(super::FORMAT)?;
        t.insert("schema", [9u8, 0].as_slice())?;
        t.insert("written_by", b"9.0.0".as_slice())?;
        Ok(())
    })
    .unwrap();
    let e = super::upgrade(&db, &path).unwrap_err().to_string();
    assert!(e.contains("Skein 9.0.0") && e.contains("schema 9.0"), "{e}");
}
