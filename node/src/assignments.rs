//! What this node must run, fetched from the leader.
//!
//! Raft's full state lives only on voters; every node (voter or not) learns
//! its own allocations by long-polling the leader, so a worker's cost does
//! not grow with the cluster. The last answer is kept on disk: a node that
//! restarts while cut off from the leader keeps running what it had (edge
//! autonomy), and the executor starts only once this view is known, so it
//! never removes containers because it has not heard from anyone yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::mesh::Mesh;
use crate::peers::Peers;
use crate::raft::StateHandle;
use crate::rpc::{self, CallError, PeerRequest, PeerResponse};
use crate::state::{node_id_str, ClusterState, NodeId};
use crate::wire::Assignments;

/// How long the leader holds a long-poll open without changes.
pub const LONG_POLL: Duration = Duration::from_secs(5);
/// Pause before asking again after a failure.
const RETRY: Duration = Duration::from_millis(300);

/// The assignments of `node` in `state`: its allocations and their jobs,
/// each job with only the earlier versions those allocations run (the
/// executor needs their specs; the rest of the history stays with Raft).
pub fn of_node(state: &ClusterState, node: NodeId) -> Assignments {
    let allocs: Vec<_> = state.allocs_on(node).cloned().collect();
    let mut jobs: Vec<_> = allocs
        .iter()
        .filter_map(|a| state.jobs.get(&a.job).cloned())
        .collect();
    jobs.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    jobs.dedup_by(|a, b| a.spec.name == b.spec.name);
    for job in &mut jobs {
        job.history.retain(|r| {
            allocs
                .iter()
                .any(|a| a.job == job.spec.name && a.job_version == r.version)
        });
    }
    let pull_secrets = jobs
        .iter()
        .flat_map(|j| {
            let kept = j.history.iter().map(|r| &r.spec);
            std::iter::once(&j.spec).chain(kept)
        })
        .flat_map(|spec| spec.pull_secrets.iter())
        .filter_map(|name| Some((name.clone(), state.pull_secrets.get(name)?.clone())))
        .collect();
    Assignments {
        version: state.version,
        jobs,
        allocs,
        drained: state.drained.clone(),
        registries: state.registries.to_map(),
        pull_secrets,
        tokens: state.tokens.to_map(),
        revoked_tokens: state.revoked_tokens.clone(),
        schema: state.schema,
    }
}

/// As a partial [`ClusterState`] the executor can read.
pub fn to_state(a: Assignments) -> ClusterState {
    ClusterState {
        jobs: a
            .jobs
            .into_iter()
            .map(|j| (j.spec.name.clone(), j))
            .collect(),
        allocs: a.allocs.into_iter().map(|a| (a.id.clone(), a)).collect(),
        version: a.version,
        drained: a.drained,
        registries: a.registries.into_iter().collect(),
        pull_secrets: a.pull_secrets.into_iter().collect(),
        tokens: a.tokens.into_iter().collect(),
        revoked_tokens: a.revoked_tokens,
        // Deduplication is the Raft state's; workers never apply commands.
        requests: Default::default(),
        schema: a.schema,
    }
}

/// `known_version` of a node that knows nothing yet: answered at once, so
/// that a node joining a cluster whose state has not changed yet learns it
/// (and its API tokens) without waiting out a long-poll.
pub const KNOWS_NOTHING: u64 = u64::MAX;

/// Leader side: answers once `state` moved past `known_version`, or after
/// [`LONG_POLL`]; at once for [`KNOWS_NOTHING`].
pub async fn serve(state: &Arc<StateHandle>, node: NodeId, known_version: u64) -> Assignments {
    if known_version != KNOWS_NOTHING {
        let mut rx = state.subscribe();
        let _ = tokio::time::timeout(LONG_POLL, rx.wait_for(|v| *v > known_version)).await;
    }
    state.read(|s| of_node(s, node)).await
}

/// Where the last assignments are kept.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("assignments.bin")
}

/// The assignments saved by an earlier run, if any.
pub fn load(data_dir: &Path) -> Option<ClusterState> {
    let bytes = std::fs::read(file(data_dir)).ok()?;
    match crate::migrate::read_cluster_state(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "ignoring unreadable saved assignments");
            None
        }
    }
}

fn save(data_dir: &Path, state: &ClusterState) {
    let res = skein_protocol::codec::encode(state)
        .map_err(std::io::Error::other)
        .and_then(|b| crate::files::write_durably(&file(data_dir), &b));
    if let Err(e) = res {
        warn!(error = %e, "cannot save assignments");
    }
}

/// What the assignments loop uses.
#[derive(Clone)]
pub struct Handles {
    /// Who leads and how to reach it.
    pub peers: Peers,
    /// Where the poll goes.
    pub mesh: Mesh,
    /// State applied by this node's Raft (served from here when it leads).
    pub state: Arc<StateHandle>,
    /// What this node must run: kept equal to the leader's answer.
    pub desired: Arc<StateHandle>,
}

/// Keeps `handles.desired` equal to what the leader assigned to this node.
/// Sets `synced` once a first answer arrived.
pub async fn run(handles: Handles, data_dir: PathBuf, synced: watch::Sender<bool>) {
    let me = handles.peers.id;
    let mut known = if *synced.borrow() {
        handles.desired.read(|s| s.version).await
    } else {
        KNOWS_NOTHING
    };
    let mut last_error = String::new();
    // No leader for the first moments after start is normal, not news.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = fetch(&handles, me, known).await;
        match answer {
            Ok(a) => {
                if !last_error.is_empty() {
                    info!("assignments: leader reachable again");
                    last_error.clear();
                }
                let fresh = to_state(a);
                let changed = handles.desired.read(|s| *s != fresh).await;
                known = fresh.version;
                if changed {
                    debug!(
                        version = known,
                        allocs = fresh.allocs.len(),
                        "assignments changed"
                    );
                    save(&data_dir, &fresh);
                    handles.desired.replace(fresh).await;
                }
                synced.send_replace(true);
            }
            Err(e) => {
                if e != last_error && tokio::time::Instant::now() >= quiet_until {
                    warn!(error = %e, "assignments: cannot reach the leader; keeping current containers");
                    last_error = e;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn fetch(handles: &Handles, me: NodeId, known: u64) -> Result<Assignments, String> {
    let leader = handles.peers.leader().await.ok_or("no leader known")?;
    if leader == me {
        if !handles.peers.is_leader() {
            return Err("leadership is changing".into());
        }
        return Ok(serve(&handles.state, me, known).await);
    }
    let peer = handles
        .peers
        .peer_of(leader)
        .await
        .ok_or_else(|| format!("no address for leader {}", node_id_str(leader)))?;
    let req = PeerRequest::Assignments {
        node: me,
        known_version: known,
    };
    match rpc::call(&handles.mesh, peer, &req).await {
        Ok(PeerResponse::Assignments(a)) => Ok(a),
        Ok(other) => Err(rpc::unexpected("assignments", &other).to_string()),
        Err(e @ (CallError::Transport(_) | CallError::Peer(_))) => {
            Err(format!("leader {}: {e}", node_id_str(leader)))
        }
        Err(e) => Err(e.to_string()),
    }
}
