//! The one binary codec of Skein (bincode 2, serde mode).
//!
//! Everything that crosses the mesh or lands in redb goes through these two
//! functions, so swapping the codec touches one file. Decoding is bounded:
//! a peer cannot make a node allocate more than [`MAX_MESSAGE_BYTES`].

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest message the codec will decode.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
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
    }
}
