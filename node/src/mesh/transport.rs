//! The transport stack: TCP → pnet (cluster key) → key check → noise → yamux.
//!
//! pnet runs on the raw socket before anything else. By itself a wrong key
//! only shows up later, as multistream-select or noise choking on garbage
//! (or hanging until the handshake timeout), so right after pnet both sides
//! also send a fixed 16-byte marker through the encrypted stream: a peer
//! with another cluster key fails at once with an error that says so. pnet
//! cannot wrap QUIC, so there is no QUIC. Seed host names are resolved by
//! the swarm loop (`tokio::net::lookup_host`), so no DNS transport either.

use std::io;
use std::time::Duration;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::core::Transport;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PnetOutput, PreSharedKey};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{noise, tcp, yamux, PeerId, Swarm, SwarmBuilder};
use prometheus_client::registry::Registry;

/// Upper bound on TCP connect plus pnet, noise and yamux negotiation.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections stay open this long without any stream; the default (10 s)
/// would keep tearing down and redialing quiet peers.
pub(crate) const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Sent by both sides right after the pnet handshake; decrypts to itself
/// only if both use the same cluster key.
const KEY_CHECK: &[u8; 16] = b"skein/cluster/1\n";

/// The message peers with another cluster key fail with.
pub(crate) const WRONG_KEY: &str = "the peer uses a different cluster key";

/// pnet, then the marker exchange.
async fn private_handshake<S>(socket: S, psk: PreSharedKey) -> io::Result<PnetOutput<S>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut stream = PnetConfig::new(psk)
        .handshake(socket)
        .await
        .map_err(io::Error::other)?;
    stream.write_all(KEY_CHECK).await?;
    stream.flush().await?;
    let mut echo = [0u8; KEY_CHECK.len()];
    stream.read_exact(&mut echo).await?;
    if &echo != KEY_CHECK {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, WRONG_KEY));
    }
    Ok(stream)
}

/// The authenticated, multiplexed transport, keyed by `psk`.
fn transport(
    keypair: &Keypair,
    psk: PreSharedKey,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(keypair)?;
    Ok(tcp::tokio::Transport::new(tcp::Config::new().nodelay(true))
        .and_then(move |socket, _| private_handshake(socket, psk))
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// Builds a swarm on our transport with the given behaviour, counting the
/// bytes of every connection in `registry` (`libp2p_bandwidth_bytes`).
/// Generic so tests can speak our protocols with a hand-made behaviour.
pub(crate) fn build_swarm<B, F>(
    keypair: Keypair,
    psk: PreSharedKey,
    registry: &mut Registry,
    behaviour: F,
) -> anyhow::Result<Swarm<B>>
where
    B: NetworkBehaviour,
    F: FnOnce(&Keypair) -> anyhow::Result<B>,
{
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            transport(key, psk)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        })?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| {
            behaviour(key).map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}
