//! Starts a node: opens its data dir, storage, mesh and Raft, connects
//! Docker, and runs the gossip, executor, healing and voter loops and the
//! API until shutdown. The only module that knows how the others are wired.
//!
//! Every loop runs under a [`Supervisor`]: restarted with backoff when it
//! fails, or stopping the node when it cannot be restarted. The node also
//! stops, with an error (non-zero exit), when a watchdog ([`crate::guard`])
//! finds it can no longer work safely: its data dir vanished, its Raft
//! stopped, or an older process runs with its node id.
//!
//! Shutdown (asked, or on a fatal error) is ordered and bounded by
//! [`SHUTDOWN_BOUND`]: see [`Stopping::run`].

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use skein_protocol::spec::ResourceVec;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::NodeCtx;
use crate::control::{voters, Control};
use crate::events::EventLog;
use crate::executor::stats::UsageBoard;
use crate::executor::{Executor, ExecutorConfig, StatusBoard};
use crate::guard::{self, DataDirMark, Fatal};
use crate::images::{Images, ImagesConfig, ImagesParts};
use crate::membership::local::LocalNode;
use crate::membership::{gossip, HealthTiming, Membership};
use crate::mesh::{self, Mesh, MeshConfig};
use crate::metrics::Metrics;
use crate::raft::log_store::{open_db, LogStore};
use crate::raft::network::Network;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::{RaftPeer, SkeinRaft, StateHandle};
use crate::runtime::{Bridge, ContainerRuntime, DockerRuntime, Runtime};
use crate::secrets::SecretBox;
use crate::state::{node_id_str, ClusterState, NodeId};
use crate::supervise::Supervisor;
use crate::{api, assignments, inbound};

/// Shortest election timeout a node runs with: below it a busy host's
/// heartbeats arrive late often enough to cause needless elections.
pub const MIN_ELECTION_TIMEOUT_MS: u64 = 100;

/// Everything `skein agent` can be told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the node keeps its id, keys, Raft log and state.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on (port 0 = any free port).
    pub api: SocketAddr,
    /// Address the mesh listens on.
    pub mesh: SocketAddr,
    /// IP other nodes should dial (default: derived from the listen address).
    pub advertise: Option<IpAddr>,
    /// Seed mesh addresses (`HOST:PORT`); empty = bootstrap a new cluster.
    pub join: Vec<String>,
    /// Cluster key file; `None` = DATA_DIR/cluster.key, created on bootstrap.
    pub cluster_key: Option<PathBuf>,
    /// Human name of the node.
    pub name: String,
    /// Node labels (region, zone, …) for job constraints.
    pub labels: BTreeMap<String, String>,
    /// Host ports the scheduler may hand out to replicas.
    pub port_range: RangeInclusive<u16>,
    /// Ports services may publish on this node (the routing mesh).
    pub publish_range: RangeInclusive<u16>,
    /// Capacity to advertise instead of what Docker reports.
    pub capacity: Option<ResourceVec>,
    /// Failure detection timing.
    pub health: HealthTiming,
    /// How long a voter may be dead before it is replaced.
    pub voter_grace: Duration,
    /// Raft's election timeout: a voter that hears no leader for this long
    /// (randomised up to twice it) stands; heartbeats go at a quarter of it.
    pub election_timeout: Duration,
    /// Executor timing.
    pub executor: ExecutorConfig,
    /// Addresses the DNS server listens on.
    pub dns: Vec<SocketAddr>,
    /// Networks besides loopback and the Docker bridge whose clients may
    /// use the DNS server for names outside `skein.`.
    pub dns_relay_for: Vec<(IpAddr, u8)>,
    /// Resolver given to containers.
    pub container_dns: ContainerDns,
    /// Address other nodes reach this node's published container ports at.
    pub endpoint_ip: Option<IpAddr>,
    /// Address routing-mesh ports are opened on.
    pub routing_ip: IpAddr,
    /// File holding the bootstrap API token (admin; registered in cluster
    /// state so that every node accepts it, see `api::auth`).
    pub api_token_file: Option<PathBuf>,
    /// Let reads through without a token on this node.
    pub open_reads: bool,
    /// How often container usage is sampled from Docker stats.
    pub stats_interval: Duration,
    /// Docker Engine to use (`unix:///…`, `tcp://…`); `None` = `DOCKER_HOST`
    /// or the local socket.
    pub docker_host: Option<String>,
    /// Image fetch limits.
    pub images: ImagesTuning,
}

/// Image fetch settings an operator may change.
#[derive(Debug, Clone)]
pub struct ImagesTuning {
    /// Registry pulls and peer copies at once.
    pub max_fetches: usize,
    /// Copies served to peers at once.
    pub max_uploads: usize,
    /// Bound on one registry pull.
    pub pull_timeout: Duration,
}

/// Which resolver containers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerDns {
    /// The Docker bridge gateway, where this node's DNS also listens.
    Auto,
    /// Docker's default; service names do not resolve in containers.
    Off,
    /// This address (the DNS server also listens there on port 53).
    Ip(IpAddr),
}

/// File in the data dir holding the node id.
const NODE_ID_FILE: &str = "node-id";
/// File in the data dir holding the API's actual address once it listens.
pub const API_ADDR_FILE: &str = "api.addr";
/// Default cluster key file in the data dir.
pub const CLUSTER_KEY_FILE: &str = "cluster.key";
/// How often the leader checks that every job has its replicas.
const HEAL_INTERVAL: Duration = Duration::from_secs(2);
/// How often this node re-reads its capacity and images from Docker.
const INVENTORY_INTERVAL: Duration = Duration::from_secs(5);
/// How often health is re-judged from gossip silence.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Runs a node on its Docker Engine until `shutdown` resolves.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let docker_host = cfg
        .docker_host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
    let docker = DockerRuntime::connect(&docker_host)
        .with_context(|| format!("cannot use the Docker Engine at {docker_host}"))?;
    docker.ping().await.with_context(|| {
        format!("cannot reach the Docker Engine at {docker_host} (is the daemon running and its socket readable?)")
    })?;
    info!(docker = %docker_host, "docker engine reachable");
    run_with(cfg, Arc::new(docker), shutdown).await
}

/// Runs a node on `runtime` until `shutdown` resolves: [`run`] with Docker,
/// tests with [`crate::runtime::FakeRuntime`] (several nodes in one
/// process, no Docker, no root).
pub async fn run_with(
    cfg: AgentConfig,
    runtime: Runtime,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let id = load_or_create_node_id(&cfg.data_dir)?;
    refuse_if_running_elsewhere(&cfg.data_dir, id).await?;
    let data_dir_mark = DataDirMark::new(&cfg.data_dir.join(NODE_ID_FILE))
        .with_context(|| format!("cannot stat {}", cfg.data_dir.join(NODE_ID_FILE).display()))?;
    let fatal = Fatal::new();

    let psk = load_cluster_key(&cfg)?;
    let secrets = Arc::new(SecretBox::from_psk(&psk));
    let keypair = mesh::key::load_or_create_identity(&cfg.data_dir.join("node.key"))?;
    let mut registry = prometheus_client::registry::Registry::default();
    let (mesh, mesh_events) = Mesh::start(
        MeshConfig {
            listen: cfg.mesh,
            advertise: cfg.advertise,
            join: cfg.join.clone(),
            psk,
            keypair,
            request_timeout: Duration::from_secs(10),
        },
        &mut registry,
    )
    .await
    .with_context(|| format!("cannot start the mesh on {}", cfg.mesh))?;

    let listener = tokio::net::TcpListener::bind(cfg.api)
        .await
        .with_context(|| format!("cannot listen on {} for the API", cfg.api))?;
    let api_addr = listener.local_addr()?;

    let state = StateHandle::new(ClusterState::default());
    let db = open_db(&cfg.data_dir.join("raft.redb"))
        .with_context(|| format!("cannot open raft storage in {}", cfg.data_dir.display()))?;
    let storage = db.clone();
    let log_store = LogStore::new(db.clone()).context("cannot open raft log")?;
    let sm = StateMachineStore::new(db, state.clone())
        .await
        .context("cannot restore state machine")?;
    let election_ms = u64::try_from(cfg.election_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(MIN_ELECTION_TIMEOUT_MS);
    let raft_config = openraft::Config {
        cluster_name: "skein".into(),
        heartbeat_interval: election_ms / 4,
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        install_snapshot_timeout: 2000,
        ..Default::default()
    }
    .validate()?;
    let raft: SkeinRaft = openraft::Raft::new(
        id,
        Arc::new(raft_config),
        Network::new(mesh.clone(), id),
        log_store,
        sm,
    )
    .await?;

    let local = LocalNode {
        id,
        peer_id: mesh.local_peer_id().to_string(),
        name: cfg.name.clone(),
        addr: api_addr.to_string(),
        labels: cfg.labels.clone(),
        port_range: cfg.port_range.clone(),
        publish_range: cfg.publish_range.clone(),
        listeners: listeners(&cfg, api_addr, &mesh),
        capacity_override: cfg.capacity,
        host_access: cfg.executor.host_access.clone(),
    };
    let membership = Arc::new(Membership::new(id, cfg.health));
    let saved = assignments::load(&cfg.data_dir);
    let (synced_tx, synced_rx) = watch::channel(saved.is_some());
    let desired = StateHandle::new(saved.unwrap_or_default());
    let board = StatusBoard::new();
    let events = EventLog::new(id);
    let metrics = Metrics::new(registry);
    let control = Arc::new(Control::new(
        raft.clone(),
        state.clone(),
        membership.clone(),
        board.clone(),
        (events.clone(), metrics.clone()),
        storage.clone(),
    ));
    let images = Images::new(
        ImagesParts {
            docker: runtime.clone(),
            streams: mesh.streams(),
            node: (id, cfg.name.clone()),
            membership: membership.clone(),
            events: events.clone(),
            metrics: metrics.clone(),
            secrets: secrets.clone(),
        },
        ImagesConfig {
            max_fetches: cfg.images.max_fetches,
            max_uploads: cfg.images.max_uploads,
            pull_timeout: cfg.images.pull_timeout,
            corrupt_uploads: std::env::var("SKEIN_TEST_CORRUPT_IMAGE_UPLOADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            ..ImagesConfig::new(cfg.data_dir.join("images"))
        },
    );
    let ctx = Arc::new(NodeCtx {
        local,
        raft: raft.clone(),
        state,
        desired,
        control: control.clone(),
        membership,
        board,
        mesh,
        runtime,
        events,
        usage: UsageBoard::new(),
        metrics,
        images,
        secrets,
        storage,
        refreshed: tokio::sync::Mutex::new(None),
    });
    let record = ctx
        .refresh_self()
        .await
        .context("cannot read node capacity from Docker")?;
    info!(
        node = %node_id_str(id),
        name = %cfg.name,
        peer = %record.peer_id,
        mesh = ?record.mesh_addrs,
        cpu_millis = record.capacity.cpu_millis,
        memory_bytes = record.capacity.memory_bytes,
        images = record.images.len(),
        "node starting"
    );

    // No bridge (a runtime without one): containers get no resolver of
    // ours and no DNS listener is opened for them.
    let bridge = ctx.runtime.bridge().await.unwrap_or_default();
    let container_dns = match cfg.container_dns {
        ContainerDns::Off => None,
        ContainerDns::Ip(ip) => Some(ip),
        ContainerDns::Auto => bridge.gateways.first().copied(),
    };
    let endpoint_ip = cfg
        .endpoint_ip
        .or(cfg.advertise)
        .or_else(|| first_routable_ip(&ctx.mesh.advertised_addrs()))
        .or_else(outbound_ip)
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    info!(endpoint_ip = %endpoint_ip, container_dns = ?container_dns, "services");

    if !raft.is_initialized().await? {
        if cfg.join.is_empty() {
            info!(node = %node_id_str(id), "no --join: bootstrapping a new cluster with this node as its first voter");
            let me = RaftPeer {
                name: cfg.name.clone(),
                addr: api_addr.to_string(),
                peer_id: record.peer_id.clone(),
                mesh_addrs: record.mesh_addrs.clone(),
            };
            raft.initialize(BTreeMap::from([(id, me)])).await?;
        } else {
            info!(seeds = ?cfg.join, "joining a cluster through its seeds");
        }
    }

    let token = match &cfg.api_token_file {
        None => None,
        Some(path) => {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the API token file {}", path.display()))?
                .trim()
                .to_string();
            if t.is_empty() {
                bail!("the API token file {} is empty", path.display());
            }
            Some(t)
        }
    };
    // A node that created the cluster, or restarts with saved state, knows
    // the token set at once; one joining afresh learns it with its first
    // assignments.
    let known = (!cfg.join.is_empty()).then(|| synced_rx.clone());
    let auth = Arc::new(api::auth::Auth::new(
        ctx.state.clone(),
        ctx.desired.clone(),
        token.as_deref(),
        cfg.open_reads,
        known,
    ));
    drop(token);
    let drain = api::drain::Drain::new();
    let router = api::router(ctx.clone(), auth.clone(), drain.clone());
    let mut loops = Supervisor::new(fatal.clone());

    // Services: DNS and routing mesh answer from tables built from gossip.
    let mut dns_listen = cfg.dns.clone();
    if let Some(ip) = container_dns {
        let addr = SocketAddr::new(ip, 53);
        if !dns_listen.contains(&addr) {
            dns_listen.push(addr);
        }
    }
    let (dns_tx, dns_rx) = watch::channel(Arc::new(crate::dns::ServiceTable::new()));
    let (routing_tx, routing_rx) = watch::channel(Arc::new(crate::routing::RoutingTable::new()));
    let exclude: Vec<IpAddr> = dns_listen.iter().map(SocketAddr::ip).collect();
    let upstream = crate::dns::system_upstreams(&exclude);
    let mut relay_networks = bridge_subnets(&bridge);
    relay_networks.extend(cfg.dns_relay_for.iter().copied());
    info!(networks = ?relay_networks, "dns relays other names for loopback and these networks only");
    let relay = crate::dns::RelayPolicy {
        networks: relay_networks,
        ..crate::dns::RelayPolicy::default()
    };
    // Each address on its own: one that cannot be bound (taken by another
    // agent on this host, say) must not take the others down.
    let mut dns_bound = Vec::new();
    for addr in dns_listen {
        match crate::dns::bind_with(vec![addr], dns_rx.clone(), upstream.clone(), relay.clone())
            .await
        {
            Ok(server) => {
                info!(%addr, "dns listening");
                dns_bound.push(addr);
                // The first run uses the socket bound above (so that a taken
                // address is known now); a restart binds afresh.
                let mut bound = Some(server);
                let (rx, up, relay) = (dns_rx.clone(), upstream.clone(), relay.clone());
                loops.restart(format!("dns {addr}"), move || {
                    let first = bound.take();
                    let (rx, up, relay) = (rx.clone(), up.clone(), relay.clone());
                    async move {
                        let server = match first {
                            Some(s) => Ok(s),
                            None => crate::dns::bind_with(vec![addr], rx, up, relay).await,
                        };
                        if let Err(e) = async { server?.run().await }.await {
                            warn!(%addr, error = %e, "dns server stopped");
                        }
                    }
                });
            }
            Err(e) => warn!(%addr, error = %e, "cannot serve dns here"),
        }
    }
    // Containers only get a resolver that answers.
    let container_dns = container_dns.filter(|ip| dns_bound.contains(&SocketAddr::new(*ip, 53)));
    let routing_ip = cfg.routing_ip;
    loops.restart("routing", move || {
        crate::routing::run(routing_ip, routing_rx.clone())
    });
    let services = (ctx.membership.clone(), dns_tx, routing_tx);
    loops.restart("services", move || {
        crate::services::run(services.0.clone(), services.1.clone(), services.2.clone())
    });
    // The mesh hands its event receiver out once: neither the guard in
    // front of `inbound` nor `inbound` itself can be started again.
    let door = guard::Door {
        local: ctx.local.clone(),
        membership: ctx.membership.clone(),
        events: ctx.events.clone(),
    };
    let (admit, mesh_events) = guard::guard_inbound(door, mesh_events, fatal.clone());
    loops.essential("mesh guard", admit);
    loops.essential(
        "inbound",
        inbound::run(ctx.clone(), router.clone(), mesh_events),
    );
    {
        let ctx = ctx.clone();
        loops.restart("auth", move || api::auth::run(auth.clone(), ctx.clone()));
    }
    {
        let fatal = fatal.clone();
        loops.restart("data dir watch", move || {
            guard::watch_data_dir(data_dir_mark.clone(), fatal.clone())
        });
    }
    {
        let (raft, fatal) = (ctx.raft.clone(), fatal.clone());
        loops.restart("raft watch", move || {
            guard::watch_raft(raft.clone(), fatal.clone())
        });
    }
    {
        let (state, desired, fatal) = (ctx.state.clone(), ctx.desired.clone(), fatal.clone());
        loops.restart("schema watch", move || {
            guard::watch_schema(state.clone(), desired.clone(), fatal.clone())
        });
    }
    {
        let (storage, raft, me, events) = (
            ctx.storage.clone(),
            ctx.raft.clone(),
            (id, ctx.local.name.clone()),
            ctx.events.clone(),
        );
        loops.restart("storage watch", move || {
            guard::watch_storage(storage.clone(), raft.clone(), me.clone(), events.clone())
        });
    }
    // The mesh accepts the image protocol once per node life.
    let images = ctx.images.clone();
    loops.essential("image copies", async move { images.serve().await });
    {
        let ctx = ctx.clone();
        loops.restart("publish", move || publish_loop(ctx.clone(), endpoint_ip));
    }
    {
        let (peers, name, events) = (ctx.peers(), ctx.local.name.clone(), ctx.events.clone());
        loops.restart("cluster events", move || {
            crate::events::watch_cluster(peers.clone(), name.clone(), events.clone())
        });
    }
    loops.once(
        "event backfill",
        crate::events::backfill(ctx.peers(), ctx.mesh.clone(), ctx.events.clone()),
    );
    {
        let (docker, usage, interval) =
            (ctx.runtime.clone(), ctx.usage.clone(), cfg.stats_interval);
        loops.restart("stats", move || {
            crate::executor::stats::run(docker.clone(), id, usage.clone(), interval)
        });
    }
    {
        let membership = ctx.membership.clone();
        loops.restart("health", move || health_loop(membership.clone()));
    }
    {
        let (handles, dir) = (
            assignments::Handles {
                peers: ctx.peers(),
                mesh: ctx.mesh.clone(),
                state: ctx.state.clone(),
                desired: ctx.desired.clone(),
            },
            cfg.data_dir.clone(),
        );
        loops.restart("assignments", move || {
            assignments::run(handles.clone(), dir.clone(), synced_tx.clone())
        });
    }
    let executor_cfg = ExecutorConfig {
        container_dns,
        // Explicit endpoint address: Docker publishes there (it may live in
        // another network namespace than this node).
        probe_ip: cfg.endpoint_ip,
        ..cfg.executor.clone()
    };
    {
        let (runtime, name, desired) = (
            ctx.runtime.clone(),
            ctx.local.name.clone(),
            ctx.desired.clone(),
        );
        let (board, events, images) = (ctx.board.clone(), ctx.events.clone(), ctx.images.clone());
        loops.restart("executor", move || {
            let executor = Executor::new(
                runtime.clone(),
                (id, name.clone()),
                desired.clone(),
                (board.clone(), events.clone()),
                images.clone(),
                executor_cfg.clone(),
            );
            executor_when_synced(executor, synced_rx.clone())
        });
    }
    {
        let (membership, raft, board) =
            (ctx.membership.clone(), ctx.raft.clone(), ctx.board.clone());
        loops.restart("healing", move || {
            heal_loop(
                (membership.clone(), raft.clone(), board.clone()),
                control.clone(),
                id,
            )
        });
    }
    {
        let (peers, state, control, grace) = (
            ctx.peers(),
            ctx.state.clone(),
            ctx.control.clone(),
            cfg.voter_grace,
        );
        loops.restart("voters", move || {
            voters::run(peers.clone(), state.clone(), control.clone(), grace)
        });
    }

    write_atomically(&cfg.data_dir.join(API_ADDR_FILE), &api_addr.to_string())?;
    info!(addr = %api_addr, data_dir = %cfg.data_dir.display(), "api listening");
    let (close_api, api_closed) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = api_closed.await;
            })
            .into_future(),
    );
    let ended = tokio::select! {
        () = shutdown => None,
        () = fatal.raised() => None,
        r = &mut server => Some(r),
    };
    let why = match (&ended, fatal.reason()) {
        (_, Some(reason)) => reason,
        (Some(_), None) => "the API server stopped".to_string(),
        (None, None) => "asked to stop".to_string(),
    };
    info!(why = %why, bound = ?SHUTDOWN_BOUND, "shutting down: refusing writes, containers keep running");
    let parts = Stopping {
        ctx: ctx.clone(),
        drain,
        loops,
        close_api,
        server: ended.is_none().then_some(server),
        graceful: fatal.reason().is_none(),
    };
    let in_time = tokio::time::timeout(SHUTDOWN_BOUND, parts.run())
        .await
        .is_ok();
    // Storage retries end here, so that no blocking thread outlives the node.
    ctx.storage.close();
    if let Some(reason) = fatal.reason() {
        bail!("{reason}");
    }
    match ended {
        Some(Ok(Err(e))) => return Err(e).context("the API server failed"),
        Some(Err(e)) => bail!("the API server panicked: {e}"),
        Some(Ok(Ok(()))) => bail!("the API server stopped by itself"),
        None => {}
    }
    if !in_time {
        bail!(
            "shutdown did not finish within {SHUTDOWN_BOUND:?}: stopped anyway (containers keep running)"
        );
    }
    info!("stopped");
    Ok(())
}

/// How long the ordered shutdown may take before the node exits anyway:
/// with the CLI's last half second for blocking tasks, the process is gone
/// within 5 s of the signal (well under the systemd unit's `TimeoutStopSec`).
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(4);
/// Of which: the longest wait for writes already admitted to commit.
const LAST_WRITES: Duration = Duration::from_secs(2);

/// What a stopping node still has to close, in order.
struct Stopping {
    ctx: Arc<NodeCtx>,
    drain: api::drain::Drain,
    loops: Supervisor,
    close_api: tokio::sync::oneshot::Sender<()>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Asked to stop (rather than stopping on a fatal error): let admitted
    /// writes finish first.
    graceful: bool,
}

impl Stopping {
    /// Refuses new writes, lets the admitted ones commit, hands leadership
    /// to a caught-up voter if it leads (`control::handover`), stops
    /// the loops, leaves the mesh and closes the API. Containers are left
    /// alone: the executor only removes what its assignments no longer
    /// hold, and it is stopped, not told that nothing is assigned.
    async fn run(self) {
        let Stopping {
            ctx,
            drain,
            loops,
            close_api,
            server,
            graceful,
        } = self;
        drain.begin();
        if graceful
            && tokio::time::timeout(LAST_WRITES, drain.writes_done())
                .await
                .is_err()
        {
            warn!(waited = ?LAST_WRITES, "writes still running: stepping down without them");
        }
        if ctx.is_leader() {
            info!("this node leads: handing leadership over");
            if crate::control::handover::hand_over(&ctx.raft, &ctx.membership, &ctx.mesh)
                .await
                .is_none()
            {
                info!("no voter could take over at once: the others elect a new leader");
            }
        }
        let runtime = ctx.raft.runtime_config();
        runtime.heartbeat(false);
        runtime.elect(false);
        if let Err(e) = ctx.raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
        loops.shutdown(Duration::from_secs(1)).await;
        ctx.mesh.shutdown().await;
        // Reads still in flight (or long polls) get what is left of the bound.
        let _ = close_api.send(());
        if let Some(server) = server {
            match server.await {
                Ok(Err(e)) => warn!(error = %e, "api server"),
                Err(e) => warn!(error = %e, "api server task"),
                Ok(Ok(())) => {}
            }
        }
    }
}

fn load_cluster_key(cfg: &AgentConfig) -> Result<libp2p::pnet::PreSharedKey> {
    let psk = match &cfg.cluster_key {
        Some(path) => mesh::key::load(path)?,
        None if !cfg.join.is_empty() => bail!(
            "--join needs --cluster-key FILE: copy the key of the cluster you join \
             (the first node wrote it to DATA_DIR/{CLUSTER_KEY_FILE}; or create one with `skein keygen`)"
        ),
        None => {
            let path = cfg.data_dir.join(CLUSTER_KEY_FILE);
            if path.exists() {
                mesh::key::load(&path)?
            } else {
                let psk = mesh::key::write_new(&path)?;
                info!(path = %path.display(), "created a cluster key: copy it to the nodes that join (--cluster-key)");
                psk
            }
        }
    };
    info!(fingerprint = %mesh::key::fingerprint(&psk), "cluster key loaded");
    Ok(psk)
}

/// This node's own listening ports, so that no service publishes one of
/// them (the routing mesh would fight the node for it).
fn listeners(cfg: &AgentConfig, api: SocketAddr, mesh: &Mesh) -> Vec<(u16, String)> {
    let mut out = vec![(api.port(), "API port".to_string())];
    let mesh_ports = mesh.advertised_addrs().into_iter().filter_map(|a| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
    });
    out.extend(mesh_ports.map(|p| (p, "mesh port".to_string())));
    out.extend(cfg.dns.iter().map(|d| (d.port(), "DNS port".to_string())));
    out.sort();
    out.dedup_by_key(|(p, _)| *p);
    out
}

/// The subnets of the Docker bridge network: this node's containers ask
/// its DNS from there.
fn bridge_subnets(bridge: &Bridge) -> Vec<(IpAddr, u8)> {
    bridge
        .subnets
        .iter()
        .filter_map(|s| crate::dns::parse_network(s))
        .collect()
}

/// The address this host sends from by default: reachable from its own
/// containers and, usually, from other hosts. A UDP "connect" sends nothing.
fn outbound_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// The first non-loopback IP among `addrs`.
fn first_routable_ip(addrs: &[libp2p::Multiaddr]) -> Option<IpAddr> {
    addrs.iter().find_map(|a| {
        a.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
                Some(IpAddr::V4(ip))
            }
            libp2p::multiaddr::Protocol::Ip6(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
                Some(IpAddr::V6(ip))
            }
            _ => None,
        })
    })
}

/// Publishes this node's status twice a second (and re-reads Docker
/// inventory every few seconds).
async fn publish_loop(ctx: Arc<NodeCtx>, endpoint_ip: IpAddr) {
    // Peers drop statuses older than the last they saw: a restarted loop
    // goes on from where the last one stopped.
    let mut seq: u64 = ctx.membership.local_seq();
    let mut last_cut = None;
    let mut last_inventory = tokio::time::Instant::now();
    let mut board_changes = ctx.board.subscribe();
    let mut fetched = ctx.images.subscribe();
    loop {
        let mut inventory_now = false;
        tokio::select! {
            _ = tokio::time::sleep(gossip::PUBLISH_INTERVAL) => {},
            // Our own allocations changed: tell the others now.
            _ = board_changes.changed() => {},
            // An image arrived: peers may copy it from us from now on.
            _ = fetched.changed() => inventory_now = true,
        }
        let record = if inventory_now || last_inventory.elapsed() >= INVENTORY_INTERVAL {
            last_inventory = tokio::time::Instant::now();
            ctx.refresh_self().await
        } else {
            None
        };
        let Some(mut record) = (match record {
            Some(r) => Some(r),
            None => ctx.membership.get(ctx.id()).await,
        }) else {
            continue;
        };
        ctx.fill_live(&mut record).await;
        let statuses = ctx.board.of_node(ctx.id()).await;
        record.endpoints = ctx
            .desired
            .read(|d| crate::services::local_endpoints(ctx.id(), d, &statuses, endpoint_ip))
            .await;
        ctx.membership.observe(record.clone()).await;
        seq += 1;
        ctx.membership.set_local_seq(seq);
        let mut status = gossip::status_of(
            &record,
            statuses,
            record.raft.clone(),
            ctx.events.for_gossip(),
            seq,
        );
        let cut = gossip::fit(&mut status, crate::mesh::MAX_GOSSIP_BYTES);
        if cut != last_cut {
            match cut {
                Some(c) => {
                    warn!(cut = ?c, allocations = status.allocs.len(), "status too large for gossip: trimmed")
                }
                None => info!("status fits in gossip again"),
            }
            last_cut = cut;
        }
        let published = match skein_protocol::codec::encode(&status) {
            Ok(bytes) => ctx.mesh.publish(bytes).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = published {
            tracing::debug!(error = %e, "status not published");
        }
    }
}

async fn health_loop(membership: Arc<Membership>) {
    loop {
        tokio::time::sleep(HEALTH_CHECK_INTERVAL).await;
        membership.check_health().await;
    }
}

/// Starts the executor once this node knows what it should run, so that
/// it never removes containers only because nobody told it about them yet.
async fn executor_when_synced(executor: Executor, mut synced: watch::Receiver<bool>) {
    if synced.wait_for(|s| *s).await.is_err() {
        return;
    }
    executor.run().await;
}

/// On the leader: re-place replicas that are missing or lost with a dead
/// node and step rollouts and drains, right after membership changes,
/// after status changes while a rollout moves, and periodically.
async fn heal_loop(
    (membership, raft, board): (Arc<Membership>, SkeinRaft, StatusBoard),
    control: Arc<Control>,
    id: NodeId,
) {
    let mut changes = membership.subscribe();
    let mut metrics = raft.metrics();
    let mut statuses = board.subscribe();
    // An interval, not a sleep per turn: frequent wake-ups (metrics change
    // on every heartbeat) must not keep postponing the periodic pass.
    let mut tick = tokio::time::interval(HEAL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_leader = None;
    loop {
        tokio::select! {
            _ = changes.changed() => {},
            // A replica became ready or failed: the next rollout step (or
            // a rollback) should not wait for the tick.
            _ = statuses.changed() => {
                if !control.in_motion().await {
                    continue;
                }
            },
            // Metrics change on every heartbeat: only a new leader matters.
            _ = metrics.changed() => {
                let leader = metrics.borrow().current_leader;
                if leader == last_leader {
                    continue;
                }
                last_leader = leader;
            },
            _ = tick.tick() => {},
        }
        if raft.metrics().borrow().current_leader != Some(id) {
            continue;
        }
        if let Err(e) = control.reconcile().await {
            warn!(error = %e, "healing pass failed");
        }
    }
}

/// Refuses to start when the node that last ran this data dir still
/// answers at the API address it recorded there with this node id: the
/// dir is a copy of a live node's (or the same dir, run twice), and two
/// processes with one identity disrupt Raft. A stale file (nobody there,
/// or another node) is no reason to stop.
async fn refuse_if_running_elsewhere(dir: &Path, id: NodeId) -> Result<()> {
    let Ok(addr) = std::fs::read_to_string(dir.join(API_ADDR_FILE)) else {
        return Ok(());
    };
    let addr = addr.trim();
    let Some(status) = probe_status(addr).await else {
        return Ok(());
    };
    if status.node_id == node_id_str(id) {
        bail!(
            "another process runs this node's data dir: node {} answers at {addr} \
             (recorded in {}). A copy of a live node's data dir must not run beside it: \
             give this one a fresh --data-dir (it joins as a new node), or stop the other",
            status.node_id,
            dir.join(API_ADDR_FILE).display()
        );
    }
    Ok(())
}

/// `GET /v1/status` of the node API at `addr`, within a second; `None`
/// when nothing (or no Skein node) answers.
async fn probe_status(addr: &str) -> Option<skein_protocol::api::StatusView> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /v1/status HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.take(64 * 1024).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

fn load_or_create_node_id(dir: &Path) -> Result<NodeId> {
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = u64::from_str_radix(s.trim(), 16).with_context(|| {
                format!("{} is corrupt: expected 16 hex digits", path.display())
            })?;
            if id == 0 {
                bail!("{} holds the reserved id 0", path.display());
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = loop {
                let id: u64 = rand::random();
                if id != 0 {
                    break id;
                }
            };
            write_atomically(&path, &node_id_str(id))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes via a fsynced temp file and rename, so readers never see half a
/// file and a power cut never leaves an empty one.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    crate::files::write_durably(path, contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    /// Loops belong to the supervisor: the only task `agent.rs` spawns by
    /// itself is the API server, whose end `run` awaits.
    #[test]
    fn agent_spawns_no_unsupervised_loop() {
        let src = include_str!("agent.rs");
        let bare = ["tokio", "::spawn("].concat();
        let sets = ["JoinSet", "::new("].concat();
        assert_eq!(src.matches(&bare).count(), 1, "a bare spawn in agent.rs");
        assert_eq!(src.matches(&sets).count(), 0, "an unsupervised JoinSet");
    }
}
