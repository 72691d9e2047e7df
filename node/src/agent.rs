//! Starts a node: opens its data dir, storage and Raft, connects Docker,
//! and runs the executor, the leader's healing loop and the API until
//! shutdown. The only module that knows how the others are wired.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::Docker;
use skein_protocol::spec::ResourceVec;
use tracing::{info, warn};

use crate::api::{self, ApiCtx};
use crate::control::Control;
use crate::executor::{Executor, ExecutorConfig, StatusBoard};
use crate::membership::local::LocalNode;
use crate::membership::Membership;
use crate::raft::log_store::{open_db, LogStore};
use crate::raft::network::Network;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::{RaftPeer, SkeinRaft, StateHandle};
use crate::state::{node_id_str, ClusterState, NodeId};

/// Everything `skein agent` can be told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the node keeps its id, Raft log and state.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on (port 0 = any free port).
    pub api: SocketAddr,
    /// Human name of the node.
    pub name: String,
    /// Node labels (region, zone, …) for job constraints.
    pub labels: BTreeMap<String, String>,
    /// Host ports the scheduler may hand out to replicas.
    pub port_range: RangeInclusive<u16>,
    /// Capacity to advertise instead of what Docker reports.
    pub capacity: Option<ResourceVec>,
    /// Executor timing.
    pub executor: ExecutorConfig,
}

/// File in the data dir holding the node id.
const NODE_ID_FILE: &str = "node-id";
/// File in the data dir holding the API's actual address once it listens.
pub const API_ADDR_FILE: &str = "api.addr";
/// How often the leader checks that every job has its replicas.
const HEAL_INTERVAL: Duration = Duration::from_secs(2);
/// How often this node re-reads its capacity and images from Docker.
const INVENTORY_INTERVAL: Duration = Duration::from_secs(5);

/// Runs a node until `shutdown` resolves.
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let id = load_or_create_node_id(&cfg.data_dir)?;

    let docker = Docker::connect_with_local_defaults().context(
        "cannot reach Docker (is the daemon running and /var/run/docker.sock readable?)",
    )?;
    docker.ping().await.context(
        "cannot reach Docker (is the daemon running and /var/run/docker.sock readable?)",
    )?;

    let listener = tokio::net::TcpListener::bind(cfg.api)
        .await
        .with_context(|| format!("cannot listen on {} for the API", cfg.api))?;
    let api_addr = listener.local_addr()?;

    let state = StateHandle::new(ClusterState::default());
    let db = open_db(&cfg.data_dir.join("raft.redb"))
        .with_context(|| format!("cannot open raft storage in {}", cfg.data_dir.display()))?;
    let log_store = LogStore::new(db.clone()).context("cannot open raft log")?;
    let sm = StateMachineStore::new(db, state.clone())
        .await
        .context("cannot restore state machine")?;

    let raft_config = openraft::Config {
        cluster_name: "skein".into(),
        heartbeat_interval: 150,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        ..Default::default()
    }
    .validate()?;
    let raft: SkeinRaft =
        openraft::Raft::new(id, Arc::new(raft_config), Network, log_store, sm).await?;
    let me = RaftPeer {
        name: cfg.name.clone(),
        addr: api_addr.to_string(),
    };
    if !raft.is_initialized().await? {
        info!(node = %node_id_str(id), "first start: initialising a single-voter cluster");
        raft.initialize(BTreeMap::from([(id, me)])).await?;
    }

    let local = LocalNode {
        id,
        name: cfg.name.clone(),
        addr: api_addr.to_string(),
        labels: cfg.labels.clone(),
        port_range: cfg.port_range.clone(),
        capacity_override: cfg.capacity,
    };
    let membership = Arc::new(Membership::new());
    let record = local
        .read(&docker)
        .await
        .context("cannot read node capacity from Docker")?;
    info!(
        node = %node_id_str(id),
        name = %cfg.name,
        cpu_millis = record.capacity.cpu_millis,
        memory_bytes = record.capacity.memory_bytes,
        images = record.images.len(),
        "node capacity"
    );
    membership.upsert(record).await;

    let board = StatusBoard::new();
    let control = Arc::new(Control::new(
        raft.clone(),
        state.clone(),
        membership.clone(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        Executor::new(
            docker.clone(),
            id,
            state.clone(),
            board.clone(),
            cfg.executor.clone(),
        )
        .run(),
    );
    tasks.spawn(inventory_loop(
        local.clone(),
        docker.clone(),
        membership.clone(),
    ));
    tasks.spawn(heal_loop(raft.clone(), control.clone(), id));

    let ctx = Arc::new(ApiCtx {
        control,
        state,
        board,
        membership,
        local,
        docker,
    });
    write_atomically(&cfg.data_dir.join(API_ADDR_FILE), &api_addr.to_string())?;
    info!(addr = %api_addr, data_dir = %cfg.data_dir.display(), "api listening");
    axum::serve(listener, api::router(ctx))
        .with_graceful_shutdown(shutdown)
        .await?;
    info!("shutting down");
    tasks.abort_all();
    if let Err(e) = raft.shutdown().await {
        warn!(error = %e, "raft shutdown");
    }
    Ok(())
}

/// Keeps this node's record (capacity, images) fresh.
async fn inventory_loop(local: LocalNode, docker: Docker, membership: Arc<Membership>) {
    loop {
        tokio::time::sleep(INVENTORY_INTERVAL).await;
        match local.read(&docker).await {
            Ok(r) => membership.upsert(r).await,
            Err(e) => warn!(error = %e, "cannot refresh node inventory from Docker"),
        }
    }
}

/// On the leader: periodically re-place replicas that are missing.
async fn heal_loop(raft: SkeinRaft, control: Arc<Control>, id: NodeId) {
    loop {
        tokio::time::sleep(HEAL_INTERVAL).await;
        if raft.metrics().borrow().current_leader != Some(id) {
            continue;
        }
        if let Err(e) = control.reconcile().await {
            warn!(error = %e, "healing pass failed");
        }
    }
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

/// Writes via a temp file and rename, so readers never see half a file.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
