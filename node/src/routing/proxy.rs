//! One published port: its accept loop and the forwarding of each
//! connection to an endpoint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::balance::Load;
use super::Published;

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a listener forwards to; swapped in place when the table changes.
#[derive(Debug)]
pub(crate) struct Route {
    port: u16,
    current: Mutex<Arc<Published>>,
    turn: AtomicUsize,
}

impl Route {
    pub(crate) fn new(port: u16, published: Published) -> Self {
        Self {
            port,
            current: Mutex::new(Arc::new(published)),
            turn: AtomicUsize::new(0),
        }
    }

    /// The service and endpoints this port forwards to now.
    pub(crate) fn current(&self) -> Arc<Published> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the service behind this port (no rebind).
    pub(crate) fn set(&self, published: &Published) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if **current == *published {
            return;
        }
        if current.service != published.service {
            info!(
                "routing mesh: port {} → service {} (was {})",
                self.port, published.service, current.service
            );
        } else {
            debug!(
                port = self.port,
                service = %published.service,
                endpoints = ?published.endpoints,
                "routing mesh: endpoints updated"
            );
        }
        *current = Arc::new(published.clone());
    }
}

/// Accepts connections on `listener` forever, one task per connection.
pub(crate) async fn serve(
    listener: TcpListener,
    route: Arc<Route>,
    load: Arc<Load>,
    connect_timeout: Duration,
) {
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                failing = false;
                let route = Arc::clone(&route);
                let load = Arc::clone(&load);
                tokio::spawn(forward(client, peer, route, load, connect_timeout));
            }
            Err(e) => {
                if !failing {
                    warn!(port = route.port, error = %e, "routing mesh: accept failed");
                    failing = true;
                } else {
                    debug!(port = route.port, error = %e, "routing mesh: accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Connects `client` to an endpoint of the route (the balanced choice, then
/// each other endpoint once) and copies bytes both ways until both sides
/// are done. Without a reachable endpoint the client is closed.
async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    route: Arc<Route>,
    load: Arc<Load>,
    connect_timeout: Duration,
) {
    let port = route.port;
    let published = route.current();
    let turn = route.turn.fetch_add(1, Ordering::Relaxed);
    let Some((first, order)) = load.plan(published.balance, &published.endpoints, turn) else {
        debug!(port, %peer, service = %published.service, "routing mesh: no endpoint, closing");
        return;
    };
    let mut claim = Some(first);
    for addr in order {
        let claimed = match claim.take() {
            Some(c) if c.addr() == addr => c,
            _ => load.claim(addr),
        };
        let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(port, %peer, endpoint = %addr, error = %e, "routing mesh: connect failed");
                continue;
            }
            Err(_) => {
                debug!(port, %peer, endpoint = %addr, "routing mesh: connect timed out");
                continue;
            }
        };
        debug!(port, %peer, endpoint = %addr, "routing mesh: forwarding");
        let mut upstream = upstream;
        // Best effort: a failure only costs latency.
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => {
                debug!(port, %peer, endpoint = %addr, sent, received, "routing mesh: connection done");
            }
            Err(e) => {
                debug!(port, %peer, endpoint = %addr, error = %e, "routing mesh: connection ended");
            }
        }
        drop(claimed);
        return;
    }
    debug!(port, %peer, service = %published.service, "routing mesh: no endpoint reachable, closing");
}
