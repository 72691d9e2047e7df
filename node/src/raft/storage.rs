//! The redb database under the Raft log and state machine, kept usable
//! through storage failures.
//!
//! openraft 0.9 treats any error from its storage as fatal: `RaftCore`
//! stops for good, while the node's HTTP API and gossip keep running (the
//! last metrics still say "leader"). redb, for its part, latches an I/O
//! error: after one failed write (a full disk) every later operation fails
//! with `PreviousIo` until the database is closed and opened again. So a
//! full disk used to leave a node half-alive until someone restarted it.
//!
//! [`Storage`] turns I/O failures into a *degraded* state instead: the
//! operation is retried (after reopening the database, with backoff)
//! until it succeeds, and openraft only ever sees it succeed or fail for
//! a reason retrying cannot fix (corrupt bytes). Every redb write commits
//! idempotent changes (entries at their index, the vote, the applied
//! record), so a retry after a commit whose outcome is unknown is safe.
//! While degraded the node refuses writes before proposing them, hands
//! leadership over, and says so ([`StorageHealth`], the API's `storage`
//! fields, a metric, events); the first operation that succeeds again
//! makes it healthy. Nothing needs a restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redb::Database;
use tokio::sync::watch;

use super::log_store::DbError;

/// First pause before retrying a failed storage operation.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest pause between retries.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Whether the Raft storage works, as this node judges it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageHealth {
    /// True from a failed operation until one succeeds again.
    pub degraded: bool,
    /// The last error, while degraded.
    pub error: Option<String>,
    /// When it became degraded (Unix ms).
    pub since_ms: Option<u64>,
    /// Failed operations since start.
    pub errors: u64,
}

impl StorageHealth {
    /// The API's view of it.
    pub fn view(&self) -> skein_protocol::api::StorageView {
        skein_protocol::api::StorageView {
            degraded: self.degraded,
            error: self.error.clone(),
            since_ms: self.since_ms,
        }
    }
}

/// The database, reopened after I/O failures, with its health.
pub struct Storage {
    path: PathBuf,
    /// `None` between closing a failed database and opening it again.
    db: RwLock<Option<Arc<Database>>>,
    /// Bumped on every reopen, so concurrent failures reopen only once.
    generation: AtomicU64,
    reopening: Mutex<()>,
    /// Set on shutdown: retries stop and operations fail.
    closed: AtomicBool,
    /// Operations retrying now: the storage is healthy again only when
    /// none is (a read that works after a reopen says nothing about the
    /// write still failing on a full disk).
    failing: AtomicUsize,
    health: watch::Sender<StorageHealth>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.path)
            .field("health", &*self.health.borrow())
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Wraps `db`, opened from `path` (reopens use the same path).
    pub(crate) fn new(path: &Path, db: Database) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            generation: AtomicU64::new(0),
            reopening: Mutex::new(()),
            closed: AtomicBool::new(false),
            failing: AtomicUsize::new(0),
            health: watch::channel(StorageHealth::default()).0,
        })
    }

    /// The current health.
    pub fn health(&self) -> StorageHealth {
        self.health.borrow().clone()
    }

    /// Changes whenever the health does.
    pub fn subscribe(&self) -> watch::Receiver<StorageHealth> {
        self.health.subscribe()
    }

    /// Stops retrying: pending and later operations fail. Called on
    /// shutdown, so that no blocking thread retries forever.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Runs `f` on the database; on an I/O error marks the storage
    /// degraded, reopens the database and runs `f` again, until it
    /// succeeds, fails for another reason, or the storage is closed.
    /// Blocking: call it on the blocking pool.
    pub(crate) fn run<T>(&self, f: impl Fn(&Database) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut pause = RETRY_MIN;
        let mut failed = false;
        let result = loop {
            if self.closed.load(Ordering::Acquire) {
                break Err(DbError::Closed);
            }
            let generation = self.generation.load(Ordering::Acquire);
            match self.current().and_then(|db| f(&db)) {
                Err(e) if e.is_retryable() => {
                    if !failed {
                        failed = true;
                        self.failing.fetch_add(1, Ordering::AcqRel);
                    }
                    self.mark_degraded(&e);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                    self.reopen(generation);
                }
                other => break other,
            }
        };
        let still_failing = if failed {
            self.failing.fetch_sub(1, Ordering::AcqRel) - 1
        } else {
            self.failing.load(Ordering::Acquire)
        };
        if result.is_ok() && still_failing == 0 {
            self.mark_healthy();
        }
        result
    }

    /// The open database, opening it if a failure closed it.
    fn current(&self) -> Result<Arc<Database>, DbError> {
        if let Some(db) = self.db.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        let _one = self.reopening.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        // Fails with `DatabaseAlreadyOpen` while an operation still holds
        // the failed instance: retried.
        let db = Arc::new(
            Database::builder()
                .set_check_integrity_on_open(true)
                .create(&self.path)?,
        );
        *slot = Some(db.clone());
        tracing::debug!(path = %self.path.display(), "raft database reopened");
        Ok(db)
    }

    /// Closes the database after a failure seen at `generation`, unless
    /// another thread did so already; the next operation opens it again.
    fn reopen(&self, generation: u64) {
        let _one = self.reopening.lock().unwrap_or_else(|p| p.into_inner());
        if self
            .generation
            .compare_exchange(
                generation,
                generation + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            // Dropping the last handle closes the file and its lock.
            self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    fn mark_degraded(&self, e: &DbError) {
        let msg = e.to_string();
        self.health.send_modify(|h| {
            if !h.degraded {
                tracing::error!(error = %msg, path = %self.path.display(), "raft storage failed: degraded, retrying until it works again");
                h.since_ms = Some(crate::clock::now_ms());
            }
            h.degraded = true;
            h.error = Some(msg);
            h.errors += 1;
        });
    }

    fn mark_healthy(&self) {
        if !self.health.borrow().degraded {
            return;
        }
        self.health.send_modify(|h| {
            if h.degraded {
                tracing::info!(path = %self.path.display(), "raft storage works again");
            }
            h.degraded = false;
            h.error = None;
            h.since_ms = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_degrade_and_the_first_success_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let storage = Storage::new(&path, Database::create(&path).unwrap());
        let rx = storage.subscribe();
        let attempts = AtomicU64::new(0);
        let v = storage
            .run(|_db| {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    let e = std::io::Error::from_raw_os_error(28);
                    return Err(DbError::Redb(redb::Error::Io(e)));
                }
                Ok(7)
            })
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "retried until it worked"
        );
        assert!(rx.has_changed().unwrap());
        let h = storage.health();
        assert!(!h.degraded, "{h:?}");
        assert_eq!(h.errors, 2);
        // The database was reopened and works.
        storage
            .run(|db| {
                let txn = db.begin_write()?;
                txn.commit()?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn other_errors_are_returned_and_closing_stops_retries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let storage = Storage::new(&path, Database::create(&path).unwrap());
        let corrupt =
            storage.run(|_db| -> Result<(), DbError> { Err(DbError::Corrupt("bad".into())) });
        assert!(matches!(corrupt, Err(DbError::Corrupt(_))));
        assert!(!storage.health().degraded);
        storage.close();
        let r = storage.run(|_db| Ok(()));
        assert!(matches!(r, Err(DbError::Closed)));
    }
}
