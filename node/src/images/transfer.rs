//! Image copies between peers over the mesh (`/skein/image/2`), for nodes
//! that cannot reach a registry or images no registry has.
//!
//! One raw libp2p stream per copy, over the same authenticated connection
//! as everything else. The fetcher sends an [`ImageRequest`] frame naming
//! the image by id; the holder answers with an [`ImageOffer`] frame, then
//! streams `docker save` of that id in chunks (`u32` length + bytes), ended
//! by an empty chunk, or by [`ABORT`] and an error frame if its Docker
//! fails half-way. Neither side holds the image in memory: the holder
//! forwards Docker's stream chunk by chunk, the fetcher writes to a file
//! that [`super::verify`] checks against the id before `docker load`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, info, warn};

use super::Inner;

/// The stream protocol of image copies.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/skein/image/2");
/// Chunk length that announces an error frame instead of data.
const ABORT: u32 = u32::MAX;
/// Largest data chunk a fetcher accepts.
const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// Largest control frame (request, offer, error).
const MAX_FRAME: usize = 64 * 1024;
/// Chunk size the holder sends.
const CHUNK: usize = 256 * 1024;
/// A peer silent this long in the middle of a copy is given up.
pub const STALL: Duration = Duration::from_secs(30);
/// Beyond the announced size, a copy may grow by this much (tar headers,
/// a size that changed) before the fetcher stops it: no peer fills a disk.
const SLACK_BYTES: u64 = 512 * 1024 * 1024;

/// What the fetcher asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRequest {
    /// Docker image id (`sha256:…`).
    pub id: String,
}

/// The holder's answer, before any data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ImageOffer {
    /// Data follows; `size` is Docker's size of the image (a hint).
    Sending {
        /// Approximate archive size in bytes.
        size: u64,
    },
    /// The holder is serving as many copies as it allows: ask another.
    Busy,
    /// The holder does not have this image (any more).
    Missing,
}

/// Why a copy from one peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The peer serves its maximum of copies; try another one.
    #[error("busy serving other copies")]
    Busy,
    /// The peer no longer has the image.
    #[error("does not have the image")]
    Missing,
    /// The stream broke, stalled, or the peer reported an error.
    #[error("{0}")]
    Failed(String),
}

async fn write_frame<T: Serialize>(s: &mut Stream, v: &T) -> std::io::Result<()> {
    let bytes = skein_protocol::codec::encode(v).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(&bytes).await
}

/// Reads a frame's or chunk's length.
pub(crate) async fn read_len(s: &mut (impl futures::AsyncRead + Unpin)) -> std::io::Result<u32> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    Ok(u32::from_be_bytes(len))
}

/// Reads and decodes a control frame of `len` bytes (at most [`MAX_FRAME`]).
pub(crate) async fn read_frame<T: serde::de::DeserializeOwned>(
    s: &mut (impl futures::AsyncRead + Unpin),
    len: u32,
) -> std::io::Result<T> {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is over the {MAX_FRAME} byte limit"
        )));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    skein_protocol::codec::decode(&buf).map_err(std::io::Error::other)
}

async fn with_stall<T>(
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, CopyError> {
    match tokio::time::timeout(STALL, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CopyError::Failed(format!("{what}: {e}"))),
        Err(_) => Err(CopyError::Failed(format!(
            "{what}: nothing for {} s",
            STALL.as_secs()
        ))),
    }
}

/// Fetches image `id` from `peer` into a new file under `dir`, calling
/// `progress(bytes, size_hint)` as data arrives. The file is the caller's
/// to verify, load and delete; on error it is already deleted.
pub(super) async fn fetch(
    inner: &Inner,
    peer: PeerId,
    id: &str,
    dir: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<PathBuf, CopyError> {
    let mut control = inner.streams.clone();
    let mut s = tokio::time::timeout(STALL, control.open_stream(peer, PROTOCOL))
        .await
        .map_err(|_| CopyError::Failed("no stream opened within 30 s".into()))?
        .map_err(|e| CopyError::Failed(format!("cannot open a stream: {e}")))?;
    with_stall(
        "sending the request",
        write_frame(&mut s, &ImageRequest { id: id.to_string() }),
    )
    .await?;
    let len = with_stall("reading the offer", read_len(&mut s)).await?;
    let offer: ImageOffer = with_stall("reading the offer", read_frame(&mut s, len)).await?;
    let size = match offer {
        ImageOffer::Sending { size } => size,
        ImageOffer::Busy => return Err(CopyError::Busy),
        ImageOffer::Missing => return Err(CopyError::Missing),
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| CopyError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(format!(
        "incoming-{}-{:08x}.tar",
        id.trim_start_matches("sha256:")
            .get(..16)
            .unwrap_or("image"),
        rand::random::<u32>()
    ));
    let result = receive(&mut s, &path, size, &mut progress).await;
    let _ = s.close().await;
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(e)
        }
    }
}

async fn receive(
    s: &mut Stream,
    path: &Path,
    size: u64,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), CopyError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| CopyError::Failed(format!("cannot create {}: {e}", path.display())))?;
    let limit = size.saturating_mul(2).saturating_add(SLACK_BYTES);
    let mut got: u64 = 0;
    let mut buf = Vec::new();
    loop {
        let len = with_stall("reading the image", read_len(s)).await?;
        if len == 0 {
            break;
        }
        if len == ABORT {
            let len = with_stall("reading the error", read_len(s)).await?;
            let why: String = with_stall("reading the error", read_frame(s, len)).await?;
            return Err(CopyError::Failed(format!("the peer failed: {why}")));
        }
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if n > MAX_CHUNK {
            return Err(CopyError::Failed(format!(
                "chunk of {n} bytes is over the {MAX_CHUNK} byte limit"
            )));
        }
        got = got.saturating_add(u64::from(len));
        if got > limit {
            return Err(CopyError::Failed(format!(
                "the peer sent more than {limit} bytes for an image of about {size}"
            )));
        }
        buf.resize(n, 0);
        with_stall("reading the image", s.read_exact(&mut buf)).await?;
        file.write_all(&buf)
            .await
            .map_err(|e| CopyError::Failed(format!("cannot write {}: {e}", path.display())))?;
        progress(got, size);
    }
    file.sync_all()
        .await
        .map_err(|e| CopyError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// Serves copies of local images to peers until the mesh goes away.
pub(super) async fn serve(inner: Arc<Inner>) {
    let mut control = inner.streams.clone();
    let mut incoming = match control.accept(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            warn!(error = %e, "image copies: cannot accept streams");
            return;
        }
    };
    while let Some((peer, stream)) = incoming.next().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(&inner, peer, stream).await {
                debug!(%peer, error = %e, "image copy to peer ended");
            }
        });
    }
}

async fn serve_one(inner: &Inner, peer: PeerId, mut s: Stream) -> Result<(), CopyError> {
    let len = with_stall("reading the request", read_len(&mut s)).await?;
    let req: ImageRequest = with_stall("reading the request", read_frame(&mut s, len)).await?;
    // Only a well-formed id reaches Docker's API (no path tricks).
    if !is_image_id(&req.id) {
        with_stall("answering", write_frame(&mut s, &ImageOffer::Missing)).await?;
        return Err(CopyError::Failed(
            "the peer asked for a malformed image id".into(),
        ));
    }
    let size = match inner.docker.inspect_image(&req.id).await {
        Ok(i) if i.id.as_deref() == Some(req.id.as_str()) => {
            u64::try_from(i.size.unwrap_or(0)).unwrap_or(0)
        }
        _ => {
            with_stall("answering", write_frame(&mut s, &ImageOffer::Missing)).await?;
            return Ok(());
        }
    };
    let Ok(_slot) = inner.uploads.clone().try_acquire_owned() else {
        with_stall("answering", write_frame(&mut s, &ImageOffer::Busy)).await?;
        return Ok(());
    };
    with_stall(
        "answering",
        write_frame(&mut s, &ImageOffer::Sending { size }),
    )
    .await?;
    // Test hook (SKEIN_TEST_CORRUPT_IMAGE_UPLOADS=N): flip one byte in the
    // middle of the next N copies, so tests see verification reject them.
    let corrupt = inner
        .corrupt_uploads
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let started = std::time::Instant::now();
    info!(%peer, image = %short(&req.id), size, corrupt, "sending an image copy to a peer");
    let mut export = inner.docker.export_image(&req.id);
    let mut sent: u64 = 0;
    let mut flipped = false;
    while let Some(part) = export.next().await {
        match part {
            Ok(bytes) => {
                for piece in bytes.chunks(CHUNK) {
                    let mut piece = piece.to_vec();
                    let end = sent.saturating_add(piece.len() as u64);
                    if corrupt && !flipped && end > size / 2 {
                        let at = usize::try_from((size / 2).saturating_sub(sent)).unwrap_or(0);
                        let at = at.min(piece.len().saturating_sub(1));
                        if let Some(b) = piece.get_mut(at) {
                            *b ^= 0x5a;
                            flipped = true;
                        }
                    }
                    let len = u32::try_from(piece.len()).unwrap_or(0);
                    with_stall("sending", s.write_all(&len.to_be_bytes())).await?;
                    with_stall("sending", s.write_all(&piece)).await?;
                    sent = end;
                }
            }
            Err(e) => {
                let why = crate::executor::docker_message(&e);
                warn!(%peer, image = %short(&req.id), error = %why, "image copy to a peer failed");
                with_stall("sending", s.write_all(&ABORT.to_be_bytes())).await?;
                with_stall("sending", write_frame(&mut s, &why)).await?;
                let _ = s.close().await;
                return Err(CopyError::Failed(why));
            }
        }
    }
    with_stall("sending", s.write_all(&0u32.to_be_bytes())).await?;
    with_stall("sending", s.close()).await?;
    info!(%peer, image = %short(&req.id), bytes = sent, secs = started.elapsed().as_secs_f64(), "image copy sent");
    Ok(())
}

/// Whether `id` is a Docker image id: `sha256:` and 64 lowercase hex digits.
pub fn is_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The first 12 hex digits of an image id, as Docker shows it.
pub fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}
