//! Names outside `skein.`: relayed to the host's resolvers.
//!
//! Containers that use a Skein node as their only resolver must still
//! resolve the rest of the world, so every other question is relayed as is
//! (the client's raw bytes, its id and EDNS included) to the upstreams in
//! order: the first that answers within [`UPSTREAM_TIMEOUT`] wins. A UDP
//! question goes over UDP (a truncated answer is relayed truncated, and the
//! client retries over TCP), a TCP question over TCP. There is no cache: the
//! upstream resolver has one.
//!
//! The upstreams come from the host's resolv.conf ([`system_upstreams`]),
//! minus loopback and our own listen addresses, which would relay to
//! ourselves in a loop.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer one question.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest DNS message (UDP datagram or TCP frame).
const MAX_MESSAGE: usize = 65_535;

/// Relays questions to upstream resolvers.
#[derive(Debug)]
pub(super) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    warned: RateLimit,
}

impl Forwarder {
    pub(super) fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams,
            warned: RateLimit::new(Duration::from_secs(60)),
        }
    }

    /// Whether there is anyone to relay to (else we refuse).
    pub(super) fn is_enabled(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// Relays the raw question `query` (with message id `id`) over UDP or
    /// TCP; the first upstream's well-formed answer, or `None` if none
    /// answered in time.
    pub(super) async fn relay(&self, query: &[u8], id: u16, tcp: bool) -> Option<Message> {
        for &upstream in &self.upstreams {
            let exchange = async {
                if tcp {
                    exchange_tcp(upstream, query, id).await
                } else {
                    exchange_udp(upstream, query, id).await
                }
            };
            match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
                Ok(Ok(message)) => return Some(message),
                Ok(Err(error)) => tracing::debug!(%upstream, %error, tcp, "upstream DNS failed"),
                Err(_) => tracing::debug!(%upstream, tcp, "upstream DNS timed out"),
            }
        }
        if self.warned.allow() {
            tracing::warn!(
                upstreams = ?self.upstreams,
                "no upstream DNS server answered; external names fail (warned at most once a minute)"
            );
        }
        None
    }
}

/// One question over UDP from a fresh socket connected to `upstream` (the
/// kernel drops datagrams from anyone else); datagrams that are not the
/// answer to `id` are ignored until the caller's timeout.
async fn exchange_udp(upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await?;
        match answer_to(&buf[..len], id) {
            Some(message) => return Ok(message),
            None => tracing::debug!(%upstream, len, "ignoring stray datagram from upstream"),
        }
    }
}

/// One question over a fresh TCP connection (2-byte length framing).
async fn exchange_tcp(upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Message> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long for TCP"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let mut frame = Vec::with_capacity(query.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(query);
    stream.write_all(&frame).await?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut buf).await?;
    answer_to(&buf, id)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an answer to our query"))
}

/// `bytes` parsed, if it is a response with message id `id`.
fn answer_to(bytes: &[u8], id: u16) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    (message.metadata.id == id && message.metadata.message_type == MessageType::Response)
        .then_some(message)
}

/// Upstream resolvers from `/etc/resolv.conf`, port 53, in file order,
/// without loopback addresses and without `exclude` (the addresses we listen
/// on). When that leaves none (a host whose resolv.conf points at the
/// systemd-resolved stub, 127.0.0.53), the resolvers systemd-resolved itself
/// uses, from `/run/systemd/resolve/resolv.conf`. Empty if neither helps.
pub fn system_upstreams(exclude: &[IpAddr]) -> Vec<SocketAddr> {
    for path in ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let upstreams = parse_resolv_conf(&text, exclude);
                if !upstreams.is_empty() {
                    return upstreams;
                }
            }
            Err(error) => tracing::debug!(path, %error, "cannot read resolver configuration"),
        }
    }
    Vec::new()
}

/// The usable `nameserver` lines of a resolv.conf text.
pub(super) fn parse_resolv_conf(text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // Scoped IPv6 addresses (fe80::1%eth0) need an interface index: skipped.
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        if ip.is_loopback() || ip.is_unspecified() || exclude.contains(&ip) {
            continue;
        }
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

/// Lets one event through per period (for warnings about repeated faults).
#[derive(Debug)]
struct RateLimit {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl RateLimit {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(None),
        }
    }

    fn allow(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.period) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_keeps_usable_nameservers() {
        let text = "\
# generated
search example.org
nameserver 127.0.0.53
nameserver 10.1.2.3 # office
nameserver ::1
nameserver 2001:db8::1
nameserver fe80::1%eth0
nameserver 10.1.2.3
nameserver 172.17.0.1
;nameserver 9.9.9.9
nameserver
options edns0
";
        let ours: IpAddr = "172.17.0.1".parse().unwrap();
        assert_eq!(
            parse_resolv_conf(text, &[ours]),
            vec![
                "10.1.2.3:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let limit = RateLimit::new(Duration::from_secs(60));
        assert!(limit.allow());
        assert!(!limit.allow());
    }
}
