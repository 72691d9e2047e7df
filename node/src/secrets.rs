//! Sealing of registry passwords with a key derived from the cluster key.
//!
//! Every node holds the cluster key, so every node can open what the leader
//! sealed and pull with it, while the Raft log, snapshots, saved
//! assignments and every API read only ever hold ciphertext. The key is
//! derived with HKDF-SHA256 under its own label, so it is never the mesh's
//! pre-shared key itself; XChaCha20-Poly1305 with a random 24-byte nonce
//! per seal, so no nonce bookkeeping is needed across leaders.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use libp2p::pnet::PreSharedKey;
use sha2::Sha256;

/// First byte of every sealed value: the sealing scheme, so that a later
/// scheme can be told apart and the old one still opened.
const SCHEME_V1: u8 = 1;
/// HKDF label: keys derived for other purposes must never collide with it.
const LABEL: &[u8] = b"skein/registry-credentials/v1";
const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the cluster's credential key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

/// Never prints key material.
impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// Why a sealed value could not be opened. Says nothing about the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or sealed with an unknown scheme.
    #[error("the sealed credential is malformed (scheme or length)")]
    Malformed,
    /// Wrong key (another cluster) or altered bytes.
    #[error("the sealed credential does not open with this cluster's key")]
    Rejected,
}

impl SecretBox {
    /// The box for the cluster whose key is `psk`.
    pub fn from_psk(psk: &PreSharedKey) -> Self {
        // The key-file text holds the 32 key bytes (hex) and a fixed header,
        // the same on every node; HKDF extracts a uniform key from it.
        Self::from_secret(psk.to_key_file().as_bytes())
    }

    /// The box for any shared secret `ikm` (tests, other key sources).
    pub fn from_secret(ikm: &[u8]) -> Self {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
        let _ = Hkdf::<Sha256>::new(Some(b"skein"), ikm).expand(LABEL, &mut key);
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Seals `plaintext`: scheme byte, random nonce, ciphertext with tag.
    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        // Encryption into a Vec cannot fail for inputs below 256 GiB.
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SCHEME_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed by [`SecretBox::seal`] with the same key.
    pub fn open(&self, sealed: &[u8]) -> Result<String, OpenError> {
        let (scheme, rest) = sealed.split_first().ok_or(OpenError::Malformed)?;
        if *scheme != SCHEME_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(OpenError::Malformed);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::from_slice(nonce);
        let pt = self
            .cipher
            .decrypt(nonce, ct)
            .map_err(|_| OpenError::Rejected)?;
        String::from_utf8(pt).map_err(|_| OpenError::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_tampering_or_another_key() {
        let a = SecretBox::from_secret(b"cluster one");
        let sealed = a.seal("hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(a.open(&sealed).as_deref(), Ok("hunter2"));
        // Two seals of one secret differ (random nonce).
        assert_ne!(a.seal("hunter2"), sealed);
        let b = SecretBox::from_secret(b"cluster two");
        assert_eq!(b.open(&sealed), Err(OpenError::Rejected));
        let mut bent = sealed.clone();
        if let Some(last) = bent.last_mut() {
            *last ^= 1;
        }
        assert_eq!(a.open(&bent), Err(OpenError::Rejected));
        assert_eq!(a.open(&[]), Err(OpenError::Malformed));
        assert_eq!(a.open(&[2, 0, 0]), Err(OpenError::Malformed));
    }

    #[test]
    fn the_key_comes_from_the_cluster_key() {
        let psk = PreSharedKey::new([7; 32]);
        let same = PreSharedKey::new([7; 32]);
        let sealed = SecretBox::from_psk(&psk).seal("pw");
        assert_eq!(
            SecretBox::from_psk(&same).open(&sealed).as_deref(),
            Ok("pw")
        );
        let other = PreSharedKey::new([8; 32]);
        assert!(SecretBox::from_psk(&other).open(&sealed).is_err());
    }
}
