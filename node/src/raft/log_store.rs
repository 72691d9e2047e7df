//! The durable Raft log: entries, vote and log pointers in one redb file.
//!
//! The same database also holds the state machine
//! ([`super::state_machine`]), so a node's whole Raft state is one file
//! (`<data_dir>/raft.redb`). Every write openraft relies on being durable
//! commits with [`Durability::Immediate`] before it is acknowledged, and
//! every redb transaction runs on the blocking pool because redb is
//! synchronous, through [`Storage::run`], which rides out I/O failures (a
//! full disk) instead of handing them to openraft. Stored values go
//! through [`skein_protocol::codec`]; bytes that do not decode are reported
//! as storage errors, never panics.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds, RangeInclusive};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use skein_protocol::codec::{self, CodecError};

use super::state_machine::STATE_MACHINE;
use super::storage::Storage;
use super::TypeConfig;
use crate::state::NodeId;

/// Raft log entries by index; values are encoded [`Entry<TypeConfig>`].
pub(crate) const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote and log pointers (`vote`, `committed`, `last_purged`), encoded.
pub(crate) const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// Result of a storage operation, in openraft's error type.
pub(crate) type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// Anything that can go wrong inside one redb transaction; mapped to an
/// openraft [`StorageError`] (with the right subject) at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// redb failed (I/O, corruption detected by redb, closed database, …).
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A stored value did not encode or decode.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// Values decode but contradict each other.
    #[error("corrupt raft storage: {0}")]
    Corrupt(String),
    /// The node is shutting down: storage operations stop.
    #[error("raft storage closed")]
    Closed,
}

impl DbError {
    /// Whether retrying (after reopening the database) may succeed: I/O
    /// errors (a full disk), redb's latch after one, and the moments a
    /// reopen waits for the failed instance to be released.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            DbError::Redb(
                redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::DatabaseClosed
                    | redb::Error::DatabaseAlreadyOpen
            )
        )
    }
}

macro_rules! redb_error_into_db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(e.into())
            }
        }
    )*};
}

redb_error_into_db_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Opens (creating if needed) the redb database holding the raft log, vote
/// and state machine, and makes sure all their tables exist.
///
/// Blocking: call it at startup, before handing the storage to
/// [`LogStore::new`] and [`super::state_machine::StateMachineStore::new`].
pub fn open_db(path: &Path) -> anyhow::Result<Arc<Storage>> {
    let open = || -> Result<Database, DbError> {
        // Verify page checksums on every open: a file damaged outside redb
        // then fails to open instead of panicking later.
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)?;
        write_durably(&db, |txn| {
            txn.open_table(RAFT_LOG)?;
            txn.open_table(RAFT_META)?;
            txn.open_table(STATE_MACHINE)?;
            Ok(())
        })?;
        Ok(db)
    };
    let db = open().with_context(|| format!("opening raft database {}", path.display()))?;
    match crate::migrate::upgrade(&db, path)
        .with_context(|| format!("opening raft database {}", path.display()))?
    {
        crate::migrate::Opened::New | crate::migrate::Opened::Current => {}
        crate::migrate::Opened::FromV0_1 { entries } => tracing::info!(
            path = %path.display(),
            entries,
            "migrated the raft database from Skein 0.1.0 (copy of the original kept as raft.redb.0.1.0)"
        ),
        crate::migrate::Opened::Newer { schema, written_by } => tracing::warn!(
            path = %path.display(),
            %schema,
            %written_by,
            "the raft database was written by a newer Skein: values using what this version does not know will be refused"
        ),
    }
    Ok(Storage::new(path, db))
}

/// Runs `f` against the database on the blocking pool (again after I/O
/// failures, see [`Storage::run`]), mapping a failure that retrying cannot
/// fix with `on_err` so the error names what was being read or written.
pub(crate) async fn blocking<T, F, E>(db: &Arc<Storage>, on_err: E, f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: Fn(&Database) -> Result<T, DbError> + Send + 'static,
    E: FnOnce(AnyError) -> StorageIOError<NodeId>,
{
    let db = Arc::clone(db);
    match tokio::task::spawn_blocking(move || db.run(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(on_err(AnyError::new(&e)).into()),
        Err(e) => Err(on_err(AnyError::new(&e)).into()),
    }
}

/// Runs `f` in one write transaction and commits it with immediate
/// durability: when this returns `Ok`, the writes are on disk. On error the
/// transaction is dropped, i.e. aborted.
pub(crate) fn write_durably<T>(
    db: &Database,
    f: impl FnOnce(&WriteTransaction) -> Result<T, DbError>,
) -> Result<T, DbError> {
    write_with(db, Durability::Immediate, f)
}

/// Runs `f` in one write transaction committed with `durability`.
fn write_with<T>(
    db: &Database,
    durability: Durability,
    f: impl FnOnce(&WriteTransaction) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)?;
    let value = f(&txn)?;
    txn.commit()?;
    Ok(value)
}

/// Decodes the value under `key`, if any (bounded by the stored-value
/// limit, well above anything the write side lets in).
pub(crate) fn read_value<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, DbError> {
    match table.get(key)? {
        Some(bytes) => Ok(Some(codec::decode_stored(bytes.value())?)),
        None => Ok(None),
    }
}

/// Encodes `value` and stores it under `key` of `table` in `txn`.
pub(crate) fn write_value<T: serde::Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), DbError> {
    let bytes = codec::encode(value)?;
    txn.open_table(table)?.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Decodes the log entry stored at `index`, checking that it belongs there.
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, DbError> {
    let entry: Entry<TypeConfig> = codec::decode_stored(bytes)?;
    if entry.log_id.index != index {
        return Err(DbError::Corrupt(format!(
            "raft_log key {index} holds entry {}",
            entry.log_id
        )));
    }
    Ok(entry)
}

/// The log indexes `range` covers, or `None` when it is empty (redb, like
/// `BTreeMap`, must not be given an inverted range).
fn index_span(range: &impl RangeBounds<u64>) -> Option<RangeInclusive<u64>> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e,
        Bound::Excluded(&e) => e.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (start <= end).then_some(start..=end)
}

/// The Raft log and vote, durable in the shared redb database.
///
/// Cheap to clone: clones share the database, and redb serializes their
/// write transactions. Each write is awaited to its durable commit before
/// the method returns, which keeps openraft's write order.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Storage>,
}

impl LogStore {
    /// A log store on `db`, which must come from [`open_db`] (checked, so a
    /// wrong database fails here rather than on the first Raft write).
    pub fn new(db: Arc<Storage>) -> anyhow::Result<Self> {
        let check = |db: &Database| -> Result<(), DbError> {
            let txn = db.begin_read()?;
            txn.open_table(RAFT_LOG)?;
            txn.open_table(RAFT_META)?;
            Ok(())
        };
        db.run(check)
            .context("raft database lacks the log tables")?;
        Ok(Self { db })
    }

    /// Stores `value` under `key` of `raft_meta`, durably.
    async fn write_meta<T, E>(&self, key: &'static str, value: T, on_err: E) -> StoreResult<()>
    where
        T: serde::Serialize + Send + 'static,
        E: FnOnce(AnyError) -> StorageIOError<NodeId>,
    {
        blocking(&self.db, on_err, move |db| {
            write_durably(db, |txn| write_value(txn, RAFT_META, key, &value))
        })
        .await
    }

    /// Reads the value under `key` of `raft_meta`.
    async fn read_meta<T, E>(&self, key: &'static str, on_err: E) -> StoreResult<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
        E: FnOnce(AnyError) -> StorageIOError<NodeId>,
    {
        blocking(&self.db, on_err, move |db| {
            let txn = db.begin_read()?;
            read_value(&txn.open_table(RAFT_META)?, key)
        })
        .await
    }

    /// Removes the entries with an index in `range`, durably, after writing
    /// `last_purged` (if given) in the same transaction.
    async fn remove_entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
        last_purged: Option<LogId<NodeId>>,
    ) -> StoreResult<()> {
        blocking(&self.db, StorageIOError::write_logs, move |db| {
            write_durably(db, |txn| {
                if let Some(log_id) = last_purged {
                    write_value(txn, RAFT_META, LAST_PURGED, &log_id)?;
                }
                txn.open_table(RAFT_LOG)?.retain_in(range, |_, _| false)?;
                Ok(())
            })
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let Some(span) = index_span(&range) else {
            return Ok(Vec::new());
        };
        blocking(&self.db, StorageIOError::read_logs, move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(RAFT_LOG)?;
            let mut entries = Vec::new();
            for row in table.range(span.clone())? {
                let (index, bytes) = row?;
                entries.push(decode_entry(index.value(), bytes.value())?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        blocking(&self.db, StorageIOError::read_logs, |db| {
            let txn = db.begin_read()?;
            let last_purged: Option<LogId<NodeId>> =
                read_value(&txn.open_table(RAFT_META)?, LAST_PURGED)?;
            let last = match txn.open_table(RAFT_LOG)?.last()? {
                Some((index, bytes)) => Some(decode_entry(index.value(), bytes.value())?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last.or(last_purged),
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.write_meta(VOTE, *vote, StorageIOError::write_vote)
            .await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.read_meta(VOTE, StorageIOError::read_vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        // Not fsynced on its own: the next durable commit (the next append)
        // carries it. A crash may lose the newest value, which only means
        // openraft re-applies fewer entries at start and the rest once the
        // leader's commit index arrives; it never claims too much.
        blocking(&self.db, StorageIOError::write, move |db| {
            write_with(db, Durability::None, |txn| {
                write_value(txn, RAFT_META, COMMITTED, &committed)
            })
        })
        .await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        // Stored as `Option` so that saving `None` is remembered too.
        let committed: Option<Option<LogId<NodeId>>> =
            self.read_meta(COMMITTED, StorageIOError::read).await?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let result = blocking(&self.db, StorageIOError::write_logs, move |db| {
            write_durably(db, |txn| {
                let mut table = txn.open_table(RAFT_LOG)?;
                for entry in &entries {
                    let bytes = codec::encode(entry)?;
                    table.insert(entry.log_id.index, bytes.as_slice())?;
                }
                Ok(())
            })
        })
        .await;
        // The commit above was durable: only now may openraft count the
        // entries as persisted.
        callback.log_io_completed(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::other(e.to_string())),
        });
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        tracing::debug!(%log_id, "truncating raft log");
        self.remove_entries((Bound::Included(log_id.index), Bound::Unbounded), None)
            .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        tracing::debug!(%log_id, "purging raft log");
        self.remove_entries(
            (Bound::Unbounded, Bound::Included(log_id.index)),
            Some(log_id),
        )
        .await
    }
}
