//! The one binary codec of Skein: a versioned envelope around MessagePack
//! with named fields.
//!
//! Everything that crosses a process or outlives one (mesh requests and
//! gossip, Raft log entries, snapshots, the applied state, saved
//! assignments) goes through [`encode`] and [`decode`]. Each value is
//!
//! ```text
//! "SK"  major:u8  minor:u8  MessagePack (structs as maps of field names,
//!                           enum variants by name)
//! ```
//!
//! **Why named fields:** types evolve append-only. A field added with
//! `#[serde(default)]` is filled in when an older writer left it out, and
//! an older reader skips fields it does not know; positional formats
//! (bincode, which 0.1.0 used) can do neither. **Why the header:** a value
//! from an incompatible future (a newer [`MAJOR`]) is refused with a
//! message that says so instead of a confusing decode error, and a value
//! using something new (a newer [`MINOR`], e.g. a new enum variant) that
//! does not decode says which version wrote it. New variants are only
//! written once every node reads them (the cluster's schema, kept in Raft).
//!
//! Decoding is bounded: the input is a slice already bounded by
//! [`MAX_MESSAGE_BYTES`] (wire) or [`MAX_STORED_BYTES`] (a node's own
//! storage); MessagePack lengths are checked against the bytes actually
//! present, so a peer cannot make a node allocate more than it sent, and
//! nesting is limited to [`MAX_DEPTH`] (no stack overflow on hostile
//! input).
//!
//! [`decode_v0_1`] reads the positional bincode of Skein 0.1.0; only the
//! data-dir migration uses it.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest message the codec will decode.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Largest value read back from a node's own storage (log entries, the
/// applied state, snapshots, saved assignments). The state limit of the
/// write side is below it (54 MiB, `skein_node::state::STATE_LIMIT_BYTES`): a
/// limit on loading that a write can exceed makes a node that
/// acknowledged the write unable to restart.
pub const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;

/// Envelope magic.
const MAGIC: [u8; 2] = *b"SK";
/// Header length: magic, major, minor.
pub const HEADER_LEN: usize = 4;

/// Incompatible revisions of the encoding. A reader refuses a larger one.
pub const MAJOR: u8 = 1;
/// Compatible revisions within [`MAJOR`]: each adds fields (with defaults)
/// or enum variants. Bump it with every such change of a wire or disk
/// type, and gate writing a new variant on the cluster's schema (or, for
/// a request to one peer, on the schema that peer gossips).
///
/// - 1.0 (Skein 0.2.0): the first versioned schema.
/// - 1.1: `PeerRequest::TakeLeadership` (a stopping leader hands over).
/// - 1.2 (Skein 0.4.0): `Command::Batch` (group commit); the state
///   machine's size limit counts the state's weight, kept
///   up to date per entry, instead of encoding the whole state per write
///   (replicated logic: every voter must count the same way).
pub const MINOR: u8 = 2;

/// Deepest nesting a decoded value may have (Skein's types nest about 12
/// deep; the decoder recurses once per level).
pub const MAX_DEPTH: usize = 64;

/// A schema version: what a node reads and writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct Schema {
    /// Incompatible revision.
    pub major: u8,
    /// Compatible revision.
    pub minor: u8,
}

impl Schema {
    /// The schema this build reads and writes.
    pub const CURRENT: Schema = Schema {
        major: MAJOR,
        minor: MINOR,
    };
    /// The first versioned schema (Skein 0.2.0).
    pub const FIRST: Schema = Schema { major: 1, minor: 0 };
}

impl Default for Schema {
    /// The first versioned schema: what a record without the field was
    /// written by.
    fn default() -> Self {
        Schema::FIRST
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Encoding failed (a type serde cannot express in MessagePack).
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// Garbage, truncated or oversized input, or a shape this build does
    /// not know.
    #[error("decode: {0}")]
    Decode(String),
    /// Not an envelope: no "SK" header (e.g. bincode of Skein 0.1.0).
    #[error("decode: not a versioned Skein encoding (no header; written by Skein 0.1.0?)")]
    Unversioned,
    /// Written by an incompatible, newer build.
    #[error(
        "decode: encoded with schema {found}, which this node (schema {}) cannot read: \
         upgrade this node",
        Schema::CURRENT
    )]
    NewerMajor {
        /// The header's schema.
        found: Schema,
    },
    /// Valid value followed by extra bytes.
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
    /// Skein 0.1.0's bincode failed to encode or decode.
    #[error("0.1.0 bincode: {0}")]
    Legacy(String),
    /// Larger than the limit for its source.
    #[error("decode: {len} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Encodes `value` in the current schema.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(MAJOR);
    out.push(MINOR);
    value.serialize(&mut serializer(&mut out))?;
    Ok(out)
}

fn serializer<W: std::io::Write>(
    w: W,
) -> rmp_serde::Serializer<W, impl rmp_serde::config::SerializerConfig> {
    // Byte vectors as MessagePack `bin` (one byte per byte, not one
    // integer each): snapshots, bodies and sealed passwords are bytes.
    rmp_serde::Serializer::new(w)
        .with_struct_map()
        .with_bytes(rmp_serde::config::BytesMode::ForceIterables)
}

/// Reads the header of an encoded value: its schema.
pub fn schema_of(bytes: &[u8]) -> Result<Schema, CodecError> {
    match bytes {
        [m0, m1, major, minor, ..] if [*m0, *m1] == MAGIC => Ok(Schema {
            major: *major,
            minor: *minor,
        }),
        _ => Err(CodecError::Unversioned),
    }
}

fn decode_limited<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit + HEADER_LEN {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let found = schema_of(bytes)?;
    if found.major > MAJOR {
        return Err(CodecError::NewerMajor { found });
    }
    if found.major < MAJOR {
        return Err(CodecError::Decode(format!(
            "schema {found} is older than this build reads (major {MAJOR})"
        )));
    }
    // A reader over the slice: lengths in the input are read with
    // `take(len)`, so they never allocate more than the bytes present, and
    // what is left unread is the trailing part.
    let body: &[u8] = &bytes[HEADER_LEN..];
    let mut de = rmp_serde::Deserializer::new(body);
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de).map_err(|e| {
        if found.minor > MINOR {
            CodecError::Decode(format!(
                "{e} (written with schema {found}, newer than this node's {}: upgrade this node)",
                Schema::CURRENT
            ))
        } else {
            CodecError::Decode(e.to_string())
        }
    })?;
    let rest = de.into_inner().len();
    if rest != 0 {
        return Err(CodecError::Trailing(rest));
    }
    Ok(value)
}

/// Decodes a whole buffer from the wire into `T`; extra bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_limited(bytes, MAX_MESSAGE_BYTES)
}

/// [`decode`] for bytes a node stored itself, bounded by
/// [`MAX_STORED_BYTES`] instead of the wire limit.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_limited(bytes, MAX_STORED_BYTES)
}

/// Size of `value` encoded, without building the bytes: size limits are
/// checked on every write, on states of several MiB.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    let mut counter = Counter(0);
    value.serialize(&mut serializer(&mut counter))?;
    Ok(counter.0 + HEADER_LEN)
}

/// A writer that only counts bytes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes the positional bincode of Skein 0.1.0 (bincode 2, standard
/// configuration), bounded like stored values. `T` must be a frozen copy
/// of the 0.1.0 type: positional encodings carry no field names.
///
/// bincode allocates a string's announced length before reading it, up to
/// its configured limit on the bytes it claims for the value (a string's
/// length, and each integer's in-memory size: at most 16 per input byte).
/// That limit is the smallest of 64 KiB, 256 KiB, 1 MiB, 4 MiB, 16 MiB
/// and [`MAX_STORED_BYTES`] at or above 16 times the input's length, so a
/// valid value always fits and a length in the input allocates at most
/// 64 times the input (or 64 KiB), never [`MAX_STORED_BYTES`] for a few
/// bytes.
pub fn decode_v0_1<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    const KIB: usize = 1024;
    match bytes.len().saturating_mul(16) {
        _ if bytes.len() > MAX_STORED_BYTES => Err(CodecError::TooLarge {
            len: bytes.len(),
            limit: MAX_STORED_BYTES,
        }),
        n if n <= 64 * KIB => decode_v0_1_within::<T, { 64 * KIB }>(bytes),
        n if n <= 256 * KIB => decode_v0_1_within::<T, { 256 * KIB }>(bytes),
        n if n <= 1024 * KIB => decode_v0_1_within::<T, { 1024 * KIB }>(bytes),
        n if n <= 4096 * KIB => decode_v0_1_within::<T, { 4096 * KIB }>(bytes),
        n if n <= 16384 * KIB => decode_v0_1_within::<T, { 16384 * KIB }>(bytes),
        _ => decode_v0_1_within::<T, MAX_STORED_BYTES>(bytes),
    }
}

fn decode_v0_1_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| CodecError::Legacy(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Encodes as Skein 0.1.0 did (tests build 0.1.0 data with it).
pub fn encode_v0_1<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError::Legacy(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let v = (7u64, "x".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&v).unwrap();
        assert_eq!(&bytes[..4], [b'S', b'K', MAJOR, MINOR]);
        let back: (u64, String, Vec<u8>) = decode(&bytes).unwrap();
        assert_eq!(back, v);
        assert!(decode::<(u64, String, Vec<u8>)>(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&extra),
            Err(CodecError::Trailing(1))
        ));
        // A bin32 length claiming 4 GiB must not allocate.
        let huge = [b'S', b'K', 1, 0, 0xc6, 0xff, 0xff, 0xff, 0xff, 1];
        assert!(decode::<Vec<u8>>(&huge).is_err());
        assert!(decode_stored::<Vec<u8>>(&huge).is_err());
        // An array32 claiming 2^32 elements, too.
        let huge = [b'S', b'K', 1, 0, 0xdd, 0xff, 0xff, 0xff, 0xff, 1];
        assert!(decode::<Vec<u64>>(&huge).is_err());
        assert!(matches!(
            decode::<u8>(&[1, 2, 3]),
            Err(CodecError::Unversioned)
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut bytes = vec![b'S', b'K', 1, 0];
        bytes.extend(std::iter::repeat_n(0x91u8, 100_000)); // fixarray of 1, nested
        bytes.push(0xc0);
        let r = decode::<serde_json::Value>(&bytes);
        assert!(r.is_err());
    }

    #[test]
    fn newer_major_is_refused_with_a_clear_message() {
        let mut bytes = encode(&5u32).unwrap();
        bytes[2] = MAJOR + 1;
        let e = decode::<u32>(&bytes).unwrap_err();
        assert!(matches!(e, CodecError::NewerMajor { .. }));
        assert!(e.to_string().contains("upgrade this node"), "{e}");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Old {
        a: u32,
        b: String,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        a: u32,
        b: String,
        #[serde(default)]
        c: Vec<u8>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum OldKind {
        One,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum NewKind {
        One,
        Two { x: u8 },
    }

    #[test]
    fn fields_evolve_append_only_both_ways() {
        let old = Old {
            a: 1,
            b: "b".into(),
        };
        let as_new: New = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!(as_new.c, Vec::<u8>::new());
        let new = New {
            a: 2,
            b: "c".into(),
            c: vec![9],
        };
        let as_old: Old = decode(&encode(&new).unwrap()).unwrap();
        assert_eq!(
            as_old,
            Old {
                a: 2,
                b: "c".into()
            }
        );
        let kind: NewKind = decode(&encode(&OldKind::One).unwrap()).unwrap();
        assert_eq!(kind, NewKind::One);
        // A variant from a newer minor names the version that wrote it.
        let mut bytes = encode(&NewKind::Two { x: 1 }).unwrap();
        bytes[3] = MINOR + 1;
        let e = decode::<OldKind>(&bytes).unwrap_err().to_string();
        assert!(e.contains("upgrade this node") && e.contains("Two"), "{e}");
    }

    #[test]
    fn encoded_len_matches_and_stored_values_may_exceed_the_wire_limit() {
        let v = (7u64, "x".repeat(1000), vec![1u8; 300]);
        assert_eq!(encoded_len(&v).unwrap(), encode(&v).unwrap().len());
        let big = vec![7u8; MAX_MESSAGE_BYTES + 1];
        let bytes = encode(&big).unwrap();
        assert!(
            bytes.len() < MAX_MESSAGE_BYTES + 16,
            "bytes are not inflated"
        );
        assert!(decode::<Vec<u8>>(&bytes).is_err(), "over the wire limit");
        assert_eq!(decode_stored::<Vec<u8>>(&bytes).unwrap(), big);
    }

    #[test]
    fn reads_0_1_0_bincode() {
        let v = (7u64, "x".to_string());
        let bytes = encode_v0_1(&v).unwrap();
        assert_eq!(decode_v0_1::<(u64, String)>(&bytes).unwrap(), v);
        assert!(decode_v0_1::<(u64, String)>(&bytes[..2]).is_err());
    }

    #[test]
    fn a_0_1_0_length_is_bounded_by_the_input_not_the_stored_limit() {
        // Found by the decoder fuzzing (`skein_node::decoders`): a map of
        // one entry whose key announces 32 MiB (varint 0xfc, u32 LE), in 6
        // bytes, made bincode allocate 32 MiB before finding the end.
        let bytes = [0x01, 0xfc, 0x00, 0x00, 0x00, 0x02];
        let e = decode_v0_1::<std::collections::BTreeMap<String, u8>>(&bytes).unwrap_err();
        assert!(e.to_string().contains("LimitExceeded"), "{e}");
        // Values at and around each tier still read, integers too (bincode
        // counts 8 bytes for each u64, even of one byte).
        let ints: Vec<u64> = vec![1; 4000];
        assert_eq!(
            decode_v0_1::<Vec<u64>>(&encode_v0_1(&ints).unwrap()).unwrap(),
            ints
        );
        for len in [0, 4093, 4096, 65_530, 70_000, (1 << 20) + 1, 17 << 20] {
            let v = (len as u64, "s".repeat(len));
            let bytes = encode_v0_1(&v).unwrap();
            assert_eq!(decode_v0_1::<(u64, String)>(&bytes).unwrap(), v, "{len}");
        }
    }
}
