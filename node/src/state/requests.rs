//! Request ids: what makes a write safe to send twice.
//!
//! The node a write enters gives it one [`RequestId`] and keeps it across
//! every retry, to any leader (`crate::api::forward`). The leader wraps
//! the command(s) the call proposes in [`super::Command::Request`], and the
//! state machine remembers the result of the last [`KEPT_REQUESTS`]
//! applied ones ([`AppliedRequests`]): a repeat returns the first result
//! and changes nothing, however many times and through whichever leader it
//! arrives.

use imbl::{OrdMap, Vector};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CommandResult;

/// How many applied requests the state remembers. A retry comes within
/// seconds (forwarding gives up after 8 s), while thousands of writes in
/// that time would be far beyond what the leader commits.
pub const KEPT_REQUESTS: usize = 4096;

/// Longest `Idempotency-Key` a client may send.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// One API call's identity: 128 bits, random or derived from the client's
/// `Idempotency-Key`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The id of a client's `Idempotency-Key` (1 to
    /// [`MAX_IDEMPOTENCY_KEY`] characters of `A-Za-z0-9-_.:`): the first
    /// 128 bits of its SHA-256, so every node derives the same id and the
    /// key itself (which may be meaningful to the client) is not stored.
    pub fn from_key(key: &str) -> Result<Self, String> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            ));
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err("Idempotency-Key may hold only A-Z, a-z, 0-9 and - _ . :".into());
        }
        let digest = Sha256::new()
            .chain_update(b"skein idempotency key\0")
            .chain_update(key.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(Self(id))
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// One write of one call: a call may propose several commands (each gets
/// the next `seq`), and a retried call proposes them again in the same
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestKey {
    /// The call.
    pub id: RequestId,
    /// Which of its writes.
    pub seq: u32,
}

/// The results of the last [`KEPT_REQUESTS`] applied requests, evicted
/// oldest first (deterministic: every replica keeps the same ones).
/// Persistent collections, encoded as the map and sequence they replace:
/// a copy of the state shares them instead of copying 4096 entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRequests {
    results: OrdMap<RequestKey, CommandResult>,
    order: Vector<RequestKey>,
}

impl AppliedRequests {
    /// The result the first application of `key` had.
    pub fn get(&self, key: &RequestKey) -> Option<&CommandResult> {
        self.results.get(key)
    }

    /// Remembers `result` for `key`, forgetting the oldest beyond the bound.
    pub fn insert(&mut self, key: RequestKey, result: CommandResult) {
        if self.results.insert(key, result).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > KEPT_REQUESTS {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_checked_and_stable() {
        let a = RequestId::from_key("deploy-42:web").unwrap();
        assert_eq!(a, RequestId::from_key("deploy-42:web").unwrap());
        assert_ne!(a, RequestId::from_key("deploy-43:web").unwrap());
        for bad in ["", "has space", "é", &"x".repeat(MAX_IDEMPOTENCY_KEY + 1)] {
            assert!(RequestId::from_key(bad).is_err(), "{bad:?}");
        }
        assert_ne!(RequestId::random(), RequestId::random());
    }
}
