//! Health checks: probes the containers of running allocations and keeps,
//! per allocation, a [`Verdict`] the executor acts on.
//!
//! The executor calls [`HealthMonitor::watch`] on every pass for each
//! running allocation and [`HealthMonitor::retain`] with the ones it keeps;
//! both are cheap and idempotent, so the monitor stays level-triggered like
//! the executor. Each watched allocation has one background task that runs
//! its checks (Kubernetes probe semantics: initial delay, period, timeout,
//! failure threshold, one success to pass):
//!
//! - `http`: `GET path` over plain HTTP/1.1; 200-399 passes;
//! - `tcp`: the connection is accepted;
//! - `exec`: `docker exec` of the command exits 0.
//!
//! HTTP and TCP probes go to `127.0.0.1:<host port>` when the container port
//! is published, else to the container's address on its Docker network.
//! A change of verdict is logged once, at `info`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use skein_protocol::api::PortMapping;
use skein_protocol::spec::{CheckKind, CheckSpec, PortProtocol, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::docker_message;
use crate::runtime::{ContainerRuntime, Runtime};

/// Most bytes of a response read to find the HTTP status line.
const MAX_STATUS_LINE: usize = 1024;
/// Most bytes of an exec probe's output quoted in a failure reason.
const MAX_EXEC_OUTPUT: usize = 200;

/// What the checks of one allocation say right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Every readiness check passes: the replica may receive traffic. True
    /// when the job has no readiness checks; false until the first success.
    pub ready: bool,
    /// No liveness check has failed `failure_threshold` times in a row;
    /// false means the container should be restarted.
    pub live: bool,
}

/// Runs the health checks of this node's running allocations.
///
/// Cheap to clone (clones share the watches); dropping the last clone stops
/// every probe task.
#[derive(Clone)]
pub struct HealthMonitor {
    docker: Runtime,
    /// Address at which published container ports are reached.
    probe_ip: std::net::IpAddr,
    watches: Arc<Mutex<HashMap<String, Watch>>>,
    /// Length of one "second" of the specs; shortened in tests.
    unit: Duration,
}

/// One watched allocation: what it was started with, and its probe task.
struct Watch {
    container_id: String,
    checks: Vec<CheckSpec>,
    ports: Vec<PortMapping>,
    health: Arc<Mutex<Health>>,
    task: Option<AbortHandle>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl HealthMonitor {
    /// A monitor probing containers of `docker` (for `exec` probes and
    /// container addresses).
    pub fn new(docker: Runtime) -> Self {
        Self::with_unit(docker, Duration::from_secs(1))
    }

    /// Probes published ports at `ip` instead of 127.0.0.1: where this
    /// node's Docker publishes them when it is not in the node's own network
    /// namespace (the node's endpoint address).
    pub fn with_probe_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.probe_ip = ip;
        self
    }

    fn with_unit(docker: Runtime, unit: Duration) -> Self {
        Self {
            docker,
            probe_ip: Ipv4Addr::LOCALHOST.into(),
            watches: Arc::new(Mutex::new(HashMap::new())),
            unit,
        }
    }

    /// Probes `alloc`'s container `container_id` with `checks`; `ports` are
    /// the allocation's published ports. Call it on every pass for each
    /// allocation whose container is running: probing (re)starts, with a
    /// fresh verdict, only when the container, checks or ports changed.
    /// Must be called from within a Tokio runtime.
    pub fn watch(
        &self,
        alloc: &str,
        container_id: &str,
        checks: &[CheckSpec],
        ports: &[PortMapping],
    ) {
        let mut watches = self.lock();
        if watches.get(alloc).is_some_and(|w| {
            w.container_id == container_id && w.checks == checks && w.ports == ports
        }) {
            return;
        }
        let health = Arc::new(Mutex::new(Health::new(alloc, checks)));
        let task = if checks.is_empty() {
            None
        } else {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let target = Arc::new(Target {
                        docker: self.docker.clone(),
                        container_id: container_id.to_string(),
                        ports: ports.to_vec(),
                        probe_ip: self.probe_ip,
                    });
                    let runs = checks.iter().cloned().enumerate().map(|(i, check)| {
                        run_check(target.clone(), i, check, health.clone(), self.unit)
                    });
                    let all = futures::future::join_all(runs);
                    Some(
                        rt.spawn(async move {
                            all.await;
                        })
                        .abort_handle(),
                    )
                }
                Err(e) => {
                    warn!(alloc = %alloc, error = %e, "health: cannot start probes outside a runtime");
                    None
                }
            }
        };
        debug!(alloc = %alloc, container = %short(container_id), checks = checks.len(), "health: watching");
        // Replacing an older watch drops it, which aborts its task.
        watches.insert(
            alloc.to_string(),
            Watch {
                container_id: container_id.to_string(),
                checks: checks.to_vec(),
                ports: ports.to_vec(),
                health,
                task,
            },
        );
    }

    /// Stops probing every allocation not in `keep` (removed, or whose
    /// container is not running).
    pub fn retain(&self, keep: &HashSet<String>) {
        self.lock().retain(|alloc, _| {
            let kept = keep.contains(alloc);
            if !kept {
                debug!(alloc = %alloc, "health: no longer watching");
            }
            kept
        });
    }

    /// Stops probing `alloc`; the next [`HealthMonitor::watch`] starts
    /// afresh. Call it after restarting a container in place (same id)
    /// because it was not live.
    pub fn forget(&self, alloc: &str) {
        self.lock().remove(alloc);
    }

    /// The current verdict for `alloc`; an allocation that is not watched
    /// is live but not ready.
    pub fn verdict(&self, alloc: &str) -> Verdict {
        self.lock()
            .get(alloc)
            .map_or(NOT_WATCHED, |w| lock(&w.health).verdict())
    }

    /// Why `alloc` is not ready or not live (the failing check and its
    /// last result), for status messages; `None` when all is well.
    pub fn reason(&self, alloc: &str) -> Option<String> {
        let watches = self.lock();
        let health = lock(&watches.get(alloc)?.health);
        health
            .checks
            .iter()
            .find(|c| !c.passing)
            .map(|c| format!("{} check {}: {}", c.kind_name(), c.what, c.last))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Watch>> {
        lock(&self.watches)
    }
}

const NOT_WATCHED: Verdict = Verdict {
    ready: false,
    live: true,
};

/// Locks, ignoring poisoning: the guarded state stays consistent because
/// no code panics while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state of all checks of one allocation.
struct Health {
    alloc: String,
    checks: Vec<CheckHealth>,
}

struct CheckHealth {
    kind: CheckKind,
    /// `readiness http :80/healthz`, for logs.
    what: String,
    passing: bool,
    /// Consecutive failures.
    failures: u32,
    /// The last probe's outcome, for logs and [`HealthMonitor::reason`].
    last: String,
}

impl CheckHealth {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            CheckKind::Liveness => "liveness",
            CheckKind::Readiness => "readiness",
        }
    }
}

impl Health {
    fn new(alloc: &str, checks: &[CheckSpec]) -> Self {
        Self {
            alloc: alloc.to_string(),
            checks: checks
                .iter()
                .map(|c| CheckHealth {
                    kind: c.kind,
                    what: describe(&c.probe),
                    // Readiness must be earned; liveness must be lost.
                    passing: c.kind == CheckKind::Liveness,
                    failures: 0,
                    last: "not probed yet".into(),
                })
                .collect(),
        }
    }

    fn verdict(&self) -> Verdict {
        let all = |kind| {
            self.checks
                .iter()
                .filter(|c| c.kind == kind)
                .all(|c| c.passing)
        };
        Verdict {
            ready: all(CheckKind::Readiness),
            live: all(CheckKind::Liveness),
        }
    }

    /// Folds one probe result of check `i` in, logging a verdict change.
    fn record(&mut self, i: usize, threshold: u32, result: Result<String, String>) {
        let before = self.verdict();
        let Some(c) = self.checks.get_mut(i) else {
            return;
        };
        let ok = result.is_ok();
        match result {
            Ok(why) => {
                c.passing = true;
                c.failures = 0;
                c.last = why;
            }
            Err(why) => {
                c.failures = c.failures.saturating_add(1);
                if c.failures >= threshold.max(1) {
                    c.passing = false;
                }
                c.last = why;
            }
        }
        let (kind, what, last, failures) =
            (c.kind_name(), c.what.clone(), c.last.clone(), c.failures);
        let after = self.verdict();
        if after != before {
            info!(
                alloc = %self.alloc,
                check = %format!("{kind} {what}"),
                result = if ok { "pass" } else { "fail" },
                reason = %last,
                ready = after.ready,
                live = after.live,
                "health verdict changed"
            );
        } else if !ok {
            debug!(alloc = %self.alloc, check = %format!("{kind} {what}"), failures, reason = %last, "health probe failed");
        }
    }
}

/// `http :80/healthz`, `tcp :5432`, `exec cat /tmp/healthy`.
fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Http { port, path } => format!("http :{port}{path}"),
        Probe::Tcp { port } => format!("tcp :{port}"),
        Probe::Exec { command } => format!("exec {}", command.join(" ")),
    }
}

/// Where and how to reach one allocation's container.
struct Target {
    docker: Runtime,
    container_id: String,
    ports: Vec<PortMapping>,
    probe_ip: std::net::IpAddr,
}

/// Probes check `i` forever: after the initial delay, every period.
async fn run_check(
    target: Arc<Target>,
    i: usize,
    check: CheckSpec,
    health: Arc<Mutex<Health>>,
    unit: Duration,
) {
    let secs = |n: u32| unit.saturating_mul(n);
    tokio::time::sleep(secs(check.initial_delay_secs)).await;
    let mut ticks = tokio::time::interval(secs(check.period_secs.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = secs(check.timeout_secs.max(1));
    loop {
        ticks.tick().await;
        let result = match tokio::time::timeout(timeout, target.probe(&check.probe)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", check.timeout_secs.max(1))),
        };
        lock(&health).record(i, check.failure_threshold, result);
    }
}

impl Target {
    /// One probe: `Ok(what passed)` or `Err(why it failed)`.
    async fn probe(&self, probe: &Probe) -> Result<String, String> {
        match probe {
            Probe::Http { port, path } => http_get(self.address(*port).await?, path).await,
            Probe::Tcp { port } => {
                let addr = self.address(*port).await?;
                TcpStream::connect(addr)
                    .await
                    .map(|_| format!("connected to {addr}"))
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))
            }
            Probe::Exec { command } => exec(&*self.docker, &self.container_id, command).await,
        }
    }

    /// The published host port of a container port, else the container's
    /// own address.
    async fn address(&self, container_port: u16) -> Result<SocketAddr, String> {
        if let Some(m) = self
            .ports
            .iter()
            .find(|m| m.container_port == container_port && m.protocol == PortProtocol::Tcp)
        {
            return Ok(SocketAddr::new(self.probe_ip, m.host_port));
        }
        let info = self
            .docker
            .inspect_container(&self.container_id)
            .await
            .map_err(|e| format!("cannot inspect the container: {}", docker_message(&e)))?;
        let networks = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let ip = networks
            .get("bridge")
            .into_iter()
            .chain(networks.values())
            .filter_map(|e| e.ip_address.as_deref())
            .find_map(|ip| ip.parse::<IpAddr>().ok())
            .ok_or("port is not published and the container has no network address")?;
        Ok(SocketAddr::new(ip, container_port))
    }
}

/// Runs `command` in container `container_id` (`docker exec`); passes on
/// exit code 0. Exec probes and lifecycle hooks use it.
pub(crate) async fn exec(
    docker: &dyn ContainerRuntime,
    container_id: &str,
    command: &[String],
) -> Result<String, String> {
    let done = docker
        .exec(container_id, command, MAX_EXEC_OUTPUT)
        .await
        .map_err(|e| format!("exec failed: {}", docker_message(&e)))?;
    match done.exit_code {
        None => Err("the command did not report an exit code".into()),
        Some(0) => Ok("exit code 0".into()),
        Some(code) => {
            let out = String::from_utf8_lossy(&done.output);
            let out: String = out.trim().chars().map(printable).collect();
            Err(if out.is_empty() {
                format!("exit code {code}")
            } else {
                format!("exit code {code}: {out}")
            })
        }
    }
}

/// `GET path` on `addr`; passes on a 2xx or 3xx status.
async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    // Validation refuses such paths; never write them into a request line.
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid request path {path:?}"));
    }
    let io = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: skein-health\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if (200..400).contains(&code) => Ok(format!("HTTP {code}")),
        Some(code) => Err(format!("HTTP {code} from http://{addr}{path}")),
        None if head.is_empty() => Err(format!("http://{addr}{path} closed without answering")),
        None => Err(format!(
            "http://{addr}{path} did not answer HTTP: {:?}",
            line.chars().take(60).map(printable).collect::<String>()
        )),
    }
}

fn printable(c: char) -> char {
    if c.is_control() {
        ' '
    } else {
        c
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio::net::TcpListener;

    /// One "second" of the specs in these tests.
    const UNIT: Duration = Duration::from_millis(50);

    fn monitor() -> HealthMonitor {
        HealthMonitor::with_unit(Arc::new(crate::runtime::FakeRuntime::new()), UNIT)
    }

    fn mapping(container_port: u16, host_port: u16) -> Vec<PortMapping> {
        vec![PortMapping {
            name: None,
            container_port,
            host_port,
            protocol: PortProtocol::Tcp,
        }]
    }

    fn check(kind: CheckKind, probe: Probe, failure_threshold: u32) -> CheckSpec {
        CheckSpec {
            period_secs: 1,
            timeout_secs: 10,
            failure_threshold,
            ..CheckSpec::new(kind, probe)
        }
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A stand-in container: answers every request with `status`, counting
    /// answers by class.
    struct Server {
        port: u16,
        status: Arc<AtomicU16>,
        ok: Arc<AtomicUsize>,
        failed: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn server(status: u16) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(status));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, o, f) = (status.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let code = s.load(Ordering::SeqCst);
                let (o2, f2) = (o.clone(), f.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    // Counted before answering, so a probe never sees an
                    // answer the counters do not yet include.
                    if (200..400).contains(&code) { &o2 } else { &f2 }
                        .fetch_add(1, Ordering::SeqCst);
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Server {
            port,
            status,
            ok,
            failed,
            task,
        }
    }

    #[tokio::test]
    async fn readiness_follows_http_answers() {
        let srv = server(200).await;
        let hm = monitor();
        let probe = Probe::Http {
            port: 80,
            path: "/healthz".into(),
        };
        let checks = [check(CheckKind::Readiness, probe, 3)];
        hm.watch("a", "c1", &checks, &mapping(80, srv.port));
        assert_eq!(
            hm.verdict("a"),
            Verdict {
                ready: false,
                live: true
            }
        );
        until("ready", || hm.verdict("a").ready).await;
        assert_eq!(hm.reason("a"), None);

        // Failing answers: not ready only after three in a row.
        srv.status.store(503, Ordering::SeqCst);
        until("not ready", || !hm.verdict("a").ready).await;
        assert!(srv.failed.load(Ordering::SeqCst) >= 3);
        let reason = hm.reason("a").unwrap();
        assert!(
            reason.starts_with("readiness check http :80/healthz: HTTP 503"),
            "{reason}"
        );

        // Back to 3xx: one success is enough.
        srv.status.store(302, Ordering::SeqCst);
        until("ready again", || hm.verdict("a").ready).await;
        assert!(hm.verdict("a").live);
    }

    #[tokio::test]
    async fn liveness_fails_after_the_threshold() {
        let srv = server(200).await;
        let hm = monitor();
        let checks = [check(CheckKind::Liveness, Probe::Tcp { port: 5432 }, 2)];
        hm.watch("a", "c1", &checks, &mapping(5432, srv.port));
        // No readiness checks: ready as soon as watched.
        assert_eq!(
            hm.verdict("a"),
            Verdict {
                ready: true,
                live: true
            }
        );
        until("probed", || srv.ok.load(Ordering::SeqCst) >= 2).await;
        assert!(hm.verdict("a").live);

        let port = srv.port;
        drop(srv);
        until("not live", || !hm.verdict("a").live).await;
        let reason = hm.reason("a").unwrap();
        assert!(
            reason.contains(&format!("cannot connect to 127.0.0.1:{port}")),
            "{reason}"
        );
        assert!(hm.verdict("a").ready);
    }

    #[tokio::test]
    async fn a_hanging_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hm = monitor();
        let probe = Probe::Http {
            port: 80,
            path: "/".into(),
        };
        let checks = [CheckSpec {
            timeout_secs: 1,
            ..check(CheckKind::Liveness, probe, 1)
        }];
        hm.watch("a", "c1", &checks, &mapping(80, port));
        until("not live", || !hm.verdict("a").live).await;
        assert!(hm.reason("a").unwrap().contains("no answer within 1s"));
        drop(listener);
    }

    #[tokio::test]
    async fn watch_is_idempotent_and_retain_stops_probing() {
        let srv = server(200).await;
        let hm = monitor();
        let probe = Probe::Http {
            port: 80,
            path: "/".into(),
        };
        let checks = [check(CheckKind::Readiness, probe, 1)];
        let ports = mapping(80, srv.port);
        hm.watch("a", "c1", &checks, &ports);
        until("ready", || hm.verdict("a").ready).await;

        // Same arguments: nothing restarts, the verdict stays.
        hm.watch("a", "c1", &checks, &ports);
        assert!(hm.verdict("a").ready);
        // A new container: probing starts afresh.
        hm.watch("a", "c2", &checks, &ports);
        assert!(!hm.verdict("a").ready);
        until("ready", || hm.verdict("a").ready).await;

        hm.retain(&HashSet::from(["other".to_string()]));
        assert_eq!(hm.verdict("a"), NOT_WATCHED);
        tokio::time::sleep(UNIT * 2).await;
        let seen = srv.ok.load(Ordering::SeqCst);
        tokio::time::sleep(UNIT * 6).await;
        assert_eq!(srv.ok.load(Ordering::SeqCst), seen, "probing went on");
    }

    #[test]
    fn bad_paths_are_never_sent() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
        let err = rt
            .block_on(http_get(addr, "/x HTTP/1.1\r\nHost: evil"))
            .unwrap_err();
        assert!(err.starts_with("invalid request path"), "{err}");
    }

    /// Removes the test container even when the test panics.
    struct Container(String);

    impl Drop for Container {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &self.0])
                .output();
        }
    }

    /// Exec probes and the bridge-address fallback against real Docker;
    /// skipped when Docker or the demo image is unavailable.
    #[tokio::test]
    async fn exec_and_unpublished_ports_against_docker() {
        use bollard::models::ContainerCreateBody;

        let docker: Runtime = Arc::new(crate::runtime::DockerRuntime::local().unwrap());
        let image = "skein-demo/web:latest";
        if docker.inspect_image(image).await.is_err() {
            eprintln!("skipped: docker or {image} unavailable");
            return;
        }
        let name = format!("skein-health-test-{}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(image.into()),
            labels: Some(HashMap::from([("skein.test".into(), "health".into())])),
            ..Default::default()
        };
        let id = docker.create_container(&name, body).await.unwrap();
        let _guard = Container(id.clone());
        docker.start_container(&id).await.unwrap();

        let hm = HealthMonitor::with_unit(docker.clone(), UNIT);
        let exec = |args: &[&str]| Probe::Exec {
            command: args.iter().map(|s| s.to_string()).collect(),
        };
        let checks = [
            check(CheckKind::Liveness, exec(&["cat", "/tmp/healthy"]), 1),
            // Port 80 is not published: probed on the bridge address.
            check(CheckKind::Readiness, Probe::Tcp { port: 80 }, 1),
        ];
        hm.watch("a", &id, &checks, &[]);
        until("not live", || !hm.verdict("a").live).await;
        let reason = hm.reason("a").unwrap();
        assert!(
            reason.starts_with("liveness check exec cat /tmp/healthy: exit code 1"),
            "{reason}"
        );
        until("ready", || hm.verdict("a").ready).await;

        let touch = ["touch".to_string(), "/tmp/healthy".to_string()];
        docker.exec(&id, &touch, 0).await.unwrap();
        until("live", || hm.verdict("a").live).await;
        assert_eq!(
            hm.verdict("a"),
            Verdict {
                ready: true,
                live: true
            }
        );
    }
}
