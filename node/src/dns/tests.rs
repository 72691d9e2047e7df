//! The DNS server over real sockets on 127.0.0.1: answers, table updates,
//! forwarding, and abuse (garbage datagrams, broken TCP framing) that must
//! not stop other queries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;

const LOCALHOST: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const WAIT: Duration = Duration::from_secs(5);

fn endpoint(ip: [u8; 4], port: u16, alloc: &str) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::from(ip).into(),
        port,
        alloc: alloc.into(),
    }
}

/// web: two endpoints on different IPs and ports; empty: none.
fn web_table() -> Arc<ServiceTable> {
    let mut table = ServiceTable::new();
    table.insert(
        "web".into(),
        vec![
            endpoint([10, 1, 0, 1], 8080, "web-0-aa11"),
            endpoint([10, 1, 0, 2], 9090, "web-1-bb22"),
        ],
    );
    table.insert("empty".into(), vec![]);
    Arc::new(table)
}

/// A running server on a free port of 127.0.0.1.
struct Running {
    addr: SocketAddr,
    table: watch::Sender<Arc<ServiceTable>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(upstream: Vec<SocketAddr>) -> Running {
    let (table, rx) = watch::channel(web_table());
    let server = bind(vec![LOCALHOST], rx, upstream).await.unwrap();
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    Running {
        addr,
        table,
        task: tokio::spawn(server.run()),
    }
}

fn question(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    exchange_udp(server, &question(name, qtype)).await
}

async fn exchange_udp(server: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind(LOCALHOST).await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65_535];
    let (len, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    answer
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let message = question(name, qtype);
    let bytes = message.to_vec().unwrap();
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    };
    let answer = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("TCP answer in time");
    assert_eq!(answer.metadata.id, message.metadata.id);
    answer
}

fn ipv4s(records: &[Record]) -> Vec<Ipv4Addr> {
    let mut ips: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

/// (port, target) of every SRV answer, sorted, checking priority and weight.
fn srv_targets(records: &[Record]) -> Vec<(u16, String)> {
    let mut targets: Vec<_> = records
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => {
                assert_eq!((srv.priority, srv.weight), (1, 1));
                (srv.port, srv.target.to_ascii())
            }
            other => panic!("not an SRV record: {other:?}"),
        })
        .collect();
    targets.sort();
    targets
}

fn assert_negative(answer: &Message, code: ResponseCode) {
    assert_eq!(answer.metadata.response_code, code);
    assert!(answer.metadata.authoritative);
    assert!(answer.answers.is_empty(), "{:?}", answer.answers);
    let [soa] = answer.authorities.as_slice() else {
        panic!("one SOA in authority: {:?}", answer.authorities);
    };
    match &soa.data {
        RData::SOA(soa_data) => assert_eq!(soa_data.minimum, 1),
        other => panic!("not SOA: {other:?}"),
    }
    assert_eq!(soa.name.to_ascii(), "skein.");
}

#[tokio::test]
async fn dns_a_srv_and_alloc_answers() {
    let server = start(vec![]).await;

    for answer in [
        ask_udp(server.addr, "web.service.skein.", RecordType::A).await,
        ask_tcp(server.addr, "WEB.Service.SKEIN.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(
            ipv4s(&answer.answers),
            [Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2)]
        );
        assert!(answer.answers.iter().all(|r| r.ttl == 1));
    }

    let srv = ask_udp(server.addr, "web.service.skein.", RecordType::SRV).await;
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        srv_targets(&srv.answers),
        [
            (8080, "web-0-aa11.alloc.skein.".to_owned()),
            (9090, "web-1-bb22.alloc.skein.".to_owned()),
        ]
    );
    let mut glue: Vec<_> = srv
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some((r.name.to_ascii(), *ip)),
            _ => None,
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            (
                "web-0-aa11.alloc.skein.".to_owned(),
                Ipv4Addr::new(10, 1, 0, 1)
            ),
            (
                "web-1-bb22.alloc.skein.".to_owned(),
                Ipv4Addr::new(10, 1, 0, 2)
            ),
        ]
    );

    let alloc = ask_udp(server.addr, "Web-1-BB22.alloc.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&alloc.answers), [Ipv4Addr::new(10, 1, 0, 2)]);

    // No IPv6 endpoint: the name exists, AAAA is NODATA.
    let aaaa = ask_udp(server.addr, "web.service.skein.", RecordType::AAAA).await;
    assert_negative(&aaaa, ResponseCode::NoError);
}

#[tokio::test]
async fn dns_rfc2782_srv_name() {
    let server = start(vec![]).await;
    for answer in [
        ask_udp(server.addr, "_web._tcp.service.skein.", RecordType::SRV).await,
        ask_tcp(server.addr, "_WEB._TCP.service.skein.", RecordType::SRV).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(srv_targets(&answer.answers).len(), 2);
        assert_eq!(ipv4s(&answer.additionals).len(), 2);
    }
    let unknown = ask_udp(server.addr, "_nope._tcp.service.skein.", RecordType::SRV).await;
    assert_negative(&unknown, ResponseCode::NXDomain);
}

#[tokio::test]
async fn dns_table_update_is_visible_on_next_query() {
    let server = start(vec![]).await;
    let before = ask_udp(server.addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&before.answers).len(), 2);

    let mut table = ServiceTable::new();
    table.insert(
        "web".into(),
        vec![endpoint([10, 9, 9, 9], 80, "web-2-cc33")],
    );
    table.insert(
        "api".into(),
        vec![endpoint([10, 8, 8, 8], 81, "api-0-dd44")],
    );
    server.table.send(Arc::new(table)).unwrap();

    let after = ask_udp(server.addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&after.answers), [Ipv4Addr::new(10, 9, 9, 9)]);
    let api = ask_tcp(server.addr, "api.service.skein.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&api.answers),
        [(81, "api-0-dd44.alloc.skein.".to_owned())]
    );
    let gone = ask_udp(server.addr, "web-0-aa11.alloc.skein.", RecordType::A).await;
    assert_negative(&gone, ResponseCode::NXDomain);
    let empty = ask_udp(server.addr, "empty.service.skein.", RecordType::A).await;
    assert_negative(&empty, ResponseCode::NXDomain);
}

#[tokio::test]
async fn dns_unknown_is_nxdomain_known_empty_is_nodata() {
    let server = start(vec![]).await;
    let unknown = ask_udp(server.addr, "nope.service.skein.", RecordType::A).await;
    assert_negative(&unknown, ResponseCode::NXDomain);
    let stray = ask_udp(server.addr, "what.skein.", RecordType::A).await;
    assert_negative(&stray, ResponseCode::NXDomain);
    for qtype in [RecordType::A, RecordType::SRV] {
        let empty = ask_udp(server.addr, "empty.service.skein.", qtype).await;
        assert_negative(&empty, ResponseCode::NoError);
    }
    let apex = ask_udp(server.addr, "skein.", RecordType::SOA).await;
    assert_eq!(apex.answers.len(), 1);
}

#[tokio::test]
async fn dns_outside_zone_without_upstream_is_refused() {
    let server = start(vec![]).await;
    let answer = ask_udp(server.addr, "example.org.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert!(answer.answers.is_empty());
    assert!(!answer.metadata.recursion_available);
}

/// A fake upstream on UDP and TCP of one port: answers any question with
/// `name A 192.0.2.7`.
async fn fake_upstream() -> (SocketAddr, JoinHandle<()>) {
    fn answer(query: &[u8]) -> Option<Vec<u8>> {
        let query = Message::from_vec(query).ok()?;
        let mut response = Message::response(query.metadata.id, OpCode::Query);
        response.metadata.recursion_available = true;
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        let name = query.queries.first()?.name().clone();
        response.add_queries(query.queries.clone());
        response.add_answer(Record::from_rdata(
            name,
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        ));
        if query.edns.is_some() {
            response.set_edns(Edns::new());
        }
        response.to_vec().ok()
    }

    let (udp, tcp) = loop {
        let udp = UdpSocket::bind(LOCALHOST).await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let udp_loop = async {
            let mut buf = vec![0u8; 65_535];
            while let Ok((len, from)) = udp.recv_from(&mut buf).await {
                if let Some(bytes) = answer(&buf[..len]) {
                    let _ = udp.send_to(&bytes, from).await;
                }
            }
        };
        let tcp_loop = async {
            while let Ok((mut stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let mut prefix = [0u8; 2];
                    stream.read_exact(&mut prefix).await?;
                    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
                    stream.read_exact(&mut buf).await?;
                    if let Some(bytes) = answer(&buf) {
                        stream
                            .write_all(&(bytes.len() as u16).to_be_bytes())
                            .await?;
                        stream.write_all(&bytes).await?;
                    }
                    std::io::Result::Ok(())
                });
            }
        };
        tokio::join!(udp_loop, tcp_loop);
    });
    (addr, task)
}

/// An address where nothing listens (UDP answers with port unreachable).
async fn dead_upstream() -> SocketAddr {
    UdpSocket::bind(LOCALHOST)
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn dns_outside_zone_is_relayed_to_first_answering_upstream() {
    let (upstream, fake) = fake_upstream().await;
    let server = start(vec![dead_upstream().await, upstream]).await;

    for answer in [
        ask_udp(server.addr, "example.org.", RecordType::A).await,
        ask_tcp(server.addr, "Example.ORG.", RecordType::A).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.recursion_available);
        assert!(!answer.metadata.authoritative);
        assert_eq!(ipv4s(&answer.answers), [Ipv4Addr::new(192, 0, 2, 7)]);
        assert_eq!(answer.answers[0].ttl, 300);
    }
    // With EDNS too.
    let mut message = question("example.net.", RecordType::A);
    message.set_edns(Edns::new());
    let answer = exchange_udp(server.addr, &message).await;
    assert_eq!(ipv4s(&answer.answers), [Ipv4Addr::new(192, 0, 2, 7)]);
    assert!(answer.edns.is_some());

    // skein. is still ours.
    let ours = ask_udp(server.addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&ours.answers).len(), 2);
    fake.abort();
}

#[tokio::test]
async fn dns_outside_zone_with_silent_upstreams_is_servfail() {
    let server = start(vec![dead_upstream().await]).await;
    let answer = ask_udp(server.addr, "example.org.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn dns_garbage_datagrams_do_not_stop_answers() {
    let server = start(vec![]).await;
    let socket = UdpSocket::bind(LOCALHOST).await.unwrap();

    let valid = question("web.service.skein.", RecordType::A)
        .to_vec()
        .unwrap();
    let mut many_questions = valid.clone();
    many_questions[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut as_response = valid.clone();
    as_response[2] |= 0x80;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        vec![0xff; 12],
        vec![0xab; 600],
        valid[..valid.len() - 3].to_vec(),
        many_questions,
        as_response,
        // A name made of compression pointers to itself.
        [&valid[..12], &[0xc0, 0x0c, 0, 1, 0, 1][..]].concat(),
    ];
    for datagram in &garbage {
        socket.send_to(datagram, server.addr).await.unwrap();
    }
    // Whatever came back for the garbage (FORMERR or nothing), a valid
    // query from another socket is answered.
    let answer = ask_udp(server.addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&answer.answers).len(), 2);
    let answer = ask_tcp(server.addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&answer.answers).len(), 2);
}

#[tokio::test]
async fn dns_broken_tcp_framing_does_not_stop_answers() {
    let server = start(vec![]).await;

    // Half a length prefix, then close.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x00]).await.unwrap();
    drop(half);
    // 65535 bytes announced, a few sent, then close.
    let mut huge = TcpStream::connect(server.addr).await.unwrap();
    huge.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    drop(huge);
    // 65535 bytes announced and the connection kept open, silent.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0xff, 0xff]).await.unwrap();
    // A zero-length frame, then a garbage frame, on an open connection.
    let mut junk = TcpStream::connect(server.addr).await.unwrap();
    junk.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    // Connect and close without a byte.
    drop(TcpStream::connect(server.addr).await.unwrap());

    let answer = ask_tcp(server.addr, "web.service.skein.", RecordType::SRV).await;
    assert_eq!(srv_targets(&answer.answers).len(), 2);
    let answer = ask_udp(server.addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&answer.answers).len(), 2);

    // Two queries pipelined on one connection are both answered.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let message = question("web.service.skein.", RecordType::A);
        ids.push(message.metadata.id);
        let bytes = message.to_vec().unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut prefix = [0u8; 2];
        tokio::time::timeout(WAIT, stream.read_exact(&mut prefix))
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut buf).await.unwrap();
        got.push(Message::from_vec(&buf).unwrap().metadata.id);
    }
    ids.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, ids);
    drop((stalled, junk));
}

#[tokio::test]
async fn dns_bind_reports_taken_port() {
    let taken = UdpSocket::bind(LOCALHOST).await.unwrap();
    let (_tx, rx) = watch::channel(web_table());
    let error = bind(vec![taken.local_addr().unwrap()], rx, vec![])
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("binding DNS UDP"),
        "{error:#}"
    );
}

/// The real `dig` (dnsutils) against our server, if installed.
#[tokio::test]
async fn dns_dig_can_query() {
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("skipping dns_dig_can_query: dig is not installed (apt-get install dnsutils)");
        return;
    }
    let server = start(vec![]).await;
    let port = server.addr.port().to_string();
    for transport in ["+notcp", "+tcp"] {
        let output = tokio::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                "web.service.skein",
                "SRV",
                "+short",
            ])
            .args([transport, "+time=2", "+tries=1"])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines: Vec<&str> = stdout.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "1 1 8080 web-0-aa11.alloc.skein.",
                "1 1 9090 web-1-bb22.alloc.skein."
            ],
            "dig {transport}: {stdout}"
        );
    }
    let output = tokio::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port,
            "nope.service.skein",
            "A",
            "+time=2",
            "+tries=1",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("status: NXDOMAIN"), "{stdout}");
}

#[tokio::test]
async fn dns_dropping_the_task_stops_the_server() {
    let server = start(vec![]).await;
    let addr = server.addr;
    ask_tcp(addr, "web.service.skein.", RecordType::A).await;
    server.task.abort();
    let (tx, rx) = watch::channel(web_table());
    drop(server);
    // The sockets are closed: the port can be bound again, both protocols.
    let mut rebound = None;
    for _ in 0..50 {
        if let Ok(s) = bind(vec![addr], rx.clone(), vec![]).await {
            rebound = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rebound = rebound.expect("port free again after the server task was dropped");
    let _running = tokio::spawn(rebound.run());
    let answer = ask_udp(addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&answer.answers).len(), 2);
    drop(tx);
}

#[tokio::test]
async fn dns_relays_only_for_allowed_clients_and_only_so_fast() {
    let (upstream, fake) = fake_upstream().await;
    let (table, rx) = watch::channel(web_table());
    // A client on no allowed network (loopback not allowed here, to stand
    // for a host on the LAN): skein. is answered, the rest refused.
    let closed = RelayPolicy {
        loopback: false,
        ..RelayPolicy::default()
    };
    let server = bind_with(vec![LOCALHOST], rx.clone(), vec![upstream], closed)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let task = tokio::spawn(server.run());
    let refused = ask_udp(addr, "example.org.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let ours = ask_udp(addr, "web.service.skein.", RecordType::A).await;
    assert_eq!(ipv4s(&ours.answers).len(), 2);
    task.abort();

    // An allowed client past its burst is refused too; then it refills.
    let slow = RelayPolicy {
        per_client_qps: 2,
        per_client_burst: 3,
        ..RelayPolicy::default()
    };
    let server = bind_with(vec![LOCALHOST], rx, vec![upstream], slow)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let task = tokio::spawn(server.run());
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            ask_udp(addr, "example.org.", RecordType::A)
                .await
                .metadata
                .response_code,
        );
    }
    assert_eq!(&codes[..3], [ResponseCode::NoError; 3], "{codes:?}");
    assert!(codes[3..].contains(&ResponseCode::Refused), "{codes:?}");
    drop(table);
    task.abort();
    fake.abort();
}
