//! Whole nodes in one test process: the real agent (mesh on loopback,
//! Raft, gossip, scheduler, executor, API) on an in-memory container
//! runtime, so cluster behaviour is tested in seconds without Docker or
//! root. The end-to-end tests in `tests/` cover the real engine.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skein_node::agent::{self, AgentConfig, ContainerDns, ImagesTuning};
use skein_node::executor::ExecutorConfig;
use skein_node::membership::HealthTiming;
use skein_node::runtime::fake::FakeState;
use skein_node::runtime::FakeRuntime;
use skein_protocol::api::{AllocView, ApplyRequest, StatusView};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every condition below holds well within this on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);
const IMAGE: &str = "example.test/web:1";

/// One node running in this process.
struct Node {
    name: String,
    dir: PathBuf,
    runtime: FakeRuntime,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    api: SocketAddr,
}

impl Node {
    /// Starts node `name` in `dir`, joining `seed` (with the cluster key
    /// found in `key_dir`) unless it bootstraps; `mesh` is its mesh address.
    async fn start(
        name: &str,
        dir: &Path,
        mesh: SocketAddr,
        seed: Option<(SocketAddr, &Path)>,
    ) -> Self {
        match Self::try_start(name, dir, mesh, seed).await {
            Ok(node) => node,
            Err(e) => panic!("{name} stopped before its API listened: {e}"),
        }
    }

    /// Starts node `name` again on its data dir, once the stopped
    /// instance's last tasks have let go of its database (in one process
    /// they may outlive its stop by a moment; a new process never waits).
    async fn restart(name: &str, dir: &Path, mesh: SocketAddr) -> Self {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            // The address file names the old port until the new instance
            // writes its own.
            let _ = std::fs::remove_file(dir.join(agent::API_ADDR_FILE));
            match Self::try_start(name, dir, mesh, None).await {
                Ok(node) => return node,
                Err(e) if e.contains("cannot open raft storage") => {
                    assert!(tokio::time::Instant::now() < end, "{name}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{name} stopped before its API listened: {e}"),
            }
        }
    }

    /// Starts node `name`; the agent's error if it stops before its API
    /// listens.
    async fn try_start(
        name: &str,
        dir: &Path,
        mesh: SocketAddr,
        seed: Option<(SocketAddr, &Path)>,
    ) -> Result<Self, String> {
        let runtime = FakeRuntime::new();
        runtime.add_image(IMAGE);
        let cfg = config(name, dir, mesh, seed);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(agent::run_with(cfg, Arc::new(runtime.clone()), shutdown));
        let addr_file = dir.join(agent::API_ADDR_FILE);
        let task_ref = &task;
        let api = until(&format!("{name} api address"), || async {
            if task_ref.is_finished() {
                return Some(None);
            }
            let addr = std::fs::read_to_string(&addr_file)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(Some(addr))
        })
        .await;
        let Some(api) = api else {
            return Err(match task.await {
                Ok(Err(e)) => format!("{e:#}"),
                other => format!("{other:?}"),
            });
        };
        Ok(Node {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            runtime,
            stop: Some(stop),
            task: Some(task),
            api,
        })
    }

    /// Asks the node to stop and waits until it has.
    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(DEADLINE, task).await;
            assert!(
                matches!(r, Ok(Ok(Ok(())))),
                "{} did not stop cleanly: {r:?}",
                self.name
            );
        }
    }

    async fn status(&self) -> Option<StatusView> {
        let (code, body) = http(self.api, "GET", "/v1/status", None).await?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    async fn allocs(&self) -> Option<Vec<AllocView>> {
        let (code, body) = http(self.api, "GET", "/v1/allocs", None).await?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Running containers in this node's runtime.
    fn running(&self) -> usize {
        self.runtime.running().len()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failed test must not leave a node running in later tests.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn config(
    name: &str,
    dir: &Path,
    mesh: SocketAddr,
    seed: Option<(SocketAddr, &Path)>,
) -> AgentConfig {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    AgentConfig {
        data_dir: dir.to_path_buf(),
        api: SocketAddr::new(loopback, 0),
        mesh,
        advertise: Some(loopback),
        join: seed.iter().map(|(a, _)| a.to_string()).collect(),
        cluster_key: seed.map(|(_, d)| d.join(agent::CLUSTER_KEY_FILE)),
        name: name.to_string(),
        labels: Default::default(),
        port_range: 40000..=40999,
        publish_range: 31000..=31999,
        capacity: None,
        health: HealthTiming {
            suspect_after: Duration::from_millis(500),
            dead_after: Duration::from_millis(1000),
        },
        voter_grace: Duration::from_secs(30),
        election_timeout: Duration::from_millis(200),
        executor: ExecutorConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            tick: Duration::from_millis(100),
            ..ExecutorConfig::default()
        },
        // An ephemeral port: tests must not need root for port 53.
        dns: vec![SocketAddr::new(loopback, 0)],
        dns_relay_for: Vec::new(),
        container_dns: ContainerDns::Auto,
        endpoint_ip: Some(loopback),
        routing_ip: loopback,
        api_token_file: None,
        open_reads: false,
        stats_interval: Duration::from_millis(500),
        docker_host: None,
        images: ImagesTuning {
            max_fetches: 2,
            max_uploads: 2,
            pull_timeout: Duration::from_secs(5),
        },
    }
}

/// A free loopback port for the seed's mesh: the others must know where
/// to dial before it runs.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// `f` until it answers, polling; panics after [`DEADLINE`].
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP/1.0 exchange: status and body, or `None` when nothing answers.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Applies a job (native YAML) through `node`'s API.
async fn apply(node: &Node, yaml: &str) {
    let jobs = skein_protocol::manifest::parse_manifests("job.yaml", yaml).expect("job parses");
    let req = serde_json::to_string(&ApplyRequest {
        jobs,
        pull_secrets: Vec::new(),
    })
    .expect("json");
    let (code, body) = http(node.api, "POST", "/v1/jobs", Some(&req))
        .await
        .expect("api answers");
    assert_eq!(code, 200, "apply: {body}");
}

/// Starts a bootstrap node and `joiners` more that join it, and waits
/// until every node knows the same leader.
async fn cluster(root: &Path, joiners: usize) -> Vec<Node> {
    let seed_mesh = free_port();
    let seed_dir = root.join("n1");
    let mut nodes = vec![Node::start("n1", &seed_dir, seed_mesh, None).await];
    for i in 0..joiners {
        let name = format!("n{}", i + 2);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let node = Node::start(&name, &root.join(&name), any, Some((seed_mesh, &seed_dir))).await;
        nodes.push(node);
    }
    let nodes_ref = &nodes;
    until("one leader known to every node", || async move {
        let mut leaders = Vec::new();
        for n in nodes_ref {
            leaders.push(n.status().await?.leader_id?);
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_spread_over_three_nodes_and_move_off_a_stopped_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(root.path(), 2).await;
    // Every node in the scheduler's table before placing, so the replicas
    // spread rather than land on the first node.
    until("three nodes known to the leader", || async {
        let (code, body) = http(nodes[0].api, "GET", "/v1/nodes", None).await?;
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        (code == 200 && v.len() == 3).then_some(())
    })
    .await;
    apply(
        &nodes[0],
        &format!("name: web\nreplicas: 4\nimage: {IMAGE}\n"),
    )
    .await;

    until("4 replicas running over the nodes", || async {
        let counts: Vec<usize> = nodes.iter().map(Node::running).collect();
        (counts.iter().sum::<usize>() == 4 && counts.iter().filter(|c| **c > 0).count() >= 2)
            .then_some(())
    })
    .await;

    // Stop a node that runs replicas and does not lead (a leader change
    // only adds an election timeout; the e2e suite covers it).
    let leader = nodes[0].status().await.and_then(|s| s.leader_id);
    let mut victim = None;
    for (i, n) in nodes.iter().enumerate() {
        let id = n.status().await.map(|s| s.node_id);
        if n.running() > 0 && id != leader {
            victim = Some(i);
        }
    }
    let victim = victim.expect("a follower runs a replica");
    let mut gone = nodes.remove(victim);
    let moved = gone.running();
    gone.shutdown().await;
    // Its containers keep running (a stopped agent leaves them alone).
    assert_eq!(
        gone.running(),
        moved,
        "{} removed its containers",
        gone.name
    );

    until("4 replicas running on the remaining nodes", || async {
        let running: usize = nodes.iter().map(Node::running).sum();
        (running == 4).then_some(())
    })
    .await;
    let allocs = until("the placements moved", || async {
        let allocs = nodes[0].allocs().await?;
        let dead = gone.dir.join("node-id");
        let dead_id = std::fs::read_to_string(dead).ok()?;
        allocs
            .iter()
            .all(|a| a.node_id != dead_id.trim())
            .then_some(allocs)
    })
    .await;
    assert_eq!(allocs.len(), 4);
    for mut n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exited_container_is_restarted_by_its_node() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(root.path(), 0).await;
    let node = &nodes[0];
    apply(
        node,
        &format!("name: crash\nreplicas: 1\nimage: {IMAGE}\nrestart: always\n"),
    )
    .await;
    let first = until("the replica running", || async {
        node.runtime.running().into_iter().next()
    })
    .await;
    node.runtime
        .exit(&first.id, 1)
        .expect("the container exists");

    let alloc = until("the replica restarted once", || async {
        let allocs = node.allocs().await?;
        let a = allocs.into_iter().next()?;
        (a.status.restarts == 1 && a.status.state == skein_protocol::api::AllocState::Running)
            .then_some(a)
    })
    .await;
    assert_eq!(alloc.status.exit_code, Some(1));
    let now = node.runtime.containers();
    assert_eq!(now.len(), 1, "restarted in place, not duplicated");
    assert_eq!(
        (now[0].id.as_str(), now[0].state, now[0].starts),
        (first.id.as_str(), FakeState::Running, 2)
    );
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_leader_hands_over_to_a_voter_at_once() {
    if std::env::var_os("SKEIN_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("SKEIN_TEST_LOG").unwrap_or_default())
            .try_init();
    }
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(root.path(), 2).await;
    until("three voters", || async {
        let (code, body) = http(nodes[0].api, "GET", "/v1/nodes", None).await?;
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        let voters = v
            .iter()
            .filter(|n| n["role"] == "leader" || n["role"] == "voter")
            .count();
        (code == 200 && voters == 3).then_some(())
    })
    .await;
    // A joint configuration settles a moment after `node ls` shows three.
    until("a write through the leader", || async {
        let (code, _) = http(
            nodes[0].api,
            "POST",
            "/v1/registries",
            Some(r#"{"server":"r.test:5000","username":"u","password":"p"}"#),
        )
        .await?;
        (code == 200).then_some(())
    })
    .await;
    // A leader grants a higher term only once its own lease (1.2 s since it
    // was elected) has run out, which is what a handover relies on: a
    // leader as young as this test's must first be that old. A wait on
    // time itself, not on another task.
    let since = tokio::time::Instant::now();
    until("the leader's lease run out", || async {
        (since.elapsed() > Duration::from_millis(1300)).then_some(())
    })
    .await;
    let leader_id = nodes[0]
        .status()
        .await
        .and_then(|s| s.leader_id)
        .expect("leader");
    let mut at = None;
    for (i, n) in nodes.iter().enumerate() {
        if n.status().await.map(|s| s.node_id) == Some(leader_id.clone()) {
            at = Some(i);
        }
    }
    let mut leader = nodes.remove(at.expect("the leader is one of ours"));
    let t0 = tokio::time::Instant::now();
    leader.shutdown().await;
    let stopped = t0.elapsed();
    let nodes_ref = &nodes;
    let old = leader_id.clone();
    until("a new leader on both survivors", || async {
        let mut seen = Vec::new();
        for n in nodes_ref {
            seen.push(n.status().await?.leader_id?);
        }
        (seen.windows(2).all(|w| w[0] == w[1]) && seen[0] != old).then_some(())
    })
    .await;
    let elected = t0.elapsed();
    eprintln!(
        "leader stopped in {:.2}s, new leader after {:.2}s",
        stopped.as_secs_f64(),
        elected.as_secs_f64()
    );
    // Without a handover the survivors wait out the leader lease (1.2 s)
    // and an election timeout (0.6–1.2 s) after the shutdown ends.
    assert!(
        elected < stopped + Duration::from_millis(900),
        "a new leader {:.2}s after the stop began (the stop took {:.2}s): no handover",
        elected.as_secs_f64(),
        stopped.as_secs_f64()
    );
    for mut n in nodes {
        n.shutdown().await;
    }
}

/// The node's `raft_last_log_index` metric.
async fn last_log_index(node: &Node) -> Option<u64> {
    let (code, body) = http(node.api, "GET", "/metrics", None).await?;
    if code != 200 {
        return None;
    }
    body.lines()
        .find(|l| l.starts_with("skein_raft_last_log_index"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Names of the jobs a node serves.
async fn job_names(node: &Node) -> Option<Vec<String>> {
    let (code, body) = http(node.api, "GET", "/v1/jobs", None).await?;
    let v: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
    let mut names: Vec<String> = v
        .iter()
        .filter_map(|j| Some(j["spec"]["name"].as_str()?.to_string()))
        .collect();
    names.sort();
    (code == 200).then_some(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_survive_a_restart_without_a_snapshot() {
    if std::env::var_os("SKEIN_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("SKEIN_TEST_LOG").unwrap_or_default())
            .try_init();
    }
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(root.path(), 0).await;
    let node = &nodes[0];
    // Batches are proposed once every node reads them (schema 1.2).
    let current = skein_protocol::codec::Schema::CURRENT.to_string();
    until("the cluster at this build's schema", || async {
        (node.status().await?.cluster_schema == current).then_some(())
    })
    .await;
    let before = until("the log index", || last_log_index(node)).await;
    const WRITES: usize = 48;
    let writes = (0..WRITES).map(|i| {
        let yaml = format!(
            "name: w{i:02}\nimage: {IMAGE}\nreplicas: 1\nresources:\n  requests: {{ cpu: 1m, memory: 1Mi }}\n"
        );
        async move { apply(node, &yaml).await }
    });
    futures::future::join_all(writes).await;
    let after = until("the log index", || last_log_index(node)).await;
    let entries = after - before;
    eprintln!("{WRITES} concurrent writes took {entries} log entries");
    assert!(
        entries < WRITES as u64 / 2,
        "{WRITES} concurrent writes took {entries} log entries: not grouped"
    );
    let expected: Vec<String> = (0..WRITES).map(|i| format!("w{i:02}")).collect();
    assert_eq!(job_names(node).await.as_deref(), Some(&expected[..]));
    // Far fewer entries than a snapshot needs: the restarted node rebuilds
    // its state from the log alone.
    let dir = nodes[0].dir.clone();
    let mesh = free_port();
    nodes[0].shutdown().await;
    nodes.clear();
    let node = Node::restart("n1", &dir, mesh).await;
    let names = until("the jobs after a restart", || async {
        let names = job_names(&node).await?;
        (names.len() == WRITES).then_some(names)
    })
    .await;
    assert_eq!(names, expected);
    let mut node = node;
    node.shutdown().await;
}
