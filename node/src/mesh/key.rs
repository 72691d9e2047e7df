//! Cluster key and node identity files.
//!
//! The cluster key is a libp2p pre-shared key: every connection starts with
//! a pnet handshake keyed by it, so a host without the key cannot even reach
//! the noise handshake. It is stored in the standard go-libp2p key file
//! format (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits). The node
//! identity is an ed25519 keypair, stored in libp2p's protobuf encoding; its
//! public half is the node's `PeerId`. Both files are created with mode 0600
//! and never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use rand::RngCore;

/// What a key file must look like, for error messages.
const KEY_FORMAT: &str =
    "three lines: `/key/swarm/psk/1.0.0/`, `/base16/`, then 64 hexadecimal digits";

/// Returns the text of a new random cluster key, in the standard pnet key file
/// format (the same format go-libp2p and IPFS use).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    PreSharedKey::new(bytes).to_key_file()
}

/// Reads a cluster key file; the error names the file and the expected format.
pub fn load(path: &Path) -> anyhow::Result<PreSharedKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read cluster key file {}", path.display()))?;
    let key = text.trim_start().parse::<PreSharedKey>().map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid cluster key ({e}); expected {KEY_FORMAT}",
            path.display()
        )
    })?;
    warn_if_readable_by_others(path);
    Ok(key)
}

/// Creates a new cluster key file (mode 0600) and returns the key; refuses to
/// overwrite an existing file, since that would split the cluster.
pub fn write_new(path: &Path) -> anyhow::Result<PreSharedKey> {
    let text = generate();
    let key = text
        .parse::<PreSharedKey>()
        .map_err(|e| anyhow::anyhow!("generated cluster key does not parse: {e}"))?;
    create_private_file(path, text.as_bytes())
        .with_context(|| format!("cannot create cluster key file {}", path.display()))?;
    Ok(key)
}

/// A short, non-secret identifier of the key, safe to log and compare
/// between hosts.
pub fn fingerprint(psk: &PreSharedKey) -> String {
    psk.fingerprint().to_string()
}

/// Loads the node identity from `path`, or creates and persists a new ed25519
/// keypair there (mode 0600). The caller must keep the file: the `PeerId`
/// other nodes know us by is derived from it.
pub fn load_or_create_identity(path: &Path) -> anyhow::Result<Keypair> {
    match fs::read(path) {
        Ok(bytes) => {
            let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a libp2p identity (protobuf-encoded keypair): {e}",
                    path.display()
                )
            })?;
            warn_if_readable_by_others(path);
            Ok(keypair)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| anyhow::anyhow!("cannot encode the new identity: {e}"))?;
            create_private_file(path, &bytes)
                .with_context(|| format!("cannot create identity file {}", path.display()))?;
            Ok(keypair)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read identity file {}", path.display())),
    }
}

/// Writes `contents` to a new file readable only by its owner; fails if the
/// file exists. Missing parent directories are created.
fn create_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(
                "{} already exists; refusing to overwrite it",
                path.display()
            )
        }
        Err(e) => return Err(e.into()),
    };
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Do not leave a truncated key behind: the next start would fail on it.
        let _ = fs::remove_file(path);
        return Err(e.into());
    }
    Ok(())
}

/// Secrets readable by other users are worth one warning, not a refusal.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} is accessible by other users (mode {:o}); it should be 0600",
                    path.display(),
                    mode & 0o777
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_and_files_are_private() {
        let text = generate();
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
        let hex = text.lines().nth(2).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cluster.key");
        let key = write_new(&path).unwrap();
        assert_eq!(load(&path).unwrap(), key);
        assert_eq!(fingerprint(&key).len(), 32);
        let err = format!("{:#}", write_new(&path).unwrap_err());
        assert!(err.contains("refusing to overwrite"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_key_file_names_file_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        fs::write(&path, "not a key\n").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("bad.key"), "{err}");
        assert!(err.contains("/key/swarm/psk/1.0.0/"), "{err}");
        let err = format!("{:#}", load(&dir.path().join("missing.key")).unwrap_err());
        assert!(err.contains("missing.key"), "{err}");
    }

    #[test]
    fn identity_is_created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let first = load_or_create_identity(&path).unwrap();
        let second = load_or_create_identity(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        fs::write(&path, b"garbage").unwrap();
        let err = format!("{:#}", load_or_create_identity(&path).unwrap_err());
        assert!(err.contains("identity"), "{err}");
    }
}
