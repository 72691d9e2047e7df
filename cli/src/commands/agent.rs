//! `skein agent`: parses the node's flags and runs it until Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use skein_node::agent::{self, AgentConfig, ContainerDns};
use skein_node::executor::ExecutorConfig;
use skein_node::membership::HealthTiming;
use skein_protocol::quantity::{parse_cpu_millis, parse_memory_bytes};
use skein_protocol::spec::{mount_path_problem, HostAccess, ResourceVec, MAX_HOST_PATHS};
use tracing_subscriber::EnvFilter;

/// Flags of `skein agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Directory for the node id, the Raft log and state (redb). Defaults to
    /// /var/lib/skein for root, ~/.local/share/skein otherwise.
    #[arg(long, env = "SKEIN_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address the HTTP API listens on. Port 0 picks a free port; the
    /// chosen address is written to DATA_DIR/api.addr.
    #[arg(long, env = "SKEIN_API_LISTEN", default_value = "127.0.0.1:7420")]
    api: SocketAddr,

    /// Address the peer-to-peer mesh listens on (TCP; other nodes join here).
    #[arg(long, env = "SKEIN_MESH_LISTEN", default_value = "0.0.0.0:7421")]
    mesh: SocketAddr,

    /// IP address other nodes should dial to reach this one (default: the
    /// mesh listen address, or this host's addresses when listening on
    /// 0.0.0.0).
    #[arg(long)]
    advertise: Option<std::net::IpAddr>,

    /// Mesh address (HOST:PORT) of any node of the cluster to join;
    /// repeatable. Without it, this node bootstraps a new cluster.
    #[arg(long, value_name = "HOST:PORT")]
    join: Vec<String>,

    /// Pre-shared cluster key file (from `skein keygen`); peers without the
    /// same key cannot even complete a handshake. Default: DATA_DIR/cluster.key,
    /// created when bootstrapping; required with --join.
    #[arg(long, env = "SKEIN_CLUSTER_KEY", value_name = "FILE")]
    cluster_key: Option<PathBuf>,

    /// A node whose status has not arrived for this long is suspect (it
    /// keeps its work).
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    suspect_after: Duration,

    /// A node whose status has not arrived for this long is dead: its
    /// replicas are started elsewhere.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    dead_after: Duration,

    /// A Raft voter dead for this long is replaced by a healthy node.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    voter_grace: Duration,

    /// Raft election timeout: a voter that hears no leader for this long
    /// (randomised up to twice it) stands for election; the leader's
    /// heartbeats go out at a quarter of it. The default suits a LAN (a
    /// leader that dies is replaced in about half a second); across a WAN,
    /// or on hosts so loaded that heartbeats arrive late, use 1s to 2s.
    /// Every voter should use the same value. At least 100ms.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    election_timeout: Duration,

    /// Address the DNS server (NAME.service.skein) listens on, UDP and
    /// TCP; repeatable.
    #[arg(long = "dns", value_name = "ADDR", default_values_t = [SocketAddr::from(([127, 0, 0, 1], 5354))])]
    dns: Vec<SocketAddr>,

    /// Network (CIDR) whose clients may use the DNS server to resolve names
    /// outside skein. (relayed to the host's resolvers); repeatable.
    /// Loopback and the Docker bridge's subnet are always allowed; anyone
    /// may ask for NAME.service.skein.
    #[arg(long = "dns-relay-for", value_name = "CIDR")]
    dns_relay_for: Vec<String>,

    /// Resolver address given to the containers this node starts; the DNS
    /// server also listens there on port 53. `auto` = the Docker bridge
    /// gateway (e.g. 172.17.0.1); `none` = leave Docker's default.
    #[arg(long, default_value = "auto", value_name = "IP|auto|none")]
    container_dns: String,

    /// Address at which this node's published container ports are reached
    /// from other nodes (default: --advertise, else this host's first
    /// non-loopback address).
    #[arg(long, value_name = "IP")]
    endpoint_ip: Option<std::net::IpAddr>,

    /// Address the routing mesh opens published service ports on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    routing_ip: std::net::IpAddr,

    /// File holding the bootstrap API token (admin role). The node stores
    /// its hash in cluster state, so every node accepts it; once the
    /// cluster has any token, every API call but /v1/status and the
    /// dashboard's files needs `Authorization: Bearer <token>` on every
    /// node (`skein --token` / SKEIN_TOKEN). More tokens: `skein token`.
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<PathBuf>,

    /// Reads (GET) need no token on this node, even when the cluster has
    /// tokens; writes always do.
    #[arg(long)]
    open_reads: bool,

    /// Development mode: keep all state in a fresh temporary directory
    /// that is deleted on exit.
    #[arg(long)]
    dev: bool,

    /// Node name shown in listings (default: the hostname).
    #[arg(long)]
    name: Option<String>,

    /// Node label KEY=VALUE (repeatable), e.g. --label zone=eu-1; jobs can
    /// require labels with `constraints` / `nodeSelector`.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,

    /// Host ports handed out to replicas whose ports have no fixed hostPort.
    #[arg(long, default_value = "20000-29999", value_name = "FIRST-LAST")]
    port_range: String,

    /// Ports services may publish on this node (`service.publish`,
    /// Kubernetes `nodePort`): opened on every node by the routing mesh.
    /// The default matches Kubernetes' NodePort range; widen it (e.g.
    /// 80-32767) to let jobs take low ports such as 80 and 443.
    #[arg(long, default_value = "30000-32767", value_name = "FIRST-LAST")]
    publish_range: String,

    /// CPU to offer to the scheduler (e.g. 2 or 1500m) instead of all cores.
    #[arg(long)]
    cpu: Option<String>,

    /// Memory to offer to the scheduler (e.g. 4Gi) instead of all memory.
    #[arg(long)]
    memory: Option<String>,

    /// Longest delay between restarts of a crashing container, in seconds.
    #[arg(long, default_value_t = 30)]
    max_restart_backoff: u64,

    /// How often the CPU, memory and network use of this node's containers
    /// is read from Docker (for `skein top`, the dashboard and /metrics).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    stats_interval: Duration,

    /// Docker Engine this node runs containers on: unix:///PATH or
    /// tcp://HOST:PORT. Default: $DOCKER_HOST, else /var/run/docker.sock.
    #[arg(long, value_name = "URL")]
    docker_host: Option<String>,

    /// Image fetches (registry pulls and copies from peers) this node runs
    /// at once; more wait their turn.
    #[arg(long, default_value_t = 3)]
    max_pulls: usize,

    /// Image copies this node serves to peers at once; more are sent to
    /// other nodes holding the image, which spreads the load.
    #[arg(long, default_value_t = 2)]
    max_image_uploads: usize,

    /// Longest a registry pull may take before it is given up (retried).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pull_timeout: Duration,

    /// Let jobs on this node run privileged containers (securityContext
    /// privileged) and use the host's network, PID and IPC namespaces
    /// (hostNetwork, hostPID, hostIPC). RISK: such a container is root on
    /// the host: it sees every device, process and connection of the node
    /// and can take it over. Anyone who can apply jobs to the cluster gets
    /// that power on this node; allow it only on dedicated nodes. Jobs that
    /// need it are placed only on nodes started with this flag.
    #[arg(long)]
    allow_privileged: bool,

    /// Let jobs on this node mount the host directory DIR, or anything
    /// below it, as hostPath volumes (repeatable). RISK: a container can
    /// read (and, unless the mount is read-only, change) every file there
    /// with its own user id, often root; allowing / or /etc hands out the
    /// node. The Docker socket (/var/run/docker.sock), which controls the
    /// node, is never covered by a directory above it: it must be given
    /// exactly. Jobs that mount host paths are placed only on nodes that
    /// allow each of them.
    #[arg(long = "allow-host-path", value_name = "DIR")]
    allow_host_paths: Vec<String>,
}

/// Runs the agent.
pub async fn run(args: AgentArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=error,hickory_server=warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let labels = args
        .labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let port_range = parse_port_range(&args.port_range)?;
    let publish_range = parse_port_range(&args.publish_range).context("--publish-range")?;
    let capacity = match (&args.cpu, &args.memory) {
        (None, None) => None,
        (cpu, mem) => {
            let host = sys_capacity();
            Some(ResourceVec::new(
                match cpu {
                    Some(c) => parse_cpu_millis(c).map_err(|e| anyhow::anyhow!("--cpu: {e}"))?,
                    None => host.cpu_millis,
                },
                match mem {
                    Some(m) => {
                        parse_memory_bytes(m).map_err(|e| anyhow::anyhow!("--memory: {e}"))?
                    }
                    None => host.memory_bytes,
                },
            ))
        }
    };
    let temp = if args.dev {
        Some(tempfile::Builder::new().prefix("skein-dev-").tempdir()?)
    } else {
        None
    };
    let data_dir = match (&temp, args.data_dir) {
        (Some(t), _) => t.path().to_path_buf(),
        (None, Some(d)) => d,
        (None, None) => crate::default_data_dir(),
    };
    let name = args.name.unwrap_or_else(hostname);
    if args.election_timeout < Duration::from_millis(skein_node::agent::MIN_ELECTION_TIMEOUT_MS) {
        bail!(
            "--election-timeout must be at least {}ms (it was {:?})",
            skein_node::agent::MIN_ELECTION_TIMEOUT_MS,
            args.election_timeout
        );
    }
    if args.dead_after <= args.suspect_after {
        bail!("--dead-after must be longer than --suspect-after");
    }
    let period = skein_node::membership::gossip::PUBLISH_INTERVAL;
    if args.suspect_after < period * 2 {
        tracing::warn!(
            suspect_after = ?args.suspect_after,
            "--suspect-after is under two gossip periods ({period:?}): healthy nodes will flap"
        );
    }
    let host_access = host_access(args.allow_privileged, &args.allow_host_paths)?;
    let cfg = AgentConfig {
        data_dir,
        api: args.api,
        mesh: args.mesh,
        advertise: args.advertise,
        join: args.join,
        cluster_key: args.cluster_key,
        health: HealthTiming {
            suspect_after: args.suspect_after,
            dead_after: args.dead_after,
        },
        voter_grace: args.voter_grace,
        election_timeout: args.election_timeout,
        dns: args.dns,
        dns_relay_for: args
            .dns_relay_for
            .iter()
            .map(|n| {
                skein_node::dns::parse_network(n).with_context(|| {
                    format!("--dns-relay-for {n:?}: expected a network such as 10.0.0.0/8")
                })
            })
            .collect::<Result<_>>()?,
        container_dns: match args.container_dns.as_str() {
            "auto" => ContainerDns::Auto,
            "none" => ContainerDns::Off,
            ip => ContainerDns::Ip(ip.parse().map_err(|_| {
                anyhow::anyhow!("--container-dns {ip:?}: expected an IP address, auto or none")
            })?),
        },
        endpoint_ip: args.endpoint_ip,
        routing_ip: args.routing_ip,
        api_token_file: args.api_token_file,
        open_reads: args.open_reads,
        stats_interval: args.stats_interval.max(Duration::from_millis(200)),
        docker_host: args.docker_host.clone(),
        images: agent::ImagesTuning {
            max_fetches: args.max_pulls.max(1),
            max_uploads: args.max_image_uploads.max(1),
            pull_timeout: args.pull_timeout.max(Duration::from_secs(1)),
        },
        name,
        labels,
        port_range,
        publish_range,
        capacity,
        executor: ExecutorConfig {
            backoff_max: std::time::Duration::from_secs(args.max_restart_backoff.max(1)),
            host_access,
            ..ExecutorConfig::default()
        },
    };
    agent::run(cfg, shutdown_signal()).await
}

/// What `--allow-privileged` and `--allow-host-path` let containers use.
fn host_access(privileged: bool, dirs: &[String]) -> Result<HostAccess> {
    if dirs.len() > MAX_HOST_PATHS {
        bail!(
            "--allow-host-path is given {} times; at most {MAX_HOST_PATHS}",
            dirs.len()
        );
    }
    for d in dirs {
        if let Some(why) = mount_path_problem(d) {
            bail!("--allow-host-path {d:?}: {why}");
        }
    }
    if privileged {
        tracing::warn!("--allow-privileged: containers of any job may take this node over");
    }
    for d in dirs {
        tracing::warn!(dir = %d, "--allow-host-path: containers may mount this host directory");
    }
    Ok(HostAccess {
        privileged,
        host_paths: dirs.to_vec(),
    })
}

fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("--port-range {s:?}: expected FIRST-LAST, e.g. 20000-32767"))?;
    let a: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("--port-range {s:?}: bad first port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("--port-range {s:?}: bad last port"))?;
    if a == 0 || a > b {
        bail!("--port-range {s:?}: need 1 <= FIRST <= LAST <= 65535");
    }
    Ok(a..=b)
}

/// What the host has, for flags that override only one dimension.
fn sys_capacity() -> ResourceVec {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    ResourceVec::new(cpus * 1000, mem)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "skein-node".to_string())
}

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits the process
/// at once (non-zero), without waiting for the graceful shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (first, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut first = Some(first);
        #[cfg(unix)]
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                None
            }
        };
        loop {
            #[cfg(unix)]
            let sigterm = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let sigterm = std::future::pending::<()>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                () = sigterm => {},
            }
            match first.take() {
                Some(tx) => {
                    tracing::info!("stop signal received (send another to exit at once)");
                    let _ = tx.send(());
                }
                None => {
                    tracing::error!(
                        "second stop signal: exiting at once, without finishing the shutdown"
                    );
                    std::process::exit(1);
                }
            }
        }
    });
    async move {
        // The sender lives as long as the listening task: an error here
        // would mean that task died, so stop rather than run unstoppable.
        let _ = stop.await;
    }
}
