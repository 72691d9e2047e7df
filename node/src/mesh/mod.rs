//! The mesh: how Skein nodes find and talk to each other (libp2p).
//!
//! Every node runs one libp2p swarm over TCP. Each connection first passes a
//! pnet handshake keyed by the *cluster key* ([`key`]), then noise (which
//! authenticates the peer's ed25519 identity, its `PeerId`) and yamux. Hosts
//! without the cluster key never get a connection, so everything above this
//! layer may assume that a connected peer is a cluster member's node.
//!
//! On top of the connections run four protocols:
//! - request-response (`/skein/rpc/2`): one request frame answered by one
//!   response frame, each a length-prefixed run of opaque bytes of at most
//!   [`MAX_MESSAGE_BYTES`] (what they mean is `crate::rpc`'s business);
//! - gossipsub (topic `skein/status/v2`): every node publishes its signed
//!   status about twice a second, at most [`MAX_GOSSIP_BYTES`]; unsigned or
//!   oversized messages are rejected, the rest reach the application as
//!   bytes, which decodes and vets them;
//! - identify (`/skein/id/1`): peers tell each other their listen addresses;
//! - ping: every second; a connection whose pings keep failing is closed.
//!
//! The mesh keeps itself connected: it dials the seeds (`join`) until each
//! answers, remembers the addresses of every peer it hears of (identify,
//! [`Mesh::add_peer_addrs`] fed from gossip), and keeps redialing peers it is
//! not connected to, with a per-peer backoff. A node that was partitioned or
//! restarted therefore reconnects by itself.
//!
//! One tokio task owns the swarm; [`Mesh`] is a cheap handle that sends it
//! commands, and the task reports what happens as [`MeshEvent`]s. The task
//! never waits for application code: inbound requests are answered through
//! a oneshot, and messages are encoded and decoded by the application in
//! its own tasks. It stops when every [`Mesh`] handle is dropped or on
//! [`Mesh::shutdown`].
//!
//! The mesh knows bytes only: it imports nothing from Raft, the state or
//! the RPC messages, so it can be tested and changed on its own.

pub mod key;

pub(crate) mod codec;
mod swarm;
mod transport;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use libp2p::identity::Keypair;
use libp2p::metrics::Metrics;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::registry::Registry;
use skein_protocol::codec::MAX_MESSAGE_BYTES;
use tokio::sync::{mpsc, oneshot};

use self::swarm::{Command, Driver, Seed, Stats};

/// Largest gossip message; a status with hundreds of allocations fits.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Default bound on one request-response round trip.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Events queued for the application before the mesh starts dropping them
/// (beyond this, an internal overflow queue absorbs bursts).
const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// How long [`Mesh::start`] waits for the listener to report an address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run this node's mesh.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Where to accept connections, e.g. `0.0.0.0:7421`; port 0 picks one.
    pub listen: SocketAddr,
    /// The IP other nodes should dial; `None` derives it from the listen
    /// addresses (loopback only if there is nothing else).
    pub advertise: Option<IpAddr>,
    /// Seeds to join: `HOST:PORT` (IPv4, `[IPv6]` or DNS name) or a
    /// `/ip4|ip6|dns|dns4|dns6/…/tcp/…` multiaddr. Dialed until they answer.
    pub join: Vec<String>,
    /// The cluster key: only nodes holding the same key can connect.
    pub psk: PreSharedKey,
    /// This node's identity; the caller persists it (see
    /// [`key::load_or_create_identity`]) so the `PeerId` survives restarts.
    pub keypair: Keypair,
    /// Bound on one request-response exchange, in both directions.
    pub request_timeout: Duration,
}

impl MeshConfig {
    /// A config with no seeds, no advertised IP and the default timeout.
    pub fn new(listen: SocketAddr, psk: PreSharedKey, keypair: Keypair) -> Self {
        Self {
            listen,
            advertise: None,
            join: Vec::new(),
            psk,
            keypair,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What the mesh reports to the application.
#[derive(Debug)]
pub enum MeshEvent {
    /// A gossiped message, signed by `from`, on our topic and within
    /// [`MAX_GOSSIP_BYTES`] (anything else is rejected before this). The
    /// receiver decodes it and checks what it claims about its author.
    Gossip {
        /// The peer that signed (authored) the message.
        from: PeerId,
        /// Its bytes, as published.
        bytes: Vec<u8>,
    },
    /// An inbound request of at most [`MAX_MESSAGE_BYTES`]; answer by
    /// sending bytes on `reply` within the request timeout (dropping it
    /// makes the peer see an error).
    Request {
        /// The asking peer.
        from: PeerId,
        /// What it asks, undecoded.
        bytes: Vec<u8>,
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// The first connection to a peer is up.
    PeerConnected(PeerId),
    /// The last connection to a peer closed (the mesh keeps redialing it if
    /// it knows an address).
    PeerDisconnected(PeerId),
}

/// Why a mesh operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// No connection to the peer could be made (no known address, dial
    /// failed, protocol not supported): the request was not delivered.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The connection closed before the answer came; the peer may or may
    /// not have acted on the request.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// No answer within the request timeout; the peer may or may not have
    /// acted on the request.
    #[error("request timed out")]
    Timeout,
    /// The peer's answer was not a well-formed frame.
    #[error("codec: {0}")]
    Codec(String),
    /// The peer failed the exchange without an answer (it rejected or
    /// dropped the request, or reset the stream).
    #[error("peer failed the exchange: {0}")]
    Remote(String),
    /// The encoded message exceeds the limit for its channel.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Gossipsub refused the message (e.g. all peer queues full).
    #[error("publish failed: {0}")]
    Publish(String),
    /// The mesh task has stopped.
    #[error("mesh stopped")]
    Stopped,
}

/// A cheap, cloneable handle to the mesh task. Dropping the last handle
/// stops the task and closes every connection.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    local_peer_id: PeerId,
    advertised: Arc<RwLock<Vec<Multiaddr>>>,
    request_timeout: Duration,
    #[cfg_attr(not(test), allow(dead_code))] // read by tests
    stats: Arc<Stats>,
    streams: libp2p_stream::Control,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("local_peer_id", &self.shared.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// Starts the swarm task: listens, dials the seeds, returns the handle and
    /// the event stream. Returns once the listener has an address, so
    /// [`Mesh::advertised_addrs`] is usable right away. libp2p's metrics
    /// (swarm, identify, ping, gossipsub, bandwidth) are registered in
    /// `registry` under the `libp2p` prefix and kept up to date by the task.
    pub async fn start(
        cfg: MeshConfig,
        registry: &mut Registry,
    ) -> anyhow::Result<(Mesh, mpsc::Receiver<MeshEvent>)> {
        let seeds = cfg
            .join
            .iter()
            .map(|s| Seed::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let local_peer_id = cfg.keypair.public().to_peer_id();
        let fingerprint = key::fingerprint(&cfg.psk);
        let request_timeout = cfg.request_timeout;
        let mut swarm = transport::build_swarm(cfg.keypair, cfg.psk, registry, |kp| {
            swarm::new_behaviour(kp, request_timeout)
        })?;
        let metrics = Metrics::new(registry);
        let streams = swarm.behaviour().streams.new_control();
        let topic = swarm::status_topic();
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&topic)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to the status topic: {e}"))?;
        let listen = Multiaddr::from(cfg.listen.ip()).with(Protocol::Tcp(cfg.listen.port()));
        swarm
            .listen_on(listen)
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;

        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (listening_tx, listening_rx) = oneshot::channel();
        let advertised = Arc::new(RwLock::new(Vec::new()));
        let stats = Arc::new(Stats::default());
        let driver = Driver::new(swarm::DriverParts {
            swarm,
            topic,
            commands: commands_rx,
            events: events_tx,
            seeds,
            advertise: cfg.advertise,
            advertised: advertised.clone(),
            listening: listening_tx,
            request_timeout,
            stats: stats.clone(),
            metrics,
        });
        tokio::spawn(driver.run());

        match tokio::time::timeout(LISTEN_TIMEOUT, listening_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => anyhow::bail!("cannot listen on {}: {e}", cfg.listen),
            Ok(Err(_)) => anyhow::bail!("the mesh task ended while starting"),
            Err(_) => anyhow::bail!(
                "no listen address on {} after {LISTEN_TIMEOUT:?}",
                cfg.listen
            ),
        }
        let mesh = Mesh {
            shared: Arc::new(Shared {
                commands,
                local_peer_id,
                advertised,
                request_timeout,
                stats,
                streams,
            }),
        };
        tracing::info!(
            "mesh: peer {local_peer_id} up on {}, advertising {:?}, cluster key fingerprint {fingerprint}",
            cfg.listen,
            mesh.advertised_addrs()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        Ok((mesh, events_rx))
    }

    /// A handle to open and accept raw streams to peers (bulk transfers
    /// such as image copies), over the same authenticated connections.
    pub fn streams(&self) -> libp2p_stream::Control {
        self.shared.streams.clone()
    }

    /// This node's identity on the mesh.
    pub fn local_peer_id(&self) -> PeerId {
        self.shared.local_peer_id
    }

    /// Multiaddrs (without `/p2p/` suffix) others can dial us on, for gossip.
    /// With an advertise IP set, only that IP (on each listen port);
    /// otherwise the listen addresses, loopback only if nothing else exists.
    pub fn advertised_addrs(&self) -> Vec<Multiaddr> {
        match self.shared.advertised.read() {
            Ok(addrs) => addrs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One request-response round trip to `peer` (dials it if needed using
    /// known addresses): `bytes` out, the peer's answer back, both at most
    /// [`MAX_MESSAGE_BYTES`].
    pub async fn request(&self, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>, MeshError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MeshError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Request { peer, bytes, reply })?;
        // request-response bounds the exchange itself; this also bounds the
        // dial that may precede it.
        let bound = self.shared.request_timeout + transport::HANDSHAKE_TIMEOUT;
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(MeshError::Stopped),
            Err(_) => Err(MeshError::Timeout),
        }
    }

    /// Publishes `data` (our encoded status) on the gossip topic (at most
    /// [`MAX_GOSSIP_BYTES`], else [`MeshError::TooLarge`]). Having no
    /// subscribed peer yet is not an error: the message simply reaches no one.
    pub async fn publish(&self, data: Vec<u8>) -> Result<(), MeshError> {
        if data.len() > MAX_GOSSIP_BYTES {
            return Err(MeshError::TooLarge {
                size: data.len(),
                max: MAX_GOSSIP_BYTES,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish { data, reply })?;
        answer.await.map_err(|_| MeshError::Stopped)?
    }

    /// Remembers addresses of a peer learned from gossip; the mesh keeps
    /// (re)connecting to known peers. Only `/ip4|ip6/…/tcp/…` addresses
    /// (optionally ending in this peer's `/p2p/`) are kept.
    pub fn add_peer_addrs(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        // A stopped mesh has nothing to connect; ignoring is correct.
        let _ = self.send(Command::AddPeerAddrs { peer, addrs });
    }

    /// Currently connected peers (empty once stopped).
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::ConnectedPeers(reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Stops the mesh task and waits until its listener and connections are
    /// dropped (the port is free again). Other handles then get
    /// [`MeshError::Stopped`].
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown(reply)).is_ok() {
            let _ = done.await;
        }
    }

    #[cfg(test)]
    fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    #[cfg(test)]
    async fn known_addrs(&self, peer: PeerId) -> Vec<Multiaddr> {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::KnownAddrs(peer, reply)).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    fn send(&self, command: Command) -> Result<(), MeshError> {
        self.shared
            .commands
            .send(command)
            .map_err(|_| MeshError::Stopped)
    }
}
