//! This node's own record, read from Docker: CPU and memory for capacity,
//! and the images present with their ids (the scheduler prefers nodes that
//! hold a job's image, and peers copy images from nodes that hold them).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::runtime::{ContainerRuntime, RuntimeError};
use skein_protocol::api::NodeHealth;
use skein_protocol::spec::ResourceVec;

use super::NodeRecord;
use crate::state::NodeId;
use crate::wire::{ImageInfo, RaftRole};

/// Static facts about this node, fixed at start.
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// Node id.
    pub id: NodeId,
    /// libp2p peer id (base58).
    pub peer_id: String,
    /// Human name.
    pub name: String,
    /// API address others reach this node on.
    pub addr: String,
    /// Operator-given labels.
    pub labels: BTreeMap<String, String>,
    /// Dynamic host port range.
    pub port_range: RangeInclusive<u16>,
    /// Ports services may publish here.
    pub publish_range: RangeInclusive<u16>,
    /// Its own listening ports, with what each is.
    pub listeners: Vec<(u16, String)>,
    /// Overrides Docker's CPU/memory figures (tests, reserved capacity).
    pub capacity_override: Option<ResourceVec>,
    /// Privileges and host paths the operator lets containers use.
    pub host_access: skein_protocol::spec::HostAccess,
}

impl LocalNode {
    /// Reads capacity and images from Docker and builds the record.
    pub async fn read(&self, runtime: &dyn ContainerRuntime) -> Result<NodeRecord, RuntimeError> {
        let capacity = match self.capacity_override {
            Some(c) => c,
            None => {
                let info = runtime.info().await?;
                ResourceVec::new(info.cpus.saturating_mul(1000), info.memory_bytes)
            }
        };
        let images: Vec<ImageInfo> = runtime
            .list_images()
            .await?
            .into_iter()
            .filter_map(|i| {
                let tags: Vec<String> = i
                    .repo_tags
                    .iter()
                    .filter(|t| t.as_str() != "<none>:<none>")
                    .map(|t| skein_protocol::image::canonical(t))
                    .collect();
                // Untagged images are layers of others or leftovers: no
                // job can name them.
                (!tags.is_empty()).then(|| ImageInfo {
                    id: i.id,
                    tags,
                    size: u64::try_from(i.size).unwrap_or(0),
                })
            })
            .collect();
        Ok(NodeRecord {
            id: self.id,
            peer_id: self.peer_id.clone(),
            name: self.name.clone(),
            addr: self.addr.clone(),
            mesh_addrs: Vec::new(),
            labels: self.labels.clone(),
            capacity,
            port_range: self.port_range.clone(),
            publish_range: self.publish_range.clone(),
            listeners: self.listeners.clone(),
            images,
            fetching: Vec::new(),
            allocated: ResourceVec::default(),
            allocation_count: 0,
            endpoints: Vec::new(),
            usage: Vec::new(),
            raft: RaftRole::default(),
            health: NodeHealth::Ready,
            last_seen: tokio::time::Instant::now(),
            dead_since: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
            storage: Default::default(),
            host_access: self.host_access.clone(),
            schema: skein_protocol::codec::Schema::CURRENT,
        })
    }
}
