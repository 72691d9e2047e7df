//! Service discovery over DNS: every node answers for the zone `skein.`.
//!
//! Containers find each other by name: `web.service.skein` resolves to the
//! healthy endpoints of the service `web` (A/AAAA, and SRV with the ports),
//! `web-0-ab12cd.alloc.skein` to one allocation. The answers come from a
//! [`ServiceTable`] that the node replaces wholesale, through a watch
//! channel, whenever the healthy endpoints change; every record has a TTL of
//! one second, so clients follow quickly. The naming rules live in
//! `zone.rs`.
//!
//! Every other name is relayed to the host's resolvers (`forward.rs`), so a
//! container can use its node as its only resolver; without upstreams those
//! questions are REFUSED.
//!
//! Sockets and framing are hickory-server's ([`hickory_server::Server`]):
//! UDP and TCP on each listen address, TCP connections closed after
//! [`TCP_IDLE_TIMEOUT`] without a complete request. Garbage, truncated
//! packets and abandoned connections cost one task each and never stop the
//! other queries (see the tests). `handler.rs` is the glue.
//!
//! hickory-server logs every answered request at `info`; the agent's log
//! filter should hold `hickory_server=warn`.

mod clients;
mod forward;
mod handler;
mod zone;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

pub use clients::{parse_network, RelayPolicy};
pub use forward::system_upstreams;

use forward::Forwarder;
use handler::Handler;

/// One healthy endpoint of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Where the service answers.
    pub ip: IpAddr,
    /// The port at `ip` (the SRV port).
    pub port: u16,
    /// Allocation id, a DNS label like "web-0-ab12cd" (the SRV target
    /// `<alloc>.alloc.skein.`).
    pub alloc: String,
}

/// Service name → healthy endpoints; replaced wholesale whenever it changes.
pub type ServiceTable = std::collections::BTreeMap<String, Vec<Endpoint>>;

/// A TCP connection that completes no request for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Responses queued per TCP connection (hickory's per-connection buffer).
const TCP_RESPONSE_BUFFER: usize = 32;

/// A DNS server with its sockets bound. It answers from the moment
/// [`bind`] returns until it is dropped; [`DnsServer::run`] waits on it.
pub struct DnsServer {
    server: Server<Handler>,
    local_addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

/// Binds UDP and TCP on every address in `listen` and starts answering from
/// the latest table in `table`, relaying other names to `upstream` (in
/// order). A port 0 picks one free port for both UDP and TCP of that
/// address. Fails if any socket cannot be bound (nothing is served then).
pub async fn bind(
    listen: Vec<SocketAddr>,
    table: watch::Receiver<Arc<ServiceTable>>,
    upstream: Vec<SocketAddr>,
) -> anyhow::Result<DnsServer> {
    bind_with(listen, table, upstream, RelayPolicy::default()).await
}

/// [`bind`], relaying other names only for the clients `relay` allows.
pub async fn bind_with(
    listen: Vec<SocketAddr>,
    table: watch::Receiver<Arc<ServiceTable>>,
    upstream: Vec<SocketAddr>,
    relay: RelayPolicy,
) -> anyhow::Result<DnsServer> {
    anyhow::ensure!(!listen.is_empty(), "no DNS listen address");
    let mut sockets = Vec::with_capacity(listen.len());
    for addr in listen {
        sockets.push(bind_pair(addr).await?);
    }
    let mut server = Server::new(Handler::new(
        table,
        Forwarder::new(upstream),
        clients::RelayClients::new(relay),
    ));
    let mut local_addrs = Vec::with_capacity(sockets.len());
    for (udp, tcp, local) in sockets {
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        local_addrs.push(local);
    }
    tracing::info!(addrs = ?local_addrs, "DNS server for skein. listening");
    Ok(DnsServer {
        server,
        local_addrs,
    })
}

/// [`bind`], then [`DnsServer::run`]: serves until dropped; returns an
/// error only if binding fails (or, later, if every socket fails).
pub async fn serve(
    listen: Vec<SocketAddr>,
    table: watch::Receiver<Arc<ServiceTable>>,
    upstream: Vec<SocketAddr>,
) -> anyhow::Result<()> {
    bind(listen, table, upstream).await?.run().await
}

impl DnsServer {
    /// The bound addresses (UDP and TCP share each), ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Serves until dropped. Returns only if the sockets fail, with that
    /// error.
    pub async fn run(mut self) -> anyhow::Result<()> {
        self.server
            .block_until_done()
            .await
            .map_err(|e| anyhow::anyhow!("DNS server on {:?} failed: {e}", self.local_addrs))?;
        anyhow::bail!("DNS server on {:?} stopped", self.local_addrs)
    }
}

/// A UDP socket and a TCP listener on the same address and port.
async fn bind_pair(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding DNS UDP socket on {addr}"))?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            // The port picked for UDP may be taken for TCP: pick another.
            Err(error) => last_error = Some(error),
        }
    }
    let error = last_error.unwrap_or_else(|| std::io::Error::other("no attempt"));
    Err(error).with_context(|| format!("binding DNS TCP listener on {addr}"))
}
