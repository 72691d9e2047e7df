//! Framing of the `/skein/rpc/2` request-response protocol.
//!
//! Each direction of a stream carries one frame: a big-endian `u32` length,
//! then that many bytes of [`skein_protocol::codec`] output. The length is
//! checked against [`MAX_MESSAGE_BYTES`] before anything is allocated, and
//! the body buffer starts at 64 KiB at most and grows only as bytes
//! actually arrive, so a peer that announces 16 MiB and sends three bytes
//! costs 64 KiB, not 16 MiB.
//!
//! The mesh never looks inside a frame: requests and responses are opaque
//! bytes, encoded and decoded by the application (`crate::rpc`) in its own
//! tasks. A malformed inbound *frame* (oversized, truncated) is not an I/O
//! error but [`RpcRequest::Invalid`]: request-response drops failed reads
//! silently, while an `Invalid` request reaches the swarm loop, which knows
//! the peer, logs it and drops it (the peer sees its stream closed without
//! an answer). A well-framed request whose bytes the application cannot
//! decode is the application's to answer.

use std::io;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;
use skein_protocol::codec::MAX_MESSAGE_BYTES;

/// The request-response protocol name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/skein/rpc/2");

/// A request as the codec sees it.
#[derive(Debug)]
pub(crate) enum RpcRequest {
    /// One whole frame's bytes (either direction).
    Bytes(Vec<u8>),
    /// Inbound: what was wrong with the frame (oversized, truncated).
    Invalid(String),
}

/// A response as the codec sees it: one whole frame's bytes.
pub(crate) type RpcResponse = Vec<u8>;

/// The request-response codec for [`PROTOCOL`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RpcCodec;

/// Reads one length-prefixed frame; oversized, truncated and empty-stream
/// input is an error (`InvalidData` or `UnexpectedEof`).
pub(crate) async fn read_frame<R>(io: &mut R) -> io::Result<Vec<u8>>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated frame: the stream ended inside the length prefix",
            )
        } else {
            e
        }
    })?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    // Grow with the data instead of trusting the prefix with an allocation.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    (&mut *io).take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "truncated frame: {} of {len} announced bytes arrived",
                body.len()
            ),
        ));
    }
    Ok(body)
}

/// Writes one length-prefixed frame.
pub(crate) async fn write_frame<W>(io: &mut W, body: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                body.len()
            ),
        ));
    }
    // Fits in u32: MAX_MESSAGE_BYTES is 16 MiB.
    let prefix = (body.len() as u32).to_be_bytes();
    io.write_all(&prefix).await?;
    io.write_all(body).await?;
    io.flush().await
}

/// A frame or error that is the peer's fault (bad length, early end).
fn is_protocol_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    )
}

fn not_bytes() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "an invalid request cannot be written",
    )
}

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = RpcRequest;
    type Response = RpcResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RpcRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io).await {
            Ok(body) => Ok(RpcRequest::Bytes(body)),
            Err(e) if is_protocol_error(&e) => Ok(RpcRequest::Invalid(e.to_string())),
            Err(e) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RpcResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RpcRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            RpcRequest::Bytes(bytes) => write_frame(io, &bytes).await,
            RpcRequest::Invalid(_) => Err(not_bytes()),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: RpcResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;

    fn frame(len: u32, body: &[u8]) -> Vec<u8> {
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Cursor::new(Vec::new());
        write_frame(&mut buf, b"hello").await.unwrap();
        assert_eq!(buf.get_ref(), &frame(5, b"hello"));
        let mut rd = Cursor::new(buf.into_inner());
        assert_eq!(read_frame(&mut rd).await.unwrap(), b"hello");
        let mut empty = Cursor::new(frame(0, b""));
        assert!(read_frame(&mut empty).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn oversized_prefix_is_rejected_before_reading_the_body() {
        let too_big = MAX_MESSAGE_BYTES as u32 + 1;
        let mut rd = Cursor::new(frame(too_big, &[0u8; 16]));
        let err = read_frame(&mut rd).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds"), "{err}");
        // Nothing past the prefix was consumed (and so nothing allocated for it).
        assert_eq!(rd.position(), 4);
        let mut rd = Cursor::new(frame(u32::MAX, b""));
        assert!(read_frame(&mut rd).await.is_err());
    }

    #[tokio::test]
    async fn truncated_input_is_an_error() {
        // Announces the maximum, delivers 10 bytes: error, small buffer.
        let mut rd = Cursor::new(frame(MAX_MESSAGE_BYTES as u32, &[7u8; 10]));
        let err = read_frame(&mut rd).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("10 of"), "{err}");
        let mut rd = Cursor::new(vec![0u8, 0]);
        let err = read_frame(&mut rd).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut rd = Cursor::new(Vec::new());
        assert!(read_frame(&mut rd).await.is_err());
    }

    #[tokio::test]
    async fn codec_passes_bytes_and_turns_bad_frames_into_invalid() {
        let mut codec = RpcCodec;
        let mut rd = Cursor::new(frame(5, b"hello"));
        match codec.read_request(&PROTOCOL, &mut rd).await.unwrap() {
            RpcRequest::Bytes(bytes) => assert_eq!(bytes, b"hello"),
            other => panic!("unexpected {other:?}"),
        }
        // Garbage inside a good frame is the application's to answer.
        let mut rd = Cursor::new(frame(4, &[0xff; 4]));
        assert!(matches!(
            codec.read_request(&PROTOCOL, &mut rd).await.unwrap(),
            RpcRequest::Bytes(_)
        ));
        for input in [frame(u32::MAX, b"x"), frame(100, &[1; 10]), vec![1]] {
            let mut rd = Cursor::new(input);
            match codec.read_request(&PROTOCOL, &mut rd).await.unwrap() {
                RpcRequest::Invalid(problem) => assert!(!problem.is_empty()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut rd = Cursor::new(frame(100, &[1; 4]));
        let err = codec.read_response(&PROTOCOL, &mut rd).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
