//! The swarm task: owns the libp2p swarm, turns its events into
//! [`MeshEvent`]s and [`Mesh`](super::Mesh) commands into swarm calls, and
//! keeps the node connected.
//!
//! Staying connected: every [`REDIAL_TICK`] the task dials each known peer
//! it is not connected to (at most one dial in flight per peer; after a
//! failure it waits [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`]; a
//! successful connection or a disconnect resets the wait), and each seed
//! whose node it is not connected to (seeds are dialed by address, their
//! `PeerId` is learned from the first connection).
//!
//! The task never awaits application code: events go out with `try_send`
//! (bursts wait in a bounded overflow queue), inbound requests get a oneshot
//! whose answer is awaited and encoded in a spawned task, and seed host
//! names are resolved in spawned tasks.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, PublishError};
use libp2p::identity::Keypair;
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};
use skein_protocol::codec::MAX_MESSAGE_BYTES;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::{RpcCodec, RpcRequest, RpcResponse, PROTOCOL};
use super::transport::WRONG_KEY;
use super::{MeshError, MeshEvent, MAX_GOSSIP_BYTES};

/// The gossip topic every node publishes its status on.
pub(crate) const STATUS_TOPIC: &str = "skein/status/v2";
/// Identify protocol version; peers with another one are another system.
const IDENTIFY_PROTOCOL: &str = "/skein/id/1";
/// Gossipsub heartbeat (mesh maintenance, gossip emission).
const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
/// Room for the gossipsub envelope (signature, key, topic, seqno) around a
/// status of [`MAX_GOSSIP_BYTES`].
const GOSSIP_ENVELOPE_BYTES: usize = 4096;
/// Ping cadence and per-ping timeout.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive failed pings after which a connection is closed (and the
/// peer redialed): a silent peer is detected in well under 10 s.
const PING_FAILURES_BEFORE_CLOSE: u32 = 3;
/// Inbound + outbound request-response streams per connection.
const MAX_CONCURRENT_STREAMS: usize = 256;
/// How often the redial pass runs.
pub(crate) const REDIAL_TICK: Duration = Duration::from_secs(1);
/// First wait after a failed dial; doubles per failure up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(2);
/// Longest wait between dials of one peer or seed.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A repeated connection failure (same remote address) is logged at warn!
/// at most this often (and again after a success); repeats go to debug!.
const WARN_INTERVAL: Duration = Duration::from_secs(600);
/// Same for malformed requests and gossip from one peer.
const PROTOCOL_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// Addresses remembered per peer (newest first).
const MAX_ADDRS_PER_PEER: usize = 16;
/// Events buffered inside the task when the application's channel is full.
const EVENT_OVERFLOW_CAPACITY: usize = 4096;

/// What a [`Mesh`](super::Mesh) handle asks of the task.
pub(crate) enum Command {
    Request {
        peer: PeerId,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, MeshError>>,
    },
    Publish {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    AddPeerAddrs {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    },
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    Shutdown(oneshot::Sender<()>),
    /// The addresses the redial pass would use for a peer.
    #[cfg(test)]
    KnownAddrs(PeerId, oneshot::Sender<Vec<Multiaddr>>),
}

/// Counters tests use to wait for things that have no event.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Inbound requests dropped as malformed (oversized, truncated, garbage).
    pub(crate) rejected_requests: AtomicU64,
    /// Inbound connections that failed before being established (e.g. a
    /// different cluster key).
    pub(crate) failed_incoming: AtomicU64,
}

/// The protocols every node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    rpc: request_response::Behaviour<RpcCodec>,
    pub(crate) gossip: gossipsub::Behaviour,
    /// Raw streams for bulk transfers (image copies), which do not fit
    /// request-response's one-message-each-way shape.
    pub(crate) streams: libp2p_stream::Behaviour,
}

/// The status topic.
pub(crate) fn status_topic() -> IdentTopic {
    IdentTopic::new(STATUS_TOPIC)
}

/// Builds the behaviour for `keypair`.
pub(crate) fn new_behaviour(
    keypair: &Keypair,
    request_timeout: Duration,
) -> anyhow::Result<Behaviour> {
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
            .with_agent_version(format!("skein/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    );
    let ping = ping::Behaviour::new(
        ping::Config::new()
            .with_interval(PING_INTERVAL)
            .with_timeout(PING_TIMEOUT),
    );
    let rpc = request_response::Behaviour::with_codec(
        RpcCodec,
        [(PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(request_timeout)
            .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
    );
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .max_transmit_size(MAX_GOSSIP_BYTES + GOSSIP_ENVELOPE_BYTES)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(message_id)
        // Sized for 3–20 nodes: outbound_min <= low <= n <= high and
        // 2 * outbound_min <= n.
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        // Publish to every subscribed peer, not only the mesh: a status
        // reaches all peers even before the mesh has formed.
        .flood_publish(true)
        .build()
        .context("invalid gossipsub config")?;
    let gossip = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_config,
    )
    .map_err(|e| anyhow::anyhow!("cannot create gossipsub: {e}"))?;
    Ok(Behaviour {
        identify,
        ping,
        rpc,
        gossip,
        streams: libp2p_stream::Behaviour::new(),
    })
}

/// Message id = FNV-1a (128 bit) of author and data: stable across nodes
/// and builds; the application's sequence number makes consecutive statuses
/// distinct.
fn message_id(message: &gossipsub::Message) -> MessageId {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let author = message.source.map(|p| p.to_bytes()).unwrap_or_default();
    let mut hash = OFFSET;
    for byte in author.iter().chain([0u8].iter()).chain(message.data.iter()) {
        hash ^= u128::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    MessageId::new(&hash.to_be_bytes())
}

/// Where a seed points.
#[derive(Debug, Clone)]
enum SeedAddr {
    /// A literal address, dialed as is.
    Addr(Multiaddr),
    /// A host name, resolved before every attempt.
    Host { host: String, port: u16 },
}

/// A seed from `join`, and the state of its dialing.
#[derive(Debug)]
pub(crate) struct Seed {
    text: String,
    addr: SeedAddr,
    /// The node it turned out to be (learned on the first connection).
    peer: Option<PeerId>,
    /// A resolution or dial is in flight.
    busy: bool,
    /// Resolution attempts, to rotate through multiple DNS answers.
    attempts: usize,
    backoff: Duration,
    next_dial: Instant,
    /// The seed is this node; never dialed again.
    is_self: bool,
}

impl Seed {
    /// Parses `HOST:PORT` (IPv4, `[IPv6]`, DNS name) or a multiaddr.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Seed> {
        let s = text.trim();
        let addr = if s.starts_with('/') {
            let ma: Multiaddr = s
                .parse()
                .with_context(|| format!("invalid seed {text:?}: not a multiaddr"))?;
            seed_from_multiaddr(&ma).with_context(|| {
                format!("invalid seed {text:?}: expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>")
            })?
        } else if let Ok(sa) = s.parse::<SocketAddr>() {
            SeedAddr::Addr(socket_multiaddr(sa))
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && !host.contains(':') => SeedAddr::Host {
                    host: host.to_string(),
                    port: port
                        .parse()
                        .with_context(|| format!("invalid seed {text:?}: bad port {port:?}"))?,
                },
                _ => anyhow::bail!(
                    "invalid seed {text:?}: expected HOST:PORT (IPv4, [IPv6] or DNS name)"
                ),
            }
        };
        Ok(Seed {
            text: s.to_string(),
            addr,
            peer: None,
            busy: false,
            attempts: 0,
            backoff: BACKOFF_MIN,
            next_dial: Instant::now(),
            is_self: false,
        })
    }
}

fn seed_from_multiaddr(ma: &Multiaddr) -> Option<SeedAddr> {
    let mut parts = ma.iter();
    let host = parts.next()?;
    let port = match parts.next()? {
        Protocol::Tcp(port) => port,
        _ => return None,
    };
    match parts.next() {
        None | Some(Protocol::P2p(_)) => {}
        Some(_) => return None,
    }
    match host {
        Protocol::Ip4(ip) => Some(SeedAddr::Addr(socket_multiaddr((ip, port).into()))),
        Protocol::Ip6(ip) => Some(SeedAddr::Addr(socket_multiaddr((ip, port).into()))),
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => Some(SeedAddr::Host {
            host: h.to_string(),
            port,
        }),
        _ => None,
    }
}

/// `/ip4|ip6/<ip>/tcp/<port>`.
pub(crate) fn socket_multiaddr(sa: SocketAddr) -> Multiaddr {
    Multiaddr::from(sa.ip()).with(Protocol::Tcp(sa.port()))
}

/// A peer we know addresses of and keep connected to.
#[derive(Debug)]
struct KnownPeer {
    addrs: Vec<Multiaddr>,
    /// Our dial in flight, if any.
    dialing: Option<ConnectionId>,
    backoff: Duration,
    next_dial: Instant,
}

impl KnownPeer {
    fn new() -> Self {
        Self {
            addrs: Vec::new(),
            dialing: None,
            backoff: BACKOFF_MIN,
            next_dial: Instant::now(),
        }
    }
}

/// Who a dial of ours was for.
#[derive(Debug)]
enum DialTarget {
    Peer(PeerId),
    Seed(usize, Multiaddr),
}

/// An established connection.
#[derive(Debug)]
struct Conn {
    remote: Multiaddr,
    ping_failures: u32,
}

/// An answer to an inbound request, prepared off the swarm loop.
struct Reply {
    peer: PeerId,
    channel: ResponseChannel<RpcResponse>,
    outcome: ReplyOutcome,
}

enum ReplyOutcome {
    Ready(Vec<u8>),
    /// The application dropped the request or did not answer in time.
    Unanswered,
    /// The answer could not be sent (too large, not encodable).
    Failed(String),
}

/// A seed's host name, resolved.
struct Resolved {
    seed: usize,
    result: std::io::Result<Vec<SocketAddr>>,
}

/// Delivery to the application without ever waiting for it.
struct EventSink {
    tx: mpsc::Sender<MeshEvent>,
    overflow: VecDeque<MeshEvent>,
    closed: bool,
    overflow_warned: bool,
}

impl EventSink {
    fn emit(&mut self, event: MeshEvent) {
        if self.closed {
            return;
        }
        if !self.overflow.is_empty() {
            self.queue(event);
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.queue(event),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!("mesh: event receiver dropped; events are discarded");
                self.closed = true;
            }
        }
    }

    fn queue(&mut self, event: MeshEvent) {
        if self.overflow.len() < EVENT_OVERFLOW_CAPACITY {
            self.overflow.push_back(event);
            self.overflow_warned = false;
        } else if !self.overflow_warned {
            warn!("mesh: the application is not consuming mesh events; dropping events");
            self.overflow_warned = true;
        }
    }
}

/// Everything [`Driver::new`] needs.
pub(crate) struct DriverParts {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) topic: IdentTopic,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) events: mpsc::Sender<MeshEvent>,
    pub(crate) seeds: Vec<Seed>,
    pub(crate) advertise: Option<IpAddr>,
    pub(crate) advertised: Arc<RwLock<Vec<Multiaddr>>>,
    pub(crate) listening: oneshot::Sender<Result<(), String>>,
    pub(crate) request_timeout: Duration,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Metrics,
}

/// The swarm task's state.
pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    commands: mpsc::UnboundedReceiver<Command>,
    events: EventSink,
    replies_tx: mpsc::UnboundedSender<Reply>,
    replies_rx: mpsc::UnboundedReceiver<Reply>,
    resolved_tx: mpsc::UnboundedSender<Resolved>,
    resolved_rx: mpsc::UnboundedReceiver<Resolved>,
    pending: HashMap<request_response::OutboundRequestId, PendingRequest>,
    peers: HashMap<PeerId, KnownPeer>,
    seeds: Vec<Seed>,
    dials: HashMap<ConnectionId, DialTarget>,
    conns: HashMap<ConnectionId, Conn>,
    warned: HashMap<String, Instant>,
    advertise: Option<IpAddr>,
    listen_addrs: Vec<Multiaddr>,
    advertised: Arc<RwLock<Vec<Multiaddr>>>,
    listening: Option<oneshot::Sender<Result<(), String>>>,
    request_timeout: Duration,
    stats: Arc<Stats>,
    /// libp2p's metrics, in the registry given to [`Mesh::start`](super::Mesh::start).
    metrics: Metrics,
}

type PendingRequest = oneshot::Sender<Result<Vec<u8>, MeshError>>;

impl Driver {
    pub(crate) fn new(parts: DriverParts) -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let (resolved_tx, resolved_rx) = mpsc::unbounded_channel();
        Self {
            swarm: parts.swarm,
            topic: parts.topic,
            commands: parts.commands,
            events: EventSink {
                tx: parts.events,
                overflow: VecDeque::new(),
                closed: false,
                overflow_warned: false,
            },
            replies_tx,
            replies_rx,
            resolved_tx,
            resolved_rx,
            pending: HashMap::new(),
            peers: HashMap::new(),
            seeds: parts.seeds,
            dials: HashMap::new(),
            conns: HashMap::new(),
            warned: HashMap::new(),
            advertise: parts.advertise,
            listen_addrs: Vec::new(),
            advertised: parts.advertised,
            listening: Some(parts.listening),
            request_timeout: parts.request_timeout,
            stats: parts.stats,
            metrics: parts.metrics,
        }
    }

    /// Runs until every handle is dropped or `Shutdown` arrives.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(REDIAL_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            // A clone, so a granted permit does not borrow `self`.
            let events_tx = self.events.tx.clone();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(done)) => break Some(done),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                Some(reply) = self.replies_rx.recv() => self.on_reply(reply),
                Some(resolved) = self.resolved_rx.recv() => self.on_resolved(resolved),
                _ = tick.tick() => self.redial(),
                permit = events_tx.reserve(), if !self.events.overflow.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.events.overflow.pop_front() {
                                permit.send(event);
                            }
                        }
                        Err(_) => {
                            self.events.closed = true;
                            self.events.overflow.clear();
                        }
                    }
                }
            }
        };
        info!("mesh: peer {} stopping", self.swarm.local_peer_id());
        // Dropping the swarm closes the listener and every connection.
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request { peer, bytes, reply } => {
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(MeshError::Unreachable(
                        "cannot send a request to the local node".into(),
                    )));
                    return;
                }
                let addrs = self
                    .peers
                    .get(&peer)
                    .map(|k| k.addrs.clone())
                    .unwrap_or_default();
                let id = self.swarm.behaviour_mut().rpc.send_request_with_addresses(
                    &peer,
                    RpcRequest::Bytes(bytes),
                    addrs,
                );
                self.pending.insert(id, reply);
            }
            Command::Publish { data, reply } => {
                let topic = self.topic.clone();
                let result = match self.swarm.behaviour_mut().gossip.publish(topic, data) {
                    Ok(_) => Ok(()),
                    Err(PublishError::NoPeersSubscribedToTopic) => {
                        debug!("mesh: status not published: no subscribed peer yet");
                        Ok(())
                    }
                    Err(PublishError::Duplicate) => {
                        debug!("mesh: status not published: identical to a previous one");
                        Ok(())
                    }
                    Err(e) => Err(MeshError::Publish(e.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::AddPeerAddrs { peer, addrs } => self.learn_addrs(peer, addrs),
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Shutdown(_) => {} // handled in `run`
            #[cfg(test)]
            Command::KnownAddrs(peer, reply) => {
                let addrs = self.peers.get(&peer).map(|k| k.addrs.clone());
                let _ = reply.send(addrs.unwrap_or_default());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.on_ping(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let remote = endpoint.get_remote_address().clone();
                let direction = if endpoint.is_dialer() {
                    "outbound"
                } else {
                    "inbound"
                };
                info!("mesh: connected to {peer_id} at {remote} ({direction})");
                if endpoint.is_dialer() {
                    self.warned.remove(&format!("out:{remote}"));
                }
                self.conns.insert(
                    connection_id,
                    Conn {
                        remote: remote.clone(),
                        ping_failures: 0,
                    },
                );
                match self.dials.remove(&connection_id) {
                    Some(DialTarget::Peer(peer)) => {
                        if let Some(known) = self.peers.get_mut(&peer) {
                            known.dialing = None;
                        }
                    }
                    Some(DialTarget::Seed(index, addr)) => {
                        if let Some(seed) = self.seeds.get_mut(index) {
                            seed.busy = false;
                            seed.backoff = BACKOFF_MIN;
                            seed.peer = Some(peer_id);
                        }
                        self.learn_addrs(peer_id, vec![addr]);
                    }
                    None => {}
                }
                if let Some(known) = self.peers.get_mut(&peer_id) {
                    known.backoff = BACKOFF_MIN;
                    known.next_dial = Instant::now();
                }
                if num_established.get() == 1 {
                    self.events.emit(MeshEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
            } => {
                self.conns.remove(&connection_id);
                let remote = endpoint.get_remote_address();
                match cause {
                    Some(cause) => info!(
                        "mesh: connection to {peer_id} at {remote} closed: {}",
                        error_chain(&cause)
                    ),
                    None => info!("mesh: connection to {peer_id} at {remote} closed"),
                }
                if num_established == 0 {
                    if let Some(known) = self.peers.get_mut(&peer_id) {
                        // Redial at the next tick; backoff starts over.
                        known.backoff = BACKOFF_MIN;
                        known.next_dial = Instant::now();
                    }
                    self.events.emit(MeshEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                self.stats.failed_incoming.fetch_add(1, Ordering::Relaxed);
                if let libp2p::swarm::ListenError::LocalPeerId { .. } = error {
                    // Our own dial of a seed that is this node.
                    debug!("mesh: incoming connection from ourselves at {send_back_addr}");
                    return;
                }
                let ip = ip_of(&send_back_addr)
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| send_back_addr.to_string());
                let problem = error_chain(&error);
                let hint = if problem.contains(WRONG_KEY)
                    || !matches!(error, libp2p::swarm::ListenError::Transport(_))
                {
                    ""
                } else {
                    " (not a Skein node, or a network problem?)"
                };
                self.warn_limited(
                    format!("in:{ip}"),
                    format!(
                        "mesh: incoming connection from {send_back_addr} failed: {problem}{hint}"
                    ),
                );
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_dial_error(connection_id, peer_id, error),
            SwarmEvent::NewListenAddr { address, .. } => {
                debug!("mesh: listening on {address}");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
                self.update_advertised();
                if let Some(listening) = self.listening.take() {
                    let _ = listening.send(Ok(()));
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.update_advertised();
            }
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            }
            | SwarmEvent::ListenerError { error, .. } => {
                warn!("mesh: listener failed: {error}");
                if let Some(listening) = self.listening.take() {
                    let _ = listening.send(Err(error.to_string()));
                }
            }
            _ => {}
        }
    }

    /// Feeds libp2p's metrics (request-response has no recorder).
    fn record(&self, event: &SwarmEvent<BehaviourEvent>) {
        self.metrics.record(event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.metrics.record(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.metrics.record(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(event)) => self.metrics.record(event),
            _ => {}
        }
    }

    fn on_dial_error(
        &mut self,
        connection_id: ConnectionId,
        peer_id: Option<PeerId>,
        error: DialError,
    ) {
        let target = self.dials.remove(&connection_id);
        let who = match (&target, peer_id) {
            (Some(DialTarget::Seed(index, _)), _) => self
                .seeds
                .get(*index)
                .map(|s| format!("seed {}", s.text))
                .unwrap_or_else(|| "seed".into()),
            (_, Some(peer)) => format!("peer {peer}"),
            (_, None) => "peer".into(),
        };
        match &error {
            DialError::Transport(failures) => {
                for (addr, failure) in failures {
                    self.warn_limited(
                        format!("out:{addr}"),
                        format!(
                            "mesh: cannot connect to {who} at {addr}: {}",
                            error_chain(failure)
                        ),
                    );
                }
            }
            DialError::WrongPeerId { obtained, address } => self.warn_limited(
                format!("out:{address}"),
                format!(
                    "mesh: {who} at {address} turned out to be {obtained}; forgetting that address"
                ),
            ),
            DialError::LocalPeerId { .. } | DialError::DialPeerConditionFalse(_) => {}
            other => debug!("mesh: dial of {who} failed: {other}"),
        }
        match target {
            Some(DialTarget::Peer(peer)) => {
                if let Some(known) = self.peers.get_mut(&peer) {
                    if let DialError::WrongPeerId { address, .. } = &error {
                        known.addrs.retain(|a| a != address);
                    }
                    known.dialing = None;
                    known.next_dial = Instant::now() + known.backoff;
                    known.backoff = (known.backoff * 2).min(BACKOFF_MAX);
                }
            }
            Some(DialTarget::Seed(index, _)) => {
                if let Some(seed) = self.seeds.get_mut(index) {
                    seed.busy = false;
                    if let DialError::LocalPeerId { .. } = error {
                        info!("mesh: seed {} is this node; not dialing it", seed.text);
                        seed.is_self = true;
                    } else {
                        seed.next_dial = Instant::now() + seed.backoff;
                        seed.backoff = (seed.backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            // A dial started by request-response: the request fails by itself.
            None => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<RpcRequest, RpcResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let error = match error {
                    OutboundFailure::DialFailure => {
                        MeshError::Unreachable(format!("cannot connect to {peer}"))
                    }
                    OutboundFailure::Timeout => MeshError::Timeout,
                    OutboundFailure::ConnectionClosed => MeshError::ConnectionLost(format!(
                        "connection to {peer} closed before its answer"
                    )),
                    OutboundFailure::UnsupportedProtocols => {
                        MeshError::Unreachable(format!("{peer} does not speak {PROTOCOL}"))
                    }
                    OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        warn!("mesh: bad response from {peer}: {e}");
                        MeshError::Codec(e.to_string())
                    }
                    OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        MeshError::Remote(format!(
                            "{peer} closed the stream without an answer (it rejected or dropped the request)"
                        ))
                    }
                    OutboundFailure::Io(e) => MeshError::Remote(e.to_string()),
                };
                debug!("mesh: request to {peer} failed: {error}");
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => match error {
                request_response::InboundFailure::Timeout => warn!(
                    "mesh: request from {peer} not answered within {:?}",
                    self.request_timeout
                ),
                other => debug!("mesh: inbound request from {peer} failed: {other}"),
            },
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        request: RpcRequest,
        channel: ResponseChannel<RpcResponse>,
    ) {
        match request {
            RpcRequest::Bytes(bytes) => {
                let (reply, answer) = oneshot::channel::<Vec<u8>>();
                self.events.emit(MeshEvent::Request {
                    from: peer,
                    bytes,
                    reply,
                });
                let replies = self.replies_tx.clone();
                let wait = self.request_timeout;
                tokio::spawn(async move {
                    let outcome = match tokio::time::timeout(wait, answer).await {
                        Ok(Ok(bytes)) if bytes.len() <= MAX_MESSAGE_BYTES => {
                            ReplyOutcome::Ready(bytes)
                        }
                        Ok(Ok(bytes)) => ReplyOutcome::Failed(format!(
                            "response of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                            bytes.len()
                        )),
                        Ok(Err(_)) | Err(_) => ReplyOutcome::Unanswered,
                    };
                    let _ = replies.send(Reply {
                        peer,
                        channel,
                        outcome,
                    });
                });
            }
            RpcRequest::Invalid(problem) => {
                self.stats.rejected_requests.fetch_add(1, Ordering::Relaxed);
                self.warn_limited_every(
                    PROTOCOL_WARN_INTERVAL,
                    format!("rpc:{peer}"),
                    format!("mesh: dropped a malformed request from {peer}: {problem}"),
                );
                drop(channel);
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        match reply.outcome {
            ReplyOutcome::Ready(bytes) => {
                let sent = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(reply.channel, bytes);
                if sent.is_err() {
                    debug!(
                        "mesh: answer to {} dropped: the request timed out or its connection closed",
                        reply.peer
                    );
                }
            }
            ReplyOutcome::Unanswered => {
                debug!("mesh: request from {} left unanswered", reply.peer);
            }
            ReplyOutcome::Failed(problem) => {
                warn!("mesh: cannot answer {}: {problem}", reply.peer);
            }
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = match self.check_gossip(&message) {
                    Ok(from) => {
                        self.events.emit(MeshEvent::Gossip {
                            from,
                            bytes: message.data,
                        });
                        MessageAcceptance::Accept
                    }
                    Err(problem) => {
                        let author = message
                            .source
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "unknown author".into());
                        self.warn_limited_every(PROTOCOL_WARN_INTERVAL, format!("gossip:{propagation_source}"),
                            format!(
                                "mesh: rejected gossip from {author} via {propagation_source}: {problem}"
                            ),
                        );
                        MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                debug!("mesh: {peer_id} subscribed to {topic}");
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                debug!("mesh: {peer_id} unsubscribed from {topic}");
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                debug!("mesh: {peer_id} does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => {
                debug!("mesh: {peer_id} is slow to take gossip");
            }
        }
    }

    /// Vets a gossiped message as far as the mesh can: signed, on our
    /// topic, within the size limit. Its contents are the application's to
    /// judge (it decodes them and checks the author's claims).
    fn check_gossip(&self, message: &gossipsub::Message) -> Result<PeerId, String> {
        let from = message
            .source
            .ok_or_else(|| "unsigned message".to_string())?;
        if message.topic != self.topic.hash() {
            return Err(format!("unexpected topic {}", message.topic));
        }
        if message.data.len() > MAX_GOSSIP_BYTES {
            return Err(format!(
                "message of {} bytes exceeds the limit of {MAX_GOSSIP_BYTES} bytes",
                message.data.len()
            ));
        }
        Ok(from)
    }

    fn on_identify(&mut self, event: identify::Event) {
        match event {
            identify::Event::Received {
                connection_id,
                peer_id,
                info,
            } => {
                if info.protocol_version != IDENTIFY_PROTOCOL {
                    debug!(
                        "mesh: {peer_id} speaks identify version {:?}",
                        info.protocol_version
                    );
                }
                // A peer's loopback addresses only mean something if we reach
                // it over loopback ourselves.
                let via_loopback = self
                    .conns
                    .get(&connection_id)
                    .is_some_and(|c| is_loopback(&c.remote));
                let addrs = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| via_loopback || !is_loopback(a))
                    .collect();
                self.learn_addrs(peer_id, addrs);
            }
            identify::Event::Error { peer_id, error, .. } => {
                debug!("mesh: identify with {peer_id} failed: {error}");
            }
            _ => {}
        }
    }

    fn on_ping(&mut self, event: ping::Event) {
        let Some(conn) = self.conns.get_mut(&event.connection) else {
            return;
        };
        match event.result {
            Ok(_) => conn.ping_failures = 0,
            Err(ping::Failure::Unsupported) => {}
            Err(failure) => {
                conn.ping_failures += 1;
                if conn.ping_failures >= PING_FAILURES_BEFORE_CLOSE {
                    info!(
                        "mesh: closing connection to {} at {}: {} pings in a row failed ({failure})",
                        event.peer, conn.remote, conn.ping_failures
                    );
                    conn.ping_failures = 0;
                    self.swarm.close_connection(event.connection);
                } else {
                    debug!("mesh: ping to {} failed: {failure}", event.peer);
                }
            }
        }
    }

    /// Remembers dialable addresses of `peer` (newest first, bounded).
    fn learn_addrs(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let fresh: Vec<Multiaddr> = addrs.iter().filter_map(|a| dialable(a, &peer)).collect();
        if fresh.is_empty() {
            return;
        }
        let known = self.peers.entry(peer).or_insert_with(KnownPeer::new);
        for addr in fresh.into_iter().rev() {
            known.addrs.retain(|a| *a != addr);
            known.addrs.insert(0, addr);
        }
        known.addrs.truncate(MAX_ADDRS_PER_PEER);
    }

    /// The redial pass: known peers first, then seeds.
    fn redial(&mut self) {
        let now = Instant::now();
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .peers
            .iter()
            .filter(|(peer, known)| {
                known.dialing.is_none()
                    && !known.addrs.is_empty()
                    && known.next_dial <= now
                    && !self.swarm.is_connected(peer)
            })
            .map(|(peer, known)| (*peer, known.addrs.clone()))
            .collect();
        for (peer, addrs) in due {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    debug!("mesh: dialing {peer}");
                    self.dials.insert(id, DialTarget::Peer(peer));
                    if let Some(known) = self.peers.get_mut(&peer) {
                        known.dialing = Some(id);
                    }
                }
                // Connected meanwhile, or request-response is dialing it.
                Err(DialError::DialPeerConditionFalse(_)) => {}
                Err(e) => {
                    debug!("mesh: cannot dial {peer}: {e}");
                    if let Some(known) = self.peers.get_mut(&peer) {
                        known.next_dial = now + known.backoff;
                        known.backoff = (known.backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
        for index in 0..self.seeds.len() {
            if self.seed_due(index, now) {
                self.start_seed(index);
            }
        }
    }

    fn seed_due(&self, index: usize, now: Instant) -> bool {
        let Some(seed) = self.seeds.get(index) else {
            return false;
        };
        if seed.is_self || seed.busy || seed.next_dial > now {
            return false;
        }
        match seed.peer {
            Some(peer) => {
                !self.swarm.is_connected(&peer)
                    && self.peers.get(&peer).is_none_or(|k| k.dialing.is_none())
            }
            None => true,
        }
    }

    fn start_seed(&mut self, index: usize) {
        let Some(seed) = self.seeds.get_mut(index) else {
            return;
        };
        seed.busy = true;
        match seed.addr.clone() {
            SeedAddr::Addr(addr) => self.dial_seed(index, addr),
            SeedAddr::Host { host, port } => {
                let resolved = self.resolved_tx.clone();
                tokio::spawn(async move {
                    let result = tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map(|addrs| addrs.collect());
                    let _ = resolved.send(Resolved {
                        seed: index,
                        result,
                    });
                });
            }
        }
    }

    fn on_resolved(&mut self, resolved: Resolved) {
        let Some(seed) = self.seeds.get_mut(resolved.seed) else {
            return;
        };
        let addrs = match resolved.result {
            Ok(addrs) if !addrs.is_empty() => addrs,
            other => {
                let text = seed.text.clone();
                let problem = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "no address".to_string(),
                };
                self.seed_failed(resolved.seed);
                self.warn_limited(
                    format!("dns:{text}"),
                    format!("mesh: cannot resolve seed {text}: {problem}"),
                );
                return;
            }
        };
        // Rotate through the answers across attempts.
        let addr = addrs[seed.attempts % addrs.len()];
        seed.attempts = seed.attempts.wrapping_add(1);
        self.dial_seed(resolved.seed, socket_multiaddr(addr));
    }

    fn dial_seed(&mut self, index: usize, addr: Multiaddr) {
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                debug!("mesh: dialing seed at {addr}");
                self.dials.insert(id, DialTarget::Seed(index, addr));
            }
            Err(e) => {
                self.seed_failed(index);
                self.warn_limited(
                    format!("out:{addr}"),
                    format!("mesh: cannot dial seed at {addr}: {e}"),
                );
            }
        }
    }

    fn seed_failed(&mut self, index: usize) {
        if let Some(seed) = self.seeds.get_mut(index) {
            seed.busy = false;
            seed.next_dial = Instant::now() + seed.backoff;
            seed.backoff = (seed.backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn update_advertised(&mut self) {
        let addrs = advertised(&self.listen_addrs, self.advertise);
        if self.advertise.is_some() {
            for addr in &addrs {
                self.swarm.add_external_address(addr.clone());
            }
        }
        match self.advertised.write() {
            Ok(mut shared) => *shared = addrs,
            Err(poisoned) => *poisoned.into_inner() = addrs,
        }
    }

    /// warn! once per `key` per [`WARN_INTERVAL`], debug! otherwise.
    fn warn_limited(&mut self, key: String, message: String) {
        self.warn_limited_every(WARN_INTERVAL, key, message);
    }

    /// warn! once per `key` per `interval`, debug! otherwise.
    fn warn_limited_every(&mut self, interval: Duration, key: String, message: String) {
        let now = Instant::now();
        if self.warned.len() > 4096 {
            self.warned
                .retain(|_, at| now.duration_since(*at) < WARN_INTERVAL);
        }
        match self.warned.get(&key) {
            Some(at) if now.duration_since(*at) < interval => debug!("{message}"),
            _ => {
                warn!("{message}");
                self.warned.insert(key, now);
            }
        }
    }
}

/// The addresses to give others: the advertise IP on each listen port, or
/// the listen addresses without loopback/link-local (unless that is all).
pub(crate) fn advertised(listen: &[Multiaddr], advertise: Option<IpAddr>) -> Vec<Multiaddr> {
    if let Some(ip) = advertise {
        let mut out: Vec<Multiaddr> = Vec::new();
        for addr in listen {
            if let Some(port) = tcp_port(addr) {
                let ma = socket_multiaddr(SocketAddr::new(ip, port));
                if !out.contains(&ma) {
                    out.push(ma);
                }
            }
        }
        return out;
    }
    let routable: Vec<Multiaddr> = listen
        .iter()
        .filter(|a| ip_of(a).is_some_and(|ip| !ip.is_loopback() && !is_link_local(ip)))
        .cloned()
        .collect();
    if routable.is_empty() {
        listen.to_vec()
    } else {
        routable
    }
}

/// `addr` reduced to `/ip4|ip6/…/tcp/…`, if it is a dialable address of
/// `peer` (a trailing `/p2p/` must name `peer`).
fn dialable(addr: &Multiaddr, peer: &PeerId) -> Option<Multiaddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return None;
    }
    let port = match parts.next()? {
        Protocol::Tcp(port) if port != 0 => port,
        _ => return None,
    };
    match (parts.next(), parts.next()) {
        (None, _) => {}
        (Some(Protocol::P2p(id)), None) if id == *peer => {}
        _ => return None,
    }
    Some(socket_multiaddr(SocketAddr::new(ip, port)))
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

fn is_loopback(addr: &Multiaddr) -> bool {
    ip_of(addr).is_some_and(|ip| ip.is_loopback())
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// An error with its sources, for one log line (empty and repeated
/// messages skipped: libp2p wraps errors in layers that add nothing).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    if parts.is_empty() {
        "unknown error".to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn seeds_parse() {
        let ok = [
            "10.0.0.1:7421",
            "[::1]:7421",
            "node-a.example:7421",
            "/ip4/10.0.0.1/tcp/7421",
            "/dns4/node-a/tcp/7421",
        ];
        for s in ok {
            Seed::parse(s).unwrap_or_else(|e| panic!("{s}: {e:#}"));
        }
        assert!(matches!(
            Seed::parse("/dns/node-a/tcp/1").unwrap().addr,
            SeedAddr::Host { ref host, port: 1 } if host == "node-a"
        ));
        for s in [
            "node-a",
            "node-a:x",
            ":7421",
            "::1:7421",
            "/ip4/1.2.3.4/udp/1",
        ] {
            assert!(Seed::parse(s).is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn advertised_addresses() {
        let listen = vec![
            ma("/ip4/127.0.0.1/tcp/7421"),
            ma("/ip4/10.1.2.3/tcp/7421"),
            ma("/ip6/fe80::1/tcp/7421"),
        ];
        assert_eq!(
            advertised(&listen, None),
            vec![ma("/ip4/10.1.2.3/tcp/7421")]
        );
        assert_eq!(
            advertised(&listen[..1], None),
            vec![ma("/ip4/127.0.0.1/tcp/7421")]
        );
        assert_eq!(
            advertised(&listen, Some("192.0.2.7".parse().unwrap())),
            vec![ma("/ip4/192.0.2.7/tcp/7421")]
        );
    }

    #[test]
    fn only_plain_tcp_addresses_of_the_peer_are_dialable() {
        let peer = PeerId::random();
        let other = PeerId::random();
        assert_eq!(
            dialable(&ma(&format!("/ip4/10.0.0.1/tcp/1/p2p/{peer}")), &peer),
            Some(ma("/ip4/10.0.0.1/tcp/1"))
        );
        assert!(dialable(&ma(&format!("/ip4/10.0.0.1/tcp/1/p2p/{other}")), &peer).is_none());
        assert!(dialable(&ma("/ip4/0.0.0.0/tcp/1"), &peer).is_none());
        assert!(dialable(&ma("/ip4/10.0.0.1/udp/1/quic-v1"), &peer).is_none());
        assert!(dialable(&ma("/dns4/a/tcp/1"), &peer).is_none());
    }
}
