//! Mesh tests over real TCP sockets on 127.0.0.1.
//!
//! Every wait is a poll with a deadline, except the one bounded negative
//! wait of the wrong-key test, which also waits for evidence (failed
//! incoming handshakes) rather than for time alone.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::{transport, Mesh, MeshConfig, MeshError, MeshEvent, MAX_GOSSIP_BYTES};

/// Upper bound for anything that should happen "soon".
const DEADLINE: Duration = Duration::from_secs(20);

fn key(byte: u8) -> PreSharedKey {
    PreSharedKey::new([byte; 32])
}

/// What a test node saw, besides the requests it answered.
#[derive(Debug, Clone)]
enum Seen {
    Gossip(PeerId, Vec<u8>),
    Request(PeerId),
    Connected(PeerId),
    Disconnected(PeerId),
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn any(&self, pred: impl Fn(&Seen) -> bool) -> bool {
        self.0.lock().unwrap().iter().any(pred)
    }
}

struct Node {
    mesh: Mesh,
    log: Log,
}

impl Node {
    fn id(&self) -> PeerId {
        self.mesh.local_peer_id()
    }

    /// `127.0.0.1:<port>`, the way an operator writes a seed.
    fn seed(&self) -> String {
        let addr = self.mesh.advertised_addrs()[0].clone();
        let mut ip = None;
        let mut port = None;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(a),
                Protocol::Tcp(p) => port = Some(p),
                _ => {}
            }
        }
        format!("{}:{}", ip.unwrap(), port.unwrap())
    }
}

async fn start(psk: PreSharedKey, join: Vec<String>) -> Node {
    start_with(psk, join, Keypair::generate_ed25519(), 0).await
}

async fn start_with(psk: PreSharedKey, join: Vec<String>, keypair: Keypair, port: u16) -> Node {
    let mut cfg = MeshConfig::new(([127, 0, 0, 1], port).into(), psk, keypair);
    cfg.join = join;
    start_cfg(cfg).await
}

/// Starts a mesh and a task that logs every event and answers API requests
/// with `"<own peer id> <path>"`, except: `/drop` is dropped unanswered,
/// `/slow` is held until a `/release` request arrives.
async fn start_cfg(cfg: MeshConfig) -> Node {
    start_cfg_in(cfg, &mut Registry::default()).await
}

/// [`start_cfg`], with libp2p's metrics in `registry`.
async fn start_cfg_in(cfg: MeshConfig, registry: &mut Registry) -> Node {
    let (mesh, mut events) = Mesh::start(cfg, registry).await.unwrap();
    let log = Log::default();
    let me = mesh.local_peer_id();
    let sink = log.clone();
    tokio::spawn(async move {
        let answer = |path: &str| format!("{me} {path}").into_bytes();
        let mut held = Vec::new();
        while let Some(event) = events.recv().await {
            // Logged before answering, so a test that got the answer sees it.
            let push = |seen| sink.0.lock().unwrap().push(seen);
            match event {
                MeshEvent::Gossip { from, bytes } => push(Seen::Gossip(from, bytes)),
                MeshEvent::Request { from, bytes, reply } => {
                    push(Seen::Request(from));
                    // The mesh carries bytes: this test's requests are paths.
                    let path = String::from_utf8_lossy(&bytes).into_owned();
                    match path.as_str() {
                        "/drop" => drop(reply),
                        "/slow" => held.push(reply),
                        "/release" => {
                            for slow in held.drain(..) {
                                let _ = slow.send(answer("/slow"));
                            }
                            let _ = reply.send(answer("/release"));
                        }
                        path => {
                            let _ = reply.send(answer(path));
                        }
                    }
                }
                MeshEvent::PeerConnected(p) => push(Seen::Connected(p)),
                MeshEvent::PeerDisconnected(p) => push(Seen::Disconnected(p)),
            }
        }
    });
    Node { mesh, log }
}

async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn connected(a: &Mesh, b: PeerId) -> bool {
    a.connected_peers().await.contains(&b)
}

fn api(path: &str) -> Vec<u8> {
    path.as_bytes().to_vec()
}

/// Sends an API request and checks the answer came from `to`.
async fn round_trip(from: &Node, to: &Node, path: &str) {
    match from.mesh.request(to.id(), api(path)).await {
        Ok(reply) => {
            assert_eq!(
                String::from_utf8(reply).unwrap(),
                format!("{} {path}", to.id())
            );
        }
        other => panic!("request {path} to {}: {other:?}", to.id()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_request_both_ways_and_gossip_status() {
    let a = start(key(1), vec![]).await;
    let b = start(key(1), vec![a.seed()]).await;
    poll_until("A and B connected", || async {
        connected(&a.mesh, b.id()).await && connected(&b.mesh, a.id()).await
    })
    .await;
    poll_until("PeerConnected(B) at A", || async {
        a.log
            .any(|s| matches!(s, Seen::Connected(p) if *p == b.id()))
    })
    .await;

    round_trip(&a, &b, "/from-a").await;
    round_trip(&b, &a, "/from-b").await;
    assert!(b.log.any(|s| matches!(s, Seen::Request(p) if *p == a.id())));

    // The gossip mesh needs subscriptions exchanged: publish until seen.
    // The mesh hands gossip on as bytes, with the signer.
    let mut seq = 0u64;
    poll_until("B's gossip at A", || {
        seq += 1;
        let bytes = format!("status {seq}").into_bytes();
        let (mesh, log, b_id) = (b.mesh.clone(), a.log.clone(), b.id());
        async move {
            mesh.publish(bytes).await.unwrap();
            log.any(|s| {
                matches!(s, Seen::Gossip(from, bytes)
                    if *from == b_id && bytes.starts_with(b"status "))
            })
        }
    })
    .await;

    // A message over the gossip limit is refused locally.
    assert!(matches!(
        b.mesh.publish(vec![0; MAX_GOSSIP_BYTES + 1]).await,
        Err(MeshError::TooLarge { .. })
    ));

    // Dropping the last handle stops B; A notices.
    let b_id = b.id();
    drop(b);
    poll_until("A sees B leave", || async {
        a.log
            .any(|s| matches!(s, Seen::Disconnected(p) if *p == b_id))
    })
    .await;
}

/// The sum over all label sets of metric `name` in an OpenMetrics text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn libp2p_metrics_land_in_the_callers_registry() {
    let mut registry = Registry::default();
    let cfg = MeshConfig::new(
        ([127, 0, 0, 1], 0).into(),
        key(6),
        Keypair::generate_ed25519(),
    );
    let a = start_cfg_in(cfg, &mut registry).await;
    let b = start(key(6), vec![a.seed()]).await;
    poll_until("A and B connected", || async {
        connected(&a.mesh, b.id()).await && connected(&b.mesh, a.id()).await
    })
    .await;
    round_trip(&a, &b, "/metrics").await;

    let scrape = |registry: &Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = scrape(&registry);
        let established = metric_sum(&text, "libp2p_swarm_connections_established_total");
        let bytes = metric_sum(&text, "libp2p_bandwidth_bytes_total");
        if established >= 1.0 && bytes > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no established connection or no bytes counted in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_dropped_and_unanswered_requests() {
    let mut cfg = MeshConfig::new(
        ([127, 0, 0, 1], 0).into(),
        key(7),
        Keypair::generate_ed25519(),
    );
    cfg.request_timeout = Duration::from_secs(1);
    let a = start_cfg(cfg).await;
    let b = start(key(7), vec![a.seed()]).await;
    poll_until("A and B connected", || connected(&a.mesh, b.id())).await;

    // A request B's application holds does not block anything else.
    let slow = tokio::spawn({
        let mesh = a.mesh.clone();
        let b_id = b.id();
        async move { mesh.request(b_id, api("/slow")).await }
    });
    poll_until("B holds /slow", || async {
        b.log.any(|s| matches!(s, Seen::Request(_)))
    })
    .await;
    round_trip(&a, &b, "/fast").await;
    round_trip(&b, &a, "/other-way").await;
    assert!(!slow.is_finished());
    round_trip(&a, &b, "/release").await;
    assert!(slow.await.unwrap().is_ok());

    // A dropped reply is an error at the asker, not a hang.
    assert!(matches!(
        a.mesh.request(b.id(), api("/drop")).await,
        Err(MeshError::Remote(_))
    ));
    // An unanswered request times out after A's request_timeout (1 s).
    let started = Instant::now();
    assert!(matches!(
        a.mesh.request(b.id(), api("/slow")).await,
        Err(MeshError::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    round_trip(&a, &b, "/still-fine").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn third_node_reaches_a_peer_learned_from_gossip() {
    let a = start(key(2), vec![]).await;
    let b = start(key(2), vec![a.seed()]).await;
    let c = start(key(2), vec![a.seed()]).await;
    poll_until("B and C connected to A", || async {
        connected(&a.mesh, b.id()).await && connected(&a.mesh, c.id()).await
    })
    .await;

    // Without an address C cannot reach B.
    assert!(!connected(&c.mesh, b.id()).await);
    assert!(matches!(
        c.mesh.request(b.id(), api("/nope")).await,
        Err(MeshError::Unreachable(_))
    ));

    // What gossip will do: hand C B's advertised addresses.
    c.mesh.add_peer_addrs(b.id(), b.mesh.advertised_addrs());
    round_trip(&c, &b, "/from-c").await;
    poll_until("C connected to B", || connected(&c.mesh, b.id())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_cluster_key_never_connects() {
    let a = start(key(3), vec![]).await;
    let w = start(key(4), vec![a.seed()]).await;
    // Evidence, not just time: A saw the first attempt and a retry fail
    // (the retry comes after the 2 s backoff, ~2 s of bounded waiting).
    poll_until("two failed handshakes at A", || async {
        a.mesh.stats().failed_incoming.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(a.mesh.connected_peers().await.is_empty());
    assert!(w.mesh.connected_peers().await.is_empty());
    assert!(!a.log.any(|s| matches!(s, Seen::Connected(_))));
    assert!(!w.log.any(|s| matches!(s, Seen::Connected(_))));
    assert!(matches!(
        w.mesh.request(a.id(), api("/x")).await,
        Err(MeshError::Unreachable(_))
    ));
}

/// Sends whatever bytes it is given on our protocol, reads whatever comes back.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res).await
    }
}

fn framed(len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_wire_is_dropped_and_the_node_keeps_serving() {
    let a = start(key(5), vec![]).await;
    let a_addr: Multiaddr = a.mesh.advertised_addrs()[0].clone();

    let mut raw = transport::build_swarm(
        Keypair::generate_ed25519(),
        key(5),
        &mut Registry::default(),
        |_| {
            Ok(request_response::Behaviour::<RawCodec>::new(
                [(super::codec::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            ))
        },
    )
    .unwrap();

    let valid = api("/after-garbage");
    let garbage: Vec<Vec<u8>> = vec![
        b"these bytes are not a skein frame at all".to_vec(), // (a) random bytes
        framed(u32::MAX, &[0u8; 64]),                         // (b) prefix > 16 MiB
        framed(17 * 1024 * 1024, b"short"),                   // (b) just over the limit
        framed(100, &[1u8; 10]),                              // (c) truncated body
        vec![0, 0],                                           // (c) truncated prefix
    ];
    let mut outstanding = std::collections::HashMap::new();
    for bytes in &garbage {
        let id = raw.behaviour_mut().send_request_with_addresses(
            &a.id(),
            bytes.clone(),
            vec![a_addr.clone()],
        );
        outstanding.insert(id, "garbage");
    }
    // The connection survives: a valid frame on it still gets an answer.
    let good = raw.behaviour_mut().send_request_with_addresses(
        &a.id(),
        framed(valid.len() as u32, &valid),
        vec![a_addr.clone()],
    );
    outstanding.insert(good, "valid");

    let deadline = Instant::now() + DEADLINE;
    let mut good_answer = None;
    while !outstanding.is_empty() {
        let event = tokio::time::timeout_at(deadline, raw.select_next_some())
            .await
            .expect("raw peer got no answers");
        if let SwarmEvent::Behaviour(event) = event {
            match event {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } => {
                    if outstanding.remove(&request_id) == Some("valid") {
                        good_answer = Some(response);
                    } else {
                        // A dropped request is closed without an answer.
                        assert!(response.is_empty(), "garbage got an answer");
                    }
                }
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    assert_ne!(
                        outstanding.remove(&request_id),
                        Some("valid"),
                        "valid request failed: {error}"
                    );
                }
                _ => {}
            }
        }
    }
    let answer = good_answer.unwrap();
    let len = u32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
    assert_eq!(len, answer.len() - 4);
    // Bytes inside a well-formed frame are the application's to judge
    // (`crate::rpc` answers undecodable ones with a typed error).
    assert!(String::from_utf8(answer[4..].to_vec())
        .unwrap()
        .ends_with("/after-garbage"));

    poll_until("A rejected every garbage request", || async {
        a.mesh.stats().rejected_requests.load(Ordering::Relaxed) == garbage.len() as u64
    })
    .await;
    // Only the valid request reached the application.
    let requests = a
        .log
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, Seen::Request(_)))
        .count();
    assert_eq!(requests, 1);

    // And a normal mesh peer is still served.
    let b = start(key(5), vec![a.seed()]).await;
    poll_until("B connected to A", || connected(&b.mesh, a.id())).await;
    round_trip(&b, &a, "/still-serving").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_peer_is_redialed_on_its_known_address() {
    let a = start(key(6), vec![]).await;
    let b_key = Keypair::generate_ed25519();
    let b = start_with(key(6), vec![a.seed()], b_key.clone(), 0).await;
    let b_id = b.id();
    poll_until("A connected to B", || connected(&a.mesh, b_id)).await;
    // A learns B's listen address through identify (B dialed A, so A has
    // only seen B's outgoing port so far).
    let b_addrs = b.mesh.advertised_addrs();
    poll_until("A knows B's listen address", || async {
        a.mesh.known_addrs(b_id).await == b_addrs
    })
    .await;
    round_trip(&a, &b, "/before").await;

    let port = b.seed().rsplit_once(':').unwrap().1.parse().unwrap();
    b.mesh.shutdown().await;
    assert!(matches!(
        b.mesh.request(a.id(), api("/x")).await,
        Err(MeshError::Stopped)
    ));
    drop(b);
    poll_until("A sees B gone", || async {
        !connected(&a.mesh, b_id).await
    })
    .await;

    // B' has no seeds: only A's redial can bring them together.
    let b2 = start_with(key(6), vec![], b_key, port).await;
    assert_eq!(b2.id(), b_id);
    poll_until("A redialed B'", || connected(&a.mesh, b_id)).await;
    round_trip(&a, &b2, "/after").await;
}
