//! The routing mesh: a service's published port is reachable on every node.
//!
//! Every node listens on the published port of every service (the
//! [`RoutingTable`], publish port → [`Published`]) and forwards each TCP
//! connection to an endpoint of that service, wherever it runs. Which
//! endpoint is chosen by the service's [`Balance`]: the next one in turn
//! (`RoundRobin`) or the one with the fewest open proxied connections
//! (`LeastConnections`, ties in turn). An endpoint that refuses or does not
//! answer within the connect timeout is skipped for the next one; each is
//! tried at most once per connection.
//!
//! The table is replaced wholesale whenever it changes and the mesh
//! reconciles its listeners with it: new ports are bound, dropped ports are
//! closed (connections already proxied finish on their own), and ports that
//! stay keep their socket and only swap their endpoints. A port that cannot
//! be bound (another process holds it) is reported once and retried on each
//! table change and every [`MeshSettings::retry_interval`]; the other ports
//! are served meanwhile. A port without endpoints accepts and closes
//! connections at once, so clients fail fast.
//!
//! Who fills the table (health-filtered endpoints from the cluster state) is
//! not this module's concern; it does only sockets.

mod balance;
mod proxy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use skein_protocol::spec::Balance;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use self::balance::Load;
use self::proxy::Route;

/// A published service as the routing mesh needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Service name (for logs).
    pub service: String,
    /// How a new connection picks an endpoint.
    pub balance: Balance,
    /// Healthy endpoints (`host:port` of a replica), on any node.
    pub endpoints: Vec<SocketAddr>,
}

/// Publish port → service. Replaced wholesale whenever it changes.
pub type RoutingTable = BTreeMap<u16, Published>;

/// Timeouts of the routing mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSettings {
    /// How long connecting to one endpoint may take before the next is tried.
    pub connect_timeout: Duration,
    /// How often ports that could not be bound are retried.
    pub retry_interval: Duration,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            retry_interval: Duration::from_secs(5),
        }
    }
}

/// What one published port looks like right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSnapshot {
    /// The service behind the port.
    pub service: String,
    /// Its balancing policy.
    pub balance: Balance,
    /// Its endpoints.
    pub endpoints: Vec<SocketAddr>,
    /// Whether this node listens on the port (`false`: binding failed).
    pub listening: bool,
}

/// Observability snapshot of the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshSnapshot {
    /// Every published port of the current table.
    pub ports: BTreeMap<u16, PortSnapshot>,
    /// Open proxied connections per endpoint (endpoints with none omitted).
    pub open_connections: BTreeMap<SocketAddr, usize>,
}

/// Runs the routing mesh on `bind_ip` until dropped: keeps one listener per
/// published port of the latest table and forwards connections.
///
/// Shorthand for [`RoutingMesh::new`] + [`RoutingMesh::run`], for callers
/// that need no snapshot.
pub async fn run(bind_ip: IpAddr, table: watch::Receiver<Arc<RoutingTable>>) {
    RoutingMesh::new(bind_ip).run(table).await;
}

/// The routing mesh of one node: its listeners and their connections.
///
/// A cheap handle (clones share the mesh). Dropping the future of
/// [`RoutingMesh::run`] closes every listener, and so does dropping the last
/// handle; connections already proxied finish on their own.
#[derive(Debug, Clone)]
pub struct RoutingMesh {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    bind_ip: IpAddr,
    settings: MeshSettings,
    load: Arc<Load>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The latest table.
    table: Arc<RoutingTable>,
    /// Bound ports.
    listeners: BTreeMap<u16, Listener>,
    /// Published ports that failed to bind (already warned about).
    unbound: BTreeSet<u16>,
}

/// A bound port: its accept task (aborted, closing the socket, on drop).
#[derive(Debug)]
struct Listener {
    route: Arc<Route>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RoutingMesh {
    /// A mesh listening on `bind_ip`, with default settings and no ports.
    pub fn new(bind_ip: IpAddr) -> Self {
        Self::with_settings(bind_ip, MeshSettings::default())
    }

    /// A mesh listening on `bind_ip` with `settings` and no ports.
    pub fn with_settings(bind_ip: IpAddr, settings: MeshSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                bind_ip,
                settings,
                load: Arc::new(Load::default()),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Follows `table` until the returned future is dropped: applies every
    /// new table and retries unbound ports every `retry_interval`. If the
    /// sender goes away the last table stays served. Closes every listener
    /// when dropped.
    pub async fn run(self, mut table: watch::Receiver<Arc<RoutingTable>>) {
        let _close = CloseOnDrop(self.clone());
        let first = Arc::clone(&table.borrow_and_update());
        self.update(first);
        let mut retry = tokio::time::interval(self.shared.settings.retry_interval);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retry.tick().await;
        let mut following = true;
        loop {
            tokio::select! {
                changed = table.changed(), if following => match changed {
                    Ok(()) => {
                        let next = Arc::clone(&table.borrow_and_update());
                        self.update(next);
                    }
                    Err(_) => {
                        debug!("routing mesh: table sender gone, keeping the last table");
                        following = false;
                    }
                },
                _ = retry.tick() => self.retry_unbound(),
            }
        }
    }

    /// Applies `table`: binds new ports, closes dropped ones, swaps the
    /// endpoints of kept ones, retries ports that failed to bind. Must be
    /// called within a Tokio runtime.
    pub fn update(&self, table: Arc<RoutingTable>) {
        let mut state = self.lock();
        state.table = table;
        self.reconcile(&mut state);
    }

    /// Ports this node currently listens on.
    pub fn active_listeners(&self) -> Vec<u16> {
        self.lock().listeners.keys().copied().collect()
    }

    /// Open proxied connections per endpoint (endpoints with none omitted).
    pub fn open_connections(&self) -> BTreeMap<SocketAddr, usize> {
        self.shared.load.snapshot()
    }

    /// The published ports and the open connections, for observability.
    pub fn snapshot(&self) -> MeshSnapshot {
        let state = self.lock();
        let ports = state
            .table
            .iter()
            .map(|(port, published)| {
                let listener = state.listeners.get(port);
                let current = listener.map(|l| l.route.current());
                let published = current.as_deref().unwrap_or(published);
                let snapshot = PortSnapshot {
                    service: published.service.clone(),
                    balance: published.balance,
                    endpoints: published.endpoints.clone(),
                    listening: listener.is_some(),
                };
                (*port, snapshot)
            })
            .collect();
        drop(state);
        MeshSnapshot {
            ports,
            open_connections: self.open_connections(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Binds again the ports that failed to bind, if any.
    fn retry_unbound(&self) {
        let mut state = self.lock();
        if !state.unbound.is_empty() {
            self.reconcile(&mut state);
        }
    }

    /// Closes every listener (the table is kept for snapshots).
    fn close_all(&self) {
        let mut state = self.lock();
        for (port, listener) in std::mem::take(&mut state.listeners) {
            info!(
                "routing mesh: port {port} closed (service {})",
                listener.route.current().service
            );
        }
        state.unbound.clear();
    }

    fn reconcile(&self, state: &mut State) {
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(e) => {
                error!(error = %e, "routing mesh: update outside a Tokio runtime, ignored");
                return;
            }
        };
        let table = Arc::clone(&state.table);
        let gone: Vec<u16> = state
            .listeners
            .keys()
            .filter(|port| !table.contains_key(port))
            .copied()
            .collect();
        for port in gone {
            if let Some(listener) = state.listeners.remove(&port) {
                info!(
                    "routing mesh: port {port} closed (service {})",
                    listener.route.current().service
                );
            }
        }
        state.unbound.retain(|port| table.contains_key(port));

        for (&port, published) in table.iter() {
            if let Some(listener) = state.listeners.get(&port) {
                listener.route.set(published);
                continue;
            }
            let addr = SocketAddr::new(self.shared.bind_ip, port);
            let listener = {
                // Registering the socket needs the runtime's reactor.
                let _enter = runtime.enter();
                bind(addr)
            };
            match listener {
                Ok(listener) => {
                    let route = Arc::new(Route::new(port, published.clone()));
                    let task = runtime.spawn(proxy::serve(
                        listener,
                        Arc::clone(&route),
                        Arc::clone(&self.shared.load),
                        self.shared.settings.connect_timeout,
                    ));
                    info!("routing mesh: port {port} → service {}", published.service);
                    state.unbound.remove(&port);
                    state.listeners.insert(port, Listener { route, task });
                }
                Err(e) => {
                    if state.unbound.insert(port) {
                        warn!(
                            port,
                            service = %published.service,
                            error = %e,
                            "routing mesh: cannot listen on {addr}; will retry"
                        );
                    } else {
                        debug!(port, error = %e, "routing mesh: bind retry failed");
                    }
                }
            }
        }
    }
}

/// Closes the listeners when [`RoutingMesh::run`] ends or is dropped.
struct CloseOnDrop(RoutingMesh);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close_all();
    }
}

/// A listening socket on `addr`. `SO_REUSEADDR` lets a port closed a moment
/// ago be bound again despite connections in `TIME_WAIT`; it does not let
/// two sockets listen on the same port.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
