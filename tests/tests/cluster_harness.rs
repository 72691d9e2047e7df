//! Self-tests of the multi-node harness (`skein_e2e::cluster`): the network
//! plumbing (bridge, namespaces, partitions, clean-up) and `Cluster` driven
//! with `skein-fake-agent`, so they do not depend on the real agent's
//! clustering. They need root and iproute2, like the cluster tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use skein_e2e::*;

const FAKE_AGENT: &str = env!("CARGO_BIN_EXE_skein-fake-agent");
const LISTEN_PORT: u16 = 7499;

fn fake_cluster_opts() -> ClusterOpts {
    ClusterOpts {
        bin: Some(PathBuf::from(FAKE_AGENT)),
        ..ClusterOpts::default()
    }
}

/// A TCP server inside `ns` on `<ns ip>:port` answering every connection with
/// `hello from <ns name>\n`, on a background thread (the socket belongs to
/// the namespace although the thread does not).
fn serve_hello_in(ns: &Netns, port: u16) {
    let ip = ns.ip();
    let listener = ns.enter(move || TcpListener::bind((ip, port)).expect("bind in namespace"));
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = writeln!(s, "hello from {name}");
        }
    });
}

/// Connects to `addr` (1 s limit) and reads one line (2 s limit).
fn read_line_from(addr: SocketAddr) -> Result<String, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    Ok(line.trim().to_string())
}

/// [`read_line_from`], connecting from inside `from`.
fn read_line_via(from: &Netns, addr: SocketAddr) -> Result<String, String> {
    from.enter(|| read_line_from(addr))
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// Network objects of slot `k` that still exist.
fn leftovers(k: u8) -> Vec<String> {
    let mut found = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        let name = l.split_whitespace().next().unwrap_or("");
        if name.starts_with(&format!("skn{k}-")) {
            found.push(format!("netns {name}"));
        }
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        let name = l.split(": ").nth(1).unwrap_or("");
        let name = name.split('@').next().unwrap_or(name);
        if name == format!("skb{k}") || name.starts_with(&format!("skv{k}-")) {
            found.push(format!("link {name}"));
        }
    }
    for backend in ["iptables", "iptables-legacy"] {
        if let Ok(o) = Command::new(backend).args(["-S", "FORWARD"]).output() {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if l.contains(&format!("-i skb{k} ")) {
                    found.push(format!("{backend} {l}"));
                }
            }
        }
    }
    found
}

/// Whether process `pid` exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S …": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

#[test]
fn namespaces_on_a_bridge_reach_each_other_partition_heal_and_clean_up() {
    let bridge = Bridge::create();
    let k = bridge.k();
    assert_eq!(bridge.name(), format!("skb{k}"));
    assert!(bridge.name().len() <= 15);
    eprintln!(
        "bridge {} {}; FORWARD rule added in: {:?}",
        bridge.name(),
        bridge.subnet(),
        bridge.firewall_backends()
    );
    let mut nets: Vec<Netns> = (0..3).map(|i| Netns::create(&bridge, i)).collect();
    for (i, ns) in nets.iter().enumerate() {
        assert_eq!(ns.name(), format!("skn{k}-{i}"));
        assert_eq!(ns.ip(), Ipv4Addr::new(10, 211, k, 10 + i as u8));
        assert_eq!(ns.gateway(), Ipv4Addr::new(10, 211, k, 1));
        // eth0 carries the address, lo is up, the default route is the host.
        let addr = ns.exec("ip", &["-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            addr.assert_success()
                .stdout
                .contains(&format!("{}/24", ns.ip())),
            "{addr}"
        );
        let lo = ns.exec("ip", &["-o", "link", "show", "lo"]);
        assert!(lo.stdout.contains("UP"), "{lo}");
        let route = ns.exec("ip", &["route", "show", "default"]);
        assert!(
            route.stdout.contains(&format!("via {}", ns.gateway())),
            "{route}"
        );
        serve_hello_in(ns, LISTEN_PORT);
    }

    // Node 0 reaches node 2 (across the bridge, through FORWARD), the host
    // reaches every node, every node reaches the host.
    let ips: Vec<Ipv4Addr> = nets.iter().map(Netns::ip).collect();
    let to = |i: usize| sock(ips[i], LISTEN_PORT);
    let hello = |i: usize| format!("hello from skn{k}-{i}");
    assert_eq!(read_line_via(&nets[0], to(2)), Ok(hello(2)));
    assert_eq!(read_line_via(&nets[2], to(1)), Ok(hello(1)));
    for i in 0..3 {
        assert_eq!(read_line_from(to(i)), Ok(hello(i)));
    }
    let host_listener = TcpListener::bind((bridge.host_ip(), 0)).unwrap();
    let host_addr = host_listener.local_addr().unwrap();
    assert!(nets[1]
        .enter(|| TcpStream::connect_timeout(&host_addr, Duration::from_secs(1)))
        .is_ok());

    // Partition node 1: nobody reaches it and it reaches nobody, but the
    // host still talks to it (so tests can ask its API).
    nets[1].partition();
    assert!(nets[1].is_partitioned());
    let mode = nets[1].partition_mode();
    eprintln!("partition mode: {mode:?}");
    assert!(
        read_line_via(&nets[0], to(1)).is_err(),
        "node0 reached the partitioned node1"
    );
    assert!(
        read_line_via(&nets[1], to(2)).is_err(),
        "the partitioned node1 reached node2"
    );
    assert!(
        read_line_via(&nets[1], to(0)).is_err(),
        "the partitioned node1 reached node0"
    );
    assert_eq!(
        read_line_via(&nets[0], to(2)),
        Ok(hello(2)),
        "others unaffected"
    );
    if mode == Some(PartitionMode::Firewall) {
        assert_eq!(
            read_line_from(to(1)),
            Ok(hello(1)),
            "host → partitioned node"
        );
    }
    // Partitioning twice changes nothing.
    nets[1].partition();

    nets[1].heal();
    assert!(!nets[1].is_partitioned());
    assert_eq!(read_line_via(&nets[0], to(1)), Ok(hello(1)));
    assert_eq!(read_line_via(&nets[1], to(0)), Ok(hello(0)));
    nets[1].heal();

    // Clean-up leaves nothing behind.
    assert!(!leftovers(k).is_empty());
    nets.clear();
    drop(bridge);
    assert_eq!(leftovers(k), Vec::<String>::new());
}

#[test]
fn cluster_of_fake_agents_start_kill_restart_partition_and_drop() {
    let key_dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(3, fake_cluster_opts().labels(0, &[("zone", "a")]));
    let k = c.bridge().k();
    assert_eq!(c.len(), 3);

    // The shared key: keygen is not in the fake binary, so the fallback
    // writes the pnet format.
    let key = std::fs::read_to_string(c.key_file()).unwrap();
    let hex = key
        .strip_prefix("/key/swarm/psk/1.0.0/\n/base16/\n")
        .unwrap_or_else(|| panic!("not a pnet key file: {key:?}"));
    assert!(
        hex.trim().len() == 64 && hex.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "{key:?}"
    );

    let mut ids = Vec::new();
    for i in 0..3 {
        let a = c.node(i);
        assert_eq!(a.api(), format!("10.211.{k}.{}:7420", 10 + i));
        assert_eq!(c.mesh_addr(i), format!("10.211.{k}.{}:7421", 10 + i));
        assert_eq!(c.status(i).unwrap()["node_name"], format!("node{i}"));
        assert_eq!(c.node_index(a.node_id()), Some(i));
        ids.push(a.node_id().to_string());
        // The CLI (in the host namespace) reaches the node's API.
        let nodes = a.cli_json(&["node", "ls"]);
        assert_eq!(nodes[0]["node_id"], a.node_id());
        let log = a.log_tail(50);
        assert!(log.contains(&format!("ip netns exec skn{k}-{i} ")), "{log}");
        assert!(log.contains("--cluster-key"), "{log}");
        if i == 0 {
            assert!(!log.contains("would join"), "node0 bootstraps: {log}");
            assert!(log.contains("--label zone=a"), "{log}");
        } else {
            let join = format!("would join [\"10.211.{k}.10:7421\"]");
            assert!(log.contains(&join), "node{i} joins node0: {log}");
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct node ids");
    // Each fake node names itself leader: no majority.
    assert_eq!(c.leader(), None);

    // The mesh ports answer across namespaces.
    let mesh = |c: &Cluster, i: usize| c.mesh_addr(i).parse::<SocketAddr>().unwrap();
    let greeting = |c: &Cluster, i: usize| format!("fake-mesh {}", c.node(i).node_id());
    assert_eq!(read_line_via(c.netns(0), mesh(&c, 2)), Ok(greeting(&c, 2)));

    // kill / restart: same namespace, address and identity.
    let pid1 = c.node(1).pid().unwrap();
    c.kill(1);
    assert!(!pid_alive(pid1));
    assert!(!c.is_live(1));
    assert_eq!(c.live_nodes(), vec![0, 2]);
    assert!(read_line_via(c.netns(0), mesh(&c, 1)).is_err());
    c.restart(1);
    assert!(c.is_live(1));
    assert_eq!(c.node(1).api(), format!("10.211.{k}.11:7420"));
    assert_eq!(read_line_via(c.netns(0), mesh(&c, 1)), Ok(greeting(&c, 1)));

    // partition / heal: the process keeps running.
    c.partition(2);
    assert!(!c.is_live(2));
    assert!(c.node_mut(2).is_running());
    assert!(read_line_via(c.netns(0), mesh(&c, 2)).is_err());
    assert!(read_line_via(c.netns(2), mesh(&c, 0)).is_err());
    if c.netns(2).partition_mode() == Some(PartitionMode::Firewall) {
        assert!(c.status(2).is_ok(), "the test still reaches the API");
    }
    assert_eq!(c.any_live().node_id(), c.node(0).node_id());
    c.heal(2);
    assert!(c.is_live(2));
    assert_eq!(read_line_via(c.netns(0), mesh(&c, 2)), Ok(greeting(&c, 2)));

    // A node with another key that bootstraps alone, and uses Docker (over
    // its unix socket, from inside its namespace).
    require_demo_image();
    let other_key = key_dir.path().join("other.key");
    write_cluster_key(&other_key, Some(FAKE_AGENT.as_ref()));
    assert_ne!(std::fs::read(&other_key).unwrap(), key.as_bytes());
    let i = c.add_node(NodeOpts {
        key_file: Some(other_key.clone()),
        join: Some(vec![]),
        extra_args: vec!["--fake-container".into(), DEMO_IMAGE.into()],
        ..NodeOpts::default()
    });
    assert_eq!(i, 3);
    let log = c.node(3).log_tail(50);
    assert!(log.contains(&other_key.display().to_string()), "{log}");
    assert!(!log.contains("would join"), "{log}");
    let container = poll_until(
        "the fake agent's container",
        Duration::from_secs(20),
        || c.containers_on(3, "fake").pop(),
    );
    assert_eq!(
        container_labels(&container)["skein.node"],
        c.node(3).node_id()
    );

    // Drop: agents dead, network gone.
    let pids: Vec<u32> = (0..c.len()).filter_map(|i| c.node(i).pid()).collect();
    assert_eq!(pids.len(), 4);
    drop(c);
    for pid in pids {
        assert!(!pid_alive(pid), "agent {pid} survived the cluster");
    }
    assert_eq!(leftovers(k), Vec::<String>::new());
    assert!(
        try_container_inspect(&container).is_none(),
        "container left"
    );
}

/// Not a test on its own: with `SKEIN_E2E_ABORT_CHILD=1` (set by
/// [`an_aborted_test_process_takes_its_agents_along_and_leftovers_are_swept`])
/// it starts a cluster, prints what it made and aborts without unwinding.
#[test]
fn abort_child_helper() {
    if std::env::var_os("SKEIN_E2E_ABORT_CHILD").is_none() {
        return;
    }
    let c = Cluster::start(2, fake_cluster_opts());
    println!(
        "CHILD k={} pids={},{} dirs={},{},{}",
        c.bridge().k(),
        c.node(0).pid().unwrap(),
        c.node(1).pid().unwrap(),
        c.scratch_dir().display(),
        c.node(0).scratch_dir().display(),
        c.node(1).scratch_dir().display(),
    );
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

#[test]
fn an_aborted_test_process_takes_its_agents_along_and_leftovers_are_swept() {
    // A live slot of our own; creating it also runs this process's one-time
    // stale sweep now rather than in the middle of this test.
    let own = Bridge::create();
    let exe = std::env::current_exe().unwrap();
    let out = run_with_timeout(
        Command::new(exe)
            .args(["--exact", "abort_child_helper", "--nocapture"])
            .env("SKEIN_E2E_ABORT_CHILD", "1"),
        Duration::from_secs(60),
    );
    assert!(!out.success(), "the child should have aborted: {out}");
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD "))
        .unwrap_or_else(|| panic!("no CHILD line: {out}"));
    let mut k = 0u8;
    let mut pids = Vec::new();
    for part in line.split_whitespace() {
        if let Some(v) = part.strip_prefix("k=") {
            k = v.parse().unwrap();
        } else if let Some(v) = part.strip_prefix("pids=") {
            pids = v.split(',').map(|p| p.parse::<u32>().unwrap()).collect();
        } else if let Some(v) = part.strip_prefix("dirs=") {
            // Temporary directories of the child (nothing unwound there).
            for d in v.split(',') {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    assert!(k > 0 && pids.len() == 2, "{line}");

    // PR_SET_PDEATHSIG went through `ip netns exec`: the agents died with it.
    poll_until(
        "the aborted child's agents to die",
        Duration::from_secs(10),
        || pids.iter().all(|&p| !pid_alive(p)).then_some(()),
    );

    // Its network is left over (nothing unwound) until swept. Another test
    // process starting its first cluster right now may sweep it first (and
    // even take the slot again): tolerated, the point is that it goes.
    let left = leftovers(k);
    if left.iter().any(|l| l == &format!("netns skn{k}-0")) {
        let removed = cleanup_stale_netns();
        assert!(
            removed >= 3 || slot_is_held(k),
            "removed {removed}: {left:?}"
        );
    } else {
        eprintln!("note: slot {k} was swept by a concurrent test before we looked");
    }
    assert!(
        leftovers(k).is_empty() || slot_is_held(k),
        "stale network of slot {k} not swept: {:?}",
        leftovers(k)
    );
    // The sweep leaves slots of live processes alone.
    let own_k = own.k();
    assert!(
        leftovers(own_k).contains(&format!("link skb{own_k}")),
        "a live slot was swept"
    );
}
