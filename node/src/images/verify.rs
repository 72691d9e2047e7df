//! Integrity check of an image archive received from a peer, run before
//! handing it to `docker load`.
//!
//! A node asks a peer for an image by its id (`sha256:` of the image config)
//! and receives what `docker save ID` wrote. Nothing in the archive is
//! trusted: [`verify_archive`] reads it once, hashing every entry as it
//! streams by, and then checks that the config named by `manifest.json`
//! hashes to the requested id (which binds the archive to the id) and that
//! every layer is present and hashes to what that config, or its blob name,
//! says. Both layouts `docker save` writes are understood: the classic one of
//! Docker 20.10 (`<id>.json`, `<dir>/layer.tar`) and the OCI one of Docker 25
//! and later (`index.json`, `blobs/sha256/<hex>`, plus a `manifest.json`).
//!
//! The tar stream is parsed here, on top of [`tar::Header`], rather than with
//! [`tar::Archive`]: that keeps memory bounded (extension headers are capped,
//! layers are never buffered) and lets ambiguous archives, the kind two tar
//! readers could see differently, be rejected instead of guessed at.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest `manifest.json`, `index.json` or image config accepted, in bytes:
/// they are read into memory, and real ones are a few KiB.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// Largest PAX or GNU long-name extension header accepted, in bytes.
const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// Most entries accepted in one archive (a `docker save` of a 100-layer image
/// has about 400).
const MAX_ENTRIES: usize = 100_000;

/// Longest entry name or link target accepted, in bytes.
const MAX_NAME_BYTES: usize = 4096;

/// How many symbolic or hard links are followed to reach a file.
const MAX_LINK_HOPS: usize = 16;

const BLOCK: usize = 512;

/// What a successful check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Layers of the image, as listed by its manifest.
    pub layers: usize,
    /// Length of the archive up to its end-of-archive marker.
    pub bytes: u64,
}

/// Why an archive was rejected. Messages name what failed, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The archive file could not be opened or read.
    #[error("cannot read the image archive: {0}")]
    Io(#[from] io::Error),
    /// The archive ends in the middle of a header, an entry or before its
    /// end-of-archive marker (an interrupted transfer, typically).
    #[error("truncated archive: {0}")]
    Truncated(String),
    /// The tar stream is not one `docker save` would write.
    #[error("malformed archive: {0}")]
    Malformed(String),
    /// An entry or a path in `manifest.json` is absolute, has a `..`
    /// component, or a link points outside the archive.
    #[error("unsafe path in the archive: {0}")]
    UnsafePath(String),
    /// A size limit of this check was exceeded.
    #[error("archive exceeds a limit: {0}")]
    TooLarge(String),
    /// The id asked for is not a sha256 image id.
    #[error("{0:?} is not an image id (sha256:<64 hex digits>)")]
    BadImageId(String),
    /// A digest uses an algorithm other than sha256.
    #[error("unsupported digest algorithm in {0:?} (only sha256 is accepted)")]
    UnsupportedDigest(String),
    /// There is no `manifest.json` at the top of the archive.
    #[error("archive has no manifest.json")]
    NoManifest,
    /// `manifest.json` cannot be understood.
    #[error("invalid manifest.json: {0}")]
    BadManifest(String),
    /// `manifest.json` lists several images, or none.
    #[error("manifest.json lists {0} images; an archive of one image must list exactly one")]
    ManifestEntries(usize),
    /// The config named by `manifest.json` is not in the archive.
    #[error("the image config {0} named by manifest.json is not in the archive")]
    MissingConfig(String),
    /// The config is another image's: the archive is not the one asked for.
    #[error("config digest sha256:{got} is not the requested image sha256:{want}")]
    ConfigDigest {
        /// Hex digest of the config found.
        got: String,
        /// Hex digest asked for.
        want: String,
    },
    /// The image config cannot be understood.
    #[error("invalid image config: {0}")]
    BadConfig(String),
    /// `manifest.json` and the config disagree on how many layers there are.
    #[error("manifest.json lists {layers} layers but the image config lists {diff_ids} diff_ids")]
    LayerCount {
        /// Layers in `manifest.json`.
        layers: usize,
        /// `rootfs.diff_ids` in the config.
        diff_ids: usize,
    },
    /// A layer named by `manifest.json` is not in the archive.
    #[error("layer {number} ({path}) is not in the archive")]
    MissingLayer {
        /// 1-based position in the manifest.
        number: usize,
        /// Path given by the manifest.
        path: String,
    },
    /// A layer's content is not what the config says.
    #[error("layer {number} ({path}) has digest sha256:{got} but the image config lists {want}")]
    LayerDigest {
        /// 1-based position in the manifest.
        number: usize,
        /// Path given by the manifest.
        path: String,
        /// Hex digest of the layer found.
        got: String,
        /// Diff id listed by the config.
        want: String,
    },
    /// A `blobs/sha256/<hex>` entry does not hash to its name.
    #[error("blob {path} has digest sha256:{got}, not the one its name says")]
    BlobDigest {
        /// Entry name.
        path: String,
        /// Hex digest of its content.
        got: String,
    },
}

/// Checks that the `docker save` archive at `path` holds exactly the image
/// `image_id` (`sha256:<hex>` or bare hex) with intact layers.
///
/// Reads the file once, front to back; blocking, so run it off the async
/// executor.
pub fn verify_archive(path: &Path, image_id: &str) -> Result<Verified, VerifyError> {
    let want = parse_image_id(image_id)?;
    let file = File::open(path)?;
    verify_reader(BufReader::with_capacity(256 << 10, file), &want)
}

/// [`verify_archive`] over any reader, for a parsed id.
fn verify_reader<R: Read>(reader: R, want: &[u8; 32]) -> Result<Verified, VerifyError> {
    let scan = Scanner::new(reader, want).run()?;
    check(&scan, want)
}

/// The requested id as 32 bytes.
fn parse_image_id(image_id: &str) -> Result<[u8; 32], VerifyError> {
    let hex_part = match image_id.split_once(':') {
        Some(("sha256", rest)) => rest,
        Some(_) => return Err(VerifyError::UnsupportedDigest(image_id.to_owned())),
        None => image_id,
    };
    parse_hex32(hex_part).ok_or_else(|| VerifyError::BadImageId(image_id.to_owned()))
}

/// 64 hex digits (either case) as bytes.
fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// One entry of the archive, as far as the check cares.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    /// A regular file; `compressed` when it starts like gzip or zstd.
    File {
        digest: [u8; 32],
        compressed: bool,
    },
    /// A symbolic or hard link, with its target resolved to an archive path.
    Link(String),
}

/// Everything one pass over the archive keeps.
#[derive(Debug, Default)]
struct Scan {
    entries: HashMap<String, Node>,
    manifest: Option<Vec<u8>>,
    index: Option<Vec<u8>>,
    /// Bytes of the entry that hashed to the requested id, if it was small
    /// enough to keep.
    config: Option<Vec<u8>>,
    /// An entry hashed to the requested id but was too big to keep.
    config_too_large: bool,
    bytes: u64,
}

/// PAX records that change how the next entry is read.
#[derive(Debug, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
}

/// A single pass over a tar stream.
struct Scanner<'a, R> {
    reader: R,
    want: &'a [u8; 32],
    offset: u64,
    buf: Vec<u8>,
    /// Reused buffer for entries that might be the config.
    small: Vec<u8>,
    name_bytes: usize,
    scan: Scan,
}

impl<'a, R: Read> Scanner<'a, R> {
    fn new(reader: R, want: &'a [u8; 32]) -> Self {
        Self {
            reader,
            want,
            offset: 0,
            buf: vec![0; 64 << 10],
            small: Vec::new(),
            name_bytes: 0,
            scan: Scan::default(),
        }
    }

    fn run(mut self) -> Result<Scan, VerifyError> {
        let mut pax: Option<Pax> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let mut block = [0u8; BLOCK];
            let at = self.offset;
            if !self.read_block(&mut block)? {
                return Err(VerifyError::Truncated(format!(
                    "the archive ends at byte {at} without an end-of-archive marker"
                )));
            }
            if block.iter().all(|b| *b == 0) {
                if pax.is_some() || long_name.is_some() || long_link.is_some() {
                    return Err(VerifyError::Malformed(
                        "an extended header is followed by no entry".into(),
                    ));
                }
                if !self.read_block(&mut block)? {
                    return Err(VerifyError::Truncated(
                        "the end-of-archive marker is cut short".into(),
                    ));
                }
                if block.iter().any(|b| *b != 0) {
                    return Err(VerifyError::Malformed(format!(
                        "a zero block at byte {at} is followed by data"
                    )));
                }
                self.scan.bytes = self.offset;
                return Ok(self.scan);
            }

            let header = tar::Header::from_byte_slice(&block);
            check_checksum(header, at)?;
            let type_byte = header.entry_type().as_byte();
            let mut size = header
                .entry_size()
                .map_err(|e| VerifyError::Malformed(format!("header at byte {at}: {e}")))?;

            match type_byte {
                b'x' => {
                    if pax.is_some() {
                        return Err(VerifyError::Malformed(format!(
                            "two PAX headers for one entry at byte {at}"
                        )));
                    }
                    let data = self.read_extension(size, "PAX header")?;
                    pax = Some(parse_pax(&data, at)?);
                    continue;
                }
                b'g' => {
                    // Global PAX headers are ignored by Docker's reader too.
                    self.read_extension(size, "global PAX header")?;
                    continue;
                }
                b'L' | b'K' => {
                    let slot = if type_byte == b'L' {
                        &mut long_name
                    } else {
                        &mut long_link
                    };
                    if slot.is_some() {
                        return Err(VerifyError::Malformed(format!(
                            "two GNU long-name headers for one entry at byte {at}"
                        )));
                    }
                    let mut data = self.read_extension(size, "GNU long-name header")?;
                    if let Some(end) = data.iter().position(|b| *b == 0) {
                        data.truncate(end);
                    }
                    *slot = Some(data);
                    continue;
                }
                _ => {}
            }

            let pax = pax.take().unwrap_or_default();
            if let Some(pax_size) = pax.size {
                size = pax_size;
            }
            // GNU long names win over PAX ones, as in Go's archive/tar.
            let raw_name = long_name
                .take()
                .or(pax.path)
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let raw_link = long_link
                .take()
                .or(pax.linkpath)
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
            let shown = String::from_utf8_lossy(&raw_name).into_owned();

            if header.as_ustar().is_some() && &block[508..512] == b"tar\0" {
                // star's header has a shorter name prefix than ustar's:
                // readers would disagree on the name.
                return Err(VerifyError::Malformed(format!(
                    "entry {shown} has a star header"
                )));
            }
            // Old-style headers mark directories by a trailing slash only.
            let slash = raw_name.last() == Some(&b'/');
            let is_dir = type_byte == b'5' || (type_byte == 0 && slash);
            if type_byte == b'0' && slash {
                return Err(VerifyError::Malformed(format!(
                    "regular file {shown} has a directory name"
                )));
            }
            let name = clean_path(&raw_name)?;
            if name.is_empty() && !is_dir {
                return Err(VerifyError::UnsafePath(format!(
                    "entry at byte {at} has an empty name"
                )));
            }

            let node = match type_byte {
                _ if is_dir => {
                    self.expect_no_data(size, &shown)?;
                    Node::Dir
                }
                0 | b'0' => self.hash_body(&name, size)?,
                b'1' | b'2' => {
                    self.expect_no_data(size, &shown)?;
                    let Some(link) = raw_link else {
                        return Err(VerifyError::Malformed(format!(
                            "link {shown} has no target"
                        )));
                    };
                    let target = if type_byte == b'2' {
                        resolve_symlink(&name, &link)?
                    } else {
                        // Hard link targets are archive paths.
                        clean_path(&link)?
                    };
                    self.count_name(target.len())?;
                    Node::Link(target)
                }
                b'S' => {
                    return Err(VerifyError::Malformed(format!(
                        "entry {shown} is a sparse file"
                    )))
                }
                other => {
                    return Err(VerifyError::Malformed(format!(
                        "entry {shown} has type {:?}, not a file, directory or link",
                        char::from(other)
                    )))
                }
            };
            if name.is_empty() {
                continue; // the archive root, "./"
            }
            self.add(name, node)?;
        }
    }

    fn add(&mut self, name: String, node: Node) -> Result<(), VerifyError> {
        if self.scan.entries.len() >= MAX_ENTRIES {
            return Err(VerifyError::TooLarge(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        self.count_name(name.len())?;
        if self.scan.entries.contains_key(&name) {
            return Err(VerifyError::Malformed(format!(
                "two entries are named {name}"
            )));
        }
        self.scan.entries.insert(name, node);
        Ok(())
    }

    /// Keeps the memory held by names bounded.
    fn count_name(&mut self, len: usize) -> Result<(), VerifyError> {
        self.name_bytes += len;
        if self.name_bytes > MAX_METADATA_BYTES as usize {
            return Err(VerifyError::TooLarge(format!(
                "entry names total more than {MAX_METADATA_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// Reads one block; `false` on a clean end of input before it.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, VerifyError> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.reader.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += filled as u64;
        match filled {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => Err(VerifyError::Truncated(format!(
                "the header at byte {} is cut short",
                self.offset - filled as u64
            ))),
        }
    }

    /// Reads an entry body of `size` bytes and its padding, handing each
    /// chunk to `sink`.
    fn read_body(
        &mut self,
        size: u64,
        what: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), VerifyError> {
        let Some(padded) = size.checked_next_multiple_of(BLOCK as u64) else {
            return Err(VerifyError::Malformed(format!(
                "{what} claims {size} bytes"
            )));
        };
        let mut done = 0u64;
        while done < padded {
            let want = (padded - done).min(self.buf.len() as u64) as usize;
            let n = match self.reader.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(VerifyError::Truncated(format!(
                        "{what} ends after {} of its {size} bytes",
                        done.min(size)
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let data_end = (size.saturating_sub(done)).min(n as u64) as usize;
            sink(&self.buf[..data_end]);
            done += n as u64;
            self.offset += n as u64;
        }
        Ok(())
    }

    fn read_extension(&mut self, size: u64, what: &str) -> Result<Vec<u8>, VerifyError> {
        if size > MAX_EXTENSION_BYTES {
            return Err(VerifyError::TooLarge(format!(
                "a {what} of {size} bytes (at most {MAX_EXTENSION_BYTES})"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        self.read_body(size, what, |chunk| data.extend_from_slice(chunk))?;
        Ok(data)
    }

    /// Directories and links carry no data; a size on them would make tar
    /// readers disagree on where the next header is.
    fn expect_no_data(&self, size: u64, shown: &str) -> Result<(), VerifyError> {
        if size != 0 {
            return Err(VerifyError::Malformed(format!(
                "entry {shown} is not a regular file but has {size} bytes of data"
            )));
        }
        Ok(())
    }

    /// Hashes a regular file's body, keeping the bytes when they may be
    /// needed later (manifest, index, config).
    fn hash_body(&mut self, name: &str, size: u64) -> Result<Node, VerifyError> {
        let metadata = name == "manifest.json" || name == "index.json";
        if metadata && size > MAX_METADATA_BYTES {
            return Err(VerifyError::TooLarge(format!(
                "{name} has {size} bytes (at most {MAX_METADATA_BYTES})"
            )));
        }
        // Any small file may turn out to be the config: its name is only
        // known from manifest.json, which may come later.
        let keep = size <= MAX_METADATA_BYTES && (metadata || self.scan.config.is_none());
        let mut small = std::mem::take(&mut self.small);
        small.clear();
        let mut hasher = Sha256::new();
        let mut head = [0u8; 4];
        let mut head_len = 0;
        let what = format!("entry {name}");
        self.read_body(size, &what, |chunk| {
            hasher.update(chunk);
            let n = chunk.len().min(head.len() - head_len);
            head[head_len..head_len + n].copy_from_slice(&chunk[..n]);
            head_len += n;
            if keep {
                small.extend_from_slice(chunk);
            }
        })?;
        let digest: [u8; 32] = hasher.finalize().into();
        if &digest == self.want && self.scan.config.is_none() {
            if keep {
                self.scan.config = Some(small.clone());
            } else {
                self.scan.config_too_large = true;
            }
        }
        match name {
            "manifest.json" => self.scan.manifest = Some(small),
            "index.json" => self.scan.index = Some(small),
            _ => self.small = small,
        }
        let compressed = head[..2] == [0x1f, 0x8b] || head == [0x28, 0xb5, 0x2f, 0xfd];
        Ok(Node::File { digest, compressed })
    }
}

fn check_checksum(header: &tar::Header, at: u64) -> Result<(), VerifyError> {
    let bytes = header.as_bytes();
    let sum: u32 = bytes[..148]
        .iter()
        .chain(&bytes[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    match header.cksum() {
        Ok(stored) if stored == sum => Ok(()),
        _ => Err(VerifyError::Malformed(format!(
            "bad header checksum at byte {at}"
        ))),
    }
}

fn parse_pax(data: &[u8], at: u64) -> Result<Pax, VerifyError> {
    let bad = |what: &str| VerifyError::Malformed(format!("PAX header at byte {at}: {what}"));
    let mut pax = Pax::default();
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|e| bad(&e.to_string()))?;
        let key = ext.key().map_err(|_| bad("a key is not UTF-8"))?;
        match key {
            "path" => pax.path = Some(ext.value_bytes().to_vec()),
            "linkpath" => pax.linkpath = Some(ext.value_bytes().to_vec()),
            "size" => {
                let size = ext
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| bad("invalid size"))?;
                pax.size = Some(size);
            }
            k if k.starts_with("GNU.sparse.") => return Err(bad("sparse files are not accepted")),
            _ => {}
        }
    }
    Ok(pax)
}

/// An archive path with `.` components and extra slashes removed; rejects
/// absolute paths, `..`, backslashes and non-UTF-8 names. The root is "".
fn clean_path(raw: &[u8]) -> Result<String, VerifyError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.len() > MAX_NAME_BYTES {
        return Err(VerifyError::TooLarge(format!(
            "a name of {} bytes (at most {MAX_NAME_BYTES})",
            raw.len()
        )));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| VerifyError::UnsafePath(format!("{} is not UTF-8", shown())))?;
    if text.starts_with('/') || text.contains('\\') || text.contains('\0') {
        return Err(VerifyError::UnsafePath(format!("{text:?}")));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(VerifyError::UnsafePath(format!("{text:?}"))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Where a symbolic link at archive path `name` points, as an archive path;
/// `..` is fine as long as it stays inside the archive (Docker links a
/// repeated layer to the first copy as `../<dir>/layer.tar`).
fn resolve_symlink(name: &str, target: &[u8]) -> Result<String, VerifyError> {
    let text = std::str::from_utf8(target).map_err(|_| {
        VerifyError::UnsafePath(format!("link {name} has a target that is not UTF-8"))
    })?;
    if text.len() > MAX_NAME_BYTES {
        return Err(VerifyError::TooLarge(format!(
            "link {name} has a target of {} bytes",
            text.len()
        )));
    }
    if text.starts_with('/') || text.contains('\\') || text.contains('\0') {
        return Err(VerifyError::UnsafePath(format!(
            "link {name} points to {text:?}"
        )));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(VerifyError::UnsafePath(format!(
                        "link {name} points outside the archive ({text:?})"
                    )));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    // Unknown fields are refused, and Go matches field names without regard
    // to case: so "config" next to "Config" cannot make `docker load` read
    // another file than the one checked here.
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
    #[serde(rename = "Parent", default)]
    _parent: Option<String>,
    #[serde(rename = "LayerSources", default)]
    layer_sources: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
}

/// Checks what the pass collected.
fn check(scan: &Scan, want: &[u8; 32]) -> Result<Verified, VerifyError> {
    check_tree(scan)?;
    check_blobs(scan)?;

    let manifest = match (scan.entries.get("manifest.json"), &scan.manifest) {
        (Some(Node::File { .. }), Some(bytes)) => bytes,
        (Some(_), _) => {
            return Err(VerifyError::BadManifest("it is not a regular file".into()));
        }
        _ => return Err(VerifyError::NoManifest),
    };
    let mut entries: Vec<ManifestEntry> =
        serde_json::from_slice(manifest).map_err(|e| VerifyError::BadManifest(e.to_string()))?;
    if entries.len() != 1 {
        return Err(VerifyError::ManifestEntries(entries.len()));
    }
    let entry = entries.remove(0);
    // Copies are saved by id, so they carry no tags: tags in the archive
    // would let a peer retag other images on `docker load`.
    if entry.repo_tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(VerifyError::BadManifest(
            "it names tags; a copy saved by image id has none".into(),
        ));
    }
    if entry.layer_sources.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(VerifyError::BadManifest(
            "it lists foreign layers (LayerSources), which are not in the archive".into(),
        ));
    }

    // The config: this is what ties the archive to the id asked for.
    let config_path = clean_path(entry.config.as_bytes())?;
    let config_digest = match lookup(scan, &config_path)? {
        Some((digest, _)) => digest,
        None => return Err(VerifyError::MissingConfig(entry.config)),
    };
    if &config_digest != want {
        return Err(VerifyError::ConfigDigest {
            got: hex::encode(config_digest),
            want: hex::encode(want),
        });
    }
    let config = match &scan.config {
        Some(bytes) => bytes,
        None if scan.config_too_large => {
            return Err(VerifyError::TooLarge(format!(
                "the image config has more than {MAX_METADATA_BYTES} bytes"
            )))
        }
        // Unreachable: an entry hashed to the id, so it was recorded.
        None => return Err(VerifyError::MissingConfig(entry.config)),
    };
    let config: ImageConfig =
        serde_json::from_slice(config).map_err(|e| VerifyError::BadConfig(e.to_string()))?;
    let diff_ids = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| parse_digest(d).map_err(|e| map_config_digest_error(e, d)))
        .collect::<Result<Vec<_>, _>>()?;

    if entry.layers.len() != diff_ids.len() {
        return Err(VerifyError::LayerCount {
            layers: entry.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    for (i, (layer, diff_id)) in entry.layers.iter().zip(&diff_ids).enumerate() {
        let number = i + 1;
        let path = clean_path(layer.as_bytes())?;
        let Some((digest, compressed)) = lookup(scan, &path)? else {
            return Err(VerifyError::MissingLayer {
                number,
                path: layer.clone(),
            });
        };
        // A blob was checked against its name already; its digest differs
        // from the diff id when it is compressed (containerd image store),
        // and `docker load` checks the diff id after decompressing.
        if &digest != diff_id && !(is_blob_path(&path) && compressed) {
            return Err(VerifyError::LayerDigest {
                number,
                path: layer.clone(),
                got: hex::encode(digest),
                want: format!("sha256:{}", hex::encode(diff_id)),
            });
        }
    }

    if let Some(index) = &scan.index {
        check_index(scan, index)?;
    }

    Ok(Verified {
        layers: entry.layers.len(),
        bytes: scan.bytes,
    })
}

/// Refuses entries below something that is not a directory: extracting them
/// would write through a link, over a file that was checked here.
fn check_tree(scan: &Scan) -> Result<(), VerifyError> {
    for name in scan.entries.keys() {
        let mut end = 0;
        while let Some(pos) = name[end..].find('/') {
            let parent = &name[..end + pos];
            if let Some(node) = scan.entries.get(parent) {
                if !matches!(node, Node::Dir) {
                    return Err(VerifyError::UnsafePath(format!(
                        "{name} lies inside {parent}, which is not a directory"
                    )));
                }
            }
            end += pos + 1;
        }
    }
    Ok(())
}

/// Every `blobs/<alg>/<hex>` file must hash to its name.
fn check_blobs(scan: &Scan) -> Result<(), VerifyError> {
    for (name, node) in &scan.entries {
        let Some(rest) = name.strip_prefix("blobs/") else {
            continue;
        };
        let (alg, hex_name) = match rest.split_once('/') {
            Some(parts) => parts,
            None if matches!(node, Node::Dir) => continue,
            None => {
                return Err(VerifyError::Malformed(format!(
                    "{name} is not a blobs/<algorithm>/<digest> path"
                )))
            }
        };
        if alg != "sha256" {
            return Err(VerifyError::UnsupportedDigest(name.clone()));
        }
        if hex_name.is_empty() && matches!(node, Node::Dir) {
            continue;
        }
        let expected = match parse_hex32(hex_name) {
            Some(d) if hex_name.bytes().all(|b| !b.is_ascii_uppercase()) => d,
            _ => {
                return Err(VerifyError::Malformed(format!(
                    "{name} is not named by a sha256 digest"
                )))
            }
        };
        match node {
            Node::File { digest, .. } if *digest == expected => {}
            Node::File { digest, .. } => {
                return Err(VerifyError::BlobDigest {
                    path: name.clone(),
                    got: hex::encode(digest),
                })
            }
            _ => {
                return Err(VerifyError::Malformed(format!(
                    "blob {name} is not a regular file"
                )))
            }
        }
    }
    Ok(())
}

/// The OCI index must only point at blobs the archive holds.
fn check_index(scan: &Scan, index: &[u8]) -> Result<(), VerifyError> {
    let index: OciIndex = serde_json::from_slice(index)
        .map_err(|e| VerifyError::Malformed(format!("invalid index.json: {e}")))?;
    for desc in &index.manifests {
        let digest = parse_digest(&desc.digest).map_err(|e| match e {
            DigestError::Algorithm => VerifyError::UnsupportedDigest(desc.digest.clone()),
            DigestError::Syntax => VerifyError::Malformed(format!(
                "index.json lists {:?}, which is not a digest",
                desc.digest
            )),
        })?;
        let path = format!("blobs/sha256/{}", hex::encode(digest));
        if !matches!(scan.entries.get(&path), Some(Node::File { .. })) {
            return Err(VerifyError::Malformed(format!(
                "index.json lists {}, which is not in the archive",
                desc.digest
            )));
        }
    }
    Ok(())
}

fn is_blob_path(path: &str) -> bool {
    path.starts_with("blobs/")
}

/// The digest of the file at `path` and whether it is compressed, following
/// links; `None` when there is no such file.
fn lookup(scan: &Scan, path: &str) -> Result<Option<([u8; 32], bool)>, VerifyError> {
    let mut current = path;
    for _ in 0..=MAX_LINK_HOPS {
        match scan.entries.get(current) {
            Some(Node::File { digest, compressed }) => return Ok(Some((*digest, *compressed))),
            Some(Node::Link(target)) => current = target,
            Some(Node::Dir) | None => return Ok(None),
        }
    }
    Err(VerifyError::Malformed(format!(
        "{path} is behind more than {MAX_LINK_HOPS} links"
    )))
}

enum DigestError {
    Algorithm,
    Syntax,
}

/// `sha256:<hex>` as bytes.
fn parse_digest(s: &str) -> Result<[u8; 32], DigestError> {
    match s.split_once(':') {
        Some(("sha256", hex_part)) => parse_hex32(hex_part).ok_or(DigestError::Syntax),
        Some((alg, _)) if !alg.is_empty() => Err(DigestError::Algorithm),
        _ => Err(DigestError::Syntax),
    }
}

fn map_config_digest_error(e: DigestError, digest: &str) -> VerifyError {
    match e {
        DigestError::Algorithm => VerifyError::UnsupportedDigest(digest.to_owned()),
        DigestError::Syntax => {
            VerifyError::BadConfig(format!("diff id {digest:?} is not a sha256 digest"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A layer tar holding one file.
    fn layer(name: &str, content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, content).unwrap();
        b.into_inner().unwrap()
    }

    fn config_for(layers: &[Vec<u8>]) -> Vec<u8> {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| format!("sha256:{}", sha(l)))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    /// Entries of an archive, in order.
    enum E {
        File(String, Vec<u8>),
        Dir(String),
        Symlink(String, String),
    }

    fn file(name: &str, data: &[u8]) -> E {
        E::File(name.into(), data.to_vec())
    }

    fn build(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            match e {
                E::File(name, data) => {
                    h.set_size(data.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut h, name, data.as_slice()).unwrap();
                }
                E::Dir(name) => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
                E::Symlink(name, target) => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, name, target).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A classic (Docker 20.10) archive and its image id.
    fn classic(layers: &[Vec<u8>]) -> (Vec<E>, String) {
        let config = config_for(layers);
        let id = sha(&config);
        let mut entries = Vec::new();
        let mut paths = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let dir = format!("{:064x}", i + 1);
            entries.push(E::Dir(format!("{dir}/")));
            entries.push(file(&format!("{dir}/VERSION"), b"1.0"));
            entries.push(file(&format!("{dir}/json"), b"{}"));
            entries.push(file(&format!("{dir}/layer.tar"), l));
            paths.push(format!("{dir}/layer.tar"));
        }
        entries.push(file(&format!("{id}.json"), &config));
        let manifest = serde_json::json!([{"Config": format!("{id}.json"), "RepoTags": null, "Layers": paths}]);
        entries.push(file(
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        ));
        (entries, id)
    }

    /// An OCI (Docker 25+) archive and its image id.
    fn oci(layers: &[Vec<u8>]) -> (Vec<E>, String) {
        let config = config_for(layers);
        let id = sha(&config);
        let mut entries = vec![
            file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            E::Dir("blobs/".into()),
            E::Dir("blobs/sha256/".into()),
        ];
        let mut paths = Vec::new();
        let mut descs = Vec::new();
        for l in layers {
            let h = sha(l);
            entries.push(file(&format!("blobs/sha256/{h}"), l));
            paths.push(format!("blobs/sha256/{h}"));
            descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{h}"), "size": l.len()}));
        }
        entries.push(file(&format!("blobs/sha256/{id}"), &config));
        let image_manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{id}"), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        let mh = sha(&image_manifest);
        entries.push(file(&format!("blobs/sha256/{mh}"), &image_manifest));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{mh}"), "size": image_manifest.len()}]});
        entries.push(file("index.json", &serde_json::to_vec(&index).unwrap()));
        let manifest = serde_json::json!([{"Config": format!("blobs/sha256/{id}"), "RepoTags": null, "Layers": paths}]);
        entries.push(file(
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        ));
        (entries, id)
    }

    fn layers() -> Vec<Vec<u8>> {
        vec![
            layer("etc/hostname", b"skein\n"),
            layer("www/index.html", &[7u8; 3000]),
        ]
    }

    fn verify_bytes(archive: &[u8], id: &str) -> Result<Verified, VerifyError> {
        verify_reader(archive, &parse_image_id(id).unwrap())
    }

    fn replace(entries: &mut [E], name: &str, data: Vec<u8>) {
        for e in entries.iter_mut() {
            if let E::File(n, d) = e {
                if n == name {
                    *d = data.clone();
                }
            }
        }
    }

    fn manifest_of(entries: &mut [E], value: serde_json::Value) {
        replace(
            entries,
            "manifest.json",
            serde_json::to_vec(&value).unwrap(),
        );
    }

    #[test]
    fn classic_archive_verifies_from_a_file() {
        let (entries, id) = classic(&layers());
        let archive = build(&entries);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&archive).unwrap();
        let v = verify_archive(f.path(), &format!("sha256:{id}")).unwrap();
        assert_eq!(v.layers, 2);
        assert_eq!(v.bytes, archive.len() as u64);
        // Bare hex is accepted too.
        assert_eq!(verify_archive(f.path(), &id).unwrap(), v);
    }

    #[test]
    fn oci_archive_verifies() {
        let (entries, id) = oci(&layers());
        let v = verify_bytes(&build(&entries), &id).unwrap();
        assert_eq!(v.layers, 2);
    }

    #[test]
    fn entry_order_does_not_matter() {
        let (mut entries, id) = classic(&layers());
        entries.reverse();
        verify_bytes(&build(&entries), &id).unwrap();
    }

    #[test]
    fn image_without_layers_verifies() {
        let (entries, id) = classic(&[]);
        assert_eq!(verify_bytes(&build(&entries), &id).unwrap().layers, 0);
    }

    #[test]
    fn flipped_byte_in_a_classic_layer_is_caught() {
        let ls = layers();
        let (mut entries, id) = classic(&ls);
        let mut bad = ls[1].clone();
        bad[600] ^= 1;
        let path = format!("{:064x}/layer.tar", 2);
        replace(&mut entries, &path, bad.clone());
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, VerifyError::LayerDigest { number: 2, .. }),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("layer 2 ({path}) has digest sha256:{}", sha(&bad))),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("the image config lists sha256:{}", sha(&ls[1]))),
            "{msg}"
        );
    }

    #[test]
    fn compressed_oci_layers_need_not_match_their_diff_id() {
        // The containerd store saves layers as they were pulled, gzipped:
        // the blob is named by its own digest, the config lists the digest
        // of the uncompressed tar.
        let plain = layer("f", b"data");
        let mut gz = vec![0x1f, 0x8b, 8, 0];
        gz.extend_from_slice(b"pretend this is deflate");
        let config = config_for(std::slice::from_ref(&plain));
        let id = sha(&config);
        let blob = |data: &[u8]| file(&format!("blobs/sha256/{}", sha(data)), data);
        let archive = |layer: &[u8]| {
            let manifest = serde_json::json!([{"Config": format!("blobs/sha256/{id}"), "Layers": [format!("blobs/sha256/{}", sha(layer))]}]);
            build(&[
                blob(layer),
                blob(&config),
                file("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
            ])
        };
        verify_bytes(&archive(&gz), &id).unwrap();
        verify_bytes(&archive(&plain), &id).unwrap();
        // An uncompressed blob must be the layer the config lists.
        let other = layer("f", b"evil");
        let err = verify_bytes(&archive(&other), &id).unwrap_err();
        assert!(
            matches!(err, VerifyError::LayerDigest { number: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn flipped_byte_in_an_oci_blob_is_caught() {
        let ls = layers();
        let (mut entries, id) = oci(&ls);
        let mut bad = ls[0].clone();
        bad[10] ^= 0x20;
        replace(&mut entries, &format!("blobs/sha256/{}", sha(&ls[0])), bad);
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::BlobDigest { .. }), "{err}");
    }

    #[test]
    fn archive_of_another_image_is_refused() {
        let (entries, _) = classic(&layers());
        let other = sha(b"another config");
        let err = verify_bytes(&build(&entries), &other).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("is not the requested image sha256:{other}")),
            "{err}"
        );
        let (entries, _) = oci(&layers());
        let err = verify_bytes(&build(&entries), &other).unwrap_err();
        assert!(matches!(err, VerifyError::ConfigDigest { .. }), "{err}");
    }

    #[test]
    fn config_of_another_image_is_refused() {
        // The archive is internally consistent but carries another config.
        let ls = layers();
        let (mut entries, id) = classic(&ls);
        let mut other = config_for(&ls);
        other.extend_from_slice(b" ");
        replace(&mut entries, &format!("{id}.json"), other.clone());
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "config digest sha256:{} is not the requested image sha256:{id}",
                sha(&other)
            )
        );
    }

    #[test]
    fn missing_layer_is_caught() {
        let (mut entries, id) = classic(&layers());
        let path = format!("{:064x}/layer.tar", 1);
        entries.retain(|e| !matches!(e, E::File(n, _) if *n == path));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(
            matches!(err, VerifyError::MissingLayer { number: 1, .. }),
            "{err}"
        );

        let ls = layers();
        let (mut entries, id) = oci(&ls);
        let path = format!("blobs/sha256/{}", sha(&ls[1]));
        entries.retain(|e| !matches!(e, E::File(n, _) if *n == path));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(
            matches!(err, VerifyError::MissingLayer { number: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn layer_count_must_match_diff_ids() {
        let ls = layers();
        let (mut entries, id) = classic(&ls);
        let first = format!("{:064x}/layer.tar", 1);
        manifest_of(
            &mut entries,
            serde_json::json!([{"Config": format!("{id}.json"), "RepoTags": null, "Layers": [first]}]),
        );
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::LayerCount {
                    layers: 1,
                    diff_ids: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn swapped_layers_are_caught() {
        let (mut entries, id) = classic(&layers());
        let a = format!("{:064x}/layer.tar", 1);
        let b = format!("{:064x}/layer.tar", 2);
        manifest_of(
            &mut entries,
            serde_json::json!([{"Config": format!("{id}.json"), "RepoTags": null, "Layers": [b, a]}]),
        );
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(
            matches!(err, VerifyError::LayerDigest { number: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn extra_manifest_entries_are_refused() {
        let (mut entries, id) = classic(&layers());
        let one =
            serde_json::json!({"Config": format!("{id}.json"), "RepoTags": null, "Layers": []});
        manifest_of(&mut entries, serde_json::json!([one.clone(), one]));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::ManifestEntries(2)), "{err}");
        manifest_of(&mut entries, serde_json::json!([]));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::ManifestEntries(0)), "{err}");
    }

    #[test]
    fn case_variant_manifest_keys_are_refused() {
        // Go's JSON decoder would read "config" as Config.
        let (mut entries, id) = classic(&layers());
        manifest_of(
            &mut entries,
            serde_json::json!([{"Config": format!("{id}.json"), "config": "other.json", "Layers": []}]),
        );
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::BadManifest(_)), "{err}");
    }

    #[test]
    fn missing_manifest_is_reported() {
        let (mut entries, id) = classic(&layers());
        entries.retain(|e| !matches!(e, E::File(n, _) if n == "manifest.json"));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert_eq!(err.to_string(), "archive has no manifest.json");
    }

    #[test]
    fn parent_directory_entries_are_refused() {
        let (mut entries, id) = classic(&layers());
        // tar::Builder refuses to write "..", so forge the name afterwards.
        entries.insert(0, file("xx/evil", b"x"));
        let mut archive = build(&entries);
        archive[..7].copy_from_slice(b"../evil");
        let h = tar::Header::from_byte_slice(&archive[..512]).clone();
        let mut h = h;
        h.set_cksum();
        archive[..512].copy_from_slice(h.as_bytes());
        let err = verify_bytes(&archive, &id).unwrap_err();
        assert!(matches!(err, VerifyError::UnsafePath(_)), "{err}");
        assert!(err.to_string().contains("\"../evil\""), "{err}");
    }

    #[test]
    fn unsafe_manifest_paths_are_refused() {
        let (mut entries, id) = classic(&layers());
        manifest_of(
            &mut entries,
            serde_json::json!([{"Config": format!("../{id}.json"), "Layers": []}]),
        );
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::UnsafePath(_)), "{err}");
        manifest_of(
            &mut entries,
            serde_json::json!([{"Config": format!("/{id}.json"), "Layers": []}]),
        );
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::UnsafePath(_)), "{err}");
    }

    #[test]
    fn symlinks_inside_the_archive_are_followed() {
        // Docker links a repeated layer to its first copy.
        let l = layer("a", b"same");
        let ls = vec![l.clone(), l];
        let (mut entries, id) = classic(&ls);
        let first = format!("{:064x}/layer.tar", 1);
        let second = format!("{:064x}/layer.tar", 2);
        for e in entries.iter_mut() {
            if matches!(e, E::File(n, _) if *n == second) {
                *e = E::Symlink(second.clone(), format!("../{first}"));
            }
        }
        assert_eq!(verify_bytes(&build(&entries), &id).unwrap().layers, 2);
    }

    #[test]
    fn symlinks_out_of_the_archive_are_refused() {
        let (mut entries, id) = classic(&layers());
        entries.push(E::Symlink("escape".into(), "../../etc/passwd".into()));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::UnsafePath(_)), "{err}");
        let (mut entries, id) = classic(&layers());
        entries.push(E::Symlink("escape".into(), "/etc/passwd".into()));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::UnsafePath(_)), "{err}");
    }

    #[test]
    fn entries_through_a_symlink_are_refused() {
        let (mut entries, id) = classic(&layers());
        let dir = format!("{:064x}", 1);
        entries.push(E::Symlink("alias".into(), dir));
        entries.push(file("alias/layer.tar", b"overwrites the checked layer"));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(
            err.to_string().contains("which is not a directory"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_entries_are_refused() {
        let (mut entries, id) = classic(&layers());
        entries.push(file("manifest.json", b"[]"));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(
            err.to_string()
                .contains("two entries are named manifest.json"),
            "{err}"
        );
    }

    #[test]
    fn truncated_archives_are_reported() {
        let (entries, id) = classic(&layers());
        let archive = build(&entries);
        // Cut inside a layer, inside a header, and just before the end marker.
        for cut in [
            1100,
            512 * 3 + 100,
            archive.len() - 1024,
            archive.len() - 512,
        ] {
            let err = verify_bytes(&archive[..cut], &id).unwrap_err();
            assert!(
                err.to_string().starts_with("truncated archive: "),
                "cut at {cut}: {err}"
            );
        }
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&archive[..archive.len() / 2]).unwrap();
        let err = verify_archive(f.path(), &id).unwrap_err();
        assert!(matches!(err, VerifyError::Truncated(_)), "{err}");
    }

    #[test]
    fn unknown_digest_algorithms_are_refused() {
        let id = sha(b"x");
        assert!(matches!(
            parse_image_id(&format!("sha512:{id}")),
            Err(VerifyError::UnsupportedDigest(_))
        ));
        assert!(matches!(
            parse_image_id("sha256:abc"),
            Err(VerifyError::BadImageId(_))
        ));

        // A config listing a sha512 diff id.
        let config = serde_json::to_vec(&serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [format!("sha512:{}{}", id, id)]}})).unwrap();
        let cid = sha(&config);
        let l = layer("x", b"y");
        let entries = vec![
            file("d/layer.tar", &l),
            file(&format!("{cid}.json"), &config),
            file(
                "manifest.json",
                &serde_json::to_vec(&serde_json::json!([{"Config": format!("{cid}.json"), "Layers": ["d/layer.tar"]}])).unwrap(),
            ),
        ];
        let err = verify_bytes(&build(&entries), &cid).unwrap_err();
        assert!(matches!(err, VerifyError::UnsupportedDigest(_)), "{err}");

        // A blob directory of another algorithm.
        let (mut entries, id) = oci(&layers());
        entries.push(file(&format!("blobs/sha512/{}", "0".repeat(128)), b"x"));
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(matches!(err, VerifyError::UnsupportedDigest(_)), "{err}");
    }

    #[test]
    fn oci_index_must_point_at_present_blobs() {
        let (mut entries, id) = oci(&layers());
        let missing = sha(b"nothing");
        replace(
            &mut entries,
            "index.json",
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": format!("sha256:{missing}")}]})).unwrap(),
        );
        let err = verify_bytes(&build(&entries), &id).unwrap_err();
        assert!(err.to_string().contains("not in the archive"), "{err}");
    }

    #[test]
    fn device_entries_are_refused() {
        let (entries, id) = classic(&layers());
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Char);
        h.set_size(0);
        b.append_data(&mut h, "null", io::empty()).unwrap();
        let mut archive = b.into_inner().unwrap();
        archive.truncate(archive.len() - 1024);
        archive.extend(build(&entries));
        let err = verify_bytes(&archive, &id).unwrap_err();
        assert!(
            err.to_string().contains("not a file, directory or link"),
            "{err}"
        );
    }

    #[test]
    fn data_on_a_directory_entry_is_refused() {
        // Readers disagree on whether such data exists; refuse the archive.
        let (entries, id) = classic(&layers());
        let mut archive = build(&entries);
        let mut h = tar::Header::from_byte_slice(&archive[..512]).clone();
        assert!(h.entry_type().is_dir());
        h.set_size(512);
        h.set_cksum();
        archive[..512].copy_from_slice(h.as_bytes());
        let err = verify_bytes(&archive, &id).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not a regular file but has 512 bytes"),
            "{err}"
        );
    }

    #[test]
    fn long_names_and_pax_headers_are_understood() {
        let ls = layers();
        let config = config_for(&ls);
        let id = sha(&config);
        let deep = format!("{}/layer.tar", "d".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        // A GNU long name for the first layer...
        let mut h = tar::Header::new_gnu();
        h.set_size(ls[0].len() as u64);
        b.append_data(&mut h, &deep, ls[0].as_slice()).unwrap();
        // ...and a PAX path for the second.
        let pax_name = format!("{}/layer.tar", "p".repeat(150));
        b.append_pax_extensions([("path", pax_name.as_bytes())])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(ls[1].len() as u64);
        h.set_path("short").unwrap();
        h.set_cksum();
        b.append(&h, ls[1].as_slice()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(config.len() as u64);
        b.append_data(&mut h, format!("{id}.json"), config.as_slice())
            .unwrap();
        let manifest = serde_json::to_vec(
            &serde_json::json!([{"Config": format!("{id}.json"), "Layers": [deep, pax_name]}]),
        )
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(manifest.len() as u64);
        b.append_data(&mut h, "./manifest.json", manifest.as_slice())
            .unwrap();
        let archive = b.into_inner().unwrap();
        assert_eq!(verify_bytes(&archive, &id).unwrap().layers, 2);
    }

    #[test]
    fn damaged_archives_are_refused_without_panics() {
        let (entries, id) = classic(&layers());
        let archive = build(&entries);
        let want = parse_image_id(&id).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bad = archive.clone();
            let pos = (seed % bad.len() as u64) as usize;
            match round % 3 {
                0 => bad[pos] ^= 1 << (seed >> 60 & 7),
                1 => bad[pos] = 0xff,
                _ => bad.truncate(pos),
            }
            // Header fields come out valid or not; either way no panic, and
            // no damaged layer, config or manifest byte gets through.
            if let Ok(v) = verify_reader(bad.as_slice(), &want) {
                assert_eq!(v.layers, 2);
            }
        }
        // Sizes at the edge of u64 in a base-256 size field.
        let mut bad = build(&[file("a", b"x")]);
        bad[124] = 0x80;
        bad[125..136].fill(0xff);
        let mut h = tar::Header::from_byte_slice(&bad[..512]).clone();
        h.set_cksum();
        bad[..512].copy_from_slice(h.as_bytes());
        let err = verify_reader(bad.as_slice(), &want).unwrap_err();
        assert!(err.to_string().contains("claims"), "{err}");
    }

    #[test]
    fn bad_header_checksum_is_refused() {
        let (entries, id) = classic(&layers());
        let mut archive = build(&entries);
        archive[100] ^= 1; // inside the first header's mode field
        let err = verify_bytes(&archive, &id).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn oversized_manifest_is_refused_without_reading_it() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(MAX_METADATA_BYTES + 1);
        h.set_path("manifest.json").unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, io::empty()).ok(); // fails on the short body; the header is written
        let mut archive = b.into_inner().unwrap();
        archive.truncate(512);
        let err = verify_bytes(&archive, &sha(b"x")).unwrap_err();
        assert!(matches!(err, VerifyError::TooLarge(_)), "{err}");
    }
}
