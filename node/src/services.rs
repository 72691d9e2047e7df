//! Services: which replicas serve which name, built from gossip.
//!
//! Each node reports the endpoints of the replicas it runs (address, host
//! port, ready or not) in its status. Every node folds all reports into the
//! tables its DNS server ([`crate::dns`]) and routing mesh
//! ([`crate::routing`]) read, so both answer locally, without asking the
//! leader, and see a change within one gossip period.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use skein_protocol::api::NodeHealth;
use skein_protocol::api::{AllocState, AllocStatus, EndpointView, ServiceView};
use skein_protocol::spec::JobSpec;
use tokio::sync::watch;
use tracing::debug;

use crate::dns::{Endpoint, ServiceTable};
use crate::membership::NodeRecord;
use crate::routing::{Published, RoutingTable};
use crate::state::{Allocation, ClusterState, NodeId};
use crate::wire::EndpointReport;

/// How often the tables are rebuilt from the membership table.
const REBUILD_INTERVAL: Duration = Duration::from_millis(200);

/// The host port serving `spec`'s service on allocation `a`.
fn service_port(spec: &JobSpec, a: &Allocation) -> Option<u16> {
    let container_port = spec.service_port()?.container_port;
    a.ports
        .iter()
        .find(|m| m.container_port == container_port)
        .map(|m| m.host_port)
}

/// Endpoints of the replicas this node runs, from what it was assigned
/// (`desired`) and what its executor observed (`statuses`).
pub fn local_endpoints(
    node: NodeId,
    desired: &ClusterState,
    statuses: &HashMap<String, AllocStatus>,
    ip: IpAddr,
) -> Vec<EndpointReport> {
    desired
        .allocs_on(node)
        .filter_map(|a| {
            // The replica's own version: old ones serve during an update.
            let spec = desired.jobs.get(&a.job)?.spec_for(a.job_version)?;
            let svc = spec.service.as_ref()?;
            let port = service_port(spec, a)?;
            let ready = statuses
                .get(&a.id)
                .is_some_and(|s| s.state == AllocState::Running && s.ready);
            Some(EndpointReport {
                service: svc.name.clone(),
                job: a.job.clone(),
                alloc: a.id.clone(),
                ip,
                port,
                publish: svc.publish,
                balance: svc.balance,
                ready,
            })
        })
        .collect()
}

/// Ready endpoints of live nodes, by service.
fn ready_endpoints(
    records: &[NodeRecord],
) -> BTreeMap<String, Vec<(&NodeRecord, &EndpointReport)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.health != NodeHealth::Dead) {
        for e in r.endpoints.iter().filter(|e| e.ready) {
            out.entry(e.service.clone()).or_default().push((r, e));
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.1.alloc.cmp(&b.1.alloc));
    }
    out
}

/// The DNS table: service → ready endpoints. Services whose replicas are
/// all unready stay known (empty), so DNS answers NODATA, not NXDOMAIN.
pub fn dns_table(records: &[NodeRecord]) -> ServiceTable {
    let mut table: ServiceTable = records
        .iter()
        .flat_map(|r| r.endpoints.iter().map(|e| (e.service.clone(), Vec::new())))
        .collect();
    for (svc, eps) in ready_endpoints(records) {
        table.insert(
            svc,
            eps.into_iter()
                .map(|(_, e)| Endpoint {
                    ip: e.ip,
                    port: e.port,
                    alloc: e.alloc.clone(),
                })
                .collect(),
        );
    }
    table
}

/// The routing table: published port → service and its ready endpoints.
pub fn routing_table(records: &[NodeRecord]) -> RoutingTable {
    let mut table = RoutingTable::new();
    for r in records.iter().filter(|r| r.health != NodeHealth::Dead) {
        for e in &r.endpoints {
            if let Some(port) = e.publish {
                table.entry(port).or_insert_with(|| Published {
                    service: e.service.clone(),
                    balance: e.balance,
                    endpoints: Vec::new(),
                });
            }
        }
    }
    for (svc, eps) in ready_endpoints(records) {
        for (_, e) in eps {
            if let Some(p) = e.publish.and_then(|port| table.get_mut(&port)) {
                if p.service == svc {
                    p.endpoints.push(SocketAddr::new(e.ip, e.port));
                }
            }
        }
    }
    table
}

/// The API view of every service.
pub fn views(records: &[NodeRecord]) -> Vec<ServiceView> {
    let mut by_name: BTreeMap<String, ServiceView> = BTreeMap::new();
    for r in records.iter().filter(|r| r.health != NodeHealth::Dead) {
        for e in &r.endpoints {
            by_name
                .entry(e.service.clone())
                .or_insert_with(|| ServiceView {
                    name: e.service.clone(),
                    job: e.job.clone(),
                    publish: e.publish,
                    endpoints: Vec::new(),
                });
        }
    }
    for (svc, eps) in ready_endpoints(records) {
        if let Some(v) = by_name.get_mut(&svc) {
            v.endpoints = eps
                .into_iter()
                .map(|(r, e)| EndpointView {
                    alloc: e.alloc.clone(),
                    node: r.name.clone(),
                    addr: SocketAddr::new(e.ip, e.port).to_string(),
                })
                .collect();
        }
    }
    by_name.into_values().collect()
}

/// Keeps the DNS and routing tables equal to what gossip says.
pub async fn run(
    membership: Arc<crate::membership::Membership>,
    dns: watch::Sender<Arc<ServiceTable>>,
    routing: watch::Sender<Arc<RoutingTable>>,
) {
    loop {
        let records = membership.all().await;
        let d = dns_table(&records);
        if **dns.borrow() != d {
            debug!(services = d.len(), "dns table changed");
            dns.send_replace(Arc::new(d));
        }
        let r = routing_table(&records);
        if **routing.borrow() != r {
            debug!(ports = r.len(), "routing table changed");
            routing.send_replace(Arc::new(r));
        }
        tokio::time::sleep(REBUILD_INTERVAL).await;
    }
}
