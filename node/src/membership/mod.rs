//! Who is in the cluster, what each node offers, and whether it is alive.
//!
//! The [`Membership`] table is the scheduler's view of the world. A node
//! writes its own record from Docker (capacity, local images); records of
//! other nodes arrive by gossip ([`gossip`]). Health is judged locally from
//! how long ago a node's last status arrived: ready → suspect → dead. The
//! planner only reads [`Membership::candidates`] and
//! [`Membership::alive_ids`], so placement does not care where a record came
//! from.
//!
//! One node id belongs to one process. A status for a known id from
//! another identity (peer id or API address) replaces the record only once
//! the old one fell silent (a restart on a new port); while the old one
//! keeps speaking the newcomer is dropped, and once both are heard the
//! duplicate is reported ([`Membership::admit`]): a copied data dir run
//! beside its original must not take over the original's record.

pub mod gossip;
pub mod local;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use skein_protocol::api::{ContainerUsage, NodeHealth, PullProgress, StorageView};
use skein_protocol::spec::ResourceVec;
use tokio::sync::{watch, RwLock};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::scheduler::NodeCandidate;
use crate::state::{node_id_str, ClusterState, NodeId};
use crate::wire::{EndpointReport, ImageInfo, RaftRole};

/// What the cluster knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node id.
    pub id: NodeId,
    /// libp2p peer id (base58), empty until known.
    pub peer_id: String,
    /// Human name.
    pub name: String,
    /// Address of the node's API.
    pub addr: String,
    /// Mesh multiaddrs.
    pub mesh_addrs: Vec<String>,
    /// Labels such as region/zone, matched by job constraints.
    pub labels: BTreeMap<String, String>,
    /// Schedulable resources.
    pub capacity: ResourceVec,
    /// Range dynamic host ports are taken from.
    pub port_range: RangeInclusive<u16>,
    /// Ports services may publish on it (`--publish-range`).
    pub publish_range: RangeInclusive<u16>,
    /// Its own listening ports (API, mesh, DNS), with what each is.
    pub listeners: Vec<(u16, String)>,
    /// Images present in the node's Docker.
    pub images: Vec<ImageInfo>,
    /// Images it is fetching now.
    pub fetching: Vec<PullProgress>,
    /// What its assigned allocations reserve, as the node reports it.
    pub allocated: ResourceVec,
    /// How many allocations it runs, as the node reports it.
    pub allocation_count: u32,
    /// Service endpoints it offers, as it reports them.
    pub endpoints: Vec<EndpointReport>,
    /// Measured usage of its containers, as it reports them.
    pub usage: Vec<ContainerUsage>,
    /// The node's own view of Raft.
    pub raft: RaftRole,
    /// Health as last judged.
    pub health: NodeHealth,
    /// When the record was last refreshed.
    pub last_seen: Instant,
    /// Since when the node is dead, if it is.
    pub dead_since: Option<Instant>,
    /// Skein version the node runs.
    pub version: String,
    /// Health of its Raft storage, as it reports it.
    pub storage: StorageView,
    /// Privileges and host paths it lets containers use.
    pub host_access: skein_protocol::spec::HostAccess,
    /// The schema its build speaks.
    pub schema: skein_protocol::codec::Schema,
}

impl NodeRecord {
    /// Canonical tags of every image the node holds.
    pub fn image_tags(&self) -> BTreeSet<String> {
        self.images
            .iter()
            .flat_map(|i| i.tags.iter().cloned())
            .collect()
    }

    /// The id of the image the node holds under `canonical_tag`.
    pub fn image_id(&self, canonical_tag: &str) -> Option<&str> {
        self.images
            .iter()
            .find(|i| i.tags.iter().any(|t| t == canonical_tag))
            .map(|i| i.id.as_str())
    }

    /// Whether the node holds the image with id `id`.
    pub fn has_image_id(&self, id: &str) -> bool {
        self.images.iter().any(|i| i.id == id)
    }
}

/// When silence makes a node suspect, then dead.
#[derive(Debug, Clone, Copy)]
pub struct HealthTiming {
    /// No status for this long: suspect (keeps its work).
    pub suspect_after: Duration,
    /// No status for this long: dead (its work is rescheduled).
    pub dead_after: Duration,
}

impl Default for HealthTiming {
    fn default() -> Self {
        Self {
            suspect_after: Duration::from_millis(1500),
            dead_after: Duration::from_secs(3),
        }
    }
}

/// The membership table.
#[derive(Debug)]
pub struct Membership {
    local: NodeId,
    timing: HealthTiming,
    nodes: RwLock<BTreeMap<NodeId, NodeRecord>>,
    changes: watch::Sender<u64>,
    /// Other identities claiming a known node id, by node id. A std lock:
    /// nothing awaits under it.
    contenders: std::sync::Mutex<BTreeMap<NodeId, Contender>>,
    /// Name clashes already reported, by the pair of ids, with when.
    name_clashes: std::sync::Mutex<BTreeMap<(NodeId, NodeId), Instant>>,
    /// Sequence number of this node's last published status: of two
    /// processes with one id, the one that published more started first.
    local_seq: std::sync::atomic::AtomicU64,
    /// When a copy of this node was last reported.
    self_duplicate: std::sync::Mutex<Option<Instant>>,
    /// When this table started: a node not heard from yet is not dead
    /// before `dead_after` has passed since.
    started: tokio::time::Instant,
}

/// Another process claiming a node id whose owner still speaks.
#[derive(Debug, Clone)]
struct Contender {
    peer_id: String,
    addr: String,
    last_heard: Instant,
    reported: Option<Instant>,
}

/// How often one duplicate is reported again while it lasts.
const DUPLICATE_REPORT_EVERY: Duration = Duration::from_secs(30);

/// What [`Membership::admit`] decided about a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Fold it in.
    Accept,
    /// Another identity holds this node id and still speaks: drop it.
    Refuse,
    /// Fold it in (it is the owner's), and report that another process
    /// claims the same id at `peer_id`/`addr`.
    Duplicate {
        /// The newcomer's libp2p peer id.
        peer_id: String,
        /// The newcomer's API address.
        addr: String,
    },
}

impl Membership {
    /// A table for the node `local`.
    pub fn new(local: NodeId, timing: HealthTiming) -> Self {
        Self {
            local,
            timing,
            nodes: RwLock::new(BTreeMap::new()),
            changes: watch::channel(0).0,
            contenders: std::sync::Mutex::new(BTreeMap::new()),
            name_clashes: std::sync::Mutex::new(BTreeMap::new()),
            local_seq: std::sync::atomic::AtomicU64::new(0),
            self_duplicate: std::sync::Mutex::new(None),
            started: tokio::time::Instant::now(),
        }
    }

    /// Records the sequence number of the status this node just published.
    pub fn set_local_seq(&self, seq: u64) {
        self.local_seq
            .store(seq, std::sync::atomic::Ordering::Relaxed);
    }

    /// The sequence number of this node's last published status.
    pub fn local_seq(&self) -> u64 {
        self.local_seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a copy of this node claiming its id should be reported now
    /// (at most every 30 s).
    pub fn note_self_duplicate(&self) -> bool {
        let mut last = self
            .self_duplicate
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < DUPLICATE_REPORT_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Whether a status for `id` from `peer_id` at `addr` may update the
    /// table. The identity that holds the record keeps it while it speaks
    /// (within `--suspect-after`); another one takes over only after that
    /// silence, as a node restarted on a new address does. A contender
    /// heard while the owner keeps speaking is a duplicate: reported when
    /// the owner speaks again (at most every 30 s), and refused.
    pub async fn admit(&self, id: NodeId, peer_id: &str, addr: &str) -> Admission {
        let nodes = self.nodes.read().await;
        let Some(owner) = nodes.get(&id) else {
            return Admission::Accept;
        };
        let now = Instant::now();
        let takeover = self.timing.suspect_after;
        let mut contenders = self.contenders.lock().unwrap_or_else(|p| p.into_inner());
        if owner.peer_id == peer_id && owner.addr == addr {
            let Some(c) = contenders.get_mut(&id) else {
                return Admission::Accept;
            };
            if now.duration_since(c.last_heard) >= takeover {
                contenders.remove(&id);
                return Admission::Accept;
            }
            if c.reported
                .is_some_and(|t| now.duration_since(t) < DUPLICATE_REPORT_EVERY)
            {
                return Admission::Accept;
            }
            c.reported = Some(now);
            return Admission::Duplicate {
                peer_id: c.peer_id.clone(),
                addr: c.addr.clone(),
            };
        }
        if now.duration_since(owner.last_seen) >= takeover {
            contenders.remove(&id);
            return Admission::Accept;
        }
        match contenders.get_mut(&id) {
            Some(c) if c.peer_id == peer_id && c.addr == addr => c.last_heard = now,
            _ => {
                contenders.insert(
                    id,
                    Contender {
                        peer_id: peer_id.to_string(),
                        addr: addr.to_string(),
                        last_heard: now,
                        reported: None,
                    },
                );
            }
        }
        Admission::Refuse
    }

    /// Another live node than `id` that is also named `name`, when the
    /// clash is worth reporting (once per pair of nodes every 30 s while it
    /// lasts): commands that take a node name refuse an ambiguous one, and
    /// the operator should hear why.
    pub async fn name_clash(&self, id: NodeId, name: &str) -> Option<NodeId> {
        let other = self
            .nodes
            .read()
            .await
            .values()
            .find(|n| n.id != id && n.name == name && n.health != NodeHealth::Dead)
            .map(|n| n.id)?;
        let pair = (id.min(other), id.max(other));
        let now = Instant::now();
        let mut reported = self.name_clashes.lock().unwrap_or_else(|p| p.into_inner());
        if reported
            .get(&pair)
            .is_some_and(|t| now.duration_since(*t) < DUPLICATE_REPORT_EVERY)
        {
            return None;
        }
        reported.insert(pair, now);
        Some(other)
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// Ticks whenever a node appears or changes health.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn notify(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// Records a fresh report about a node (our own, or gossip). Fresh news
    /// means the node is ready.
    pub async fn observe(&self, mut record: NodeRecord) {
        record.health = NodeHealth::Ready;
        record.dead_since = None;
        record.last_seen = Instant::now();
        let mut nodes = self.nodes.write().await;
        let changed = match nodes.get(&record.id) {
            None => {
                if record.id != self.local {
                    info!(node = %node_id_str(record.id), name = %record.name, addr = %record.addr, "node joined");
                }
                true
            }
            Some(old) if old.health != NodeHealth::Ready => {
                info!(node = %node_id_str(record.id), name = %record.name, was = %old.health, "node is back");
                true
            }
            Some(_) => false,
        };
        nodes.insert(record.id, record);
        drop(nodes);
        if changed {
            self.notify();
        }
    }

    /// Re-judges every node's health from the age of its last report.
    pub async fn check_health(&self) {
        let now = Instant::now();
        let mut changed = false;
        let mut nodes = self.nodes.write().await;
        for n in nodes.values_mut() {
            if n.id == self.local {
                continue;
            }
            let silent = now.duration_since(n.last_seen);
            let health = if silent >= self.timing.dead_after {
                NodeHealth::Dead
            } else if silent >= self.timing.suspect_after {
                NodeHealth::Suspect
            } else {
                NodeHealth::Ready
            };
            if health != n.health {
                match health {
                    NodeHealth::Dead => {
                        warn!(node = %node_id_str(n.id), name = %n.name, silent = ?silent, "node is dead: its work will be rescheduled");
                        n.dead_since = Some(now);
                    }
                    NodeHealth::Suspect => {
                        warn!(node = %node_id_str(n.id), name = %n.name, silent = ?silent, "node is suspect")
                    }
                    NodeHealth::Ready => {}
                }
                n.health = health;
                changed = true;
            }
        }
        drop(nodes);
        if changed {
            self.notify();
        }
    }

    /// All records, by id.
    pub async fn all(&self) -> Vec<NodeRecord> {
        self.nodes.read().await.values().cloned().collect()
    }

    /// One record.
    pub async fn get(&self, id: NodeId) -> Option<NodeRecord> {
        self.nodes.read().await.get(&id).cloned()
    }

    /// Ready nodes as scheduler candidates, with reservations taken from
    /// the committed `state` (not from gossip) so the leader never counts
    /// on a report that lags its own placements.
    pub async fn candidates(&self, state: &ClusterState) -> Vec<NodeCandidate> {
        let published: BTreeSet<_> = state
            .published_ports()
            .keys()
            .map(|p| (*p, skein_protocol::spec::PortProtocol::Tcp))
            .collect();
        let nodes = self.nodes.read().await;
        nodes
            .values()
            .filter(|n| n.health == NodeHealth::Ready)
            .map(|n| candidate(n, state, &published))
            .collect()
    }

    /// Nodes that are not dead: their allocations stay where they are.
    pub async fn alive_ids(&self) -> BTreeSet<NodeId> {
        let nodes = self.nodes.read().await;
        nodes
            .values()
            .filter(|n| n.health != NodeHealth::Dead)
            .map(|n| n.id)
            .collect()
    }

    /// [`Membership::alive_ids`], plus those of `holders` (nodes the state
    /// places work on) this table has not heard from yet while it is
    /// younger than `dead_after`: a node that has just started (a new
    /// leader after a restart, say) has not heard everyone yet, and must
    /// not take silence it did not wait out for death and move their work.
    pub async fn alive_ids_for(
        &self,
        holders: impl IntoIterator<Item = NodeId>,
    ) -> BTreeSet<NodeId> {
        let mut alive = self.alive_ids().await;
        if self.started.elapsed() < self.timing.dead_after {
            let nodes = self.nodes.read().await;
            alive.extend(holders.into_iter().filter(|id| !nodes.contains_key(id)));
        }
        alive
    }

    /// The leader as gossip tells it: the view reported with the highest
    /// term. Used by nodes outside the Raft voter set.
    pub async fn leader_hint(&self) -> Option<NodeId> {
        let nodes = self.nodes.read().await;
        nodes
            .values()
            .filter(|n| n.health != NodeHealth::Dead && n.raft.leader.is_some())
            .max_by_key(|n| n.raft.term)
            .and_then(|n| n.raft.leader)
    }
}

fn candidate(
    n: &NodeRecord,
    state: &ClusterState,
    published: &BTreeSet<(u16, skein_protocol::spec::PortProtocol)>,
) -> NodeCandidate {
    // Published ports are open on every node: never a container's host port.
    let mut used_ports = published.clone();
    let mut job_replicas = BTreeMap::new();
    let mut allocated = ResourceVec::default();
    if let Some(load) = state.load_on(n.id) {
        job_replicas.extend(load.jobs.iter().map(|(j, c)| (j.clone(), *c)));
        used_ports.extend(load.ports.keys().copied());
        allocated = load.allocated();
    }
    NodeCandidate {
        id: n.id,
        name: n.name.clone(),
        labels: n.labels.clone(),
        capacity: n.capacity,
        allocated,
        used_ports,
        port_range: n.port_range.clone(),
        images: Some(n.image_tags()),
        job_replicas,
        host_access: n.host_access.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: NodeId) -> NodeRecord {
        NodeRecord {
            id,
            peer_id: String::new(),
            name: format!("n{id}"),
            addr: String::new(),
            mesh_addrs: vec![],
            labels: Default::default(),
            capacity: ResourceVec::new(1000, 1 << 30),
            port_range: 20000..=20010,
            publish_range: 30000..=32767,
            listeners: vec![],
            images: Default::default(),
            fetching: Default::default(),
            allocated: ResourceVec::default(),
            allocation_count: 0,
            endpoints: vec![],
            usage: vec![],
            raft: RaftRole::default(),
            health: NodeHealth::Ready,
            last_seen: Instant::now(),
            dead_since: None,
            version: String::new(),
            storage: StorageView::default(),
            host_access: Default::default(),
            schema: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silence_makes_suspect_then_dead_and_news_revives() {
        let m = Membership::new(1, HealthTiming::default());
        let mut changes = m.subscribe();
        m.observe(record(1)).await;
        m.observe(record(2)).await;
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        tokio::time::advance(Duration::from_millis(1600)).await;
        m.check_health().await;
        assert_eq!(m.get(2).await.unwrap().health, NodeHealth::Suspect);
        assert_eq!(m.alive_ids().await, [1, 2].into());
        assert_eq!(m.candidates(&ClusterState::default()).await.len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        m.check_health().await;
        assert_eq!(m.get(2).await.unwrap().health, NodeHealth::Dead);
        assert_eq!(
            m.get(1).await.unwrap().health,
            NodeHealth::Ready,
            "never judges itself"
        );
        assert_eq!(m.alive_ids().await, [1].into());
        assert!(changes.has_changed().unwrap());
        m.observe(record(2)).await;
        assert_eq!(m.get(2).await.unwrap().health, NodeHealth::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_process_with_the_same_node_id_is_refused_and_reported() {
        let m = Membership::new(1, HealthTiming::default());
        let mut owner = record(2);
        owner.peer_id = "peer-a".into();
        owner.addr = "10.0.0.2:7420".into();
        m.observe(owner.clone()).await;
        let admit = |peer: &'static str, addr: &'static str| m.admit(2, peer, addr);
        assert_eq!(admit("peer-a", "10.0.0.2:7420").await, Admission::Accept);
        // A copy (same peer id from the copied key, another address) and
        // a node with a new key: refused while the owner speaks.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(admit("peer-a", "10.0.0.9:7420").await, Admission::Refuse);
        assert_eq!(admit("peer-b", "10.0.0.9:7420").await, Admission::Refuse);
        // The owner speaks again: both run, reported once.
        m.observe(owner.clone()).await;
        let dup = admit("peer-a", "10.0.0.2:7420").await;
        assert_eq!(
            dup,
            Admission::Duplicate {
                peer_id: "peer-b".into(),
                addr: "10.0.0.9:7420".into()
            }
        );
        assert_eq!(admit("peer-a", "10.0.0.2:7420").await, Admission::Accept);
        assert_eq!(m.get(2).await.unwrap().addr, "10.0.0.2:7420");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_on_a_new_address_takes_over_once_the_old_process_is_silent() {
        let m = Membership::new(1, HealthTiming::default());
        let mut owner = record(2);
        owner.peer_id = "peer-a".into();
        owner.addr = "127.0.0.1:4000".into();
        m.observe(owner).await;
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(
            m.admit(2, "peer-a", "127.0.0.1:5000").await,
            Admission::Refuse
        );
        tokio::time::advance(Duration::from_millis(1300)).await;
        assert_eq!(
            m.admit(2, "peer-a", "127.0.0.1:5000").await,
            Admission::Accept
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_name_is_reported_once_per_pair_while_it_lasts() {
        let m = Membership::new(1, HealthTiming::default());
        let mut a = record(2);
        a.name = "edge".into();
        let mut b = record(3);
        b.name = "edge".into();
        m.observe(a).await;
        assert_eq!(m.name_clash(2, "edge").await, None, "alone with its name");
        m.observe(b).await;
        assert_eq!(m.name_clash(3, "edge").await, Some(2));
        assert_eq!(m.name_clash(3, "edge").await, None, "reported already");
        assert_eq!(m.name_clash(2, "edge").await, None, "same pair");
        tokio::time::advance(DUPLICATE_REPORT_EVERY).await;
        assert_eq!(m.name_clash(2, "edge").await, Some(3), "still there: again");
    }

    #[tokio::test]
    async fn leader_hint_follows_the_highest_term() {
        let m = Membership::new(1, HealthTiming::default());
        let mut a = record(2);
        a.raft = RaftRole {
            term: 3,
            leader: Some(2),
            voters: vec![],
        };
        let mut b = record(3);
        b.raft = RaftRole {
            term: 5,
            leader: Some(3),
            voters: vec![],
        };
        m.observe(a).await;
        m.observe(b).await;
        assert_eq!(m.leader_hint().await, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn unheard_holders_count_as_alive_until_dead_after_has_passed_since_start() {
        let m = Membership::new(1, HealthTiming::default());
        m.observe(record(2)).await;
        let alive = m.alive_ids_for([2, 3]).await;
        assert!(alive.contains(&2) && alive.contains(&3), "{alive:?}");
        tokio::time::advance(HealthTiming::default().dead_after + Duration::from_millis(1)).await;
        let alive = m.alive_ids_for([3]).await;
        assert!(!alive.contains(&3), "never heard after dead_after: dead");
    }
}
