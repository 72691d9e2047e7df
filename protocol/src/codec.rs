//! The one binary codec of Skein (bincode 2, serde mode).
//!
//! Everything that crosses the mesh or lands in redb goes through these two
//! functions, so swapping the codec touches one file. Decoding is bounded:
//! a peer cannot make a node allocate more than [`MAX_MESSAGE_BYTES`].
//! What a node wrote itself (Raft log entries, the applied state,
//! snapshots) is read back with the larger [`MAX_STORED_BYTES`], well above
//! what the write side lets into the state, so that everything a node
//! acknowledged can always be loaded again at restart.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest message the codec will decode.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest value read back from a node's own storage (log entries, the
/// applied state, snapshots, saved assignments). The state quota of the
/// write side is far below it (8 MiB, `skein_node::state::limits`): a
/// limit on loading that a write can exceed makes a node that
/// acknowledged the write unable to restart.
pub const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

fn stored_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_STORED_BYTES>()
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a type serde cannot express in bincode).
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// Garbage, truncated or oversized input.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// Valid prefix followed by extra bytes.
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
}

/// Encodes `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes a whole buffer into `T`; extra bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// [`decode`] for bytes a node stored itself, bounded by
/// [`MAX_STORED_BYTES`] instead of the wire limit.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, stored_config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Size of `value` encoded, without building the bytes: size limits are
/// checked on every write, on states of several MiB.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut counter = Counter(0);
    bincode::serde::encode_into_writer(value, &mut counter, bincode::config::standard())?;
    Ok(counter.0)
}

/// A writer that only counts bytes.
struct Counter(usize);

impl bincode::enc::write::Writer for Counter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let v = (7u64, "x".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&v).unwrap();
        let back: (u64, String, Vec<u8>) = decode(&bytes).unwrap();
        assert_eq!(back, v);
        assert!(decode::<(u64, String, Vec<u8>)>(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&extra),
            Err(CodecError::Trailing(1))
        ));
        // A length prefix claiming 2^60 bytes must not allocate.
        assert!(decode::<Vec<u8>>(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10]).is_err());
        assert!(decode_stored::<Vec<u8>>(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10]).is_err());
    }

    #[test]
    fn encoded_len_matches_and_stored_values_may_exceed_the_wire_limit() {
        let v = (7u64, "x".repeat(1000), vec![1u8; 300]);
        assert_eq!(encoded_len(&v).unwrap(), encode(&v).unwrap().len());
        let big = vec![7u8; MAX_MESSAGE_BYTES + 1];
        let bytes = bincode::serde::encode_to_vec(&big, bincode::config::standard()).unwrap();
        assert!(decode::<Vec<u8>>(&bytes).is_err(), "over the wire limit");
        assert_eq!(decode_stored::<Vec<u8>>(&bytes).unwrap(), big);
    }
}
