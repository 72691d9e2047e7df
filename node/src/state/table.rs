//! [`Table`]: one kind of state entry by name (jobs, allocations, …).
//!
//! Two costs of the replicated state must not grow with its size, or
//! every write gets slower as jobs accumulate: copying it (readers and
//! planners take a snapshot of the whole state) and knowing how large it
//! is (the state machine refuses a write that would make it too large to
//! load). A table is a persistent map (`imbl::OrdMap`: a clone shares
//! every node of the tree, a change copies one path) that keeps the sum of
//! its entries' encoded sizes up to date as entries come and go.
//!
//! Encoded exactly like the `BTreeMap` it replaces (a map, keys in order),
//! so disks and peers of earlier versions read it unchanged.

use std::fmt;

use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use skein_protocol::codec;

/// What a table keeps up to date about its entries besides their size:
/// a derived index (allocations by node and by job, say), so that
/// questions a planner asks per write do not scan the table.
pub trait Entry: Clone + Serialize {
    /// The index (`()` for none). Persistent too: clones share it.
    type Index: Clone + Default;

    /// Counts `value`, stored under `key`, into `index`.
    fn added(index: &mut Self::Index, key: &str, value: &Self);

    /// Takes `value`, stored under `key`, out of `index`.
    fn removed(index: &mut Self::Index, key: &str, value: &Self);
}

/// Entries by name, with their total encoded size and their index.
///
/// Reads go through `Deref` to the map; writes through [`Table::insert`],
/// [`Table::remove`], [`Table::update`] and [`Table::retain`], which keep
/// the size and the index right: no other path changes an entry, so a
/// table built any way (decoded, collected, applied) has the same index.
#[derive(Clone)]
pub struct Table<V: Entry> {
    map: OrdMap<String, V>,
    bytes: usize,
    index: V::Index,
}

/// Encoded size of one entry: its key and its value. An entry that cannot
/// be encoded (it never happens to the types stored here) counts as a
/// large one, so that it can only make writes be refused, never let an
/// oversized state through.
pub(crate) fn entry_bytes<V: Serialize>(key: &str, value: &V) -> usize {
    let len = |r: Result<usize, codec::CodecError>| r.unwrap_or(1 << 20);
    len(codec::encoded_len(&key)) + len(codec::encoded_len(value))
}

impl<V: Entry> Table<V> {
    /// Sum of the entries' encoded sizes ([`entry_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entries' index.
    pub fn index(&self) -> &V::Index {
        &self.index
    }

    /// Inserts or replaces the entry under `key`; returns the old value.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        // The old entry leaves the index before the new one enters: an
        // index keyed by the entry's name would otherwise lose it.
        let old = self.remove(&key);
        self.bytes += entry_bytes(&key, &value);
        V::added(&mut self.index, &key, &value);
        self.map.insert(key, value);
        old
    }

    /// Removes the entry under `key`; returns it.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let old = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(entry_bytes(key, &old));
        V::removed(&mut self.index, key, &old);
        Some(old)
    }

    /// Changes the entry under `key` in place, if there is one; returns
    /// whether there was.
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut V)) -> bool {
        let Some(value) = self.map.get_mut(key) else {
            return false;
        };
        let before = entry_bytes(key, value);
        V::removed(&mut self.index, key, value);
        f(value);
        V::added(&mut self.index, key, value);
        let after = entry_bytes(key, value);
        self.bytes = self.bytes.saturating_sub(before) + after;
        true
    }

    /// The entries as a plain map (for wire types, which stay plain).
    pub fn to_map(&self) -> std::collections::BTreeMap<String, V> {
        self.map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(k, v)| !keep(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }
}

impl<V: Entry> Default for Table<V> {
    fn default() -> Self {
        Self {
            map: OrdMap::new(),
            bytes: 0,
            index: V::Index::default(),
        }
    }
}

impl<V: Entry> std::ops::Deref for Table<V> {
    type Target = OrdMap<String, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<'a, V: Entry> IntoIterator for &'a Table<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = imbl::ordmap::Iter<'a, String, V, imbl::shared_ptr::DefaultSharedPtr>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<V: Entry> FromIterator<(String, V)> for Table<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut table = Self::default();
        for (key, value) in iter {
            table.insert(key, value);
        }
        table
    }
}

impl<V: Entry + PartialEq> PartialEq for Table<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V: Entry + Eq> Eq for Table<V> {}

impl<V: Entry + fmt::Debug> fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl<V: Entry> Serialize for Table<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.map.iter())
    }
}

impl<'de, V: Entry + Deserialize<'de>> Deserialize<'de> for Table<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a BTreeMap: the decoder's bounds (lengths, depth) apply
        // as to any map, and a repeated key keeps the last value as before.
        let map = std::collections::BTreeMap::<String, V>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

/// Entries without an index.
macro_rules! unindexed {
    ($($t:ty),* $(,)?) => {$(
        impl Entry for $t {
            type Index = ();
            fn added(_: &mut (), _: &str, _: &Self) {}
            fn removed(_: &mut (), _: &str, _: &Self) {}
        }
    )*};
}
pub(crate) use unindexed;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    unindexed!(Vec<u8>);

    fn sum(t: &Table<Vec<u8>>) -> usize {
        t.iter().map(|(k, v)| entry_bytes(k, v)).sum()
    }

    #[test]
    fn the_size_follows_every_change() {
        let mut t = Table::default();
        t.insert("a".into(), vec![1u8; 10]);
        t.insert("b".into(), vec![2u8; 300]);
        assert_eq!(t.bytes(), sum(&t));
        t.insert("a".into(), vec![3u8; 70_000]);
        assert_eq!(t.bytes(), sum(&t));
        assert!(t.update("b", |v| v.truncate(1)));
        assert!(!t.update("zz", |v| v.clear()));
        assert_eq!(t.bytes(), sum(&t));
        t.retain(|k, _| k != "a");
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove("b"), Some(vec![2u8]));
        assert_eq!(t.remove("b"), None);
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn encodes_exactly_as_a_btreemap() {
        let plain: BTreeMap<String, Vec<u8>> =
            [("x".to_string(), vec![1, 2]), ("a".to_string(), vec![])].into();
        let table: Table<Vec<u8>> = plain.clone().into_iter().collect();
        let bytes = codec::encode(&plain).expect("encodes");
        assert_eq!(codec::encode(&table).expect("encodes"), bytes);
        let back: Table<Vec<u8>> = codec::decode(&bytes).expect("decodes");
        assert_eq!(back, table);
        assert_eq!(back.bytes(), sum(&table));
    }
}
