//! What a data dir's encodings are, and bringing an older one up to date.
//!
//! The raft database records the schema ([`skein_protocol::codec::Schema`])
//! of what it holds in its `skein_format` table, with the Skein version
//! that last opened it. At open:
//! - no record and no data: a new data dir, stamped with this build;
//! - no record but data: written by Skein 0.1.0 (positional bincode, no
//!   versions). Every value is re-encoded in one durable transaction, after
//!   a copy of the file is kept beside it (`raft.redb.0.1.0`), and each
//!   result is decoded again with the live types before anything is
//!   committed: a migration that cannot be read back changes nothing;
//! - a record of a newer major schema: refused, naming both versions;
//! - a newer minor (a downgrade): opened; values that use what this build
//!   does not know fail to decode with a message naming the writer.
//!
//! 0.1.0 values are read with frozen copies of their types ([`v0_1`]) and
//! re-encoded from them: field names are unchanged, so fields added since
//! take their defaults when the live types read them.

pub mod v0_1;

use std::path::Path;

use openraft::{Entry, LogId, SnapshotMeta, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use skein_protocol::codec::{self, CodecError, Schema};

use crate::raft::log_store::{write_durably, DbError, RAFT_LOG, RAFT_META};
use crate::raft::state_machine::{AppliedState, STATE_MACHINE};
use crate::raft::{RaftPeer, TypeConfig};
use crate::state::{ClusterState, NodeId};

/// The data dir's format record: `schema` (two bytes, major and minor)
/// and `written_by` (the Skein version that last opened it).
pub(crate) const FORMAT: TableDefinition<&str, &[u8]> = TableDefinition::new("skein_format");
const SCHEMA: &str = "schema";
const WRITTEN_BY: &str = "written_by";

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// An empty database, now stamped.
    New,
    /// Written by this schema (or an older minor of it).
    Current,
    /// Written by a newer minor schema: a downgrade.
    Newer {
        /// The recorded schema.
        schema: Schema,
        /// The Skein version that wrote it.
        written_by: String,
    },
    /// A 0.1.0 database, migrated: how many log entries were re-encoded.
    FromV0_1 {
        /// Log entries re-encoded.
        entries: u64,
    },
}

/// Brings the database at `path` (already opened as `db`, tables created)
/// to the current schema.
pub(crate) fn upgrade(db: &Database, path: &Path) -> Result<Opened, DbError> {
    let (schema, written_by, has_data) = {
        let txn = db.begin_read()?;
        let (schema, written_by) = match txn.open_table(FORMAT) {
            Ok(t) => (
                t.get(SCHEMA)?.map(|v| v.value().to_vec()),
                t.get(WRITTEN_BY)?
                    .map(|v| String::from_utf8_lossy(v.value()).into_owned()),
            ),
            Err(redb::TableError::TableDoesNotExist(_)) => (None, None),
            Err(e) => return Err(e.into()),
        };
        let has_data = !txn.open_table(RAFT_LOG)?.is_empty()?
            || !txn.open_table(RAFT_META)?.is_empty()?
            || !txn.open_table(STATE_MACHINE)?.is_empty()?;
        (schema, written_by, has_data)
    };
    let written_by = written_by.unwrap_or_else(|| "an unknown version".into());
    match schema.as_deref() {
        Some([major, minor]) => {
            let found = Schema {
                major: *major,
                minor: *minor,
            };
            if found.major > Schema::CURRENT.major {
                return Err(DbError::Corrupt(format!(
                    "{} was written by Skein {written_by} (schema {found}); this binary, \
                     Skein {} (schema {}), cannot read it: run Skein {written_by} or newer",
                    path.display(),
                    env!("CARGO_PKG_VERSION"),
                    Schema::CURRENT
                )));
            }
            if found > Schema::CURRENT {
                return Ok(Opened::Newer {
                    schema: found,
                    written_by,
                });
            }
            stamp(db)?;
            Ok(Opened::Current)
        }
        Some(other) => Err(DbError::Corrupt(format!(
            "{}: unreadable format record ({} bytes)",
            path.display(),
            other.len()
        ))),
        None if !has_data => {
            stamp(db)?;
            Ok(Opened::New)
        }
        None => {
            let backup = path.with_extension("redb.0.1.0");
            std::fs::copy(path, &backup).map_err(|e| {
                DbError::Corrupt(format!(
                    "cannot keep a copy of the 0.1.0 database as {} before migrating it: {e}",
                    backup.display()
                ))
            })?;
            let entries = from_v0_1(db)?;
            Ok(Opened::FromV0_1 { entries })
        }
    }
}

fn stamp(db: &Database) -> Result<(), DbError> {
    write_durably(db, stamp_in)
}

/// Writes the format record in `txn`: this build as the last writer, and
/// the newest schema that wrote here.
fn stamp_in(txn: &redb::WriteTransaction) -> Result<(), DbError> {
    let mut t = txn.open_table(FORMAT)?;
    let current = [Schema::CURRENT.major, Schema::CURRENT.minor];
    let recorded = t.get(SCHEMA)?.map(|v| v.value().to_vec());
    let keep = match recorded.as_deref() {
        Some([major, minor]) if [*major, *minor] > current => [*major, *minor],
        _ => current,
    };
    t.insert(SCHEMA, keep.as_slice())?;
    t.insert(WRITTEN_BY, env!("CARGO_PKG_VERSION").as_bytes())?;
    Ok(())
}

/// Re-encodes a 0.1.0 value `Old` (frozen type) and checks that the live
/// type `New` reads the result.
pub(crate) fn convert<Old, New>(what: &str, bytes: &[u8]) -> Result<Vec<u8>, DbError>
where
    Old: DeserializeOwned + Serialize,
    New: DeserializeOwned,
{
    let context = |e: CodecError| DbError::Corrupt(format!("migrating 0.1.0 {what}: {e}"));
    let old: Old = codec::decode_v0_1(bytes).map_err(context)?;
    let new = codec::encode(&old).map_err(context)?;
    codec::decode_stored::<New>(&new).map_err(context)?;
    Ok(new)
}

/// Rewrites every value of a 0.1.0 database in one durable transaction.
fn from_v0_1(db: &Database) -> Result<u64, DbError> {
    write_durably(db, |txn| {
        let mut entries = 0u64;
        {
            let mut log = txn.open_table(RAFT_LOG)?;
            let old: Vec<(u64, Vec<u8>)> = log
                .iter()?
                .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
                .collect::<Result<_, _>>()?;
            for (index, bytes) in old {
                let new = convert::<v0_1::Entry, Entry<TypeConfig>>(
                    &format!("log entry {index}"),
                    &bytes,
                )?;
                log.insert(index, new.as_slice())?;
                entries += 1;
            }
        }
        {
            let mut meta = txn.open_table(RAFT_META)?;
            rewrite::<v0_1::Vote, Vote<NodeId>>(&mut meta, "vote")?;
            rewrite::<Option<v0_1::LogId>, Option<LogId<NodeId>>>(&mut meta, "committed")?;
            rewrite::<v0_1::LogId, LogId<NodeId>>(&mut meta, "last_purged")?;
        }
        {
            let mut sm = txn.open_table(STATE_MACHINE)?;
            rewrite::<v0_1::AppliedState, AppliedState>(&mut sm, "applied")?;
            rewrite::<(u64, v0_1::SnapshotMeta), (u64, SnapshotMeta<NodeId, RaftPeer>)>(
                &mut sm,
                "snapshot_meta",
            )?;
            rewrite::<v0_1::AppliedState, AppliedState>(&mut sm, "snapshot_data")?;
        }
        stamp_in(txn)?;
        Ok(entries)
    })
}

fn rewrite<Old, New>(table: &mut redb::Table<&str, &[u8]>, key: &str) -> Result<(), DbError>
where
    Old: DeserializeOwned + Serialize,
    New: DeserializeOwned,
{
    let old = table.get(key)?.map(|v| v.value().to_vec());
    if let Some(bytes) = old {
        let new = convert::<Old, New>(key, &bytes)?;
        table.insert(key, new.as_slice())?;
    }
    Ok(())
}

/// Reads saved assignments: the current encoding, or 0.1.0's.
pub fn read_cluster_state(bytes: &[u8]) -> Result<ClusterState, CodecError> {
    match codec::decode_stored(bytes) {
        Err(CodecError::Unversioned) => {
            let old: v0_1::ClusterState = codec::decode_v0_1(bytes)?;
            codec::decode_stored(&codec::encode(&old)?)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
